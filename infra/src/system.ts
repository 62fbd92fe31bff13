import { execFile, spawn } from 'node:child_process';
import { access, constants } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Finds an executable on PATH (and in /usr/sbin, where Debian puts some daemons). */
export async function findExecutable(name: string): Promise<string | undefined> {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin', '/usr/local/bin'];
  for (const dir of dirs) {
    if (!dir) continue;
    const candidate = join(dir, name);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/**
 * Makes sure Debian packages are installed, so that `command` is available. Installs only as root
 * (or with passwordless sudo); otherwise fails with the exact command to run.
 */
export async function ensureDebianPackage(command: string, pkg: string, log: (line: string) => void = () => undefined): Promise<string> {
  const found = await findExecutable(command);
  if (found) return found;
  const sudo = isRoot() ? [] : (await canSudo()) ? ['sudo', '-n'] : undefined;
  if (!sudo) {
    throw new Error(`${command} is not installed. Install it with: sudo apt-get install -y ${pkg}  (or run this command as root and it is installed for you)`);
  }
  log(`installing Debian package ${pkg} (for ${command}) …`);
  const apt = async (...args: string[]) => {
    const [cmd, ...rest] = [...sudo, 'apt-get', ...args];
    await new Promise<void>((resolve, reject) => {
      const child = spawn(cmd as string, rest, { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' } });
      let stderr = '';
      child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`apt-get ${args.join(' ')} failed (${code}): ${stderr.slice(-800)}`))));
    });
  };
  try {
    await apt('install', '-y', '-qq', pkg);
  } catch {
    await apt('update', '-qq');
    await apt('install', '-y', '-qq', pkg);
  }
  const installed = await findExecutable(command);
  if (!installed) throw new Error(`installed ${pkg} but ${command} is still not on PATH`);
  return installed;
}

async function canSudo(): Promise<boolean> {
  try {
    await run('sudo', ['-n', 'true']);
    return true;
  } catch {
    return false;
  }
}
