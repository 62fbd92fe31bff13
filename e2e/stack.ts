import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { provinceByCode, type Domain, type LngLat } from '@citypulse/contracts';
import { buildBroker, DeviceRegistry, listenMqttTcp, type PlatformBroker } from '@citypulse/broker';
import { parseAlertRules, startIngest, type IngestPipeline } from '@citypulse/ingest';
import { buildApi, OperatorStore, SessionSigner, type ApiApp } from '@citypulse/api';
import { Influx, startInfluxd } from '@citypulse/infra';
import { resolveScenario, scenarioFromFlags, startSimulation, type Simulation } from '@citypulse/simulators';

/**
 * The whole platform in one test process, with real parts on free ports: a private InfluxDB
 * (Debian's influxd, temporary data folder), the Aedes broker on TCP, ingest and api (serving the
 * built dashboard), and optionally simulated devices. Everything talks over real sockets.
 */
export interface StackOptions {
  /** Run simulated devices too (real MQTT, real credentials). */
  readonly simulate?: { readonly provinces: readonly string[]; readonly domains?: readonly Domain[]; readonly devicesPerProvince: number; readonly intervalMs: number };
  /** Alert rules (YAML, the format of ingest/alert-rules.yaml) instead of the shipped ones. */
  readonly alertRules?: string;
}

/** Options of an extra api node started on the same InfluxDB, broker and data folder. */
export interface ExtraApiOptions {
  readonly mapboxAccessToken?: string;
}

export interface Stack {
  /** http://127.0.0.1:PORT — REST under /api/v1, socket.io, and the built dashboard at / */
  readonly apiUrl: string;
  readonly mqttUrl: string;
  readonly influx: { readonly url: string; readonly database: string };
  readonly dataDir: string;
  /** An admin operator created for the test. */
  readonly operator: { readonly username: string; readonly password: string };
  /** A viewer (sees everything, may change nothing). */
  readonly viewer: { readonly username: string; readonly password: string };
  /** A viewer scoped to one province, Đà Nẵng (48): sees only it. */
  readonly scopedViewer: { readonly username: string; readonly password: string; readonly provinces: readonly string[] };
  readonly registry: DeviceRegistry;
  readonly broker: PlatformBroker;
  readonly ingest: IngestPipeline;
  readonly api: ApiApp;
  readonly influxClient: Influx;
  readonly simulation: Simulation | undefined;
  /** Registers a device (at its province's label point unless given) and returns its secret. */
  provisionDevice(device: { id: string; province: string; domain: Domain; location?: LngLat; name?: string }): Promise<{ id: string; secret: string }>;
  /** Starts another api node on the same backends (e.g. with a Mapbox token); stopped with the stack. */
  startApi(options: ExtraApiOptions): Promise<{ readonly url: string }>;
  stop(): Promise<void>;
}

export const DASHBOARD_DIST = fileURLToPath(new URL('../dashboard/dist', import.meta.url));

export async function startStack(options: StackOptions = {}): Promise<Stack> {
  const dataDir = await mkdtemp(join(tmpdir(), 'citypulse-e2e-'));
  const logger = pino({ level: process.env.E2E_LOG_LEVEL ?? 'silent' });
  const cleanups: (() => Promise<void>)[] = [() => rm(dataDir, { recursive: true, force: true })];
  const stop = async () => {
    for (const cleanup of cleanups.reverse()) await cleanup().catch(() => undefined);
  };
  try {
    const influxd = await startInfluxd({ dataDir: join(dataDir, 'influxdb') });
    cleanups.push(() => influxd.stop());
    const influx = new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
    await influx.ensureDatabase('30d');

    const registry = await DeviceRegistry.open(dataDir, { watch: true });
    cleanups.push(async () => registry.close());
    const ingestSecret = await registry.upsertService('ingest', 'ingest');
    const apiSecret = await registry.upsertService('api', 'api');

    const broker = await buildBroker({ registry, logger: logger.child({ name: 'broker' }) });
    const tcp = await listenMqttTcp(broker, 0, '127.0.0.1');
    // Cleanups run in reverse: the broker closes its clients first, then the listener can close.
    cleanups.push(() => new Promise((resolve) => tcp.close(() => resolve())));
    cleanups.push(() => broker.close());
    const mqttUrl = `mqtt://127.0.0.1:${(tcp.address() as AddressInfo).port}`;

    const ingest = await startIngest({
      mqttUrl,
      username: 'ingest',
      password: ingestSecret,
      clientId: 'ingest-e2e',
      influx,
      registry,
      logger: logger.child({ name: 'ingest' }),
      flushIntervalMs: 100,
      ...(options.alertRules === undefined ? {} : { alertRules: parseAlertRules(options.alertRules, 'e2e rules') }),
    });
    cleanups.push(() => ingest.close());

    const operators = await OperatorStore.open(dataDir);
    const operator = { username: 'operator', password: 'e2e-operator-password' };
    await operators.upsert(operator.username, 'admin', operator.password);
    const viewer = { username: 'viewer', password: 'e2e-viewer-password' };
    await operators.upsert(viewer.username, 'viewer', viewer.password);
    const scopedViewer = { username: 'viewer-48', password: 'e2e-scoped-viewer-password', provinces: ['48'] };
    await operators.upsert(scopedViewer.username, 'viewer', scopedViewer.password, scopedViewer.provinces);
    const sessions = await SessionSigner.fromDataDir(dataDir, 3_600_000);
    let apiNodes = 0;
    const startApiNode = async (extra: ExtraApiOptions = {}): Promise<{ api: ApiApp; url: string }> => {
      const node = ++apiNodes;
      const api = await buildApi({
        influx,
        registry,
        operators,
        sessions,
        logger: logger.child({ name: `api-${node}` }),
        mqtt: { url: mqttUrl, username: 'api', password: apiSecret },
        dashboardDir: DASHBOARD_DIST,
        dataDir,
        frameIntervalMs: 200,
        ...(extra.mapboxAccessToken === undefined ? {} : { mapboxAccessToken: extra.mapboxAccessToken }),
      });
      cleanups.push(() => api.close());
      await api.app.listen({ port: 0, host: '127.0.0.1' });
      await waitFor(() => api.mqtt.connected, 10_000, 'api never connected to the broker');
      return { api, url: `http://127.0.0.1:${(api.app.server.address() as AddressInfo).port}` };
    };
    const { api, url: apiUrl } = await startApiNode();

    const simulation = options.simulate
      ? await startSimulation({
          mqttUrl,
          dataDir,
          scenario: resolveScenario(
            scenarioFromFlags({
              provinces: options.simulate.provinces,
              domains: options.simulate.domains ?? ['traffic', 'environment', 'energy'],
              devicesPerProvince: options.simulate.devicesPerProvince,
              intervalMs: options.simulate.intervalMs,
            }),
            { nowMs: Date.now() },
          ),
          logger: logger.child({ name: 'simulators' }),
        })
      : undefined;
    if (simulation) cleanups.push(() => simulation.stop());

    return {
      apiUrl,
      mqttUrl,
      influx: { url: influxd.url, database: 'citypulse' },
      dataDir,
      operator,
      viewer,
      scopedViewer,
      registry,
      broker,
      ingest,
      api,
      influxClient: influx,
      simulation,
      async provisionDevice(device) {
        const location = device.location ?? provinceByCode(device.province)?.label;
        if (!location) throw new Error(`unknown province ${device.province}`);
        const [created] = await registry.upsertDevices([{ id: device.id, province: device.province, domain: device.domain, location, kind: 'e2e', name: device.name ?? `E2E ${device.id}` }]);
        if (created?.secret === undefined) throw new Error('provisioning returned no secret');
        return { id: created.id, secret: created.secret };
      },
      async startApi(extra) {
        return { url: (await startApiNode(extra)).url };
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

/** Polls `condition` until it holds (no fixed sleeps in tests); fails with `message` after `timeoutMs`. */
export async function waitFor<T>(condition: () => T | Promise<T>, timeoutMs: number, message: string, intervalMs = 50): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await condition();
      if (value) return value;
    } catch (err) {
      lastError = err;
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
  throw new Error(`${message} (waited ${timeoutMs} ms)${lastError instanceof Error ? `; last error: ${lastError.message}` : ''}`);
}
