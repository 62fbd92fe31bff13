import { chmod, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CodedError } from '@citypulse/contracts';

/**
 * The simulator's own plaintext device secrets. The registry keeps only scrypt hashes, so a
 * restarted simulator needs the secrets it generated; keeping them here avoids re-keying (and re-hashing)
 * every device on every start. Mode 0600, written atomically.
 */
export const SECRETS_FILE_NAME = 'simulator-secrets.json';

interface SecretsFile {
  version: 1;
  secrets: Record<string, string>;
}

export function secretsFilePath(dataDir: string): string {
  return join(dataDir, SECRETS_FILE_NAME);
}

export async function readSecrets(file: string): Promise<Map<string, string>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new Map();
    throw err;
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw new CodedError('E_CONFIG', `${file} is not valid JSON; delete it and the simulator provisions its devices again with new secrets`, { cause: err });
  }
  const data = parsed as Partial<SecretsFile>;
  if (data.version !== 1 || typeof data.secrets !== 'object' || data.secrets === null) {
    throw new CodedError('E_CONFIG', `${file} has an unknown format (expected {"version":1,"secrets":{…}}); delete it to re-provision`);
  }
  const secrets = new Map<string, string>();
  for (const [id, secret] of Object.entries(data.secrets)) {
    if (typeof secret === 'string' && secret.length > 0) secrets.set(id, secret);
  }
  // A copy made with a loose umask must not stay world-readable.
  if (((await stat(file)).mode & 0o077) !== 0) await chmod(file, 0o600);
  return secrets;
}

export async function writeSecrets(file: string, secrets: ReadonlyMap<string, string>): Promise<void> {
  const data: SecretsFile = { version: 1, secrets: Object.fromEntries([...secrets].sort(([a], [b]) => a.localeCompare(b))) };
  const tmp = `${file}.${process.pid}.${Date.now()}.tmp`;
  await writeFile(tmp, `${JSON.stringify(data, null, 1)}\n`, { mode: 0o600 });
  await chmod(tmp, 0o600);
  await rename(tmp, file);
}
