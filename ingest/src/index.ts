export * from './app.js';
export * from './config.js';
export * from './late-acks.js';
export * from './metrics.js';
export * from './records.js';
export * from './shards.js';
export * from './writer.js';
