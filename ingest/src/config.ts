import { COMMON_CONFIG, type ConfigSpec } from '@citypulse/contracts';
import { INFLUX_CONFIG, REDIS_CONFIG } from '@citypulse/infra';

/** The alert rules file: ingest evaluates it, the api's admins edit it (both read this variable). */
export const RULES_CONFIG = {
  INGEST_RULES_FILE: {
    kind: 'path',
    optional: true,
    description: 'alert rules (YAML, validated; changes apply without restart) — optional (default: DATA_DIR/alert-rules.yaml, created from the shipped ingest/alert-rules.yaml and edited through the api)',
  },
} as const satisfies ConfigSpec;

export const INGEST_CONFIG = {
  ...COMMON_CONFIG,
  ...RULES_CONFIG,
  ...INFLUX_CONFIG,
  MQTT_URL: { kind: 'url', default: 'mqtt://127.0.0.1:1883', values: ['mqtt', 'mqtts', 'ws', 'wss'], description: 'broker the services connect to' },
  INGEST_MQTT_USERNAME: { kind: 'string', default: 'ingest', description: 'ingest service account in the device registry' },
  INGEST_MQTT_PASSWORD: { kind: 'string', secret: true, description: 'its secret (npm start generates it and keeps it under DATA_DIR)' },
  INGEST_SHARD: { kind: 'string', default: '1/1', description: 'i/N: this worker owns every N-th province starting at the i-th (one worker: 1/1)' },
  INGEST_CLIENT_ID: { kind: 'string', optional: true, description: 'MQTT client id of the persistent session — optional (default ingest-i for INGEST_SHARD=i/N: worker i keeps its session, and the messages queued for it, across layouts)' },
  INGEST_HANDOVER_MS: { kind: 'int', default: '120000', min: 0, max: 3_600_000, description: "after a start, how long the session keeps filters of provinces an older INGEST_SHARD layout gave this worker (their messages are stored here too) before dropping them and draining the sessions of removed workers (ingest-j, j > N): start every worker of a new layout, and stop every removed one, within it (0: at once)" },
  INGEST_BATCH_SIZE: { kind: 'int', default: '5000', min: 1, max: 100_000, description: 'lines per InfluxDB write' },
  INGEST_FLUSH_INTERVAL_MS: { kind: 'int', default: '200', min: 10, max: 60_000, description: 'longest a reading waits for its batch to fill' },
  INGEST_WRITE_CONCURRENCY: { kind: 'int', default: '2', min: 1, max: 16, description: 'InfluxDB writes in flight at once' },
  INGEST_MAX_BUFFERED_LINES: { kind: 'int', default: '40000', min: 100, max: 60_000, description: 'lines held until stored; at the bound ingest stops reading and the broker keeps the queue (at most 60,000: MQTT message ids)' },
  INGEST_MAX_CLOCK_SKEW_MS: { kind: 'int', default: '300000', min: 0, description: 'readings further ahead of server time are rejected (E_CLOCK_SKEW)' },
  INGEST_SUMMARY_INTERVAL_MS: { kind: 'int', default: '5000', min: 1000, max: 600_000, description: 'how often province summaries are published (retained, ops/{province}/summary)' },
  INGEST_ROLLUPS: { kind: 'enum', default: 'stream', values: ['stream', 'cq', 'none'], description: 'who keeps the 1 m and 1 h roll-ups on InfluxDB 1.x — stream: ingest, from the readings it stores (late ones and restarts recomputed from raw); cq: continuous queries (about 1,000 readings/s per 2-core InfluxDB); none: nobody (made elsewhere)' },
  INFLUX_ROLLUP_1M_RETENTION: { kind: 'string', default: '90d', description: 'how long 1-minute min/mean/max/count roll-ups are kept (InfluxDB 1.x: ingest creates them)' },
  INFLUX_ROLLUP_1H_RETENTION: { kind: 'string', default: '730d', description: 'how long 1-hour roll-ups are kept (INF: forever)' },
  INGEST_HTTP_HOST: { kind: 'string', default: '127.0.0.1', description: "interface of ingest's /metrics, /healthz and /readyz" },
  INGEST_HTTP_PORT: { kind: 'port', default: '9103', description: "port of ingest's /metrics (Prometheus), /healthz and /readyz (0 turns it off)" },
  // The device registry with REGISTRY_STORE=redis.
  ...REDIS_CONFIG,
} as const satisfies ConfigSpec;
