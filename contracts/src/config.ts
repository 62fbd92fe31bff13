import { CodedError } from './errors.js';

/**
 * Configuration is read once at start from environment variables and validated here; a bad value
 * stops the service with a message that names the variable. Each service declares a spec; the
 * same specs generate the configuration table of the README and are checked against .env.example.
 */
export type VarKind = 'string' | 'int' | 'port' | 'bool' | 'url' | 'enum' | 'path';

export interface VarSpec {
  readonly kind: VarKind;
  readonly description: string;
  /** Default as the text a user would write; omitted means required. */
  readonly default?: string;
  readonly values?: readonly string[];
  readonly min?: number;
  readonly max?: number;
  /** May be left unset (the value is then undefined). */
  readonly optional?: boolean;
  /** Never printed in logs or the configuration summary. */
  readonly secret?: boolean;
}

export type ConfigSpec = Readonly<Record<string, VarSpec>>;

type ValueOf<S extends VarSpec> = S['kind'] extends 'int' | 'port' ? number : S['kind'] extends 'bool' ? boolean : string;
type IsRequired<S extends VarSpec> = S extends { default: string } ? true : S extends { optional: true } ? false : true;
export type ConfigOf<T extends ConfigSpec> = {
  readonly [K in keyof T]: IsRequired<T[K]> extends true ? ValueOf<T[K]> : ValueOf<T[K]> | undefined;
};

/** Parses `env` against `spec`; throws CodedError E_CONFIG listing every bad variable at once. */
export function readConfig<const T extends ConfigSpec>(spec: T, env: Readonly<Record<string, string | undefined>>): ConfigOf<T> {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [name, s] of Object.entries(spec)) {
    const raw = env[name]?.trim();
    const text = raw === undefined || raw === '' ? s.default : raw;
    if (text === undefined) {
      if (s.optional) {
        out[name] = undefined;
        continue;
      }
      problems.push(`${name} is required: ${s.description}`);
      continue;
    }
    const parsed = parseValue(name, s, text);
    if (typeof parsed === 'object' && parsed !== null && 'problem' in parsed) problems.push(parsed.problem);
    else out[name] = parsed;
  }
  if (problems.length > 0) throw new CodedError('E_CONFIG', `invalid configuration:\n  ${problems.join('\n  ')}`);
  return out as ConfigOf<T>;
}

function parseValue(name: string, s: VarSpec, text: string): string | number | boolean | { problem: string } {
  switch (s.kind) {
    case 'int':
    case 'port': {
      const min = s.kind === 'port' ? 0 : (s.min ?? Number.MIN_SAFE_INTEGER);
      const max = s.kind === 'port' ? 65535 : (s.max ?? Number.MAX_SAFE_INTEGER);
      if (!/^-?\d+$/.test(text)) return { problem: `${name}="${text}" must be a whole number (${s.description})` };
      const n = Number(text);
      if (n < min || n > max) return { problem: `${name}=${n} must be between ${min} and ${max} (${s.description})` };
      return n;
    }
    case 'bool':
      if (/^(1|true|yes|on)$/i.test(text)) return true;
      if (/^(0|false|no|off)$/i.test(text)) return false;
      return { problem: `${name}="${text}" must be true or false` };
    case 'url':
      try {
        const url = new URL(text);
        if (s.values && !s.values.includes(url.protocol.replace(/:$/, ''))) {
          return { problem: `${name}="${text}" must use one of the schemes ${s.values.join(', ')}` };
        }
        return text;
      } catch {
        return { problem: `${name}="${text}" is not a URL (${s.description})` };
      }
    case 'enum':
      if (!s.values?.includes(text)) return { problem: `${name}="${text}" must be one of ${s.values?.join(', ') ?? '(none)'}` };
      return text;
    case 'string':
    case 'path':
      return text;
    default:
      return { problem: `${name}: unknown kind` };
  }
}

/** Where the device registry lives (broker/src/registry.ts): every service opens it. */
export const REGISTRY_STORES = ['file', 'redis'] as const;

/** Shared variable specs used by several services: one definition, one line in .env.example. */
export const COMMON_CONFIG = {
  DATA_DIR: { kind: 'path', default: '.data', description: 'folder for the device registry, operators, credentials and local InfluxDB data' },
  LOG_LEVEL: { kind: 'enum', default: 'info', values: ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'], description: 'pino log level' },
  REGISTRY_STORE: {
    kind: 'enum',
    default: 'file',
    values: REGISTRY_STORES,
    description: 'where the device registry lives: file (DATA_DIR/devices.json, one host) or redis (REDIS_URL, shared by every node of a cluster; an empty one imports DATA_DIR/devices.json once)',
  },
} as const satisfies ConfigSpec;
