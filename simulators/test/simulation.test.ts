import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildBroker, DeviceRegistry, listenMqttTcp, type PlatformBroker } from '@citypulse/broker';
import { decodeStatus, decodeTelemetry, parseDeviceTopic, TOPIC_FILTERS, type DeviceStatusPayload } from '@citypulse/contracts';
import { connectAsync, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openRecorder, readRecording } from '../src/recording.js';
import { resolveScenario, scenarioFromFlags, type ResolveOptions, type ScenarioFile } from '../src/scenario.js';
import { SECRETS_FILE_NAME, startSimulation, type Simulation, type SimulationOptions } from '../src/index.js';
import { vnLocalMs } from '../src/time.js';

/**
 * The simulator against the platform's real broker (Aedes with registry logins and the ACL) on a
 * real TCP socket, watched by a subscriber with a tools account.
 */
describe('startSimulation against the platform broker', () => {
  let dataDir: string;
  let registry: DeviceRegistry;
  let broker: PlatformBroker;
  let server: Server;
  let mqttUrl: string;
  let observer: MqttClient;
  const received: { topic: string; payload: string; retain: boolean }[] = [];
  const waiters: (() => void)[] = [];
  // The last log lines of the broker and the simulations, for a test that times out to say what it saw.
  const recentLogs: string[] = [];
  const remember = (who: string, line: string) => {
    recentLogs.push(`${who}: ${line.trim()}`);
    if (recentLogs.length > 40) recentLogs.shift();
  };
  const simLogger = pino({ level: 'debug' }, { write: (line: string) => remember('simulators', line) });
  /** `promise`, or an error after `ms` with the simulation's counters and the recent logs. */
  async function within<T>(promise: Promise<T>, ms: number, what: string, simulation: Simulation): Promise<T> {
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms} ms; stats ${JSON.stringify(simulation.stats())}\n${recentLogs.join('\n')}`)), ms);
    });
    try {
      return await Promise.race([promise, late]);
    } finally {
      clearTimeout(timer);
    }
  }

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'citypulse-sim-'));
    registry = await DeviceRegistry.open(dataDir, { watch: true });
    broker = await buildBroker({ registry, logger: pino({ level: 'info' }, { write: (line: string) => remember('broker', line) }) });
    server = await listenMqttTcp(broker, 0, '127.0.0.1');
    mqttUrl = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const secret = await registry.upsertService('sim-test-observer', 'tools');
    observer = await connectAsync(mqttUrl, { clientId: 'sim-test-observer', username: 'sim-test-observer', password: secret, protocolVersion: 4, reconnectPeriod: 0 });
    observer.on('message', (topic, payload, packet) => {
      received.push({ topic, payload: payload.toString(), retain: packet.retain });
      for (const wake of waiters.splice(0)) wake();
    });
    await observer.subscribeAsync([TOPIC_FILTERS.allTelemetry, TOPIC_FILTERS.allStatus], { qos: 1 });
  });

  afterAll(async () => {
    await observer.endAsync();
    await broker.close();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    registry.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  const scenario = (file: ScenarioFile, options: Partial<ResolveOptions> = {}) => resolveScenario(file, { nowMs: Date.now(), ...options });
  const small = (overrides: Partial<{ provinces: string[]; devicesPerProvince: number; intervalMs: number }> = {}) =>
    scenarioFromFlags({ provinces: ['01', '79'], domains: ['traffic', 'environment', 'energy'], devicesPerProvince: 1, intervalMs: 200, ...overrides });
  const start = (options: Omit<SimulationOptions, 'mqttUrl' | 'dataDir'>) => startSimulation({ mqttUrl, dataDir, ...options });

  async function until(done: () => boolean, timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Error('timed out waiting for messages');
      await new Promise<void>((resolve) => {
        waiters.push(resolve);
        setTimeout(resolve, 200);
      });
    }
  }
  const telemetryOf = (id: string, since: number) => received.slice(since).filter((m) => m.topic.endsWith(`/${id}/telemetry`));
  const statusesOf = (id: string, since: number) => received.slice(since).flatMap((m) => (m.topic.endsWith(`/${id}/status`) ? [decodeStatus(m.payload)] : [])).flatMap((r) => (r.ok ? [r.value] : []));

  it('provisions, connects, publishes valid readings and a retained online status, then stops cleanly', async () => {
    const since = received.length;
    const simulation: Simulation = await start({ scenario: scenario(small(), { seed: 7 }) });
    const ids = simulation.devices.map((d) => d.id);
    try {
      expect(ids).toEqual(['sim-01-traffic-001', 'sim-01-environment-001', 'sim-01-energy-001', 'sim-79-traffic-001', 'sim-79-environment-001', 'sim-79-energy-001']);
      await until(() => ids.every((id) => telemetryOf(id, since).length >= 2));
      expect(simulation.stats()).toMatchObject({ connected: 6, connections: 6, connectionsUp: 6 });
      for (const { topic, payload } of received.slice(since).filter((m) => m.topic.endsWith('/telemetry'))) {
        const parsed = parseDeviceTopic(topic);
        expect(parsed.ok).toBe(true);
        if (!parsed.ok) continue;
        const decoded = decodeTelemetry(parsed.value.domain, payload, Date.now());
        expect(decoded.ok, decoded.ok ? '' : decoded.error.message).toBe(true);
      }
      for (const id of ids) expect(statusesOf(id, since)[0]).toMatchObject({ state: 'online' });
      expect(simulation.stats().readings).toBeGreaterThan(0);
    } finally {
      await simulation.stop();
    }
    await until(() => ids.every((id) => statusesOf(id, since).at(-1)?.state === 'offline'));
    expect(simulation.stats()).toMatchObject({ connected: 0, errors: 0 });
    const secretsFile = join(dataDir, SECRETS_FILE_NAME);
    expect((await stat(secretsFile)).mode & 0o777).toBe(0o600);
    const secrets = JSON.parse(await readFile(secretsFile, 'utf8')) as { secrets: Record<string, string> };
    expect(Object.keys(secrets.secrets)).toEqual(expect.arrayContaining(ids));
  });

  it('reuses the registry entries and secrets on restart instead of re-provisioning', async () => {
    await registry.reload();
    const before = new Map(registry.devices.map((d) => [d.id, `${d.updatedAt}${d.secretHash ?? ''}`]));
    const since = received.length;
    const simulation = await start({ scenario: scenario(small(), { seed: 7 }) });
    try {
      await until(() => simulation.devices.every((d) => telemetryOf(d.id, since).length > 0));
      await registry.reload();
      for (const device of simulation.devices) {
        const record = registry.device(device.id);
        expect(record && `${record.updatedAt}${record.secretHash ?? ''}`).toBe(before.get(device.id));
      }
    } finally {
      await simulation.stop();
    }
  });

  it('gateway mode: few connections publish for many devices registered behind them', async () => {
    const since = received.length;
    const file = scenarioFromFlags({ provinces: ['48', '92'], domains: ['traffic', 'environment', 'energy'], devicesPerProvince: 5, intervalMs: 300 });
    const simulation = await start({ scenario: scenario(file, { mode: 'gateway', gateways: 2 }) });
    try {
      expect(simulation.devices).toHaveLength(30);
      await until(() => simulation.devices.every((d) => telemetryOf(d.id, since).length > 0));
      expect(simulation.stats()).toMatchObject({ devices: 30, connections: 2, connectionsUp: 2, connected: 30 });
      await registry.reload();
      const gateways = new Set(simulation.devices.map((d) => registry.device(d.id)?.gateway));
      expect([...gateways].sort()).toEqual(['sim-gw-001', 'sim-gw-002']);
      for (const d of simulation.devices) expect(registry.device(d.id)?.secretHash).toBeUndefined();
      expect(registry.service('sim-gw-001')?.role).toBe('gateway');
      // Each device's online status comes from its gateway.
      for (const d of simulation.devices) expect(statusesOf(d.id, since)[0]).toMatchObject({ state: 'online' });
    } finally {
      await simulation.stop();
    }
    expect(broker.counters.aclPublishDenied).toBe(0);
  });

  it('gives the same readings for the same scenario and seed, bit for bit, in either connection mode', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'citypulse-determinism-'));
    try {
      const file: ScenarioFile = {
        name: 'determinism',
        start: '2026-01-15T07:30',
        duration: '10m',
        speed: 'max',
        timestamps: 'scenario',
        provinces: [{ code: '01', devices: { traffic: 4, environment: 2, energy: 2 }, interval: { traffic: '20s', environment: '1m', energy: '15s' } }, { code: '79' }],
        clockSkew: { share: 0.5, maxSeconds: 30 },
        faults: { stuck: { share: 0.3, rate: 6 }, spike: { share: 0.3, probability: 0.1 }, malformed: { share: 0.2, probability: 0.05 } },
        events: [{ type: 'traffic-incident', province: '01', at: '+2m', duration: '5m', severity: 0.9 }],
      };
      const recordRun = async (name: string, mode: 'device' | 'gateway') => {
        const path = join(dir, `${name}.ndjson`);
        const recorder = await openRecorder({ path, header: { createdAt: '2026-01-15T00:30:00.000Z' } });
        const simulation = await start({ scenario: scenario(file, { mode, gateways: 2 }), recorder });
        await simulation.finished;
        await simulation.stop();
        await recorder.close();
        return { path, stats: simulation.stats() };
      };
      const first = await recordRun('first', 'device');
      const second = await recordRun('second', 'device');
      const bytes = await readFile(first.path);
      if (!bytes.equals(await readFile(second.path))) {
        const a = bytes.toString().split('\n');
        const b = (await readFile(second.path)).toString().split('\n');
        const i = a.findIndex((line, k) => line !== b[k]);
        throw new Error(`differ at line ${i} of ${a.length}/${b.length}:\n${a[i]}\n${b[i]}`);
      }
      // 10 minutes of scenario time: every reading, none lost, clock and faults applied.
      expect(first.stats).toMatchObject({ lost: 0, buffered: 0 });
      const telemetry = [];
      for await (const m of readRecording(first.path)) if (m.topic.endsWith('/telemetry')) telemetry.push(m);
      expect(telemetry.length).toBe(4 * 30 + 2 * 10 + 2 * 40 + 3 * (20 + 10 + 40));
      const skewed = telemetry.filter((m) => {
        try {
          const reading = JSON.parse(String(m.payload)) as { ts?: unknown };
          return typeof reading.ts === 'number' && reading.ts !== m.at;
        } catch {
          return false; // a malformed payload from the fault injection
        }
      });
      expect(skewed.length).toBeGreaterThan(0);

      // The gateway mode sends the same telemetry, in the same order.
      const gateway = await recordRun('gateway', 'gateway');
      const telemetryLines = async (path: string) => {
        const lines = [];
        for await (const m of readRecording(path)) if (m.topic.endsWith('/telemetry')) lines.push(JSON.stringify(m));
        return lines;
      };
      expect(await telemetryLines(gateway.path)).toEqual(await telemetryLines(first.path));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('spreads a real-time run over worker threads: the same readings as one thread, one recording in time order', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'citypulse-threads-'));
    try {
      const file: ScenarioFile = {
        name: 'threads',
        start: '2026-03-02T08:00',
        duration: '2m',
        speed: 60,
        timestamps: 'scenario',
        provinces: [{ code: '01', devices: { traffic: 3, environment: 2, energy: 2 }, interval: { traffic: '10s', environment: '20s', energy: '10s' } }, { code: '46' }],
        faults: { spike: { share: 0.3, probability: 0.1 } },
      };
      const recordRun = async (name: string, mode: 'device' | 'gateway', threads: number) => {
        const path = join(dir, `${name}.ndjson`);
        const recorder = await openRecorder({ path });
        const simulation = await start({ scenario: scenario(file, { mode, gateways: 4 }), recorder, threads });
        expect(simulation.threads).toBe(threads);
        await simulation.finished;
        const stats = simulation.stats();
        await simulation.stop();
        await recorder.close();
        const messages = [];
        for await (const m of readRecording(path)) messages.push(m);
        return { stats, messages, devices: simulation.devices.length };
      };
      // Per device, the telemetry it sent, in order: the threads share the devices out, they do not change them.
      const byTopic = (messages: { topic: string; payload: string | Buffer }[]) => {
        const map = new Map<string, string[]>();
        for (const m of messages) {
          if (!m.topic.endsWith('/telemetry')) continue;
          // Real time may send a reading alone or, when the connection was busy, in a batch.
          const body = JSON.parse(String(m.payload)) as { readings?: unknown[] };
          const readings = body.readings ?? [body];
          map.set(m.topic, [...(map.get(m.topic) ?? []), ...readings.map((r) => JSON.stringify(r))]);
        }
        return map;
      };
      const one = await recordRun('one', 'gateway', 1);
      const two = await recordRun('two', 'gateway', 2);
      const devices = await recordRun('devices', 'device', 2);
      expect(one.devices).toBe(3 + 2 + 2 + 3 * 3); // 46 takes the defaults
      const expected = byTopic(one.messages);
      expect(expected.size).toBe(one.devices);
      expect(byTopic(two.messages)).toEqual(expected);
      expect(byTopic(devices.messages)).toEqual(expected);
      for (const run of [two, devices]) {
        expect(run.stats).toMatchObject({ devices: one.devices, readings: one.stats.readings, lost: 0, buffered: 0, errors: 0 });
        const at = run.messages.map((m) => m.at);
        expect(at).toEqual([...at].sort((a, b) => a - b));
      }
      expect(two.stats.connections).toBe(4);
      expect(devices.stats.connections).toBe(one.devices);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('gateway uploads: each device\'s readings since the last upload go out in one batch message', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'citypulse-upload-'));
    try {
      const file: ScenarioFile = {
        name: 'upload',
        start: '2026-05-20T12:00',
        duration: '1m',
        speed: 'max',
        timestamps: 'scenario',
        connection: { mode: 'gateway', gateways: 1, upload: '10s' },
        provinces: [{ code: '82', devices: { traffic: 0, environment: 0, energy: 3 }, interval: { energy: '1s' } }],
      };
      const path = join(dir, 'upload.ndjson');
      const recorder = await openRecorder({ path });
      const simulation = await start({ scenario: scenario(file), recorder, logger: simLogger });
      await within(simulation.finished, 12_000, 'the upload run', simulation);
      await within(simulation.stop(), 6_000, 'stopping the upload run', simulation);
      await recorder.close();
      const perDevice = new Map<string, number[]>();
      for await (const m of readRecording(path)) {
        if (!m.topic.endsWith('/telemetry')) continue;
        const decoded = decodeTelemetry('energy', String(m.payload), Date.UTC(2026, 4, 20, 6));
        expect(decoded.ok).toBe(true);
        if (decoded.ok) perDevice.set(m.topic, [...(perDevice.get(m.topic) ?? []), decoded.value.readings.length]);
      }
      expect(perDevice.size).toBe(3);
      for (const sizes of perDevice.values()) {
        expect(sizes.reduce((a, b) => a + b, 0)).toBe(60); // every reading of the minute, once
        expect(sizes, JSON.stringify(sizes)).toEqual([10, 10, 10, 10, 10, 10]); // six uploads, not sixty messages
      }
      expect(simulation.stats()).toMatchObject({ readings: 180, buffered: 0, lost: 0 });
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('resends what was in flight when the broker drops the connection, so a run still finishes with nothing lost', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'citypulse-drop-'));
    // The broker closes the gateway's connection on its first upload, with the rest of the run in flight.
    let drops = 0;
    const dropOnce = (packet: { topic: string }, client: { id: string; close: () => void } | null) => {
      if (client?.id === 'sim-gw-001' && packet.topic.endsWith('/telemetry') && drops === 0) {
        drops++;
        client.close();
      }
    };
    broker.aedes.on('publish', dropOnce);
    try {
      const file: ScenarioFile = {
        name: 'drop',
        start: '2026-05-20T12:00',
        duration: '1m',
        speed: 'max',
        timestamps: 'scenario',
        connection: { mode: 'gateway', gateways: 1, upload: '10s' },
        provinces: [{ code: '86', devices: { traffic: 0, environment: 0, energy: 3 }, interval: { energy: '1s' } }],
      };
      const since = received.length;
      const simulation = await start({ scenario: scenario(file), logger: simLogger });
      await within(simulation.finished, 12_000, 'the run with a dropped connection', simulation);
      await within(simulation.stop(), 6_000, 'stopping the run with a dropped connection', simulation);
      expect(drops).toBe(1);
      expect(simulation.stats()).toMatchObject({ readings: 180, buffered: 0, lost: 0 });
      // Every reading reached the observer, at least once (QoS 1: a resend may repeat one).
      const seqs = new Set<string>();
      for (const m of received.slice(since).filter((r) => r.topic.includes('/86/') && r.topic.endsWith('/telemetry'))) {
        const decoded = decodeTelemetry('energy', m.payload, Date.UTC(2026, 4, 20, 6));
        if (decoded.ok) for (const r of decoded.value.readings) seqs.add(`${m.topic} ${r.seq}`);
      }
      expect(seqs.size).toBe(180);
    } finally {
      broker.aedes.off('publish', dropOnce);
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('buffers readings through a dropout and sends the backlog in the batch form', async () => {
    const since = received.length;
    const file: ScenarioFile = {
      name: 'dropout',
      provinces: [{ code: '48', devices: { traffic: 0, environment: 2, energy: 0 }, interval: { environment: '500ms' } }],
      faults: { dropout: { share: 1, rate: 3600, duration: '3s' } },
    };
    const simulation = await start({ scenario: scenario(file, { seed: 3 }) });
    try {
      const id = simulation.devices[0]?.id ?? '';
      // The broker publishes the device's last will when its connection drops…
      await until(() => statusesOf(id, since).some((s) => s.state === 'offline' && s.reason === 'connection lost'));
      // …and once it is back, the readings it kept arrive as one batch, in order.
      await until(() => telemetryOf(id, since).some((m) => m.payload.startsWith('{"readings":[')));
      const batch = telemetryOf(id, since).find((m) => m.payload.startsWith('{"readings":['));
      const decoded = decodeTelemetry('environment', batch?.payload ?? '', Date.now());
      expect(decoded.ok).toBe(true);
      if (decoded.ok) {
        const seqs = decoded.value.readings.map((r) => r.seq);
        expect(seqs.length).toBeGreaterThanOrEqual(2);
        expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
      }
      expect(simulation.stats().faults.dropout).toBeGreaterThan(0);
    } finally {
      await simulation.stop();
    }
  });

  // Three waits of up to 30 s each (until), with devices dropped and reconnecting on the way: the
  // default 20 s was too short for a machine busy with the cluster tests.
  it('injects faults the pipeline can see: refused topics, rejected payloads, floods', { timeout: 100_000 }, async () => {
    const since = received.length;
    const deniedBefore = broker.counters.aclPublishDenied;
    const file: ScenarioFile = {
      name: 'faults',
      provinces: [{ code: '31', devices: { traffic: 3, environment: 0, energy: 0 }, interval: { traffic: '200ms' } }],
      faults: { wrongTopic: { share: 1, probability: 0.05 }, malformed: { share: 1, probability: 0.3 }, flood: { share: 1, rate: 3600, duration: '2s', factor: 5 } },
    };
    const simulation = await start({ scenario: scenario(file, { seed: 11 }) });
    try {
      await until(() => broker.counters.aclPublishDenied > deniedBefore && simulation.stats().faults.malformed > 0 && simulation.stats().faults.flood > 0);
      await until(() => received.slice(since).some((m) => m.topic.endsWith('/telemetry') && !decodeTelemetry('traffic', m.payload, Date.now()).ok));
      // Refused publishes close the connection (MQTT 3.1.1 has no negative PUBACK); devices come back.
      await until(() => simulation.stats().connected === 3);
      const flooded = received.slice(since).filter((m) => m.topic.endsWith('/telemetry'));
      const repeats = new Map<string, number>();
      for (const m of flooded) repeats.set(m.payload, (repeats.get(m.payload) ?? 0) + 1);
      expect(Math.max(...repeats.values())).toBeGreaterThanOrEqual(2);
    } finally {
      await simulation.stop();
    }
  });

  it('retries with back-off while the broker is unreachable and connects once it is up', async () => {
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    let onLog: ((line: string) => void) | undefined;
    const logger = pino({ level: 'debug' }, { write: (line: string) => onLog?.(line) });
    const firstError = new Promise<void>((resolve) => (onLog = (line) => line.includes('connection error') && resolve()));
    const file = scenarioFromFlags({ provinces: ['48'], domains: ['energy'], devicesPerProvince: 1, intervalMs: 100 });
    const simulation = await startSimulation({ mqttUrl: `mqtt://127.0.0.1:${port}`, dataDir, scenario: scenario(file), logger });
    const late = createServer({ noDelay: true }, broker.aedes.handle);
    try {
      await firstError;
      expect(simulation.stats()).toMatchObject({ connected: 0, published: 0 });
      const since = received.length;
      await new Promise<void>((resolve) => late.listen(port, '127.0.0.1', resolve));
      await until(() => telemetryOf('sim-48-energy-001', since).length > 0);
      expect(simulation.stats().connected).toBe(1);
      // What it measured while the broker was away arrives too, as a batch.
      expect(telemetryOf('sim-48-energy-001', since).some((m) => m.payload.startsWith('{"readings":['))).toBe(true);
    } finally {
      await simulation.stop();
      await new Promise<void>((resolve) => late.close(() => resolve()));
    }
  });

  it('models a winter morning in Hà Nội when the scenario says so, stamped with the wall clock', async () => {
    const since = received.length;
    const file: ScenarioFile = { name: 'winter', start: '2026-01-15T08:00', provinces: [{ code: '01', devices: { traffic: 0, environment: 2, energy: 0 }, interval: { environment: '200ms' } }] };
    const simulation = await start({ scenario: scenario(file) });
    try {
      await until(() => telemetryOf('sim-01-environment-001', since).length > 0);
      // The first reading may come in a batch, if it was measured before the connection was up.
      const first = JSON.parse(telemetryOf('sim-01-environment-001', since)[0]?.payload ?? '{}') as { ts: number; temperature: number } | { readings: { ts: number; temperature: number }[] };
      const reading = 'readings' in first ? (first.readings[0] as { ts: number; temperature: number }) : first;
      expect(Math.abs(reading.ts - Date.now())).toBeLessThan(10_000);
      expect(reading.temperature).toBeLessThan(24); // January in Hà Nội, whatever today is
      expect(simulation.stats().scenarioMs).toBeGreaterThanOrEqual(vnLocalMs(2026, 1, 15, 8, 0));
    } finally {
      await simulation.stop();
    }
  });
});

export type { DeviceStatusPayload };
