import { pino } from 'pino';
import { DEFAULT_DECODE_LIMITS, readConfig } from '@citypulse/contracts';
import { DeviceRegistry } from '@citypulse/broker/registry';
import { Influx, influxSettingsFrom, runService } from '@citypulse/infra';
import { startIngest } from './app.js';
import { INGEST_CONFIG } from './config.js';

const logger = pino({ name: 'ingest', level: process.env.LOG_LEVEL ?? 'info' });

runService(logger, async () => {
  const config = readConfig(INGEST_CONFIG, process.env);
  const influx = new Influx(influxSettingsFrom(config));
  if (influx.settings.apiVersion === 'v1') await influx.ensureDatabase(config.INFLUX_RAW_RETENTION);
  const registry = await DeviceRegistry.open(config.DATA_DIR, { watch: true });
  const ingest = await startIngest({
    mqttUrl: config.MQTT_URL,
    username: config.INGEST_MQTT_USERNAME,
    password: config.INGEST_MQTT_PASSWORD,
    clientId: config.INGEST_CLIENT_ID,
    influx,
    registry,
    logger,
    batchSize: config.INGEST_BATCH_SIZE,
    flushIntervalMs: config.INGEST_FLUSH_INTERVAL_MS,
    decodeLimits: { ...DEFAULT_DECODE_LIMITS, maxClockSkewMs: config.INGEST_MAX_CLOCK_SKEW_MS },
  });
  logger.info({ influx: config.INFLUX_URL, database: config.INFLUX_DATABASE }, 'ingest running');

  const report = setInterval(() => logger.info({ counters: ingest.counters }, 'ingest counters'), 60_000);
  report.unref();
  return async () => {
    clearInterval(report);
    registry.close();
    await ingest.close(); // flushes what is buffered to InfluxDB
  };
});
