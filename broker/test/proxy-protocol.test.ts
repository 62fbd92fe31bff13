import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { connect as netConnect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import mqtt, { MqttClient, type IClientOptions } from 'mqtt';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { startTcpFront, type TcpFront } from '@citypulse/infra';
import { buildBroker, DeviceRegistry, listenMqttTcp, listenMqttTls, listenMqttWebSocket, type BrokerLimits, type ListenOptions, type TlsFiles } from '../src/index.js';

/**
 * The broker behind a TCP load balancer that sends the PROXY protocol (BROKER_PROXY_PROTOCOL):
 * a real broker, infra's TCP front, real sockets from two client addresses (127.0.0.1 and
 * 127.0.0.2: Linux routes all of 127/8 on loopback). The login throttle counts per device
 * address, not per balancer; a connection without the header is closed with E_PROXY_HEADER; with
 * the setting off nothing changes.
 */
const device = { id: 'dn-air-07', province: '48', domain: 'environment' as const, location: [108.2, 16.05] as const };
const telemetry = `city/48/environment/${device.id}/telemetry`;
/** Three failures from one address and it is refused; no delays before that. */
const THROTTLE: Partial<BrokerLimits> = { loginSlowAfter: 3, loginRefuseAfter: 3, loginDelayMs: 0, shutdownSpreadMs: 0 };
/** An MQTT 3.1.1 CONNECT of client "d", no username: answered with CONNACK 5. */
const ANONYMOUS_CONNECT = Buffer.from([0x10, 0x0d, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, 0x64]);
const LOCAL_HEADER = Buffer.concat([Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1'), Buffer.from([0x20, 0x00, 0x00, 0x00])]);

interface LogLine {
  level: number;
  msg: string;
  code?: string;
  address?: string;
  reason?: string;
}

let dir: string;
let registry: DeviceRegistry;
let secret: string;
const cleanup: (() => Promise<unknown> | void)[] = [];

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'citypulse-proxy-'));
  registry = await DeviceRegistry.open(dir);
  [{ secret }] = (await registry.upsertDevices([device])) as [{ id: string; secret: string }];
});
afterEach(async () => {
  for (const close of cleanup.splice(0).reverse()) await close();
});
afterAll(async () => {
  registry.close();
  await rm(dir, { recursive: true, force: true });
});

/** A broker whose log lines are kept, listening on loopback (with or without the PROXY protocol). */
async function startBroker(options: ListenOptions, tls?: TlsFiles, transport: 'mqtt' | 'ws' = 'mqtt') {
  const logs: LogLine[] = [];
  const broker = await buildBroker({ registry, logger: pino({ level: 'debug' }, { write: (line: string) => logs.push(JSON.parse(line) as LogLine) }), limits: THROTTLE });
  const server =
    transport === 'ws' ? await listenMqttWebSocket(broker, 0, '127.0.0.1', tls, options) : tls ? await listenMqttTls(broker, 0, '127.0.0.1', tls, options) : await listenMqttTcp(broker, 0, '127.0.0.1', options);
  cleanup.push(() => broker.close(), () => new Promise((resolve) => server.close(resolve)));
  return { broker, port: (server.address() as AddressInfo).port, logs, warnings: (code: string) => logs.filter((l) => l.code === code) };
}

async function front(backendPort: number, proxyProtocol?: 'v2'): Promise<TcpFront> {
  const started = await startTcpFront({ backends: [{ host: '127.0.0.1', port: backendPort }], ...(proxyProtocol ? { proxyProtocol } : {}) });
  cleanup.push(() => started.close());
  return started;
}

/** An MQTT client from `localAddress` (MQTT.js's own TCP and TLS builders cannot bind one). */
function mqttFrom(localAddress: string, port: number, options: IClientOptions & { tls?: TlsFiles } = {}): Promise<MqttClient> {
  const { tls, ...mqttOptions } = options;
  const tcp = () => netConnect({ host: '127.0.0.1', port, localAddress });
  // `host` names the server for the certificate check; the TCP socket is already given.
  const open = () => (tls ? tlsConnect({ socket: tcp(), host: '127.0.0.1', ca: tls.cert }) : tcp());
  const client = new MqttClient(open, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, clientId: device.id, username: device.id, ...mqttOptions });
  cleanup.push(() => void client.end(true));
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', reject);
    client.once('close', () => reject(new Error('connection closed before CONNACK')));
  });
}

/** An MQTT over WebSocket (or secure WebSocket) client from `localAddress`. */
function mqttOverWsFrom(localAddress: string, port: number, options: IClientOptions & { tls?: TlsFiles } = {}): Promise<MqttClient> {
  const { tls, ...mqttOptions } = options;
  const client = mqtt.connect(`${tls ? 'wss' : 'ws'}://127.0.0.1:${port}`, {
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: 5_000,
    clientId: device.id,
    username: device.id,
    wsOptions: { localAddress, ...(tls ? { ca: tls.cert } : {}) },
    ...mqttOptions,
  });
  cleanup.push(() => void client.end(true));
  return new Promise((resolve, reject) => {
    client.once('connect', () => resolve(client));
    client.once('error', reject);
    client.once('close', () => reject(new Error('connection closed before CONNACK')));
  });
}

/** A raw socket from `localAddress` that sends `bytes` (then hangs up with `end`); resolves with what it got back once closed (or after `untilMs`). */
async function raw(port: number, bytes: Buffer, options: { localAddress?: string; end?: boolean; untilMs?: number } = {}): Promise<{ received: Buffer; closed: boolean }> {
  const { localAddress = '127.0.0.1', end = false, untilMs = 5_000 } = options;
  const socket: Socket = netConnect({ host: '127.0.0.1', port, localAddress });
  cleanup.push(() => void socket.destroy());
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  if (end) socket.end(bytes);
  else socket.write(bytes);
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  const closed = await Promise.race([once(socket, 'close').then(() => true), new Promise<false>((resolve) => setTimeout(() => resolve(false), untilMs))]);
  return { received: Buffer.concat(chunks), closed };
}

/** Logs in from `localAddress` with a wrong secret `times` times: each refused as bad credentials. */
async function failLogins(port: number, localAddress: string, times: number, tls?: TlsFiles) {
  for (let i = 0; i < times; i++) await expect(mqttFrom(localAddress, port, { password: 'guess', ...(tls ? { tls } : {}) })).rejects.toThrow(/Bad username or password/);
}

describe('BROKER_PROXY_PROTOCOL on, behind the TCP front sending PROXY v2', () => {
  it('throttles failed logins per device address: 127.0.0.2 is refused while 127.0.0.1 still logs in and publishes', async () => {
    const { broker, port, warnings } = await startBroker({ proxyProtocol: true });
    const { port: frontPort } = await front(port, 'v2');
    await failLogins(frontPort, '127.0.0.2', 3);
    // Refused without checking the secret: the address is throttled.
    await expect(mqttFrom('127.0.0.2', frontPort, { password: secret })).rejects.toThrow(/Not authorized/);

    const dev = await mqttFrom('127.0.0.1', frontPort, { password: secret });
    await dev.publishAsync(telemetry, JSON.stringify({ ts: Date.now(), seq: 1, pm25: 12 }), { qos: 1 });
    expect(broker.counters.refused).toMatchObject({ bad_credentials: 3, throttled: 1 });
    expect(await broker.metrics()).toContain('citypulse_broker_login_throttled_addresses 1');
    const refusals = warnings('E_AUTH');
    expect(refusals.map((l) => l.address)).toEqual(['127.0.0.2', '127.0.0.2', '127.0.0.2', '127.0.0.2']);
    expect(refusals.at(-1)?.msg).toMatch(/too many failed logins from 127\.0\.0\.2; retry in \d+ s/);
  });

  it('refuses a connection that does not start with the header, once, saying what to fix; a bare TCP check is not logged as one', async () => {
    const { broker, port, logs, warnings } = await startBroker({ proxyProtocol: true });
    const direct = await raw(port, ANONYMOUS_CONNECT, { localAddress: '127.0.0.2' });
    expect(direct).toEqual({ received: Buffer.alloc(0), closed: true }); // no CONNACK: MQTT never saw it
    const [warning, ...more] = warnings('E_PROXY_HEADER');
    expect(more).toEqual([]);
    expect(warning).toMatchObject({ level: 40, address: '127.0.0.2', reason: 'the connection did not start with a PROXY protocol header' });
    expect(warning?.msg).toMatch(/^connection closed: the connection did not start with a PROXY protocol header\. BROKER_PROXY_PROTOCOL is on: .*send-proxy-v2.*turn BROKER_PROXY_PROTOCOL off/);
    expect(await broker.metrics()).toContain('citypulse_broker_client_errors_total{kind="proxy_header"} 1');

    // Connect and hang up without a byte, as a TCP health check does: closed quietly.
    expect(await raw(port, Buffer.alloc(0), { end: true })).toEqual({ received: Buffer.alloc(0), closed: true });
    expect(warnings('E_PROXY_HEADER')).toHaveLength(1);
    expect(logs.at(-1)).toMatchObject({ level: 20, msg: 'connection closed before a PROXY header (a TCP health check?)' });
  });

  it('takes a LOCAL header (the balancer\'s own connection) as the socket\'s own address, and MQTT behind it in the same segment', async () => {
    const { port, warnings } = await startBroker({ proxyProtocol: true });
    const { received } = await raw(port, Buffer.concat([LOCAL_HEADER, ANONYMOUS_CONNECT]), { localAddress: '127.0.0.2' });
    expect([...received]).toEqual([0x20, 0x02, 0x00, 0x05]); // CONNACK 5: anonymous is not allowed
    expect(warnings('E_AUTH')).toMatchObject([{ address: '127.0.0.2', reason: 'anonymous' }]);
  });

  it('does the same over TLS: the balancer passes TLS through behind the header', async () => {
    const tls = await selfSignedCertificate();
    const { port, warnings } = await startBroker({ proxyProtocol: true }, tls);
    const { port: frontPort } = await front(port, 'v2');
    await failLogins(frontPort, '127.0.0.2', 3, tls);
    await expect(mqttFrom('127.0.0.2', frontPort, { password: secret, tls })).rejects.toThrow(/Not authorized/);
    const dev = await mqttFrom('127.0.0.1', frontPort, { password: secret, tls });
    await dev.publishAsync(telemetry, JSON.stringify({ ts: Date.now(), seq: 2, pm25: 13 }), { qos: 1 });
    expect(warnings('E_AUTH').map((l) => l.address)).toEqual(['127.0.0.2', '127.0.0.2', '127.0.0.2', '127.0.0.2']);
  });
});

describe('BROKER_WS_PROXY_PROTOCOL on: MQTT over WebSocket behind the TCP front sending PROXY v2', () => {
  for (const secure of [false, true]) {
    it(`throttles failed logins per device address over ${secure ? 'secure ' : ''}WebSocket, and closes a connection without the header`, async () => {
      const tls = secure ? await selfSignedCertificate() : undefined;
      const { port, warnings } = await startBroker({ proxyProtocol: true }, tls, 'ws');
      const { port: frontPort } = await front(port, 'v2');
      const login = (from: string, password: string) => mqttOverWsFrom(from, frontPort, { password, ...(tls ? { tls } : {}) });
      // Refused (over secure WebSocket MQTT.js may see the close before the CONNACK: the broker's log says why).
      for (let i = 0; i < 3; i++) await expect(login('127.0.0.2', 'guess')).rejects.toThrow();
      await expect(login('127.0.0.2', secret)).rejects.toThrow();
      const dev = await login('127.0.0.1', secret);
      await dev.publishAsync(telemetry, JSON.stringify({ ts: Date.now(), seq: 3, pm25: 14 }), { qos: 1 });
      expect(warnings('E_AUTH').map((l) => [l.address, l.reason])).toEqual([...Array.from({ length: 3 }, () => ['127.0.0.2', 'bad_credentials']), ['127.0.0.2', 'throttled']]);
      // Straight to the broker, past the front: no header, closed before the HTTP upgrade.
      await expect(mqttOverWsFrom('127.0.0.2', port, { password: secret, ...(tls ? { tls } : {}) })).rejects.toThrow();
      expect(warnings('E_PROXY_HEADER')).toMatchObject([{ address: '127.0.0.2', reason: 'the connection did not start with a PROXY protocol header' }]);
    });
  }
});

describe('BROKER_PROXY_PROTOCOL off (the default): unchanged', () => {
  it('takes plain MQTT with the socket\'s own address, and reads a PROXY header as the bad MQTT it is', async () => {
    const { broker, port, warnings } = await startBroker({});
    await failLogins(port, '127.0.0.2', 1);
    const dev = await mqttFrom('127.0.0.1', port, { password: secret });
    expect(dev.connected).toBe(true);
    expect(warnings('E_AUTH').map((l) => l.address)).toEqual(['127.0.0.2']);

    const { received, closed } = await raw(port, Buffer.concat([LOCAL_HEADER, ANONYMOUS_CONNECT]));
    expect({ received: received.length, closed }).toEqual({ received: 0, closed: true });
    expect(broker.counters.clientErrors).toMatchObject({ protocol: 1, proxy_header: 0 });
  });

  it('behind a front that sends no header, every device looks like the front: one throttled address shuts out all (what the setting fixes)', async () => {
    const { port, warnings } = await startBroker({});
    const { port: frontPort } = await front(port);
    await failLogins(frontPort, '127.0.0.2', 3);
    await expect(mqttFrom('127.0.0.1', frontPort, { password: secret })).rejects.toThrow(/Not authorized/);
    expect(new Set(warnings('E_AUTH').map((l) => l.address))).toEqual(new Set(['127.0.0.1']));
  });
});

/** A certificate for 127.0.0.1, made with openssl, its files removed after the test. */
async function selfSignedCertificate(): Promise<TlsFiles> {
  const certDir = await mkdtemp(join(tmpdir(), 'citypulse-proxy-tls-'));
  try {
    const [cert, key] = [join(certDir, 'cert.pem'), join(certDir, 'key.pem')];
    await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1']);
    return { cert: await readFile(cert), key: await readFile(key) };
  } finally {
    await rm(certDir, { recursive: true, force: true });
  }
}
