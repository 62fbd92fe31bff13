import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import { CodedError, readConfig } from '@citypulse/contracts';
import { listenOps, runService } from '@citypulse/infra';
import { buildBroker, listenMqttTcp, listenMqttTls, listenMqttWebSocket, type TlsFiles } from './app.js';
import { BROKER_CONFIG, limitsFromConfig } from './config.js';
import { openBrokerStore, type BrokerStoreKind } from './persistence.js';
import { DeviceRegistry, registryStoreOptions } from './registry.js';
import { createRedisRouter, type RedisRouter } from './router.js';

const logger = pino({ name: 'broker', level: process.env.LOG_LEVEL ?? 'info' });

runService(logger, async () => {
  const config = readConfig(BROKER_CONFIG, process.env);
  const limits = limitsFromConfig(config);
  const tls = await readTls(config.TLS_CERT_FILE, config.TLS_KEY_FILE);
  const registry = await DeviceRegistry.open(config.DATA_DIR, { watch: true, ...registryStoreOptions(config, logger) });
  if (config.BROKER_MQ === 'redis' && config.BROKER_STORE !== 'redis') {
    // A node's subscribers would get every node's messages, but sessions, queued QoS 1 messages and
    // retained messages would stay on the node that took them: lost for the others.
    throw new CodedError('E_CONFIG', `BROKER_MQ=redis (a broker cluster) needs BROKER_STORE=redis, so sessions, queued and retained messages are shared by every node (BROKER_STORE is ${config.BROKER_STORE})`);
  }
  const store = await openBrokerStore({ kind: config.BROKER_STORE as BrokerStoreKind, dataDir: config.DATA_DIR, redisUrl: config.REDIS_URL, logger });
  let cluster: RedisRouter | undefined;
  try {
    if (config.BROKER_MQ === 'redis') cluster = await createRedisRouter(limits.concurrency, config.REDIS_URL, logger);
  } catch (err) {
    await store.close();
    throw err;
  }
  if (!config.BROKER_AUTH) logger.warn('BROKER_AUTH=false: anyone may connect, publish and subscribe. Only for conformance tools on a closed network.');
  const broker = await buildBroker({
    registry,
    logger,
    limits,
    persistence: store.persistence,
    ...(cluster ? { mq: cluster.router } : {}),
    authentication: config.BROKER_AUTH,
    ...(store.queuedMessages ? { queuedMessages: () => (store.queuedMessages as () => Promise<number>)() } : {}),
  });
  let draining = false;
  const host = config.MQTT_HOST;
  const behindBalancer = { proxyProtocol: config.BROKER_PROXY_PROTOCOL };
  const servers = [await listenMqttTcp(broker, config.MQTT_PORT, host, behindBalancer)];
  const wsBehindBalancer = { proxyProtocol: config.BROKER_WS_PROXY_PROTOCOL };
  if (config.MQTT_WS_PORT > 0) servers.push(await listenMqttWebSocket(broker, config.MQTT_WS_PORT, host, undefined, wsBehindBalancer));
  if (tls && config.MQTT_TLS_PORT > 0) servers.push(await listenMqttTls(broker, config.MQTT_TLS_PORT, host, tls, behindBalancer));
  if (tls && config.MQTT_WSS_PORT > 0) servers.push(await listenMqttWebSocket(broker, config.MQTT_WSS_PORT, host, tls, wsBehindBalancer));
  // Redis away: /healthz stays 200 (the node keeps its clients; the balancer keeps it) and says so; /readyz answers 503.
  const redis = store.connected ? () => (store.connected?.() && (cluster?.connected() ?? true) ? 'up' : 'unreachable') : () => undefined;
  const ops =
    config.BROKER_HTTP_PORT > 0
      ? await listenOps({ metrics: () => broker.metrics(), health: () => ({ status: draining ? 'draining' : 'ok', connections: broker.aedes.connectedClients, store: store.kind, redis: redis(), uptimeS: Math.round(process.uptime()) }), ready: async () => ({ ready: redis() !== 'unreachable', redis: redis() }) }, config.BROKER_HTTP_PORT, config.BROKER_HTTP_HOST)
      : undefined;
  logger.info(
    {
      listening: servers.map((s) => s.address()),
      tls: tls ? 'on' : 'off (set TLS_CERT_FILE and TLS_KEY_FILE)',
      ops: ops?.address(),
      store: store.description,
      router: cluster ? `redis (${cluster.where}): a cluster node` : 'local',
      authentication: config.BROKER_AUTH,
      proxyProtocol: config.BROKER_PROXY_PROTOCOL ? 'on (MQTT over TCP and TLS)' : 'off',
      webSocketProxyProtocol: config.BROKER_WS_PROXY_PROTOCOL ? 'on (MQTT over WebSocket)' : 'off',
      devices: registry.devices.length,
      registry: `${registry.store} (${registry.where})`,
      limits,
    },
    'broker listening',
  );

  return async () => {
    // Stop taking connections, tell the load balancer, then let clients go in slices so they
    // reconnect to the other nodes gradually; the store closes last (sessions stay on disk / in Redis).
    draining = true;
    for (const server of servers) server.close();
    await broker.close();
    registry.close();
    await store.close();
    ops?.close();
  };
});

async function readTls(certFile: string | undefined, keyFile: string | undefined): Promise<TlsFiles | undefined> {
  if (!certFile && !keyFile) return undefined;
  if (!certFile || !keyFile) throw new CodedError('E_CONFIG', `TLS needs both TLS_CERT_FILE and TLS_KEY_FILE (only ${certFile ? 'TLS_CERT_FILE' : 'TLS_KEY_FILE'} is set)`);
  const read = async (name: string, file: string) => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new CodedError('E_CONFIG', `${name}=${file} cannot be read: ${(err as Error).message}`);
    }
  };
  const [cert, key] = await Promise.all([read('TLS_CERT_FILE', certFile), read('TLS_KEY_FILE', keyFile)]);
  if (!cert.toString('latin1').includes('-----BEGIN')) throw new CodedError('E_CONFIG', `TLS_CERT_FILE=${certFile} is not a PEM certificate`);
  if (!key.toString('latin1').includes('PRIVATE KEY-----')) throw new CodedError('E_CONFIG', `TLS_KEY_FILE=${keyFile} is not a PEM private key`);
  return { cert, key };
}
