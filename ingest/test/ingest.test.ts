import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic } from '@citypulse/contracts';
import { buildBroker, DeviceRegistry, listenMqttTcp, type PlatformBroker } from '@citypulse/broker';
import { Influx, startInfluxd, type RunningInfluxd } from '@citypulse/infra';
import { startIngest, type IngestPipeline } from '../src/index.js';

/** ingest against a real InfluxDB (Debian's influxd, temporary folder) and a real broker on loopback. */
describe('ingest', () => {
  let dir: string;
  let influxd: RunningInfluxd;
  let influx: Influx;
  let registry: DeviceRegistry;
  let broker: PlatformBroker;
  let server: Server;
  let ingest: IngestPipeline;
  let url: string;
  let secret: string;
  const feeder = { province: '79', domain: 'energy' as const, deviceId: 'hcm-feeder-01' };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-ingest-'));
    influxd = await startInfluxd({ dataDir: join(dir, 'influxdb') });
    influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
    await influx.ensureDatabase('30d');
    registry = await DeviceRegistry.open(dir);
    [{ secret }] = (await registry.upsertDevices([
      { id: feeder.deviceId, province: '79', domain: 'energy', location: [106.7, 10.78], kind: 'feeder-22kv', profile: { ratedPowerVA: 10_000_000, nominalPhaseVoltageV: 12_700 } },
    ])) as [{ id: string; secret: string }];
    const ingestSecret = await registry.upsertService('ingest', 'ingest');
    broker = await buildBroker({ registry, logger: pino({ level: 'silent' }) });
    server = await listenMqttTcp(broker, 0, '127.0.0.1');
    url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
    ingest = await startIngest({ mqttUrl: url, username: 'ingest', password: ingestSecret, clientId: 'ingest-test', influx, registry, logger: pino({ level: 'silent' }), flushIntervalMs: 50 });
  });

  afterAll(async () => {
    await ingest?.close();
    await broker?.close();
    await new Promise((resolve) => server?.close(resolve));
    await influxd?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const reading = (seq: number, ts: number, overrides: Record<string, unknown> = {}) => ({
    ts,
    seq,
    frequency: 50.01,
    totalActivePower: 6_000_000,
    totalReactivePower: 2_000_000,
    powerFactor: 0.95,
    phaseVoltage: { L1: 12_650, L2: 12_700, L3: 12_760 },
    current: { L1: 166, L2: 165, L3: 167 },
    ...overrides,
  });

  it('stores a backlog batch, enriched, and refuses only its bad readings', async () => {
    const device = await mqtt.connectAsync(url, { clientId: feeder.deviceId, username: feeder.deviceId, password: secret, protocolVersion: 4 });
    const now = Date.now();
    const batch = { readings: [reading(1, now - 120_000), reading(2, now - 60_000, { frequency: 'fifty' }), reading(3, now)] };
    await device.publishAsync(deviceTopic(feeder, 'telemetry'), JSON.stringify(batch), { qos: 1 });
    await device.endAsync();

    const deadline = Date.now() + 15_000;
    let rows: readonly (readonly unknown[])[] = [];
    while (Date.now() < deadline && rows.length < 2) {
      const [series = []] = await influx.query('SELECT "seq", "loadFactor", "phaseVoltage_L1", "frequencyBand", "kind" FROM "energy" WHERE "device" = $device', { device: feeder.deviceId });
      rows = series[0]?.values ?? [];
      if (rows.length < 2) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    expect(rows.map((r) => r[1])).toEqual([1, 3]);
    // Load factor S/Srated = hypot(6 MW, 2 MVAr) / 10 MVA.
    expect(rows[0]?.[2]).toBeCloseTo(Math.hypot(6e6, 2e6) / 1e7, 4);
    expect(rows[0]?.[3]).toBe(12_650);
    expect(rows[0]?.[4]).toBe('normal');
    expect(rows[0]?.[5]).toBe('feeder-22kv');
    expect(ingest.metrics.rejected.E_PAYLOAD_SCHEMA).toBe(1);
  });

  it('stores every field with one type, so a whole number never conflicts with a float', async () => {
    const [series = []] = await influx.query('SHOW FIELD KEYS FROM "energy"');
    const types = new Map((series[0]?.values ?? []).map((row) => [row[0], row[1]]));
    expect(types.get('seq')).toBe('float');
    expect(types.get('frequency')).toBe('float');
    expect(types.get('outOfBand')).toBe('boolean');
  });

  it('is idempotent: a redelivered reading overwrites the same point', async () => {
    const device = await mqtt.connectAsync(url, { clientId: feeder.deviceId, username: feeder.deviceId, password: secret, protocolVersion: 4 });
    const ts = Date.now() - 1000;
    const written = ingest.metrics.readings;
    for (let i = 0; i < 3; i++) await device.publishAsync(deviceTopic(feeder, 'telemetry'), JSON.stringify(reading(10, ts)), { qos: 1 });
    await device.endAsync();
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && ingest.metrics.readings < written + 3) await new Promise((resolve) => setTimeout(resolve, 50));
    const [series = []] = await influx.query('SELECT count("seq") FROM "energy" WHERE "device" = $device AND "seq" = 10', { device: feeder.deviceId });
    expect(series[0]?.values[0]?.[1]).toBe(1);
  });
});
