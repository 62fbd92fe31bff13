/**
 * Device registry CLI. `pnpm devices <command>` from the repository root:
 *   add --id ID --province 01 --domain environment [--lng 105.85 --lat 21.03] [--name TEXT] [--kind KIND]
 *   list [--province 01] [--domain traffic]
 *   disable ID | enable ID | rotate ID | remove ID
 * A new or rotated secret is printed once; the registry keeps only its hash.
 */
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { CodedError, isDomain, provinceByCode } from '@citypulse/contracts';
import { DeviceRegistry } from '../registry.js';

const USAGE = `usage: pnpm devices <command> [options]   (DATA_DIR, default .data, holds the registry)
  add --id ID --province CODE --domain traffic|environment|energy [--lng LNG --lat LAT] [--name TEXT] [--kind KIND]
  list [--province CODE] [--domain DOMAIN]
  disable ID | enable ID | rotate ID | remove ID`;

async function main(argv: string[]): Promise<number> {
  const { positionals, values } = parseArgs({
    args: argv,
    allowPositionals: true,
    options: {
      id: { type: 'string' },
      province: { type: 'string' },
      domain: { type: 'string' },
      lng: { type: 'string' },
      lat: { type: 'string' },
      name: { type: 'string' },
      kind: { type: 'string' },
      'data-dir': { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
  });
  const [command, target] = positionals;
  if (values.help || !command) {
    console.log(USAGE);
    return command ? 0 : 2;
  }
  const dataDir = resolve(process.env.INIT_CWD ?? process.cwd(), values['data-dir'] ?? process.env.DATA_DIR ?? '.data');
  const registry = await DeviceRegistry.open(dataDir);
  switch (command) {
    case 'add': {
      const { id, province, domain } = values;
      if (!id || !province || !domain) throw new CodedError('E_BAD_REQUEST', 'add needs --id, --province and --domain');
      if (!isDomain(domain)) throw new CodedError('E_BAD_REQUEST', `--domain must be traffic, environment or energy, not "${domain}"`);
      const p = provinceByCode(province);
      if (!p) throw new CodedError('E_PROVINCE', `--province "${province}" is not one of the 34 codes (01 Hà Nội, 79 Hồ Chí Minh, 48 Đà Nẵng, …)`);
      const location = values.lng !== undefined && values.lat !== undefined ? ([Number(values.lng), Number(values.lat)] as const) : p.label;
      const [created] = await registry.upsertDevices([{ id, province, domain, location, ...(values.name ? { name: values.name } : {}), ...(values.kind ? { kind: values.kind } : {}) }]);
      console.log(`added ${id} in ${p.name} (${domain}) at [${location.join(', ')}]`);
      console.log(`secret (shown once, only its hash is stored): ${created?.secret ?? ''}`);
      console.log(`publish to: city/${province}/${domain}/${id}/telemetry  (MQTT 3.1.1, client id = username = ${id})`);
      return 0;
    }
    case 'list': {
      const rows = registry.devices.filter((d) => (!values.province || d.province === values.province) && (!values.domain || d.domain === values.domain));
      for (const d of rows) console.log(`${d.id.padEnd(28)} ${d.province} ${d.domain.padEnd(11)} ${d.enabled ? 'enabled ' : 'DISABLED'} ${d.kind.padEnd(16)} ${d.name}`);
      console.log(`${rows.length} device(s)`);
      return 0;
    }
    case 'disable':
    case 'enable':
    case 'rotate':
    case 'remove': {
      if (!target) throw new CodedError('E_BAD_REQUEST', `${command} needs a device id`);
      if (command === 'rotate') console.log(`new secret for ${target} (shown once): ${await registry.rotateSecret(target)}`);
      else if (command === 'remove') await registry.removeDevice(target);
      else await registry.setEnabled(target, command === 'enable');
      if (command !== 'rotate') console.log(`${target}: ${command}d (a running broker disconnects it at once)`);
      return 0;
    }
    default:
      console.error(`unknown command "${command}"\n${USAGE}`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error(err instanceof CodedError ? `${err.code}: ${err.message}` : err instanceof Error ? err.message : String(err));
    process.exitCode = 1;
  },
);
