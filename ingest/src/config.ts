import { COMMON_CONFIG, type ConfigSpec } from '@citypulse/contracts';
import { INFLUX_CONFIG } from '@citypulse/infra';

export const INGEST_CONFIG = {
  ...COMMON_CONFIG,
  ...INFLUX_CONFIG,
  MQTT_URL: { kind: 'url', default: 'mqtt://127.0.0.1:1883', values: ['mqtt', 'mqtts', 'ws', 'wss'], description: 'broker the services connect to' },
  INGEST_MQTT_USERNAME: { kind: 'string', default: 'ingest', description: 'ingest service account in the device registry' },
  INGEST_MQTT_PASSWORD: { kind: 'string', secret: true, description: 'its secret (npm start generates it and keeps it under DATA_DIR)' },
  INGEST_CLIENT_ID: { kind: 'string', default: 'ingest-1', description: 'MQTT client id of the persistent session' },
  INGEST_BATCH_SIZE: { kind: 'int', default: '5000', min: 1, max: 100_000, description: 'lines per InfluxDB write' },
  INGEST_FLUSH_INTERVAL_MS: { kind: 'int', default: '1000', min: 10, max: 60_000, description: 'longest a reading waits before it is written' },
  INGEST_MAX_CLOCK_SKEW_MS: { kind: 'int', default: '300000', min: 0, description: 'readings further ahead of server time are rejected (E_CLOCK_SKEW)' },
} as const satisfies ConfigSpec;
