/**
 * Device registry CLI. `pnpm devices <command>` from the repository root:
 *   add --id ID --province 01 --domain environment [--lng 105.85 --lat 21.03] [--name TEXT] [--kind KIND]
 *   import FILE.csv [--update] [--secrets-out FILE]
 *   list [--province 01] [--domain traffic]
 *   disable ID | enable ID | rotate ID | remove ID
 *   migrate [DEVICES.json]   (REGISTRY_STORE=redis: copy a file registry into Redis)
 * A new or rotated secret is printed once; the registry keeps only its hash. The registry is the
 * one the services use: DATA_DIR/devices.json, or Redis with REGISTRY_STORE=redis (REDIS_URL).
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runCliIfEntry, REDIS_CONFIG } from '@citypulse/infra';
import { CodedError, COMMON_CONFIG, isDomain, provinceByCode, readConfig } from '@citypulse/contracts';
import { DeviceRegistry, registryStoreOptions } from '../registry.js';
import { CSV_COLUMNS, importDevices, type CliOutput } from './devices-import.js';

const USAGE = `usage: pnpm devices <command> [options]   (DATA_DIR, default .data, holds the registry; REGISTRY_STORE=redis: Redis at REDIS_URL)
  add --id ID --province CODE --domain traffic|environment|energy [--lng LNG --lat LAT] [--name TEXT] [--kind KIND]
  import FILE.csv [--update] [--secrets-out FILE]
      header row with ${CSV_COLUMNS.required.join(', ')} and optionally ${CSV_COLUMNS.optional.join(', ')};
      all rows are checked first, then written at once; new secrets are printed once as CSV id,secret
      (or written to --secrets-out, mode 0600). --update changes existing devices and keeps their secrets.
  list [--province CODE] [--domain DOMAIN]
  disable ID | enable ID | rotate ID | remove ID
  migrate [DEVICES.json]
      with REGISTRY_STORE=redis: copies a file registry (default DATA_DIR/devices.json) into Redis;
      ids already registered there are left as they are`;

/** The variables the CLI reads besides DATA_DIR: the same specs as the services'. */
const CLI_CONFIG = { REGISTRY_STORE: COMMON_CONFIG.REGISTRY_STORE, REDIS_URL: REDIS_CONFIG.REDIS_URL };

export function parseDevicesArgs(argv: readonly string[]) {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: {
      id: { type: 'string' },
      province: { type: 'string' },
      domain: { type: 'string' },
      lng: { type: 'string' },
      lat: { type: 'string' },
      name: { type: 'string' },
      kind: { type: 'string' },
      update: { type: 'boolean', default: false },
      'secrets-out': { type: 'string' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, target, ...extra] = positionals;
  return { command, target, extra, values };
}

const CONSOLE: CliOutput = {
  stdout: (text) => process.stdout.write(text),
  stderr: (text) => process.stderr.write(text),
};

/**
 * Runs one command; resolves to the exit code. Relative paths (DATA_DIR, the CSV file,
 * --secrets-out) are taken from where pnpm was started (INIT_CWD), else the working directory.
 */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, out: CliOutput = CONSOLE): Promise<number> {
  const { command, target, extra, values } = parseDevicesArgs(argv);
  if (values.help || !command) {
    out.stdout(`${USAGE}\n`);
    return command ? 0 : 2;
  }
  if (extra.length > 0) throw new CodedError('E_BAD_REQUEST', `unexpected argument "${extra[0]}"\n${USAGE}`);
  const cwd = env.INIT_CWD ?? process.cwd();
  const dataDir = resolve(cwd, values['data-dir'] ?? env.DATA_DIR ?? '.data');
  const logger = { info: (_: object, message: string) => out.stderr(`${message}\n`), warn: (_: object, message: string) => out.stderr(`${message}\n`) };
  const registry = await DeviceRegistry.open(dataDir, registryStoreOptions(readConfig(CLI_CONFIG, env), logger));
  try {
    return await run(registry, { command, target, values, cwd }, out);
  } finally {
    // The Redis store holds a connection, which would keep the process alive.
    registry.close();
  }
}

async function run(registry: DeviceRegistry, { command, target, values, cwd }: { command: string; target: string | undefined; values: ReturnType<typeof parseDevicesArgs>['values']; cwd: string }, out: CliOutput): Promise<number> {
  const say = (line: string) => out.stdout(`${line}\n`);
  switch (command) {
    case 'add': {
      const { id, province, domain } = values;
      if (!id || !province || !domain) throw new CodedError('E_BAD_REQUEST', 'add needs --id, --province and --domain');
      if (!isDomain(domain)) throw new CodedError('E_BAD_REQUEST', `--domain must be traffic, environment or energy, not "${domain}"`);
      const p = provinceByCode(province);
      if (!p) throw new CodedError('E_PROVINCE', `--province "${province}" is not one of the 34 codes (01 Hà Nội, 79 Hồ Chí Minh, 48 Đà Nẵng, …)`);
      const location = values.lng !== undefined && values.lat !== undefined ? ([Number(values.lng), Number(values.lat)] as const) : p.label;
      const [created] = await registry.upsertDevices([{ id, province, domain, location, ...(values.name ? { name: values.name } : {}), ...(values.kind ? { kind: values.kind } : {}) }]);
      say(`added ${id} in ${p.name} (${domain}) at [${location.join(', ')}]`);
      say(`secret (shown once, only its hash is stored): ${created?.secret ?? ''}`);
      say(`publish to: city/${province}/${domain}/${id}/telemetry  (MQTT 3.1.1, client id = username = ${id})`);
      return 0;
    }
    case 'import': {
      if (!target) throw new CodedError('E_BAD_REQUEST', 'import needs a CSV file: pnpm devices import FILE.csv');
      const secretsOut = values['secrets-out'];
      const result = await importDevices(registry, { file: resolve(cwd, target), update: values.update, secretsOut: secretsOut === undefined ? undefined : resolve(cwd, secretsOut) }, out);
      return result.exitCode;
    }
    case 'list': {
      const rows = registry.devices.filter((d) => (!values.province || d.province === values.province) && (!values.domain || d.domain === values.domain));
      for (const d of rows) say(`${d.id.padEnd(28)} ${d.province} ${d.domain.padEnd(11)} ${d.enabled ? 'enabled ' : 'DISABLED'} ${d.kind.padEnd(16)} ${d.name}`);
      say(`${rows.length} device(s)`);
      return 0;
    }
    case 'disable':
    case 'enable':
    case 'rotate':
    case 'remove': {
      if (!target) throw new CodedError('E_BAD_REQUEST', `${command} needs a device id`);
      if (command === 'rotate') say(`new secret for ${target} (shown once): ${await registry.rotateSecret(target)}`);
      else if (command === 'remove') await registry.removeDevice(target);
      else await registry.setEnabled(target, command === 'enable');
      if (command !== 'rotate') say(`${target}: ${command}d (a running broker disconnects it at once)`);
      return 0;
    }
    case 'migrate': {
      const file = target === undefined ? registry.file : resolve(cwd, target);
      const result = await registry.importFile(file);
      say(`${file} → ${registry.where}: ${result.devices} device(s) and ${result.services} service account(s) added, ${result.skipped} already registered (left as they are)`);
      return 0;
    }
    default:
      out.stderr(`unknown command "${command}"\n${USAGE}\n`);
      return 2;
  }
}

runCliIfEntry(import.meta.url, (argv) => main(argv));
