/**
 * The first-start step of a container deployment: the `setup` service of compose.yaml and
 * compose.cluster.yaml runs it (in the api image, as `tsx api/deploy/first-start.ts`) before the
 * broker, ingest and the api start. What `npm start` does for a local installation
 * (scripts/start.ts, ensureCredentials), for services that get their secrets from the deployment:
 *
 * - registers the ingest and api service accounts in the device registry (DATA_DIR/devices.json,
 *   or Redis with REGISTRY_STORE=redis as in compose.cluster.yaml) with the secrets the deployment
 *   passes (INGEST_MQTT_PASSWORD, API_MQTT_PASSWORD), unless they already log in with them; only
 *   their scrypt hashes are stored;
 * - when there is no operator yet, creates the first one, `admin`, with a generated password that
 *   it prints once (only its hash is stored). Done here, once, rather than by each api node, so
 *   two api nodes starting together on a shared DATA_DIR do not each create a different admin.
 *
 * Runs before every start of the stack and changes nothing when all is in place.
 */
import { readConfig, CodedError, COMMON_CONFIG, type ConfigSpec } from '@citypulse/contracts';
import { REDIS_CONFIG, runCliIfEntry } from '@citypulse/infra';
import { DeviceRegistry, isRandomSecret, registryStoreOptions } from '@citypulse/broker/registry';
import { API_CONFIG, OperatorStore } from '@citypulse/api';
import { INGEST_CONFIG } from '@citypulse/ingest';

/** The variables this step reads: the same specs as the services' own. */
export const FIRST_START_CONFIG = {
  DATA_DIR: COMMON_CONFIG.DATA_DIR,
  REGISTRY_STORE: COMMON_CONFIG.REGISTRY_STORE,
  REDIS_URL: REDIS_CONFIG.REDIS_URL,
  INGEST_MQTT_USERNAME: INGEST_CONFIG.INGEST_MQTT_USERNAME,
  INGEST_MQTT_PASSWORD: INGEST_CONFIG.INGEST_MQTT_PASSWORD,
  API_MQTT_USERNAME: API_CONFIG.API_MQTT_USERNAME,
  API_MQTT_PASSWORD: API_CONFIG.API_MQTT_PASSWORD,
} as const satisfies ConfigSpec;

/** How to make a secret the broker accepts as generated (README, Deployment). */
export const SECRET_HINT = `node -e "console.log(require('node:crypto').randomBytes(24).toString('base64url'))"`;

export interface FirstStartResult {
  /** Service accounts (re-)registered now. */
  readonly services: readonly string[];
  /** The first admin, when it was created now; its password is never shown again. */
  readonly admin: { readonly username: string; readonly password: string } | undefined;
}

export async function firstStart(env: Readonly<Record<string, string | undefined>>): Promise<FirstStartResult> {
  const config = readConfig(FIRST_START_CONFIG, env);
  const accounts = [
    { variable: 'INGEST_MQTT_PASSWORD', id: config.INGEST_MQTT_USERNAME, role: 'ingest', secret: config.INGEST_MQTT_PASSWORD },
    { variable: 'API_MQTT_PASSWORD', id: config.API_MQTT_USERNAME, role: 'api', secret: config.API_MQTT_PASSWORD },
  ] as const;
  const weak = accounts.filter((a) => !isRandomSecret(a.secret)).map((a) => a.variable);
  if (weak.length > 0) {
    throw new CodedError('E_CONFIG', `${weak.join(' and ')} must be generated secrets (at least 32 base64url characters, e.g. the output of ${SECRET_HINT})`);
  }
  const services: string[] = [];
  const log = (_: object, message: string) => process.stderr.write(`[citypulse first start] ${message}\n`);
  const registry = await DeviceRegistry.open(config.DATA_DIR, registryStoreOptions(config, { info: log, warn: log }));
  try {
    for (const account of accounts) {
      if (await registry.authenticate(account.id, account.secret)) continue;
      await registry.upsertService(account.id, account.role, account.secret);
      services.push(account.id);
    }
  } finally {
    registry.close();
  }
  const operators = await OperatorStore.open(config.DATA_DIR);
  try {
    const password = await operators.ensureFirstAdmin('admin');
    return { services, admin: password === undefined ? undefined : { username: 'admin', password } };
  } finally {
    operators.close();
  }
}

export async function main(): Promise<number> {
  const result = await firstStart(process.env);
  const out = (line: string) => process.stdout.write(`[citypulse first start] ${line}\n`);
  out(result.services.length > 0 ? `service accounts registered: ${result.services.join(', ')} (only their hashes are kept)` : 'service accounts in place');
  if (result.admin) {
    out(`first operator created — log in to the dashboard as ${result.admin.username} / ${result.admin.password}`);
    out('this password is shown once and stored only as a hash: change it, or set a new one with');
    out(`  docker compose exec api tsx api/src/cli/operators.ts passwd ${result.admin.username}`);
  } else {
    out('operators in place');
  }
  return 0;
}

runCliIfEntry(import.meta.url, main);
