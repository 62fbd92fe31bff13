import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as connectTcp, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import type { Client } from 'aedes';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic, TOPIC_FILTERS, type DeviceAddress, type Domain } from '@citypulse/contracts';
import { ensureDebianPackage, isRoot } from '@citypulse/infra';
import { buildBroker, DeviceRegistry, listenMqttTcp, type NewDevice, type PlatformBroker } from '../src/index.js';

/**
 * MQTT 3.1.1 interoperability: the platform broker (its authentication, ACL and counters on top
 * of Aedes) with standard clients over real sockets: mosquitto_pub/mosquitto_sub, paho (Python),
 * MQTT.js, and raw packets where a library would hide the behaviour under test.
 */

const run = promisify(execFile);
const WAIT_MS = 5_000;
/** Debian's interpreter: python3-paho-mqtt installs into its dist-packages, which a pyenv or venv python3 on PATH does not see. */
const DEBIAN_PYTHON = '/usr/bin/python3';

/** Rejects if `promise` has not settled within `ms`, naming what was awaited. */
function within<T>(promise: Promise<T>, what: string, ms = WAIT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** The next `event` on `emitter` (a Node or MQTT.js emitter) whose arguments pass `test`. */
function nextEvent<A extends unknown[]>(emitter: object, event: string, test: (...args: A) => boolean, what: string, ms = WAIT_MS): Promise<A> {
  const target = emitter as EventEmitter;
  let listener: ((...args: unknown[]) => void) | undefined;
  const seen = new Promise<A>((resolve) => {
    listener = (...args: unknown[]) => {
      if (test(...(args as A))) resolve(args as A);
    };
    target.on(event, listener);
  });
  return within(seen, what, ms).finally(() => listener && target.off(event, listener));
}

type MessageEvent = [topic: string, payload: Buffer, packet: mqtt.IPublishPacket];

/**
 * python3-paho-mqtt is a library, not a command, so ensureDebianPackage (which looks for a command
 * on PATH) cannot tell whether it is there: same policy, checked by importing it.
 */
async function ensurePaho(): Promise<void> {
  const importable = () => run(DEBIAN_PYTHON, ['-c', 'import paho.mqtt.client']).then(() => true, () => false);
  if (await importable()) return;
  const sudo = isRoot() ? [] : await run('sudo', ['-n', 'true']).then(() => ['sudo', '-n'], () => undefined);
  if (!sudo) throw new Error('paho for Debian\'s python3 is missing: sudo apt-get install -y python3-paho-mqtt');
  const apt = (...args: string[]) => {
    const [command = 'apt-get', ...rest] = [...sudo, 'apt-get', ...args];
    return run(command, rest, { env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
  };
  await apt('install', '-y', '-qq', 'python3-paho-mqtt').catch(async () => {
    await apt('update', '-qq');
    await apt('install', '-y', '-qq', 'python3-paho-mqtt');
  });
  if (!(await importable())) throw new Error(`installed python3-paho-mqtt but ${DEBIAN_PYTHON} still cannot import paho.mqtt.client`);
}

// ---------------------------------------------------------------------------------------------
// Raw MQTT 3.1.1 packets, for what client libraries do not let a test do (stall, resend a DUP).

interface RawPacket {
  readonly type: number; // the high nibble of the fixed header: 2 CONNACK, 5 PUBREC, 7 PUBCOMP, …
  readonly flags: number;
  readonly body: Buffer;
}

const u16 = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const utf8 = (s: string) => Buffer.concat([u16(Buffer.byteLength(s)), Buffer.from(s)]);
function frame(firstByte: number, body: Buffer): Buffer {
  const length: number[] = [];
  let n = body.length;
  do {
    length.push((n % 128) | (n >= 128 ? 0x80 : 0));
    n = Math.floor(n / 128);
  } while (n > 0);
  return Buffer.concat([Buffer.from([firstByte, ...length]), body]);
}
const connectPacket = (o: { clientId: string; username: string; password: string; keepaliveS: number }) =>
  frame(0x10, Buffer.concat([utf8('MQTT'), Buffer.from([4, 0xc2]), u16(o.keepaliveS), utf8(o.clientId), utf8(o.username), utf8(o.password)])); // 0xc2: username, password, clean session
const publishPacket = (o: { topic: string; payload: string; qos: 0 | 1 | 2; messageId?: number; dup?: boolean }) =>
  frame(0x30 | (o.dup ? 0x08 : 0) | (o.qos << 1), Buffer.concat([utf8(o.topic), o.qos > 0 ? u16(o.messageId ?? 1) : Buffer.alloc(0), Buffer.from(o.payload)]));
const pubrelPacket = (messageId: number) => frame(0x62, u16(messageId));

class RawMqttClient extends EventEmitter {
  readonly socket: Socket;
  readonly packets: RawPacket[] = [];
  #pending = Buffer.alloc(0);

  constructor(port: number) {
    super();
    this.socket = connectTcp({ port, host: '127.0.0.1' });
    this.socket.on('data', (chunk: Buffer) => this.#read(chunk));
    this.socket.on('error', () => undefined); // the broker closing on us is what some tests wait for
  }

  #read(chunk: Buffer): void {
    this.#pending = Buffer.concat([this.#pending, chunk]);
    for (;;) {
      let length = 0;
      let multiplier = 1;
      let i = 1;
      for (; i < this.#pending.length; i++) {
        const byte = this.#pending[i] as number;
        length += (byte & 0x7f) * multiplier;
        multiplier *= 128;
        if ((byte & 0x80) === 0) break;
      }
      if (i >= this.#pending.length || this.#pending.length < i + 1 + length) return;
      const first = this.#pending[0] as number;
      const packet = { type: first >> 4, flags: first & 0x0f, body: this.#pending.subarray(i + 1, i + 1 + length) };
      this.#pending = this.#pending.subarray(i + 1 + length);
      this.packets.push(packet);
      this.emit('packet', packet);
    }
  }

  /** The first packet of `type` not taken yet (waits for it). */
  async take(type: number, what: string): Promise<RawPacket> {
    const index = this.packets.findIndex((p) => p.type === type);
    if (index >= 0) return this.packets.splice(index, 1)[0] as RawPacket;
    await nextEvent(this, 'packet', (p: RawPacket) => p.type === type, what);
    return this.take(type, what);
  }

  send(packet: Buffer): void {
    this.socket.write(packet);
  }
}

// ---------------------------------------------------------------------------------------------

describe('interoperability with standard MQTT 3.1.1 clients', () => {
  let dir: string;
  let registry: DeviceRegistry;
  let broker: PlatformBroker;
  let server: Server;
  let port: number;
  let url: string;
  let mosquittoPub: string;
  let mosquittoSub: string;
  const secrets = new Map<string, string>();
  const clients: MqttClient[] = [];
  const children: ChildProcess[] = [];
  const sockets: Socket[] = [];

  const device = (id: string, province: string, domain: Domain, location: readonly [number, number]): NewDevice & DeviceAddress => ({ id, deviceId: id, province, domain, location });
  const HANOI: readonly [number, number] = [105.8525, 21.0287];
  const DANANG: readonly [number, number] = [108.22, 16.07];
  const SAIGON: readonly [number, number] = [106.7, 10.78];
  const devices = {
    mosq: device('hn-air-01', '01', 'environment', HANOI),
    mosqWill: device('hn-air-02', '01', 'environment', HANOI),
    paho: device('hcm-trf-01', '79', 'traffic', SAIGON),
    qos2: device('dn-air-01', '48', 'environment', DANANG),
    will: device('dn-air-02', '48', 'environment', DANANG),
    persistent: device('dn-air-03', '48', 'environment', DANANG),
    wildcard: device('dn-trf-01', '48', 'traffic', DANANG),
    raw: device('dn-air-04', '48', 'environment', DANANG),
  };
  const telemetry = (d: DeviceAddress) => deviceTopic(d, 'telemetry');
  const status = (d: DeviceAddress) => deviceTopic(d, 'status');
  const secret = (id: string) => secrets.get(id) ?? '';

  /** MQTT.js, protocol 3.1.1, no reconnect. Resolves once connected. */
  const connect = async (options: IClientOptions): Promise<MqttClient> => {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: WAIT_MS, ...options });
    clients.push(client);
    return client;
  };
  const asDevice = (d: NewDevice, options: IClientOptions = {}) => connect({ clientId: d.id, username: d.id, password: secret(d.id), ...options });
  const asService = (id: string, clientId: string, options: IClientOptions = {}) => connect({ clientId, username: id, password: secret(id), ...options });

  /** Resolves when the client with this id has had a SUBSCRIBE granted (at least in part). */
  const subscribed = (clientId: string) => nextEvent(broker.aedes, 'subscribe', (_subs: unknown, client: Client) => client.id === clientId, `${clientId} to subscribe`);
  /** The next message on `topic` that `client` receives. */
  const message = (client: MqttClient, topic: string, what = `a message on ${topic}`) =>
    nextEvent<MessageEvent>(client, 'message', (t) => t === topic, what).then(([, payload, packet]) => ({ payload: payload.toString(), qos: packet.qos, retain: packet.retain }));

  /** Starts a command; `exit` resolves with its output when it ends (killed after `ms`). */
  const start = (command: string, args: readonly string[], ms = 15_000) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }>((resolve, reject) => {
      child.on('error', reject);
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ code, signal, stdout, stderr });
      });
    });
    return { child, exit };
  };
  const mqttArgs = (user: string | undefined, clientId: string) => ['-h', '127.0.0.1', '-p', String(port), '-V', 'mqttv311', '-i', clientId, ...(user ? ['-u', user, '-P', secret(user)] : [])];

  beforeAll(async () => {
    // Installs what is missing (as root or with passwordless sudo); the first run may take a minute.
    mosquittoPub = await ensureDebianPackage('mosquitto_pub', 'mosquitto-clients');
    mosquittoSub = await ensureDebianPackage('mosquitto_sub', 'mosquitto-clients');
    await ensurePaho();

    dir = await mkdtemp(join(tmpdir(), 'citypulse-interop-'));
    registry = await DeviceRegistry.open(dir);
    for (const { id, secret: s } of await registry.upsertDevices(Object.values(devices).map(({ id, province, domain, location }) => ({ id, province, domain, location })))) {
      secrets.set(id, s ?? '');
    }
    for (const [id, role] of [['ingest', 'ingest'], ['api', 'api'], ['tools', 'tools']] as const) secrets.set(id, await registry.upsertService(id, role));
    broker = await buildBroker({ registry, logger: pino({ level: 'silent' }), limits: { heartbeatIntervalMs: 500 } });
    server = await listenMqttTcp(broker, 0, '127.0.0.1');
    port = (server.address() as AddressInfo).port;
    url = `mqtt://127.0.0.1:${port}`;
  }, 180_000);

  afterAll(async () => {
    for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    for (const socket of sockets) socket.destroy();
    for (const client of clients) client.end(true);
    await broker?.close();
    if (server) await new Promise((resolve) => server.close(resolve));
    registry?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  describe('mosquitto_pub / mosquitto_sub (Debian mosquitto-clients)', () => {
    it('delivers QoS 0, 1 and 2 and a retained status from mosquitto_pub to mosquitto_sub', async () => {
      const d = devices.mosq;
      const ready = subscribed('ingest-mosq');
      const sub = start(mosquittoSub, [...mqttArgs('ingest', 'ingest-mosq'), '-t', TOPIC_FILTERS.allTelemetry, '-t', TOPIC_FILTERS.allStatus, '-q', '2', '-C', '4', '-W', '10', '-F', '%t %q %r %p']);
      await ready;
      const pub = (...args: string[]) => run(mosquittoPub, [...mqttArgs(d.id, d.id), ...args], { timeout: 10_000 });
      await pub('-t', telemetry(d), '-q', '0', '-m', '{"seq":0}');
      await pub('-t', telemetry(d), '-q', '1', '-m', '{"seq":1}');
      await pub('-t', telemetry(d), '-q', '2', '-m', '{"seq":2}');
      await pub('-t', status(d), '-q', '1', '-r', '-m', '{"state":"online"}');
      const { code, stdout } = await sub.exit;
      expect(code).toBe(0);
      // QoS is min(published, subscribed); a live subscriber gets retain 0 [MQTT-3.3.1-9].
      expect(stdout.trim().split('\n')).toEqual([`${telemetry(d)} 0 0 {"seq":0}`, `${telemetry(d)} 1 0 {"seq":1}`, `${telemetry(d)} 2 0 {"seq":2}`, `${status(d)} 1 0 {"state":"online"}`]);

      // A subscriber that comes later gets the retained status, flagged as retained.
      const late = await run(mosquittoSub, [...mqttArgs('tools', 'tools-mosq-late'), '-t', status(d), '-q', '1', '-C', '1', '-W', '5', '-F', '%r %p'], { timeout: 10_000 });
      expect(late.stdout.trim()).toBe('1 {"state":"online"}');
    });

    it('publishes mosquitto_pub\'s last will when it dies', async () => {
      const d = devices.mosqWill;
      const ready = subscribed('tools-mosq-will');
      const sub = start(mosquittoSub, [...mqttArgs('tools', 'tools-mosq-will'), '-t', status(d), '-q', '1', '-C', '1', '-W', '10', '-F', '%q %p']);
      await ready;
      const connected = nextEvent(broker.aedes, 'clientReady', (client: Client) => client.id === d.id, 'the device to connect');
      // -l: publish stdin line by line, so it stays connected until it is killed.
      const pub = start(mosquittoPub, [...mqttArgs(d.id, d.id), '-t', telemetry(d), '-q', '1', '-l', '--will-topic', status(d), '--will-payload', '{"state":"offline"}', '--will-qos', '1', '--will-retain']);
      await connected;
      pub.child.kill('SIGKILL'); // no DISCONNECT: the broker sees the socket close
      expect((await sub.exit).stdout.trim()).toBe('1 {"state":"offline"}');
      expect((await pub.exit).signal).toBe('SIGKILL');
    });

    it('refuses anonymous clients (CONNACK 5) and wrong secrets (CONNACK 4)', async () => {
      const failures = broker.counters.authFailures;
      const anonymous = await run(mosquittoPub, [...mqttArgs(undefined, 'anonymous-1'), '-t', telemetry(devices.mosq), '-m', 'x'], { timeout: 10_000 }).then(
        () => undefined,
        (err: { code: number; stderr: string }) => err,
      );
      expect(anonymous?.code).not.toBe(0);
      expect(anonymous?.stderr).toMatch(/Connection Refused: not authori[sz]ed/);
      const d = devices.mosq;
      const wrong = await run(mosquittoPub, ['-h', '127.0.0.1', '-p', String(port), '-V', 'mqttv311', '-i', d.id, '-u', d.id, '-P', 'not-the-secret', '-t', telemetry(d), '-m', 'x'], { timeout: 10_000 }).then(
        () => undefined,
        (err: { code: number; stderr: string }) => err,
      );
      expect(wrong?.code).not.toBe(0);
      expect(wrong?.stderr).toMatch(/Connection Refused: bad user name or password/);
      expect(broker.counters.authFailures).toBe(failures + 2);
    });

    it('denies a device\'s subscription outside its rights (SUBACK 0x80) and keeps the connection', async () => {
      const d = devices.mosq;
      // -d traces the packets; mosquitto_sub 2.0 gives up on its own (exit 0) when every filter is denied.
      const { stdout, stderr } = await run(mosquittoSub, [...mqttArgs(d.id, d.id), '-d', '-t', 'city/#', '-q', '1', '-C', '1', '-W', '5'], { timeout: 10_000 });
      expect(stdout).toContain('Subscribed (mid: 1): 128');
      expect(stdout).toContain(`Client ${d.id} sending DISCONNECT`); // the client hangs up, not the broker
      expect(stderr).toContain('All subscription requests were denied');
    });
  });

  describe('paho-mqtt (Python, Debian python3-paho-mqtt)', () => {
    it('a paho device publishes QoS 1 and 2; a paho service account receives them on a wildcard', async () => {
      const d = devices.paho;
      const script = String.raw`
import json, os, sys, threading
import paho.mqtt.client as mqtt
cfg = json.loads(os.environ["INTEROP"])
out = {"connack": [], "received": [], "granted": {}, "published": []}
subscribed, received, denied = threading.Event(), threading.Event(), threading.Event()

def client(client_id, username, password):
    c = mqtt.Client(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
    c.username_pw_set(username, password)
    connected = threading.Event()
    def on_connect(c, userdata, flags, rc):
        out["connack"].append([client_id, rc])
        connected.set()
    c.on_connect = on_connect
    c.connect("127.0.0.1", cfg["port"], keepalive=30)
    c.loop_start()
    if not connected.wait(5): sys.exit("no CONNACK for " + client_id)
    return c

def on_message(c, userdata, msg):
    out["received"].append({"topic": msg.topic, "qos": msg.qos, "payload": msg.payload.decode("utf-8")})
    if len(out["received"]) == 2: received.set()

sub = client("ingest-paho", "ingest", cfg["ingestSecret"])
sub.on_message = on_message
sub.on_subscribe = lambda c, u, mid, granted: (out["granted"].__setitem__("ingest", list(granted)), subscribed.set())
sub.subscribe(cfg["filter"], qos=2)
if not subscribed.wait(5): sys.exit("no SUBACK")

dev = client(cfg["deviceId"], cfg["deviceId"], cfg["deviceSecret"])
for qos in (1, 2):
    info = dev.publish(cfg["topic"], json.dumps({"seq": qos, "name": "Trạm"}, ensure_ascii=False).encode("utf-8"), qos=qos)
    info.wait_for_publish(5)
    out["published"].append(info.is_published())
dev.on_subscribe = lambda c, u, mid, granted: (out["granted"].__setitem__("device", list(granted)), denied.set())
dev.subscribe("city/#", qos=1)
denied.wait(5)
received.wait(5)
for c in (dev, sub):
    c.disconnect()
    c.loop_stop()
print(json.dumps(out))
`;
      const config = { port, filter: TOPIC_FILTERS.provinceTelemetry('79'), topic: telemetry(d), deviceId: d.id, deviceSecret: secret(d.id), ingestSecret: secret('ingest') };
      const { stdout } = await run(DEBIAN_PYTHON, ['-c', script], { env: { ...process.env, INTEROP: JSON.stringify(config), PYTHONIOENCODING: 'utf-8' }, timeout: 30_000 });
      const out = JSON.parse(stdout) as { connack: [string, number][]; received: { topic: string; qos: number; payload: string }[]; granted: Record<string, number[]>; published: boolean[] };
      expect(out.connack).toEqual([['ingest-paho', 0], [d.id, 0]]);
      expect(out.granted).toEqual({ ingest: [2], device: [128] });
      expect(out.published).toEqual([true, true]);
      expect(out.received).toEqual([
        { topic: telemetry(d), qos: 1, payload: '{"seq": 1, "name": "Trạm"}' },
        { topic: telemetry(d), qos: 2, payload: '{"seq": 2, "name": "Trạm"}' },
      ]);
    });
  });

  describe('MQTT.js', () => {
    it('delivers a QoS 2 message exactly once through the hooks', async () => {
      const d = devices.qos2;
      const before = broker.counters.messagesIn.environment;
      const sub = await asService('ingest', 'ingest-qos2');
      await sub.subscribeAsync(telemetry(d), { qos: 2 });
      const got: { payload: string; qos: number }[] = [];
      sub.on('message', (topic, payload, packet) => {
        if (topic === telemetry(d)) got.push({ payload: payload.toString(), qos: packet.qos });
      });
      // Same publisher, same subscriber: messages arrive in order, so once the second one is in, a duplicate of the first would have been too.
      const second = nextEvent<MessageEvent>(sub, 'message', (topic, payload) => topic === telemetry(d) && payload.toString() === '{"seq":2}', 'the second message');
      const dev = await asDevice(d);
      await dev.publishAsync(telemetry(d), '{"seq":1}', { qos: 2 }); // resolves on PUBCOMP
      await dev.publishAsync(telemetry(d), '{"seq":2}', { qos: 2 });
      await second;
      expect(got).toEqual([
        { payload: '{"seq":1}', qos: 2 },
        { payload: '{"seq":2}', qos: 2 },
      ]);
      expect(broker.counters.messagesIn.environment - before).toBe(2);
    });

    /**
     * A raw device publishes `payload` at QoS 2, resends the PUBLISH with DUP before PUBREL (as after
     * a lost PUBREC), completes the handshake, then sends a QoS 0 sentinel. Returns what an ingest
     * subscriber received up to the sentinel, and how much counters.messagesIn.environment grew.
     */
    async function qos2WithDuplicate(d: NewDevice & DeviceAddress, subscriberId: string): Promise<{ got: string[]; counted: number }> {
      const sub = await asService('ingest', subscriberId);
      await sub.subscribeAsync(telemetry(d), { qos: 2 });
      const got: string[] = [];
      sub.on('message', (topic, payload) => {
        if (topic === telemetry(d)) got.push(payload.toString());
      });
      const sentinel = nextEvent<MessageEvent>(sub, 'message', (topic, payload) => topic === telemetry(d) && payload.toString() === 'sentinel', 'the sentinel');
      const before = broker.counters.messagesIn.environment;

      const raw = new RawMqttClient(port);
      sockets.push(raw.socket);
      raw.send(connectPacket({ clientId: d.id, username: d.id, password: secret(d.id), keepaliveS: 30 }));
      expect((await raw.take(2, 'CONNACK')).body).toEqual(Buffer.from([0, 0]));
      raw.send(publishPacket({ topic: telemetry(d), payload: 'once', qos: 2, messageId: 7 }));
      expect((await raw.take(5, 'PUBREC')).body).toEqual(u16(7));
      raw.send(publishPacket({ topic: telemetry(d), payload: 'once', qos: 2, messageId: 7, dup: true }));
      expect((await raw.take(5, 'the second PUBREC')).body).toEqual(u16(7));
      raw.send(pubrelPacket(7));
      expect((await raw.take(7, 'PUBCOMP')).body).toEqual(u16(7));
      raw.send(publishPacket({ topic: telemetry(d), payload: 'sentinel', qos: 0 }));
      await sentinel;
      // Aedes emits 'publish' (where messages in are counted) once routing is done, which may come
      // after delivery: wait for the sentinel's count, then give a stray double count a moment.
      for (let i = 0; i < 100 && broker.counters.messagesIn.environment - before < 2; i++) await new Promise((resolve) => setTimeout(resolve, 10));
      await new Promise((resolve) => setTimeout(resolve, 50));
      raw.socket.end();
      sub.end(true);
      return { got, counted: broker.counters.messagesIn.environment - before - 1 }; // less the sentinel
    }

    it('keeps a QoS 2 message exactly once when the device resends the PUBLISH (DUP) before PUBREL', async () => {
      const { got } = await qos2WithDuplicate(devices.raw, 'ingest-dup');
      expect(got).toEqual(['once', 'sentinel']);
    });

    // Aedes runs authorizePublish again for the DUP before it drops it as a duplicate: messages in
    // are counted on its 'publish' event instead, so the resend is not counted twice.
    it('counts a QoS 2 message resent with DUP once in counters.messagesIn', async () => {
      const { counted } = await qos2WithDuplicate(devices.raw, 'ingest-dup-count');
      expect(counted).toBe(1);
    });

    it('delivers the retained status to a late subscriber', async () => {
      const d = devices.will;
      const dev = await asDevice(d);
      await dev.publishAsync(status(d), '{"state":"online"}', { qos: 1, retain: true });
      const late = await asService('api', 'api-late');
      const retained = message(late, status(d), 'the retained status');
      await late.subscribeAsync(TOPIC_FILTERS.allStatus, { qos: 1 });
      expect(await retained).toEqual({ payload: '{"state":"online"}', qos: 1, retain: true });
      dev.end(true);
    });

    it('publishes a device\'s will (retained offline status) when its socket is destroyed', async () => {
      const d = devices.will;
      const observer = await asService('tools', 'tools-will');
      await observer.subscribeAsync(status(d), { qos: 1 });
      const dev = await asDevice(d, { will: { topic: status(d), payload: Buffer.from('{"state":"offline"}'), qos: 1, retain: true } });
      await dev.publishAsync(status(d), '{"state":"online"}', { qos: 1, retain: true });
      const offline = nextEvent<MessageEvent>(observer, 'message', (topic, payload) => topic === status(d) && payload.toString().includes('offline'), 'the will');
      (dev.stream as unknown as { destroy(): void }).destroy(); // an ungraceful drop, as on a lost 4G link
      const [, payload, packet] = await offline;
      expect({ payload: payload.toString(), qos: packet.qos }).toEqual({ payload: '{"state":"offline"}', qos: 1 });
      // …and it stays as the retained status for whoever subscribes next.
      const late = await asService('tools', 'tools-will-late');
      const retained = message(late, status(d), 'the retained will');
      await late.subscribeAsync(status(d), { qos: 1 });
      expect(await retained).toEqual({ payload: '{"state":"offline"}', qos: 1, retain: true });
    });

    it('queues QoS 1 messages for a persistent session (clean: false) while it is offline', async () => {
      const d = devices.persistent;
      const session = { clientId: 'ingest-persistent', clean: false };
      const first = await asService('ingest', session.clientId, session);
      await first.subscribeAsync(telemetry(d), { qos: 1 });
      await first.endAsync(); // a clean DISCONNECT: the session stays

      const dev = await asDevice(d);
      const queued = nextEvent(broker.aedes, 'publish', (packet: { payload: Buffer; topic: string }) => packet.topic === telemetry(d) && packet.payload.toString() === '{"seq":3}', 'the third message to be queued');
      for (const seq of [1, 2, 3]) await dev.publishAsync(telemetry(d), `{"seq":${seq}}`, { qos: 1 });
      await queued;

      // Listen before CONNACK: the queued messages follow it at once.
      const again = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0, username: 'ingest', password: secret('ingest'), ...session });
      clients.push(again);
      const got: { payload: string; qos: number }[] = [];
      again.on('message', (topic, payload, packet) => {
        if (topic === telemetry(d)) got.push({ payload: payload.toString(), qos: packet.qos });
      });
      const connack = nextEvent<[mqtt.IConnackPacket]>(again, 'connect', () => true, 'CONNACK');
      const third = nextEvent<MessageEvent>(again, 'message', (_topic, payload) => payload.toString() === '{"seq":3}', 'the queued messages');
      const [packet] = await connack;
      expect(packet.sessionPresent).toBe(true);
      await third;
      expect(got).toEqual([1, 2, 3].map((seq) => ({ payload: `{"seq":${seq}}`, qos: 1 })));
    });

    it('disconnects a client that goes silent after 1.5 × its keep-alive', async () => {
      const raw = new RawMqttClient(port);
      sockets.push(raw.socket);
      const timedOut = nextEvent(broker.aedes, 'keepaliveTimeout', (client: Client) => client.id === 'tools-silent', 'the keep-alive timeout');
      const closed = nextEvent(raw.socket, 'close', () => true, 'the broker to close the socket');
      raw.send(connectPacket({ clientId: 'tools-silent', username: 'tools', password: secret('tools'), keepaliveS: 1 }));
      expect((await raw.take(2, 'CONNACK')).body).toEqual(Buffer.from([0, 0]));
      const connackAt = performance.now();
      await Promise.all([timedOut, closed]); // and then nothing is sent: no PINGREQ
      const elapsed = performance.now() - connackAt;
      expect(elapsed).toBeGreaterThanOrEqual(1_400);
      expect(elapsed).toBeLessThan(2_500);
    });

    it('gives service accounts the + and # wildcards their role allows, and negates the rest', async () => {
      const d = devices.wildcard;
      const tools = await asService('tools', 'tools-wildcards');
      const ingest = await asService('ingest', 'ingest-wildcards');
      expect((await tools.subscribeAsync('city/#', { qos: 1 }))[0]?.qos).toBe(1);
      expect((await ingest.subscribeAsync('city/48/+/+/telemetry', { qos: 1 }))[0]?.qos).toBe(1);
      // ingest reads telemetry and status only: a # under city/ would include commands.
      await expect(ingest.subscribeAsync('city/48/#', { qos: 1 })).rejects.toThrow(/Subscribe error/);
      expect(ingest.connected).toBe(true);
      const toolsGot = message(tools, telemetry(d), 'the telemetry on city/#');
      const ingestGot = message(ingest, telemetry(d), 'the telemetry on city/48/+/+/telemetry');
      const dev = await asDevice(d);
      await dev.publishAsync(telemetry(d), '{"seq":1}', { qos: 1 });
      expect(await toolsGot).toMatchObject({ payload: '{"seq":1}', qos: 1 });
      expect(await ingestGot).toMatchObject({ payload: '{"seq":1}', qos: 1 });
    });

    it('lets the tools account watch $SYS (broker heartbeat); other roles are negated and nobody may publish there', async () => {
      const tools = await asService('tools', 'tools-sys');
      const heartbeatTopic = `$SYS/${broker.aedes.id}/heartbeat`;
      const heartbeat = nextEvent<MessageEvent>(tools, 'message', (topic) => topic === heartbeatTopic, 'a $SYS heartbeat', 3_000);
      expect((await tools.subscribeAsync('$SYS/#', { qos: 0 }))[0]?.qos).toBe(0);
      const [, payload] = await heartbeat;
      expect(payload.toString()).toBe(broker.aedes.id);
      // '#' never matches a $ topic [MQTT-4.7.2-1]: tools' city/# above and $SYS stay apart.

      const api = await asService('api', 'api-sys');
      await expect(api.subscribeAsync('$SYS/#', { qos: 0 })).rejects.toThrow(/Subscribe error/);

      const denied = broker.counters.aclPublishDenied;
      const closed = nextEvent(tools, 'close', () => true, 'the broker to close the connection');
      tools.publish(heartbeatTopic, 'forged', { qos: 1 });
      await closed;
      expect(broker.counters.aclPublishDenied).toBe(denied + 1);
    });
  });
});
