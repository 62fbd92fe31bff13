import { execFile, spawn } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort, listenOps } from '@citypulse/infra';
import { buildBroker, DeviceRegistry, listenMqttTcp, listenMqttTls, listenMqttWebSocket, type BrokerLimits, type PlatformBroker } from '../src/index.js';

/**
 * The broker's limits and operations over real sockets: metrics and health on HTTP, the per-device
 * rate limit, failed-login throttling, the connection cap, oversized packets, TLS and secure
 * WebSocket, authentication switched off, and the server process as `npm start` runs it.
 */
const device = { id: 'hcm-grid-01', province: '79', domain: 'energy' as const, location: [106.70, 10.78] as const };
const telemetry = `city/79/energy/${device.id}/telemetry`;
const status = `city/79/energy/${device.id}/status`;

describe('broker operations', () => {
  let dir: string;
  let registry: DeviceRegistry;
  let secret: string;
  let ingestSecret: string;
  const clients: MqttClient[] = [];
  const running: { broker: PlatformBroker; servers: Server[] }[] = [];

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-ops-'));
    registry = await DeviceRegistry.open(dir, { watch: true });
    [{ secret }] = (await registry.upsertDevices([device])) as [{ id: string; secret: string }];
    ingestSecret = await registry.upsertService('ingest', 'ingest');
  });

  afterAll(async () => {
    for (const c of clients) c.end(true);
    for (const { broker, servers } of running) {
      await broker.close();
      for (const s of servers) await new Promise((resolve) => s.close(resolve));
    }
    registry.close();
    await rm(dir, { recursive: true, force: true });
  });

  /** A broker of its own (limits differ per test; a throttled address must not leak into the next test). */
  async function start(limits: Partial<BrokerLimits> = {}, authentication = true) {
    const broker = await buildBroker({ registry, logger: pino({ level: 'silent' }), limits: { shutdownSpreadMs: 0, ...limits }, authentication });
    const server = await listenMqttTcp(broker, 0, '127.0.0.1');
    running.push({ broker, servers: [server] });
    return { broker, url: `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`, servers: running.at(-1)?.servers as Server[] };
  }
  async function connect(url: string, options: IClientOptions) {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5_000, ...options });
    clients.push(client);
    return client;
  }
  const asDevice = { clientId: device.id, username: device.id, password: '' };
  const until = async (condition: () => boolean, what: string, timeoutMs = 10_000) => {
    const deadline = Date.now() + timeoutMs;
    while (!condition()) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  };

  it('serves Prometheus metrics and health on its HTTP port, and nothing else', async () => {
    const { broker, url } = await start();
    const ops = await listenOps({ metrics: () => broker.metrics(), health: () => ({ status: 'ok', connections: broker.aedes.connectedClients }) }, 0, '127.0.0.1');
    running.at(-1)?.servers.push(ops);
    const base = `http://127.0.0.1:${(ops.address() as AddressInfo).port}`;
    const ingest = await connect(url, { clientId: 'ingest-ops', username: 'ingest', password: ingestSecret });
    await ingest.subscribeAsync('city/+/+/+/telemetry', { qos: 1 });
    const got = new Promise((resolve) => ingest.once('message', resolve));
    const dev = await connect(url, { ...asDevice, password: secret });
    await dev.publishAsync(telemetry, '{"ts":1,"seq":1}', { qos: 1 });
    await got;
    await expect(connect(url, { clientId: 'x', username: 'ingest', password: 'wrong' })).rejects.toThrow();
    const refused = new Promise<void>((resolve) => dev.once('close', () => resolve()));
    dev.publish('city/79/energy/someone-else/telemetry', '{}', { qos: 0 });
    await refused;

    const metrics = await (await fetch(`${base}/metrics`)).text();
    const value = (line: string) => Number(metrics.split('\n').find((l) => l.startsWith(`${line} `))?.split(' ')[1]);
    expect(value('citypulse_broker_messages_in_total{domain="energy"}')).toBe(1);
    expect(value('citypulse_broker_messages_out_total{domain="energy"}')).toBe(1);
    expect(value('citypulse_broker_payload_bytes_in_total{domain="energy"}')).toBe(16);
    expect(value('citypulse_broker_auth_failures_total')).toBe(1);
    expect(value('citypulse_broker_connections_refused_total{reason="bad_credentials"}')).toBe(1);
    expect(value('citypulse_broker_acl_denied_total{action="publish"}')).toBe(1);
    expect(value('citypulse_broker_connections')).toBe(1); // the device was closed by the refused publish
    expect(metrics).toContain('# TYPE citypulse_broker_rate_limited_total counter');
    expect(metrics).toContain('citypulse_broker_client_errors_total{kind="protocol"}');
    expect(metrics).toMatch(/^process_resident_memory_bytes \d+$/m);

    const health = await fetch(`${base}/healthz`);
    expect(health.status).toBe(200);
    expect(await health.json()).toEqual({ status: 'ok', connections: 1 });
    expect((await fetch(`${base}/`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: 'POST' })).status).toBe(405);
  });

  it('drops what a device publishes over its rate, tells it in its status, and disconnects it when it keeps on', async () => {
    const { broker, url } = await start({ ratePerS: 5, rateBurst: 5, rateWindowMs: 1_000, rateAbuseWindows: 3 });
    const ingest = await connect(url, { clientId: 'ingest-rate', username: 'ingest', password: ingestSecret });
    await ingest.subscribeAsync([`city/+/+/+/telemetry`, 'city/+/+/+/status'], { qos: 1 });
    const readings: string[] = [];
    const statuses: { payload: Record<string, unknown>; retain: boolean }[] = [];
    ingest.on('message', (topic, payload, packet) => {
      if (topic === telemetry) readings.push(payload.toString());
      if (topic === status) statuses.push({ payload: JSON.parse(payload.toString()) as Record<string, unknown>, retain: packet.retain });
    });
    const dev = await connect(url, { ...asDevice, password: secret });
    // 40 at once: every one is acknowledged (QoS 1), 5 are delivered.
    await Promise.all(Array.from({ length: 40 }, (_, i) => dev.publishAsync(telemetry, `{"seq":${i}}`, { qos: 1 })));
    await until(() => readings.length >= 5, 'the burst');
    expect(broker.counters.rateLimited.energy).toBe(35);
    // The next publish after the window reports it in the device's status (not retained: it passes).
    await new Promise((resolve) => setTimeout(resolve, 1_100));
    await dev.publishAsync(telemetry, '{"seq":100}', { qos: 1 });
    await until(() => statuses.length > 0, 'the rate-limit status');
    expect(statuses[0]).toMatchObject({ retain: false, payload: { state: 'online', reason: expect.stringMatching(/^rate limited: 35 messages dropped in 1 s \(limit 5\/s, burst 5\)$/) as unknown } });
    expect(readings).toHaveLength(6);
    // Over the limit three windows in a row: disconnected, with a retained offline status saying why.
    const closed = new Promise<void>((resolve) => dev.once('close', () => resolve()));
    const flood = setInterval(() => {
      if (dev.connected) for (let i = 0; i < 20; i++) dev.publish(telemetry, '{"seq":0}', { qos: 0 });
    }, 50);
    try {
      await closed;
    } finally {
      clearInterval(flood);
    }
    await until(() => statuses.some((s) => s.payload.state === 'offline'), 'the offline status');
    // Retained: whoever subscribes later (the api after a restart) learns why the device is gone.
    const later = await connect(url, { clientId: 'ingest-rate-later', username: 'ingest', password: ingestSecret });
    const retained = new Promise<{ payload: string; retain: boolean }>((resolve) => later.once('message', (_t, payload, packet) => resolve({ payload: payload.toString(), retain: packet.retain })));
    await later.subscribeAsync(status, { qos: 1 });
    const { payload, retain } = await retained;
    expect(retain).toBe(true);
    expect(JSON.parse(payload)).toMatchObject({ state: 'offline', reason: expect.stringMatching(/over its publish rate limit \(5\/s\) for 3 s/) as unknown });
    expect(broker.counters.rateLimitDisconnects).toBe(1);
    expect(broker.counters.refused.rate_abuse).toBe(1);
  });

  it('slows down and then refuses an address that keeps failing to log in, and lets it back after the window', async () => {
    const { broker, url } = await start({ loginSlowAfter: 2, loginRefuseAfter: 4, loginWindowMs: 1_500, loginDelayMs: 100, loginMaxDelayMs: 200 });
    const timings: number[] = [];
    for (let i = 0; i < 4; i++) {
      const t0 = performance.now();
      await expect(connect(url, { ...asDevice, password: 'guess' })).rejects.toThrow(/Bad username or password/);
      timings.push(performance.now() - t0);
    }
    // Refused without checking, even with the right secret, until the window ends.
    await expect(connect(url, { ...asDevice, password: secret })).rejects.toThrow(/Not authorized/);
    expect(broker.counters.refused.throttled).toBe(1);
    expect(broker.counters.refused.bad_credentials).toBe(4);
    expect(await broker.metrics()).toContain('citypulse_broker_login_throttled_addresses 1');
    // The 3rd and 4th answers were held back (100 and 200 ms), not the first two.
    expect(Math.min(timings[2] ?? 0, timings[3] ?? 0)).toBeGreaterThanOrEqual(90);
    await new Promise((resolve) => setTimeout(resolve, 1_600));
    const dev = await connect(url, { ...asDevice, password: secret });
    expect(dev.connected).toBe(true);
  });

  it('refuses logins past the connection cap with CONNACK 3, and takes them again when there is room', async () => {
    const { broker, url } = await start({ maxConnections: 2 });
    const a = await connect(url, { clientId: 'ingest-cap-1', username: 'ingest', password: ingestSecret });
    await connect(url, { clientId: 'ingest-cap-2', username: 'ingest', password: ingestSecret });
    await expect(connect(url, { clientId: 'ingest-cap-3', username: 'ingest', password: ingestSecret })).rejects.toThrow(/Server unavailable/);
    expect(broker.counters.refused.max_connections).toBe(1);
    await a.endAsync();
    await until(() => broker.aedes.connectedClients === 1, 'the disconnect');
    await connect(url, { clientId: 'ingest-cap-3', username: 'ingest', password: ingestSecret });
  });

  it('takes a keep-alive of 0 (TCP keep-alive finds dead peers) and refuses one above the limit with a standard code', async () => {
    const { broker, url } = await start({ keepaliveMaxS: 60 });
    const none = await connect(url, { clientId: 'ingest-ka-0', username: 'ingest', password: ingestSecret, keepalive: 0 });
    expect(none.connected).toBe(true);
    await expect(connect(url, { clientId: 'ingest-ka-big', username: 'ingest', password: ingestSecret, keepalive: 120 })).rejects.toThrow(/Not authorized/);
    expect(broker.counters.refused.keepalive).toBe(1);
    expect(broker.counters.authFailures).toBe(0); // not a failed login: the address is not throttled for it
  });

  it('disconnects a client that announces a packet over the limit, and nobody else', async () => {
    const { broker, url } = await start({ maxPacketBytes: 4_096 });
    const ingest = await connect(url, { clientId: 'ingest-size', username: 'ingest', password: ingestSecret });
    await ingest.subscribeAsync('city/+/+/+/telemetry', { qos: 1 });
    const dev = await connect(url, { ...asDevice, password: secret });
    const closed = new Promise<void>((resolve) => dev.once('close', () => resolve()));
    dev.publish(telemetry, Buffer.alloc(100_000, 0x20), { qos: 1 });
    await closed;
    expect(broker.counters.clientErrors.too_large).toBe(1);
    expect(ingest.connected).toBe(true);
    const again = await connect(url, { ...asDevice, password: secret });
    const got = new Promise<string>((resolve) => ingest.once('message', (_t, p) => resolve(p.toString())));
    await again.publishAsync(telemetry, '{"seq":2}', { qos: 1 });
    expect(await got).toBe('{"seq":2}');
  });

  it('speaks MQTT over TLS and secure WebSocket with the same logins', async () => {
    const certDir = await mkdtemp(join(tmpdir(), 'citypulse-tls-'));
    try {
      const cert = join(certDir, 'cert.pem');
      const key = join(certDir, 'key.pem');
      await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1']);
      const files = { cert: await readFile(cert), key: await readFile(key) };
      const { broker, servers } = await start();
      const tls = await listenMqttTls(broker, 0, '127.0.0.1', files);
      const wss = await listenMqttWebSocket(broker, 0, '127.0.0.1', files);
      servers.push(tls, wss);
      const ca = files.cert;
      const ingest = await connect(`mqtts://127.0.0.1:${(tls.address() as AddressInfo).port}`, { clientId: 'ingest-tls', username: 'ingest', password: ingestSecret, ca });
      await ingest.subscribeAsync('city/+/+/+/telemetry', { qos: 1 });
      const got = new Promise<string>((resolve) => ingest.once('message', (_t, p) => resolve(p.toString())));
      const dev = await connect(`wss://127.0.0.1:${(wss.address() as AddressInfo).port}`, { ...asDevice, password: secret, ca });
      await dev.publishAsync(telemetry, '{"seq":7}', { qos: 1 });
      expect(await got).toBe('{"seq":7}');
      // A client that does not trust the certificate does not get in.
      await expect(connect(`mqtts://127.0.0.1:${(tls.address() as AddressInfo).port}`, { clientId: 'ingest-x', username: 'ingest', password: ingestSecret })).rejects.toThrow(/self[- ]signed|certificate/i);
    } finally {
      await rm(certDir, { recursive: true, force: true });
    }
  });

  it('with authentication switched off (conformance tools only), anyone may publish and subscribe anywhere', async () => {
    const { url } = await start({}, false);
    const anon = await connect(url, { clientId: 'conformance-1' });
    await anon.subscribeAsync('#', { qos: 2 });
    const got = new Promise<string>((resolve) => anon.once('message', (topic) => resolve(topic)));
    const other = await connect(url, { clientId: 'conformance-2' });
    await other.publishAsync('test/topic/a', 'x', { qos: 2 });
    expect(await got).toBe('test/topic/a');
  });

  it('runs as a service: configuration from the environment, /healthz, TLS when configured, clean exit on SIGTERM', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-broker-proc-'));
    const certDir = await mkdtemp(join(tmpdir(), 'citypulse-tls-'));
    try {
      const cert = join(certDir, 'cert.pem');
      const key = join(certDir, 'key.pem');
      await promisify(execFile)('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost']);
      const [mqttPort, tlsPort, httpPort] = [await freePort(), await freePort(), await freePort()];
      const env = { ...process.env, DATA_DIR: dataDir, MQTT_HOST: '127.0.0.1', MQTT_PORT: String(mqttPort), MQTT_WS_PORT: '0', MQTT_TLS_PORT: String(tlsPort), MQTT_WSS_PORT: '0', TLS_CERT_FILE: cert, TLS_KEY_FILE: key, BROKER_HTTP_PORT: String(httpPort), BROKER_STORE: 'disk', LOG_LEVEL: 'info' };
      // A bad value stops it with a message naming the variable.
      const bad = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: join(import.meta.dirname, '..'), env: { ...env, BROKER_RATE_PER_S: 'fast' }, stdio: ['ignore', 'pipe', 'pipe'] });
      let badOut = '';
      bad.stdout.on('data', (c: Buffer) => (badOut += c.toString()));
      const badCode = await new Promise((resolve) => bad.once('exit', resolve));
      expect(badCode).toBe(1);
      expect(badOut).toMatch(/BROKER_RATE_PER_S=.{1,2}fast.{1,2} must be a whole number/);

      const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], { cwd: join(import.meta.dirname, '..'), env, stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      child.stdout.on('data', (c: Buffer) => (out += c.toString()));
      child.stderr.on('data', (c: Buffer) => (out += c.toString()));
      const exited = new Promise<number | null>((resolve) => child.once('exit', resolve));
      try {
        await until(() => out.includes('broker listening'), 'the broker to start', 30_000);
        const health = await fetch(`http://127.0.0.1:${httpPort}/healthz`);
        expect(await health.json()).toMatchObject({ status: 'ok', connections: 0, store: 'disk' });
        expect(out).toContain('"tls":"on"');
        const anon = mqtt.connectAsync(`mqtts://127.0.0.1:${tlsPort}`, { protocolVersion: 4, reconnectPeriod: 0, rejectUnauthorized: false });
        await expect(anon).rejects.toThrow(/Not authorized/);
      } finally {
        child.kill('SIGTERM');
      }
      expect(await exited).toBe(0);
      expect(out).toContain('shutting down');
    } finally {
      await rm(dataDir, { recursive: true, force: true });
      await rm(certDir, { recursive: true, force: true });
    }
  }, 60_000);
});
