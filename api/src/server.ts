import { pino } from 'pino';
import { readConfig } from '@citypulse/contracts';
import { DeviceRegistry, registryStoreOptions } from '@citypulse/broker/registry';
import { Influx, influxSettingsFrom, runService } from '@citypulse/infra';
import { ensureRulesFile } from '@citypulse/ingest';
import { buildApi } from './app.js';
import { API_CONFIG } from './config.js';
import { OperatorStore } from './operators.js';
import { SessionSigner } from './sessions.js';

const logger = pino({ name: 'api', level: process.env.LOG_LEVEL ?? 'info' });

runService(logger, async () => {
  const config = readConfig(API_CONFIG, process.env);
  const registry = await DeviceRegistry.open(config.DATA_DIR, { watch: true, ...registryStoreOptions(config, logger) });
  const operators = await OperatorStore.open(config.DATA_DIR, { watch: true });
  const firstPassword = await operators.ensureFirstAdmin();
  if (firstPassword) logger.warn({ username: 'admin' }, `first start: created operator "admin" with password ${firstPassword} (shown once; change it)`);
  const api = await buildApi({
    influx: new Influx(influxSettingsFrom(config)),
    registry,
    operators,
    sessions: await SessionSigner.fromDataDir(config.DATA_DIR, config.SESSION_TTL_HOURS * 3_600_000),
    logger,
    mqtt: { url: config.MQTT_URL, username: config.API_MQTT_USERNAME, password: config.API_MQTT_PASSWORD },
    dashboardDir: config.DASHBOARD_DIR,
    frameIntervalMs: config.FRAME_INTERVAL_MS,
    cookieSecure: config.COOKIE_SECURE,
    mapboxAccessToken: config.MAPBOX_ACCESS_TOKEN,
    corsOrigins: config.API_CORS_ORIGINS?.split(',').map((o) => o.trim()).filter(Boolean) ?? [],
    dataDir: config.DATA_DIR,
    rulesFile: await ensureRulesFile(config.INGEST_RULES_FILE, config.DATA_DIR),
    adapter: config.API_ADAPTER === 'redis' ? { kind: 'redis', url: config.REDIS_URL } : { kind: 'local' },
  });
  await api.app.listen({ port: config.API_PORT, host: config.API_HOST });

  return async () => {
    registry.close();
    operators.close();
    await api.close();
  };
});
