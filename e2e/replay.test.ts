import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic, TOPIC_FILTERS, type DeviceAddress, type EnergyReading, type EnvironmentReading, type TrafficReading } from '@citypulse/contracts';
import { openRecorder, readRecording, recordBroker, replay, type RecordedMessage } from '@citypulse/simulators';
import { startStack, waitFor, type Stack } from './stack.js';

/**
 * Replay from InfluxDB through the real pipeline: devices publish over MQTT, ingest stores the
 * readings in a real influxd, the replay reads that time range back and publishes one message per
 * reading into the broker as the tools account, and a subscriber records what arrives.
 */
describe('replay: InfluxDB → broker → ingest', () => {
  let stack: Stack;
  let dir: string;
  let tools: { username: string; password: string };
  const clients: MqttClient[] = [];

  const traffic: DeviceAddress = { province: '01', domain: 'traffic', deviceId: 'e2e-replay-traffic' };
  const environment: DeviceAddress = { province: '79', domain: 'environment', deviceId: 'e2e-replay-env' };
  const energy: DeviceAddress = { province: '48', domain: 'energy', deviceId: 'e2e-replay-energy' };
  /** A second station measuring at the same instants: rows sharing a timestamp, across query pages. */
  const environment2: DeviceAddress = { province: '79', domain: 'environment', deviceId: 'e2e-replay-env2' };
  const base = Date.now() - 120_000; // two minutes ago: inside the clock-skew and retention limits
  const originals = new Map<string, TrafficReading | EnvironmentReading | EnergyReading>(); // topic + seq → reading

  const trafficReading = (i: number): TrafficReading => ({
    ts: base + i * 1000,
    seq: i,
    intensity: 40 + i,
    periodSeconds: 60,
    occupancy: 0.125 + i / 100,
    averageVehicleSpeed: 31.7 - i,
    congested: i === 2,
    laneId: 1,
    laneDirection: 'forward',
    intensityByVehicleType: { motorcycle: 30 + i, car: 8, bus: 2 },
  });
  const environmentReading = (i: number): EnvironmentReading => ({ ts: base + 500 + i * 1000, seq: i, pm25: 35.2 + i, pm10: 61.4, no2: 40, temperature: 29.3, relativeHumidity: 0.78, LAeq: 66.1 });
  const energyReading = (i: number): EnergyReading => ({
    ts: base + 250 + i * 1000,
    seq: i,
    frequency: 50.01,
    totalActivePower: 310_000 + i * 1000,
    totalReactivePower: 95_000.5,
    powerFactor: 0.956,
    phaseVoltage: { L1: 229.1, L2: 231.4, L3: 230 },
    current: { L1: 470.2, L2: 465, L3: 472.9 },
    totalActiveEnergyImport: 123_456.789 + i,
  });

  const countStored = async (): Promise<number> => {
    let total = 0;
    for (const measurement of ['traffic', 'environment', 'energy']) {
      const [series = []] = await stack.influxClient.query(`SELECT count("seq") FROM "${measurement}" WHERE "device" =~ /^e2e-replay-/`);
      const value = series[0]?.values[0]?.[1];
      total += typeof value === 'number' ? value : 0;
    }
    return total;
  };

  /** Records what arrives on every telemetry topic while `action` runs, until `count` messages came. */
  const recordWhile = async (count: number, action: () => Promise<unknown>): Promise<RecordedMessage[]> => {
    const recorder = await openRecorder({ path: join(dir, `arrived-${Date.now()}-${Math.random().toString(36).slice(2)}.ndjson`) });
    const recording = await recordBroker({ mqttUrl: stack.mqttUrl, ...tools, recorder, filters: [TOPIC_FILTERS.allTelemetry] });
    try {
      await action();
      await waitFor(() => recording.stats().recorded >= count, 15_000, `fewer than ${count} replayed messages arrived`);
    } finally {
      await recording.stop();
      await recorder.close();
    }
    const arrived: RecordedMessage[] = [];
    for await (const message of readRecording(recorder.stats().files)) arrived.push(message);
    return arrived;
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-e2e-replay-'));
    stack = await startStack();
    tools = { username: 'tools-e2e', password: await stack.registry.upsertService('tools-e2e', 'tools') };

    // Three devices publish as they would in the field; the energy meter sends its backlog as a batch.
    for (const address of [traffic, environment, energy, environment2]) {
      const { secret } = await stack.provisionDevice({ id: address.deviceId, province: address.province, domain: address.domain });
      const client = await mqtt.connectAsync(stack.mqttUrl, { clientId: address.deviceId, username: address.deviceId, password: secret, protocolVersion: 4, reconnectPeriod: 0 });
      clients.push(client);
      const topic = deviceTopic(address, 'telemetry');
      const make: (i: number) => TrafficReading | EnvironmentReading | EnergyReading = address === traffic ? trafficReading : address === energy ? energyReading : address === environment ? environmentReading : (i: number) => ({ ...environmentReading(i), pm25: 135 + i });
      const readings = [0, 1, 2].map(make);
      for (const r of readings) originals.set(`${topic} ${r.seq}`, r);
      if (address === energy) {
        await client.publishAsync(topic, JSON.stringify({ readings }), { qos: 1 });
      } else {
        for (const r of readings) await client.publishAsync(topic, JSON.stringify(r), { qos: 1 });
      }
    }
    await waitFor(async () => (await countStored()) === 12, 20_000, 'ingest did not store the 12 readings');
  });

  afterAll(async () => {
    for (const client of clients) client.end(true);
    await stack?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it('replays a stored time range: one message per reading, equal to the originals (ts kept), in time order', async () => {
    let stats;
    const arrived = await recordWhile(12, async () => {
      const run = await replay({ source: { kind: 'influx', influx: stack.influxClient, from: base - 1000, to: base + 10_000 }, mqttUrl: stack.mqttUrl, ...tools, speed: 'max' });
      stats = await run.done;
    });
    expect(stats).toMatchObject({ state: 'done', total: 12, sent: 12, acked: 12, errors: 0, skipped: 0 });
    expect(arrived).toHaveLength(12);
    for (const message of arrived) {
      const reading = JSON.parse(String(message.payload)) as { seq: number; ts: number };
      expect(reading, message.topic).toEqual(originals.get(`${message.topic} ${reading.seq}`));
      expect(message.qos).toBe(1);
    }
    const times = arrived.map((m) => (JSON.parse(String(m.payload)) as { ts: number }).ts);
    expect(times).toEqual([...times].sort((a, b) => a - b));
    // Ingest took the replay like live data: same series and timestamps, so the points were overwritten, not added.
    await stack.ingest.flush();
    expect(await countStored()).toBe(12);
  });

  it('reads in pages without losing or repeating rows that share a timestamp', async () => {
    const keys = (messages: RecordedMessage[]) => messages.map((m) => `${m.topic} ${(JSON.parse(String(m.payload)) as { seq: number }).seq}`).sort();
    const expected = [...originals.keys()].sort();
    for (const pageRows of [1, 3]) {
      const arrived = await recordWhile(12, async () => {
        const run = await replay({ source: { kind: 'influx', influx: stack.influxClient, from: base - 1000, to: base + 10_000, pageRows }, mqttUrl: stack.mqttUrl, ...tools, speed: 'max' });
        expect(await run.done).toMatchObject({ sent: 12, skipped: 0 });
      });
      expect(keys(arrived), `pages of ${pageRows}`).toEqual(expected);
    }
  });

  it('filters by province and domain, and keeps the recorded timing at a speed', async () => {
    const started = performance.now();
    const arrived = await recordWhile(3, async () => {
      const run = await replay({ source: { kind: 'influx', influx: stack.influxClient, from: base - 1000, to: base + 10_000, provinces: ['01'], domains: ['traffic'] }, mqttUrl: stack.mqttUrl, ...tools, speed: 10 });
      expect((await run.done).total).toBe(3);
    });
    expect(arrived.map((m) => m.topic)).toEqual(Array(3).fill(deviceTopic(traffic, 'telemetry')));
    expect(performance.now() - started).toBeGreaterThanOrEqual(180); // 2 s between first and last reading at 10×
  });

  it('with shiftToNow the readings look measured now, and ingest stores them as new points', async () => {
    const before = Date.now();
    const arrived = await recordWhile(3, async () => {
      const run = await replay({ source: { kind: 'influx', influx: stack.influxClient, from: base - 1000, to: base + 10_000, devices: [environment.deviceId] }, mqttUrl: stack.mqttUrl, ...tools, speed: 'max', shiftToNow: true });
      await run.done;
    });
    const shifted = arrived.map((m) => JSON.parse(String(m.payload)) as EnvironmentReading);
    for (const [i, reading] of shifted.entries()) {
      expect(reading.ts).toBeGreaterThanOrEqual(before);
      expect(reading).toEqual({ ...environmentReading(i), ts: reading.ts });
    }
    const [series = []] = await waitFor(async () => {
      const result = await stack.influxClient.query(`SELECT count("seq") FROM "environment" WHERE "device" = $device AND time >= ${before}ms`, { device: environment.deviceId });
      return result[0]?.[0]?.values[0]?.[1] === 3 ? result : undefined;
    }, 15_000, 'the shifted readings were not stored as new points');
    expect(series[0]?.values[0]?.[1]).toBe(3);
  });
});
