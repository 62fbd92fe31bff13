import { spawn, type ChildProcess } from 'node:child_process';
import { readFile, mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { deviceTopic } from '@citypulse/contracts';
import { shardOf } from '@citypulse/ingest';
import { DeviceRegistry } from '@citypulse/broker/registry';
import { freePort, Influx } from '@citypulse/infra';
import { waitFor } from './stack.js';

/**
 * `npm run cluster` as a user runs it (scripts/start.ts --cluster, what `node scripts/run.mjs
 * cluster` starts once the workspace is installed): one command brings up Redis, InfluxDB, two
 * brokers behind the TCP front, two ingest shards, two api nodes and the simulated city. Checked
 * from outside, as an operator and a device would: both dashboards serve the same live devices,
 * a device publishing through the front shows on both api nodes, readings of both shards'
 * provinces are stored, and Ctrl+C (SIGTERM) stops everything.
 */
const ROOT = fileURLToPath(new URL('..', import.meta.url));
const [PROVINCE_1, PROVINCE_2] = [shardOf(1, 2).provinces[0] as string, shardOf(2, 2).provinces[0] as string];

let child: ChildProcess | undefined;
let exited: Promise<number | null>;
let output = '';
let dataDir: string;
let mqttPort: number;
let apiUrls: string[] = [];
let influxUrl: string;
let redisUrl: string;

beforeAll(async () => {
  dataDir = await mkdtemp(join(tmpdir(), 'citypulse-cluster-e2e-'));
  [mqttPort] = [await freePort()];
  const [apiPort, influxPort, redisPort] = [await freePort(), await freePort(), await freePort()];
  redisUrl = `redis://127.0.0.1:${redisPort}/0`;
  child = spawn(join(ROOT, 'node_modules', '.bin', 'tsx'), [join(ROOT, 'scripts', 'start.ts'), '--cluster'], {
    cwd: ROOT,
    env: {
      ...process.env,
      DATA_DIR: dataDir,
      MQTT_PORT: String(mqttPort),
      MQTT_WS_PORT: '0',
      BROKER_HTTP_PORT: '0',
      INGEST_HTTP_PORT: '0',
      API_PORT: String(apiPort),
      INFLUX_PORT: String(influxPort),
      REDIS_URL: redisUrl,
      SIM_PROVINCES: `${PROVINCE_1},${PROVINCE_2}`,
      SIM_DOMAINS: 'environment,traffic',
      SIM_DEVICES_PER_PROVINCE: '2',
      SIM_INTERVAL_MS: '1000',
      LOG_LEVEL: 'info',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
  exited = new Promise((resolve) => child?.once('exit', (code) => resolve(code)));
  await waitFor(() => (output.includes('CityPulse VN is running') ? true : undefined), 150_000, `the cluster to start; output so far:\n${output.slice(-1500)}`);
  const dashboards = /Dashboard\s+(.+)/.exec(output)?.[1] ?? '';
  apiUrls = [...dashboards.matchAll(/http:\/\/localhost:(\d+)/g)].map((m) => `http://127.0.0.1:${m[1]}`);
  influxUrl = /InfluxDB\s+(http:\/\/\S+)/.exec(output)?.[1] ?? '';
}, 180_000);

afterAll(async () => {
  if (child && child.exitCode === null) {
    child.kill('SIGTERM');
    await Promise.race([exited, sleep(30_000)]);
  }
  if (dataDir) await rm(dataDir, { recursive: true, force: true });
}, 60_000);

async function login(apiUrl: string): Promise<string> {
  const credentials = JSON.parse(await readFile(join(dataDir, 'credentials.json'), 'utf8')) as { admin: { username: string; password: string } };
  const res = await fetch(`${apiUrl}/api/v1/auth/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(credentials.admin) });
  expect(res.status).toBe(200);
  return ((await res.json()) as { token: string }).token;
}

async function devices(apiUrl: string, token: string): Promise<{ id: string; province: string; latest?: { ts: number; values: Record<string, unknown> } }[]> {
  const res = await fetch(`${apiUrl}/api/v1/devices`, { headers: { authorization: `Bearer ${token}` } });
  expect(res.status).toBe(200);
  return ((await res.json()) as { devices: { id: string; province: string; latest?: { ts: number; values: Record<string, unknown> } }[] }).devices;
}

describe('npm run cluster', () => {
  it('prints the cluster it started: the TCP front, two brokers, two ingest shards, two dashboards', () => {
    expect(output).toMatch(/Cluster\s+TCP front :\d+ → brokers broker-1 :\d+, broker-2 :\d+ · ingest ingest-1 \(1\/2\), ingest-2 \(2\/2\)/);
    expect(apiUrls).toHaveLength(2);
    expect(influxUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
  });

  it('serves the same live devices on both api nodes, from provinces of both shards', async () => {
    const tokens = await Promise.all(apiUrls.map(login));
    for (const [i, apiUrl] of apiUrls.entries()) {
      const live = await waitFor(async () => {
        const list = await devices(apiUrl, tokens[i] as string);
        const withReadings = list.filter((d) => d.latest && d.id.startsWith('sim-'));
        return withReadings.length >= 8 ? withReadings : undefined;
      }, 90_000, `live readings of the 8 simulated devices on ${apiUrl}`);
      expect(new Set(live.map((d) => d.province))).toEqual(new Set([PROVINCE_1, PROVINCE_2]));
    }
  });

  it('takes a device through the TCP front and shows its reading on both api nodes', async () => {
    const credentials = JSON.parse(await readFile(join(dataDir, 'credentials.json'), 'utf8')) as { demoDevice: { id: string; secret: string } };
    const device = await mqtt.connectAsync(`mqtt://127.0.0.1:${mqttPort}`, { clientId: credentials.demoDevice.id, username: credentials.demoDevice.id, password: credentials.demoDevice.secret, protocolVersion: 4, reconnectPeriod: 0 });
    const ts = Date.now();
    await device.publishAsync(deviceTopic({ province: '01', domain: 'environment', deviceId: credentials.demoDevice.id }, 'telemetry'), JSON.stringify({ ts, seq: 1, pm25: 42.5, pm10: 71 }), { qos: 1 });
    await device.endAsync();
    for (const apiUrl of apiUrls) {
      const token = await login(apiUrl);
      await waitFor(async () => ((await devices(apiUrl, token)).find((d) => d.id === credentials.demoDevice.id)?.latest?.ts === ts ? true : undefined), 30_000, `the demo reading on ${apiUrl}`);
    }
  });

  it('keeps the device registry in Redis, with the service accounts, the demo device and the fleet, and no devices.json', async () => {
    const registry = await DeviceRegistry.open(dataDir, { store: 'redis', redisUrl });
    try {
      expect(['ingest', 'api', 'tools'].map((id) => registry.service(id)?.role)).toEqual(['ingest', 'api', 'tools']);
      expect(registry.devices.filter((d) => d.id.startsWith('sim-')).length).toBe(8);
      expect(registry.device('demo-hn-air-01')).toBeDefined();
    } finally {
      registry.close();
    }
    expect(await stat(join(dataDir, 'devices.json')).catch(() => undefined)).toBeUndefined();
  });

  it('stores the readings of both shards in InfluxDB', async () => {
    const influx = new Influx({ url: influxUrl, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' });
    const count = async (province: string) => {
      let stored = 0;
      for (const measurement of ['environment', 'traffic']) {
        const [series = []] = await influx.query(`SELECT count("seq") FROM "${measurement}" WHERE "province" = $province`, { province });
        stored += Number(series[0]?.values[0]?.[1] ?? 0);
      }
      return stored;
    };
    for (const province of [PROVINCE_1, PROVINCE_2]) await waitFor(async () => ((await count(province)) > 0 ? true : undefined), 60_000, `readings of province ${province} stored`);
  });

  it('stops every process on SIGTERM (Ctrl+C)', async () => {
    child?.kill('SIGTERM');
    expect(await Promise.race([exited, sleep(45_000).then(() => 'still running')])).toBe(0);
    expect(output).toContain('stopping');
  }, 60_000);
});
