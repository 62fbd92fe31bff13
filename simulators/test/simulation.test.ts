import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DeviceRegistry } from '@citypulse/broker/registry';
import { decodeStatus, decodeTelemetry, parseDeviceTopic, TOPIC_FILTERS, topicMatchesFilter, type DeviceStatusPayload } from '@citypulse/contracts';
import { Aedes, type AuthenticateError } from 'aedes';
import { connectAsync, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SECRETS_FILE_NAME, startSimulation, type Simulation } from '../src/index.js';

/**
 * The simulator against a real in-process Aedes broker on a real TCP socket, logging in against
 * the real device registry (the broker package's own server is not built yet: its authenticate
 * hook is reproduced here in three lines).
 */
describe('startSimulation against an in-process Aedes broker', () => {
  let dataDir: string;
  let registry: DeviceRegistry;
  let broker: Aedes;
  let server: Server;
  let mqttUrl: string;
  const telemetry: { topic: string; payload: string }[] = [];
  const telemetryWaiters: (() => void)[] = [];

  beforeAll(async () => {
    dataDir = await mkdtemp(join(tmpdir(), 'citypulse-sim-'));
    registry = await DeviceRegistry.open(dataDir);
    broker = await Aedes.createBroker({
      authenticate: (_client, username, password, done) => {
        void (async () => {
          const id = username ?? '';
          const secret = password?.toString() ?? '';
          // The simulator provisions right before it connects; re-read the file on a miss
          // (the real broker watches it).
          let principal = await registry.authenticate(id, secret);
          if (!principal) {
            await registry.reload();
            principal = await registry.authenticate(id, secret);
          }
          if (principal) return done(null, true);
          const refused: AuthenticateError = Object.assign(new Error('bad username or password'), { returnCode: 4 as const }); // [MQTT-3.2.2-5] code 4
          done(refused, false);
        })();
      },
    });
    broker.on('publish', (packet, client) => {
      if (client && topicMatchesFilter(TOPIC_FILTERS.allTelemetry, packet.topic)) {
        telemetry.push({ topic: packet.topic, payload: packet.payload.toString() });
        for (const wake of telemetryWaiters.splice(0)) wake();
      }
    });
    server = createServer(broker.handle);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    mqttUrl = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    await new Promise<void>((resolve) => server.close(() => resolve()));
    await new Promise<void>((resolve) => broker.close(() => resolve()));
    registry.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  /** Resolves once telemetry has arrived from every one of `deviceIds`. */
  async function telemetryFromAll(deviceIds: readonly string[], since = 0): Promise<void> {
    const done = () => deviceIds.every((id) => telemetry.slice(since).some((m) => m.topic.includes(`/${id}/`)));
    while (!done()) await new Promise<void>((resolve) => telemetryWaiters.push(resolve));
  }

  it('provisions, connects, publishes valid readings and a retained online status, then stops cleanly', async () => {
    const simulation: Simulation = await startSimulation({
      mqttUrl,
      dataDir,
      provinces: ['01', '79'],
      domains: ['traffic', 'environment', 'energy'],
      devicesPerProvince: 1,
      intervalMs: 200,
      seed: 7,
    });
    let observer: MqttClient | undefined;
    try {
      const ids = simulation.devices.map((d) => d.id);
      expect(ids).toEqual([
        'sim-01-traffic-001',
        'sim-01-environment-001',
        'sim-01-energy-001',
        'sim-79-traffic-001',
        'sim-79-environment-001',
        'sim-79-energy-001',
      ]);
      await telemetryFromAll(ids);
      expect(simulation.stats().connected).toBe(6);

      // Every message is on the device's own topic and decodes under the contract.
      for (const { topic, payload } of telemetry) {
        const parsed = parseDeviceTopic(topic);
        expect(parsed.ok).toBe(true);
        if (!parsed.ok) continue;
        const decoded = decodeTelemetry(parsed.value.domain, payload, Date.now());
        expect(decoded.ok, decoded.ok ? '' : decoded.error.message).toBe(true);
      }

      // A late subscriber gets each device's retained online status.
      const observerSecret = await registry.upsertService('sim-test-observer', 'tools');
      observer = await connectAsync(mqttUrl, { clientId: 'sim-test-observer', username: 'sim-test-observer', password: observerSecret, protocolVersion: 4, reconnectPeriod: 0 });
      const statuses = new Map<string, { payload: DeviceStatusPayload; retain: boolean }[]>();
      let onStatus: (() => void) | undefined;
      observer.on('message', (topic, payload, packet) => {
        const decoded = decodeStatus(payload);
        const parsed = parseDeviceTopic(topic);
        if (!decoded.ok || !parsed.ok) return;
        statuses.set(parsed.value.deviceId, [...(statuses.get(parsed.value.deviceId) ?? []), { payload: decoded.value, retain: packet.retain }]);
        onStatus?.();
      });
      const until = async (done: () => boolean) => {
        while (!done()) await new Promise<void>((resolve) => (onStatus = resolve));
      };
      await observer.subscribeAsync(TOPIC_FILTERS.allStatus, { qos: 1 });
      await until(() => ids.every((id) => statuses.has(id)));
      for (const id of ids) {
        expect(statuses.get(id)?.[0]).toMatchObject({ retain: true, payload: { state: 'online' } });
      }

      expect(simulation.stats().published).toBeGreaterThan(0);
      await simulation.stop();
      await until(() => ids.every((id) => statuses.get(id)?.at(-1)?.payload.state === 'offline'));
      expect(simulation.stats()).toMatchObject({ connected: 0, errors: 0 });
    } finally {
      await simulation.stop();
      await observer?.endAsync();
    }

    // Secrets kept for the next run, readable by the owner only.
    const secretsFile = join(dataDir, SECRETS_FILE_NAME);
    expect((await stat(secretsFile)).mode & 0o777).toBe(0o600);
    const secrets = JSON.parse(await readFile(secretsFile, 'utf8')) as { secrets: Record<string, string> };
    expect(Object.keys(secrets.secrets).sort()).toHaveLength(6);
  });

  it('retries with back-off while the broker is unreachable and connects once it is up', async () => {
    // A port that was free a moment ago: nothing listens there yet.
    const probe = createServer();
    await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
    const { port } = probe.address() as AddressInfo;
    await new Promise<void>((resolve) => probe.close(() => resolve()));

    let onLog: ((line: string) => void) | undefined;
    const logger = pino({ level: 'debug' }, { write: (line: string) => onLog?.(line) });
    const firstError = new Promise<void>((resolve) => (onLog = (line) => line.includes('device connection error') && resolve()));
    const simulation = await startSimulation({ mqttUrl: `mqtt://127.0.0.1:${port}`, dataDir, provinces: ['48'], domains: ['energy'], devicesPerProvince: 1, intervalMs: 100, logger });
    const late = createServer(broker.handle);
    try {
      await firstError;
      expect(simulation.stats()).toMatchObject({ connected: 0, published: 0 });
      expect(simulation.stats().errors).toBeGreaterThan(0);

      const since = telemetry.length;
      await new Promise<void>((resolve) => late.listen(port, '127.0.0.1', resolve));
      await telemetryFromAll(['sim-48-energy-001'], since);
      expect(simulation.stats().connected).toBe(1);
    } finally {
      await simulation.stop();
      await new Promise<void>((resolve) => late.close(() => resolve()));
    }
  });

  it('reuses the registry entries and secrets on restart instead of re-provisioning', async () => {
    await registry.reload();
    const before = new Map(registry.devices.map((d) => [d.id, d.updatedAt + d.secretHash]));
    const simulation = await startSimulation({ mqttUrl, dataDir, provinces: ['01', '79'], domains: ['traffic', 'environment', 'energy'], devicesPerProvince: 1, intervalMs: 200, seed: 7 });
    try {
      const since = telemetry.length;
      await telemetryFromAll(simulation.devices.map((d) => d.id), since);
      await registry.reload();
      for (const device of simulation.devices) {
        const record = registry.device(device.id);
        expect(record && record.updatedAt + record.secretHash).toBe(before.get(device.id));
      }
    } finally {
      await simulation.stop();
    }
    expect(simulation.stats().connected).toBe(0);
  });
});
