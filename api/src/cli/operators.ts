/**
 * Operator accounts CLI. `pnpm operators <command>` from the repository root:
 *   list
 *   add USERNAME --role viewer|operator|admin [--provinces 01,79]
 *   passwd USERNAME | role USERNAME ROLE | scope USERNAME CODES|all | disable USERNAME | enable USERNAME | remove USERNAME
 * A new password is generated and printed once; the file keeps only its hash. A running api
 * picks up every change at once (it watches DATA_DIR/operators.json).
 */
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runCliIfEntry } from '@citypulse/infra';
import { CodedError } from '@citypulse/contracts';
import { OperatorStore } from '../operators.js';
import { isOperatorRole, OPERATOR_ROLES } from '../rights.js';

const USAGE = `usage: pnpm operators <command> [options]   (DATA_DIR, default .data, holds operators.json)
  list
  add USERNAME --role ${OPERATOR_ROLES.join('|')} [--provinces 01,79]   (no --provinces: all 34)
  passwd USERNAME                 a new generated password, shown once; ends the operator's sessions
  role USERNAME ${OPERATOR_ROLES.join('|')}
  scope USERNAME 01,79|all        the provinces the operator may see
  disable USERNAME | enable USERNAME | remove USERNAME`;

export interface CliOutput {
  stdout(text: string): void;
  stderr(text: string): void;
}
const CONSOLE: CliOutput = { stdout: (text) => process.stdout.write(text), stderr: (text) => process.stderr.write(text) };

const generatePassword = () => randomBytes(15).toString('base64url');
const parseScope = (text: string): string[] | null => (text === 'all' ? null : text.split(',').map((p) => p.trim()).filter(Boolean));

/** Runs one command; resolves to the exit code. DATA_DIR is taken from where pnpm was started (INIT_CWD). */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env, out: CliOutput = CONSOLE): Promise<number> {
  const { positionals, values } = parseArgs({
    args: [...argv],
    allowPositionals: true,
    options: { role: { type: 'string' }, provinces: { type: 'string' }, 'data-dir': { type: 'string' }, help: { type: 'boolean', short: 'h' } },
  });
  const [command, username, arg, ...extra] = positionals;
  if (values.help || !command) {
    out.stdout(`${USAGE}\n`);
    return command ? 0 : 2;
  }
  if (extra.length > 0) throw new CodedError('E_BAD_REQUEST', `unexpected argument "${extra[0]}"\n${USAGE}`);
  const dataDir = resolve(env.INIT_CWD ?? process.cwd(), values['data-dir'] ?? env.DATA_DIR ?? '.data');
  const store = await OperatorStore.open(dataDir);
  const say = (line: string) => out.stdout(`${line}\n`);
  const need = (what: string | undefined, name: string): string => {
    if (!what) throw new CodedError('E_BAD_REQUEST', `${command} needs ${name}\n${USAGE}`);
    return what;
  };
  switch (command) {
    case 'list':
      for (const o of store.list()) say(`${o.username.padEnd(24)} ${o.role.padEnd(9)} ${o.disabled ? 'DISABLED' : 'enabled '} ${o.provinces === null ? 'all provinces' : o.provinces.join(',')}`);
      say(`${store.count} operator(s)`);
      return 0;
    case 'add': {
      const name = need(username, 'a username');
      const role = need(values.role, '--role');
      if (!isOperatorRole(role)) throw new CodedError('E_BAD_REQUEST', `--role must be one of ${OPERATOR_ROLES.join(', ')}, not "${role}"`);
      const password = generatePassword();
      const created = await store.create(name, role, password, values.provinces === undefined ? null : parseScope(values.provinces));
      say(`added ${created.username} (${created.role}, ${created.provinces === null ? 'all provinces' : created.provinces.join(',')})`);
      say(`password (shown once, only its hash is stored): ${password}`);
      return 0;
    }
    case 'passwd': {
      const password = generatePassword();
      await store.update(need(username, 'a username'), { password });
      say(`new password for ${username} (shown once; their sessions have ended): ${password}`);
      return 0;
    }
    case 'role': {
      const role = need(arg, 'a role');
      if (!isOperatorRole(role)) throw new CodedError('E_BAD_REQUEST', `role must be one of ${OPERATOR_ROLES.join(', ')}, not "${role}"`);
      await store.update(need(username, 'a username'), { role });
      say(`${username}: ${role}`);
      return 0;
    }
    case 'scope': {
      const scope = parseScope(need(arg, 'province codes (01,79) or all'));
      await store.update(need(username, 'a username'), { provinces: scope });
      say(`${username}: ${scope === null ? 'all provinces' : scope.join(',')}`);
      return 0;
    }
    case 'disable':
    case 'enable':
      await store.update(need(username, 'a username'), { disabled: command === 'disable' });
      say(`${username}: ${command}d`);
      return 0;
    case 'remove':
      await store.remove(need(username, 'a username'));
      say(`${username}: removed`);
      return 0;
    default:
      out.stderr(`unknown command "${command}"\n${USAGE}\n`);
      return 2;
  }
}

runCliIfEntry(import.meta.url, (argv) => main(argv));
