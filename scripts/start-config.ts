import { COMMON_CONFIG, type ConfigSpec } from '@citypulse/contracts';

/** Variables `npm start` reads itself; the services read their own (see each package's config.ts). */
export const START_CONFIG = {
  ...COMMON_CONFIG,
  MQTT_PORT: { kind: 'port', default: '1883', description: 'MQTT over TCP' },
  MQTT_WS_PORT: { kind: 'port', default: '8083', description: 'MQTT over WebSocket (0 turns it off)' },
  API_PORT: { kind: 'port', default: '3000', description: 'API and dashboard HTTP port' },
  INFLUX_URL: { kind: 'url', optional: true, values: ['http', 'https'], description: 'use this InfluxDB instead of starting a private one' },
  INFLUX_PORT: { kind: 'port', default: '8086', description: 'port of the private InfluxDB npm start runs (a free one is taken if busy)' },
  INFLUX_DATABASE: { kind: 'string', default: 'citypulse', description: 'database (1.x) or database mapped to the bucket (2.x/3.x)' },
  INFLUX_RAW_RETENTION: { kind: 'string', default: '30d', description: 'how long raw readings are kept (InfluxQL duration)' },
  SIM_PROVINCES: { kind: 'string', default: '01,79,48,31,92,22', description: 'provinces the simulated city covers (codes); empty for none' },
  SIM_DOMAINS: { kind: 'string', default: 'traffic,environment,energy', description: 'simulated domains' },
  SIM_DEVICES_PER_PROVINCE: { kind: 'int', default: '4', min: 0, max: 10_000, description: 'simulated devices per province and domain' },
  SIM_INTERVAL_MS: { kind: 'int', default: '2000', min: 100, max: 3_600_000, description: 'publish interval of each simulated device' },
} as const satisfies ConfigSpec;
