import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeviceRegistry, generateSecret, hashSecret, isRandomSecret, type RegistryChange } from '../src/index.js';

describe('device registry', () => {
  let dir: string;
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-registry-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const hanoi = { id: 'hn-air-01', province: '01', domain: 'environment' as const, location: [105.8525, 21.0287] as const };

  it('stores only a salted hash and authenticates with the secret', async () => {
    const registry = await DeviceRegistry.open(dir);
    const [created] = await registry.upsertDevices([hanoi]);
    const text = await readFile(join(dir, 'devices.json'), 'utf8');
    expect(text).not.toContain(created?.secret);
    // A generated secret (192 random bits) takes the low scrypt cost; a chosen one the full cost.
    expect(text).toMatch(/scrypt\$1024\$8\$1\$/);
    expect(await hashSecret('correct horse battery staple')).toMatch(/^scrypt\$16384\$8\$1\$/);
    expect(await hashSecret('a'.repeat(40))).toMatch(/^scrypt\$16384\$/); // long but not random-looking
    expect(await hashSecret(generateSecret(), 'password')).toMatch(/^scrypt\$16384\$/); // people's passwords: always full cost
    expect(isRandomSecret(generateSecret())).toBe(true);
    expect(await registry.authenticate(hanoi.id, created?.secret ?? '')).toMatchObject({ type: 'device', device: { id: hanoi.id } });
    expect(await registry.authenticate(hanoi.id, 'wrong')).toBeUndefined();
    expect(await registry.authenticate('nobody', created?.secret ?? '')).toBeUndefined();
  });

  it('registers devices behind a gateway without a secret of their own', async () => {
    const registry = await DeviceRegistry.open(dir);
    await expect(registry.upsertDevices([{ ...hanoi, gateway: 'gw-01' }])).rejects.toThrow(/not a gateway account/);
    const gatewaySecret = await registry.upsertService('gw-01', 'gateway');
    const [created] = await registry.upsertDevices([{ ...hanoi, gateway: 'gw-01' }]);
    expect(created?.secret).toBeUndefined();
    expect(registry.device(hanoi.id)).toMatchObject({ gateway: 'gw-01', enabled: true });
    expect(registry.device(hanoi.id)?.secretHash).toBeUndefined();
    // The device cannot log in by itself; its gateway can.
    expect(await registry.authenticate(hanoi.id, '')).toBeUndefined();
    expect(await registry.authenticate('gw-01', gatewaySecret)).toMatchObject({ type: 'service', service: { role: 'gateway' } });
  });

  it('refuses bad device records with a clear message', async () => {
    const registry = await DeviceRegistry.open(dir);
    await expect(registry.upsertDevices([{ ...hanoi, id: 'Bad/Id' }])).rejects.toThrow(/device id/);
    await expect(registry.upsertDevices([{ ...hanoi, province: '02' }])).rejects.toThrow(/province/);
    await expect(registry.upsertDevices([{ ...hanoi, location: [106.7, 10.78] }])).rejects.toThrow(/not inside province 01/);
  });

  it('tells watchers which accounts were revoked, and refuses them', async () => {
    const writer = await DeviceRegistry.open(dir);
    const [created] = await writer.upsertDevices([hanoi]);
    const reader = await DeviceRegistry.open(dir, { watch: true });
    const change = new Promise<RegistryChange>((resolve) => reader.once('change', resolve));
    await writer.setEnabled(hanoi.id, false);
    expect((await change).revoked).toEqual([hanoi.id]);
    expect(await reader.authenticate(hanoi.id, created?.secret ?? '')).toBeUndefined();
    reader.close();
  });

  it('keeps concurrent writers from losing each other\'s devices', async () => {
    const a = await DeviceRegistry.open(dir);
    const b = await DeviceRegistry.open(dir);
    await Promise.all([
      a.upsertDevices([{ ...hanoi, id: 'dev-a1' }]),
      b.upsertDevices([{ ...hanoi, id: 'dev-b1' }]),
      a.upsertDevices([{ ...hanoi, id: 'dev-a2' }]),
      b.upsertDevices([{ ...hanoi, id: 'dev-b2' }]),
    ]);
    const fresh = await DeviceRegistry.open(dir);
    expect(fresh.devices.map((d) => d.id).sort()).toEqual(['dev-a1', 'dev-a2', 'dev-b1', 'dev-b2']);
  });

  it('updates an existing device\'s metadata and keeps its secret and enabled flag with existing: update', async () => {
    const registry = await DeviceRegistry.open(dir);
    const [created] = await registry.upsertDevices([hanoi]);
    const hashBefore = registry.device(hanoi.id)?.secretHash;
    await registry.setEnabled(hanoi.id, false);
    const [updated, added] = await registry.upsertDevices([{ ...hanoi, name: 'Trạm Hoàn Kiếm', kind: 'roadside' }, { ...hanoi, id: 'hn-air-02' }], { existing: 'update' });
    expect(updated).toEqual({ id: hanoi.id, secret: undefined });
    expect(added?.secret).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(registry.device(hanoi.id)).toMatchObject({ name: 'Trạm Hoàn Kiếm', kind: 'roadside', enabled: false, secretHash: hashBefore });
    await registry.setEnabled(hanoi.id, true);
    expect(await registry.authenticate(hanoi.id, created?.secret ?? '')).toBeDefined();
    // The default still re-provisions: a new secret, the old one stops working.
    const [replaced] = await registry.upsertDevices([hanoi]);
    expect(replaced?.secret).not.toBe(created?.secret);
    expect(await registry.authenticate(hanoi.id, created?.secret ?? '')).toBeUndefined();
  });

  it('refuses the whole write for an existing id with existing: refuse', async () => {
    const registry = await DeviceRegistry.open(dir);
    await registry.upsertDevices([hanoi]);
    await expect(registry.upsertDevices([{ ...hanoi, id: 'hn-air-03' }, hanoi], { existing: 'refuse' })).rejects.toThrow(/already exists/);
    expect(registry.device('hn-air-03')).toBeUndefined();
  });

  it('rotates a secret: the old one stops working', async () => {
    const registry = await DeviceRegistry.open(dir);
    const [created] = await registry.upsertDevices([hanoi]);
    const secret = await registry.rotateSecret(hanoi.id);
    expect(await registry.authenticate(hanoi.id, created?.secret ?? '')).toBeUndefined();
    expect(await registry.authenticate(hanoi.id, secret)).toBeDefined();
  });
});
