import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type IConnackPacket, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic, TOPIC_FILTERS } from '@citypulse/contracts';
import { buildBroker, DeviceRegistry, listenMqttTcp, memoryPersistence, type PlatformBroker } from '@citypulse/broker';
import { drainOrphanSession, type OrphanDrainOptions } from '../src/index.js';

/**
 * The drain of a removed worker's session (drain.ts) against a real broker over TCP: what it
 * decides from what the broker answers. The pipeline is replaced by a handler that "stores" a
 * message in a list and acknowledges it on the next turn of the event loop: InfluxDB is not what
 * is under test here (shards-cluster.test.ts runs the whole path with worker processes).
 */
const logger = pino({ level: 'silent' });

let dir: string;
let registry: DeviceRegistry;
let persistence: ReturnType<typeof memoryPersistence>;
let broker: PlatformBroker;
let server: Server;
let url: string;
let ingestSecret: string;
let tools: MqttClient;
const clients: MqttClient[] = [];

/** What the broker keeps for a client id: its subscriptions. */
const subscriptionsOf = async (clientId: string): Promise<unknown[]> => (persistence as unknown as { subscriptionsByClient(c: { id: string }): Promise<unknown[]> }).subscriptionsByClient({ id: clientId });
const TOPIC = deviceTopic({ province: '01', domain: 'environment', deviceId: 'd-air-01' }, 'telemetry');

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'citypulse-drain-'));
  registry = await DeviceRegistry.open(dir);
  ingestSecret = await registry.upsertService('ingest', 'ingest');
  persistence = memoryPersistence();
  broker = await buildBroker({ registry, logger, persistence, limits: { ratePerS: 1_000_000, rateBurst: 1_000_000, shutdownSpreadMs: 0 } });
  server = await listenMqttTcp(broker, 0, '127.0.0.1');
  url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  // Tools replay device traffic: a publisher without a device account per topic.
  tools = await mqtt.connectAsync(url, { clientId: 'drain-tools', username: 'tools', password: await registry.upsertService('tools', 'tools'), protocolVersion: 4, reconnectPeriod: 0 });
}, 60_000);

afterAll(async () => {
  await Promise.all(clients.map((c) => c.endAsync(true)));
  await tools?.endAsync();
  await broker?.close();
  await new Promise((resolve) => server?.close(resolve));
  registry?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** The drain's options, its "pipeline" keeping each message's seq. */
function drainOf(clientId: string, stored: number[]): OrphanDrainOptions {
  return {
    mqttUrl: url,
    username: 'ingest',
    password: ingestSecret,
    clientId,
    quietMs: 300,
    holdMs: 1000,
    onMessage(_topic, payload, packet, acks) {
      const token = acks.token(packet);
      setImmediate(() => {
        stored.push((JSON.parse(payload.toString()) as { seq: number }).seq);
        if (token) acks.ack(token);
      });
    },
  };
}

/** A session as a worker leaves it: subscribed at QoS 1 with clean: false. */
async function workerSession(clientId: string, reconnectPeriod = 0): Promise<MqttClient> {
  const client = await mqtt.connectAsync(url, { clientId, username: 'ingest', password: ingestSecret, clean: false, protocolVersion: 4, reconnectPeriod });
  clients.push(client);
  await client.subscribeAsync([TOPIC_FILTERS.provinceTelemetry('01'), TOPIC_FILTERS.provinceStatus('01')], { qos: 1 });
  return client;
}

/** CONNACK's sessionPresent for `clientId` (clean: false), then the session this created is removed (clean: true). */
async function probe(clientId: string): Promise<boolean> {
  const options = { clientId, username: 'ingest', password: ingestSecret, protocolVersion: 4 as const, reconnectPeriod: 0 };
  const client = mqtt.connect(url, { ...options, clean: false });
  const connack = await new Promise<IConnackPacket>((resolve, reject) => client.once('connect', resolve).once('error', reject));
  await client.endAsync();
  await (await mqtt.connectAsync(url, { ...options, clean: true })).endAsync();
  return connack.sessionPresent;
}

async function publish(from: number, count: number): Promise<void> {
  for (let seq = from; seq < from + count; seq++) await tools.publishAsync(TOPIC, JSON.stringify({ ts: Date.now(), seq, pm25: 10 }), { qos: 1 });
}

describe('draining the session of a removed worker', () => {
  it('a probe of a session that does not exist leaves nothing behind', async () => {
    const stored: number[] = [];
    expect(await drainOrphanSession(drainOf('ingest-9', stored))).toEqual({ outcome: 'absent' });
    expect(stored).toEqual([]);
    expect(await subscriptionsOf('ingest-9')).toEqual([]);
    expect(await persistence.queuedMessages()).toBe(0);
  });

  it('stores every queued message once, acknowledges it, drops the filters and removes the session', async () => {
    const worker = await workerSession('ingest-7');
    await worker.endAsync();
    await publish(0, 200);
    expect(await persistence.queuedMessages()).toBe(200);

    const stored: number[] = [];
    const result = await drainOrphanSession(drainOf('ingest-7', stored));
    expect(result).toEqual({ outcome: 'drained', messages: 200, passes: 2 });
    expect([...stored].sort((a, b) => a - b)).toEqual(Array.from({ length: 200 }, (_, i) => i));
    expect(await persistence.queuedMessages()).toBe(0);
    expect(await subscriptionsOf('ingest-7')).toEqual([]);
    // Nothing published later is kept for it.
    await publish(200, 10);
    expect(await persistence.queuedMessages()).toBe(0);
    expect(await probe('ingest-7')).toBe(false);
  });

  it('leaves a session to the worker still running it: that worker takes it back with its filters, and nothing is removed', async () => {
    // A worker of an older layout left running: MQTT.js reconnects it 200 ms after the takeover.
    const live = await workerSession('ingest-6', 200);
    const reconnected = new Promise<void>((resolve) => live.once('connect', () => resolve()));
    const stored: number[] = [];
    const result = await drainOrphanSession(drainOf('ingest-6', stored));
    expect(result).toMatchObject({ outcome: 'interrupted', conflict: true });
    await reconnected;
    expect(live.connected).toBe(true);
    // Its filters survived the drain (held, not dropped, until the worker came back).
    expect(await subscriptionsOf('ingest-6')).toHaveLength(2);
    const received: number[] = [];
    const fiveReceived = new Promise<void>((resolve) =>
      live.on('message', (_topic, payload) => {
        if (received.push((JSON.parse(payload.toString()) as { seq: number }).seq) === 5) resolve();
      }),
    );
    await publish(1000, 5);
    await fiveReceived;
    expect(received).toEqual([1000, 1001, 1002, 1003, 1004]);
    await live.endAsync();
  });
});
