import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { CodedError } from '@citypulse/contracts';
import { connectRedis, freePort, SERVICE_NODE_FLAGS, startRedis, waitFor, type RunningRedis } from '@citypulse/infra';
import { main as devicesCli } from '../src/cli/devices.js';
import { readRegistryFile, type DeviceRecord } from '../src/registry.js';
import { RedisRegistryStore } from '../src/registry-redis.js';
import { DeviceRegistry, registryStoreOptions, type RegistryChange, type RegistryLogger, type RegistryOpenOptions, type RegistryStoreKind } from '../src/index.js';

/**
 * The device registry on both stores: the same contract on the file (DATA_DIR/devices.json) and on
 * Redis (REGISTRY_STORE=redis, a real redis-server from Debian on a free port), then what only the
 * Redis store has to get right: changes reaching other processes through the change channel,
 * concurrent writers, the one-time import of devices.json, a resync after Redis restarts, and a
 * broker process authenticating against a registry another process writes.
 */
const BROKER_DIR = join(import.meta.dirname, '..');
const hanoi = { id: 'hn-air-01', province: '01', domain: 'environment' as const, location: [105.8525, 21.0287] as const };
const device = (id: string) => ({ ...hanoi, id });

let redis: RunningRedis;
let workDir: string;
/** Each test gets its own Redis database (and so its own change channel): nothing leaks between tests. */
let nextDb = 1;
const opened: DeviceRegistry[] = [];
const dirs: string[] = [];

beforeAll(async () => {
  workDir = await mkdtemp(join(tmpdir(), 'citypulse-registry-redis-'));
  redis = await startRedis({ dataDir: join(workDir, 'redis') });
}, 30_000);

afterAll(async () => {
  await redis?.stop();
  if (workDir) await rm(workDir, { recursive: true, force: true });
});

afterEach(async () => {
  for (const registry of opened.splice(0)) registry.close();
  for (const dir of dirs.splice(0)) await rm(dir, { recursive: true, force: true });
});

const tempDir = async () => {
  const dir = await mkdtemp(join(tmpdir(), 'citypulse-registry-'));
  dirs.push(dir);
  return dir;
};

/** Opens a registry on `store`; every registry of one test shares the test's folder and database. */
function storeOf(kind: RegistryStoreKind) {
  const db = kind === 'redis' ? nextDb++ : 0;
  const url = `${redis.url}/${db}`;
  const open = async (dir: string, options: Omit<RegistryOpenOptions, 'store' | 'redisUrl'> = {}) => {
    const registry = await DeviceRegistry.open(dir, kind === 'redis' ? { ...options, store: 'redis', redisUrl: url } : options);
    opened.push(registry);
    return registry;
  };
  return { url, open };
}

const codeOf = async (promise: Promise<unknown>): Promise<string | undefined> =>
  promise.then(
    () => undefined,
    (err: unknown) => (err as CodedError).code,
  );

describe.each(['file', 'redis'] as const)('device registry contract (%s store)', (kind) => {
  it('stores only a hash, authenticates, and refuses a wrong secret or an unknown id', async () => {
    const { open } = storeOf(kind);
    const registry = await open(await tempDir());
    const [created] = await registry.upsertDevices([hanoi]);
    expect(registry.device(hanoi.id)?.secretHash).toMatch(/^scrypt\$1024\$/);
    expect(JSON.stringify(registry.devices)).not.toContain(created?.secret);
    expect(await registry.authenticate(hanoi.id, created?.secret ?? '')).toMatchObject({ type: 'device', device: { id: hanoi.id, enabled: true } });
    expect(await registry.authenticate(hanoi.id, 'wrong')).toBeUndefined();
    expect(await registry.authenticate('nobody', created?.secret ?? '')).toBeUndefined();
    await expect(registry.upsertDevices([{ ...hanoi, location: [106.7, 10.78] }])).rejects.toThrow(/not inside province 01/);
  });

  it('re-provisions, updates (keeping secret and enabled flag) or refuses an existing device', async () => {
    const { open } = storeOf(kind);
    const registry = await open(await tempDir());
    const [created] = await registry.upsertDevices([hanoi]);
    const hash = registry.device(hanoi.id)?.secretHash;
    await registry.setEnabled(hanoi.id, false);
    await registry.upsertDevices([{ ...hanoi, name: 'Trạm Hoàn Kiếm' }], { existing: 'update' });
    expect(registry.device(hanoi.id)).toMatchObject({ name: 'Trạm Hoàn Kiếm', enabled: false, secretHash: hash });
    await expect(registry.upsertDevices([device('hn-air-03'), hanoi], { existing: 'refuse' })).rejects.toThrow(/already exists/);
    expect(registry.device('hn-air-03')).toBeUndefined();
    const [replaced] = await registry.upsertDevices([hanoi]);
    expect(registry.device(hanoi.id)?.enabled).toBe(true);
    expect(await registry.authenticate(hanoi.id, created?.secret ?? '')).toBeUndefined();
    expect(await registry.authenticate(hanoi.id, replaced?.secret ?? '')).toBeDefined();
  });

  it('rotates, disables, enables and removes, telling a watching reader what was revoked', async () => {
    const { open } = storeOf(kind);
    const dir = await tempDir();
    const writer = await open(dir);
    const [created] = await writer.upsertDevices([hanoi]);
    const reader = await open(dir, { watch: true });
    const revoked = () => new Promise<RegistryChange>((resolve) => reader.once('change', resolve));

    let change = revoked();
    const secret = await writer.rotateSecret(hanoi.id);
    expect((await change).revoked).toEqual([hanoi.id]);
    expect(await reader.authenticate(hanoi.id, created?.secret ?? '')).toBeUndefined();
    expect(await reader.authenticate(hanoi.id, secret)).toBeDefined();

    change = revoked();
    await writer.setEnabled(hanoi.id, false);
    expect((await change).revoked).toEqual([hanoi.id]);
    expect(await reader.authenticate(hanoi.id, secret)).toBeUndefined();
    await writer.setEnabled(hanoi.id, true);
    await waitFor('the device enabled on the reader', () => (reader.device(hanoi.id)?.enabled ? true : undefined));
    expect(await reader.authenticate(hanoi.id, secret)).toBeDefined();

    change = revoked();
    await writer.removeDevice(hanoi.id);
    expect((await change).revoked).toEqual([hanoi.id]);
    expect(reader.device(hanoi.id)).toBeUndefined();
    expect(await codeOf(writer.removeDevice(hanoi.id))).toBe('E_NOT_FOUND');
    expect(await codeOf(writer.setEnabled(hanoi.id, true))).toBe('E_NOT_FOUND');
    expect(await codeOf(writer.rotateSecret(hanoi.id))).toBe('E_NOT_FOUND');
  });

  it('keeps service accounts and devices apart; devices behind a gateway have no secret', async () => {
    const { open } = storeOf(kind);
    const dir = await tempDir();
    const registry = await open(dir);
    const ingestSecret = await registry.upsertService('ingest', 'ingest');
    expect(await registry.authenticate('ingest', ingestSecret)).toMatchObject({ type: 'service', service: { role: 'ingest' } });
    await expect(registry.upsertDevices([device('ingest')])).rejects.toThrow(/already a service account id/);
    await registry.upsertDevices([hanoi]);
    await expect(registry.upsertService(hanoi.id, 'tools')).rejects.toThrow(/already a device id/);
    await expect(registry.upsertDevices([{ ...device('hn-air-02'), gateway: 'gw-01' }])).rejects.toThrow(/not a gateway account/);
    const gatewaySecret = await registry.upsertService('gw-01', 'gateway');
    const [behind] = await registry.upsertDevices([{ ...device('hn-air-02'), gateway: 'gw-01' }]);
    expect(behind?.secret).toBeUndefined();
    expect(await registry.authenticate('hn-air-02', '')).toBeUndefined();
    expect(await registry.authenticate('gw-01', gatewaySecret)).toMatchObject({ type: 'service', service: { role: 'gateway' } });
    // A second open reads the same records.
    const again = await open(dir);
    expect(again.devices.map((d) => d.id).sort()).toEqual(['hn-air-01', 'hn-air-02']);
    expect(again.service('gw-01')).toEqual(registry.service('gw-01'));
    expect(again.device('hn-air-02')).toEqual(registry.device('hn-air-02'));
  });
});

describe('device registry on Redis', () => {
  it('stores the records as devices.json holds them, one hash field each, and writes no file', async () => {
    const { url, open } = storeOf('redis');
    const dir = await tempDir();
    const registry = await open(dir);
    await registry.upsertDevices([hanoi]);
    await registry.upsertService('api', 'api');
    const { conn } = await connectRedis(url, { purpose: 'test', logger: { warn: () => undefined } });
    try {
      expect(JSON.parse((await conn.hget('registry:devices', hanoi.id)) ?? '')).toEqual(registry.device(hanoi.id));
      expect(JSON.parse((await conn.hget('registry:services', 'api')) ?? '')).toEqual(registry.service('api'));
      expect(Number(await conn.get('registry:version'))).toBe(2);
    } finally {
      conn.disconnect();
    }
    expect(registry.where).toBe(url);
    expect(await codeOf(stat(registry.file))).toBe('ENOENT');
  });

  it('shows a write on one node to another node without restart, through the change channel', async () => {
    const { open } = storeOf('redis');
    const [dirA, dirB] = [await tempDir(), await tempDir()]; // two hosts: no shared folder
    const a = await open(dirA, { watch: true });
    const b = await open(dirB, { watch: true });
    const [created] = await a.upsertDevices([hanoi]);
    await waitFor('the device on node b', () => b.device(hanoi.id));
    expect(b.device(hanoi.id)).toEqual(a.device(hanoi.id));
    expect(await b.authenticate(hanoi.id, created?.secret ?? '')).toBeDefined();
    const revoked = new Promise<RegistryChange>((resolve) => b.once('change', resolve));
    await a.setEnabled(hanoi.id, false);
    expect((await revoked).revoked).toEqual([hanoi.id]);
    expect(await b.authenticate(hanoi.id, created?.secret ?? '')).toBeUndefined();
    // And back: b writes, a sees it.
    await b.upsertService('tools', 'tools');
    await waitFor('the service on node a', () => a.service('tools'));
  });

  it('finds a device provisioned a moment ago by another process at its first login, before the message', async () => {
    const { open } = storeOf('redis');
    const reader = await open(await tempDir()); // no watch: only the version tells it
    const writer = await open(await tempDir());
    const [created] = await writer.upsertDevices([hanoi]);
    expect(reader.device(hanoi.id)).toBeUndefined();
    expect(await reader.authenticate(hanoi.id, created?.secret ?? '')).toMatchObject({ type: 'device' });
  });

  it('loses nothing with concurrent writers, and never resurrects a removed device', async () => {
    const { open } = storeOf('redis');
    const a = await open(await tempDir(), { watch: true });
    const b = await open(await tempDir(), { watch: true });
    await a.upsertDevices([hanoi]);
    await waitFor('the device on b', () => b.device(hanoi.id));
    // Distinct devices from both nodes at once, and the same device rotated from both at once.
    const results = await Promise.allSettled([
      ...Array.from({ length: 20 }, (_, i) => (i % 2 ? a : b).upsertDevices([device(`dev-${i}`)])),
      ...Array.from({ length: 12 }, (_, i) => (i % 2 ? a : b).rotateSecret(hanoi.id)),
    ]);
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    const fresh = await open(await tempDir());
    expect(fresh.devices.map((d) => d.id).sort()).toEqual([hanoi.id, ...Array.from({ length: 20 }, (_, i) => `dev-${i}`)].sort());
    // The last rotation won: exactly one of the returned secrets works.
    const secrets = results.slice(20).map((r) => (r as PromiseFulfilledResult<string>).value);
    const working = await Promise.all(secrets.map((s) => fresh.authenticate(hanoi.id, s)));
    expect(working.filter(Boolean)).toHaveLength(1);
    await waitFor('both nodes agree', () => (a.device(hanoi.id)?.secretHash === fresh.device(hanoi.id)?.secretHash && b.device(hanoi.id)?.secretHash === fresh.device(hanoi.id)?.secretHash ? true : undefined));

    // b still has the device in memory when a removes it: b's writes must not bring it back.
    const stale = await open(await tempDir());
    await a.removeDevice(hanoi.id);
    expect(stale.device(hanoi.id)).toBeDefined();
    expect(await codeOf(stale.setEnabled(hanoi.id, false))).toBe('E_NOT_FOUND');
    expect(await codeOf(stale.rotateSecret(hanoi.id))).toBe('E_NOT_FOUND');
    const removedRace = await Promise.allSettled([a.upsertDevices([device('race-01')]).then(() => a.removeDevice('race-01')), b.setEnabled('race-01', false).catch(() => undefined)]);
    expect(removedRace[0].status).toBe('fulfilled');
    expect((await open(await tempDir())).device(hanoi.id)).toBeUndefined();
    await waitFor('race-01 gone everywhere', () => (!a.device('race-01') && !b.device('race-01') ? true : undefined));
    expect((await open(await tempDir())).device('race-01')).toBeUndefined();
  });

  it('computes a write again when its record changed between read and write: a removed device is not brought back', async () => {
    const { url, open } = storeOf('redis');
    const registry = await open(await tempDir());
    await registry.upsertDevices([hanoi]);
    const { conn } = await connectRedis(url, { purpose: 'test', logger: { warn: () => undefined } });
    const store = new RedisRegistryStore({ file: registry.file, sink: { replace: () => undefined, patch: () => undefined }, redisUrl: url, readFile: readRegistryFile });
    try {
      await store.open(false);
      const seen: (DeviceRecord | undefined)[] = [];
      // setEnabled's change, with another node removing the device after it was read: the removal
      // is sent before this write's script (and on another connection, as another node's would be).
      const write = store.write({ devices: [hanoi.id], services: [] }, (data) => {
        const record = data.devices[hanoi.id];
        seen.push(record);
        if (seen.length === 1) void conn.hdel('registry:devices', hanoi.id);
        if (!record) throw new CodedError('E_NOT_FOUND', `no device "${hanoi.id}"`);
        data.devices[hanoi.id] = { ...record, enabled: false };
      });
      expect(await codeOf(write)).toBe('E_NOT_FOUND');
      expect(seen.map((r) => r?.id)).toEqual([hanoi.id, undefined]);
      expect(await conn.hexists('registry:devices', hanoi.id)).toBe(0);
    } finally {
      store.close();
      conn.disconnect();
    }
  });

  it('imports DATA_DIR/devices.json once into an empty registry, and copies one in on `devices migrate`', async () => {
    const { url, open } = storeOf('redis');
    const dir = await tempDir();
    // A single host's registry, as npm start leaves it.
    const single = await DeviceRegistry.open(dir);
    const [created] = await single.upsertDevices([hanoi, device('hn-air-02')]);
    await single.upsertService('ingest', 'ingest', 'ingest-secret-ingest-secret-1234');
    single.close();

    const logged: string[] = [];
    const logger: RegistryLogger = { info: (_, message) => logged.push(message), warn: (_, message) => logged.push(message) };
    const cluster = await open(dir, { logger });
    expect(logged).toEqual([expect.stringMatching(/imported 2 devices and 1 service accounts from .*devices\.json into Redis/)]);
    expect(cluster.devices.map((d) => d.id).sort()).toEqual(['hn-air-01', 'hn-air-02']);
    expect(await cluster.authenticate(hanoi.id, created?.secret ?? '')).toBeDefined();
    expect(await cluster.authenticate('ingest', 'ingest-secret-ingest-secret-1234')).toBeDefined();

    // Once: a device removed in Redis stays removed on the next start, though the file still has it.
    await cluster.removeDevice('hn-air-02');
    logged.length = 0;
    const restarted = await open(dir, { logger });
    expect(restarted.device('hn-air-02')).toBeUndefined();
    expect(logged).toEqual([]);

    // Another host's registry, merged explicitly: new ids added, known ones left as they are.
    const other = await tempDir();
    const second = await DeviceRegistry.open(other);
    await second.upsertDevices([device('hn-air-02'), { ...hanoi, name: 'not this one' }]);
    second.close();
    const out: string[] = [];
    const code = await devicesCli(['migrate', join(other, 'devices.json')], { DATA_DIR: dir, REGISTRY_STORE: 'redis', REDIS_URL: url }, { stdout: (t) => out.push(t), stderr: (t) => out.push(t) });
    expect(code).toBe(0);
    expect(out.join('')).toMatch(/1 device\(s\) and 0 service account\(s\) added, 1 already registered/);
    const merged = await open(dir);
    expect(merged.device('hn-air-02')).toBeDefined();
    expect(merged.device(hanoi.id)?.name).toBe(hanoi.id);
    // The CLI on the file store has nothing to migrate into.
    expect(await codeOf(devicesCli(['migrate'], { DATA_DIR: dir }, { stdout: () => undefined, stderr: () => undefined }))).toBe('E_CONFIG');
    // And lists the Redis registry when told to.
    out.length = 0;
    expect(await devicesCli(['list'], { DATA_DIR: other, REGISTRY_STORE: 'redis', REDIS_URL: url }, { stdout: (t) => out.push(t), stderr: (t) => out.push(t) })).toBe(0);
    expect(out.join('')).toMatch(/2 device\(s\)/);
  });

  it('reads everything again when it may have missed a change (its subscription dropped)', async () => {
    const { url, open } = storeOf('redis');
    const reader = await open(await tempDir(), { watch: true });
    const writer = await open(await tempDir());
    await writer.upsertDevices([hanoi]);
    await waitFor('the device on the reader', () => reader.device(hanoi.id));
    const { conn } = await connectRedis(url, { purpose: 'test', logger: { warn: () => undefined } });
    try {
      // A change whose message nobody hears (written behind the registry's back), then the
      // reader's subscriber connection is cut, as by a network outage.
      await conn.hset('registry:devices', 'hn-air-09', JSON.stringify({ ...writer.device(hanoi.id), id: 'hn-air-09' }));
      await conn.client('KILL', 'TYPE', 'pubsub');
    } finally {
      conn.disconnect();
    }
    await waitFor('the unannounced device after the resync', () => reader.device('hn-air-09'), 15_000);
  });

  it('keeps logins going from memory while Redis is down, refuses writes with E_UPSTREAM, and resyncs after Redis restarts', async () => {
    const dir = join(workDir, 'restart');
    let own = await startRedis({ dataDir: dir, appendOnly: true });
    try {
      const url = `${own.url}/0`;
      const logged: string[] = [];
      const logger: RegistryLogger = { info: (_, message) => logged.push(message), warn: (_, message) => logged.push(message) };
      const reader = await DeviceRegistry.open(await tempDir(), { store: 'redis', redisUrl: url, watch: true, logger });
      opened.push(reader);
      const writer = await DeviceRegistry.open(await tempDir(), { store: 'redis', redisUrl: url });
      opened.push(writer);
      const [created] = await writer.upsertDevices([hanoi]);
      await waitFor('the device on the reader', () => reader.device(hanoi.id));

      await own.stop();
      await waitFor('the outage noticed', () => (logged.some((m) => /unavailable/.test(m)) ? true : undefined));
      expect(await reader.authenticate(hanoi.id, created?.secret ?? '')).toBeDefined();
      const started = Date.now();
      expect(await codeOf(reader.authenticate('unknown-01', 'x'))).toBeUndefined();
      expect(await codeOf(writer.upsertDevices([device('hn-air-02')]))).toBe('E_UPSTREAM');
      expect(Date.now() - started, 'neither the lookup nor the write waits for Redis').toBeLessThan(1_000);

      own = await startRedis({ dataDir: dir, port: own.port, appendOnly: true });
      await waitFor('the resync', () => (logged.some((m) => /read again from Redis/.test(m)) ? true : undefined), 20_000);
      expect(reader.device(hanoi.id)).toBeDefined();
      await waitFor('the writer back', async () => ((await codeOf(writer.upsertDevices([device('hn-air-02')]))) === undefined ? true : undefined), 20_000, 200);
      await waitFor('a change after the restart, through the channel', () => reader.device('hn-air-02'));
    } finally {
      await own.stop();
    }
  }, 60_000);

  it('says what to set when REDIS_URL is missing or wrong, and what to do when Redis does not answer', async () => {
    const dir = await tempDir();
    const failure = (options: RegistryOpenOptions) =>
      DeviceRegistry.open(dir, options).then(
        () => ({ code: 'opened', message: '' }),
        (err: unknown) => ({ code: (err as CodedError).code, message: (err as Error).message }),
      );
    const missing = await failure({ store: 'redis' });
    expect(missing.code).toBe('E_CONFIG');
    expect(missing.message).toContain('REDIS_URL is required when REGISTRY_STORE=redis, e.g. redis://');
    const wrong = await failure({ store: 'redis', redisUrl: 'http://127.0.0.1:6379' });
    expect(wrong.code).toBe('E_CONFIG');
    expect(wrong.message).toContain('REDIS_URL must start with redis://');
    expect(() => registryStoreOptions({ REGISTRY_STORE: 'etcd' })).toThrow(/REGISTRY_STORE="etcd" must be one of file, redis/);
    const down = await failure({ store: 'redis', redisUrl: `redis://127.0.0.1:${await freePort()}/0` });
    expect(down.code).toBe('E_UPSTREAM');
    expect(down.message).toMatch(/cannot reach Redis at redis:\/\/127\.0\.0\.1:\d+\/0 for the device registry .*or set REGISTRY_STORE=file/);
  });
});

describe('a broker process on the Redis registry', () => {
  it('logs in a device that another process registered after the broker started, and disconnects it when disabled', async () => {
    const { url, open } = storeOf('redis');
    const port = await freePort();
    const child = spawn(process.execPath, [...SERVICE_NODE_FLAGS, '--import', 'tsx', 'src/server.ts'], {
      cwd: BROKER_DIR,
      env: {
        ...process.env,
        DATA_DIR: await tempDir(),
        MQTT_HOST: '127.0.0.1',
        MQTT_PORT: String(port),
        MQTT_WS_PORT: '0',
        BROKER_HTTP_PORT: '0',
        BROKER_STORE: 'memory',
        REGISTRY_STORE: 'redis',
        REDIS_URL: url,
        LOG_LEVEL: 'info',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (chunk: Buffer) => (output += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (output += chunk.toString()));
    const exited = once(child, 'exit');
    try {
      await waitFor(`the broker to start (output: ${output.slice(-400)})`, () => (output.includes('broker listening') ? true : undefined), 60_000, 50);
      expect(output).toContain(`"registry":"redis (redis://127.0.0.1:${redis.port}/`);
      // This test process is the provisioning tool: the broker has never seen the device.
      const registry = await open(await tempDir());
      const [created] = await registry.upsertDevices([hanoi]);
      const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: hanoi.id, username: hanoi.id, password: created?.secret ?? '', protocolVersion: 4, reconnectPeriod: 0 });
      const closed = new Promise<void>((resolve) => client.once('close', () => resolve()));
      await registry.setEnabled(hanoi.id, false);
      await closed;
      await expect(mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: hanoi.id, username: hanoi.id, password: created?.secret ?? '', protocolVersion: 4, reconnectPeriod: 0 })).rejects.toThrow(/Not authorized|Bad username or password/);
      client.end(true);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }, 90_000);
});
