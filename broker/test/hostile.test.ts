import { randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { connect as tcpConnect, type AddressInfo, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { buildBroker, DeviceRegistry, listenMqttTcp, type PlatformBroker } from '../src/index.js';

/**
 * Hostile input over real TCP: random bytes, truncated and malformed packets, oversized packets, a
 * flood of connects, clients that never finish CONNECT, a subscriber that stops reading, wrong
 * credentials in a loop. In every case the broker stays up, a device and its reader that were
 * already talking keep going, and the case shows in the metrics.
 */
const device = { id: 'dn-traffic-01', province: '48', domain: 'traffic' as const, location: [108.2208, 16.0678] as const };
const telemetry = `city/48/traffic/${device.id}/telemetry`;
const LIMITS = { connectTimeoutMs: 500, drainTimeoutMs: 500, maxPacketBytes: 64 * 1024, loginSlowAfter: 3, loginRefuseAfter: 10, loginDelayMs: 10, loginMaxDelayMs: 50, shutdownSpreadMs: 0 };

// ── hand-made MQTT 3.1.1 packets ─────────────────────────────────────────────────────────────
const str = (s: string) => {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
};
function remainingLength(n: number): Buffer {
  const out = [];
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}
const packet = (first: number, body: Buffer) => Buffer.concat([Buffer.from([first]), remainingLength(body.length), body]);
function connectPacket(clientId: string, username?: string, password?: string, protocol = 'MQTT'): Buffer {
  const flags = 0x02 | (username !== undefined ? 0x80 : 0) | (password !== undefined ? 0x40 : 0);
  const body = [str(protocol), Buffer.from([4, flags, 0, 60]), str(clientId)];
  if (username !== undefined) body.push(str(username));
  if (password !== undefined) body.push(str(password));
  return packet(0x10, Buffer.concat(body));
}
const publishPacket = (topic: string, payload: Buffer) => packet(0x30, Buffer.concat([str(topic), payload]));

describe('hostile input', () => {
  let dir: string;
  let registry: DeviceRegistry;
  let secret: string;
  let ingestSecret: string;
  let toolsSecret: string;
  let broker: PlatformBroker;
  let server: Server;
  let port: number;
  let url: string;
  let steady: { device: MqttClient; reader: MqttClient; received: number; timer: NodeJS.Timeout };
  const sockets: Socket[] = [];
  const clients: MqttClient[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-hostile-'));
    registry = await DeviceRegistry.open(dir, { watch: true });
    [{ secret }] = (await registry.upsertDevices([device])) as [{ id: string; secret: string }];
    ingestSecret = await registry.upsertService('ingest', 'ingest');
    toolsSecret = await registry.upsertService('tools', 'tools');
  });
  afterAll(async () => {
    registry.close();
    await rm(dir, { recursive: true, force: true });
  });

  // A broker per case (a throttled address must not leak into the next), with a device publishing
  // to a reader at 50 messages/s all along.
  beforeEach(async () => {
    broker = await buildBroker({ registry, logger: pino({ level: 'silent' }), limits: LIMITS });
    server = await listenMqttTcp(broker, 0, '127.0.0.1');
    port = (server.address() as AddressInfo).port;
    url = `mqtt://127.0.0.1:${port}`;
    const reader = await connectClient({ clientId: 'ingest-steady', username: 'ingest', password: ingestSecret });
    await reader.subscribeAsync('city/+/+/+/telemetry', { qos: 1 });
    const dev = await connectClient({ clientId: device.id, username: device.id, password: secret });
    steady = { device: dev, reader, received: 0, timer: setInterval(() => dev.publish(telemetry, '{"seq":1}', { qos: 1 }), 100) };
    reader.on('message', (topic) => {
      if (topic === telemetry) steady.received++;
    });
    await until(() => steady.received > 0, 'the steady pair');
  });
  afterEach(async () => {
    clearInterval(steady.timer);
    for (const s of sockets.splice(0)) s.destroy();
    for (const c of clients.splice(0)) c.end(true);
    await broker.close();
    await new Promise((resolve) => server.close(resolve));
  });

  async function connectClient(options: mqtt.IClientOptions): Promise<MqttClient> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, ...options });
    clients.push(client);
    return client;
  }
  async function until(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }
  /** Opens a raw socket, writes `bytes`, and resolves with what came back once the broker closes it. */
  function raw(bytes: Buffer | readonly Buffer[] = []): { socket: Socket; closed: Promise<Buffer> } {
    const socket = tcpConnect(port, '127.0.0.1');
    sockets.push(socket);
    const chunks: Buffer[] = [];
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    const closed = new Promise<Buffer>((resolve) => socket.once('close', () => resolve(Buffer.concat(chunks))));
    socket.once('connect', () => {
      for (const b of Buffer.isBuffer(bytes) ? [bytes] : bytes) socket.write(b);
    });
    return { socket, closed };
  }
  /** The steady pair is still talking: more messages arrive after the attack. */
  async function stillFlowing(): Promise<void> {
    const before = steady.received;
    await until(() => steady.received >= before + 5, 'the steady pair to keep going');
    expect(steady.device.connected && steady.reader.connected).toBe(true);
    // And a new client still gets in.
    const probe = await connectClient({ clientId: `ingest-probe-${Date.now()}`, username: 'ingest', password: ingestSecret });
    expect(probe.connected).toBe(true);
  }
  const errors = (kinds: readonly (keyof PlatformBroker['counters']['clientErrors'])[]) => kinds.reduce((n, k) => n + broker.counters.clientErrors[k], 0);

  it('random bytes: every such connection is closed, the broker stays up', async () => {
    const runs = Array.from({ length: 30 }, () => raw(randomBytes(4096)));
    const answers = await Promise.all(runs.map((r) => r.closed));
    expect(answers).toHaveLength(30);
    expect(broker.aedes.connectedClients).toBe(2);
    // Garbage fails the parser at once, announces an oversized packet, or never completes a CONNECT.
    await until(() => errors(['protocol', 'too_large', 'connect_timeout']) >= 30, 'the errors to be counted');
    await stillFlowing();
  });

  it('truncated and malformed packets: each is closed with its own kind of error', async () => {
    const malformed = [
      connectPacket('x', 'ingest', ingestSecret, 'MQTX'), // unknown protocol name
      Buffer.concat([Buffer.from([0x10, 50]), Buffer.alloc(10)]), // CONNECT announcing 50 bytes, sending 10, then nothing
      Buffer.from([0x10, 0xff, 0xff, 0xff, 0xff, 0x7f]), // a remaining length of five bytes
      Buffer.from([0x82, 0x02, 0x00, 0x01]), // SUBSCRIBE before CONNECT
      Buffer.from([0x10, 0x00]), // CONNECT with no body
    ];
    await Promise.all(malformed.map((bytes) => raw(bytes).closed));
    // After a good CONNECT: a PUBLISH whose topic length runs past the packet, and a PUBLISH with a wildcard.
    const loggedIn = (i: number) => connectPacket(`ingest-bad-${i}`, 'tools', toolsSecret);
    await raw([loggedIn(1), Buffer.from([0x30, 0x04, 0x00, 0x20, 0x61, 0x62])]).closed;
    await raw([loggedIn(2), publishPacket('city/48/#', Buffer.from('{}'))]).closed;
    await until(() => errors(['protocol', 'connect_timeout', 'too_large']) >= 7, `the errors to be counted: ${JSON.stringify(broker.counters.clientErrors)}`);
    expect(broker.counters.clientErrors.connect_timeout).toBeGreaterThanOrEqual(1);
    expect(broker.counters.clientErrors.protocol).toBeGreaterThanOrEqual(4);
    await stillFlowing();
  });

  it('an oversized packet is refused at its header, before its body is read', async () => {
    const header = Buffer.concat([Buffer.from([0x30]), remainingLength(10 * 1024 * 1024)]);
    const { socket, closed } = raw([connectPacket('tools-big', 'tools', toolsSecret), header, Buffer.alloc(1024)]);
    await closed;
    expect(socket.bytesWritten).toBeLessThan(4096); // closed long before 10 MB could have been sent
    expect(broker.counters.clientErrors.too_large).toBe(1);
    await stillFlowing();
  });

  it('a flood of connects: refused or served, none of them stops the others', async () => {
    // 300 connects at once: a third unknown ids (refused; the address is throttled after 10),
    // the rest a service account with distinct client ids.
    // Counted from here: the steady pair's connections are in connectionsTotal already.
    const answeredBefore = broker.counters.connectionsTotal + broker.counters.authFailures;
    const failuresBefore = broker.counters.authFailures;
    const runs = Array.from({ length: 300 }, (_, i) =>
      i % 3 === 0 ? raw(connectPacket(`ghost-${i}`, `ghost-${i}`, 'nope')) : raw(connectPacket(`ingest-flood-${i}`, 'ingest', ingestSecret)),
    );
    await until(() => broker.counters.connectionsTotal + broker.counters.authFailures >= answeredBefore + 300, 'every connect to be answered', 20_000);
    // Every unknown id fails; a valid login that arrives once the address is throttled is refused too.
    expect(broker.counters.authFailures - failuresBefore).toBeGreaterThanOrEqual(100);
    for (const r of runs) r.socket.destroy();
    await Promise.all(runs.map((r) => r.closed));
    await until(() => broker.aedes.connectedClients === 2, 'the flood to leave');
    // The flood came from this test's address: it is throttled now, so the probe uses the steady pair only.
    const before = steady.received;
    await until(() => steady.received >= before + 5, 'the steady pair to keep going');
  });

  it('clients that never finish their CONNECT are closed after the connect timeout', async () => {
    const runs = Array.from({ length: 50 }, () => raw(Buffer.from([0x10, 0x20, 0x00])));
    await Promise.all(runs.map((r) => r.closed));
    expect(broker.counters.clientErrors.connect_timeout).toBe(50);
    await stillFlowing();
  });

  it('a subscriber that stops reading is disconnected after the drain timeout; the others keep their flow', async () => {
    const { socket } = raw([connectPacket('ingest-stalled', 'ingest', ingestSecret), packet(0x82, Buffer.concat([Buffer.from([0, 1]), str('city/+/+/+/telemetry'), Buffer.from([0])]))]);
    await until(() => broker.aedes.connectedClients === 3, 'the stalled subscriber to connect');
    socket.pause(); // never reads again: the broker's writes fill the socket buffers
    const tools = await connectClient({ clientId: 'tools-big-publisher', username: 'tools', password: toolsSecret });
    const big = Buffer.alloc(60 * 1024, 0x20);
    const pump = setInterval(() => {
      for (let i = 0; i < 20; i++) tools.publish('city/48/traffic/replayed-01/telemetry', big, { qos: 0 });
    }, 20);
    const stalledGone = () => !(broker.aedes as unknown as { clients: Record<string, unknown> }).clients['ingest-stalled'];
    try {
      // A paused socket does not see the broker's FIN, so watch from the broker's side.
      await until(stalledGone, 'the stalled subscriber to be cut off');
    } finally {
      clearInterval(pump);
    }
    expect(broker.counters.clientErrors.drain_timeout).toBe(1);
    await stillFlowing();
  });

  it('a subscriber that reads, only slower than it is written to, and keeps talking is not cut off while its buffer never empties (patched Aedes)', async () => {
    const before = broker.counters.clientErrors.drain_timeout;
    const { socket } = raw([connectPacket('ingest-slow', 'ingest', ingestSecret), packet(0x82, Buffer.concat([Buffer.from([0, 1]), str('city/+/+/+/telemetry'), Buffer.from([0])]))]);
    await until(() => (broker.aedes as unknown as { clients: Record<string, unknown> }).clients['ingest-slow'] !== undefined, 'the slow subscriber to connect');
    socket.pause();
    // 64 KiB every 50 ms (~1.3 MB/s) against ~15 MB/s written: the broker's buffer for it only
    // grows, so 'drain' never comes, for four drain timeouts. It keeps talking to the broker, as
    // ingest does with its PUBACKs (here PINGREQs).
    const reader = setInterval(() => {
      if (socket.read(64 * 1024) === null) socket.read();
      socket.write(Buffer.from([0xc0, 0x00]));
    }, 50);
    const tools = await connectClient({ clientId: 'tools-steady-publisher', username: 'tools', password: toolsSecret });
    const big = Buffer.alloc(60 * 1024, 0x20);
    const pump = setInterval(() => {
      for (let i = 0; i < 5; i++) tools.publish('city/48/traffic/replayed-01/telemetry', big, { qos: 0 });
    }, 20);
    try {
      await new Promise((resolve) => setTimeout(resolve, 4 * LIMITS.drainTimeoutMs));
      expect((broker.aedes as unknown as { clients: Record<string, unknown> }).clients['ingest-slow']).toBeDefined();
      expect(broker.counters.clientErrors.drain_timeout).toBe(before);
    } finally {
      clearInterval(pump);
      clearInterval(reader);
      socket.destroy();
      tools.end(true);
    }
    await stillFlowing();
  });

  it('wrong credentials in a loop: counted, slowed, then refused without checking the secret', async () => {
    for (let i = 0; i < 25; i++) {
      const answer = await raw(connectPacket(device.id, device.id, `guess-${i}`)).closed;
      // CONNACK with return code 4 (bad credentials) or, once throttled, 5 (not authorized).
      expect([...answer.subarray(0, 4)]).toEqual([0x20, 0x02, 0x00, i < 10 ? 4 : 5]);
    }
    expect(broker.counters.authFailures).toBe(25);
    expect(broker.counters.refused.bad_credentials).toBe(10);
    expect(broker.counters.refused.throttled).toBe(15);
    expect(await broker.metrics()).toMatch(/^citypulse_broker_login_throttled_addresses 1$/m);
    const before = steady.received;
    await until(() => steady.received >= before + 5, 'the steady pair to keep going');
  });
});
