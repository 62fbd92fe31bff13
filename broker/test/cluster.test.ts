import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as connectTcp } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { IClientOptions, MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic, TOPIC_FILTERS, type Domain } from '@citypulse/contracts';
import { freePort, SERVICE_NODE_FLAGS, startRedis, startTcpFront, waitFor, type RunningRedis, type TcpFront } from '@citypulse/infra';
import { DeviceRegistry } from '../src/registry.js';
import { connectTracked } from './mqtt-client.js';

/**
 * A broker cluster as `npm run cluster` runs it: broker processes (src/server.ts) with
 * BROKER_MQ=redis and BROKER_STORE=redis on one private Redis, sharing a device registry, and a
 * TCP front handing connections to the nodes in turn. Real processes, real sockets, a real Redis;
 * a node is killed with SIGKILL, as a crash or an OOM kill would. Every connection goes through
 * a front sending PROXY v2 (BROKER_PROXY_PROTOCOL=true), as behind HAProxy: a node's `url` is a
 * front of its own, for the tests that need one node.
 */
const BROKER_DIR = join(import.meta.dirname, '..');
const INGEST_ID = 'ingest-cluster-test';
const DEVICES = [
  { id: 'hn-air-01', province: '01', domain: 'environment' as Domain, location: [105.85, 21.03] as const },
  { id: 'hcm-trf-01', province: '79', domain: 'traffic' as Domain, location: [106.7, 10.78] as const },
  { id: 'dn-grid-01', province: '48', domain: 'energy' as Domain, location: [108.2, 16.05] as const },
  { id: 'hp-air-02', province: '31', domain: 'environment' as Domain, location: [106.68, 20.86] as const },
];
const telemetryOf = (d: (typeof DEVICES)[number]) => deviceTopic({ province: d.province, domain: d.domain, deviceId: d.id }, 'telemetry');
const statusOf = (d: (typeof DEVICES)[number]) => deviceTopic({ province: d.province, domain: d.domain, deviceId: d.id }, 'status');

interface BrokerNode {
  readonly name: string;
  /** The node's own MQTT port (it takes PROXY v2 connections only). */
  readonly port: number;
  /** A TCP front to this node alone. */
  readonly url: string;
  readonly child: ChildProcess;
  output(): string;
  readonly exited: Promise<number | null>;
}

let redis: RunningRedis;
let workDir: string;
let dataDir: string;
let registry: DeviceRegistry;
let ingestSecret: string;
const secrets = new Map<string, string>();
const nodes: BrokerNode[] = [];
const fronts: TcpFront[] = [];
const clients: MqttClient[] = [];

async function startNode(name: string, env: Record<string, string> = {}): Promise<BrokerNode> {
  const port = await freePort();
  const front = await startTcpFront({ backends: [{ host: '127.0.0.1', port }], proxyProtocol: 'v2' });
  fronts.push(front);
  const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, '--import', 'tsx', 'src/server.ts'], {
    cwd: BROKER_DIR,
    env: {
      ...process.env,
      DATA_DIR: dataDir,
      MQTT_HOST: '127.0.0.1',
      MQTT_PORT: String(port),
      MQTT_WS_PORT: '0',
      BROKER_HTTP_PORT: '0',
      BROKER_STORE: 'redis',
      BROKER_MQ: 'redis',
      BROKER_PROXY_PROTOCOL: 'true',
      REDIS_URL: `${redis.url}/0`,
      // The publishers below are far over a device's rate: the limit is not under test here.
      BROKER_RATE_PER_S: '100000',
      BROKER_RATE_BURST: '100000',
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const node: BrokerNode = { name, port, url: front.url, child, output: () => out, exited };
  nodes.push(node);
  return node;
}

async function started(node: BrokerNode): Promise<BrokerNode> {
  await waitFor(`broker ${node.name} to start (output so far: ${node.output().slice(-400)})`, () => (node.output().includes('broker listening') ? true : undefined), 60_000, 50);
  return node;
}

const connect = (url: string, options: IClientOptions) => connectTracked(clients, url, options);

const deviceClient = (url: string, device: (typeof DEVICES)[number], options: IClientOptions = {}) =>
  connect(url, { clientId: device.id, username: device.id, password: secrets.get(device.id) ?? '', reconnectPeriod: 0, ...options });

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'citypulse-broker-cluster-'));
  dataDir = join(workDir, 'data');
  redis = await startRedis({ dataDir: join(workDir, 'redis') });
  registry = await DeviceRegistry.open(dataDir);
  ingestSecret = await registry.upsertService(INGEST_ID, 'ingest');
  for (const created of await registry.upsertDevices(DEVICES)) secrets.set(created.id, created.secret ?? '');
  // Two nodes started together (each is a tsx start-up; they share the 2 cores).
  await Promise.all([startNode('a'), startNode('b')]);
  await Promise.all(nodes.map(started));
}, 120_000);

afterAll(async () => {
  for (const client of clients) client.end(true);
  for (const node of nodes) if (node.child.exitCode === null && node.child.signalCode === null) node.child.kill('SIGTERM');
  await Promise.all(nodes.map((n) => Promise.race([n.exited, sleep(15_000)])));
  for (const front of fronts) await front.close();
  registry?.close();
  await redis?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
}, 60_000);

describe('broker cluster (BROKER_MQ=redis, BROKER_STORE=redis)', () => {
  it('delivers to a subscriber on one node what a device publishes on another, at QoS 0 and 1', async () => {
    const [a, b] = nodes as [BrokerNode, BrokerNode];
    const ingest = await connect(b.url, { clientId: `${INGEST_ID}-live`, username: INGEST_ID, password: ingestSecret, reconnectPeriod: 0 });
    const got: { topic: string; seq: number; qos: number }[] = [];
    ingest.on('message', (topic, payload, packet) => got.push({ topic, seq: (JSON.parse(payload.toString()) as { seq: number }).seq, qos: packet.qos }));
    await ingest.subscribeAsync(TOPIC_FILTERS.allTelemetry, { qos: 1 });

    const device = DEVICES[0] as (typeof DEVICES)[number];
    const dev = await deviceClient(a.url, device);
    await dev.publishAsync(telemetryOf(device), JSON.stringify({ ts: Date.now(), seq: 1, pm25: 10 }), { qos: 0 });
    await dev.publishAsync(telemetryOf(device), JSON.stringify({ ts: Date.now(), seq: 2, pm25: 11 }), { qos: 1 });
    await waitFor('both messages on the other node', () => (got.length >= 2 ? true : undefined), 15_000);
    expect(got).toEqual([
      { topic: telemetryOf(device), seq: 1, qos: 0 },
      { topic: telemetryOf(device), seq: 2, qos: 1 },
    ]);
    // Each message once, although it went through Redis and every node hears it.
    await sleep(300);
    expect(got).toHaveLength(2);
    await dev.endAsync();
    await ingest.endAsync();
  });

  it('shows a retained message stored through one node to a subscriber on another', async () => {
    const [a, b] = nodes as [BrokerNode, BrokerNode];
    const device = DEVICES[1] as (typeof DEVICES)[number];
    const dev = await deviceClient(a.url, device);
    await dev.publishAsync(statusOf(device), JSON.stringify({ status: 'online', ts: Date.now() }), { qos: 1, retain: true });
    await dev.endAsync();

    const reader = await connect(b.url, { clientId: `${INGEST_ID}-retained`, username: INGEST_ID, password: ingestSecret, reconnectPeriod: 0 });
    const retained = new Promise<{ topic: string; retain: boolean; status: string }>((resolve) =>
      reader.on('message', (topic, payload, packet) => resolve({ topic, retain: packet.retain, status: (JSON.parse(payload.toString()) as { status: string }).status })),
    );
    await reader.subscribeAsync(TOPIC_FILTERS.allStatus, { qos: 1 });
    expect(await retained).toEqual({ topic: statusOf(device), retain: true, status: 'online' });
    await reader.endAsync();
  });

  it('loses no acknowledged QoS 1 message when a node is killed mid-stream: its devices and subscriber reconnect through the front to the other node', { timeout: 120_000 }, async () => {
    const [a, b] = nodes as [BrokerNode, BrokerNode];
    const front: TcpFront = await startTcpFront({ backends: [a, b].map((n) => ({ host: '127.0.0.1', port: n.port })), proxyProtocol: 'v2' });
    try {
      // ingest's way: a fixed client id, a persistent session, QoS 1.
      const received = new Map<string, Set<number>>();
      let deliveries = 0;
      const ingest = await connect(front.url, { clientId: INGEST_ID, username: INGEST_ID, password: ingestSecret, clean: false, reconnectPeriod: 250 });
      ingest.on('message', (topic, payload) => {
        deliveries++;
        const { seq } = JSON.parse(payload.toString()) as { seq: number };
        const seen = received.get(topic) ?? new Set<number>();
        seen.add(seq);
        received.set(topic, seen);
      });
      await ingest.subscribeAsync(TOPIC_FILTERS.allTelemetry, { qos: 1 });
      expect(front.handed).toEqual([1, 0]); // the subscriber is on the node about to be killed

      // Four devices through the front: round robin puts two on each node (the subscriber took one turn).
      const acked = new Map<string, Set<number>>();
      const devices = await Promise.all(DEVICES.map((d) => deviceClient(front.url, d, { reconnectPeriod: 250 }).then((client) => ({ d, client }))));
      expect(front.handed.every((n) => n > 0)).toBe(true);
      let stop = false;
      const publishing = devices.map(async ({ d, client }) => {
        const topic = telemetryOf(d);
        acked.set(topic, new Set());
        for (let seq = 1; !stop; seq++) {
          // Not awaited in turn: up to a window of messages in flight, as a busy gateway has.
          const sent = client.publishAsync(topic, JSON.stringify({ ts: Date.now(), seq, v: seq }), { qos: 1 }).then(
            () => acked.get(topic)?.add(seq),
            () => undefined, // never acknowledged: not counted
          );
          if (seq % 20 === 0) await sent;
          await sleep(2);
        }
      });
      const ackedCount = () => [...acked.values()].reduce((n, s) => n + s.size, 0);
      await waitFor('a stream going through both nodes', () => (ackedCount() >= 400 ? true : undefined), 30_000);

      a.child.kill('SIGKILL');
      expect(await a.exited).toBeNull(); // killed, not exited
      const ackedAtKill = ackedCount();
      // The devices that were on the dead node come back through the front, to the live one.
      await waitFor('publishing to resume on the surviving node', () => (ackedCount() >= ackedAtKill + 400 ? true : undefined), 60_000);
      stop = true;
      await Promise.all(publishing);
      // Let in-flight publishes settle (acknowledged or given up) before counting.
      await waitFor('every device connected and nothing in flight', () => (devices.every(({ client }) => client.connected && Object.keys((client as unknown as { outgoing: object }).outgoing).length === 0) ? true : undefined), 30_000);

      const missing = () => {
        let n = 0;
        for (const [topic, seqs] of acked) for (const seq of seqs) if (!received.get(topic)?.has(seq)) n++;
        return n;
      };
      await waitFor(`every acknowledged message at the subscriber (missing ${missing()})`, () => (missing() === 0 ? true : undefined), 60_000);
      const total = ackedCount();
      expect(total).toBeGreaterThan(800);
      expect(missing()).toBe(0);
      // At least once: a redelivery after the kill is allowed (QoS 1), a loss is not.
      expect(deliveries).toBeGreaterThanOrEqual(total);
      expect(b.child.exitCode).toBeNull();
      console.info(`[cluster] ${total} QoS 1 messages acknowledged (${ackedAtKill} before the kill), ${deliveries} deliveries, none missing; connections handed per node: ${front.handed.join(' / ')}`);
      for (const { client } of devices) await client.endAsync();
      await ingest.endAsync();
    } finally {
      await front.close();
    }
  });

  it('answers a persistent session\'s SUBSCRIBE of many filters (ingest\'s 34) with one SUBACK', async () => {
    // Through Redis, aedes-persistence-redis' broadcast of each stored filter list came back after
    // the next store had overwritten its wait: the SUBACK of two or more filters never came.
    const [, b] = nodes as [BrokerNode, BrokerNode];
    const filters = Array.from({ length: 17 }, (_, i) => String(i + 1).padStart(2, '0')).flatMap((p) => [TOPIC_FILTERS.provinceTelemetry(p), TOPIC_FILTERS.provinceStatus(p)]);
    const ingest = await connect(b.url, { clientId: `${INGEST_ID}-many`, username: INGEST_ID, password: ingestSecret, clean: false, reconnectPeriod: 0 });
    const granted = await ingest.subscribeAsync(filters, { qos: 1 });
    expect(granted.map((g) => g.qos)).toEqual(filters.map(() => 1));
    // And again on a session that has them (ingest's reconnect).
    expect((await ingest.subscribeAsync(filters, { qos: 1 })).length).toBe(34);
    await ingest.endAsync();
  });

  it('knows each device\'s own address behind the front (BROKER_PROXY_PROTOCOL=true), and every connection so far came with a valid header', async () => {
    const [, b] = nodes as [BrokerNode, BrokerNode];
    expect(b.output()).toContain('"proxyProtocol":"on (MQTT over TCP and TLS)"');
    // An anonymous CONNECT from 127.0.0.2 through the node's front: refused, logged with that address.
    const socket = connectTcp({ host: '127.0.0.1', port: Number(new URL(b.url).port), localAddress: '127.0.0.2' });
    socket.on('error', () => undefined);
    socket.end(Buffer.from([0x10, 0x0d, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, 0x64]));
    await waitFor('the refused login in the log', () => (/"code":"E_AUTH"[^\n]*"address":"127\.0\.0\.2"/.test(b.output()) ? true : undefined), 10_000);
    for (const node of nodes) expect(node.output()).not.toContain('E_PROXY_HEADER');
  });

  it('refuses BROKER_MQ=redis without BROKER_STORE=redis, saying why', async () => {
    const node = await startNode('misconfigured', { BROKER_STORE: 'disk', DATA_DIR: join(workDir, 'misconfigured') });
    expect(await node.exited).toBe(1);
    expect(node.output()).toContain('BROKER_MQ=redis (a broker cluster) needs BROKER_STORE=redis');
    expect(node.output()).toContain('E_CONFIG');
  }, 60_000);
});
