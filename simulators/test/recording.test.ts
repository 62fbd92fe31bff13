import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { constants as zlibConstants, gunzipSync } from 'node:zlib';
import { CodedError } from '@citypulse/contracts';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseRecordCli } from '../src/cli/record-options.js';
import { parseSize, resolveToolsCredentials, UsageError } from '../src/cli/tool-flags.js';
import { countRecordedMessages, openRecorder, readRecording, recordingPartPath, resolveRecordingFiles, type RecordedMessage, type RecorderOptions } from '../src/recording.js';

const T0 = Date.UTC(2026, 10, 22, 1, 0, 0);
const CREATED_AT = '2026-11-22T01:00:00.000Z';
const NOT_UTF8 = Buffer.from([0x7b, 0xff, 0xfe, 0x00, 0x0a, 0x7d]); // also holds a NUL and a newline

/** A mix of what goes over the wire: readings, a batch, a status, malformed text, binary, non-ASCII. */
function sampleMessages(count: number, stepMs = 100): RecordedMessage[] {
  const out: RecordedMessage[] = [];
  for (let i = 0; i < count; i++) {
    const at = T0 + i * stepMs;
    const topic = `city/01/${['traffic', 'environment', 'energy'][i % 3]}/sim-01-dev-${String(i % 7).padStart(3, '0')}/telemetry`;
    switch (i % 6) {
      case 0:
        out.push({ at, topic, qos: 1, retain: false, payload: JSON.stringify({ ts: at - 20, seq: i, pm25: 35.5 }) });
        break;
      case 1:
        out.push({ at, topic, qos: 1, retain: false, payload: JSON.stringify({ readings: [{ ts: at - 1000, seq: i }, { ts: at, seq: i + 1 }] }) });
        break;
      case 2:
        out.push({ at, topic: topic.replace('telemetry', 'status'), qos: 1, retain: true, payload: '{"state":"online"}' });
        break;
      case 3:
        out.push({ at, topic, qos: 0, retain: false, payload: '{"ts": 17, broken' });
        break;
      case 4:
        out.push({ at, topic, qos: 2, retain: false, payload: Buffer.from(NOT_UTF8) });
        break;
      default:
        out.push({ at, topic, qos: 1, retain: false, payload: '\uFEFF"Trạm quan trắc Hà Nội" \u2028 line\nbreak' });
    }
  }
  return out;
}

async function collect(paths: string | readonly string[]): Promise<RecordedMessage[]> {
  const out: RecordedMessage[] = [];
  for await (const message of readRecording(paths)) out.push(message);
  return out;
}

/** What a message looks like on the wire: the payload as bytes. */
const wire = (m: RecordedMessage) => ({ at: m.at, topic: m.topic, qos: m.qos, retain: m.retain, payload: Buffer.from(m.payload).toString('hex') });

async function record(options: RecorderOptions, messages: readonly RecordedMessage[], flushEvery = 0): Promise<readonly string[]> {
  const recorder = await openRecorder(options);
  for (const [i, message] of messages.entries()) {
    recorder.write(message);
    if (flushEvery > 0 && i % flushEvery === flushEvery - 1) await recorder.flush();
  }
  await recorder.close();
  return recorder.stats().files;
}

async function expectRejection(promise: Promise<unknown>): Promise<CodedError> {
  try {
    await promise;
  } catch (err) {
    expect(err).toBeInstanceOf(CodedError);
    return err as CodedError;
  }
  throw new Error('expected a rejection');
}

describe('recording format: writer and reader', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-rec-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('writes a header and one line per message, and reads every message back identically', async () => {
    const path = join(dir, 'plain', 'city.ndjson');
    const messages = sampleMessages(12);
    const files = await record({ path, header: { scenario: 'rush-hour', seed: 7 } }, messages);
    expect(files).toEqual([path]);
    const lines = (await readFile(path, 'utf8')).split('\n');
    expect(lines).toHaveLength(14); // header + 12 + the empty string after the last newline
    expect(JSON.parse(lines[0] ?? '')).toMatchObject({ format: 'citypulse-recording', version: 1, scenario: 'rush-hour', seed: 7 });
    expect(Date.parse((JSON.parse(lines[0] ?? '') as { createdAt: string }).createdAt)).toBeGreaterThan(Date.now() - 60_000);
    expect(JSON.parse(lines[1] ?? '')).toEqual({ at: T0, topic: messages[0]?.topic, qos: 1, retain: false, payload: messages[0]?.payload });

    const back = await collect(path);
    expect(back.map(wire)).toEqual(messages.map(wire));
    expect(await countRecordedMessages([path])).toBe(12);
  });

  it('keeps a payload that is not UTF-8 as payloadBase64 and gives the same bytes back', async () => {
    const path = join(dir, 'binary.ndjson');
    const valid = Buffer.from('{"ts":1,"name":"Đà Nẵng"}');
    await record({ path }, [
      { at: T0, topic: 'city/48/environment/sim-48-environment-001/telemetry', qos: 1, retain: false, payload: NOT_UTF8 },
      { at: T0 + 1, topic: 'city/48/environment/sim-48-environment-001/telemetry', qos: 1, retain: false, payload: valid },
    ]);
    const [, binaryLine, textLine] = (await readFile(path, 'utf8')).split('\n');
    expect(JSON.parse(binaryLine ?? '')).toEqual({ at: T0, topic: 'city/48/environment/sim-48-environment-001/telemetry', qos: 1, retain: false, payloadBase64: NOT_UTF8.toString('base64') });
    // Valid UTF-8 is kept readable, as text.
    expect(JSON.parse(textLine ?? '')).toMatchObject({ payload: '{"ts":1,"name":"Đà Nẵng"}' });
    const [binary, text] = await collect(path);
    expect(Buffer.isBuffer(binary?.payload) && binary.payload.equals(NOT_UTF8)).toBe(true);
    expect(text?.payload).toBe(valid.toString('utf8'));
  });

  it('gzips (detected on reading by the magic bytes, whatever the name) and round-trips', async () => {
    const path = join(dir, 'city.ndjson.gz');
    const messages = sampleMessages(500, 10);
    const files = await record({ path }, messages);
    expect(files).toEqual([path]);
    const bytes = await readFile(path);
    expect([bytes[0], bytes[1]]).toEqual([0x1f, 0x8b]);
    expect(gunzipSync(bytes).toString('utf8').split('\n')).toHaveLength(502);
    expect((await collect(path)).map(wire)).toEqual(messages.map(wire));

    // gzip: true on a name without .gz appends it; the reader looks at the bytes, not the name.
    const files2 = await record({ path: join(dir, 'other.ndjson'), gzip: true }, messages.slice(0, 3));
    expect(files2).toEqual([join(dir, 'other.ndjson.gz')]);
    await writeFile(join(dir, 'renamed.ndjson'), await readFile(join(dir, 'other.ndjson.gz')));
    expect((await collect(join(dir, 'renamed.ndjson'))).map(wire)).toEqual(messages.slice(0, 3).map(wire));
  });

  it('rotates by size: city.ndjson, city.1.ndjson …, each with the header, all messages back in order', async () => {
    const path = join(dir, 'size', 'city.ndjson');
    const messages = sampleMessages(200);
    const recorder = await openRecorder({ path, rotateBytes: 4096, header: { createdAt: CREATED_AT } });
    for (const message of messages) recorder.write(message);
    await recorder.close();
    const { files, messages: count, bytes } = recorder.stats();
    expect(count).toBe(200);
    expect(files.length).toBeGreaterThan(3);
    expect(files.slice(0, 3)).toEqual([path, join(dir, 'size', 'city.1.ndjson'), join(dir, 'size', 'city.2.ndjson')]);
    expect((await readdir(join(dir, 'size'))).sort()).toEqual(files.map((f) => f.slice(join(dir, 'size').length + 1)).sort());
    let total = 0;
    for (const file of files) {
      const text = await readFile(file, 'utf8');
      total += Buffer.byteLength(text);
      expect(Buffer.byteLength(text)).toBeLessThanOrEqual(4096);
      expect(text.split('\n')[0]).toBe(`{"format":"citypulse-recording","version":1,"createdAt":"${CREATED_AT}"}`);
    }
    expect(total).toBe(bytes);
    // The first part's path reads the whole set; so does every part listed, in any order (a shell glob).
    expect((await collect(path)).map(wire)).toEqual(messages.map(wire));
    expect((await collect([...files].reverse())).map(wire)).toEqual(messages.map(wire));
    expect(await resolveRecordingFiles(path)).toEqual(files);
    expect(await countRecordedMessages(files)).toBe(200);
    // A later part alone is just that part.
    expect((await collect(files[1] as string)).length).toBeGreaterThan(0);
  });

  it('rotates by recorded time (at), gzipped', async () => {
    const path = join(dir, 'time', 'city.ndjson.gz');
    const messages = sampleMessages(50, 1000); // 50 s of traffic
    const files = await record({ path, rotateMs: 10_000 }, messages);
    expect(files).toEqual([0, 1, 2, 3, 4].map((n) => recordingPartPath(path, n)));
    expect(files[1]).toBe(join(dir, 'time', 'city.1.ndjson.gz'));
    const firstPart = gunzipSync(await readFile(files[0] as string)).toString('utf8').trim().split('\n');
    expect(firstPart).toHaveLength(11); // header + at 0 s … 9 s
    expect((await collect(path)).map(wire)).toEqual(messages.map(wire));
  });

  it('is byte-for-byte deterministic for the same writes (header createdAt given), gzip and rotation included', async () => {
    const messages = sampleMessages(3000, 50);
    for (const gzip of [false, true]) {
      const options = (name: string): RecorderOptions => ({ path: join(dir, 'det', `${name}.ndjson${gzip ? '.gz' : ''}`), rotateBytes: 64 * 1024, header: { createdAt: CREATED_AT, seed: 1 } });
      const a = await record(options('a'), messages, 700);
      const b = await record(options('b'), messages, 700);
      expect(a.length).toBeGreaterThan(2);
      expect(b).toHaveLength(a.length);
      for (const [i, file] of a.entries()) expect((await readFile(file)).equals(await readFile(b[i] as string))).toBe(true);
    }
  });

  it('flush() puts everything written so far on disk, before close', async () => {
    for (const path of [join(dir, 'flush.ndjson'), join(dir, 'flush.ndjson.gz')]) {
      const recorder = await openRecorder({ path });
      const messages = sampleMessages(5);
      for (const message of messages) recorder.write(message);
      await recorder.flush();
      const bytes = await readFile(path);
      const text = path.endsWith('.gz') ? gunzipSync(bytes, { finishFlush: zlibConstants.Z_SYNC_FLUSH }).toString('utf8') : bytes.toString('utf8');
      expect(text.trim().split('\n')).toHaveLength(6);
      await recorder.close();
      expect(() => recorder.write(messages[0] as RecordedMessage)).toThrow(/closed/);
    }
  });

  it('keeps up with 50,000 writes in well under a second per 50,000 on this machine, memory bounded by chunks', async () => {
    const path = join(dir, 'fast.ndjson.gz');
    const recorder = await openRecorder({ path });
    const payload = JSON.stringify({ ts: T0, seq: 1, intensity: 42, periodSeconds: 60, occupancy: 0.2, averageVehicleSpeed: 38.5 });
    const started = performance.now();
    for (let i = 0; i < 50_000; i++) recorder.write({ at: T0 + i, topic: 'city/01/traffic/sim-01-traffic-001/telemetry', qos: 1, retain: false, payload });
    const writeMs = performance.now() - started;
    await recorder.close();
    expect(writeMs).toBeLessThan(5000); // loose: write() must stay cheap (typically ~100 ms)
    expect(await countRecordedMessages([path])).toBe(50_000);
  });

  it('refuses to overwrite an existing recording unless asked, and then removes its old parts', async () => {
    const path = join(dir, 'again', 'city.ndjson');
    await record({ path, rotateBytes: 2048 }, sampleMessages(60));
    expect((await readdir(join(dir, 'again'))).length).toBeGreaterThan(2);
    const refused = await expectRejection(openRecorder({ path }));
    expect(refused.code).toBe('E_CONFIG');
    expect(refused.message).toMatch(/already exists/);
    await record({ path, overwrite: true }, sampleMessages(2));
    expect(await readdir(join(dir, 'again'))).toEqual(['city.ndjson']);
    expect(await collect(path)).toHaveLength(2);
  });

  it.each([
    ['no header', '{"at":1,"topic":"a","qos":1,"retain":false,"payload":"x"}\n', 1, /not a citypulse-recording header/],
    ['a newer version', '{"format":"citypulse-recording","version":2}\n', 1, /version 2/],
    ['a line that is not JSON', 'HEADER\n{"at":1,"topic":"a","qos":1,"retain":false,"payload":"x"}\n{"at":2,"topic"\n', 3, /not JSON/],
    ['a bad qos', 'HEADER\n{"at":1,"topic":"a","qos":3,"retain":false,"payload":"x"}\n', 2, /"qos" must be 0, 1 or 2/],
    ['no payload', 'HEADER\n{"at":1,"topic":"a","qos":1,"retain":false}\n', 2, /"payload"/],
    ['bad base64', 'HEADER\n{"at":1,"topic":"a","qos":1,"retain":false,"payloadBase64":"@@"}\n', 2, /payloadBase64/],
    ['a missing at', 'HEADER\n\n{"topic":"a","qos":1,"retain":false,"payload":"x"}', 3, /"at"/],
  ])('names the file and line of %s (E_BAD_REQUEST)', async (_name, content, line, message) => {
    const path = join(dir, 'bad', `${line}-${String(_name).replace(/\W/g, '')}.ndjson`);
    await mkdir(join(dir, 'bad'), { recursive: true });
    await writeFile(path, content.replace('HEADER', '{"format":"citypulse-recording","version":1,"createdAt":"x"}'));
    const err = await expectRejection(collect(path));
    expect(err.code).toBe('E_BAD_REQUEST');
    expect(err.message).toContain(`recording ${path} line ${line} `);
    expect(err.message).toMatch(message);
  });

  it('names the file of a gzip recording cut short, after yielding what it could read', async () => {
    const path = join(dir, 'cut.ndjson.gz');
    await record({ path }, sampleMessages(2000));
    const bytes = await readFile(path);
    const cut = join(dir, 'cut-short.ndjson.gz');
    await writeFile(cut, bytes.subarray(0, Math.floor(bytes.length / 2)));
    const seen: RecordedMessage[] = [];
    const err = await expectRejection(
      (async () => {
        for await (const m of readRecording(cut)) seen.push(m);
      })(),
    );
    expect(err.code).toBe('E_BAD_REQUEST');
    expect(err.message).toContain(cut);
    expect(seen.length).toBeGreaterThan(0);
  });

  it('says E_CONFIG for a recording that does not exist', async () => {
    const err = await expectRejection(collect(join(dir, 'nope.ndjson')));
    expect(err.code).toBe('E_CONFIG');
    expect(err.message).toContain('nope.ndjson');
  });
});

describe('record command line', () => {
  const parse = (argv: string[], env: Record<string, string> = {}) => {
    const command = parseRecordCli(argv, env, '/home/op/citypulse');
    if (command.help) throw new Error('help');
    return command.options;
  };
  const usageError = (argv: string[]): string => {
    try {
      parseRecordCli(argv, {}, '/home/op/citypulse');
    } catch (err) {
      if (err instanceof UsageError) return err.message;
      throw err;
    }
    throw new Error(`no usage error for ${argv.join(' ')}`);
  };

  it('parses every flag', () => {
    expect(
      parse(['--', '--out', 'rec/city.ndjson', '--gzip', '--rotate-size', '100MB', '--rotate-time', '1h', '--filter', 'city/01/#', '--filter', 'city/79/+/+/telemetry', '--duration', '10m', '--include-retained', '--force', '--mqtt-url', 'mqtt://broker:1884', '--username', 'tools', '--password', 's3cret', '--data-dir', 'var', '--status-interval', '5s', '--log-level', 'debug']),
    ).toEqual({
      out: '/home/op/citypulse/rec/city.ndjson.gz',
      gzip: true,
      rotateBytes: 100 * 1024 * 1024,
      rotateMs: 3_600_000,
      filters: ['city/01/#', 'city/79/+/+/telemetry'],
      durationMs: 600_000,
      includeRetained: true,
      overwrite: true,
      statusIntervalMs: 5000,
      mqttUrl: 'mqtt://broker:1884',
      username: 'tools',
      password: 's3cret',
      dataDir: '/home/op/citypulse/var',
      logLevel: 'debug',
    });
  });

  it('has defaults and reads MQTT_URL, MQTT_USERNAME, MQTT_PASSWORD and DATA_DIR', () => {
    expect(parse(['--out', '/data/rec.ndjson.gz'], { MQTT_URL: 'mqtt://10.0.0.5:1883', MQTT_USERNAME: 'tools-2', MQTT_PASSWORD: 'pw', DATA_DIR: '/srv/citypulse' })).toMatchObject({
      out: '/data/rec.ndjson.gz',
      gzip: true,
      filters: ['city/#'],
      rotateBytes: undefined,
      durationMs: undefined,
      includeRetained: false,
      mqttUrl: 'mqtt://10.0.0.5:1883',
      username: 'tools-2',
      password: 'pw',
      dataDir: '/srv/citypulse',
    });
    expect(parseRecordCli(['--help'], {}, '/')).toEqual({ help: true });
  });

  it.each([
    [[], /--out is required/],
    [['--out', 'x', '--rotate-size', 'big'], /--rotate-size "big" must be a size/],
    [['--out', 'x', '--rotate-time', '5'], /--rotate-time "5" is not a duration/],
    [['--out', 'x', '--duration', '-1'], /--duration needs a value/],
    [['--out', 'x', '--filter', 'city/#/x'], /--filter "city\/#\/x" is not an MQTT topic filter/],
    [['--out', 'x', '--filter', 'city/0+/x'], /--filter/],
    [['--out', 'x', '--mqtt-url', 'http://x'], /--mqtt-url "http:\/\/x" must use mqtt:\/\//],
    [['--out', 'x', '--speed', '2'], /unknown flag --speed/],
    [['--out', 'x', 'extra'], /unexpected argument extra/],
  ])('refuses %j naming the flag', (argv, message) => {
    expect(usageError(argv)).toMatch(message);
  });

  it('parses sizes', () => {
    expect(parseSize('--rotate-size', '1.5GB')).toBe(Math.round(1.5 * 1024 ** 3));
    expect(parseSize('--rotate-size', '512k')).toBe(512 * 1024);
    expect(parseSize('--rotate-size', '2MiB')).toBe(2 * 1024 ** 2);
    expect(() => parseSize('--rotate-size', '10')).toThrow(/at least 1KB/);
  });

  it('takes the tools secret from DATA_DIR/credentials.json when no password is given', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-cred-'));
    try {
      const flags = { mqttUrl: 'mqtt://x', username: undefined, password: undefined, dataDir, logLevel: 'info' };
      await expect(resolveToolsCredentials(flags)).rejects.toThrow(/credentials.json cannot be read/);
      await writeFile(join(dataDir, 'credentials.json'), JSON.stringify({ services: { ingest: 'a', api: 'b', tools: 'tools-secret' }, admin: {} }));
      await expect(resolveToolsCredentials(flags)).resolves.toEqual({ username: 'tools', password: 'tools-secret' });
      await expect(resolveToolsCredentials({ ...flags, password: 'given' })).resolves.toEqual({ username: 'tools', password: 'given' });
      await expect(resolveToolsCredentials({ ...flags, username: 'someone' })).rejects.toThrow(/no password for someone/);
    } finally {
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
