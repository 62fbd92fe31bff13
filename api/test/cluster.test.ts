import { randomUUID } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBroker, listenMqttTcp, type PlatformBroker } from '@citypulse/broker';
import { DeviceRegistry } from '@citypulse/broker/registry';
import {
  alertId,
  CodedError,
  deviceTopic,
  flattenReading,
  opsTopic,
  readConfig,
  type AlertAck,
  type AlertEvent,
  type AlertView,
  type EnergyReading,
  type ReplayAck,
  type ReplayState,
} from '@citypulse/contracts';
import { readingLine } from '@citypulse/ingest';
import { alertEventLine, ensureStorage } from '@citypulse/ingest/storage';
import { freePort, Influx, startInfluxd, startRedis, waitFor, type RunningInfluxd, type RunningRedis } from '@citypulse/infra';
import { AlertBook } from '../src/alerts.js';
import { CLUSTER_DEFAULTS } from '../src/cluster.js';
import { API_CONFIG, buildApi, OperatorStore, SessionSigner, type ApiApp } from '../src/index.js';
import { recordingScreen, type Screen } from './screen.js';

/**
 * Cluster mode (issue 8): two api nodes joined by @socket.io/redis-adapter over a real Redis, on
 * loopback, with a real broker and a real InfluxDB. What one node alone knows crosses to the
 * other (acknowledgements, replay controls and states); what both build from MQTT does not (each
 * screen gets each live frame once).
 */

const FRAME_MS = 100;
/** Short, so the test of a peer that never answers does not wait the production 10 s. */
const PEER_TIMEOUT_MS = 2000;
const PASSWORD = 'a-long-enough-password';
const FEEDER = { id: 'hcm-feeder-21', province: '79', domain: 'energy' as const, kind: 'feeder-22kv' };
const PROFILE = { ratedPowerVA: 10_000_000, nominalPhaseVoltageV: 12_700 };
const TELEMETRY = deviceTopic({ province: FEEDER.province, domain: FEEDER.domain, deviceId: FEEDER.id }, 'telemetry');

function energyReading(ts: number, seq: number): EnergyReading {
  return { ts, seq, frequency: 50, totalActivePower: 6e6 + seq, totalReactivePower: 2e6, powerFactor: 0.95, phaseVoltage: { L1: 12_700, L2: 12_700, L3: 12_700 }, current: { L1: 166, L2: 166, L3: 166 } };
}

function alertEvent(ruleId: string, raisedAt: number, state: AlertEvent['state'] = 'raised'): AlertEvent {
  return { id: alertId(ruleId, FEEDER.id, raisedAt), ruleId, kind: 'threshold', state, severity: 'critical', deviceId: FEEDER.id, province: FEEDER.province, domain: 'energy', field: 'frequency', value: 49.5, threshold: 49.8, message: 'frequency below 49.8 Hz (49.5)', raisedAt, ts: raisedAt };
}

describe('api cluster: two nodes joined through Redis', () => {
  let dir: string;
  let influxd: RunningInfluxd;
  let influx: Influx;
  let redis: RunningRedis;
  let registry: DeviceRegistry;
  let operators: OperatorStore;
  let broker: PlatformBroker;
  let mqttServer: Server;
  let mqttUrl: string;
  let apiSecret: string;
  let ingestClient: MqttClient;
  let feederClient: MqttClient;
  const nodes: { a?: ApiApp; b?: ApiApp } = {};
  const urls: Record<'a' | 'b', string> = { a: '', b: '' };
  const tokens: Record<string, string> = {};
  const sockets: Socket[] = [];
  const spies: Redis[] = [];

  const node = (name: 'a' | 'b'): ApiApp => {
    const api = nodes[name];
    if (!api) throw new Error(`node ${name} is not running`);
    return api;
  };

  const startNode = async (name: 'a' | 'b') => {
    const api = await buildApi({
      influx,
      registry,
      operators,
      // The same DATA_DIR: the same session key, so a login on one node is valid on the other.
      sessions: await SessionSigner.fromDataDir(dir, 3_600_000),
      logger: pino({ level: process.env.TEST_LOG ?? 'silent' }).child({ node: name }),
      mqtt: { url: mqttUrl, username: 'api', password: apiSecret },
      dashboardDir: join(dir, 'no-dashboard'),
      dataDir: dir,
      frameIntervalMs: FRAME_MS,
      adapter: { kind: 'redis', url: redis.url, peerTimeoutMs: PEER_TIMEOUT_MS },
    });
    nodes[name] = api;
    await api.app.listen({ port: 0, host: '127.0.0.1' });
    urls[name] = `http://127.0.0.1:${(api.app.server.address() as AddressInfo).port}`;
    await waitFor(`node ${name} to reach the broker`, () => (api.mqtt.connected ? true : undefined));
  };

  const call = (name: 'a' | 'b', method: 'GET' | 'POST', path: string, who: string, payload?: object) =>
    node(name).app.inject({ method, url: `/api/v1${path}`, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload === undefined ? {} : { payload }) });

  /** A dashboard connected to one node, recording what it receives. */
  const screen = (name: 'a' | 'b', who: string): Promise<Screen> => recordingScreen(urls[name], tokens[who], sockets);
  const subscribe = (socket: Socket, provinces: string[], domains?: string[]) => socket.timeout(5000).emitWithAck('subscribe', domains ? { provinces, domains } : { provinces }) as Promise<{ ok: boolean }>;
  const replayStart = (socket: Socket, request: object) => socket.timeout(10_000).emitWithAck('replayStart', request) as Promise<ReplayAck>;
  const control = (socket: Socket, request: object) => socket.timeout(15_000).emitWithAck('replayControl', request) as Promise<ReplayAck>;

  /** A plain Redis connection beside the nodes: watches the adapter's channels, or plays a peer. */
  const spy = async () => {
    const conn = new Redis(redis.url);
    spies.push(conn);
    await conn.ping();
    return conn;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-api-cluster-'));
    [influxd, redis] = await Promise.all([startInfluxd({ dataDir: join(dir, 'influxdb') }), startRedis({ dataDir: join(dir, 'redis') })]);
    influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
    await ensureStorage(influx, { rawRetention: '30d', rollup1mRetention: '90d', rollup1hRetention: '730d', continuousQueries: false });
    registry = await DeviceRegistry.open(dir);
    const [{ secret: feederSecret }] = (await registry.upsertDevices([{ ...FEEDER, location: [106.7, 10.78], profile: PROFILE }])) as [{ id: string; secret: string }];
    apiSecret = await registry.upsertService('api', 'api');
    const ingestSecret = await registry.upsertService('ingest', 'ingest');
    broker = await buildBroker({ registry, logger: pino({ level: 'silent' }) });
    mqttServer = await listenMqttTcp(broker, 0, '127.0.0.1');
    mqttUrl = `mqtt://127.0.0.1:${(mqttServer.address() as AddressInfo).port}`;
    ingestClient = await mqtt.connectAsync(mqttUrl, { clientId: 'ingest-under-test', username: 'ingest', password: ingestSecret, protocolVersion: 4 });
    feederClient = await mqtt.connectAsync(mqttUrl, { clientId: FEEDER.id, username: FEEDER.id, password: feederSecret, protocolVersion: 4 });
    operators = await OperatorStore.open(dir);
    await operators.upsert('root', 'admin', PASSWORD);
    await operators.upsert('otto', 'operator', PASSWORD);
    await operators.upsert('olga', 'operator', PASSWORD);
    await operators.upsert('vera', 'viewer', PASSWORD);
    await startNode('a');
    await startNode('b');
    // Each node connects to the broker with its own client id (a shared one would take the other's session).
    expect(node('a').mqtt.options.clientId).not.toBe(node('b').mqtt.options.clientId);
    for (const who of ['root', 'otto', 'olga', 'vera']) {
      const res = await node('a').app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: who, password: PASSWORD } });
      tokens[who] = res.json<{ token: string }>().token;
    }
  }, 90_000);

  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    for (const conn of spies) conn.disconnect();
    await nodes.a?.close();
    await nodes.b?.close();
    await feederClient?.endAsync();
    await ingestClient?.endAsync();
    await broker?.close();
    await new Promise((resolve) => mqttServer?.close(resolve));
    await Promise.all([influxd?.stop(), redis?.stop()]);
    await rm(dir, { recursive: true, force: true });
  });

  /** What ingest does with an alert event: stored, then published (both nodes hear it). */
  const raise = async (event: AlertEvent) => {
    await influx.writeLines([alertEventLine(event)]);
    await ingestClient.publishAsync(opsTopic(event.province, 'alerts'), JSON.stringify(event), { qos: 1 });
  };

  const activeOn = async (name: 'a' | 'b', id: string) => (await call(name, 'GET', '/alerts/active', 'vera')).json<{ alerts: AlertView[] }>().alerts.find((a) => a.id === id);

  it('sends an acknowledgement made on node A to the screens on node B, and node B keeps it', async () => {
    const onA = await screen('a', 'vera');
    const onB = await screen('b', 'vera');
    await subscribe(onA.socket, ['79'], ['energy']);
    await subscribe(onB.socket, ['79'], ['energy']);
    const alert = alertEvent('frequency-low', Date.now() - 1000);
    await raise(alert);
    await waitFor('the alert on both nodes', async () => ((await activeOn('a', alert.id)) && (await activeOn('b', alert.id)) ? true : undefined));

    const ack = await call('a', 'POST', '/alerts/ack', 'otto', { id: alert.id, note: 'đội đang đến' });
    expect(ack.statusCode, ack.body).toBe(200);
    const received = await waitFor('the acknowledgement on the screen of node B', () => onB.got.acks.find((a) => a.id === alert.id));
    expect(received).toMatchObject({ id: alert.id, operator: 'otto', note: 'đội đang đến' });
    await waitFor('the acknowledgement on the screen of node A', () => onA.got.acks.find((a) => a.id === alert.id));

    // Node B's book has it (not stored twice): its list, a later screen, and a second acknowledgement there.
    expect((await activeOn('b', alert.id))?.ack).toMatchObject({ operator: 'otto', note: 'đội đang đến' });
    const later = await screen('b', 'vera');
    await subscribe(later.socket, ['79'], ['energy']);
    const snapshot = await waitFor('the alerts of the subscribe', () => later.got.alertSnapshots.at(-1));
    expect(snapshot.alerts.find((a) => a.id === alert.id)?.ack).toMatchObject({ operator: 'otto' });
    const again = await call('b', 'POST', '/alerts/ack', 'olga', { id: alert.id });
    expect([again.statusCode, again.json<{ code: string }>().code]).toEqual([409, 'E_CONFLICT']);
    const [stored = []] = await influx.query('SELECT "operator" FROM "raw"."alert_acks" WHERE "id" = $id', { id: alert.id });
    expect(stored[0]?.values).toHaveLength(1);

    // Once per screen, not once per node.
    await call('b', 'POST', '/alerts/ack', 'otto', { id: 'no|such|alert' }); // a request after it through B
    expect(onB.got.acks.filter((a) => a.id === alert.id)).toHaveLength(1);
    expect(onA.got.acks.filter((a) => a.id === alert.id)).toHaveLength(1);
  });

  it('keeps an acknowledgement that overtook its alert, and the earliest of two (as a restore would)', () => {
    const book = new AlertBook(influx, pino({ level: 'silent' }));
    const alert = alertEvent('voltage-low', Date.now() - 5000);
    const first: AlertAck = { id: alert.id, province: '79', deviceId: FEEDER.id, operator: 'olga', note: '', ts: alert.raisedAt + 10 };
    const second: AlertAck = { ...first, operator: 'otto', ts: alert.raisedAt + 20 };
    expect(book.applyAck(second)).toBeUndefined(); // its node heard the raise first
    expect(book.apply(alert)?.ack).toEqual(second);
    expect(book.applyAck(first)?.ack).toEqual(first);
    expect(book.applyAck(second)?.ack).toEqual(first);
  });

  it('sends each live frame to a screen once, and both nodes show the same live state', async () => {
    // Anything published on the adapter's channels of the live rooms would be a frame crossing nodes.
    const watcher = await spy();
    const crossed: string[] = [];
    watcher.on('pmessage', (_pattern: string, channel: string) => crossed.push(channel));
    await watcher.psubscribe(`${CLUSTER_DEFAULTS.channelPrefix}#/#live:*`);

    const onA = await screen('a', 'vera');
    const onB = await screen('b', 'vera');
    await subscribe(onA.socket, ['79'], ['energy']);
    await subscribe(onB.socket, ['79'], ['energy']);
    const seen = (s: Screen, seq: number) => s.got.frames.filter((f) => f.mode === 'live' && f.readings.some((r) => r.deviceId === FEEDER.id && r.seq === seq)).length;

    const rounds = 5;
    const base = 1000;
    for (let seq = base + 1; seq <= base + rounds; seq++) {
      await feederClient.publishAsync(TELEMETRY, JSON.stringify(energyReading(Date.now(), seq)), { qos: 1 });
      await waitFor(`reading ${seq} on both screens`, () => (seen(onA, seq) > 0 && seen(onB, seq) > 0 ? true : undefined));
    }
    // A marker after the rounds: each node sends it after their frames, and a node's frames leave in order.
    const marker = base + rounds + 1;
    await feederClient.publishAsync(TELEMETRY, JSON.stringify(energyReading(Date.now(), marker)), { qos: 1 });
    await waitFor('the marker on both screens', () => (seen(onA, marker) > 0 && seen(onB, marker) > 0 ? true : undefined));
    for (let seq = base + 1; seq <= marker; seq++) {
      expect(seen(onB, seq), `reading ${seq} on node B`).toBe(1);
      expect(seen(onA, seq), `reading ${seq} on node A`).toBe(1);
    }
    expect(crossed).toEqual([]);

    // The same readings give the same state: the snapshots of a fresh screen on each node are equal.
    const freshA = await screen('a', 'vera');
    const freshB = await screen('b', 'vera');
    await subscribe(freshA.socket, ['79'], ['energy']);
    await subscribe(freshB.socket, ['79'], ['energy']);
    const snapshotOf = async (s: Screen) => {
      const frame = await waitFor('the snapshot', () => s.got.snapshots.find((f) => f.province === '79' && f.domain === 'energy'));
      return [...frame.readings].sort((x, y) => (x.deviceId < y.deviceId ? -1 : 1));
    };
    const [stateA, stateB] = await Promise.all([snapshotOf(freshA), snapshotOf(freshB)]);
    expect(stateA.find((r) => r.deviceId === FEEDER.id)?.seq).toBe(marker);
    expect(stateB).toEqual(stateA);
    await watcher.punsubscribe();
  });

  describe('replay controls across nodes', () => {
    const t0 = Math.floor((Date.now() - 2 * 3_600_000) / 1000) * 1000;
    const SECONDS = 120;

    beforeAll(async () => {
      const lines: string[] = [];
      for (let i = 0; i < SECONDS; i++) {
        const reading = energyReading(t0 + i * 1000, i + 1);
        lines.push(readingLine('energy', '79', FEEDER.id, FEEDER.kind, reading.ts, flattenReading(reading)));
      }
      await influx.writeLines(lines);
    });

    it('applies a control sent on node B to the replay running on node A, and tells the operator\'s screens', async () => {
      const desk = await screen('a', 'otto'); // runs the replay
      const wall = await screen('b', 'otto'); // the same operator's other screen, on the other node
      await subscribe(desk.socket, ['79'], ['energy']);
      await subscribe(wall.socket, ['79'], ['energy']);
      const started = await replayStart(desk.socket, { from: t0, to: t0 + SECONDS * 1000, speed: 1, provinces: ['79'], domains: ['energy'] });
      expect(started).toMatchObject({ ok: true, replay: { state: 'playing', replayId: expect.any(String) as string } });
      const replayId = (started as { replay: ReplayState }).replay.replayId as string;
      // The other screen hears of it through the operator's room, with the id to control it by.
      await waitFor('the replay on the other screen', () => wall.got.elsewhere.find((s) => s.replayId === replayId && s.state === 'playing'));

      // (A replay starts paused at `from` until its first snapshot is sent: look only at what comes after the control.)
      const [deskHeard, wallHeard] = [desk.got.replay.length, wall.got.elsewhere.length];
      const paused = await control(wall.socket, { action: 'pause', replayId });
      expect(paused).toMatchObject({ ok: true, replay: { state: 'paused', replayId } });
      await waitFor('the pause on the replaying screen', () => desk.got.replay.slice(deskHeard).find((s) => s.state === 'paused'));
      await waitFor('the pause on the other screen', () => wall.got.elsewhere.slice(wallHeard).find((s) => s.replayId === replayId && s.state === 'paused'));
      // The other screen is not replaying: it got no replayState of its own and stays live.
      expect(wall.got.replay).toEqual([]);
      expect(desk.got.elsewhere).toEqual([]); // the replaying screen is told by replayState, once

      const at = t0 + 60_000;
      expect(await control(wall.socket, { action: 'seek', at, replayId })).toMatchObject({ ok: true, replay: { state: 'paused', clock: at } });
      await waitFor('the seek snapshot on the replaying screen', () => desk.got.snapshots.find((f) => f.mode === 'replay' && f.clock === at));
      expect(await control(wall.socket, { action: 'speed', speed: 30, replayId })).toMatchObject({ ok: true, replay: { speed: 30 } });
      await waitFor('the speed on the other screen', () => wall.got.elsewhere.find((s) => s.replayId === replayId && s.speed === 30));

      // Who may not: another operator, a viewer; an admin may.
      const olga = await screen('b', 'olga');
      expect(await control(olga.socket, { action: 'resume', replayId })).toMatchObject({ ok: false, error: { code: 'E_FORBIDDEN' } });
      const vera = await screen('b', 'vera');
      expect(await control(vera.socket, { action: 'resume', replayId })).toMatchObject({ ok: false, error: { code: 'E_FORBIDDEN' } });
      expect(olga.got.elsewhere).toEqual([]); // another operator's room
      const root = await screen('b', 'root');
      expect(await control(root.socket, { action: 'resume', replayId })).toMatchObject({ ok: true, replay: { state: 'playing', replayId } });

      // Unknown, malformed.
      expect(await control(wall.socket, { action: 'pause', replayId: randomUUID() })).toMatchObject({ ok: false, error: { code: 'E_NOT_FOUND' } });
      for (const request of [{ action: 'pause', replayId: '../../etc' }, { action: 'pause', replayId: 7 }, { action: 'pause', replayId: 'x'.repeat(65) }, { action: 'pause', replayId, extra: 1 }]) {
        expect(await control(wall.socket, request), JSON.stringify(request)).toMatchObject({ ok: false, error: { code: 'E_BAD_REQUEST' } });
      }
      // A screen of the same node as the replay takes the local way.
      const desk2 = await screen('a', 'otto');
      expect(await control(desk2.socket, { action: 'pause', replayId })).toMatchObject({ ok: true, replay: { state: 'paused' } });

      // Stopped from node B: the replaying screen is live again, the other screen is told.
      expect(await control(wall.socket, { action: 'stop', replayId })).toMatchObject({ ok: true, replay: { state: 'stopped', replayId } });
      await waitFor('the stop on the replaying screen', () => desk.got.replay.find((s) => s.state === 'stopped'));
      await waitFor('the live snapshot after the replay', () => desk.got.snapshots.find((f) => f.mode === 'live'));
      await waitFor('the stop on the other screen', () => wall.got.elsewhere.find((s) => s.replayId === replayId && s.state === 'stopped'));
      expect(await control(wall.socket, { action: 'resume', replayId })).toMatchObject({ ok: false, error: { code: 'E_NOT_FOUND' } });
    });

    it('tells a screen that joins node B of the replay its operator paused on node A, without waiting on a silent peer', async () => {
      const desk = await screen('a', 'otto');
      const started = await replayStart(desk.socket, { from: t0, to: t0 + SECONDS * 1000, speed: 1, provinces: ['79'], domains: ['energy'] });
      const replayId = (started as { replay: ReplayState }).replay.replayId as string;
      const paused = await control(desk.socket, { action: 'pause' });
      expect(paused).toMatchObject({ ok: true, replay: { state: 'paused', replayId } });
      // A third "node" that joined the request channel and never answers (a hung or partitioned api).
      const silent = await spy();
      await silent.subscribe(`${CLUSTER_DEFAULTS.channelPrefix}-request#/#`);
      let wall: Screen;
      try {
        // Another operator's screen, then the late screen of otto, both on node B: node A hears of
        // them in that order and answers through one Redis connection, so once the late screen has
        // its state, anything for olga would have come too.
        const olga = await screen('b', 'olga');
        const connectedAt = Date.now();
        wall = await screen('b', 'otto');
        await waitFor('the paused replay on the late screen of node B', () => wall.got.elsewhere.find((s) => s.replayId === replayId), PEER_TIMEOUT_MS);
        expect(Date.now() - connectedAt).toBeLessThan(PEER_TIMEOUT_MS); // not held until the silent peer's time ran out
        expect(wall.got.elsewhere).toEqual([(paused as { replay: ReplayState }).replay]);
        expect(wall.got.replay).toEqual([]);
        expect(olga.got.elsewhere).toEqual([]);
      } finally {
        await silent.unsubscribe();
      }

      // Changes after it come as before, once each (node A's echo leaves before its answer to the control).
      expect(await control(wall.socket, { action: 'speed', speed: 30, replayId })).toMatchObject({ ok: true, replay: { speed: 30 } });
      expect(wall.got.elsewhere.map((s) => [s.replayId, s.state, s.speed])).toEqual([
        [replayId, 'paused', 1],
        [replayId, 'paused', 30],
      ]);
      expect(desk.got.elsewhere).toEqual([]); // the replaying screen is told by replayState only
      expect(await control(desk.socket, { action: 'stop' })).toMatchObject({ ok: true });
    });

    it('answers E_TIMEOUT when a peer does not answer and none that did holds the replay', async () => {
      const desk = await screen('a', 'otto');
      const wall = await screen('b', 'otto');
      const started = await replayStart(desk.socket, { from: t0, to: t0 + SECONDS * 1000, speed: 1, provinces: ['79'], domains: ['energy'] });
      const replayId = (started as { replay: ReplayState }).replay.replayId as string;
      // A third "node" that joined the request channel and never answers (a hung or partitioned api).
      const silent = await spy();
      await silent.subscribe(`${CLUSTER_DEFAULTS.channelPrefix}-request#/#`);
      try {
        expect(await control(wall.socket, { action: 'pause', replayId: randomUUID() })).toMatchObject({ ok: false, error: { code: 'E_TIMEOUT', message: expect.stringMatching(/did not answer/) as string } });
        // The node holding it answered before the time ran out: its answer counts.
        expect(await control(wall.socket, { action: 'pause', replayId })).toMatchObject({ ok: true, replay: { state: 'paused', replayId } });
      } finally {
        await silent.unsubscribe();
      }
      expect(await control(desk.socket, { action: 'stop' })).toMatchObject({ ok: true });
    });
  });

  it('refuses to start with API_ADAPTER=redis when Redis does not answer, saying what to fix', async () => {
    const nowhere = `redis://127.0.0.1:${await freePort()}/0`;
    const failed = buildApi({
      influx,
      registry,
      operators,
      sessions: await SessionSigner.fromDataDir(dir, 3_600_000),
      logger: pino({ level: 'silent' }),
      mqtt: { url: mqttUrl, username: 'api', password: apiSecret },
      dataDir: dir,
      adapter: { kind: 'redis', url: nowhere },
    });
    const err = await failed.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CodedError);
    expect(err).toMatchObject({ code: 'E_UPSTREAM' });
    expect((err as Error).message).toContain(nowhere);
    expect((err as Error).message).toMatch(/start it .*REDIS_URL.*API_ADAPTER=local/);

    // The variables themselves are checked at start with the others.
    const env = { API_MQTT_PASSWORD: 'x' };
    expect(readConfig(API_CONFIG, env)).toMatchObject({ API_ADAPTER: 'local', REDIS_URL: 'redis://127.0.0.1:6379/0' });
    expect(() => readConfig(API_CONFIG, { ...env, API_ADAPTER: 'cluster' })).toThrow(/API_ADAPTER="cluster" must be one of local, redis/);
    expect(() => readConfig(API_CONFIG, { ...env, REDIS_URL: 'http://127.0.0.1:6379' })).toThrow(/REDIS_URL=.* must use one of the schemes redis, rediss/);
  });
});
