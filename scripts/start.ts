/**
 * `npm start`: the whole platform on one machine with a simulated city. Starts a private InfluxDB
 * (unless INFLUX_URL points at one), the broker, ingest, the api with the dashboard, and the
 * simulators, each as its own process; generates local credentials at first start; prints the
 * dashboard URL, the login and a working mosquitto_pub line.
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
import { DeviceRegistry, generateSecret } from '@citypulse/broker';
import { OperatorStore } from '@citypulse/api';
import { Influx, isPortFree, freePort, startInfluxd, startRedis, SERVICE_NODE_FLAGS, type RunningInfluxd, type RunningRedis } from '@citypulse/infra';

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

  const credentials = await ensureCredentials(dataDir);
  const services: Service[] = [];
  let influxd: RunningInfluxd | undefined;
  let redis: RunningRedis | undefined;
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    say('stopping …');
    // Devices first (they publish their offline status), then the readers, then the broker, then the database.
    for (const group of [['simulators'], ['api', 'ingest'], ['broker']]) {
      const members = services.filter((s) => group.includes(s.name) && s.child.exitCode === null);
      for (const s of members) s.child.kill('SIGTERM');
      await Promise.all(members.map((s) => new Promise((r) => s.child.once('exit', r))));
    }
    await redis?.stop();
    await influxd?.stop();
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(0));
  process.on('SIGTERM', () => void stopAll(0));

  if (config.BROKER_STORE === 'redis') redis = await ensureRedis(config.REDIS_URL, join(dataDir, 'redis'));

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
    MQTT_URL: `mqtt://127.0.0.1:${config.MQTT_PORT}`,
    INGEST_MQTT_PASSWORD: credentials.services.ingest,
    API_MQTT_PASSWORD: credentials.services.api,
    CITYPULSE_SUPERVISED: '1',
  };
  const launch = (name: string, script: string, args: string[] = []) => {
    // stdin stays open: a supervised child stops by itself when this process dies (see onShutdown).
    const child = spawn(join(ROOT, 'node_modules', '.bin', 'tsx'), [...SERVICE_NODE_FLAGS, join(ROOT, script), ...args], { cwd: ROOT, env, stdio: ['pipe', 'pipe', 'pipe'] });
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

  launch('broker', 'broker/src/server.ts');
  await waitForPort(config.MQTT_PORT, 30_000, 'broker');
  launch('ingest', 'ingest/src/server.ts');
  launch('api', 'api/src/server.ts');
  const apiUrl = `http://localhost:${config.API_PORT}`;
  await waitForHealth(`http://127.0.0.1:${config.API_PORT}/healthz`, 60_000);

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

    Dashboard   ${apiUrl}
    Login       ${credentials.admin.username} / ${credentials.admin.password}
    MQTT        mqtt://localhost:${config.MQTT_PORT} (MQTT 3.1.1)${config.MQTT_WS_PORT ? `, ws://localhost:${config.MQTT_WS_PORT}` : ''}${config.BROKER_HTTP_PORT ? ` · metrics http://localhost:${config.BROKER_HTTP_PORT}/metrics` : ''}
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

/**
 * The broker's Redis when BROKER_STORE=redis: the one at REDIS_URL if something listens there (or it
 * is not on this machine: the broker then says whether it answers), else a private one on that port.
 */
async function ensureRedis(redisUrl: string, folder: string): Promise<RunningRedis | undefined> {
  const url = new URL(redisUrl);
  const port = Number(url.port || 6379);
  if (!['127.0.0.1', 'localhost', '[::1]'].includes(url.hostname) || !(await isPortFree(port))) return undefined;
  say(`starting Redis on 127.0.0.1:${port} for the broker's sessions (data in ${folder}) …`);
  return startRedis({ dataDir: folder, port, appendOnly: true, log: say });
}

/** Generates service secrets, the demo device and the first admin once, and keeps them in DATA_DIR/credentials.json (0600). */
async function ensureCredentials(dataDir: string): Promise<Credentials> {
  const file = join(dataDir, 'credentials.json');
  let credentials: Credentials | undefined;
  try {
    credentials = JSON.parse(await readFile(file, 'utf8')) as Credentials;
  } catch {
    credentials = undefined;
  }
  const registry = await DeviceRegistry.open(dataDir);
  const operators = await OperatorStore.open(dataDir);
  const fresh: Credentials = credentials ?? {
    services: { ingest: generateSecret(), api: generateSecret(), tools: generateSecret() },
    admin: { username: 'admin', password: '' },
    demoDevice: { id: DEMO_DEVICE.deviceId, secret: generateSecret() },
  };
  // Re-create whatever the registry lost (first start, or a deleted devices.json).
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
