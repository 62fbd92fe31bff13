import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { Compile } from 'typebox/compile';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AlertEvent, deviceTopic, opsTopic, ProvinceSummary, TOPIC_FILTERS } from '@citypulse/contracts';
import { buildBroker, DeviceRegistry, listenMqttTcp, type PlatformBroker } from '@citypulse/broker';
import { Influx, startInfluxd, waitFor, type RunningInfluxd } from '@citypulse/infra';
import { ensureStorage, loadAlertEvents, parseAlertRules, startIngest, writeAlertRules, type IngestPipeline } from '../src/index.js';

/**
 * Processing inside the pipeline (real broker, real influxd): alert events raised and cleared by
 * readings and by silence, stored in InfluxDB before they are published on ops/{province}/alerts;
 * alert state rebuilt from InfluxDB by a restarted ingest; province summaries published retained.
 */
const RULES_YAML = `
version: 1
rules:
  - id: frequency-low
    kind: threshold
    domain: energy
    field: frequency
    below: 49.8
    hysteresis: 0.1
    severity: critical
  - id: station-silent
    kind: no-data
    domain: environment
    intervals: 2
    interval: 500ms
    severity: warning
`;
const RULES = parseAlertRules(RULES_YAML, 'test-rules.yaml');

describe('ingest processing: alerts and summaries', () => {
  let dir: string;
  let influxd: RunningInfluxd;
  let influx: Influx;
  let registry: DeviceRegistry;
  let broker: PlatformBroker;
  let server: Server;
  let url: string;
  let ingestSecret: string;
  let feederSecret: string;
  let ops: MqttClient;
  let ingest: IngestPipeline | undefined;
  const alerts: AlertEvent[] = [];
  const summaries = new Map<string, unknown>();
  const feeder = { province: '79', domain: 'energy' as const, deviceId: 'hcm-feeder-07' };
  const isAlert = Compile(AlertEvent);
  const isSummary = Compile(ProvinceSummary);

  const start = (clientId = 'ingest-processing') =>
    startIngest({ mqttUrl: url, username: 'ingest', password: ingestSecret, clientId, influx, registry, logger: pino({ level: process.env.TEST_LOG ?? 'silent' }), flushIntervalMs: 50, alertRules: RULES, summaryIntervalMs: 60_000, rollups: 'cq' });


  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-processing-'));
    influxd = await startInfluxd({ dataDir: join(dir, 'influxdb') });
    influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
    await ensureStorage(influx, { rawRetention: '30d', rollup1mRetention: '90d', rollup1hRetention: '730d' });
    registry = await DeviceRegistry.open(dir);
    [{ secret: feederSecret }] = (await registry.upsertDevices([
      { id: feeder.deviceId, province: '79', domain: 'energy', location: [106.7, 10.78], kind: 'feeder-22kv', profile: { ratedPowerVA: 10_000_000, nominalPhaseVoltageV: 12_700 } },
      // Registered, never reports: watched by the no-data rule from ingest's start.
      { id: 'hn-station-silent', province: '01', domain: 'environment', location: [105.85, 21.03], kind: 'station' },
    ])) as [{ id: string; secret: string }];
    ingestSecret = await registry.upsertService('ingest', 'ingest');
    const toolsSecret = await registry.upsertService('tools', 'tools');
    broker = await buildBroker({ registry, logger: pino({ level: 'silent' }) });
    server = await listenMqttTcp(broker, 0, '127.0.0.1');
    url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
    // What the api sees: the ops topics.
    ops = await mqtt.connectAsync(url, { clientId: 'ops-watcher', username: 'tools', password: toolsSecret, protocolVersion: 4 });
    ops.on('message', (topic, payload) => {
      const value: unknown = JSON.parse(payload.toString());
      if (topic.endsWith('/alerts')) {
        expect(isAlert.Check(value), `${topic}: ${payload.toString()}`).toBe(true);
        alerts.push(value as AlertEvent);
      } else summaries.set(topic, value);
    });
    await ops.subscribeAsync([TOPIC_FILTERS.allAlerts, TOPIC_FILTERS.allSummaries], { qos: 1 });
    ingest = await start();
  });

  afterAll(async () => {
    await ingest?.close();
    await ops?.endAsync();
    await broker?.close();
    await new Promise((resolve) => server?.close(resolve));
    await influxd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  let seq = 0;
  const publishFrequency = async (frequency: number, ts: number) => {
    const device = await mqtt.connectAsync(url, { clientId: feeder.deviceId, username: feeder.deviceId, password: feederSecret, protocolVersion: 4 });
    const reading = { ts, seq: ++seq, frequency, totalActivePower: 6e6, totalReactivePower: 2e6, powerFactor: 0.95, phaseVoltage: { L1: 12_700, L2: 12_700, L3: 12_700 }, current: { L1: 166, L2: 166, L3: 166 } };
    await device.publishAsync(deviceTopic(feeder, 'telemetry'), JSON.stringify(reading), { qos: 1 });
    await device.endAsync();
  };
  const eventsOf = (ruleId: string) => alerts.filter((a) => a.ruleId === ruleId);

  it('raises an alert from a reading, stores it, then publishes it on ops/{province}/alerts', async () => {
    const ts = Date.now() - 5000;
    await publishFrequency(49.5, ts);
    const [raised] = await waitFor('the raised event', () => (eventsOf('frequency-low').length > 0 ? eventsOf('frequency-low') : undefined));
    expect(raised).toMatchObject({ ruleId: 'frequency-low', deviceId: feeder.deviceId, province: '79', domain: 'energy', state: 'raised', severity: 'critical', value: 49.5, ts });
    // Published only once stored: it is already in InfluxDB.
    const stored = await loadAlertEvents(influx, ['79'], 0);
    expect(stored.map((e) => e.id)).toContain(raised?.id);
    expect(ingest?.alerts.active().map((e) => e.id)).toEqual([raised?.id]);
    expect(ingest?.renderMetrics()).toMatch(/citypulse_ingest_active_alerts 1\b/);
  });

  it('a restarted ingest rebuilds the active alert from InfluxDB and clears it (hysteresis) without raising it again', async () => {
    const raised = eventsOf('frequency-low')[0] as AlertEvent;
    await ingest?.close();
    ingest = await start();
    expect(ingest.alerts.active().map((e) => e.id)).toContain(raised.id);

    await publishFrequency(49.85, raised.ts + 1000); // inside the hysteresis band: still low
    await publishFrequency(50.0, raised.ts + 2000);
    const cleared = await waitFor('the cleared event', () => eventsOf('frequency-low').find((e) => e.state === 'cleared'));
    expect(cleared).toMatchObject({ id: raised.id, state: 'cleared', value: 50, ts: raised.ts + 2000 });
    expect(eventsOf('frequency-low').filter((e) => e.state === 'raised')).toHaveLength(1);
    const stored = (await loadAlertEvents(influx, ['79'], 0)).filter((e) => e.id === raised.id);
    expect(stored.map((e) => e.state)).toEqual(['raised', 'cleared']);
    expect(ingest.alerts.active().filter((e) => e.province === '79')).toEqual([]);
  });

  it('raises no-data for a registered device that stays silent', async () => {
    const raised = await waitFor('the no-data event', () => eventsOf('station-silent')[0]);
    expect(raised).toMatchObject({ deviceId: 'hn-station-silent', province: '01', kind: 'no-data', state: 'raised', severity: 'warning' });
    await waitFor('the stored no-data event', async () => ((await loadAlertEvents(influx, ['01'], 0)).some((e) => e.id === raised.id) ? true : undefined));
  });

  it('rolls up a backlog older than the continuous queries reach, once it is stored', async () => {
    const device = await mqtt.connectAsync(url, { clientId: feeder.deviceId, username: feeder.deviceId, password: feederSecret, protocolVersion: 4 });
    const minute = Math.floor((Date.now() - 3 * 3_600_000) / 60_000) * 60_000;
    const reading = (i: number, frequency: number) => ({ ts: minute + i * 20_000, seq: 1000 + i, frequency, totalActivePower: 6e6, totalReactivePower: 2e6, powerFactor: 0.95, phaseVoltage: { L1: 12_700, L2: 12_700, L3: 12_700 }, current: { L1: 166, L2: 166, L3: 166 } });
    await device.publishAsync(deviceTopic(feeder, 'telemetry'), JSON.stringify({ readings: [reading(0, 50), reading(1, 50.1), reading(2, 49.9)] }), { qos: 1 });
    await device.endAsync();
    const row = await waitFor('the 1-minute roll-up of the backlog', async () => {
      const [series = []] = await influx.query('SELECT "count_seq", "mean_frequency", "min_frequency", "max_frequency" FROM "rollup_1m"."energy" WHERE "device" = $device AND time = $t', { device: feeder.deviceId, t: new Date(minute).toISOString() });
      const found = series[0]?.values[0];
      // InfluxDB writes a point's fields one by one into its cache, so a query racing the backfill's
      // SELECT … INTO can see some fields of the row and not yet the others (seen in CI: a count
      // and no mean): wait for the whole row.
      return found?.slice(1).every((v: unknown) => v !== null) ? found : undefined;
    });
    expect(row[1], `row ${JSON.stringify(row)}, backfills ${ingest?.metrics.rollupBackfills}`).toBe(3);
    expect(row[2]).toBeCloseTo(50, 6);
    expect([row[3], row[4]], `row ${JSON.stringify(row)}`).toEqual([49.9, 50.1]);
    // The 1-hour roll-up follows the 1-minute one in the same backfill.
    await waitFor('the backfill to finish', () => ((ingest?.metrics.rollupBackfills ?? 0) > 0 ? true : undefined));
    const [hour = []] = await influx.query('SELECT "count_seq" FROM "rollup_1h"."energy" WHERE "device" = $device', { device: feeder.deviceId });
    expect(hour[0]?.values.length, `1 h roll-up rows ${JSON.stringify(hour)}, backfills ${ingest?.metrics.rollupBackfills}`).toBeGreaterThan(0);
  });

  it('keeps the roll-ups in the stream: a minute written once over, the minutes before the start and a late reading recomputed from raw', async () => {
    // A raw reading stored after the newest roll-up, as a previous process leaves behind: what makes
    // a restart recover (a first start, with nothing newer than the roll-ups, recovers nothing).
    const lastOfPrevious = Date.now();
    await publishFrequency(50.0, lastOfPrevious);
    await waitFor('the previous process to store its last reading', async () => {
      const [series = []] = await influx.query('SELECT count("seq") FROM "raw"."energy" WHERE "device" = $device AND time >= $t', { device: feeder.deviceId, t: new Date(lastOfPrevious).toISOString() });
      return series[0]?.values[0]?.[1] ? true : undefined;
    });
    await ingest?.close(); // this test's ingest alone stores the shard
    // Ingest's start minute is the minute of its clock at start: keep that at least 25 s from the
    // next minute (a busy machine can take seconds to start it), moving the clock on if needed.
    const real = Date.now();
    let shift = real % 60_000 > 30_000 ? 65_000 - (real % 60_000) : 0;
    const t0 = Date.now() + shift;
    const streaming = await startIngest({ mqttUrl: url, username: 'ingest', password: ingestSecret, clientId: 'ingest-stream', influx, registry, logger: pino({ level: process.env.TEST_LOG ?? 'silent' }), flushIntervalMs: 50, alertRules: RULES, summaryIntervalMs: 60_000, rollups: 'stream', rollupGraceMs: 1000, now: () => Date.now() + shift });
    try {
      const startMinute = Math.floor(t0 / 60_000) * 60_000;
      const firstOwn = startMinute + 60_000;
      const minuteRow = async (t: number) => {
        const [series = []] = await influx.query('SELECT "count_seq", "min_frequency", "max_frequency" FROM "rollup_1m"."energy" WHERE "device" = $device AND time = $t', { device: feeder.deviceId, t: new Date(t).toISOString() });
        return series[0]?.values[0];
      };
      // The minute ingest started in: not its own (a previous process may have stored some of it).
      await publishFrequency(50.05, t0 - 1);
      // Its first own minute, counted in memory: written once the minute and the grace are over.
      shift = firstOwn + 5000 - Date.now();
      for (const [i, f] of [49.95, 50.0, 50.1].entries()) await publishFrequency(f, firstOwn + 1000 * (i + 1));
      await streaming.flush();
      expect(await minuteRow(firstOwn)).toBeUndefined();
      shift = firstOwn + 62_000 - Date.now();
      const own = await waitFor('the stream roll-up of the first own minute', () => minuteRow(firstOwn));
      expect(own.slice(1)).toEqual([3, 49.95, 50.1]);
      // The start minute (earlier tests stored readings in it too): from raw, by the start-up recovery (one job per domain).
      await waitFor('the start-up recovery', () => (streaming.metrics.rollupBackfills >= 3 ? true : undefined));
      const [rawMinute = []] = await influx.query('SELECT count("seq"), min("frequency"), max("frequency") FROM "raw"."energy" WHERE "device" = $device AND time >= $from AND time < $to', { device: feeder.deviceId, from: new Date(startMinute).toISOString(), to: new Date(firstOwn).toISOString() });
      expect((await minuteRow(startMinute))?.slice(1)).toEqual(rawMinute[0]?.values[0]?.slice(1));
      expect(streaming.metrics.rollupPoints['1m']).toBeGreaterThanOrEqual(1);
      // A reading for that minute now is late: once stored, the minute is recomputed from raw.
      await publishFrequency(49.7, firstOwn + 4000);
      const late = await waitFor('the late reading in the roll-up', async () => ((await minuteRow(firstOwn))?.[1] === 4 ? minuteRow(firstOwn) : undefined));
      expect(late.slice(1)).toEqual([4, 49.7, 50.1]);
      expect(streaming.renderMetrics()).toMatch(/citypulse_ingest_rollup_points_written_total\{resolution="1m"\} [1-9]/);
    } finally {
      await streaming.close();
      ingest = await start();
    }
  });

  it('stops at start on a refused login, with the reason', async () => {
    const attempt = startIngest({ mqttUrl: url, username: 'ingest', password: 'not-the-secret', clientId: 'ingest-wrong', influx, registry, logger: pino({ level: 'silent' }), alertRules: RULES });
    await expect(attempt).rejects.toThrow(/Bad username or password|Not authorized/);
  });

  it('waits for a broker that is not up yet instead of exiting', async () => {
    const late = await listenMqttTcp(broker, 0, '127.0.0.1');
    const port = (late.address() as AddressInfo).port;
    await new Promise((resolve) => late.close(resolve));
    const starting = startIngest({ mqttUrl: `mqtt://127.0.0.1:${port}`, username: 'ingest', password: ingestSecret, clientId: 'ingest-early', influx, registry, logger: pino({ level: 'silent' }), alertRules: RULES, reconnectPeriodMs: 100 });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const server2 = await listenMqttTcp(broker, port, '127.0.0.1');
    const early = await starting;
    expect(early.mqtt.connected).toBe(true);
    await early.close();
    await new Promise((resolve) => server2.close(resolve));
  });

  it('publishes a retained summary per province with device counts and active alerts', async () => {
    const live = ingest as IngestPipeline;
    // The station's no-data alert is active; the feeder has reported.
    expect(live.publishSummaries()).toBe(34);
    const hanoi = await waitFor('the Hà Nội summary', () => summaries.get(opsTopic('01', 'summary')) as ProvinceSummary | undefined);
    const hcm = await waitFor('the HCM summary', () => summaries.get(opsTopic('79', 'summary')) as ProvinceSummary | undefined);
    expect(isSummary.Check(hanoi), JSON.stringify(isSummary.Errors(hanoi)[0])).toBe(true);
    expect(hanoi.devices.total).toBe(1);
    expect(hanoi.alerts).toEqual({ info: 0, warning: 1, critical: 0 });
    expect(hcm.devices.total).toBe(1);
    expect(hcm.energy).toMatchObject({ devices: 1, reporting: 1 });
    expect(hcm.energy.loadFactorMean).toBeCloseTo(Math.hypot(6e6, 2e6) / 1e7, 4);

    // Retained: a screen that connects later gets every province's latest summary at once.
    const late = await mqtt.connectAsync(url, { clientId: 'late-screen', username: 'tools2', password: await registry.upsertService('tools2', 'tools'), protocolVersion: 4 });
    const retained = new Set<string>();
    late.on('message', (topic, _payload, packet) => {
      if (packet.retain) retained.add(topic);
    });
    await late.subscribeAsync(TOPIC_FILTERS.allSummaries, { qos: 0 });
    await waitFor('34 retained summaries', () => (retained.size === 34 ? true : undefined));
    await late.endAsync();
  });

  it('takes a changed rules file without a restart: an invalid one is refused, a valid one replaces the rules', async () => {
    const file = join(dir, 'alert-rules.yaml');
    await writeFile(file, RULES_YAML);
    await ingest?.close();
    ingest = await startIngest({ mqttUrl: url, username: 'ingest', password: ingestSecret, clientId: 'ingest-processing', influx, registry, logger: pino({ level: process.env.TEST_LOG ?? 'silent' }), flushIntervalMs: 50, alertRules: RULES, rulesFile: file, summaryIntervalMs: 60_000, rollups: 'cq' });
    const live = ingest;
    const silent = live.alerts.active().find((e) => e.ruleId === 'station-silent');
    expect(silent).toBeDefined();

    await writeFile(file, 'version: 1\nrules:\n  - id: broken\n    kind: threshold\n');
    await waitFor('the invalid rules to be refused', () => (live.metrics.rulesRejected === 1 ? true : undefined));
    expect(live.alerts.active().map((e) => e.id)).toContain(silent?.id);
    expect(live.renderMetrics()).toMatch(/citypulse_ingest_rules_reloads_total\{result="refused"\} 1/);

    // The same rules without station-silent: its active alert is cleared, stored and published.
    await writeAlertRules(file, RULES_YAML.slice(0, RULES_YAML.indexOf('  - id: station-silent')));
    await waitFor('the new rules', () => (live.metrics.rulesReloaded === 1 ? true : undefined));
    const cleared = await waitFor('the cleared event', () => alerts.find((e) => e.id === silent?.id && e.state === 'cleared'));
    expect(cleared.message).toMatch(/removed or no longer applies/);
    expect(live.alerts.active().filter((e) => e.ruleId === 'station-silent')).toEqual([]);
    await waitFor('the stored cleared event', async () => ((await loadAlertEvents(influx, ['01'], 0)).some((e) => e.id === silent?.id && e.state === 'cleared') ? true : undefined));
  });
});
