import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import mqtt, { type IConnackPacket, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic, parseDeviceTopic, PROVINCE_CODES, PROVINCES as CATALOGUE, TOPIC_FILTERS } from '@citypulse/contracts';
import { buildBroker, DeviceRegistry, listenMqttTcp, memoryPersistence, type PlatformBroker } from '@citypulse/broker';
import { freePort, Influx, startInfluxd, type RunningInfluxd } from '@citypulse/infra';
import { ensureStorage, shardOf } from '../src/index.js';

/**
 * Province shards as production runs them: `src/server.ts` processes with INGEST_SHARD=i/N
 * against one broker (over TCP on loopback) and one InfluxDB (Debian's influxd, temporary folder).
 *
 * "Stored once" is checked on points (count and count of distinct seq per device: a second write
 * of a reading lands on the same point, so the points alone cannot show a double delivery) and on
 * deliveries: the broker reports every PUBACK an ingest session sends ('ack' events), and ingest
 * sends one only once the message is stored, so the acknowledgements of a reading say which
 * sessions stored it and how many times. Alerts are counted where they leave ingest (its
 * publications on ops/{province}/alerts, by client id) and as stored events.
 */
const INGEST_DIR = join(dirname(fileURLToPath(import.meta.url)), '..');
const logger = pino({ level: 'silent' });

/** Eight provinces, dealt out 4 and 4 between workers 1/2 and 2/2; three stations each. */
const PROVINCES = PROVINCE_CODES.slice(0, 8);
const STATIONS_PER_PROVINCE = 3;
const SHARD_1_OF_2 = new Set(shardOf(1, 2).provinces);
/** The session that owns a province with two workers (ingest-i is worker i's session, whatever N). */
const ownerOf = (province: string): string => (SHARD_1_OF_2.has(province) ? 'ingest-1' : 'ingest-2');
/** One reading of pm25 above 400 raises this alert and the next (below 390) clears it. */
const HIGH_PM25 = 500;
const RULES_YAML = `
version: 1
rules:
  - id: pm25-test-high
    kind: threshold
    domain: environment
    field: pm25
    above: 400
    hysteresis: 10
    severity: warning
`;

interface Station {
  readonly id: string;
  readonly province: string;
  secret: string;
}

let dir: string;
let influxd: RunningInfluxd;
let influx: Influx;
let registry: DeviceRegistry;
let ingestSecret: string;
let rulesFile: string;
const fleets = new Map<string, Station[]>();

const fleet = (prefix: string): Station[] => PROVINCES.flatMap((province) => Array.from({ length: STATIONS_PER_PROVINCE }, (_, k) => ({ id: `${prefix}-air-${province}-${k + 1}`, province, secret: '' })));

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'citypulse-shards-'));
  influxd = await startInfluxd({ dataDir: join(dir, 'influxdb'), port: await freePort('127.0.0.1') });
  influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
  // What server.ts sets up with the defaults (it finds it unchanged).
  await ensureStorage(influx, { rawRetention: '30d', rollup1mRetention: '90d', rollup1hRetention: '730d', continuousQueries: false });
  registry = await DeviceRegistry.open(dir);
  for (const prefix of ['s1', 's2', 's3']) {
    const stations = fleet(prefix);
    const created = await registry.upsertDevices(stations.map((s) => ({ id: s.id, province: s.province, domain: 'environment' as const, location: (CATALOGUE.find((p) => p.code === s.province) as (typeof CATALOGUE)[number]).label, kind: 'station' })));
    for (const c of created) (stations.find((s) => s.id === c.id) as Station).secret = c.secret as string;
    fleets.set(prefix, stations);
  }
  ingestSecret = await registry.upsertService('ingest', 'ingest');
  rulesFile = join(dir, 'alert-rules.yaml');
  await writeFile(rulesFile, RULES_YAML);
}, 120_000);

afterAll(async () => {
  await influxd?.stop();
  registry?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/** Where the layout change stands when a reading is published and when the broker acknowledges it. */
type Epoch = 'one' | 'stopping' | 'gap' | 'handover' | 'after' | 'two' | 'restarting';

interface Published {
  readonly station: Station;
  readonly seq: number;
  readonly sent: Epoch;
  acked?: Epoch;
}

/** One broker (in this process, over TCP) and what it sees: every ingest PUBACK and alert publication. */
class Cluster {
  epoch: Epoch = 'two';
  readonly published: Published[] = [];
  /** `device|seq` → the ingest sessions that acknowledged (stored) it, once per PUBACK. */
  readonly acks = new Map<string, string[]>();
  /** device → the alert events ingest published for it: `state by clientId`. */
  readonly alerts = new Map<string, string[]>();
  readonly workers: Worker[] = [];
  readonly publishers: Publisher[] = [];

  private constructor(
    readonly broker: PlatformBroker,
    readonly server: Server,
    readonly url: string,
    /** The broker's session store (what buildBroker uses by default), to look into. */
    readonly persistence: ReturnType<typeof memoryPersistence>,
  ) {
    broker.aedes.on('ack', (packet, client) => {
      if (!packet || packet.cmd !== 'publish' || !client?.id.startsWith('ingest-')) return;
      const address = parseDeviceTopic(packet.topic);
      if (!address.ok || address.value.channel !== 'telemetry') return;
      const { seq } = JSON.parse(packet.payload.toString()) as { seq: number };
      const key = `${address.value.deviceId}|${seq}`;
      this.acks.set(key, [...(this.acks.get(key) ?? []), client.id]);
    });
    broker.aedes.on('publish', (packet, client) => {
      if (!client?.id.startsWith('ingest-') || !/^ops\/[^/]+\/alerts$/.test(packet.topic)) return;
      const event = JSON.parse(packet.payload.toString()) as { deviceId: string; state: string };
      this.alerts.set(event.deviceId, [...(this.alerts.get(event.deviceId) ?? []), `${event.state} by ${client.id}`]);
    });
  }

  static async start(): Promise<Cluster> {
    // Stations here publish far over the default 10/s: the rate limit is not under test.
    const persistence = memoryPersistence();
    const broker = await buildBroker({ registry, logger, persistence, limits: { ratePerS: 1_000_000, rateBurst: 1_000_000, shutdownSpreadMs: 0 } });
    const server = await listenMqttTcp(broker, 0, '127.0.0.1');
    return new Cluster(broker, server, `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`, persistence);
  }

  /** The filters the broker keeps for a session. */
  async subscriptionsOf(clientId: string): Promise<unknown[]> {
    return (this.persistence as unknown as { subscriptionsByClient(c: { id: string }): Promise<unknown[]> }).subscriptionsByClient({ id: clientId });
  }

  /**
   * CONNACK's sessionPresent for `clientId`, with ingest's account and clean: false, as a worker
   * would connect; then the session this connection created, if any, is removed (clean: true).
   */
  async sessionPresent(clientId: string): Promise<boolean> {
    const options = { clientId, username: 'ingest', password: ingestSecret, protocolVersion: 4 as const, reconnectPeriod: 0 };
    const client = mqtt.connect(this.url, { ...options, clean: false });
    const connack = await new Promise<IConnackPacket>((resolve, reject) => client.once('connect', resolve).once('error', reject));
    await client.endAsync();
    await (await mqtt.connectAsync(this.url, { ...options, clean: true })).endAsync();
    return connack.sessionPresent;
  }

  async connect(stations: readonly Station[]): Promise<Publisher[]> {
    const opened = await Promise.all(stations.map(async (station) => new Publisher(this, station, await mqtt.connectAsync(this.url, { clientId: station.id, username: station.id, password: station.secret, protocolVersion: 4, reconnectPeriod: 0 }))));
    this.publishers.push(...opened);
    return opened;
  }

  /** Moves to `to` (from `from` only) when an ingest session's SUBSCRIBE or UNSUBSCRIBE with this filter is through. */
  advanceOn(event: 'subscribe' | 'unsubscribe', clientId: string, filter: string, from: Epoch, to: Epoch): void {
    const aedes = this.broker.aedes as unknown as NodeJS.EventEmitter;
    const listener = (filters: readonly (string | { topic: string })[], client: { id: string } | null) => {
      if (client?.id !== clientId || !filters.some((f) => (typeof f === 'string' ? f : f.topic) === filter)) return;
      aedes.off(event, listener);
      if (this.epoch === from) this.epoch = to;
    };
    aedes.on(event, listener);
  }

  acksOf(p: Published): string[] {
    return this.acks.get(`${p.station.id}|${p.seq}`) ?? [];
  }

  /** Published (acknowledged by the broker) readings nobody has stored yet; for the failure message. */
  unstored(): Published[] {
    return this.published.filter((p) => p.acked !== undefined && this.acksOf(p).length === 0);
  }

  async state(): Promise<string> {
    const parts = [`${this.published.length} published, ${this.unstored().length} not acknowledged by ingest`];
    for (const w of this.workers) parts.push(await w.describe());
    return parts.join('; ');
  }

  async close(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.stop()));
    await Promise.all(this.publishers.map((p) => p.client.endAsync()));
    await this.broker.close();
    await new Promise((resolve) => this.server.close(resolve));
  }
}

/** One station's connection: QoS 1, distinct seq, strictly increasing timestamps. */
class Publisher {
  private seq = 0;
  private lastTs = 0;
  constructor(
    readonly cluster: Cluster,
    readonly station: Station,
    readonly client: MqttClient,
  ) {}

  async publish(pm25 = 20 + (this.seq % 10)): Promise<void> {
    const record: Published = { station: this.station, seq: this.seq++, sent: this.cluster.epoch };
    this.lastTs = Math.max(Date.now(), this.lastTs + 1);
    this.cluster.published.push(record);
    const payload = { ts: this.lastTs, seq: record.seq, pm25, pm10: 30, temperature: 29.5, relativeHumidity: 0.7 };
    await this.client.publishAsync(deviceTopic({ province: this.station.province, domain: 'environment', deviceId: this.station.id }, 'telemetry'), JSON.stringify(payload), { qos: 1 });
    record.acked = this.cluster.epoch;
  }

  /** `count` readings, one of them (the middle one) above the alert threshold, the next below it. */
  async burst(count: number): Promise<void> {
    for (let i = 0; i < count; i++) await this.publish(i === Math.floor(count / 2) ? HIGH_PM25 : undefined);
  }
}

/** Readings from every station, one each `periodMs`, until stopped. */
function steadyLoad(publishers: readonly Publisher[], periodMs: number): { stop(): Promise<void> } {
  let stopped = false;
  const loops = publishers.map(async (p) => {
    while (!stopped) {
      await p.publish();
      await sleep(periodMs);
    }
  });
  return {
    async stop() {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

/** An ingest worker: `node src/server.ts` with INGEST_SHARD, as deployed. */
class Worker {
  private readonly log: string[] = [];
  private constructor(
    readonly shard: string,
    readonly child: ChildProcess,
    readonly port: number,
  ) {
    child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      this.log.push(...chunk.split('\n').filter((line) => line.length > 0));
      if (this.log.length > 400) this.log.splice(0, this.log.length - 400);
    });
  }

  static async start(cluster: Cluster, shard: string, handoverMs?: number): Promise<Worker> {
    const port = await freePort('127.0.0.1');
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      MQTT_URL: cluster.url,
      INGEST_MQTT_USERNAME: 'ingest',
      INGEST_MQTT_PASSWORD: ingestSecret,
      INGEST_SHARD: shard,
      ...(handoverMs === undefined ? {} : { INGEST_HANDOVER_MS: String(handoverMs) }),
      INGEST_RULES_FILE: rulesFile,
      INGEST_FLUSH_INTERVAL_MS: '50',
      INFLUX_URL: influxd.url,
      DATA_DIR: dir,
      INGEST_HTTP_HOST: '127.0.0.1',
      INGEST_HTTP_PORT: String(port),
      LOG_LEVEL: 'info',
    };
    delete env.INGEST_CLIENT_ID;
    if (handoverMs === undefined) delete env.INGEST_HANDOVER_MS;
    const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: INGEST_DIR, env, stdio: ['ignore', 'pipe', 'inherit'] });
    const worker = new Worker(shard, child, port);
    cluster.workers.push(worker);
    // /healthz answers once ingest has subscribed (startIngest resolves after the SUBACK).
    await until(async () => (await worker.health()) !== undefined, `ingest ${shard} to answer /healthz`, 60_000, () => worker.describe());
    return worker;
  }

  async health(): Promise<{ shard: string; clientId: string } | undefined> {
    if (this.child.exitCode !== null) throw new Error(`ingest ${this.shard} exited with ${this.child.exitCode}: ${this.log.slice(-5).join('\n')}`);
    try {
      const response = await fetch(`http://127.0.0.1:${this.port}/healthz`);
      return response.ok ? ((await response.json()) as { shard: string; clientId: string }) : undefined;
    } catch {
      return undefined;
    }
  }

  /** Its Prometheus counters, by series (`name{labels}`). */
  async metrics(): Promise<Map<string, number>> {
    const text = await (await fetch(`http://127.0.0.1:${this.port}/metrics`)).text();
    const values = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (line.startsWith('#') || line.length === 0) continue;
      const space = line.lastIndexOf(' ');
      values.set(line.slice(0, space), Number(line.slice(space + 1)));
    }
    return values;
  }

  /** Its log lines (the last 400) that match. */
  logged(pattern: RegExp): string[] {
    return this.log.filter((line) => pattern.test(line));
  }

  async describe(): Promise<string> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return `ingest ${this.shard} exited`;
    const m = await this.metrics().catch(() => undefined);
    const figures = m ? `readings ${m.get('citypulse_ingest_readings_written_total')}, foreign ${m.get('citypulse_ingest_messages_foreign_total')}, buffered ${m.get('citypulse_ingest_buffered_lines')}` : 'no /metrics';
    const warnings = this.log.filter((line) => /"level":(40|50|60)/.test(line)).slice(-3);
    return `ingest ${this.shard}: ${figures}${warnings.length > 0 ? `; ${warnings.join(' ')}` : ''}`;
  }

  /** SIGTERM: it stores and acknowledges what it took; the broker keeps the rest for its session. */
  async stop(): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, 'exit');
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(timer);
  }
}

async function until(condition: () => Promise<boolean> | boolean, what: string, timeoutMs: number, state?: () => Promise<string> | string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${state ? `; ${await state()}` : ''}`);
    await sleep(100);
  }
}

/** Per device: points, and distinct seq among them. */
async function storedReadings(prefix: string): Promise<Map<string, { points: number; distinct: number }>> {
  const [series = []] = await influx.query(`SELECT count(seq) AS points, count(distinct(seq)) AS seqs FROM raw.environment WHERE device =~ /^${prefix}-/ GROUP BY device`);
  return new Map(series.map((s) => [s.tags?.device as string, { points: Number(s.values[0]?.[1]), distinct: Number(s.values[0]?.[2]) }]));
}

async function storedAlertEvents(prefix: string): Promise<Map<string, number>> {
  const [series = []] = await influx.query(`SELECT count(id) FROM raw.alerts WHERE device =~ /^${prefix}-/ GROUP BY device`);
  return new Map(series.map((s) => [s.tags?.device as string, Number(s.values[0]?.[1])]));
}

/** Every published reading has a point, and no device has more points than it published. */
async function allStored(cluster: Cluster, prefix: string): Promise<boolean> {
  const stored = await storedReadings(prefix);
  return (fleets.get(prefix) as Station[]).every((s) => stored.get(s.id)?.points === cluster.published.filter((p) => p.station === s).length);
}

describe('ingest shards, as separate processes against one broker and one InfluxDB', () => {
  it('two workers (1/2 and 2/2) store every reading exactly once, each only its own provinces, and evaluate each alert once', { timeout: 180_000 }, async () => {
    const stations = fleets.get('s1') as Station[];
    const cluster = await Cluster.start();
    try {
      const [one, two] = await Promise.all([Worker.start(cluster, '1/2'), Worker.start(cluster, '2/2')]);
      expect(await one.health()).toMatchObject({ shard: '1/2', clientId: 'ingest-1' });
      expect(await two.health()).toMatchObject({ shard: '2/2', clientId: 'ingest-2' });
      const perStation = 30;
      await Promise.all((await cluster.connect(stations)).map((p) => p.burst(perStation)));
      const total = stations.length * perStation;
      expect(cluster.published.filter((p) => p.acked !== undefined)).toHaveLength(total);
      await until(() => allStored(cluster, 's1'), `${total} readings stored`, 60_000, () => cluster.state());
      await until(() => [...cluster.acks.values()].flat().length >= total && stations.every((s) => (cluster.alerts.get(s.id)?.length ?? 0) >= 2), 'every PUBACK and alert', 30_000, () => cluster.state());
      await sleep(1000); // anything doubled would show by now

      // Points: each reading once.
      const stored = await storedReadings('s1');
      for (const s of stations) expect(stored.get(s.id), s.id).toEqual({ points: perStation, distinct: perStation });
      // Deliveries: each reading stored once, by the session of its province's owner.
      for (const p of cluster.published) expect(cluster.acksOf(p), `${p.station.id} seq ${p.seq}`).toEqual([ownerOf(p.station.province)]);
      // Each worker stored only its own provinces: 4 provinces × 3 stations × 30 readings each.
      for (const [worker, clientId] of [[one, 'ingest-1'], [two, 'ingest-2']] as const) {
        const m = await worker.metrics();
        const own = stations.filter((s) => ownerOf(s.province) === clientId).length * perStation;
        expect(own).toBe(360);
        expect(m.get('citypulse_ingest_readings_written_total'), worker.shard).toBe(own);
        expect(m.get('citypulse_ingest_messages_received_total{channel="telemetry"}'), worker.shard).toBe(own);
        expect(m.get('citypulse_ingest_messages_foreign_total'), worker.shard).toBe(0);
        expect(m.get('citypulse_ingest_provinces_owned'), worker.shard).toBe(17);
        expect(m.get('citypulse_ingest_alerts_total{state="raised"}'), worker.shard).toBe(own / perStation);
      }
      // Alerts: raised and cleared once per station, by its owner; stored once each.
      for (const s of stations) expect(cluster.alerts.get(s.id), s.id).toEqual([`raised by ${ownerOf(s.province)}`, `cleared by ${ownerOf(s.province)}`]);
      const events = await storedAlertEvents('s1');
      for (const s of stations) expect(events.get(s.id), s.id).toBe(2);
    } finally {
      await cluster.close();
    }
  });

  it('adding a worker is a configuration change: 1/1 stopped mid-stream, 1/2 and 2/2 started, and nothing published meanwhile is lost or stored twice', { timeout: 240_000 }, async () => {
    const stations = fleets.get('s2') as Station[];
    // Time enough for both new workers to start on 2 busy cores.
    const handoverMs = 15_000;
    const cluster = await Cluster.start();
    let load: { stop(): Promise<void> } | undefined;
    try {
      cluster.epoch = 'one';
      const single = await Worker.start(cluster, '1/1', handoverMs);
      expect(await single.health()).toMatchObject({ shard: '1/1', clientId: 'ingest-1' });
      const publishers = await cluster.connect(stations);
      // Before: 20 readings a station (one alert each), stored by the single worker.
      await Promise.all(publishers.map((p) => p.burst(20)));
      await until(() => allStored(cluster, 's2'), 'the single worker to store the first readings', 60_000, () => cluster.state());
      await until(() => stations.every((s) => (cluster.alerts.get(s.id)?.length ?? 0) >= 2), 'the first alerts', 30_000, () => cluster.state());

      // A steady stream (24 stations, 5 readings/s each) through the layout change.
      load = steadyLoad(publishers, 200);
      const count = (sent: Epoch, clientId?: string) => cluster.published.filter((p) => p.sent === sent && p.acked === sent && (clientId === undefined || ownerOf(p.station.province) === clientId)).length;
      await sleep(1000);
      cluster.epoch = 'stopping';
      await single.stop();
      cluster.epoch = 'gap';
      // Nobody runs (then 1/2 alone): every province's readings go to ingest-1's session only,
      // until 2/2 has subscribed. Under the old design (sessions ingest-i-of-N, foreign filters
      // dropped at connect) they stayed in the abandoned ingest-1 session: lost.
      await until(() => count('gap', 'ingest-2') >= 30 && count('gap', 'ingest-1') >= 30, 'readings published while no worker runs', 30_000);
      // The handover starts when 2/2 has subscribed, and ends when 1/2 drops 2/2's provinces.
      const twosProvince = TOPIC_FILTERS.provinceTelemetry(shardOf(2, 2).provinces[0] as string);
      cluster.advanceOn('subscribe', 'ingest-2', twosProvince, 'gap', 'handover');
      cluster.advanceOn('unsubscribe', 'ingest-1', twosProvince, 'handover', 'after');
      const [one, two] = await Promise.all([Worker.start(cluster, '1/2', handoverMs), Worker.start(cluster, '2/2', handoverMs)]);
      expect(await one.health()).toMatchObject({ shard: '1/2', clientId: 'ingest-1' });
      expect(await two.health()).toMatchObject({ shard: '2/2', clientId: 'ingest-2' });
      await until(() => count('handover', 'ingest-2') >= 30, 'readings published during the handover', 30_000, () => `at ${cluster.epoch}`);
      // Once the handover is over, 1/2's session has dropped 2/2's provinces.
      await until(() => cluster.epoch === 'after', "1/2 to drop the filters of 2/2's provinces", 60_000);
      await until(() => count('after') >= 50, 'readings published after the handover', 30_000);
      await load.stop();
      // After: 10 readings a station (one alert each), each to be stored by its owner alone.
      await Promise.all(publishers.map((p) => p.burst(10)));

      await until(() => allStored(cluster, 's2'), 'every reading stored', 90_000, () => cluster.state());
      await until(() => cluster.unstored().length === 0 && stations.every((s) => (cluster.alerts.get(s.id)?.length ?? 0) >= 4), 'every PUBACK and alert', 30_000, () => cluster.state());
      await sleep(1000);

      // Points: every reading, before, during and after the change, once.
      expect(cluster.published.every((p) => p.acked !== undefined)).toBe(true);
      const stored = await storedReadings('s2');
      for (const s of stations) {
        const published = cluster.published.filter((p) => p.station === s).length;
        expect(stored.get(s.id), s.id).toEqual({ points: published, distinct: published });
      }
      // Deliveries, by where the change stood when the reading was published and acknowledged
      // (readings that straddle two stages are only required to be stored, above).
      const byEpoch = (epoch: Epoch) => cluster.published.filter((p) => p.sent === epoch && p.acked === epoch);
      // 1/1 running or stopping, then until 2/2 subscribed: ingest-1's session alone had them (1/1
      // stored them, or 1/2, from the queue it took over or live), whichever province.
      for (const epoch of ['one', 'stopping', 'gap'] as const) for (const p of byEpoch(epoch)) expect(cluster.acksOf(p), `${epoch}: ${p.station.id} seq ${p.seq}`).toEqual(['ingest-1']);
      // During the handover 2/2's provinces reach both sessions: stored by 2/2, and by 1/2 (same point).
      for (const p of byEpoch('handover')) expect([...cluster.acksOf(p)].sort(), `handover: ${p.station.id} seq ${p.seq}`).toEqual(ownerOf(p.station.province) === 'ingest-1' ? ['ingest-1'] : ['ingest-1', 'ingest-2']);
      // After it: each reading stored once, by its owner.
      for (const p of byEpoch('after')) expect(cluster.acksOf(p), `after: ${p.station.id} seq ${p.seq}`).toEqual([ownerOf(p.station.province)]);

      const [m1, m2] = await Promise.all([one.metrics(), two.metrics()]);
      // 1/2 stored 2/2's provinces' readings from ingest-1's queue and during the handover, without
      // evaluating them; 2/2 never saw a province it does not own.
      const gapForTwo = byEpoch('gap').filter((p) => ownerOf(p.station.province) === 'ingest-2').length;
      expect(m1.get('citypulse_ingest_messages_foreign_total')).toBeGreaterThanOrEqual(gapForTwo + byEpoch('handover').filter((p) => ownerOf(p.station.province) === 'ingest-2').length);
      expect(m2.get('citypulse_ingest_messages_foreign_total')).toBe(0);
      expect(m2.get('citypulse_ingest_readings_written_total')).toBe([...cluster.acks.values()].flat().filter((id) => id === 'ingest-2').length);
      // Alerts: raised and cleared once per station before (by 1/1, ingest-1) and once after (by its owner).
      for (const s of stations) expect(cluster.alerts.get(s.id), s.id).toEqual(['raised by ingest-1', 'cleared by ingest-1', `raised by ${ownerOf(s.province)}`, `cleared by ${ownerOf(s.province)}`]);
      const events = await storedAlertEvents('s2');
      for (const s of stations) expect(events.get(s.id), s.id).toBe(4);
      expect(m1.get('citypulse_ingest_alerts_total{state="raised"}')).toBe(12);
      expect(m2.get('citypulse_ingest_alerts_total{state="raised"}')).toBe(12);

      const figures = Object.fromEntries((['one', 'stopping', 'gap', 'handover', 'after'] as const).map((e) => [e, byEpoch(e).length]));
      console.info(`layout change: ${cluster.published.length} readings published (by stage ${JSON.stringify(figures)}), ${gapForTwo} of 2/2's provinces published after 1/1 stopped and before 2/2 subscribed; 1/2 stored ${m1.get('citypulse_ingest_messages_foreign_total')} messages of 2/2's provinces`);
    } finally {
      await load?.stop();
      await cluster.close();
    }
  });

  it('removing a worker loses nothing: 2/2 stopped mid-stream, 1/2 restarted as 1/1, which drains and removes the session ingest-2 left', { timeout: 240_000 }, async () => {
    const stations = fleets.get('s3') as Station[];
    const twos = stations.filter((s) => ownerOf(s.province) === 'ingest-2');
    // 1/1 drains ingest-2 once its handover is over: the time a rolling change has to stop 2/2.
    const handoverMs = 5000;
    const cluster = await Cluster.start();
    let load: { stop(): Promise<void> } | undefined;
    try {
      cluster.epoch = 'two';
      const [one, two] = await Promise.all([Worker.start(cluster, '1/2', handoverMs), Worker.start(cluster, '2/2', handoverMs)]);
      const publishers = await cluster.connect(stations);
      // Before: 20 readings a station (one alert each), each stored by its owner.
      await Promise.all(publishers.map((p) => p.burst(20)));
      await until(() => allStored(cluster, 's3'), 'the two workers to store the first readings', 60_000, () => cluster.state());
      await until(() => stations.every((s) => (cluster.alerts.get(s.id)?.length ?? 0) >= 2), 'the first alerts', 30_000, () => cluster.state());

      // A steady stream (24 stations, 5 readings/s each) through the change.
      load = steadyLoad(publishers, 200);
      const count = (sent: Epoch, clientId?: string) => cluster.published.filter((p) => p.sent === sent && p.acked === sent && (clientId === undefined || ownerOf(p.station.province) === clientId)).length;
      await sleep(1000);
      cluster.epoch = 'stopping';
      await two.stop();
      // 2/2 gone, its session still subscribed: its provinces' readings queue there, read by nobody.
      cluster.epoch = 'gap';
      await until(() => count('gap', 'ingest-2') >= 60, "readings queued for the stopped worker's session", 30_000);
      expect(await cluster.subscriptionsOf('ingest-2')).not.toEqual([]);
      // Worker 1 restarted as 1/1. Once it has subscribed to 2/2's provinces they reach both
      // sessions (the handover); once its drain has dropped ingest-2's filters, ingest-1's alone.
      const twosProvince = TOPIC_FILTERS.provinceTelemetry(shardOf(2, 2).provinces[0] as string);
      cluster.advanceOn('subscribe', 'ingest-1', twosProvince, 'restarting', 'handover');
      cluster.advanceOn('unsubscribe', 'ingest-2', twosProvince, 'handover', 'after');
      await one.stop();
      cluster.epoch = 'restarting';
      const single = await Worker.start(cluster, '1/1', handoverMs);
      expect(await single.health()).toMatchObject({ shard: '1/1', clientId: 'ingest-1' });
      await until(() => count('handover', 'ingest-2') >= 30, 'readings published during the handover', 30_000, () => `at ${cluster.epoch}`);
      await until(() => cluster.epoch === 'after', "1/1 to drain ingest-2 and drop its filters", 60_000, () => cluster.state());
      await until(() => count('after') >= 50, 'readings published after the drain', 30_000);
      await load.stop();
      // After: 10 readings a station (one alert each), stored by 1/1 alone.
      await Promise.all(publishers.map((p) => p.burst(10)));

      await until(() => allStored(cluster, 's3'), 'every reading stored', 90_000, () => cluster.state());
      await until(() => cluster.unstored().length === 0 && stations.every((s) => (cluster.alerts.get(s.id)?.length ?? 0) >= 4), 'every PUBACK and alert', 30_000, () => cluster.state());
      await until(() => single.logged(/session ingest-2 of a removed worker drained/).length > 0, "1/1's report of the drain", 30_000, () => cluster.state());
      await sleep(1000);

      // Points: every reading, before, during and after the change, once.
      expect(cluster.published.every((p) => p.acked !== undefined)).toBe(true);
      const stored = await storedReadings('s3');
      for (const s of stations) {
        const published = cluster.published.filter((p) => p.station === s).length;
        expect(stored.get(s.id), s.id).toEqual({ points: published, distinct: published });
      }
      // Deliveries, by where the change stood (readings that straddle two stages are only
      // required to be stored, above).
      const byEpoch = (epoch: Epoch) => cluster.published.filter((p) => p.sent === epoch && p.acked === epoch);
      for (const p of byEpoch('two')) expect(cluster.acksOf(p), `two: ${p.station.id} seq ${p.seq}`).toEqual([ownerOf(p.station.province)]);
      // While 2/2 was gone, its provinces' readings were in ingest-2's session alone: stored from
      // there by 1/1's drain (the PUBACKs went out on its connection as ingest-2), once.
      for (const epoch of ['gap', 'restarting'] as const) for (const p of byEpoch(epoch)) expect(cluster.acksOf(p), `${epoch}: ${p.station.id} seq ${p.seq}`).toEqual([ownerOf(p.station.province)]);
      // Until the drain dropped ingest-2's filters, 2/2's provinces reached both sessions (same point).
      for (const p of byEpoch('handover')) expect([...cluster.acksOf(p)].sort(), `handover: ${p.station.id} seq ${p.seq}`).toEqual(ownerOf(p.station.province) === 'ingest-1' ? ['ingest-1'] : ['ingest-1', 'ingest-2']);
      for (const p of byEpoch('after')) expect(cluster.acksOf(p), `after: ${p.station.id} seq ${p.seq}`).toEqual(['ingest-1']);

      // The session is gone from the broker: no filters, nothing queued, no session at CONNACK.
      expect(await cluster.subscriptionsOf('ingest-2')).toEqual([]);
      expect(await cluster.persistence.queuedMessages()).toBe(0);
      await publishers[stations.indexOf(twos[0] as Station)]?.publish();
      expect(await cluster.persistence.queuedMessages()).toBeLessThanOrEqual(1); // ingest-1's copy, if not yet stored
      expect(await cluster.sessionPresent('ingest-2')).toBe(false);

      const m = await single.metrics();
      const drainedGap = byEpoch('gap').filter((p) => ownerOf(p.station.province) === 'ingest-2').length;
      const drainedHandover = byEpoch('handover').filter((p) => ownerOf(p.station.province) === 'ingest-2').length;
      expect(m.get('citypulse_ingest_orphan_messages_total{session="ingest-2"}')).toBeGreaterThanOrEqual(drainedGap + drainedHandover);
      expect(m.get('citypulse_ingest_orphan_sessions_removed_total')).toBe(1);
      expect(m.get('citypulse_ingest_orphan_drains_interrupted_total')).toBe(0);
      expect(m.get('citypulse_ingest_messages_foreign_total')).toBe(0);
      // Alerts: once per station before (by its owner) and once after (by 1/1); none from the drained queue.
      for (const s of stations) expect(cluster.alerts.get(s.id), s.id).toEqual([`raised by ${ownerOf(s.province)}`, `cleared by ${ownerOf(s.province)}`, 'raised by ingest-1', 'cleared by ingest-1']);
      const events = await storedAlertEvents('s3');
      for (const s of stations) expect(events.get(s.id), s.id).toBe(4);
      expect(m.get('citypulse_ingest_alerts_total{state="raised"}')).toBe(stations.length);

      const figures = Object.fromEntries((['two', 'stopping', 'gap', 'restarting', 'handover', 'after'] as const).map((e) => [e, byEpoch(e).length]));
      console.info(`removing a worker: ${cluster.published.length} readings published (by stage ${JSON.stringify(figures)}); 1/1 took ${m.get('citypulse_ingest_orphan_messages_total{session="ingest-2"}')} messages from ingest-2's session, ${drainedGap + byEpoch('restarting').filter((p) => ownerOf(p.station.province) === 'ingest-2').length} of them published while no worker owned 2/2's provinces`);
    } finally {
      await load?.stop();
      await cluster.close();
    }
  });
});
