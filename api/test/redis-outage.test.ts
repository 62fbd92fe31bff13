import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { io as connectSocket, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBroker, listenMqttTcp, type PlatformBroker } from '@citypulse/broker';
import { DeviceRegistry } from '@citypulse/broker/registry';
import { alertId, opsTopic, SOCKET_IO_PATH, type AlertAck, type AlertEvent, type AlertView, type ReplayAck, type ReplayState } from '@citypulse/contracts';
import { alertEventLine, ensureStorage } from '@citypulse/ingest/storage';
import { freePort, Influx, SERVICE_NODE_FLAGS, startInfluxd, startRedis, waitFor, type RunningInfluxd, type RunningRedis } from '@citypulse/infra';
import { OperatorStore } from '../src/index.js';

/**
 * Two api processes (src/server.ts, API_ADAPTER=redis) through a Redis outage longer than the
 * connections' retry budget, while an operator acknowledges alerts on node A and controls from
 * node B a replay running on node A; then Redis starts again on the same port. Before, the
 * adapter's PUBLISH of the acknowledgement (sent without waiting on it) was rejected after
 * ioredis' retries and the unhandled rejection ended node A, and the replay control waited for
 * an answer that never came. A real Redis, InfluxDB and broker; no timing asserted beyond generous waits.
 */
const PASSWORD = 'a-long-enough-password';
const FEEDER = { id: 'hcm-feeder-31', province: '79', domain: 'energy' as const, kind: 'feeder-22kv', location: [106.7, 10.78] as const };
/** Past what a command waits through (REDIS_CLIENT_DEFAULTS: ~5 s, then ~12 s) and ioredis' default (~10 s, when node A ended). */
const OUTAGE_MS = 25_000;

interface ApiNode {
  readonly name: string;
  readonly url: string;
  readonly child: ChildProcess;
  output(): string;
  alive(): boolean;
}

interface Screen {
  readonly socket: Socket;
  readonly acks: AlertAck[];
  readonly replay: ReplayState[];
}

describe('api cluster through a Redis outage', () => {
  let dir: string;
  let redis: RunningRedis;
  let influxd: RunningInfluxd;
  let influx: Influx;
  let registry: DeviceRegistry;
  let broker: PlatformBroker;
  let mqttServer: Server;
  let ingest: MqttClient;
  const nodes: ApiNode[] = [];
  const sockets: Socket[] = [];
  const tokens: Record<string, string> = {};

  const startNode = async (name: string, env: Record<string, string>): Promise<ApiNode> => {
    const port = await freePort();
    const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, '--import', 'tsx', 'src/server.ts'], {
      cwd: join(import.meta.dirname, '..'),
      env: { ...process.env, ...env, API_PORT: String(port), API_HOST: '127.0.0.1', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.stderr?.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const node: ApiNode = { name, url: `http://127.0.0.1:${port}`, child, output: () => out, alive: () => child.exitCode === null && child.signalCode === null };
    nodes.push(node);
    return node;
  };

  const health = async (node: ApiNode) => {
    if (!node.alive()) throw new Error(`api ${node.name} exited (${String(node.child.exitCode)}): ${node.output().slice(-2000)}`);
    const res = await fetch(`${node.url}/healthz`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  };

  const screen = async (node: ApiNode, who: string): Promise<Screen> => {
    const socket = connectSocket(node.url, { path: SOCKET_IO_PATH, auth: { token: tokens[who] }, transports: ['websocket'], reconnection: false });
    sockets.push(socket);
    const got: Screen = { socket, acks: [], replay: [] };
    socket.on('alertAck', (ack: AlertAck) => got.acks.push(ack));
    socket.on('replayState', (state: ReplayState) => got.replay.push(state));
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('connect_error', reject);
    });
    await socket.timeout(5000).emitWithAck('subscribe', { provinces: [FEEDER.province], domains: [FEEDER.domain] });
    return got;
  };
  const control = (s: Screen, request: object) => s.socket.timeout(30_000).emitWithAck('replayControl', request) as Promise<ReplayAck>;

  let raised = 0;
  /** What ingest does with an alert (stored, then published; both nodes hear it), then otto acknowledges it on `node`. */
  const raiseAndAck = async (node: ApiNode) => {
    const raisedAt = Date.now() - 1000 - raised++;
    const event: AlertEvent = { id: alertId('frequency-low', FEEDER.id, raisedAt), ruleId: 'frequency-low', kind: 'threshold', state: 'raised', severity: 'critical', deviceId: FEEDER.id, province: FEEDER.province, domain: FEEDER.domain, field: 'frequency', value: 49.5, threshold: 49.8, message: 'frequency below 49.8 Hz (49.5)', raisedAt, ts: raisedAt };
    await influx.writeLines([alertEventLine(event)]);
    await ingest.publishAsync(opsTopic(event.province, 'alerts'), JSON.stringify(event), { qos: 1 });
    const headers = { authorization: `Bearer ${tokens.otto}`, 'content-type': 'application/json' };
    await waitFor(`alert ${event.id} on node ${node.name}`, async () => {
      const res = await fetch(`${node.url}/api/v1/alerts/active`, { headers });
      return ((await res.json()) as { alerts: AlertView[] }).alerts.some((a) => a.id === event.id) ? true : undefined;
    });
    const res = await fetch(`${node.url}/api/v1/alerts/ack`, { method: 'POST', headers, body: JSON.stringify({ id: event.id }) });
    expect(res.status, await res.clone().text()).toBe(200);
    return event.id;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-api-redis-outage-'));
    [redis, influxd] = await Promise.all([startRedis({ dataDir: join(dir, 'redis') }), startInfluxd({ dataDir: join(dir, 'influxdb') })]);
    influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
    await ensureStorage(influx, { rawRetention: '30d', rollup1mRetention: '90d', rollup1hRetention: '730d', continuousQueries: false });
    registry = await DeviceRegistry.open(dir);
    await registry.upsertDevices([FEEDER]);
    const apiSecret = await registry.upsertService('api', 'api');
    const ingestSecret = await registry.upsertService('ingest', 'ingest');
    broker = await buildBroker({ registry, logger: pino({ level: 'silent' }) });
    mqttServer = await listenMqttTcp(broker, 0, '127.0.0.1');
    const mqttUrl = `mqtt://127.0.0.1:${(mqttServer.address() as AddressInfo).port}`;
    ingest = await mqtt.connectAsync(mqttUrl, { clientId: 'ingest-outage-test', username: 'ingest', password: ingestSecret, protocolVersion: 4 });
    const operators = await OperatorStore.open(dir);
    await operators.upsert('otto', 'operator', PASSWORD);
    await operators.upsert('vera', 'viewer', PASSWORD);
    operators.close();
    const env = { DATA_DIR: dir, INFLUX_URL: influxd.url, MQTT_URL: mqttUrl, API_MQTT_PASSWORD: apiSecret, API_ADAPTER: 'redis', REDIS_URL: `${redis.url}/0`, DASHBOARD_DIR: join(dir, 'no-dashboard'), FRAME_INTERVAL_MS: '100' };
    await Promise.all([startNode('a', env), startNode('b', env)]);
    for (const node of nodes) {
      await waitFor(`api ${node.name} to start (output so far: ${node.output().slice(-400)})`, async () => (node.alive() ? ((await health(node).catch(() => undefined))?.status === 200 ? true : undefined) : true), 60_000, 100);
      expect(node.alive(), node.output().slice(-2000)).toBe(true);
    }
    for (const who of ['otto', 'vera']) {
      const res = await fetch(`${nodes[0]?.url}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: who, password: PASSWORD }) });
      tokens[who] = ((await res.json()) as { token: string }).token;
    }
  }, 120_000);

  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    for (const node of nodes) if (node.alive()) node.child.kill('SIGTERM');
    await Promise.all(nodes.map((n) => (n.alive() ? Promise.race([new Promise((resolve) => n.child.once('exit', resolve)), sleep(15_000)]) : Promise.resolve())));
    await ingest?.endAsync();
    await broker?.close();
    await new Promise((resolve) => mqttServer?.close(resolve));
    registry?.close();
    await Promise.all([influxd?.stop(), redis?.stop()]);
    if (dir) await rm(dir, { recursive: true, force: true });
  }, 60_000);

  it('keeps serving each node\'s screens, answers a replay control for the other node with E_UPSTREAM, and joins the nodes again once Redis is back', { timeout: 240_000 }, async () => {
    const [a, b] = nodes as [ApiNode, ApiNode];
    const onA = await screen(a, 'vera');
    const onB = await screen(b, 'vera');
    const desk = await screen(a, 'otto'); // runs the replay
    const wall = await screen(b, 'otto'); // controls it from the other node
    expect((await health(a)).body).toMatchObject({ status: 'ok', redis: true });

    const before = await raiseAndAck(a);
    await waitFor('the acknowledgement on node B before the outage', () => onB.acks.find((x) => x.id === before));
    const started = (await desk.socket.timeout(10_000).emitWithAck('replayStart', { from: Date.now() - 3_600_000, to: Date.now() - 3_000_000, speed: 1, provinces: [FEEDER.province], domains: [FEEDER.domain] })) as ReplayAck;
    expect(started).toMatchObject({ ok: true });
    const replayId = (started as { replay: ReplayState }).replay.replayId as string;

    const port = redis.port;
    await redis.stop();
    const down = Date.now();
    for (const node of nodes) await waitFor(`node ${node.name} degraded`, async () => ((await health(node)).status === 503 ? true : undefined), 30_000, 200);
    expect((await health(a)).body).toMatchObject({ status: 'degraded', mqtt: true, influx: true, redis: false });

    // Busy through the outage: acknowledgements on node A (its screens get them: they are local),
    // controls from node B (refused at once: the node holding the replay cannot be asked).
    let rounds = 0;
    const duringOutage: string[] = [];
    while (Date.now() - down < OUTAGE_MS) {
      const id = await raiseAndAck(a);
      duringOutage.push(id);
      await waitFor('the acknowledgement on node A\'s own screen', () => onA.acks.find((x) => x.id === id));
      expect(await control(wall, { action: 'pause', replayId })).toMatchObject({ ok: false, error: { code: 'E_UPSTREAM' } });
      rounds++;
      await sleep(1000);
    }
    expect(rounds).toBeGreaterThan(1);
    // Node B's screen did not hear them (Redis carries them between nodes).
    expect(onB.acks.filter((x) => duringOutage.includes(x.id))).toEqual([]);
    for (const node of nodes) expect(node.alive(), `api ${node.name}: ${node.output().slice(-2000)}`).toBe(true);

    redis = await startRedis({ dataDir: join(dir, 'redis'), port });
    for (const node of nodes) await waitFor(`node ${node.name} healthy again`, async () => ((await health(node)).status === 200 ? true : undefined), 60_000, 200);
    expect((await health(b)).body).toMatchObject({ status: 'ok', redis: true });

    // The acknowledgements made during the outage reach node B's screen once the nodes are joined again.
    await waitFor('the outage\'s acknowledgements on node B', () => (duringOutage.every((id) => onB.acks.some((x) => x.id === id)) ? true : undefined), 30_000);

    // Joined again, without a restart: an acknowledgement on A reaches B's screen, a control from B reaches A's replay.
    const after = await raiseAndAck(a);
    await waitFor('the acknowledgement on node B after the outage', () => onB.acks.find((x) => x.id === after), 30_000);
    expect(await control(wall, { action: 'pause', replayId })).toMatchObject({ ok: true, replay: { state: 'paused', replayId } });
    await waitFor('the pause on the replaying screen', () => desk.replay.find((s) => s.state === 'paused'));

    for (const node of nodes) {
      expect(node.alive(), `api ${node.name}: ${node.output().slice(-2000)}`).toBe(true);
      expect(node.output()).toContain('api cluster (publish) (Redis) is back after');
    }
    // Node A told the others what it acknowledged meanwhile.
    expect(a.output()).toMatch(/"told":[1-9]\d*,.*api cluster: joined again; acknowledgements of the outage exchanged/);
  });
});
