import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../src/cli/operators.js';
import { OperatorStore } from '../src/operators.js';

/** `pnpm operators …` against a temp data folder: what an admin on the server's shell does. */
describe('operators CLI', () => {
  let dir: string;
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-operators-cli-'));
  });
  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });
  const run = async (...argv: string[]) => {
    let stdout = '';
    let stderr = '';
    const code = await main(argv, { DATA_DIR: dir }, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
    return { code, stdout, stderr };
  };

  it('adds an operator with a generated password shown once, and keeps only its hash', async () => {
    const added = await run('add', 'hue-desk', '--role', 'operator', '--provinces', '46');
    expect(added.code).toBe(0);
    const password = /password \(shown once.*\): (\S+)/.exec(added.stdout)?.[1] as string;
    expect(password.length).toBeGreaterThanOrEqual(16);
    const file = await readFile(join(dir, 'operators.json'), 'utf8');
    expect(file).not.toContain(password);
    const store = await OperatorStore.open(dir);
    expect(await store.verify('hue-desk', password)).toMatchObject({ role: 'operator', provinces: ['46'] });
  });

  it('changes role, scope and password, disables, lists and removes', async () => {
    await run('add', 'root', '--role', 'admin');
    expect((await run('role', 'hue-desk', 'viewer')).code).toBe(0);
    expect((await run('scope', 'hue-desk', 'all')).code).toBe(0);
    const passwd = await run('passwd', 'hue-desk');
    const password = /: (\S+)$/m.exec(passwd.stdout)?.[1] as string;
    expect(await (await OperatorStore.open(dir)).verify('hue-desk', password)).toMatchObject({ role: 'viewer', provinces: null });
    expect((await run('disable', 'hue-desk')).code).toBe(0);
    const list = await run('list');
    expect(list.stdout).toMatch(/hue-desk\s+viewer\s+DISABLED all provinces/);
    expect(list.stdout).toMatch(/2 operator\(s\)/);
    expect((await run('remove', 'hue-desk')).code).toBe(0);
    expect((await run('list')).stdout).not.toContain('hue-desk');
  });

  it('refuses bad input with a code and a usage hint', async () => {
    await expect(run('add', 'x!', '--role', 'viewer')).rejects.toMatchObject({ code: 'E_BAD_REQUEST' });
    await expect(run('add', 'eve', '--role', 'god')).rejects.toMatchObject({ code: 'E_BAD_REQUEST' });
    await expect(run('scope', 'root', '99')).rejects.toMatchObject({ code: 'E_PROVINCE' });
    await expect(run('remove', 'root')).rejects.toMatchObject({ code: 'E_CONFLICT' });
    await expect(run('role', 'nobody', 'viewer')).rejects.toMatchObject({ code: 'E_NOT_FOUND' });
    expect((await run('frobnicate')).code).toBe(2);
    expect((await run()).stdout).toMatch(/usage: pnpm operators/);
  });
});
