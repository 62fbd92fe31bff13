import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic, PROVINCES, type Domain } from '@citypulse/contracts';
import { buildBroker, DeviceRegistry, listenMqttTcp, type PlatformBroker } from '@citypulse/broker';
import { freePort, Influx, startInfluxd, type RunningInfluxd } from '@citypulse/infra';
import { shardOf, startIngest, type IngestPipeline } from '../src/index.js';

/**
 * At-least-once from device to InfluxDB, against a real broker and a real InfluxDB (Debian's
 * influxd, temporary folder): an InfluxDB outage under load, ingest killed with SIGKILL, a burst
 * of invalid messages, and two shards. Every check counts points in InfluxDB against the
 * messages the broker acknowledged to the publishers.
 */
const logger = pino({ level: 'silent' });
const INGEST_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');

interface Device {
  readonly id: string;
  readonly province: string;
  readonly domain: Domain;
  secret: string;
}

let dir: string;
let influxPort: number;
let influxd: RunningInfluxd;
let influx: Influx;
let registry: DeviceRegistry;
let broker: PlatformBroker;
let server: Server;
let url: string;
let ingestSecret: string;
/** One environment device per province. */
const devices: Device[] = PROVINCES.map((p) => ({ id: `t-air-${p.code}`, province: p.code, domain: 'environment', secret: '' }));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'citypulse-delivery-'));
  influxPort = await freePort('127.0.0.1');
  influxd = await startInfluxd({ dataDir: join(dir, 'influxdb'), port: influxPort });
  influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
  await influx.ensureDatabase('30d');
  registry = await DeviceRegistry.open(dir);
  const created = await registry.upsertDevices(PROVINCES.map((p) => ({ id: `t-air-${p.code}`, province: p.code, domain: 'environment' as const, location: p.label })));
  for (const c of created) (devices.find((d) => d.id === c.id) as Device).secret = c.secret as string;
  ingestSecret = await registry.upsertService('ingest', 'ingest');
  // Devices here publish far over the default 10/s: the rate limit is not under test.
  broker = await buildBroker({ registry, logger, limits: { ratePerS: 1_000_000, rateBurst: 1_000_000, shutdownSpreadMs: 0 } });
  server = await listenMqttTcp(broker, 0, '127.0.0.1');
  url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
}, 120_000);

afterAll(async () => {
  await broker?.close();
  await new Promise((resolve) => server?.close(resolve));
  await influxd?.stop();
  registry?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

const connectDevice = (device: Device): Promise<MqttClient> =>
  mqtt.connectAsync(url, { clientId: device.id, username: device.id, password: device.secret, protocolVersion: 4, reconnectPeriod: 0 });

/** Unique timestamps per test, so each test's points are its own. */
let clock = Date.now() - 60 * 60_000;
const reading = (seq: number) => ({ ts: clock++, seq, pm25: 10 + (seq % 50), pm10: 20, temperature: 28.5, relativeHumidity: 0.7 });

/** Publishes at QoS 1 and counts the broker's PUBACKs: the messages the platform now owes to InfluxDB. */
class Publisher {
  acked = 0;
  sent = 0;
  constructor(
    readonly device: Device,
    readonly client: MqttClient,
  ) {}
  static async open(device: Device): Promise<Publisher> {
    return new Publisher(device, await connectDevice(device));
  }
  async publish(payload: unknown): Promise<void> {
    this.sent++;
    await this.client.publishAsync(deviceTopic({ province: this.device.province, domain: this.device.domain, deviceId: this.device.id }, 'telemetry'), JSON.stringify(payload), { qos: 1 });
    this.acked++;
  }
  async close(): Promise<void> {
    await this.client.endAsync();
  }
}

async function countReadings(deviceIds: readonly string[]): Promise<number> {
  const regex = deviceIds.map((id) => id.replace(/[^a-z0-9_-]/g, '')).join('|');
  const [series] = await influx.query(`SELECT count(seq) FROM raw.environment WHERE device =~ /^(${regex})$/`);
  return Number(series?.[0]?.values[0]?.[1] ?? 0);
}

/** `state` describes what was seen instead, for the failure message (these tests have stalled under load). */
async function until(condition: () => Promise<boolean> | boolean, what: string, timeoutMs: number, state?: () => Promise<string> | string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${state ? `; ${await state()}` : ''}`);
    await sleep(100);
  }
}

describe('ingest delivery', () => {
  it('stores every acknowledged reading exactly once across a 30 s InfluxDB outage, its buffer within the bound', { timeout: 180_000 }, async () => {
    const device = devices[0] as Device;
    const maxBufferedLines = 400;
    const ingest = await startIngest({ mqttUrl: url, username: 'ingest', password: ingestSecret, clientId: 'ingest-outage', influx, registry, logger, flushIntervalMs: 50, maxBufferedLines, reconnectPeriodMs: 200 });
    let mostBuffered = 0;
    const watch = setInterval(() => (mostBuffered = Math.max(mostBuffered, ingest.bufferedLines)), 10);
    const publisher = await Publisher.open(device);
    let seq = 0;
    let stopLoad = false;
    // Steady load: 100 readings/s.
    const load = (async () => {
      while (!stopLoad) {
        await Promise.all(Array.from({ length: 10 }, () => publisher.publish(reading(seq++))));
        await sleep(100);
      }
    })();
    try {
      await sleep(3000);
      await influxd.stop();
      await sleep(30_000);
      expect(ingest.ready().ready).toBe(false);
      expect(ingest.metrics.backpressurePauses).toBeGreaterThanOrEqual(1); // it stopped reading
      influxd = await startInfluxd({ dataDir: join(dir, 'influxdb'), port: influxPort });
      await sleep(3000);
    } finally {
      stopLoad = true;
      await load;
      await publisher.close();
    }
    expect(publisher.acked).toBe(publisher.sent);
    await until(async () => (await countReadings([device.id])) === publisher.acked, `${publisher.acked} readings in InfluxDB`, 90_000, async () => {
      const m = ingest.metrics;
      const seen = `received ${m.received.telemetry}, stored ${m.readings}, acked ${m.acked}, acks voided ${m.ackVoided}, redelivered ${m.redelivered}, pauses ${m.backpressurePauses}, write failures ${m.writeFailures}`;
      return `found ${await countReadings([device.id])}; ingest ${JSON.stringify(ingest.ready())}, paused ${ingest.paused}; ${seen}`;
    });
    // Exactly once: a redelivered reading overwrote its own point, nothing more appeared.
    await sleep(500);
    expect(await countReadings([device.id])).toBe(publisher.acked);
    clearInterval(watch);
    // The bound holds, give or take what was already read when ingest stopped reading: the socket
    // read MQTT.js is parsing (up to 64 KiB) and the one its Writable had queued behind it (a write
    // is accepted whole, so up to another 64 KiB, before the pipe pauses the socket), in messages of
    // this size. (A CI run saw 730 messages, about 95 KiB, over a bound of 400 lines.)
    const messageBytes = JSON.stringify({ ts: clock, seq: seq, pm25: 10, pm10: 20, temperature: 28.5, relativeHumidity: 0.7 }).length + 40;
    expect(mostBuffered).toBeLessThan(maxBufferedLines + Math.ceil((2 * 64 * 1024) / messageBytes));
    await until(() => ingest.ready().ready, 'ingest to be ready again', 10_000);
    await ingest.close();
  });

  it('loses nothing and doubles nothing when ingest is killed with SIGKILL mid-stream', { timeout: 240_000 }, async () => {
    const device = devices[1] as Device;
    const env = {
      ...process.env,
      MQTT_URL: url,
      INGEST_MQTT_PASSWORD: ingestSecret,
      INGEST_CLIENT_ID: 'ingest-killed',
      INFLUX_URL: `http://127.0.0.1:${influxPort}`,
      DATA_DIR: dir,
      INGEST_HTTP_PORT: '0',
      LOG_LEVEL: 'silent',
    };
    const start = (): ChildProcess => spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: INGEST_DIR, env, stdio: 'ignore' });
    // The session is new: a reading published before ingest's SUBSCRIBE has nobody to be queued
    // for, so the stream starts once the subscription is in place (not merely the connection).
    let subscribed = false;
    const onSubscribe = (_subscriptions: unknown, client: { id: string } | null) => {
      if (client?.id === 'ingest-killed') subscribed = true;
    };
    broker.aedes.on('subscribe', onSubscribe);
    let child = start();
    const publisher = await Publisher.open(device);
    try {
      let seq = 0;
      const burst = async (n: number) => {
        for (let i = 0; i < n; i += 20) await Promise.all(Array.from({ length: 20 }, () => publisher.publish(reading(seq++))));
      };
      await until(() => subscribed, 'ingest to subscribe', 60_000);
      await burst(1000);
      child.kill('SIGKILL'); // mid-stream: some stored, some in its buffer, some in flight
      await burst(1000);
      child = start();
      await burst(1000);
      expect(publisher.acked).toBe(3000);
      await until(async () => (await countReadings([device.id])) === 3000, '3,000 readings in InfluxDB', 120_000, async () => {
        const connected = (broker.aedes as unknown as { clients: Record<string, unknown> }).clients['ingest-killed'] !== undefined;
        return `found ${await countReadings([device.id])}; restarted ingest ${child.exitCode === null ? 'running' : `exited ${child.exitCode}`}, ${connected ? 'connected' : 'not connected'}`;
      });
      await sleep(1000);
      expect(await countReadings([device.id])).toBe(3000);
    } finally {
      broker.aedes.off('subscribe', onSubscribe);
      await publisher.close();
      child.kill('SIGTERM');
    }
  });

  it('a burst of invalid messages between valid ones: every valid one stored, every invalid one a dead-letter record with its code', { timeout: 60_000 }, async () => {
    const device = devices[2] as Device;
    const ingest = await startIngest({ mqttUrl: url, username: 'ingest', password: ingestSecret, clientId: 'ingest-invalid', influx, registry, logger, flushIntervalMs: 50 });
    const publisher = await Publisher.open(device);
    const invalid = [
      { payload: '{"ts": not json', code: 'E_PAYLOAD_JSON' },
      { payload: JSON.stringify({ ts: Date.now(), seq: 1, pm25: 'lots' }), code: 'E_PAYLOAD_SCHEMA' },
      { payload: JSON.stringify({ ts: Date.now() + 3_600_000, seq: 2, pm25: 12 }), code: 'E_CLOCK_SKEW' },
      { payload: JSON.stringify({ ts: Date.now() - 400 * 86_400_000, seq: 3, pm25: 12 }), code: 'E_TOO_OLD' },
    ] as const;
    try {
      let valid = 0;
      for (let round = 0; round < 25; round++) {
        await publisher.publish(reading(round));
        valid++;
        for (const bad of invalid) await publisher.client.publishAsync(deviceTopic({ province: device.province, domain: device.domain, deviceId: device.id }, 'telemetry'), bad.payload, { qos: 1 });
        await publisher.publish(reading(round + 1000));
        valid++;
      }
      await until(async () => (await countReadings([device.id])) === valid, `${valid} valid readings stored`, 30_000);
      for (const bad of invalid) {
        await until(
          async () => {
            const [series] = await influx.query('SELECT count(bytes) FROM raw.rejected WHERE device = $device AND code = $code', { device: device.id, code: bad.code });
            return Number(series?.[0]?.values[0]?.[1] ?? 0) === 25;
          },
          `25 dead-letter records with ${bad.code}`,
          30_000,
        );
        expect(ingest.metrics.rejected[bad.code]).toBe(25);
      }
      const [rows] = await influx.query('SELECT topic, reason, payload FROM raw.rejected WHERE device = $device AND code = $code LIMIT 1', { device: device.id, code: 'E_PAYLOAD_JSON' });
      const [, topic, reason, payload] = rows?.[0]?.values[0] ?? [];
      expect(topic).toBe(`city/${device.province}/environment/${device.id}/telemetry`);
      expect(String(reason)).toMatch(/JSON/);
      expect(payload).toBe('{"ts": not json');
    } finally {
      await publisher.close();
      await ingest.close();
    }
  });

  it('two shards store every reading of the 34 provinces exactly once between them', { timeout: 90_000 }, async () => {
    const workers: IngestPipeline[] = [];
    for (const index of [1, 2]) workers.push(await startIngest({ mqttUrl: url, username: 'ingest', password: ingestSecret, shard: shardOf(index, 2), influx, registry, logger, flushIntervalMs: 50 }));
    const perDevice = 30;
    const before = await countReadings(devices.map((d) => d.id));
    try {
      await Promise.all(
        devices.map(async (device) => {
          const publisher = await Publisher.open(device);
          for (let i = 0; i < perDevice; i++) await publisher.publish(reading(i));
          await publisher.close();
        }),
      );
      const expected = before + devices.length * perDevice;
      await until(async () => (await countReadings(devices.map((d) => d.id))) === expected, `${expected} readings stored`, 30_000);
      // Each worker stored exactly its own provinces' readings: together all of them, once.
      const [one, two] = workers as [IngestPipeline, IngestPipeline];
      expect(one.metrics.readings + two.metrics.readings).toBe(devices.length * perDevice);
      expect(one.metrics.readings).toBe(one.shard.provinces.length * perDevice);
      expect(one.metrics.foreign + two.metrics.foreign).toBe(0);
    } finally {
      for (const w of workers) await w.close();
    }
  });
});
