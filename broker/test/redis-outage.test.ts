import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { IClientOptions, MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic, TOPIC_FILTERS, type Domain } from '@citypulse/contracts';
import { freePort, SERVICE_NODE_FLAGS, startRedis, waitFor, type RunningRedis } from '@citypulse/infra';
import { DeviceRegistry } from '../src/registry.js';
import { connectTracked } from './mqtt-client.js';
import { createRedisRouter, type RedisRouter } from '../src/router.js';

/**
 * Cluster mode through a Redis outage: two broker processes (src/server.ts, BROKER_STORE=redis,
 * BROKER_MQ=redis) on one private Redis, stopped for longer than the connections' retry budget
 * while a device publishes QoS 1 through node A to a persistent subscriber on node B, then
 * started again on the same port. Before, commands the libraries send without waiting on them
 * (aedes-persistence-redis' wills) were rejected after ioredis' retries, and the unhandled
 * rejection ended the broker. Real processes, a real Redis; no timing asserted beyond generous waits.
 */
const BROKER_DIR = join(import.meta.dirname, '..');
const INGEST_ID = 'ingest-outage-test';
const DEVICE = { id: 'hn-air-07', province: '01', domain: 'environment' as Domain, location: [105.85, 21.03] as const };
const TELEMETRY = deviceTopic({ province: DEVICE.province, domain: DEVICE.domain, deviceId: DEVICE.id }, 'telemetry');
const STATUS = deviceTopic({ province: DEVICE.province, domain: DEVICE.domain, deviceId: DEVICE.id }, 'status');
/**
 * Past every retry budget (REDIS_CLIENT_DEFAULTS: a command fails ~5 s into the outage, later ones
 * every ~12 s; ioredis' default ~10 s): long enough for the device's will to be published when
 * node A drops it, to fail, and for the will's LREM, sent without waiting, to fail in turn (~30 s).
 */
const OUTAGE_MS = 40_000;

interface BrokerNode {
  readonly name: string;
  readonly url: string;
  readonly ops: string;
  readonly child: ChildProcess;
  output(): string;
  alive(): boolean;
}

let workDir: string;
let redis: RunningRedis;
let registry: DeviceRegistry;
let ingestSecret: string;
let deviceSecret: string;
const nodes: BrokerNode[] = [];
const clients: MqttClient[] = [];

async function startNode(name: string): Promise<BrokerNode> {
  const [port, opsPort] = [await freePort(), await freePort()];
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, '--import', 'tsx', 'src/server.ts'], {
    cwd: BROKER_DIR,
    env: {
      ...process.env,
      DATA_DIR: join(workDir, 'data'),
      MQTT_HOST: '127.0.0.1',
      MQTT_PORT: String(port),
      MQTT_WS_PORT: '0',
      BROKER_HTTP_HOST: '127.0.0.1',
      BROKER_HTTP_PORT: String(opsPort),
      BROKER_STORE: 'redis',
      BROKER_MQ: 'redis',
      REDIS_URL: `${redis.url}/0`,
      BROKER_RATE_PER_S: '100000',
      BROKER_RATE_BURST: '100000',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const node: BrokerNode = { name, url: `mqtt://127.0.0.1:${port}`, ops: `http://127.0.0.1:${opsPort}`, child, output: () => out, alive: () => child.exitCode === null && child.signalCode === null };
  nodes.push(node);
  return node;
}

const ops = async (node: BrokerNode, path: '/healthz' | '/readyz') => {
  if (!node.alive()) throw new Error(`broker ${node.name} exited (${String(node.child.exitCode)}): ${node.output().slice(-2000)}`);
  const res = await fetch(`${node.ops}${path}`);
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
};

/** The mqemitter methods a router has (Router types them as unknown). */
const emitter = (r: RedisRouter) =>
  r.router as unknown as {
    on(topic: string, listener: (packet: { topic: string }, done: () => void) => void, done: () => void): void;
    emit(packet: object, done: (err?: Error) => void): void;
    close(done: () => void): void;
  };

const connect = (url: string, options: IClientOptions) => connectTracked(clients, url, options);

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'citypulse-redis-outage-'));
  redis = await startRedis({ dataDir: join(workDir, 'redis') });
  registry = await DeviceRegistry.open(join(workDir, 'data'));
  ingestSecret = await registry.upsertService(INGEST_ID, 'ingest');
  const [created] = await registry.upsertDevices([DEVICE]);
  deviceSecret = created?.secret ?? '';
  await Promise.all([startNode('a'), startNode('b')]);
  for (const node of nodes) await waitFor(`broker ${node.name} to start (output so far: ${node.output().slice(-400)})`, () => (node.output().includes('broker listening') ? true : undefined), 60_000, 50);
}, 120_000);

afterAll(async () => {
  for (const client of clients) client.end(true);
  for (const node of nodes) if (node.alive()) node.child.kill('SIGTERM');
  await Promise.all(nodes.map((n) => (n.alive() ? Promise.race([new Promise((resolve) => n.child.once('exit', resolve)), sleep(15_000)]) : Promise.resolve())));
  registry?.close();
  await redis?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
}, 60_000);

describe('a broker cluster through a Redis outage', () => {
  it('stays up, acknowledges nothing it could not store, says so on /healthz and /readyz, and resumes by itself', { timeout: 240_000 }, async () => {
    const [a, b] = nodes as [BrokerNode, BrokerNode];
    for (const node of nodes) expect(await ops(node, '/readyz')).toEqual({ status: 200, body: { ready: true, redis: 'up' } });

    // ingest's way on node B: a fixed client id, a persistent session, QoS 1.
    const received = new Set<number>();
    const ingest = await connect(b.url, { clientId: INGEST_ID, username: INGEST_ID, password: ingestSecret, clean: false, reconnectPeriod: 500 });
    ingest.on('message', (_topic, payload) => received.add((JSON.parse(payload.toString()) as { seq: number }).seq));
    await ingest.subscribeAsync(TOPIC_FILTERS.allTelemetry, { qos: 1 });

    // A device on node A with a last will (stored in Redis on every CONNECT), reconnecting as
    // devices do, publishing QoS 1 without waiting for each PUBACK.
    const acked = new Set<number>();
    let closes = 0;
    const device = await connect(a.url, {
      clientId: DEVICE.id,
      username: DEVICE.id,
      password: deviceSecret,
      reconnectPeriod: 500,
      will: { topic: STATUS, payload: Buffer.from(JSON.stringify({ status: 'offline', ts: 0 })), qos: 1, retain: true },
    });
    device.on('close', () => closes++);
    let seq = 0;
    let stop = false;
    const publishing = (async () => {
      while (!stop) {
        const n = ++seq;
        device.publishAsync(TELEMETRY, JSON.stringify({ ts: Date.now(), seq: n, pm25: 10 }), { qos: 1 }).then(
          () => acked.add(n),
          () => undefined, // never acknowledged: not counted
        );
        await sleep(20);
      }
    })();
    try {
      await waitFor('messages flowing from node A to node B', () => (received.size >= 50 ? true : undefined), 30_000);

      const port = redis.port;
      await redis.stop();
      const down = Date.now();
      for (const node of nodes) {
        await waitFor(`node ${node.name} not ready`, async () => ((await ops(node, '/readyz')).status === 503 ? true : undefined), 30_000, 200);
        expect(await ops(node, '/healthz')).toMatchObject({ status: 200, body: { status: 'ok', store: 'redis', redis: 'unreachable' } });
      }
      // From here nothing can be stored, so nothing may be acknowledged.
      const ackedWhileDown = acked.size;
      const closesAtOutage = closes;
      // The publishes that cannot be stored fail; node A ends the device's connection (MQTT 3.1.1 has no negative PUBACK).
      await waitFor('node A to refuse the device', () => (closes > closesAtOutage ? true : undefined), 60_000, 100);
      // The outage's length is what is under test: past every retry budget, with the device reconnecting meanwhile.
      await sleep(Math.max(0, OUTAGE_MS - (Date.now() - down)));
      expect(acked.size).toBe(ackedWhileDown);
      for (const node of nodes) expect(node.alive(), `node ${node.name}: ${node.output().slice(-2000)}`).toBe(true);

      redis = await startRedis({ dataDir: join(workDir, 'redis'), port });
      for (const node of nodes) await waitFor(`node ${node.name} ready again`, async () => ((await ops(node, '/readyz')).status === 200 ? true : undefined), 60_000, 200);
      expect(await ops(a, '/healthz')).toMatchObject({ status: 200, body: { redis: 'up' } });

      // The device is back on node A by itself, and what it publishes now reaches node B's subscriber.
      await waitFor('the device reconnected', () => (device.connected ? true : undefined), 60_000, 100);
      const firstAfter = seq + 1;
      await waitFor('new messages acknowledged and delivered across the nodes', () => ([...received].some((n) => n >= firstAfter) && [...acked].some((n) => n >= firstAfter) ? true : undefined), 60_000, 100);
      stop = true;
      await publishing;
      const marker = seq + 1_000_000;
      await device.publishAsync(TELEMETRY, JSON.stringify({ ts: Date.now(), seq: marker, pm25: 10 }), { qos: 1 });
      await waitFor('the marker on node B', () => (received.has(marker) ? true : undefined), 30_000);
      // Stored but not routed as Redis went (the PUBLISH after the queueing failed): node B's
      // queue sweep delivers them to the subscriber, still connected, within a few sweeps.
      const missing = () => [...acked].filter((n) => !received.has(n));
      console.log(`[redis-outage] ${acked.size} acknowledged, ${missing().length} not at node B when the marker arrived`);
      await waitFor(`every acknowledged message at node B (missing: ${missing().slice(0, 20).join(', ')})`, () => (missing().length === 0 ? true : undefined), 60_000, 200);

      for (const node of nodes) {
        expect(node.alive(), `node ${node.name}: ${node.output().slice(-2000)}`).toBe(true);
        expect(node.output()).toContain('MQTT session store (Redis) is back after');
        expect(node.output()).not.toMatch(/MaxRetriesPerRequestError: Reached|triggerUncaughtException/);
      }
    } finally {
      stop = true;
      await publishing;
    }
  });

  it('subscribes again after a reconnect to a topic a client subscribed to while Redis was away', { timeout: 120_000 }, async () => {
    // In process: two routers as two nodes, on a Redis of their own.
    const own = await startRedis({ dataDir: join(workDir, 'redis-router') });
    let server = own;
    const logger = pino({ level: 'silent' });
    const routers: RedisRouter[] = [];
    try {
      const [here, there] = [await createRedisRouter(10, own.url, logger), await createRedisRouter(10, own.url, logger)];
      routers.push(here, there);
      const port = own.port;
      await own.stop();
      const got: string[] = [];
      const subscribed = new Promise<void>((resolve) => {
        emitter(here).on(
          'city/01/+/+/telemetry',
          (packet, done) => {
            got.push(packet.topic);
            done();
          },
          resolve,
        );
      });
      // mqemitter-redis answers the subscription once Redis refused it (the retry budget spent).
      await subscribed;
      server = await startRedis({ dataDir: join(workDir, 'redis-router'), port });
      await waitFor('both routers connected', () => (routers.every((r) => r.connected()) ? true : undefined), 30_000);
      await waitFor(
        'a message from the other router',
        () => {
          if (got.length > 0) return true;
          emitter(there).emit({ topic: 'city/01/environment/hn-air-07/telemetry', payload: Buffer.from('{}'), qos: 0, retain: false }, () => undefined);
          return undefined;
        },
        30_000,
        200,
      );
      expect(got[0]).toBe('city/01/environment/hn-air-07/telemetry');
    } finally {
      for (const r of routers) await new Promise<void>((resolve) => emitter(r).close(resolve));
      await server.stop();
    }
  });
});
