import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { IClientOptions, MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic, TOPIC_FILTERS } from '@citypulse/contracts';
import { connectRedis, startRedis, waitFor, type RunningRedis } from '@citypulse/infra';
import { buildBroker, listenMqttTcp, type PlatformBroker } from '../src/app.js';
import { openBrokerStore, type BrokerStore } from '../src/persistence.js';
import { DeviceRegistry } from '../src/registry.js';
import { connectTracked } from './mqtt-client.js';
import { createRedisRouter } from '../src/router.js';
import type { FastQueue, QueueSweepSettings } from '../src/session-queue.js';

/**
 * The queue sweep of cluster mode (session-queue.ts withQueue): a message queued for a connected
 * persistent subscriber whose live delivery from another node was lost on the way through Redis
 * reaches it without a reconnect. Two broker nodes in this process, each with its own Redis
 * router and store connections, on a real Redis; real MQTT over sockets. The loss is real: Redis
 * drops what is published while a subscriber connection is down, and `CLIENT KILL TYPE pubsub`
 * takes the routers' subscriber connections down mid-stream.
 */
const logger = pino({ level: 'silent' });
const DB = 4;
const SWEEP: Partial<QueueSweepSettings> = { intervalMs: 300, staleAfterMs: 3_000 };
const device = { id: 'hn-air-31', province: '01', domain: 'environment' as const, location: [105.85, 21.03] as const };
const telemetry = deviceTopic({ province: device.province, domain: device.domain, deviceId: device.id }, 'telemetry');

interface Node {
  readonly url: string;
  readonly broker: PlatformBroker;
  readonly store: BrokerStore;
  stop(): Promise<void>;
}

let workDir: string;
let redis: RunningRedis;
let registry: DeviceRegistry;
let deviceSecret: string;
const nodes: Node[] = [];
const clients: MqttClient[] = [];

async function startNode(): Promise<Node> {
  const redisUrl = `${redis.url}/${DB}`;
  const store = await openBrokerStore({ kind: 'redis', dataDir: workDir, redisUrl, logger });
  const limits = { ratePerS: 1_000_000, rateBurst: 1_000_000, shutdownSpreadMs: 0 };
  const cluster = await createRedisRouter(100, redisUrl, logger);
  const broker = await buildBroker({ registry, logger, limits, persistence: store.persistence, mq: cluster.router, queueSweep: SWEEP });
  const server: Server = await listenMqttTcp(broker, 0, '127.0.0.1');
  const node: Node = {
    url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`,
    broker,
    store,
    async stop() {
      await broker.close();
      await new Promise((resolve) => server.close(resolve));
      await store.close();
    },
  };
  nodes.push(node);
  return node;
}

const connect = (url: string, options: IClientOptions) => connectTracked(clients, url, { reconnectPeriod: 0, ...options });

/** A persistent subscriber like ingest, counting every delivery of every seq and any disconnect. */
async function subscriber(url: string, serviceId: string, options: IClientOptions = {}) {
  const secret = await registry.upsertService(serviceId, 'ingest');
  const client = await connect(url, { clientId: serviceId, username: serviceId, password: secret, clean: false, ...options });
  const deliveries = new Map<number, number>();
  let closed = 0;
  client.on('close', () => closed++);
  client.on('message', (_topic, payload) => {
    const seq = (JSON.parse(payload.toString()) as { seq: number }).seq;
    deliveries.set(seq, (deliveries.get(seq) ?? 0) + 1);
  });
  await client.subscribeAsync(TOPIC_FILTERS.allTelemetry, { qos: 1 });
  return { client, deliveries, closed: () => closed };
}

const redelivered = async (node: Node) => Number(/citypulse_broker_queue_redelivered_total (\d+)/.exec(await node.broker.metrics())?.[1] ?? NaN);
const queued = (node: Node) => (node.store.queuedMessages as () => Promise<number>)();

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'citypulse-queue-sweep-'));
  redis = await startRedis({ dataDir: join(workDir, 'redis') });
  registry = await DeviceRegistry.open(join(workDir, 'data'));
  const [created] = await registry.upsertDevices([device]);
  deviceSecret = created?.secret ?? '';
  await startNode();
  await startNode();
}, 60_000);

afterAll(async () => {
  for (const client of clients) client.end(true);
  for (const node of nodes) await node.stop();
  registry?.close();
  await redis?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
}, 60_000);

describe('queue sweep (cluster mode, BROKER_STORE=redis)', () => {
  it('delivers to a connected subscriber, once each and without a reconnect, what it missed while the routers\' Redis subscriptions were down', { timeout: 60_000 }, async () => {
    const [a, b] = nodes as [Node, Node];
    const ingest = await subscriber(b.url, 'ingest-sweep-1');
    const dev = await connect(a.url, { clientId: device.id, username: device.id, password: deviceSecret });
    const admin = await connectRedis(`${redis.url}/${DB}`, { purpose: 'test', requiredWhen: 'in this test', logger });
    const before = await redelivered(b);
    const TOTAL = 600;
    let killed = 0;
    for (let seq = 1; seq <= TOTAL; seq++) {
      await dev.publishAsync(telemetry, JSON.stringify({ ts: Date.now(), seq, pm25: 10 }), { qos: 1 });
      // Both nodes' router subscriber connections: what A routes meanwhile never reaches B.
      if (seq === 200) killed = Number(await admin.conn.call('CLIENT', 'KILL', 'TYPE', 'pubsub'));
      await sleep(3);
    }
    admin.conn.disconnect();
    expect(killed).toBeGreaterThanOrEqual(2);
    await waitFor(`all ${TOTAL} readings at the subscriber (${ingest.deliveries.size} so far)`, () => (ingest.deliveries.size === TOTAL ? true : undefined), 30_000);
    // Some were missed live and came from the queue: the loss was real, and the sweep made it good.
    expect(await redelivered(b)).toBeGreaterThan(before);
    expect(ingest.closed()).toBe(0);
    const twice = [...ingest.deliveries].filter(([, n]) => n > 1).map(([seq]) => seq);
    expect(twice).toEqual([]);
    await waitFor('the queue to empty once everything is acknowledged', async () => ((await queued(b)) === 0 ? true : undefined), 10_000);
  });

  it('delivers a queued message that its node never routed (it died in between) once it is staleAfterMs old', { timeout: 60_000 }, async () => {
    const [a, b] = nodes as [Node, Node];
    const ingest = await subscriber(b.url, 'ingest-sweep-2');
    // Its connection has read its (empty) queue and delivers live: what is queued after this is
    // the sweep's to find, not the reconnect's.
    await sleep(1_000);
    const before = await redelivered(b);
    // As node A's store queued it for the subscriber, numbered by a node that is gone.
    const queue = a.store.persistence as FastQueue<object>;
    await queue.outgoingEnqueueCombi([{ clientId: 'ingest-sweep-2' }], { cmd: 'publish', brokerId: 'citypulse-gone-node', brokerCounter: 7, topic: telemetry, payload: Buffer.from(JSON.stringify({ ts: Date.now(), seq: 1, pm25: 12 })), qos: 1, retain: false, dup: false });
    await waitFor('the unrouted message at the subscriber', () => (ingest.deliveries.get(1) === 1 ? true : undefined), 20_000);
    expect(await redelivered(b)).toBe(before + 1);
    expect(ingest.closed()).toBe(0);
    await waitFor('the queue to empty', async () => ((await queued(b)) === 0 ? true : undefined), 10_000);
  });

  it('does not deliver again what the subscriber holds unacknowledged, however old', { timeout: 60_000 }, async () => {
    const [a, b] = nodes as [Node, Node];
    const ingest = await subscriber(b.url, 'ingest-sweep-3');
    // PUBACKs held back, as while ingest waits for InfluxDB: mqtt.js acknowledges once
    // handleMessage calls back, and reads no further packet meanwhile (the rest wait in the socket).
    let holding = true;
    const held: Array<() => void> = [];
    ingest.client.handleMessage = (_packet, callback) => (holding ? held.push(() => callback()) : callback());
    const dev = await connect(a.url, { clientId: device.id, username: device.id, password: deviceSecret });
    const before = await redelivered(b);
    for (let seq = 1; seq <= 20; seq++) await dev.publishAsync(telemetry, JSON.stringify({ ts: Date.now(), seq, pm25: 10 }), { qos: 1 });
    await waitFor('the first reading', () => (held.length === 1 ? true : undefined), 10_000);
    // Past staleAfterMs, many sweeps later.
    await sleep((SWEEP.staleAfterMs ?? 0) + 1_500);
    expect(held).toHaveLength(1);
    expect(await redelivered(b)).toBe(before);
    expect(await queued(b)).toBe(20);
    holding = false;
    for (const ack of held.splice(0)) ack();
    await waitFor('the 20 readings', () => (ingest.deliveries.size === 20 ? true : undefined), 10_000);
    expect([...ingest.deliveries.keys()].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i + 1));
    expect([...ingest.deliveries.values()].every((n) => n === 1)).toBe(true);
    await waitFor('the queue to empty once acknowledged', async () => ((await queued(b)) === 0 ? true : undefined), 10_000);
  });
});
