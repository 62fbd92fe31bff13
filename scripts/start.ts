/**
 * `npm start`: the whole platform on one machine with a simulated city. Starts a private InfluxDB
 * (unless INFLUX_URL points at one), the broker, ingest, the api with the dashboard, and the
 * simulators, each as its own process; generates local credentials at first start; prints the
 * dashboard URL, the login and a working mosquitto_pub line.
 *
 * `npm run cluster` (`--cluster`): the same platform as a local cluster, for trying scale-out on
 * one machine: a Redis, two brokers sharing it (BROKER_MQ=redis, BROKER_STORE=redis) behind a TCP
 * front on MQTT_PORT, two ingest workers (INGEST_SHARD 1/2 and 2/2) and two api nodes joined
 * through Redis (API_ADAPTER=redis); every process reads the device registry from Redis
 * (REGISTRY_STORE=redis), where the service accounts and the demo device are created.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { deviceTopic, readConfig, type DeviceAddress } from '@citypulse/contracts';
import { START_CONFIG } from './start-config.js';
import { DeviceRegistry, generateSecret, registryStoreOptions, type RegistryOpenOptions } from '@citypulse/broker';
import { OperatorStore } from '@citypulse/api';
import { Influx, isPortFree, freePort, startInfluxd, startRedis, startTcpFront, SERVICE_NODE_FLAGS, type RunningInfluxd, type RunningRedis, type TcpFront } from '@citypulse/infra';

const ROOT = fileURLToPath(new URL('..', import.meta.url));


const DEMO_DEVICE: DeviceAddress & { name: string; location: readonly [number, number] } = {
  deviceId: 'demo-hn-air-01',
  province: '01',
  domain: 'environment',
  name: 'Trạm thử nghiệm Hoàn Kiếm',
  location: [105.8525, 21.0287],
};

interface Credentials {
  services: { ingest: string; api: string; tools: string };
  admin: { username: string; password: string };
  demoDevice: { id: string; secret: string };
}

interface Service {
  readonly name: string;
  readonly child: ChildProcess;
}

/** Which processes run, on which ports: one of each service, or the local cluster. */
interface Topology {
  /** The TCP front devices connect to (cluster only; otherwise they connect to the broker). */
  readonly front?: number;
  readonly brokers: readonly { readonly name: string; readonly env: Record<string, string>; readonly mqttPort: number }[];
  readonly ingest: readonly { readonly name: string; readonly env: Record<string, string>; readonly shard: string }[];
  readonly apis: readonly { readonly name: string; readonly env: Record<string, string>; readonly port: number }[];
}

const CLUSTER = process.argv.includes('--cluster');
const CLUSTER_NODES = 2;

const say = (line: string) => console.log(`[citypulse] ${line}`);

async function main(): Promise<void> {
  // npm start's own start time (scripts/run.mjs), so the figure includes installing and building.
  const startedAt = Number(process.env.CITYPULSE_STARTED_AT) || Date.now();
  const config = readConfig(START_CONFIG, process.env);
  const dataDir = resolve(ROOT, config.DATA_DIR);
  await mkdir(join(dataDir, 'logs'), { recursive: true });

  for (const [name, port] of [['MQTT_PORT', config.MQTT_PORT], ['MQTT_WS_PORT', config.MQTT_WS_PORT], ['BROKER_HTTP_PORT', config.BROKER_HTTP_PORT], ['INGEST_HTTP_PORT', config.INGEST_HTTP_PORT], ['API_PORT', config.API_PORT]] as const) {
    if (port !== 0 && !(await isPortFree(port, '0.0.0.0'))) {
      throw new Error(`port ${port} is in use: stop what listens there, or set ${name} to another port (in .env or the environment)`);
    }
  }
  const topology = CLUSTER ? await clusterTopology(config) : singleTopology(config);

  const services: Service[] = [];
  let influxd: RunningInfluxd | undefined;
  let redis: RunningRedis | undefined;
  let front: TcpFront | undefined;
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('stopping …');
    // Devices first (they publish their offline status), then the readers, then the broker, then the database.
    for (const group of [['simulators'], ['api', 'ingest'], ['broker']]) {
      const members = services.filter((s) => group.some((g) => s.name === g || s.name.startsWith(`${g}-`)) && s.child.exitCode === null);
      for (const s of members) s.child.kill('SIGTERM');
      await Promise.all(members.map((s) => new Promise((r) => s.child.once('exit', r))));
      if (group[0] === 'api') await front?.close();
    }
    await redis?.stop();
    await influxd?.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  // The device registry of every process: the cluster's nodes share no folder, so it is in Redis there.
  const registryStore = CLUSTER ? 'redis' : config.REGISTRY_STORE;
  if (config.BROKER_STORE === 'redis' || config.API_ADAPTER === 'redis' || registryStore === 'redis' || CLUSTER) redis = await ensureRedis(config.REDIS_URL, join(dataDir, 'redis'));
  const registryLog = { info: (_: object, message: string) => say(message), warn: (_: object, message: string) => say(message) };
  const credentials = await ensureCredentials(dataDir, registryStoreOptions({ REGISTRY_STORE: registryStore, REDIS_URL: config.REDIS_URL }, registryLog)).catch(async (err: unknown) => {
    await redis?.stop();
    throw err;
  });

  let influxUrl = config.INFLUX_URL;
  if (!influxUrl) {
    const port = (await isPortFree(config.INFLUX_PORT)) ? config.INFLUX_PORT : await freePort();
    say(`starting InfluxDB on 127.0.0.1:${port} (data in ${join(config.DATA_DIR, 'influxdb')}) …`);
    influxd = await startInfluxd({ dataDir: join(dataDir, 'influxdb'), port, log: say });
    influxUrl = influxd.url;
  }
  const influx = new Influx({ url: influxUrl, database: config.INFLUX_DATABASE, retentionPolicy: config.INFLUX_RETENTION_POLICY, apiVersion: 'v1' });
  if (config.INFLUX_API === 'v1') await influx.ensureDatabase(config.INFLUX_RAW_RETENTION);

  const env = {
    ...process.env,
    DATA_DIR: dataDir,
    INFLUX_URL: influxUrl,
    // In a cluster the services, like the devices, go through the front.
    MQTT_URL: `mqtt://127.0.0.1:${config.MQTT_PORT}`,
    INGEST_MQTT_PASSWORD: credentials.services.ingest,
    API_MQTT_PASSWORD: credentials.services.api,
    REGISTRY_STORE: registryStore,
    REDIS_URL: config.REDIS_URL,
    CITYPULSE_SUPERVISED: '1',
  };
  const launch = (name: string, script: string, args: string[] = [], own: Record<string, string> = {}) => {
    // stdin stays open: a supervised child stops by itself when this process dies (see onShutdown).
    const child = spawn(join(ROOT, 'node_modules', '.bin', 'tsx'), [...SERVICE_NODE_FLAGS, join(ROOT, script), ...args], { cwd: ROOT, env: { ...env, ...own }, stdio: ['pipe', 'pipe', 'pipe'] });
    const log = createWriteStream(join(dataDir, 'logs', `${name}.log`), { flags: 'a' });
    for (const stream of [child.stdout, child.stderr]) {
      createInterface({ input: stream }).on('line', (line) => {
        log.write(`${line}\n`);
        echo(name, line);
      });
    }
    child.on('exit', (code, signal) => {
      if (!stopping) {
        console.error(`[citypulse] ${name} exited (${signal ?? code}); see ${join(config.DATA_DIR, 'logs', `${name}.log`)}`);
        void stopAll(1);
      }
    });
    services.push({ name, child });
  };

  for (const broker of topology.brokers) launch(broker.name, 'broker/src/server.ts', [], broker.env);
  for (const broker of topology.brokers) await waitForPort(broker.mqttPort, 30_000, broker.name);
  if (topology.front !== undefined) {
    // PROXY v2: the brokers (BROKER_PROXY_PROTOCOL=true) see each device's address, not the front's.
    front = await startTcpFront({ backends: topology.brokers.map((b) => ({ host: '127.0.0.1', port: b.mqttPort })), port: topology.front, host: '0.0.0.0', proxyProtocol: 'v2' });
  }
  for (const worker of topology.ingest) launch(worker.name, 'ingest/src/server.ts', [], worker.env);
  for (const api of topology.apis) launch(api.name, 'api/src/server.ts', [], api.env);
  for (const api of topology.apis) await waitForHealth(`http://127.0.0.1:${api.port}/healthz`, 60_000);

  const provinces = config.SIM_PROVINCES.split(',').map((p) => p.trim()).filter(Boolean);
  const simulating = config.SIM_SCENARIO !== undefined || (provinces.length > 0 && config.SIM_DEVICES_PER_PROVINCE > 0);
  if (simulating) {
    const what =
      config.SIM_SCENARIO !== undefined
        ? ['--scenario', config.SIM_SCENARIO]
        : ['--provinces', provinces.join(','), '--domains', config.SIM_DOMAINS, '--devices', String(config.SIM_DEVICES_PER_PROVINCE), '--interval', `${config.SIM_INTERVAL_MS}ms`];
    launch('simulators', 'simulators/src/cli/simulate.ts', ['--mqtt-url', env.MQTT_URL, '--data-dir', dataDir, ...what, ...(config.SIM_FAULTS ? ['--faults', config.SIM_FAULTS] : [])]);
  }

  const topic = deviceTopic(DEMO_DEVICE, 'telemetry');
  console.log(`
  CityPulse VN is running — smart-city telemetry for Vietnam's provinces.

    Dashboard   ${topology.apis.map((a) => `http://localhost:${a.port}`).join('  or  ')}${CLUSTER ? '  (api nodes joined through Redis)' : ''}
    Login       ${credentials.admin.username} / ${credentials.admin.password}
    MQTT        mqtt://localhost:${config.MQTT_PORT} (MQTT 3.1.1)${config.MQTT_WS_PORT ? `, ws://localhost:${config.MQTT_WS_PORT}` : ''}${config.BROKER_HTTP_PORT ? ` · metrics http://localhost:${config.BROKER_HTTP_PORT}/metrics` : ''}${CLUSTER ? `
    Cluster     TCP front :${config.MQTT_PORT} → brokers ${topology.brokers.map((b) => `${b.name} :${b.mqttPort}`).join(', ')} · ingest ${topology.ingest.map((w) => `${w.name} (${w.shard})`).join(', ')} · Redis ${redis?.url ?? config.REDIS_URL}` : ''}
    InfluxDB    ${influxUrl} (database ${config.INFLUX_DATABASE})${config.INGEST_HTTP_PORT ? ` · ingest metrics http://localhost:${config.INGEST_HTTP_PORT}/metrics` : ''}
    Simulated   ${config.SIM_SCENARIO !== undefined ? `scenario ${config.SIM_SCENARIO}` : simulating ? `${provinces.length} provinces × ${config.SIM_DEVICES_PER_PROVINCE} devices per domain, every ${config.SIM_INTERVAL_MS} ms` : 'off'}${config.SIM_FAULTS ? `, faults ${config.SIM_FAULTS}` : ''}

  Publish as a real device (the demo device ${DEMO_DEVICE.deviceId}, in Hà Nội):

    mosquitto_pub -h localhost -p ${config.MQTT_PORT} -V mqttv311 -q 1 -i ${DEMO_DEVICE.deviceId} -u ${DEMO_DEVICE.deviceId} -P '${credentials.demoDevice.secret}' \\
      -t ${topic} -m "{\\"ts\\":$(date +%s%3N),\\"seq\\":1,\\"pm25\\":42.5,\\"pm10\\":71}"

  Credentials: ${join(config.DATA_DIR, 'credentials.json')} · logs: ${join(config.DATA_DIR, 'logs')}/ · Ctrl+C stops everything.
`);

  if (simulating) {
    const first = await waitForFirstReading(`http://127.0.0.1:${config.API_PORT}`, credentials.admin, 120_000);
    if (first) say(`first live reading on the map ${((Date.now() - startedAt) / 1000).toFixed(1)} s after npm start (device ${first})`);
  }
}

/** npm start: one broker, one ingest worker owning every province, one api; ports from the configuration. */
function singleTopology(config: ReturnType<typeof readConfig<typeof START_CONFIG>>): Topology {
  return {
    brokers: [{ name: 'broker', env: {}, mqttPort: config.MQTT_PORT }],
    ingest: [{ name: 'ingest', env: {}, shard: '1/1' }],
    apis: [{ name: 'api', env: {}, port: config.API_PORT }],
  };
}

/**
 * npm run cluster: the front takes MQTT_PORT; node 1 of each service keeps the configured ports
 * (WebSocket, metrics, the api's), node 2 takes free ones, printed at start.
 */
async function clusterTopology(config: ReturnType<typeof readConfig<typeof START_CONFIG>>): Promise<Topology> {
  const nodes = Array.from({ length: CLUSTER_NODES }, (_, i) => i + 1);
  const orFree = async (port: number, node: number) => (port === 0 ? 0 : node === 1 ? port : await freePort());
  const brokers = [];
  for (const n of nodes) {
    const mqttPort = await freePort();
    const env = {
      MQTT_PORT: String(mqttPort),
      MQTT_WS_PORT: String(await orFree(config.MQTT_WS_PORT, n)),
      BROKER_HTTP_PORT: String(await orFree(config.BROKER_HTTP_PORT, n)),
      BROKER_STORE: 'redis',
      BROKER_MQ: 'redis',
      BROKER_PROXY_PROTOCOL: 'true',
      REDIS_URL: config.REDIS_URL,
    };
    brokers.push({ name: `broker-${n}`, env, mqttPort });
  }
  const ingest = [];
  for (const n of nodes) {
    const shard = `${n}/${CLUSTER_NODES}`;
    ingest.push({ name: `ingest-${n}`, env: { INGEST_SHARD: shard, INGEST_HTTP_PORT: String(await orFree(config.INGEST_HTTP_PORT, n)) }, shard });
  }
  const apis = [];
  for (const n of nodes) {
    const port = n === 1 ? config.API_PORT : (await isPortFree(config.API_PORT + 1, '0.0.0.0')) ? config.API_PORT + 1 : await freePort();
    apis.push({ name: `api-${n}`, env: { API_PORT: String(port), API_ADAPTER: 'redis', REDIS_URL: config.REDIS_URL }, port });
  }
  return { front: config.MQTT_PORT, brokers, ingest, apis };
}

/**
 * The Redis of BROKER_STORE=redis, API_ADAPTER=redis, REGISTRY_STORE=redis or the local cluster: the one at REDIS_URL if something listens there (or it
 * is not on this machine: the broker then says whether it answers), else a private one on that port.
 */
async function ensureRedis(redisUrl: string, folder: string): Promise<RunningRedis | undefined> {
  const url = new URL(redisUrl);
  const port = Number(url.port || 6379);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) || !(await isPortFree(port))) return undefined;
  say(`starting Redis on 127.0.0.1:${port} (data in ${folder}) …`);
  return startRedis({ dataDir: folder, port, appendOnly: true, log: say });
}

/** Generates service secrets, the demo device and the first admin once, and keeps them in DATA_DIR/credentials.json (0600). */
async function ensureCredentials(dataDir: string, store: Omit<RegistryOpenOptions, 'watch'>): Promise<Credentials> {
  const file = join(dataDir, 'credentials.json');
  let credentials: Credentials | undefined;
  try {
    credentials = JSON.parse(await readFile(file, 'utf8')) as Credentials;
  } catch {
    credentials = undefined;
  }
  const registry = await DeviceRegistry.open(dataDir, store);
  const operators = await OperatorStore.open(dataDir);
  const fresh: Credentials = credentials ?? {
    services: { ingest: generateSecret(), api: generateSecret(), tools: generateSecret() },
    admin: { username: 'admin', password: '' },
    demoDevice: { id: DEMO_DEVICE.deviceId, secret: generateSecret() },
  };
  // Re-create whatever the registry lost (first start, a deleted devices.json, a new Redis).
  for (const [id, secret] of Object.entries(fresh.services) as [keyof Credentials['services'], string][]) {
    if (!(await registry.authenticate(id, secret))) await registry.upsertService(id, id, secret);
  }
  if (!(await registry.authenticate(DEMO_DEVICE.deviceId, fresh.demoDevice.secret))) {
    await registry.upsertDevices([{ id: DEMO_DEVICE.deviceId, province: DEMO_DEVICE.province, domain: DEMO_DEVICE.domain, kind: 'demo', name: DEMO_DEVICE.name, location: DEMO_DEVICE.location, secret: fresh.demoDevice.secret }]);
  }
  if (operators.count === 0 || !fresh.admin.password) {
    const password = (await operators.ensureFirstAdmin(fresh.admin.username)) ?? fresh.admin.password;
    fresh.admin.password = password;
  }
  registry.close();
  await writeFile(file, `${JSON.stringify(fresh, null, 1)}\n`, { mode: 0o600 });
  return fresh;
}

/** Prints a child's warnings and errors (pino JSON) and its plain lines; everything goes to its log file. */
function echo(name: string, line: string): void {
  if (!line.startsWith('{')) {
    if (name === 'simulators') console.log(`[${name}] ${line}`);
    return;
  }
  try {
    const entry = JSON.parse(line) as { level?: number; msg?: string; code?: string };
    if ((entry.level ?? 0) >= 40) console.log(`[${name}] ${entry.code ? `${entry.code} ` : ''}${entry.msg ?? line}`);
  } catch {
    console.log(`[${name}] ${line}`);
  }
}

async function waitForPort(port: number, timeoutMs: number, what: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const open = await new Promise<boolean>((done) => {
      const socket = connect(port, '127.0.0.1', () => {
        socket.end();
        done(true);
      });
      socket.on('error', () => done(false));
    });
    if (open) return;
    await sleep(100);
  }
  throw new Error(`${what} did not listen on port ${port} within ${timeoutMs / 1000} s`);
}

async function waitForHealth(url: string, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    try {
      if ((await fetch(url)).status === 200) return;
    } catch {
      // not up yet
    }
    await sleep(200);
  }
  throw new Error(`api did not become healthy at ${url} within ${timeoutMs / 1000} s`);
}

async function waitForFirstReading(apiUrl: string, admin: Credentials['admin'], timeoutMs: number): Promise<string | undefined> {
  const login = await fetch(`${apiUrl}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(admin) });
  if (login.status !== 200) return undefined;
  const { token } = (await login.json()) as { token: string };
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const res = await fetch(`${apiUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
    const body = (await res.json()) as { devices: { id: string; latest: unknown }[] };
    const live = body.devices.find((d) => d.latest);
    if (live) return live.id;
    await sleep(250);
  }
  return undefined;
}

main().catch((err: unknown) => {
  console.error(`[citypulse] ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
