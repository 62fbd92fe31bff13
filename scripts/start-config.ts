import { COMMON_CONFIG, type ConfigSpec } from '@citypulse/contracts';
import { API_CONFIG } from '@citypulse/api';
import { BROKER_CONFIG } from '@citypulse/broker';
import { INGEST_CONFIG } from '@citypulse/ingest';
import { INFLUX_CONFIG } from '@citypulse/infra';

/** Variables `npm start` reads itself; the services read their own (see each package's config.ts). */
export const START_CONFIG = {
  ...COMMON_CONFIG,
  // The ports the services will listen on, checked before they start.
  MQTT_PORT: BROKER_CONFIG.MQTT_PORT,
  MQTT_WS_PORT: BROKER_CONFIG.MQTT_WS_PORT,
  BROKER_HTTP_PORT: BROKER_CONFIG.BROKER_HTTP_PORT,
  INGEST_HTTP_PORT: INGEST_CONFIG.INGEST_HTTP_PORT,
  // With BROKER_STORE=redis, API_ADAPTER=redis or REGISTRY_STORE=redis (COMMON_CONFIG; always for
  // npm run cluster) and nothing answering at a loopback REDIS_URL, npm start runs a private Redis.
  BROKER_STORE: BROKER_CONFIG.BROKER_STORE,
  API_ADAPTER: API_CONFIG.API_ADAPTER,
  REDIS_URL: BROKER_CONFIG.REDIS_URL,
  API_PORT: API_CONFIG.API_PORT,
  INFLUX_URL: { kind: 'url', optional: true, values: ['http', 'https'], description: 'use this InfluxDB instead of starting a private one' },
  INFLUX_PORT: { kind: 'port', default: '8086', description: 'port of the private InfluxDB npm start runs (a free one is taken if busy)' },
  INFLUX_DATABASE: INFLUX_CONFIG.INFLUX_DATABASE,
  INFLUX_RETENTION_POLICY: INFLUX_CONFIG.INFLUX_RETENTION_POLICY,
  INFLUX_RAW_RETENTION: INFLUX_CONFIG.INFLUX_RAW_RETENTION,
  INFLUX_API: INFLUX_CONFIG.INFLUX_API,
  SIM_PROVINCES: { kind: 'string', default: '01,79,48,31,92,22', description: 'provinces the simulated city covers (codes); empty for none' },
  SIM_DOMAINS: { kind: 'string', default: 'traffic,environment,energy', description: 'simulated domains' },
  SIM_DEVICES_PER_PROVINCE: { kind: 'int', default: '4', min: 0, max: 10_000, description: 'simulated devices per province and domain' },
  SIM_INTERVAL_MS: { kind: 'int', default: '2000', min: 100, max: 3_600_000, description: 'publish interval of each simulated device' },
  SIM_SCENARIO: { kind: 'string', optional: true, description: 'simulate this scenario instead (a file, or a shipped one such as hanoi-winter-rush); replaces the four SIM_ settings above' },
  SIM_FAULTS: { kind: 'string', optional: true, description: 'faults the simulated devices show: dropout,stuck,spike,malformed,wrong-topic,flood or all; off when empty' },
} as const satisfies ConfigSpec;
