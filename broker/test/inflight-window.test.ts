import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic, TOPIC_FILTERS } from '@citypulse/contracts';
import { startRedis, type RunningRedis } from '@citypulse/infra';
import { buildBroker, listenMqttTcp, type PlatformBroker } from '../src/app.js';
import { openBrokerStore, type BrokerStore } from '../src/persistence.js';
import { DeviceRegistry } from '../src/registry.js';
import { connectTracked, holdAcks, type HeldAcks } from './mqtt-client.js';

/**
 * The outgoing in-flight window (BROKER_MAX_INFLIGHT_OUTBOUND, session-queue.ts withQueue): a
 * persistent subscriber that acknowledges slowly (ingest waiting for InfluxDB) holds at most the
 * window unacknowledged; the rest stays in the queue store, not in the broker's socket buffer nor
 * the subscriber's memory, and follows in order as it acknowledges; then live delivery resumes.
 * Real broker on each store (memory, disk, Redis), real MQTT over TCP.
 */
const logger = pino({ level: 'silent' });
const WINDOW = 50;
/** Longest a publish waits for the subscriber (5 s by default). */
const MAX_HOLD_MS = 2_500;
/** A connection with this many publishes waiting for subscribers is not read until half have gone (BROKER_MAX_PENDING_PUBLISHES). */
const MAX_PENDING = 10;
const INGEST_ID = 'ingest-window';
const device = { id: 'hn-air-31', province: '01', domain: 'environment' as const, location: [105.8525, 21.0287] as const };
/** A second device, publishing at QoS 0 (which the window does not hold) while the first's messages wait. */
const device2 = { id: 'hn-air-32', province: '01', domain: 'environment' as const, location: [105.8526, 21.0288] as const };
const QOS0_SEQ = 1_000_000;
const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);
const telemetry = deviceTopic({ province: device.province, domain: device.domain, deviceId: device.id }, 'telemetry');

let redis: RunningRedis;
let workDir: string;
let registry: DeviceRegistry;
let ingestSecret: string;
let deviceSecret: string;
let device2Secret: string;
const clients: MqttClient[] = [];

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'citypulse-window-'));
  redis = await startRedis({ dataDir: join(workDir, 'redis') });
  registry = await DeviceRegistry.open(join(workDir, 'registry'));
  ingestSecret = await registry.upsertService(INGEST_ID, 'ingest');
  [{ secret: deviceSecret }, { secret: device2Secret }] = (await registry.upsertDevices([device, device2])) as [{ id: string; secret: string }, { id: string; secret: string }];
}, 60_000);

afterAll(async () => {
  registry?.close();
  await redis?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

afterEach(() => {
  for (const client of clients.splice(0)) client.end(true);
});

/** A subscriber like ingest: persistent session, QoS 1, PUBACKs held until released; counts each reading it receives, in order. */
interface Subscriber {
  readonly client: MqttClient;
  readonly acks: HeldAcks;
  /** seq of every message received, in arrival order (a repeat shows twice). */
  readonly received: number[];
}

async function subscriber(url: string): Promise<Subscriber> {
  const client = await connectTracked(clients, url, { clientId: INGEST_ID, username: INGEST_ID, password: ingestSecret, clean: false, reconnectPeriod: 0 });
  const acks = holdAcks(client);
  const received: number[] = [];
  client.on('message', (_topic, payload) => received.push((JSON.parse(payload.toString()) as { seq: number }).seq));
  return { client, acks, received };
}

const reading = (seq: number) => JSON.stringify({ ts: Date.now(), seq, pm25: 9 });
const connectDevice = (url: string) => connectTracked(clients, url, { clientId: device.id, username: device.id, password: deviceSecret, reconnectPeriod: 0 });

/** A burst: every message sent at once; resolves once each has its PUBACK. */
async function publish(url: string, from: number, to: number): Promise<void> {
  const dev = await connectDevice(url);
  await Promise.all(range(from, to).map((seq) => dev.publishAsync(telemetry, reading(seq), { qos: 1 })));
  await dev.endAsync();
}

/** A device (a gateway, the bench's) that keeps up to `inflight` messages awaiting their PUBACK; `acked` counts them. */
async function publishPaced(url: string, from: number, to: number, inflight: number, acked: { count: number }): Promise<void> {
  const dev = await connectDevice(url);
  let next = from;
  const lane = async () => {
    while (next < to) {
      await dev.publishAsync(telemetry, reading(next++), { qos: 1 });
      acked.count++;
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  await dev.endAsync();
}

async function waitFor(what: string, check: () => boolean | Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

const metric = async (broker: PlatformBroker, name: string) => Number(new RegExp(`^citypulse_broker_${name} (\\d+)$`, 'm').exec(await broker.metrics())?.[1] ?? NaN);

/**
 * Past the window, deliveries wait in memory (parked) up to `maxParked`; past that the connection
 * reads its queue from the store. Each store is run both ways.
 */
const VARIANTS = (['memory', 'disk', 'redis'] as const).flatMap((kind, i) => [
  { kind, maxParked: 1_000, db: 5 + 2 * i, path: 'parked in memory' },
  { kind, maxParked: 5, db: 6 + 2 * i, path: 'read from the store' },
]);

describe.each(VARIANTS)('outgoing in-flight window, BROKER_STORE=$kind, past the window: $path', ({ kind, maxParked, db }) => {
  let store: BrokerStore;
  let broker: PlatformBroker;
  let server: Server;
  let url: string;

  beforeAll(async () => {
    store = await openBrokerStore({ kind, dataDir: join(workDir, `${kind}-${maxParked}`), redisUrl: `${redis.url}/${db}`, logger });
    // The bursts below are far over a device's publish rate: lift the limit, it is not under test.
    broker = await buildBroker({
      registry,
      logger,
      persistence: store.persistence,
      limits: { maxInflightOutbound: WINDOW, maxPendingPublishes: MAX_PENDING, ratePerS: 1_000_000, rateBurst: 1_000_000, shutdownSpreadMs: 0 },
      windowHold: { maxHoldMs: MAX_HOLD_MS, maxParked },
    });
    server = await listenMqttTcp(broker, 0, '127.0.0.1');
    url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  }, 30_000);

  afterAll(async () => {
    await broker?.close();
    await new Promise((resolve) => server?.close(resolve));
    await store?.close();
  });

  const queued = () => (store.queuedMessages as () => Promise<number>)();

  it('holds a slow subscriber to the window; the rest waits in the store and follows in order as it acknowledges, each once; then live delivery resumes', { timeout: 60_000 }, async () => {
    const ingest = await subscriber(url);
    await ingest.client.subscribeAsync(TOPIC_FILTERS.allTelemetry, { qos: 1 });
    const fullBefore = await metric(broker, 'inflight_window_full_total');
    const heldBefore = await metric(broker, 'publish_held_total');
    const TOTAL = 400;
    // Every PUBACK to the device means the message is in the store. Past the window the device
    // is read as the subscriber acknowledges (or a hold expires), so the burst is not awaited here.
    const sent = publish(url, 0, TOTAL);
    await waitFor(`the first ${WINDOW} messages`, () => ingest.received.length >= WINDOW);
    await sleep(300);
    // No more than the window went out; the rest is in the store.
    expect(ingest.received).toEqual(range(0, WINDOW));
    expect(ingest.acks.count).toBe(WINDOW);
    expect(await queued()).toBeGreaterThan(WINDOW);
    expect(await metric(broker, 'inflight_window_full_total')).toBe(fullBefore + 1);

    // A QoS 0 message meanwhile goes out at once (it is not queued), and costs the waiting ones nothing.
    const other = await connectTracked(clients, url, { clientId: device2.id, username: device2.id, password: device2Secret, reconnectPeriod: 0 });
    await other.publishAsync(deviceTopic({ province: device2.province, domain: device2.domain, deviceId: device2.id }, 'telemetry'), reading(QOS0_SEQ), { qos: 0 });
    await waitFor('the QoS 0 message', () => ingest.received.includes(QOS0_SEQ));
    await other.endAsync();
    ingest.received.splice(ingest.received.indexOf(QOS0_SEQ), 1);

    // Acknowledgements free places: as many messages follow, from the store.
    ingest.acks.release(20);
    await waitFor('20 more', () => ingest.received.length >= WINDOW + 20);
    await sleep(300);
    expect(ingest.received).toHaveLength(WINDOW + 20);
    expect(ingest.acks.count).toBe(WINDOW);

    // Acknowledging as it goes, every message arrives, once each, in the order published.
    while (ingest.received.length < TOTAL) {
      const before = ingest.received.length;
      ingest.acks.release();
      await waitFor(`more than ${before} of ${TOTAL}`, () => ingest.received.length > before);
    }
    expect(ingest.received).toEqual(range(0, TOTAL));
    await sent;
    ingest.acks.stopHolding();
    await waitFor('the store to empty', async () => (await queued()) === 0);
    expect(await metric(broker, 'publish_held_total')).toBeGreaterThan(heldBefore);

    // Caught up: live again. What comes now is not read from the store.
    const pulled = await metric(broker, 'queue_pulled_total');
    await publish(url, TOTAL, TOTAL + 30);
    await waitFor('30 live messages', () => ingest.received.length >= TOTAL + 30);
    expect(ingest.received).toEqual(range(0, TOTAL + 30));
    expect(await metric(broker, 'queue_pulled_total')).toBe(pulled);
    await waitFor('the store to empty', async () => (await queued()) === 0);
    await ingest.client.endAsync();
  });

  it('sends a reconnecting subscriber the first window of its queue, then the rest as it acknowledges', { timeout: 60_000 }, async () => {
    const TOTAL = 300;
    const first = TOTAL + 30; // seq numbers after the previous test's
    await publish(url, first, first + TOTAL); // ingest is away: all queued
    expect(await queued()).toBe(TOTAL);
    const ingest = await subscriber(url);
    await waitFor(`the first ${WINDOW} messages`, () => ingest.received.length >= WINDOW);
    await sleep(300);
    expect(ingest.received).toEqual(range(first, first + WINDOW));
    // While it is still behind, a device's new messages queue after the backlog, not before it.
    await publish(url, first + TOTAL, first + TOTAL + 10);
    ingest.acks.stopHolding();
    await waitFor(`all ${TOTAL + 10}`, () => ingest.received.length >= TOTAL + 10);
    await sleep(200);
    expect(ingest.received).toEqual(range(first, first + TOTAL + 10));
    await waitFor('the store to empty', async () => (await queued()) === 0);
  });
  it('holds a device to the pace a subscriber past its window acknowledges, at most the longest hold; nothing lost', { timeout: 60_000 }, async () => {
    const first = 1_000; // seq numbers after the previous tests'
    const TOTAL = 300;
    const INFLIGHT = 20;
    const ingest = await subscriber(url);
    const pausedBefore = await metric(broker, 'publishers_paused_total');
    const heldBefore = await metric(broker, 'publish_held_total');
    const timedOutBefore = await metric(broker, 'publish_held_timeout_total');
    const acked = { count: 0 };
    const sending = publishPaced(url, first, first + TOTAL, INFLIGHT, acked);

    // The window fills; what follows is stored and acknowledged, but its publish is held: past
    // MAX_PENDING unfinished (held, or still being routed) the device's connection is not read,
    // whatever its own window allows.
    await waitFor(`the first ${WINDOW} messages`, () => ingest.received.length >= WINDOW);
    await sleep(MAX_HOLD_MS / 2);
    expect(ingest.received).toEqual(range(first, first + WINDOW));
    const stalled = acked.count;
    expect(stalled).toBeGreaterThan(WINDOW);
    expect(stalled).toBeLessThanOrEqual(WINDOW + MAX_PENDING + INFLIGHT);
    expect(await metric(broker, 'publishers_paused_total')).toBeGreaterThan(pausedBefore);
    expect(await metric(broker, 'publish_held_total')).toBeGreaterThan(heldBefore);
    await sleep(MAX_HOLD_MS / 4);
    expect(acked.count).toBe(stalled);

    // A subscriber that does not acknowledge holds a device no longer than the longest hold.
    await waitFor('the hold to expire', () => acked.count > stalled, MAX_HOLD_MS * 3);
    expect(await metric(broker, 'publish_held_timeout_total')).toBeGreaterThan(timedOutBefore);
    expect(ingest.received).toHaveLength(WINDOW);

    // Acknowledgements let the store be read, and the device is read again as its messages go out.
    const before = acked.count;
    const pulledBefore = await metric(broker, 'queue_pulled_total');
    ingest.acks.release(WINDOW);
    await waitFor('the device to go on', () => acked.count > before);
    expect(ingest.received.length).toBeGreaterThan(WINDOW);
    // Parked deliveries go out from memory; past maxParked they were read from the store.
    if (maxParked >= TOTAL) expect(await metric(broker, 'queue_pulled_total')).toBe(pulledBefore);
    else expect(await metric(broker, 'queue_pulled_total')).toBeGreaterThan(pulledBefore);

    // Acknowledging as it goes: every message arrives once, in order, and the device finishes.
    ingest.acks.stopHolding();
    await sending;
    await waitFor(`all ${TOTAL}`, () => ingest.received.length >= TOTAL);
    await sleep(200);
    expect(ingest.received).toEqual(range(first, first + TOTAL));
    await waitFor('the store to empty', async () => (await queued()) === 0);
  });
});
