import { pino } from 'pino';
import { readConfig } from '@citypulse/contracts';
import { runService } from '@citypulse/infra';
import { buildBroker, listenMqttTcp, listenMqttWebSocket } from './app.js';
import { BROKER_CONFIG } from './config.js';
import { DeviceRegistry } from './registry.js';

const logger = pino({ name: 'broker', level: process.env.LOG_LEVEL ?? 'info' });

runService(logger, async () => {
  const config = readConfig(BROKER_CONFIG, process.env);
  const registry = await DeviceRegistry.open(config.DATA_DIR, { watch: true });
  const broker = await buildBroker({
    registry,
    logger,
    limits: { connectTimeoutMs: config.BROKER_CONNECT_TIMEOUT_MS, drainTimeoutMs: config.BROKER_DRAIN_TIMEOUT_MS },
  });
  const tcp = await listenMqttTcp(broker.aedes, config.MQTT_PORT, config.MQTT_HOST);
  const ws = config.MQTT_WS_PORT > 0 ? await listenMqttWebSocket(broker.aedes, config.MQTT_WS_PORT, config.MQTT_HOST) : undefined;
  logger.info({ mqtt: tcp.address(), ws: ws?.address(), devices: registry.devices.length }, 'broker listening');

  return async () => {
    tcp.close();
    ws?.close();
    registry.close();
    await broker.close();
  };
});
