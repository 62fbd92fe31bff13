import { pino } from 'pino';
import { CodedError, DEFAULT_DECODE_LIMITS, readConfig } from '@citypulse/contracts';
import { DeviceRegistry, registryStoreOptions } from '@citypulse/broker/registry';
import { durationMs, Influx, influxSettingsFrom, listenOps, runService } from '@citypulse/infra';
import { ensureRulesFile, readAlertRules } from './alerts/rules.js';
import { startIngest } from './app.js';
import { ensureStorage } from './storage.js';
import { INGEST_CONFIG } from './config.js';
import { parseShard, sessionIndex } from './shards.js';

const logger = pino({ name: 'ingest', level: process.env.LOG_LEVEL ?? 'info' });

runService(logger, async () => {
  const config = readConfig(INGEST_CONFIG, process.env);
  const shard = parseShard(config.INGEST_SHARD);
  // ingest-j with j > N names a removed worker's session, which a worker of this layout drains and removes.
  const named = config.INGEST_CLIENT_ID ? sessionIndex(config.INGEST_CLIENT_ID) : undefined;
  if (named !== undefined && named > shard.count) throw new CodedError('E_CONFIG', `INGEST_CLIENT_ID="${config.INGEST_CLIENT_ID}" is the session of a worker ${named} that a layout of ${shard.count} does not have: worker ${((named - 1) % shard.count) + 1} drains and removes it; leave INGEST_CLIENT_ID unset (ingest-${shard.index})`);
  const influx = new Influx(influxSettingsFrom(config));
  // Validated before anything connects: a mistake in the rules stops the start with its line.
  const rulesFile = await ensureRulesFile(config.INGEST_RULES_FILE, config.DATA_DIR);
  const alertRules = await readAlertRules(rulesFile);
  const rawRetentionMs = Math.min(durationMs(config.INFLUX_RAW_RETENTION), Number.MAX_SAFE_INTEGER);
  if (influx.settings.apiVersion === 'v1') {
    const layout = await ensureStorage(influx, { rawRetention: config.INFLUX_RAW_RETENTION, rollup1mRetention: config.INFLUX_ROLLUP_1M_RETENTION, rollup1hRetention: config.INFLUX_ROLLUP_1H_RETENTION, continuousQueries: config.INGEST_ROLLUPS === 'cq' });
    const changed = layout.changes.filter((c) => c.action !== 'unchanged');
    logger.info({ database: layout.database, changes: changed.map((c) => `${c.object} ${c.name} ${c.action}`) }, 'storage layout ready (retention policies, roll-up continuous queries)');
  } else {
    logger.info('InfluxDB 2.x/3.x: retention and roll-ups are set up on the bucket side (README, "Roll-ups on InfluxDB 2.x and 3.x")');
  }
  const registry = await DeviceRegistry.open(config.DATA_DIR, { watch: true, ...registryStoreOptions(config, logger) });
  const ingest = await startIngest({
    mqttUrl: config.MQTT_URL,
    username: config.INGEST_MQTT_USERNAME,
    password: config.INGEST_MQTT_PASSWORD,
    ...(config.INGEST_CLIENT_ID ? { clientId: config.INGEST_CLIENT_ID } : {}),
    shard,
    handoverMs: config.INGEST_HANDOVER_MS,
    influx,
    registry,
    logger,
    batchLines: config.INGEST_BATCH_SIZE,
    flushIntervalMs: config.INGEST_FLUSH_INTERVAL_MS,
    writeConcurrency: config.INGEST_WRITE_CONCURRENCY,
    maxBufferedLines: config.INGEST_MAX_BUFFERED_LINES,
    alertRules,
    rulesFile,
    alertHistoryMs: rawRetentionMs,
    // Roll-ups are ingest's business on 1.x only (2.x/3.x: on the bucket side, see the README).
    rollups: influx.settings.apiVersion === 'v1' ? (config.INGEST_ROLLUPS as 'stream' | 'cq' | 'none') : 'none',
    summaryIntervalMs: config.INGEST_SUMMARY_INTERVAL_MS,
    // Backfill is accepted as far back as raw data is kept, and no further (E_TOO_OLD).
    decodeLimits: { ...DEFAULT_DECODE_LIMITS, maxClockSkewMs: config.INGEST_MAX_CLOCK_SKEW_MS, maxAgeMs: rawRetentionMs },
  });
  let draining = false;
  const ops =
    config.INGEST_HTTP_PORT > 0
      ? await listenOps(
          {
            metrics: async () => ingest.renderMetrics(),
            health: () => ({ status: draining ? 'draining' : 'ok', shard: `${shard.index}/${shard.count}`, clientId: ingest.clientId, uptimeS: Math.round(process.uptime()) }),
            ready: async () => ingest.ready(),
          },
          config.INGEST_HTTP_PORT,
          config.INGEST_HTTP_HOST,
        )
      : undefined;
  logger.info({ influx: config.INFLUX_URL, database: config.INFLUX_DATABASE, shard: `${shard.index}/${shard.count}`, provinces: shard.provinces, metrics: ops ? `http://${config.INGEST_HTTP_HOST}:${config.INGEST_HTTP_PORT}/metrics` : undefined }, 'ingest running');

  return async () => {
    draining = true;
    registry.close();
    await ingest.close(); // stores and acknowledges what it took; the broker keeps the rest
    await new Promise((resolve) => (ops ? ops.close(resolve) : resolve(undefined)));
  };
});
