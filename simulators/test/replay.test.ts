import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { buildBroker, DeviceRegistry, listenMqttTcp, type PlatformBroker } from '@citypulse/broker';
import { CodedError } from '@citypulse/contracts';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseReplayCli, parseSpeed } from '../src/cli/replay-options.js';
import { UsageError } from '../src/cli/tool-flags.js';
import { createProgress, formatSeconds } from '../src/progress.js';
import { openRecorder, readRecording, recordBroker, type RecordedMessage } from '../src/recording.js';
import { replay, shiftPayloadToNow, type ReplayOptions } from '../src/replay.js';

/**
 * Replay against the platform's real broker (Aedes with the registry's authentication and ACL) on
 * a loopback port, logging in as a `tools` service account, with the subscriber recorder on the
 * other side: what goes in is compared with what comes out.
 */
const TOOLS = { username: 'tools-test', password: 'tools-test-secret-0123456789' };
const TOPIC = 'city/01/environment/sim-01-environment-001/telemetry';

interface Received {
  readonly topic: string;
  readonly payload: Buffer;
  readonly qos: number;
  readonly retain: boolean;
  readonly at: number;
}

describe('replay into the broker', () => {
  let dir: string;
  let registry: DeviceRegistry;
  let broker: PlatformBroker;
  let server: Server;
  let mqttUrl: string;
  const clients: MqttClient[] = [];
  let fileNo = 0;
  const nextPath = (suffix = '.ndjson') => join(dir, `rec-${++fileNo}${suffix}`);

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-replay-'));
    registry = await DeviceRegistry.open(dir);
    await registry.upsertService(TOOLS.username, 'tools', TOOLS.password);
    broker = await buildBroker({ registry, logger: pino({ level: 'silent' }) });
    server = await listenMqttTcp(broker, 0, '127.0.0.1');
    mqttUrl = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const client of clients) client.end(true);
    await broker?.close();
    await new Promise((resolve) => server?.close(resolve));
    registry?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const connect = async (): Promise<MqttClient> => {
    const client = await mqtt.connectAsync(mqttUrl, { ...TOOLS, clientId: `test-${Math.random().toString(36).slice(2)}`, protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(client);
    return client;
  };

  /** A subscriber that keeps everything it receives (live only: retained messages sent on subscribing are left out). */
  const subscribe = async (filter = 'city/#'): Promise<{ received: Received[]; until(count: number): Promise<void> }> => {
    const client = await connect();
    const received: Received[] = [];
    const waiters: (() => void)[] = [];
    client.on('message', (topic, payload, packet) => {
      if (packet.retain) return;
      received.push({ topic, payload, qos: packet.qos, retain: packet.retain, at: performance.now() });
      for (const wake of waiters.splice(0)) wake();
    });
    await client.subscribeAsync(filter, { qos: 1 });
    return {
      received,
      async until(count) {
        while (received.length < count) await new Promise<void>((resolve) => waiters.push(resolve));
      },
    };
  };

  const writeRecording = async (messages: readonly RecordedMessage[], suffix?: string): Promise<string> => {
    const recorder = await openRecorder({ path: nextPath(suffix) });
    for (const message of messages) recorder.write(message);
    await recorder.close();
    return recorder.stats().files[0] as string;
  };

  const start = (options: Partial<ReplayOptions> & Pick<ReplayOptions, 'source'>) => replay({ mqttUrl, ...TOOLS, speed: 'max', ...options });

  const reading = (seq: number, at: number) => ({ at, topic: TOPIC, qos: 1 as const, retain: false, payload: JSON.stringify({ ts: at - 100, seq, pm25: 10 + seq }) });

  it('round trip: record → replay → record again gives identical topics, qos, retain and payloads, in the same order', async () => {
    // 1. Record live traffic with the subscriber recorder.
    const first = await openRecorder({ path: nextPath('.ndjson.gz') });
    const recording1 = await recordBroker({ mqttUrl, ...TOOLS, recorder: first });
    const publisher = await connect();
    const now = Date.now();
    const sent: { topic: string; payload: string | Buffer; qos: 0 | 1 | 2; retain?: boolean }[] = [
      { topic: TOPIC, payload: JSON.stringify({ ts: now, seq: 1, pm25: 35.2, pm10: 60 }), qos: 1 },
      { topic: 'city/79/traffic/sim-79-traffic-001/telemetry', payload: JSON.stringify({ readings: [{ ts: now - 5000, seq: 1, intensity: 4, periodSeconds: 5, occupancy: 0.1, averageVehicleSpeed: 40 }, { ts: now, seq: 2, intensity: 5, periodSeconds: 5, occupancy: 0.1, averageVehicleSpeed: 41 }] }), qos: 1 },
      { topic: 'city/48/energy/sim-48-energy-001/status', payload: '{"state":"online"}', qos: 1, retain: true },
      { topic: TOPIC, payload: '{"ts": 17, this is not json', qos: 0 },
      { topic: TOPIC, payload: Buffer.from([0x7b, 0xff, 0xfe, 0x00, 0x7d]), qos: 1 },
      // QoS 0 and 1 only, as the platform uses: a subscriber's MQTT.js hands a QoS 2 message over only after
      // PUBREL, so a QoS 0 message right behind it may overtake it inside the subscriber.
      { topic: TOPIC, payload: '\uFEFF{"ts":1,"note":"Trạm quan trắc Hà Nội"}', qos: 1 },
      ...Array.from({ length: 200 }, (_, i) => ({ topic: `city/01/energy/sim-01-energy-${String(i % 5).padStart(3, '0')}/telemetry`, payload: JSON.stringify({ ts: now + i, seq: i }), qos: (i % 2) as 0 | 1 })),
    ];
    for (const m of sent) await publisher.publishAsync(m.topic, m.payload, { qos: m.qos, retain: m.retain ?? false });
    await waitUntil(() => recording1.stats().recorded >= sent.length);
    await recording1.stop();
    await first.close();
    const recorded1 = await all(first.stats().files[0] as string);
    expect(recorded1).toHaveLength(sent.length);

    // 2. Replay it while a second recorder listens. The retained status sent on subscribing is left out.
    const second = await openRecorder({ path: nextPath() });
    const recording2 = await recordBroker({ mqttUrl, ...TOOLS, recorder: second });
    const run = await start({ source: { kind: 'recording', paths: first.stats().files[0] as string }, speed: 'max' });
    const stats = await run.done;
    expect(stats).toMatchObject({ state: 'done', total: sent.length, sent: sent.length, acked: sent.length, errors: 0, skipped: 0, progress: 1 });
    await waitUntil(() => recording2.stats().recorded >= sent.length);
    expect(recording2.stats().retainedSkipped).toBeGreaterThanOrEqual(1);
    await recording2.stop();
    await second.close();
    const recorded2 = await all(second.stats().files[0] as string);

    const onWire = (m: RecordedMessage) => ({ topic: m.topic, qos: m.qos, retain: m.retain, payload: Buffer.from(m.payload).toString('hex') });
    expect(recorded2.map(onWire)).toEqual(recorded1.map(onWire));
    // And both equal what was published (qos as delivered on a QoS 1 subscription; retain 0 on live delivery).
    expect(recorded1.map(onWire)).toEqual(sent.map((m) => ({ topic: m.topic, qos: Math.min(m.qos, 1), retain: false, payload: Buffer.from(m.payload).toString('hex') })));
  });

  it('keeps relative timing at a speed: 200 ms gaps at 20× arrive about 10 ms apart, in order', async () => {
    const t0 = Date.UTC(2026, 0, 1);
    const path = await writeRecording(Array.from({ length: 11 }, (_, i) => reading(i, t0 + i * 200)));
    const sub = await subscribe(TOPIC);
    const started = performance.now();
    const run = await start({ source: { kind: 'recording', paths: path }, speed: 20 });
    await run.done;
    await sub.until(11);
    const seqs = sub.received.map((m) => (JSON.parse(m.payload.toString()) as { seq: number }).seq);
    expect(seqs).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    // 2 s of recording at 20× is 100 ms; loose lower bound only (machines are noisy).
    const first = sub.received[0]?.at ?? 0;
    const last = sub.received[10]?.at ?? 0;
    expect(last - first).toBeGreaterThanOrEqual(80);
    expect(performance.now() - started).toBeGreaterThanOrEqual(90);
  });

  it('replays at "max" speed with a bounded window, everything acknowledged and in order', async () => {
    const t0 = Date.UTC(2026, 0, 1);
    // At speed "max" a gap of an hour costs nothing.
    const path = await writeRecording(Array.from({ length: 3000 }, (_, i) => reading(i, t0 + i * 3_600_000)), '.ndjson.gz');
    const sub = await subscribe(TOPIC);
    const run = await start({ source: { kind: 'recording', paths: path }, speed: 'max', maxInFlight: 50 });
    let maxInFlight = 0;
    const sampler = setInterval(() => (maxInFlight = Math.max(maxInFlight, run.stats().inFlight)), 1);
    const stats = await run.done;
    clearInterval(sampler);
    expect(stats).toMatchObject({ state: 'done', sent: 3000, acked: 3000, errors: 0, inFlight: 0, position: t0 + 2999 * 3_600_000 });
    expect(maxInFlight).toBeLessThanOrEqual(50);
    await sub.until(3000);
    const seqs = sub.received.map((m) => (JSON.parse(m.payload.toString()) as { seq: number }).seq);
    expect(seqs).toEqual(Array.from({ length: 3000 }, (_, i) => i));
  });

  it('shiftToNow rewrites every reading ts (single and batch) to now + (ts − at); other payloads pass unchanged', async () => {
    const at = Date.now() - 86_400_000; // recorded a day ago
    const batchTopic = 'city/79/traffic/sim-79-traffic-002/telemetry';
    const path = await writeRecording([
      { at, topic: TOPIC, qos: 1, retain: false, payload: JSON.stringify({ ts: at - 500, seq: 1, pm25: 12 }) },
      { at: at + 1000, topic: batchTopic, qos: 1, retain: false, payload: JSON.stringify({ readings: [{ ts: at - 4000, seq: 2 }, { ts: at + 1000, seq: 3 }] }) },
      { at: at + 2000, topic: TOPIC, qos: 1, retain: false, payload: 'not json {"ts":1}' },
    ]);
    const sub = await subscribe('city/#');
    const before = Date.now();
    const run = await start({ source: { kind: 'recording', paths: path }, speed: 'max', shiftToNow: true });
    await run.done;
    const after = Date.now();
    await sub.until(3);
    const [single, batch, text] = sub.received;
    const singleTs = (JSON.parse(single?.payload.toString() ?? '') as { ts: number }).ts;
    expect(singleTs).toBeGreaterThanOrEqual(before - 500);
    expect(singleTs).toBeLessThanOrEqual(after - 500);
    const batchBody = JSON.parse(batch?.payload.toString() ?? '') as { readings: { ts: number; seq: number }[] };
    const [b0, b1] = batchBody.readings;
    expect(b1?.ts).toBeGreaterThanOrEqual(before);
    expect(b1?.ts).toBeLessThanOrEqual(after);
    expect((b1?.ts ?? 0) - (b0?.ts ?? 0)).toBe(5000); // the gap inside the batch is kept
    expect(batchBody.readings.map((r) => r.seq)).toEqual([2, 3]);
    expect(text?.payload.toString()).toBe('not json {"ts":1}');
  });

  it('pauses and resumes: nothing is sent while paused, the schedule moves by the pause', async () => {
    const t0 = Date.UTC(2026, 0, 1);
    const path = await writeRecording(Array.from({ length: 8 }, (_, i) => reading(i, t0 + i * 100)));
    const sub = await subscribe(TOPIC);
    const started = performance.now();
    const run = await start({ source: { kind: 'recording', paths: path }, speed: 1 });
    await sub.until(2);
    run.pause();
    const sentAtPause = run.stats().sent;
    expect(run.stats().state).toBe('paused');
    // Observing that nothing happens needs a wait; 400 ms is 4 recorded gaps.
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(run.stats().sent).toBe(sentAtPause);
    run.resume();
    expect(run.stats().state).toBe('running');
    const stats = await run.done;
    expect(stats).toMatchObject({ state: 'done', sent: 8, acked: 8 });
    await sub.until(8);
    expect(sub.received.map((m) => (JSON.parse(m.payload.toString()) as { seq: number }).seq)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(performance.now() - started).toBeGreaterThanOrEqual(700 + 300); // 700 ms recorded + most of the pause
  });

  it('stop() ends a replay early and resolves with state "stopped"', async () => {
    const t0 = Date.UTC(2026, 0, 1);
    const path = await writeRecording(Array.from({ length: 50 }, (_, i) => reading(i, t0 + i * 1000)));
    const sub = await subscribe(TOPIC);
    const run = await start({ source: { kind: 'recording', paths: path }, speed: 1 });
    await sub.until(1);
    const stats = await run.stop();
    expect(stats.state).toBe('stopped');
    expect(stats.sent).toBeLessThan(50);
    expect(stats.acked).toBe(stats.sent);
    expect(await run.done).toEqual(stats);
  });

  it('skips topics the tools account may not publish (commands, non-device topics) and counts them', async () => {
    const t0 = Date.UTC(2026, 0, 1);
    const path = await writeRecording([
      reading(1, t0),
      { at: t0 + 1, topic: 'city/01/environment/sim-01-environment-001/commands', qos: 1, retain: false, payload: '{"cmd":"reboot"}' },
      { at: t0 + 2, topic: '$SYS/broker/uptime', qos: 0, retain: false, payload: '12' },
      reading(2, t0 + 3),
    ]);
    const sub = await subscribe(TOPIC);
    const stats = await (await start({ source: { kind: 'recording', paths: path } })).done;
    expect(stats).toMatchObject({ state: 'done', total: 4, sent: 2, acked: 2, skipped: 2, progress: 1 });
    await sub.until(2);
  });

  it('fails with clear codes: bad speed (E_CONFIG), missing recording (E_CONFIG), wrong password (E_AUTH), bad line (done rejects)', async () => {
    const path = await writeRecording([reading(1, Date.UTC(2026, 0, 1))]);
    await expect(start({ source: { kind: 'recording', paths: path }, speed: 200 })).rejects.toMatchObject({ code: 'E_CONFIG', message: expect.stringMatching(/speed 200 must be 1–100 or "max"/) as unknown });
    await expect(start({ source: { kind: 'recording', paths: join(dir, 'missing.ndjson') } })).rejects.toMatchObject({ code: 'E_CONFIG' });
    await expect(start({ source: { kind: 'recording', paths: path }, password: 'wrong' })).rejects.toMatchObject({ code: 'E_AUTH' });

    const { writeFile } = await import('node:fs/promises');
    const bad = join(dir, 'bad.ndjson');
    await writeFile(bad, `{"format":"citypulse-recording","version":1,"createdAt":"x"}\n${JSON.stringify(reading(1, 1))}\n{oops\n`);
    const run = await start({ source: { kind: 'recording', paths: bad } });
    const err = await run.done.then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(CodedError);
    expect((err as CodedError).message).toContain(`${bad} line 3`);
    expect(run.stats().state).toBe('failed');
  });
});

describe('shiftPayloadToNow', () => {
  it('shifts single and batch readings and leaves everything else as it was', () => {
    expect(shiftPayloadToNow('{"ts":1000,"seq":1}', 2000, 10_000)).toBe('{"ts":9000,"seq":1}');
    expect(shiftPayloadToNow('{"readings":[{"ts":1000},{"ts":2500}]}', 2000, 10_000)).toBe('{"readings":[{"ts":9000},{"ts":10500}]}');
    expect(shiftPayloadToNow(Buffer.from('{"ts":1000}'), 1000, 5000)).toBe('{"ts":5000}');
    for (const unchanged of ['not json', '[1,2]', '{"seq":1}', '{"ts":"x"}', 'null', '{"readings":"x"}']) expect(shiftPayloadToNow(unchanged, 0, 1)).toBe(unchanged);
    const binary = Buffer.from([0xff, 0x00]);
    expect(shiftPayloadToNow(binary, 0, 1)).toBe(binary);
  });

  it('with a per-topic state, never gives two readings of one device the same millisecond (InfluxDB would keep one)', () => {
    const state = { original: -Infinity, shifted: -Infinity };
    // Three readings a second apart, replayed within the same millisecond (speed "max").
    const shifted = [1000, 2000, 3000].map((ts) => (JSON.parse(String(shiftPayloadToNow(`{"ts":${ts}}`, ts, 50_000, state))) as { ts: number }).ts);
    expect(shifted).toEqual([50_000, 50_001, 50_002]);
    // A redelivery of the last reading keeps its (shifted) time: it overwrites, as the original did.
    expect(shiftPayloadToNow('{"ts":3000}', 3000, 50_000, state)).toBe('{"ts":50002}');
    expect(shiftPayloadToNow('{"readings":[{"ts":4000},{"ts":4000},{"ts":5000}]}', 5000, 50_000, state)).toBe('{"readings":[{"ts":50003},{"ts":50003},{"ts":50004}]}');
  });
});

describe('replay command line', () => {
  const parse = (argv: string[], env: Record<string, string> = {}) => {
    const command = parseReplayCli(argv, env, '/home/op/citypulse', Date.UTC(2026, 10, 22));
    if (command.help) throw new Error('help');
    return command.options;
  };
  const usageError = (argv: string[], env: Record<string, string> = {}): string => {
    try {
      parseReplayCli(argv, env, '/home/op/citypulse');
    } catch (err) {
      if (err instanceof UsageError) return err.message;
      throw err;
    }
    throw new Error(`no usage error for ${argv.join(' ')}`);
  };

  it('parses a file replay', () => {
    expect(parse(['--', '--from-file', 'rec/city.ndjson.gz', '--speed', '10', '--shift-to-now', '--password', 'pw'])).toEqual({
      source: { kind: 'recording', paths: ['/home/op/citypulse/rec/city.ndjson.gz'] },
      speed: 10,
      shiftToNow: true,
      maxInFlight: 1000,
      mqttUrl: 'mqtt://127.0.0.1:1883',
      username: undefined,
      password: 'pw',
      dataDir: '/home/op/citypulse/.data',
      logLevel: 'info',
    });
  });

  it('parses an InfluxDB replay with filters, InfluxDB settings from flags and environment', () => {
    const options = parse(['--from-influx', '--start', '2026-11-22T08:00:00+07:00', '--end', '1795323600000', '--provinces', '01,79', '--domains', 'traffic,energy', '--devices', 'sim-01-traffic-001', '--speed', 'max', '--influx-url', 'http://db:8086', '--max-in-flight', '200'], { INFLUX_DATABASE: 'city', INFLUX_RETENTION_POLICY: 'raw7' });
    expect(options).toMatchObject({
      source: {
        kind: 'influx',
        from: Date.UTC(2026, 10, 22, 1),
        to: 1_795_323_600_000,
        provinces: ['01', '79'],
        domains: ['traffic', 'energy'],
        devices: ['sim-01-traffic-001'],
        influx: { url: 'http://db:8086', database: 'city', retentionPolicy: 'raw7', apiVersion: 'v1' },
      },
      speed: 'max',
      maxInFlight: 200,
    });
    // --end defaults to now.
    expect(parse(['--from-influx', '--start', '2026-11-21T00:00:00Z']).source).toMatchObject({ from: Date.UTC(2026, 10, 21), to: Date.UTC(2026, 10, 22) });
  });

  it.each([
    [['--from-file', 'a', '--speed', '200'], '--speed "200" must be 1–100 or "max"'],
    [['--from-file', 'a', '--speed', '0.5'], '--speed "0.5" must be 1–100 or "max"'],
    [['--from-file', 'a', '--speed', 'fast'], '--speed "fast" must be 1–100 or "max"'],
    [[], 'say what to replay'],
    [['--from-file', 'a', '--from-influx'], 'exclude each other'],
    [['--from-file', 'a', '--start', '2026-01-01'], '--start belongs to --from-influx'],
    [['--from-influx'], '--from-influx needs --start'],
    [['--from-influx', '--start', 'yesterday'], '--start "yesterday" is not a time'],
    [['--from-influx', '--start', '2026-01-02', '--end', '2026-01-01'], 'must be after --start'],
    [['--from-influx', '--start', '2026-01-01', '--provinces', '01,99'], '--provinces: "99" is not one of the 34 province codes'],
    [['--from-influx', '--start', '2026-01-01', '--domains', 'water'], '--domains: "water" must be one of'],
    [['--from-influx', '--start', '2026-01-01', '--devices', 'Bad Id'], '--devices: "Bad Id" is not a device id'],
    [['--from-influx', '--start', '2026-01-01', '--influx-url', 'ftp://x'], '--influx-url'],
    [['--from-file', 'a', '--max-in-flight', '70000'], '--max-in-flight "70000" must be a whole number from 1 to 60000'],
    [['--from-file', 'a', '--log-level', 'loud'], '--log-level "loud"'],
  ])('refuses %j naming the flag', (argv, message) => {
    expect(usageError(argv)).toContain(message);
  });

  it('accepts speeds written as 2.5, 10x, 100×, MAX', () => {
    expect([parseSpeed('2.5'), parseSpeed('10x'), parseSpeed('100×'), parseSpeed('MAX')]).toEqual([2.5, 10, 100, 'max']);
  });
});

describe('progress line', () => {
  const sink = (isTTY: boolean) => {
    const chunks: string[] = [];
    const stream = Object.assign(
      new Writable({
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(chunk.toString());
          callback();
        },
      }),
      { isTTY, columns: 200 },
    );
    return { stream, chunks };
  };

  it('on a terminal: one redrawn line with a bar, percent, rate and ETA', () => {
    let clock = 0;
    const { stream, chunks } = sink(true);
    const progress = createProgress({ label: 'replay', total: 1000, stream, now: () => clock });
    clock = 2000;
    progress.update(250, { acked: 240 });
    progress.done();
    const line = chunks.join('');
    expect(line.startsWith('\r\x1b[2K')).toBe(true);
    expect(line).toContain('replay  [██████░░░░░░░░░░░░░░░░░░]  25.0%  250/1,000  125 msg/s  in 0:02  acked 240');
    expect(line.endsWith('\n')).toBe(true);
    progress.done(); // idempotent
    expect(chunks).toHaveLength(1);
  });

  it('elsewhere: plain lines with the time, ETA from the smoothed rate, no bar', async () => {
    let clock = 0;
    const { stream, chunks } = sink(false);
    const progress = createProgress({ label: 'record', stream, intervalMs: 20, now: () => clock, total: 100 });
    clock = 1000;
    progress.update(10, { size: '1.5 KiB' });
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(chunks.length).toBeGreaterThan(0);
    expect(chunks[0]).toMatch(/^\d\d:\d\d:\d\dZ {2}record {2}10\.0% {2}10\/100 {2}10\.0 msg\/s {2}ETA 0:09 {2}size 1\.5 KiB\n$/);
    progress.done();
    const without = createProgress({ label: 'record', stream, now: () => clock });
    without.update(5);
    expect(without.render()).toMatch(/record {2}5 {2}/);
    without.done();
    expect(formatSeconds(3725)).toBe('1:02:05');
  });
});

async function all(path: string): Promise<RecordedMessage[]> {
  const out: RecordedMessage[] = [];
  for await (const message of readRecording(path)) out.push(message);
  return out;
}

/** Polls a condition driven by network events (no fixed sleeps); fails after 10 s. */
async function waitUntil(condition: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
