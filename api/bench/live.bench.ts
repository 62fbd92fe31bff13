/**
 * `pnpm --filter @citypulse/api bench:live`: live delivery of the api to dashboards against a
 * plain `ws` broadcast of the same frames, in one run on this machine (issue 6).
 *
 * Every part is its own process, so its CPU is its own (utime + stime from /proc/PID/stat over
 * the measured window): a private influxd (infra's startInfluxd; the api restores its live state
 * from it at start, empty here), the platform's broker (`broker/src/server.ts`, memory store),
 * the publishers (publisher.ts: gateway accounts publishing one reading per message at QoS 0 for
 * the ingest bench's fleet of devices over the 34 provinces and three domains, `ts` = publish
 * time), the server under test, and the dashboard clients (clients.ts, split over a few
 * processes; client i watches province i mod 34, all three domains).
 *
 * Per load level, two phases at the same offered rate:
 * 1. socket.io: the real api (`api/src/server.ts`, i.e. buildApi, with SERVICE_NODE_FLAGS, on a
 *    free port, FRAME_INTERVAL_MS); the clients log in with a viewer account
 *    (POST /api/v1/auth/login) and subscribe to their province over socket.io.
 * 2. ws baseline: ws-server.ts, with the same Node flags, the api's own LiveState and the same
 *    frame interval, sending each frame `JSON.stringify`-ed once to the sockets of its room.
 * Each phase: connect and subscribe the clients, publish, warm up, then measure for
 * BENCH_SECONDS. A client measures each reading of a frame as `Date.now() - reading.ts`.
 *
 * Prints a Markdown table and the targets (PASS/FAIL) on stdout, progress on stderr; `--json
 * FILE` also writes every figure; `--quick` for a short try (10 s phases); `--only socket.io|ws`
 * runs one transport; `--cpu-prof` profiles the server of each phase (V8) and prints where its
 * CPU went in the measured window. Environment: BENCH_SECONDS (measured seconds per phase,
 * default 60, --quick 10), BENCH_WARMUP_SECONDS (5, --quick 3), BENCH_RATES (offered
 * readings/s, comma-separated, default 5000,10000), BENCH_DEVICES (10,000; each publishes at
 * rate / devices Hz), BENCH_CLIENTS (100), BENCH_WATCH_ALL (of those, how many watch all 34
 * provinces; default 0), BENCH_CLIENT_PROCESSES (2), BENCH_GATEWAYS (MQTT connections of the
 * publishers, 8), BENCH_PUBLISHERS (publisher processes, 1), FRAME_INTERVAL_MS (the coalescing
 * interval of both servers, default the api's 500).
 */
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { dirname, join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { API_PREFIX, PROVINCE_CODES } from '@citypulse/contracts';
import { freePort, Influx, SERVICE_NODE_FLAGS, startInfluxd } from '@citypulse/infra';
import { summariseCpuProfile, type CpuProfile, type ProfileSummary } from '../../broker/bench/profile.js';
import { provisionBenchFleet } from './fleet-accounts.js';
import { BenchChild, cpuSeconds, exitCleanup, listening, residentBytes, startBrokerService, startService, waitUntil, type Service } from '../../ingest/bench/services.js';
import { REALTIME_DEFAULTS } from '../src/realtime.js';
import {
  LatencyHistogram,
  TRANSPORTS,
  type ClientsCommand,
  type ClientsReply,
  type PublisherCommand,
  type PublisherReply,
  type Transport,
  type WsServerCommand,
  type WsServerReply,
} from './protocol.js';

const HERE = dirname(fileURLToPath(import.meta.url));
const API_DIR = dirname(HERE);
const TSX = import.meta.resolve('tsx');
const args = process.argv.slice(2);
const argAfter = (flag: string) => (args.includes(flag) ? args[args.indexOf(flag) + 1] : undefined);
const QUICK = args.includes('--quick');
const PROFILE = args.includes('--cpu-prof');
const JSON_FILE = argAfter('--json');
const ONLY = argAfter('--only');
if (ONLY !== undefined && !(TRANSPORTS as readonly string[]).includes(ONLY)) throw new Error(`--only takes ${TRANSPORTS.join(' or ')}`);

const envInt = (name: string, fallback: number) => {
  const raw = process.env[name];
  const value = Number(raw);
  return raw && Number.isFinite(value) && value >= 0 ? Math.floor(value) : fallback;
};
const MEASURE_S = envInt('BENCH_SECONDS', QUICK ? 10 : 60);
const WARMUP_S = envInt('BENCH_WARMUP_SECONDS', QUICK ? 3 : 5);
const RATES = (process.env.BENCH_RATES ?? '5000,10000').split(',').map(Number).filter((n) => n > 0);
const DEVICES = envInt('BENCH_DEVICES', 10_000);
const CLIENTS = envInt('BENCH_CLIENTS', 100);
const WATCH_ALL = Math.min(CLIENTS, envInt('BENCH_WATCH_ALL', 0));
const CLIENT_PROCESSES = Math.max(1, envInt('BENCH_CLIENT_PROCESSES', 2));
const GATEWAYS = Math.max(1, envInt('BENCH_GATEWAYS', 8));
const PUBLISHERS = Math.max(1, Math.min(GATEWAYS, envInt('BENCH_PUBLISHERS', 1)));
const FRAME_INTERVAL_MS = envInt('FRAME_INTERVAL_MS', REALTIME_DEFAULTS.frameIntervalMs);
/** Issue 6: p99 device-to-dashboard at most 250 ms plus the coalescing interval at 5,000 readings/s; at least 0.5× the baseline's frames/s. */
const TARGET = { ratePerS: 5000, p99OverIntervalMs: 250, ratioToBaseline: 0.5 } as const;
const VIEWER = { username: 'bench-viewer', password: `bench-${Math.random().toString(36).slice(2)}-password` };

const log = (line: string) => console.error(`[live bench] ${line}`);
const fmt = (n: number, digits = 0) => (Number.isFinite(n) ? n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits }) : '–');
/** Monotonic clock in µs: the clock V8 CPU profiles are stamped with. */
const monotonicUs = () => Number(process.hrtime.bigint() / 1000n);

// ---------------------------------------------------------------------------------------------
// Cleanup: every child process and temp folder, on success, failure, Ctrl+C or SIGTERM

const { cleanups, cleanup, cleaning } = exitCleanup(log);

// ---------------------------------------------------------------------------------------------
// Set-up: registry, operator, influxd, broker, publishers

interface Platform {
  readonly root: string;
  readonly dataDir: string;
  readonly apiSecret: string;
  readonly influxUrl: string;
  readonly influxdPid: number;
  readonly broker: Service;
  readonly mqttUrl: string;
  readonly publishers: readonly BenchChild<PublisherCommand, PublisherReply>[];
}

async function setUp(): Promise<Platform> {
  const root = await mkdtemp(join(tmpdir(), 'citypulse-live-bench-'));
  cleanups.push(() => rm(root, { recursive: true, force: true }));
  const dataDir = join(root, 'data');
  const { apiSecret, gateways } = await provisionBenchFleet(dataDir, { devices: DEVICES, gateways: GATEWAYS, operator: { ...VIEWER, role: 'viewer' } });
  log(`provisioned ${fmt(DEVICES)} devices behind ${GATEWAYS} gateway accounts, the api account and a viewer`);

  const influxd = await startInfluxd({ dataDir: join(root, 'influxdb'), log });
  cleanups.push(() => influxd.stop());
  await new Influx({ url: influxd.url, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' }).ensureDatabase('30d');

  const { service: broker, url: mqttUrl } = await startBrokerService(dataDir, { BROKER_STORE: 'memory' });
  cleanups.push(() => broker.stop());
  log(`broker: pid ${broker.pid}, ${mqttUrl}, memory store`);

  const publishers = Array.from({ length: PUBLISHERS }, (_, i) => new BenchChild<PublisherCommand, PublisherReply>(`publisher ${i}`, new URL('./publisher.ts', import.meta.url)));
  for (const p of publishers) cleanups.push(() => p.close({ type: 'close' }));
  await Promise.all(publishers.map((p, i) => p.ask({ type: 'connect', url: mqttUrl, gateways: gateways.filter((_, g) => g % PUBLISHERS === i) }, 'connected')));
  log(`publishers: ${PUBLISHERS} process${PUBLISHERS > 1 ? 'es' : ''}, ${GATEWAYS} MQTT connections`);
  return { root, dataDir, apiSecret, influxUrl: influxd.url, influxdPid: influxd.process.pid as number, broker, mqttUrl, publishers };
}

// ---------------------------------------------------------------------------------------------
// Servers under test

interface ServerUnderTest {
  readonly pid: number;
  readonly url: string;
  readonly token: string;
  /** Where its CPU profile goes (--cpu-prof). */
  readonly profileDir: string | undefined;
  stop(): Promise<void>;
}

async function startApi(p: Platform, label: string): Promise<ServerUnderTest> {
  const port = await freePort();
  // startService adds --cpu-prof into BENCH_PROFILE_DIR/<name>/ when that is set: for the api only.
  const profileDir = PROFILE ? join(p.root, 'profiles') : undefined;
  if (profileDir) process.env.BENCH_PROFILE_DIR = profileDir;
  const api = startService(label, API_DIR, {
    DATA_DIR: p.dataDir,
    API_HOST: '127.0.0.1',
    API_PORT: String(port),
    MQTT_URL: p.mqttUrl,
    API_MQTT_USERNAME: 'api',
    API_MQTT_PASSWORD: p.apiSecret,
    INFLUX_URL: p.influxUrl,
    INFLUX_DATABASE: 'citypulse',
    DASHBOARD_DIR: join(p.root, 'no-dashboard'),
    FRAME_INTERVAL_MS: String(FRAME_INTERVAL_MS),
    LOG_LEVEL: 'warn',
  });
  delete process.env.BENCH_PROFILE_DIR;
  cleanups.push(() => api.stop());
  const url = `http://127.0.0.1:${port}`;
  await waitUntil(api, `HTTP on port ${port}`, () => listening(port));
  // Subscribed to the broker (healthz: mqtt true) before any client joins.
  await waitUntil(api, 'its MQTT connection', async () => ((await (await fetch(`${url}/healthz`)).json()) as { mqtt?: boolean }).mqtt === true);
  const login = await fetch(`${url}${API_PREFIX}/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(VIEWER) });
  const body = (await login.json()) as { token?: string; message?: string };
  if (!login.ok || !body.token) throw new Error(`login as ${VIEWER.username}: HTTP ${login.status} ${body.message ?? ''}`);
  return { pid: api.pid, url, token: body.token, profileDir: profileDir && join(profileDir, label), stop: () => api.stop() };
}

async function startWsServer(p: Platform, label: string): Promise<ServerUnderTest> {
  const profileDir = PROFILE ? join(p.root, 'profiles', label) : undefined;
  const flags = [...SERVICE_NODE_FLAGS, ...(profileDir ? ['--cpu-prof', `--cpu-prof-dir=${profileDir}`] : []), '--import', TSX];
  const server = new BenchChild<WsServerCommand, WsServerReply>(label, new URL('./ws-server.ts', import.meta.url), flags);
  const stop = () => server.close({ type: 'close' });
  cleanups.push(stop);
  const { port } = await server.ask({ type: 'start', mqttUrl: p.mqttUrl, username: 'api', password: p.apiSecret, dataDir: p.dataDir, frameIntervalMs: FRAME_INTERVAL_MS }, 'listening');
  return { pid: server.pid, url: `ws://127.0.0.1:${port}`, token: '', profileDir, stop };
}

// ---------------------------------------------------------------------------------------------
// One phase: a transport at a load

interface CpuShare {
  readonly seconds: number;
  /** One core = 100 %. */
  readonly percent: number;
}

interface PhaseResult {
  readonly transport: Transport;
  readonly offeredPerS: number;
  readonly perDeviceHz: number;
  readonly seconds: number;
  readonly publishedPerS: number;
  readonly publisherSkipped: number;
  readonly clients: number;
  readonly framesPerS: number;
  readonly readingsPerS: number;
  /** Readings published in the window for the provinces the clients watch, summed over clients, per second. */
  readonly expectedReadingsPerS: number;
  readonly readingsPerFrame: number;
  readonly latencyMs: { readonly count: number; readonly p50: number; readonly p95: number; readonly p99: number; readonly p999: number; readonly max: number };
  readonly snapshots: number;
  readonly missedSlots: number;
  readonly seqGaps: number;
  readonly disconnects: number;
  readonly cpu: { readonly server: CpuShare; readonly broker: CpuShare; readonly publishers: CpuShare; readonly clients: CpuShare; readonly influxd: CpuShare };
  readonly serverRssMiB: number;
  readonly profile?: ProfileSummary;
}

/** Provinces each client watches: the first BENCH_WATCH_ALL all 34, the others one each, round-robin from province i mod 34. */
function watchLists(): string[][] {
  return Array.from({ length: CLIENTS }, (_, i) => (i < WATCH_ALL ? [...PROVINCE_CODES] : [PROVINCE_CODES[i % PROVINCE_CODES.length] as string]));
}

async function runPhase(p: Platform, transport: Transport, offeredPerS: number): Promise<PhaseResult> {
  const label = `${transport === 'socket.io' ? 'api' : 'ws-baseline'}-${offeredPerS}`;
  const perDeviceHz = offeredPerS / DEVICES;
  log(`${transport} at ${fmt(offeredPerS)} readings/s (${fmt(DEVICES)} devices at ${perDeviceHz} Hz): starting ${label} …`);
  const server = transport === 'socket.io' ? await startApi(p, label) : await startWsServer(p, label);
  const clientProcs = Array.from({ length: CLIENT_PROCESSES }, (_, i) => new BenchChild<ClientsCommand, ClientsReply>(`clients ${i}`, new URL('./clients.ts', import.meta.url)));
  const closeClients = () => Promise.all(clientProcs.map((c) => c.close({ type: 'close' })));
  cleanups.push(closeClients);
  try {
    const watch = watchLists();
    const shares = clientProcs.map((_, i) => watch.filter((_w, k) => k % CLIENT_PROCESSES === i));
    const connected = await Promise.all(clientProcs.map((c, i) => c.ask({ type: 'connect', transport, url: server.url, token: server.token, watch: shares[i] ?? [], frameIntervalMs: FRAME_INTERVAL_MS }, 'connected')));
    const failed = connected.reduce((sum, c) => sum + c.failed, 0);
    if (failed > 0) throw new Error(`${failed} of ${CLIENTS} clients could not connect and subscribe: ${connected.find((c) => c.firstError)?.firstError}`);
    log(`${CLIENTS} clients subscribed over ${transport}; publishing, ${WARMUP_S} s warm-up, then ${MEASURE_S} s measured`);

    await Promise.all(p.publishers.map((pub) => pub.ask({ type: 'rate', perDeviceHz }, 'rate')));
    await sleep(WARMUP_S * 1000);

    const pids = { server: [server.pid], broker: [p.broker.pid], publishers: p.publishers.map((x) => x.pid), clients: clientProcs.map((c) => c.pid), influxd: [p.influxdPid] };
    const cpuNow = async () => Object.fromEntries(await Promise.all(Object.entries(pids).map(async ([k, list]) => [k, (await Promise.all(list.map(cpuSeconds))).reduce((a, b) => a + b, 0)] as const))) as Record<keyof typeof pids, number>;
    await Promise.all([...clientProcs.map((c) => c.ask({ type: 'reset' }, 'reset')), ...p.publishers.map((x) => x.ask({ type: 'reset' }, 'reset'))]);
    const cpu0 = await cpuNow();
    const t0 = performance.now();
    const t0Us = monotonicUs();
    await sleep(MEASURE_S * 1000);
    const cpu1 = await cpuNow();
    const seconds = (performance.now() - t0) / 1000;
    const t1Us = monotonicUs();
    const [published, received] = await Promise.all([Promise.all(p.publishers.map((x) => x.ask({ type: 'report' }, 'report'))), Promise.all(clientProcs.map((c) => c.ask({ type: 'report' }, 'report')))]);
    const serverRssMiB = (await residentBytes(server.pid)) / 2 ** 20;
    await Promise.all(p.publishers.map((x) => x.ask({ type: 'rate', perDeviceHz: 0 }, 'rate')));

    const byProvince: Record<string, number> = {};
    for (const r of published) for (const [province, n] of Object.entries(r.byProvince)) byProvince[province] = (byProvince[province] ?? 0) + n;
    const expected = watch.reduce((sum, provinces) => sum + provinces.reduce((s, province) => s + (byProvince[province] ?? 0), 0), 0);
    const latency = new LatencyHistogram();
    for (const r of received) latency.add(r.latency);
    const sum = (key: 'frames' | 'readings' | 'snapshots' | 'missedSlots' | 'seqGaps' | 'disconnects') => received.reduce((s, r) => s + r[key], 0);
    const share = (key: keyof typeof pids): CpuShare => ({ seconds: cpu1[key] - cpu0[key], percent: ((cpu1[key] - cpu0[key]) / seconds) * 100 });
    const sent = published.reduce((s, r) => s + r.sent, 0);
    const result: PhaseResult = {
      transport,
      offeredPerS,
      perDeviceHz,
      seconds,
      publishedPerS: sent / seconds,
      publisherSkipped: published.reduce((s, r) => s + r.skipped, 0),
      clients: received.reduce((s, r) => s + r.clients, 0),
      framesPerS: sum('frames') / seconds,
      readingsPerS: sum('readings') / seconds,
      expectedReadingsPerS: expected / seconds,
      readingsPerFrame: sum('readings') / Math.max(1, sum('frames')),
      latencyMs: { count: latency.count, p50: latency.quantile(0.5), p95: latency.quantile(0.95), p99: latency.quantile(0.99), p999: latency.quantile(0.999), max: latency.maxMs },
      snapshots: sum('snapshots'),
      missedSlots: sum('missedSlots'),
      seqGaps: sum('seqGaps'),
      disconnects: sum('disconnects'),
      cpu: { server: share('server'), broker: share('broker'), publishers: share('publishers'), clients: share('clients'), influxd: share('influxd') },
      serverRssMiB,
    };
    log(
      `${transport} at ${fmt(offeredPerS)}/s: ${fmt(result.publishedPerS)} readings/s published, ${fmt(result.framesPerS)} frames/s and ${fmt(result.readingsPerS)} readings/s delivered; ` +
        `latency p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, max ${result.latencyMs.max} ms; CPU ${label} ${result.cpu.server.percent.toFixed(0)} %, broker ${result.cpu.broker.percent.toFixed(0)} %, clients ${result.cpu.clients.percent.toFixed(0)} %`,
    );
    await closeClients();
    await server.stop();
    if (!server.profileDir) return result;
    return { ...result, profile: await profileOf(server.profileDir, [t0Us, t1Us]) };
  } finally {
    await Promise.all(p.publishers.map((x) => x.ask({ type: 'rate', perDeviceHz: 0 }, 'rate').catch(() => undefined)));
    await closeClients();
    await server.stop();
  }
}

/** The server's main-thread profile (the largest file; the other is tsx's loader thread), over the measured window. */
async function profileOf(dir: string, windowUs: readonly [number, number]): Promise<ProfileSummary | undefined> {
  const files = (await readdir(dir).catch(() => [] as string[])).filter((f) => f.endsWith('.cpuprofile'));
  const sized = await Promise.all(files.map(async (f) => ({ file: join(dir, f), size: (await stat(join(dir, f))).size })));
  const main = sized.sort((a, b) => b.size - a.size)[0];
  if (!main) return undefined;
  return summariseCpuProfile(JSON.parse(await readFile(main.file, 'utf8')) as CpuProfile, windowUs);
}

// ---------------------------------------------------------------------------------------------
// Report

interface Report {
  readonly date: string;
  readonly command: string;
  readonly machine: string;
  readonly settings: {
    readonly devices: number;
    readonly clients: number;
    readonly watchAll: number;
    readonly clientProcesses: number;
    readonly gateways: number;
    readonly publishers: number;
    readonly frameIntervalMs: number;
    readonly warmupSeconds: number;
    readonly measureSeconds: number;
  };
  readonly phases: readonly PhaseResult[];
  readonly loadAverage: { readonly start: readonly number[]; readonly end: readonly number[] };
}

const ratioAt = (report: Report, rate: number): number | undefined => {
  const io = report.phases.find((r) => r.offeredPerS === rate && r.transport === 'socket.io');
  const ws = report.phases.find((r) => r.offeredPerS === rate && r.transport === 'ws');
  return io && ws ? io.framesPerS / ws.framesPerS : undefined;
};

function table(report: Report): string {
  const { phases } = report;
  const header = phases.map((r) => `${r.transport === 'socket.io' ? 'socket.io (api)' : 'ws baseline'}, ${fmt(r.offeredPerS)}/s`);
  const rows: string[] = [`| measurement | ${header.join(' | ')} |`, `|---|${phases.map(() => '---:').join('|')}|`];
  const row = (what: string, cell: (r: PhaseResult) => string) => rows.push(`| ${what} | ${phases.map(cell).join(' | ')} |`);
  const pct = (c: CpuShare) => `${c.percent.toFixed(0)} %`;
  row('readings/s published (QoS 0, one per message)', (r) => `${fmt(r.publishedPerS)}${r.publisherSkipped ? ` (${fmt(r.publisherSkipped)} skipped)` : ''}`);
  row('dashboard clients subscribed', (r) => fmt(r.clients));
  row('frames/s delivered (sum over clients)', (r) => `**${fmt(r.framesPerS)}**`);
  row('readings/s delivered (sum over clients)', (r) => fmt(r.readingsPerS));
  row('… of those published in the watched provinces', (r) => `${((r.readingsPerS / Math.max(1, r.expectedReadingsPerS)) * 100).toFixed(1)} %`);
  row('readings per frame (mean)', (r) => fmt(r.readingsPerFrame, 1));
  row('publish → client latency p50 / p95 (ms)', (r) => `${fmt(r.latencyMs.p50)} / ${fmt(r.latencyMs.p95)}`);
  row('publish → client latency p99 (ms)', (r) => `**${fmt(r.latencyMs.p99)}**`);
  row('publish → client latency p99.9 / max (ms)', (r) => `${fmt(r.latencyMs.p999)} / ${fmt(r.latencyMs.max)}`);
  row('coalescing interval (ms)', () => fmt(report.settings.frameIntervalMs));
  row('server CPU (api or ws server), one core = 100 %', (r) => `**${pct(r.cpu.server)}**`);
  row('server VmRSS at the end (MiB)', (r) => fmt(r.serverRssMiB));
  row('broker CPU', (r) => pct(r.cpu.broker));
  row(`clients CPU (${report.settings.clientProcesses} processes)`, (r) => pct(r.cpu.clients));
  row(`publishers CPU (${report.settings.publishers} process${report.settings.publishers > 1 ? 'es' : ''})`, (r) => pct(r.cpu.publishers));
  row('influxd CPU', (r) => pct(r.cpu.influxd));
  row('resync snapshots (frames skipped for a lagging socket)', (r) => (r.transport === 'ws' ? 'n/a' : fmt(r.snapshots)));
  row('frame intervals missed (a room\'s frames > 1 interval apart)', (r) => fmt(r.missedSlots));
  row('device seq gaps seen by clients (readings lost)', (r) => fmt(r.seqGaps));
  row('client disconnects', (r) => fmt(r.disconnects));
  row('socket.io / ws delivered frames/s', (r) => {
    const ratio = ratioAt(report, r.offeredPerS);
    return r.transport === 'socket.io' && ratio !== undefined ? `**${ratio.toFixed(2)}×**` : '';
  });
  return rows.join('\n');
}

function targets(report: Report): { text: string; pass: boolean } {
  const lines = ['| target | figure | result |', '|---|---|---|'];
  let pass = true;
  const verdict = (ok: boolean) => {
    pass &&= ok;
    return ok ? '**PASS**' : '**FAIL**';
  };
  const limit = TARGET.p99OverIntervalMs + report.settings.frameIntervalMs;
  const rates = [...new Set(report.phases.map((r) => r.offeredPerS))];
  for (const rate of rates) {
    const io = report.phases.find((r) => r.offeredPerS === rate && r.transport === 'socket.io');
    if (io) {
      const what = `p99 publish → dashboard ≤ ${TARGET.p99OverIntervalMs} ms + interval = ${fmt(limit)} ms, socket.io at ${fmt(rate)} readings/s`;
      const ok = io.latencyMs.p99 <= limit;
      lines.push(`| ${what}${rate === TARGET.ratePerS ? '' : ' (beyond the target\'s load)'} | ${fmt(io.latencyMs.p99)} ms | ${rate === TARGET.ratePerS ? verdict(ok) : ok ? 'within' : 'over'} |`);
    }
    const ratio = ratioAt(report, rate);
    if (ratio !== undefined) lines.push(`| socket.io ≥ ${TARGET.ratioToBaseline}× the ws baseline's delivered frames/s at ${fmt(rate)} readings/s | ${ratio.toFixed(2)}× | ${verdict(ratio >= TARGET.ratioToBaseline)} |`);
  }
  if (!rates.includes(TARGET.ratePerS)) lines.push(`| p99 at ${fmt(TARGET.ratePerS)} readings/s | no phase at that load (BENCH_RATES) | not checked |`);
  return { text: lines.join('\n'), pass };
}

function notes(report: Report): string {
  const s = report.settings;
  return [
    `- Load: ${fmt(s.devices)} simulated devices (the ingest bench's fleet: traffic, environment and energy in turn over the 34 provinces, so ${fmt(s.devices / 102, 0)} devices per province and domain), one reading per MQTT message at QoS 0 with \`ts\` = publish time, sent by ${s.gateways} gateway connections in ${s.publishers} process${s.publishers > 1 ? 'es' : ''} to the platform's broker (its own process, memory store, auth and ACL on); each device publishes at offered rate / ${fmt(s.devices)} Hz.`,
    `- Clients: ${fmt(s.clients)} dashboard clients in ${s.clientProcesses} processes; client i watches province i mod 34 (all three domains), round-robin over the 34 provinces, so each province has ${Math.floor((s.clients - s.watchAll) / 34)}–${Math.ceil((s.clients - s.watchAll) / 34)} watchers${s.watchAll ? `; ${s.watchAll} of them watch all 34 provinces` : ''}. socket.io: a viewer's session token from POST /api/v1/auth/login, \`subscribe\` with ack, websocket transport; ws: one \`{"type":"subscribe"}\` message. Same client code otherwise.`,
    `- socket.io: the api as it runs in production (\`api/src/server.ts\`, SERVICE_NODE_FLAGS, FRAME_INTERVAL_MS=${s.frameIntervalMs}), one broadcast per room per interval. ws baseline: \`api/bench/ws-server.ts\` (same Node flags), the api's LiveState fed by its own MQTT subscription, \`drainFrames()\` at the same interval, each frame \`JSON.stringify\`-ed once and sent to the sockets of its room; no rights, snapshots, heartbeat or lag handling.`,
    `- Latency: \`Date.now() - reading.ts\` for every reading of every frame a client receives (publisher, broker, server and client on one machine clock; 1 ms resolution). It includes the wait for the next frame (0 to one interval). Frames/s and readings/s: summed over the clients. "Of those published": readings delivered / readings published in the window for the provinces each client watches (±1 %: the clients' window trails the publishers' by the latency).`,
    `- CPU: utime + stime (/proc/PID/stat) over the measured window, ${s.warmupSeconds} s warm-up then ${s.measureSeconds} s per phase; one core = 100 % on ${report.machine}. Each phase starts a fresh server; the broker, influxd and publishers run through the whole run.`,
    `- Load average at start ${report.loadAverage.start.map((l) => l.toFixed(2)).join(' ')}, at end ${report.loadAverage.end.map((l) => l.toFixed(2)).join(' ')}.`,
  ].join('\n');
}

function profiles(report: Report): string {
  const parts: string[] = [];
  for (const r of report.phases) {
    if (!r.profile) continue;
    const busy = r.profile.totalMs - r.profile.idleMs;
    parts.push(`### ${r.transport === 'socket.io' ? 'api' : 'ws baseline'} at ${fmt(r.offeredPerS)} readings/s: ${fmt(busy)} ms busy of ${fmt(r.profile.totalMs)} ms sampled`);
    parts.push('', '| self time by package or area | ms | share |', '|---|---:|---:|');
    for (const g of r.profile.byGroup.slice(0, 12)) parts.push(`| ${g.name.replace(/^file:\/\/\/work\/main\//, '')} | ${fmt(g.ms)} | ${g.share.toFixed(1)} % |`);
    parts.push('', '| self time by function | where | ms | share |', '|---|---|---:|---:|');
    for (const f of r.profile.byFunction.slice(0, 20)) parts.push(`| ${f.name} | ${f.location} | ${fmt(f.ms)} | ${f.share.toFixed(1)} % |`);
    parts.push('');
  }
  return parts.join('\n');
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<boolean> {
  const loadStart = loadavg();
  const platform = await setUp();
  const phases: PhaseResult[] = [];
  for (const rate of RATES) {
    for (const transport of TRANSPORTS) if (!ONLY || ONLY === transport) phases.push(await runPhase(platform, transport, rate));
  }
  const report: Report = {
    date: new Date().toISOString(),
    command: `pnpm --filter @citypulse/api bench:live${args.length ? ` ${args.join(' ')}` : ''}`,
    machine: `${cpus().length} × ${cpus()[0]?.model.trim() ?? 'CPU'}, ${Math.round(totalmem() / 2 ** 30)} GiB, Node ${process.version}`,
    settings: { devices: DEVICES, clients: CLIENTS, watchAll: WATCH_ALL, clientProcesses: CLIENT_PROCESSES, gateways: GATEWAYS, publishers: PUBLISHERS, frameIntervalMs: FRAME_INTERVAL_MS, warmupSeconds: WARMUP_S, measureSeconds: MEASURE_S },
    phases,
    loadAverage: { start: loadStart, end: loadavg() },
  };
  const checked = targets(report);
  const overrides = Object.entries(process.env).filter(([k]) => k.startsWith('BENCH_') || k === 'FRAME_INTERVAL_MS').map(([k, v]) => `${k}=${v}`);
  console.log(`Live delivery, socket.io (the api) vs a plain ws broadcast, one run of ${report.date.slice(0, 16).replace('T', ' ')} UTC (${report.machine})`);
  console.log(`Command: \`${overrides.length ? `${overrides.join(' ')} ` : ''}${report.command}\`\n`);
  console.log(table(report));
  console.log('');
  console.log(checked.text);
  console.log('');
  console.log(notes(report));
  if (PROFILE) console.log(`\n${profiles(report)}`);
  if (JSON_FILE) {
    await mkdir(dirname(JSON_FILE), { recursive: true });
    await writeFile(JSON_FILE, `${JSON.stringify({ ...report, targets: { pass: checked.pass } }, null, 1)}\n`);
  }
  return checked.pass;
}

main()
  .then((pass) => {
    if (!pass) log('a target was missed (FAIL above)');
  })
  .catch((err: unknown) => {
    if (!cleaning()) console.error('live bench failed:', err);
    process.exitCode = 1;
  })
  .finally(() => cleanup());
