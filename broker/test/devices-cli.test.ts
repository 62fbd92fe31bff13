import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DeviceRegistry } from '../src/index.js';
import { formatCsvError, parseDeviceCsv } from '../src/cli/devices-import.js';
import { main, parseDevicesArgs } from '../src/cli/devices.js';

const BROKER = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const TSX = join(BROKER, 'node_modules', '.bin', 'tsx');
const CLI = join(BROKER, 'src', 'cli', 'devices.ts');

const HEADER = 'id,province,domain,kind,name,lng,lat';
const GOOD = [
  HEADER,
  'hn-air-01,01,environment,roadside,"Trạm Hoàn Kiếm, Hà Nội",105.8525,21.0287',
  'hcm-trf-01,79,traffic,arterial,"Ngã tư ""Hàng Xanh"", Bình Thạnh",106.7,10.78',
  'dn-air-01,48,environment,,Đà Nẵng,108.22,16.07',
].join('\n');

/** Runs the CLI in-process, as `pnpm devices …` would, and captures what it prints. */
async function cli(dataDir: string, ...argv: string[]) {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { DATA_DIR: dataDir, INIT_CWD: dataDir }, { stdout: (t) => (stdout += t), stderr: (t) => (stderr += t) });
  return { code, stdout, stderr };
}

function secretsOf(csv: string): Map<string, string> {
  const [header, ...rows] = csv.trim().split('\n');
  expect(header).toBe('id,secret');
  return new Map(rows.map((row) => row.split(',') as [string, string]));
}

describe('devices import: parsing', () => {
  it('reads a good file: quoted commas and quotes, Vietnamese names, empty kind', () => {
    const { devices, errors } = parseDeviceCsv(GOOD);
    expect(errors).toEqual([]);
    expect(devices.map((d) => [d.line, d.device.id, d.device.name])).toEqual([
      [2, 'hn-air-01', 'Trạm Hoàn Kiếm, Hà Nội'],
      [3, 'hcm-trf-01', 'Ngã tư "Hàng Xanh", Bình Thạnh'],
      [4, 'dn-air-01', 'Đà Nẵng'],
    ]);
    expect(devices[0]?.device).toEqual({ id: 'hn-air-01', province: '01', domain: 'environment', kind: 'roadside', name: 'Trạm Hoàn Kiếm, Hà Nội', location: [105.8525, 21.0287] });
    expect(devices[2]?.device.kind).toBeUndefined(); // empty cell: the registry's default
  });

  it('accepts a UTF-8 BOM and CRLF line endings (a spreadsheet\'s "CSV UTF-8" export)', () => {
    const excel = `\uFEFF${GOOD.replaceAll('\n', '\r\n')}\r\n`;
    const { devices, errors } = parseDeviceCsv(excel);
    expect(errors).toEqual([]);
    expect(devices.map((d) => d.device.id)).toEqual(['hn-air-01', 'hcm-trf-01', 'dn-air-01']);
    expect(devices[0]?.device.name).toBe('Trạm Hoàn Kiếm, Hà Nội');
    // Without BOM handling the first column would be "\uFEFFid", an unknown column.
    expect(parseDeviceCsv(`\uFEFF${HEADER}\r\nbad id,01,environment,,,105.85,21.03\r\n`).errors.map(formatCsvError)).toEqual([
      expect.stringMatching(/^line 2: id: "bad id" must be/),
    ]);
  });

  it('reports every bad row with its line and column, and returns no device', () => {
    const text = [
      HEADER,
      'hn-air-01,01,environment,roadside,ok,105.8525,21.0287',
      'Bad/Id,02,water,,,105.85,abc', // line 3: four problems
      'hn-air-03,01,environment,,,106.7,10.78', // line 4: inside Hồ Chí Minh, not Hà Nội
      'hn-air-04,01,environment,,,,', // line 5: no location
      'hn-air-05,01,environment', // line 6: short row
      'hn-air-06,1,energy,,,105.85,21.03', // line 7: province without its leading zero
      'hn-air-07,01,environment,,,200,21.03', // line 8: out of range
    ].join('\n');
    const { devices, errors } = parseDeviceCsv(text);
    expect(devices).toEqual([]);
    expect(errors.map(formatCsvError)).toEqual([
      expect.stringMatching(/^line 3: id: "Bad\/Id" must be/),
      expect.stringMatching(/^line 3: province: "02" is not one of the 34 province codes/),
      expect.stringMatching(/^line 3: domain: "water" must be traffic, environment or energy/),
      expect.stringMatching(/^line 3: lat: "abc" is not a decimal number/),
      expect.stringMatching(/^line 4: lng,lat: location \[106\.7, 10\.78\] is not inside province 01/),
      expect.stringMatching(/^line 5: lng: required/),
      expect.stringMatching(/^line 5: lat: required/),
      expect.stringMatching(/^line 6: csv: the row has 3 field\(s\), the header 7/),
      expect.stringMatching(/^line 7: province: "1" is not one of the 34 province codes .*leading zero/),
      expect.stringMatching(/^line 8: lng: 200 is outside -180…180/),
    ]);
  });

  it('reports duplicate ids with the line of the first', () => {
    const text = [HEADER, 'hn-air-01,01,environment,,,105.85,21.03', 'hn-air-02,01,environment,,,105.85,21.03', 'hn-air-01,01,environment,,,105.86,21.04'].join('\n');
    expect(parseDeviceCsv(text).errors.map(formatCsvError)).toEqual(['line 4: id: duplicate id "hn-air-01": already on line 2']);
  });

  it('checks the header: unknown, repeated and missing columns', () => {
    const { errors } = parseDeviceCsv('id,province,domain,lng,Latitude,ID\nx,01,energy,105.85,21.03,y\n');
    expect(errors.map(formatCsvError)).toEqual([
      expect.stringMatching(/^line 1: Latitude: unknown column; the columns are id, province, domain, lng, lat, kind, name, gateway/),
      'line 1: id: column appears twice',
      'line 1: lat: required column is missing from the header',
    ]);
    expect(parseDeviceCsv('').errors.map(formatCsvError)).toEqual([expect.stringMatching(/^line 1: csv: the file is empty/)]);
    expect(parseDeviceCsv(`${HEADER}\n`).errors.map(formatCsvError)).toEqual([expect.stringMatching(/^line 1: csv: no devices/)]);
  });

  it('names the first line of a record that spans lines, and the lines after it correctly', () => {
    const text = [HEADER, 'hn-air-01,01,environment,,"Trạm\r\nhai dòng",105.85,21.03', 'hn-air-02,01,environment,,ok,105.85,x'].join('\r\n');
    expect(parseDeviceCsv(text).errors.map(formatCsvError)).toEqual([
      expect.stringMatching(/^line 2: name: at most 200 characters, on one line/),
      expect.stringMatching(/^line 4: lat: "x" is not a decimal number/),
    ]);
    expect(parseDeviceCsv(`${HEADER}\nhn-air-01,01,environment,,"unclosed,105.85,21.03\n`).errors.map(formatCsvError)).toEqual([expect.stringMatching(/^line 2: csv: Quote Not Closed/)]);
  });

  it('reads the optional gateway and energy profile columns', () => {
    const text = ['id,province,domain,lng,lat,gateway,ratedPowerVA,nominalPhaseVoltageV', 'tba-01,79,energy,106.7,10.78,,250000,230', 'tba-02,79,energy,106.7,10.78,gw-01,,', 'air-01,79,environment,106.7,10.78,,-5,'].join('\n');
    const { errors } = parseDeviceCsv(text);
    expect(errors.map(formatCsvError)).toEqual(['line 4: ratedPowerVA: "-5" must be a positive number']);
    const { devices } = parseDeviceCsv(text.split('\n').slice(0, 3).join('\n'));
    expect(devices.map((d) => d.device)).toEqual([
      { id: 'tba-01', province: '79', domain: 'energy', location: [106.7, 10.78], profile: { ratedPowerVA: 250000, nominalPhaseVoltageV: 230 } },
      { id: 'tba-02', province: '79', domain: 'energy', location: [106.7, 10.78], gateway: 'gw-01' },
    ]);
  });

  it('parses the command line', () => {
    expect(parseDevicesArgs(['import', 'a.csv', '--update', '--secrets-out', 's.csv'])).toMatchObject({ command: 'import', target: 'a.csv', extra: [], values: { update: true, 'secrets-out': 's.csv' } });
    expect(parseDevicesArgs(['import', 'a.csv'])).toMatchObject({ values: { update: false } });
    expect(() => parseDevicesArgs(['import', 'a.csv', '--overwrite'])).toThrow(/--overwrite/);
  });
});

describe('devices import: the command', () => {
  let dir: string;
  const registryFile = () => join(dir, 'devices.json');
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-devices-cli-'));
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it('imports a good file in one write and prints each secret once; the registry keeps only hashes', async () => {
    await writeFile(join(dir, 'devices.csv'), GOOD);
    const { code, stdout, stderr } = await cli(dir, 'import', 'devices.csv');
    expect(code).toBe(0);
    expect(stderr).toMatch(/imported 3 device\(s\): 3 added, 0 updated; 3 new secret\(s\) above/);
    const secrets = secretsOf(stdout);
    expect([...secrets.keys()]).toEqual(['hn-air-01', 'hcm-trf-01', 'dn-air-01']);
    const stored = await readFile(registryFile(), 'utf8');
    const registry = await DeviceRegistry.open(dir);
    for (const [id, secret] of secrets) {
      expect(secret).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(stdout.split(secret).length - 1).toBe(1); // printed once
      expect(stderr).not.toContain(secret);
      expect(stored).not.toContain(secret); // only its salted hash
      expect(await registry.authenticate(id, secret)).toMatchObject({ type: 'device', device: { id } });
    }
    expect(stored.match(/"secretHash": "scrypt\$/g)).toHaveLength(3);
    expect(registry.device('hn-air-01')).toMatchObject({ name: 'Trạm Hoàn Kiếm, Hà Nội', kind: 'roadside', enabled: true });
    expect(registry.device('dn-air-01')?.kind).toBe('default');
  });

  it('changes nothing when any row is bad, and says what is wrong where', async () => {
    await cli(dir, 'add', '--id', 'hn-air-00', '--province', '01', '--domain', 'environment');
    const before = await readFile(registryFile(), 'utf8');
    await writeFile(join(dir, 'devices.csv'), `${GOOD}\nhn-air-09,01,environment,,,106.7,10.78\nhn-air-01,01,environment,,,105.85,21.03\n`);
    const { code, stdout, stderr } = await cli(dir, 'import', 'devices.csv');
    expect(code).toBe(1);
    expect(stdout).toBe(''); // no secret was made
    expect(stderr.trim().split('\n')).toEqual([
      expect.stringMatching(/^line 5: lng,lat: location \[106\.7, 10\.78\] is not inside province 01/),
      'line 6: id: duplicate id "hn-air-01": already on line 2',
      expect.stringMatching(/devices\.csv: 2 problem\(s\); nothing was imported$/),
    ]);
    expect(await readFile(registryFile(), 'utf8')).toBe(before);
  });

  it('refuses existing ids without --update; with it, changes metadata and keeps secrets and the enabled flag', async () => {
    await writeFile(join(dir, 'first.csv'), GOOD);
    const first = secretsOf((await cli(dir, 'import', 'first.csv')).stdout);
    await cli(dir, 'disable', 'dn-air-01');
    const before = await readFile(registryFile(), 'utf8');

    const second = [HEADER, 'hn-air-01,01,environment,roadside,"Trạm Hoàn Kiếm (mới), Hà Nội",105.853,21.029', 'dn-air-01,48,environment,coastal,Đà Nẵng,108.22,16.07', 'hn-air-02,01,environment,,,105.85,21.03'].join('\n');
    await writeFile(join(dir, 'second.csv'), second);
    const refused = await cli(dir, 'import', 'second.csv');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^line 2: id: device "hn-air-01" already exists \(--update changes its metadata and keeps its secret\)\nline 3: id: device "dn-air-01" already exists/);
    expect(await readFile(registryFile(), 'utf8')).toBe(before);

    const updated = await cli(dir, 'import', 'second.csv', '--update');
    expect(updated.code).toBe(0);
    expect(updated.stderr).toMatch(/imported 3 device\(s\): 1 added, 2 updated; 1 new secret\(s\)/);
    expect([...secretsOf(updated.stdout).keys()]).toEqual(['hn-air-02']); // only the new device
    const registry = await DeviceRegistry.open(dir);
    expect(registry.device('hn-air-01')).toMatchObject({ name: 'Trạm Hoàn Kiếm (mới), Hà Nội', location: [105.853, 21.029] });
    expect(await registry.authenticate('hn-air-01', first.get('hn-air-01') ?? '')).toBeDefined(); // same secret
    expect(registry.device('dn-air-01')).toMatchObject({ kind: 'coastal', enabled: false }); // still disabled
  });

  it('writes the secrets to --secrets-out with mode 0600 and never overwrites a file', async () => {
    await writeFile(join(dir, 'devices.csv'), GOOD);
    const done = await cli(dir, 'import', 'devices.csv', '--secrets-out', 'secrets.csv');
    expect(done.code).toBe(0);
    expect(done.stdout).toBe('');
    expect(done.stderr).toContain(`in ${join(dir, 'secrets.csv')} (mode 0600)`);
    expect((await stat(join(dir, 'secrets.csv'))).mode & 0o777).toBe(0o600);
    expect(secretsOf(await readFile(join(dir, 'secrets.csv'), 'utf8')).size).toBe(3);

    await writeFile(join(dir, 'more.csv'), [HEADER, 'hn-air-02,01,environment,,,105.85,21.03'].join('\n'));
    const before = await readFile(registryFile(), 'utf8');
    await expect(cli(dir, 'import', 'more.csv', '--secrets-out', 'secrets.csv')).rejects.toThrow(/secrets\.csv already exists; it is never overwritten/);
    expect(await readFile(registryFile(), 'utf8')).toBe(before);
  });

  it('says so when the file is missing', async () => {
    await expect(cli(dir, 'import', 'nope.csv')).rejects.toMatchObject({ code: 'E_NOT_FOUND', message: `no file ${join(dir, 'nope.csv')}` });
  });

  it('gives devices behind a gateway no secret, and refuses a gateway that is not a gateway account', async () => {
    const text = ['id,province,domain,lng,lat,gateway', 'tba-01,79,energy,106.7,10.78,gw-01', 'tba-02,79,energy,106.7,10.78,'].join('\n');
    await writeFile(join(dir, 'devices.csv'), text);
    const refused = await cli(dir, 'import', 'devices.csv');
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^line 2: gateway: "gw-01" is not a gateway account; create it first/);

    await (await DeviceRegistry.open(dir)).upsertService('gw-01', 'gateway');
    const done = await cli(dir, 'import', 'devices.csv');
    expect(done.code).toBe(0);
    expect([...secretsOf(done.stdout).keys()]).toEqual(['tba-02']);
    expect((await DeviceRegistry.open(dir)).device('tba-01')).toMatchObject({ gateway: 'gw-01' });
  });

  it('works end to end as `tsx devices.ts import` in a child process', async () => {
    await writeFile(join(dir, 'devices.csv'), `\uFEFF${GOOD.replaceAll('\n', '\r\n')}\r\n`);
    const env = { ...process.env, DATA_DIR: 'registry', INIT_CWD: dir }; // as `pnpm devices` started in dir
    const run = promisify(execFile);
    const { stdout, stderr } = await run(TSX, [CLI, 'import', 'devices.csv'], { cwd: BROKER, env, timeout: 30_000 });
    const secrets = secretsOf(stdout);
    expect([...secrets.keys()]).toEqual(['hn-air-01', 'hcm-trf-01', 'dn-air-01']);
    expect(stderr).toMatch(/imported 3 device\(s\)/);
    const registry = await DeviceRegistry.open(join(dir, 'registry'));
    expect(await registry.authenticate('hcm-trf-01', secrets.get('hcm-trf-01') ?? '')).toBeDefined();
    expect(await readFile(join(dir, 'registry', 'devices.json'), 'utf8')).not.toContain(secrets.get('hn-air-01'));

    const list = await run(TSX, [CLI, 'list', '--province', '01'], { cwd: BROKER, env, timeout: 30_000 });
    expect(list.stdout).toMatch(/hn-air-01 +01 environment +enabled +roadside +Trạm Hoàn Kiếm, Hà Nội\n1 device\(s\)/);

    // A second import of the same file: refused, exit code 1, the reasons on stderr.
    const again = await run(TSX, [CLI, 'import', 'devices.csv'], { cwd: BROKER, env, timeout: 30_000 }).then(
      () => undefined,
      (err: { code: number; stdout: string; stderr: string }) => err,
    );
    expect(again?.code).toBe(1);
    expect(again?.stdout).toBe('');
    expect(again?.stderr).toMatch(/line 2: id: device "hn-air-01" already exists/);
  }, 60_000); // three tsx start-ups, on a busy machine
});
