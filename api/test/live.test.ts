import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server, Socket as NetSocket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import type { Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBroker, listenMqttTcp, type PlatformBroker } from '@citypulse/broker';
import { DeviceRegistry } from '@citypulse/broker/registry';
import {
  alertId,
  enrichReading,
  flattenReading,
  opsTopic,
  type AlertEvent,
  type AlertView,
  type EnergyReading,
  type LiveFrame,
  type ProvinceSummary,
  type ReplayAck,
  type ReplayState,
} from '@citypulse/contracts';
import { readingLine } from '@citypulse/ingest';
import { alertAckLine, alertEventLine, ensureStorage } from '@citypulse/ingest/storage';
import { Influx, startInfluxd, waitFor, type RunningInfluxd } from '@citypulse/infra';
import { buildApi, OperatorStore, SessionSigner, type ApiApp } from '../src/index.js';
import { recordingScreen } from './screen.js';

/**
 * Live delivery against a real broker and a real InfluxDB: alerts restored at start, received from
 * ingest's topic, acknowledged (stored, audited, sent to the room); province summaries as KPIs;
 * replay sessions (order, speed, pause, seek, stop); and a socket that stops reading, which skips
 * frames and is resynced without delaying a reading one.
 */

const FRAME_MS = 100;
const PASSWORD = 'a-long-enough-password';
const FEEDER = { id: 'hcm-feeder-07', province: '79', domain: 'energy' as const, kind: 'feeder-22kv' };
const PROFILE = { ratedPowerVA: 10_000_000, nominalPhaseVoltageV: 12_700 };

function energyReading(ts: number, seq: number, frequency = 50): EnergyReading {
  return { ts, seq, frequency, totalActivePower: 6e6 + seq, totalReactivePower: 2e6, powerFactor: 0.95, phaseVoltage: { L1: 12_700, L2: 12_700, L3: 12_700 }, current: { L1: 166, L2: 166, L3: 166 } };
}

function alertEvent(ruleId: string, raisedAt: number, state: AlertEvent['state'], ts = raisedAt, deviceId = FEEDER.id, province = FEEDER.province): AlertEvent {
  return { id: alertId(ruleId, deviceId, raisedAt), ruleId, kind: 'threshold', state, severity: 'critical', deviceId, province, domain: 'energy', field: 'frequency', value: 49.5, threshold: 49.8, message: 'frequency below 49.8 Hz (49.5)', raisedAt, ts };
}

describe('api live: alerts, summaries, replay, slow screens', () => {
  let dir: string;
  let influxd: RunningInfluxd;
  let influx: Influx;
  let registry: DeviceRegistry;
  let operators: OperatorStore;
  let broker: PlatformBroker;
  let mqttServer: Server;
  let mqttUrl: string;
  let apiSecret: string;
  let ingestClient: MqttClient;
  let api: ApiApp;
  let url: string;
  const tokens: Record<string, string> = {};
  const sockets: Socket[] = [];
  const now = Date.now();
  const restored = { open: alertEvent('frequency-low', now - 600_000, 'raised'), acked: alertEvent('frequency-high', now - 500_000, 'raised'), over: alertEvent('voltage-low', now - 400_000, 'raised') };

  const call = (method: 'GET' | 'POST', path: string, who: string, payload?: unknown) =>
    api.app.inject({ method, url: `/api/v1${path}`, headers: { authorization: `Bearer ${tokens[who]}` }, ...(payload === undefined ? {} : { payload: payload as object }) });

  const startApi = async () => {
    api = await buildApi({
      influx,
      registry,
      operators,
      sessions: await SessionSigner.fromDataDir(dir, 3_600_000),
      logger: pino({ level: process.env.TEST_LOG ?? 'silent' }),
      mqtt: { url: mqttUrl, username: 'api', password: apiSecret },
      dashboardDir: join(dir, 'no-dashboard'),
      dataDir: dir,
      frameIntervalMs: FRAME_MS,
      maxSocketBacklog: 4,
    });
    await api.app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(api.app.server.address() as AddressInfo).port}`;
    await waitFor('the api to reach the broker', () => (api.mqtt.connected ? true : undefined));
  };

  /** A connected dashboard socket recording what it receives. */
  const screen = (who: string) => recordingScreen(url, tokens[who], sockets);
  const subscribe = (socket: Socket, provinces: string[], domains?: string[]) => socket.timeout(5000).emitWithAck('subscribe', domains ? { provinces, domains } : { provinces });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-api-live-'));
    influxd = await startInfluxd({ dataDir: join(dir, 'influxdb') });
    influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
    await ensureStorage(influx, { rawRetention: '30d', rollup1mRetention: '90d', rollup1hRetention: '730d', continuousQueries: false });
    registry = await DeviceRegistry.open(dir);
    await registry.upsertDevices([
      { ...FEEDER, location: [106.7, 10.78], profile: PROFILE },
      { id: 'hn-air-01', province: '01', domain: 'environment', location: [105.85, 21.03], kind: 'station' },
    ]);
    apiSecret = await registry.upsertService('api', 'api');
    const ingestSecret = await registry.upsertService('ingest', 'ingest');
    broker = await buildBroker({ registry, logger: pino({ level: 'silent' }) });
    mqttServer = await listenMqttTcp(broker, 0, '127.0.0.1');
    mqttUrl = `mqtt://127.0.0.1:${(mqttServer.address() as AddressInfo).port}`;
    ingestClient = await mqtt.connectAsync(mqttUrl, { clientId: 'ingest-under-test', username: 'ingest', password: ingestSecret, protocolVersion: 4 });
    operators = await OperatorStore.open(dir);
    await operators.upsert('root', 'admin', PASSWORD);
    await operators.upsert('vera', 'viewer', PASSWORD);
    await operators.upsert('otto', 'operator', PASSWORD);
    await operators.upsert('hanoi-desk', 'operator', PASSWORD, ['01']);

    // What a previous run left in InfluxDB: an open alert, an acknowledged one, one raised and cleared.
    await influx.writeLines([
      alertEventLine(restored.open),
      alertEventLine(restored.acked),
      alertAckLine({ id: restored.acked.id, province: '79', deviceId: FEEDER.id, operator: 'otto', note: 'crew on the way', ts: now - 450_000 }),
      alertEventLine(restored.over),
      alertEventLine({ ...restored.over, state: 'cleared', ts: now - 300_000 }),
    ]);
    await startApi();
    for (const who of ['root', 'vera', 'otto', 'hanoi-desk']) {
      const res = await api.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: who, password: PASSWORD } });
      tokens[who] = res.json<{ token: string }>().token;
    }
  }, 60_000);

  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await api?.close();
    await ingestClient?.endAsync();
    await broker?.close();
    await new Promise((resolve) => mqttServer?.close(resolve));
    await influxd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  /** What ingest does with an alert event: stored, then published. */
  const raise = async (event: AlertEvent) => {
    await influx.writeLines([alertEventLine(event)]);
    await ingestClient.publishAsync(opsTopic(event.province, 'alerts'), JSON.stringify(event), { qos: 1 });
  };

  it('rebuilds the active alerts and their acknowledgements from InfluxDB at start', async () => {
    const res = await call('GET', '/alerts/active', 'vera');
    expect(res.statusCode, res.body).toBe(200);
    const { alerts, total } = res.json<{ alerts: AlertView[]; total: number }>();
    expect(total).toBe(2);
    expect(alerts.map((a) => a.id)).toEqual([restored.acked.id, restored.open.id]); // newest first
    expect(alerts[0]?.ack).toMatchObject({ operator: 'otto', note: 'crew on the way' });
    expect(alerts[1]?.ack).toBeNull();
    // Province scope: an operator of Hà Nội sees none of Hồ Chí Minh City's.
    expect((await call('GET', '/alerts/active', 'hanoi-desk')).json()).toEqual({ alerts: [], total: 0 });
    expect((await call('GET', '/alerts/active?province=79', 'hanoi-desk')).json()).toMatchObject({ code: 'E_FORBIDDEN' });
  });

  it('sends alerts to the rooms of their province and domain, and lets an operator acknowledge one', async () => {
    const hcm = await screen('otto');
    const hanoi = await screen('hanoi-desk');
    expect(await subscribe(hcm.socket, ['79'], ['energy'])).toMatchObject({ ok: true });
    expect(await subscribe(hanoi.socket, ['01'])).toMatchObject({ ok: true });
    // The active alerts of the rooms come with the subscribe.
    expect(hcm.got.alertSnapshots.at(-1)?.alerts.map((a) => a.id)).toEqual([restored.acked.id, restored.open.id]);
    expect(hanoi.got.alertSnapshots.at(-1)?.alerts).toEqual([]);

    const fresh = alertEvent('frequency-low', Date.now() - 1000, 'raised');
    await raise(fresh);
    const received = await waitFor('the alert on the socket', () => hcm.got.alerts.find((a) => a.id === fresh.id));
    expect(received).toMatchObject({ ...fresh, ack: null });
    expect((await call('GET', '/alerts/active', 'vera')).json<{ total: number }>().total).toBe(3);

    // Who may acknowledge: not a viewer, not an operator of another province.
    const viewer = await call('POST', '/alerts/ack', 'vera', { id: fresh.id, note: 'x' });
    expect([viewer.statusCode, viewer.json<{ code: string }>().code]).toEqual([403, 'E_FORBIDDEN']);
    const outside = await call('POST', '/alerts/ack', 'hanoi-desk', { id: fresh.id });
    expect([outside.statusCode, outside.json<{ code: string }>().code]).toEqual([403, 'E_FORBIDDEN']);
    const ack = await call('POST', '/alerts/ack', 'otto', { id: fresh.id, note: 'Đội sửa chữa <b>đang đến</b>' });
    expect(ack.statusCode, ack.body).toBe(200);
    expect(ack.json()).toMatchObject({ alert: { id: fresh.id, ack: { operator: 'otto', note: 'Đội sửa chữa <b>đang đến</b>' } }, ack: { id: fresh.id, operator: 'otto', province: '79' } });
    await waitFor('the acknowledgement on the socket', () => hcm.got.acks.find((a) => a.id === fresh.id));
    const again = await call('POST', '/alerts/ack', 'otto', { id: fresh.id });
    expect([again.statusCode, again.json<{ code: string }>().code]).toEqual([409, 'E_CONFLICT']);
    expect((await call('POST', '/alerts/ack', 'otto', { id: 'no|such|alert' })).json()).toMatchObject({ code: 'E_NOT_FOUND' });
    for (const body of [{ id: fresh.id, note: 'n'.repeat(501) }, { id: '' }, { id: fresh.id, operator: 'root' }, { note: 'x' }, { id: 7 }]) {
      const res = await call('POST', '/alerts/ack', 'otto', body);
      expect(res.statusCode, JSON.stringify(body)).toBe(400);
      expect(res.json<{ code: string }>().code).toBe('E_BAD_REQUEST');
    }
    // Stored in InfluxDB and in the audit log.
    const [stored = []] = await influx.query('SELECT "operator", "note" FROM "raw"."alert_acks" WHERE "id" = $id', { id: fresh.id });
    expect(stored[0]?.values.map((row) => row.slice(1))).toEqual([['otto', 'Đội sửa chữa <b>đang đến</b>']]);
    const audit = (await call('GET', '/audit?action=alert', 'root')).json<{ entries: { operator: string; action: string; target: string }[] }>();
    expect(audit.entries).toContainEqual(expect.objectContaining({ operator: 'otto', action: 'alert.ack', target: fresh.id }));

    // Two operators at the same moment: one acknowledgement, the other told so.
    const second = alertEvent('frequency-low', Date.now() - 900, 'raised');
    await raise(second);
    await waitFor('the second alert', () => hcm.got.alerts.find((a) => a.id === second.id));
    await operators.upsert('olga', 'operator', PASSWORD);
    tokens.olga = (await api.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'olga', password: PASSWORD } })).json<{ token: string }>().token;
    const both = await Promise.all([call('POST', '/alerts/ack', 'otto', { id: second.id }), call('POST', '/alerts/ack', 'olga', { id: second.id })]);
    expect(both.map((r) => r.statusCode).sort()).toEqual([200, 409]);
    const [acks = []] = await influx.query('SELECT "operator" FROM "raw"."alert_acks" WHERE "id" = $id', { id: second.id });
    expect(acks[0]?.values).toHaveLength(1);

    // Cleared by ingest: off the active list, to the room with its acknowledgement.
    await raise({ ...fresh, state: 'cleared', ts: fresh.ts + 500 });
    const cleared = await waitFor('the cleared alert on the socket', () => hcm.got.alerts.find((a) => a.id === fresh.id && a.state === 'cleared'));
    expect(cleared.ack).toMatchObject({ operator: 'otto' });
    // A late redelivery of the raise changes nothing and is not sent on.
    const heard = hcm.got.alerts.length;
    await ingestClient.publishAsync(opsTopic('79', 'alerts'), JSON.stringify(fresh), { qos: 1 });
    await raise({ ...second, state: 'cleared', ts: second.ts + 500 }); // a marker that comes after it
    await waitFor('the marker', () => hcm.got.alerts.find((a) => a.id === second.id && a.state === 'cleared'));
    expect(hcm.got.alerts.slice(heard).map((a) => [a.id, a.state])).toEqual([[second.id, 'cleared']]);
    expect((await call('GET', '/alerts/active', 'vera')).json<{ alerts: AlertView[] }>().alerts.map((a) => a.id)).not.toContain(fresh.id);
    expect(hanoi.got.alerts).toEqual([]); // another province's room heard nothing

    // The history has both events, with the acknowledgement.
    const history = await call('GET', `/alerts?from=${now - 3_600_000}&province=79`, 'vera');
    expect(history.statusCode, history.body).toBe(200);
    const events = history.json<{ events: AlertView[] }>().events.filter((e) => e.id === fresh.id);
    expect(events.map((e) => [e.state, e.ack?.operator])).toEqual([
      ['cleared', 'otto'],
      ['raised', 'otto'],
    ]);
    expect((await call('GET', `/alerts?from=${now - 3_600_000}&state=cleared&severity=critical`, 'vera')).json<{ events: AlertView[] }>().events.every((e) => e.state === 'cleared')).toBe(true);
  });

  it('refuses hostile alert query parameters with a code', async () => {
    for (const query of ['province=7%27%20OR%201=1', 'severity=fatal', 'state=open', 'device=%22%3B%20DROP%20DATABASE%20citypulse', 'from=yesterday', 'to=0&from=5', 'limit=0', 'domain=water', 'province=01%0A', `from=${'9'.repeat(50)}`]) {
      const res = await call('GET', `/alerts?${query}`, 'vera');
      expect(res.statusCode, query).toBeGreaterThanOrEqual(400);
      expect(res.statusCode, query).toBeLessThan(500);
      expect(res.json<{ code: string }>().code, query).toMatch(/^E_/);
    }
  });

  it('keeps a restarted api\'s acknowledgements', async () => {
    await api.close();
    await startApi();
    const acked = (await call('GET', '/alerts/active', 'vera')).json<{ alerts: AlertView[] }>().alerts.find((a) => a.id === restored.acked.id);
    expect(acked?.ack).toMatchObject({ operator: 'otto' });
  });

  it('forwards province summaries as KPIs: on the socket, on subscribe, and in the provinces GeoJSON', async () => {
    const summary: ProvinceSummary = {
      province: '79',
      ts: Date.now(),
      devices: { total: 1, online: 1, offline: 0, stale: 0 },
      environment: { devices: 0, reporting: 0 },
      traffic: { devices: 0, reporting: 0 },
      energy: { devices: 1, reporting: 1, loadFactorMean: 0.63, loadFactorMax: 0.63, loadFactorMaxDevice: FEEDER.id, outOfBand: 0 },
      alerts: { info: 0, warning: 0, critical: 2 },
    };
    const watching = await screen('vera');
    await subscribe(watching.socket, ['79']);
    await ingestClient.publishAsync(opsTopic('79', 'summary'), JSON.stringify(summary), { qos: 0, retain: true });
    await waitFor('the summary on the socket', () => watching.got.summaries.find((s) => s.ts === summary.ts));
    // Something that is not a summary is ignored, not forwarded.
    await ingestClient.publishAsync(opsTopic('01', 'summary'), '{"province":"01","ts":"soon"}', { qos: 0 });
    const later = await screen('vera');
    await subscribe(later.socket, ['79', '01']);
    await waitFor('the summary on subscribe', () => later.got.summaries.find((s) => s.ts === summary.ts));
    expect(later.got.summaries.map((s) => s.province)).toEqual(['79']);
    const geo = (await call('GET', '/provinces', 'vera')).json<{ features: { properties: { code: string; kpis: ProvinceSummary | null } }[] }>();
    expect(geo.features.find((f) => f.properties.code === '79')?.properties.kpis).toEqual(summary);
    expect(geo.features.find((f) => f.properties.code === '01')?.properties.kpis).toBeNull();
  });

  describe('replay', () => {
    const t0 = Math.floor((Date.now() - 2 * 3_600_000) / 1000) * 1000;
    const SECONDS = 60;

    beforeAll(async () => {
      const lines: string[] = [];
      for (let i = 0; i < SECONDS; i++) {
        const reading = energyReading(t0 + i * 1000, i + 1);
        lines.push(readingLine('energy', '79', FEEDER.id, FEEDER.kind, reading.ts, { ...flattenReading(reading), ...enrichReading('energy', reading, PROFILE) }));
        const other = energyReading(t0 + i * 1000 + 500, i + 1);
        lines.push(readingLine('energy', '79', 'hcm-feeder-08', FEEDER.kind, other.ts, flattenReading(other)));
        lines.push(readingLine('energy', '01', 'hn-feeder-01', FEEDER.kind, other.ts, flattenReading(other)));
      }
      await influx.writeLines(lines);
    });

    const start = (socket: Socket, request: object) => socket.timeout(10_000).emitWithAck('replayStart', request) as Promise<ReplayAck>;
    const control = (socket: Socket, request: object) => socket.timeout(10_000).emitWithAck('replayControl', request) as Promise<ReplayAck>;

    it('plays a range in order at the asked speed, in the live frame format, and only the provinces asked', async () => {
      const { socket, got } = await screen('otto');
      await subscribe(socket, ['79']);
      const speed = 20;
      const ack = await start(socket, { from: t0, to: t0 + SECONDS * 1000, speed, provinces: ['79'], domains: ['energy'] });
      expect(ack).toMatchObject({ ok: true, replay: { state: 'playing', from: t0, to: t0 + SECONDS * 1000, speed, provinces: ['79'], domains: ['energy'] } });
      // Live frames stop for a replaying socket.
      api.live.handleMessage(`city/79/energy/${FEEDER.id}/telemetry`, Buffer.from(JSON.stringify(energyReading(Date.now(), 99_999))));
      await waitFor('the end of the replay', () => got.replay.find((s) => s.state === 'ended'), 30_000);

      const replayFrames = got.frames.filter((f) => f.mode === 'replay');
      expect(got.frames.filter((f) => f.mode === 'live' && f.readings.some((r) => r.seq === 99_999))).toEqual([]);
      expect(replayFrames.length).toBeGreaterThan(5);
      // In order: the clock never goes back, no reading is ahead of its frame's clock, each device's readings move forward.
      const lastTs = new Map<string, number>();
      let clock = t0;
      for (const frame of replayFrames) {
        expect(frame).toMatchObject({ province: '79', domain: 'energy', mode: 'replay' });
        expect(frame.clock).toBeGreaterThanOrEqual(clock);
        clock = frame.clock as number;
        for (const reading of frame.readings) {
          expect(reading.ts).toBeLessThanOrEqual(clock);
          expect(reading.ts).toBeGreaterThan(lastTs.get(reading.deviceId) ?? -1);
          lastTs.set(reading.deviceId, reading.ts);
        }
      }
      expect(lastTs.get(FEEDER.id)).toBe(t0 + (SECONDS - 1) * 1000);
      expect(lastTs.get('hcm-feeder-08')).toBe(t0 + (SECONDS - 1) * 1000 + 500);
      expect([...lastTs.keys()].sort()).toEqual([FEEDER.id, 'hcm-feeder-08']);
      // The enrichment stored with the reading comes back as in a live frame.
      const feederReadings = replayFrames.flatMap((f) => f.readings).filter((r) => r.deviceId === FEEDER.id);
      expect(feederReadings.at(-1)?.derived).toMatchObject({ loadFactor: expect.any(Number) as number });
      // At the asked speed: device time over server time between the first and the last frame.
      const first = replayFrames[0] as LiveFrame;
      const last = replayFrames.at(-1) as LiveFrame;
      const played = ((last.clock as number) - (first.clock as number)) / (last.sentAt - first.sentAt);
      expect(played).toBeGreaterThan(speed * 0.5);
      expect(played).toBeLessThanOrEqual(speed * 1.05);

      // Stopping returns to live: a live snapshot follows.
      const stopped = await control(socket, { action: 'stop' });
      expect(stopped).toMatchObject({ ok: true, replay: { state: 'stopped' } });
      await waitFor('the live snapshot after the replay', () => got.snapshots.find((f) => f.mode === 'live'));
    });

    it('pauses, seeks and changes speed', async () => {
      const { socket, got } = await screen('otto');
      expect(await start(socket, { from: new Date(t0).toISOString(), to: new Date(t0 + SECONDS * 1000).toISOString(), speed: 1, provinces: ['79'] })).toMatchObject({ ok: true });
      const paused = await control(socket, { action: 'pause' });
      expect(paused).toMatchObject({ ok: true, replay: { state: 'paused' } });
      const framesAtPause = got.frames.length;
      const clockAtPause = (paused as { replay: ReplayState }).replay.clock;
      await new Promise((resolve) => setTimeout(resolve, 6 * FRAME_MS));
      expect(got.frames.length).toBe(framesAtPause);

      // Seek: the state as of then, as a replay snapshot.
      const at = t0 + 30_000;
      const snapshotsBefore = got.snapshots.length;
      const sought = await control(socket, { action: 'seek', at });
      expect(sought).toMatchObject({ ok: true, replay: { state: 'paused', clock: at } });
      const snapshot = got.snapshots.slice(snapshotsBefore).find((f) => f.domain === 'energy');
      expect(snapshot).toMatchObject({ mode: 'replay', clock: at, province: '79' });
      expect(snapshot?.readings.find((r) => r.deviceId === FEEDER.id)?.ts).toBe(at);
      expect(snapshot?.readings.find((r) => r.deviceId === 'hcm-feeder-08')?.ts).toBe(at - 500);
      expect(clockAtPause).toBeLessThan(t0 + 10_000);

      expect(await control(socket, { action: 'speed', speed: 60 })).toMatchObject({ ok: true, replay: { speed: 60 } });
      expect(await control(socket, { action: 'resume' })).toMatchObject({ ok: true, replay: { state: 'playing' } });
      await waitFor('the end of the replay', () => got.replay.find((s) => s.state === 'ended'), 20_000);
      const after = got.frames.slice(framesAtPause).flatMap((f) => f.readings);
      expect(Math.min(...after.map((r) => r.ts))).toBeGreaterThan(at - 1000); // played on from the seek
      await control(socket, { action: 'stop' });
    });

    it('sends the snapshot of a seek made while playing before any frame after it', async () => {
      const { socket, got } = await screen('otto');
      const order: string[] = [];
      socket.on('frame', (f: LiveFrame) => f.mode === 'replay' && order.push(`frame ${f.clock}`));
      socket.on('snapshot', (f: LiveFrame) => f.mode === 'replay' && order.push(`snapshot ${f.clock}`));
      expect(await start(socket, { from: t0, to: t0 + SECONDS * 1000, speed: 5, provinces: ['79'], domains: ['energy'] })).toMatchObject({ ok: true, replay: { state: 'playing' } });
      await waitFor('a first frame', () => got.frames.find((f) => f.mode === 'replay'));
      const at = t0 + 40_000;
      const marker = order.length;
      expect(await control(socket, { action: 'seek', at })).toMatchObject({ ok: true, replay: { state: 'playing', clock: at } });
      await waitFor('frames after the seek', () => (order.slice(marker).some((e) => e.startsWith('frame') && Number(e.split(' ')[1]) > at) ? true : undefined));
      const after = order.slice(marker);
      const snapshotAt = after.indexOf(`snapshot ${at}`);
      expect(snapshotAt, after.join(', ')).toBeGreaterThanOrEqual(0);
      expect(after.slice(0, snapshotAt).filter((e) => e.startsWith('frame') && Number(e.split(' ')[1]) >= at)).toEqual([]);
      await control(socket, { action: 'stop' });
    });

    it('tells the operator\'s other screens on a single node too, and takes their controls by replayId', async () => {
      const wall = await screen('otto'); // runs the replay
      const desk = await screen('otto'); // the same operator's other screen, on the same (only) node
      const admin = await screen('root'); // another operator: not told
      const started = await start(wall.socket, { from: t0, to: t0 + SECONDS * 1000, speed: 1, provinces: ['79'], domains: ['energy'] });
      expect(started).toMatchObject({ ok: true, replay: { state: 'playing', replayId: expect.any(String) as string } });
      const replayId = (started as { replay: ReplayState }).replay.replayId as string;
      await waitFor('the replay on the other screen', () => desk.got.elsewhere.find((s) => s.replayId === replayId && s.state === 'playing'));

      // (A replay starts paused at `from` until its first snapshot is sent: look only at what comes after the control.)
      const [wallHeard, deskHeard] = [wall.got.replay.length, desk.got.elsewhere.length];
      expect(await control(desk.socket, { action: 'pause', replayId })).toMatchObject({ ok: true, replay: { state: 'paused', replayId } });
      await waitFor('the pause on the replaying screen', () => wall.got.replay.slice(wallHeard).find((s) => s.state === 'paused'));
      await waitFor('the pause on the other screen', () => desk.got.elsewhere.slice(deskHeard).find((s) => s.state === 'paused'));
      expect(desk.got.replay).toEqual([]); // still live: no replay of its own

      expect(await control(wall.socket, { action: 'stop' })).toMatchObject({ ok: true, replay: { state: 'stopped' } });
      await waitFor('the stop on the other screen', () => desk.got.elsewhere.find((s) => s.replayId === replayId && s.state === 'stopped'));
      expect(await control(desk.socket, { action: 'resume', replayId })).toMatchObject({ ok: false, error: { code: 'E_NOT_FOUND' } });
      // The replaying screen is told by replayState only; another operator's screens not at all.
      expect(wall.got.elsewhere).toEqual([]);
      expect(admin.got.elsewhere).toEqual([]);
    });

    it('tells a screen that joins of the replay its operator paused on another screen, at once', async () => {
      const wall = await screen('otto');
      const started = await start(wall.socket, { from: t0, to: t0 + SECONDS * 1000, speed: 1, provinces: ['79'], domains: ['energy'] });
      const replayId = (started as { replay: ReplayState }).replay.replayId as string;
      const paused = await control(wall.socket, { action: 'pause' });
      expect(paused).toMatchObject({ ok: true, replay: { state: 'paused', replayId } });

      // Screens that connect afterwards (a page load, a reconnect): a paused replay says nothing more until it changes.
      const desk = await screen('otto');
      const admin = await screen('root'); // another operator: not told
      // Sent as the socket joins: there before the answer to the first thing the screen asks.
      expect(await subscribe(desk.socket, ['79'])).toMatchObject({ ok: true });
      expect(await subscribe(admin.socket, ['79'])).toMatchObject({ ok: true });
      expect(desk.got.elsewhere).toEqual([(paused as { replay: ReplayState }).replay]);
      expect(desk.got.replay).toEqual([]); // live: no replay of its own

      // Changes after it come as before.
      expect(await control(desk.socket, { action: 'stop', replayId })).toMatchObject({ ok: true, replay: { state: 'stopped' } });
      await waitFor('the stop on the late screen', () => desk.got.elsewhere.find((s) => s.state === 'stopped'));
      expect(admin.got.elsewhere).toEqual([]);
      expect(wall.got.elsewhere).toEqual([]); // its own replay is told by replayState only
    });

    it('refuses bad replay requests with a code', async () => {
      const { socket } = await screen('otto');
      const to = t0 + 60_000;
      for (const request of [
        { from: 'yesterday', to, provinces: ['79'] },
        { from: t0, to, speed: 100, provinces: ['79'] },
        { from: t0, to, speed: 0.5, provinces: ['79'] },
        { from: t0, to, provinces: ['99'] },
        { from: t0, to, provinces: ["79' OR 1=1"] },
        { from: to, to: t0, provinces: ['79'] },
        { from: t0 - 40 * 86_400_000, to, provinces: ['79'] },
        { from: Date.now(), to: Date.now() + 3_600_000, provinces: ['79'] },
        { from: t0, to, provinces: ['79'], domains: ['water'] },
        { from: t0, to, provinces: ['79'], extra: true },
        null,
      ]) {
        const ack = await start(socket, request as object);
        expect(ack, JSON.stringify(request)).toMatchObject({ ok: false, error: { code: 'E_BAD_REQUEST' } });
      }
      expect(await control(socket, { action: 'pause' })).toMatchObject({ ok: false, error: { code: 'E_NOT_FOUND' } });
      expect(await start(socket, { from: t0, to, provinces: ['79'] })).toMatchObject({ ok: true });
      for (const request of [{ action: 'rewind' }, { action: 'seek', at: 'then' }, { action: 'seek', at: t0 - 1 }, { action: 'seek', at: to + 1 }, { action: 'speed', speed: 61 }, {}]) {
        expect(await control(socket, request), JSON.stringify(request)).toMatchObject({ ok: false, error: { code: 'E_BAD_REQUEST' } });
      }
      expect(await control(socket, { action: 'stop' })).toMatchObject({ ok: true });
    });
  });

  it('sends deltas, not snapshots, to a screen watching every room of the country', async () => {
    const national = await screen('vera');
    const all = Array.from(new Set((await call('GET', '/provinces', 'vera')).json<{ features: { properties: { code: string } }[] }>().features.map((f) => f.properties.code)));
    expect(all).toHaveLength(34);
    expect(await subscribe(national.socket, all)).toMatchObject({ ok: true });
    await waitFor('the 102 snapshots of the subscribe', () => (national.got.snapshots.length === 102 ? true : undefined));
    for (let round = 1; round <= 5; round++) {
      for (const province of all) api.live.handleMessage(`city/${province}/energy/nat-feeder-${province}/telemetry`, Buffer.from(JSON.stringify(energyReading(Date.now(), round))));
      await new Promise((resolve) => setTimeout(resolve, 2 * FRAME_MS));
    }
    await waitFor('the last round as deltas', () => (national.got.frames.filter((f) => f.readings.some((r) => r.deviceId.startsWith('nat-feeder-') && r.seq === 5)).length === 34 ? true : undefined));
    expect(national.got.snapshots).toHaveLength(102); // no resync: it never lagged
  });

  it('skips frames for a socket that stops reading, without delaying the others, and resyncs it when it drains', async () => {
    const fast = await screen('vera');
    const slow = await screen('vera');
    await subscribe(fast.socket, ['79'], ['energy']);
    await subscribe(slow.socket, ['79'], ['energy']);
    // Stop reading the slow screen's TCP socket: what the server sends piles up in the kernel, then in engine.io.
    const tcp = (slow.socket.io.engine.transport as unknown as { ws: { _socket: NetSocket } }).ws._socket;
    tcp.pause();

    // Big frames (2,000 devices) every frame interval for 3 s.
    const devices = Array.from({ length: 2000 }, (_, i) => `hcm-load-${String(i).padStart(4, '0')}`);
    const fastBefore = fast.got.frames.length;
    const slowBefore = slow.got.frames.length;
    const rounds = Math.round(3000 / FRAME_MS);
    let seq = 0;
    for (let round = 0; round < rounds; round++) {
      seq++;
      for (const id of devices) api.live.handleMessage(`city/79/energy/${id}/telemetry`, Buffer.from(JSON.stringify(energyReading(Date.now(), seq))));
      await new Promise((resolve) => setTimeout(resolve, FRAME_MS));
    }
    // The reading screen got its frames all along, up to the last round.
    await waitFor('the last round on the fast screen', () => (fast.got.frames.some((f) => f.readings.some((r) => r.seq === seq)) ? true : undefined));
    const fastFrames = fast.got.frames.length - fastBefore;
    expect(fastFrames).toBeGreaterThanOrEqual(rounds * 0.5);

    // The slow one drains, then gets a snapshot (a resync) holding the latest state.
    tcp.resume();
    const resync = await waitFor('the resync snapshot', () => slow.got.snapshots.find((f) => f.mode === 'live' && f.province === '79' && f.readings.length >= devices.length));
    expect(resync.readings.filter((r) => r.deviceId.startsWith('hcm-load-')).every((r) => r.seq >= 1)).toBe(true);
    expect(slow.got.frames.length - slowBefore).toBeLessThan(fastFrames);
  });
});
