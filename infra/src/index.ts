export * from './influx-client.js';
export * from './influxd.js';
export * from './mosquitto.js';
export * from './ports.js';
export * from './system.js';
export * from './process.js';
export * from './redis.js';
