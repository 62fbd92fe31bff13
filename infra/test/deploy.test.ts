/**
 * The deployment files (infra/deploy/) checked on a machine without a container engine:
 * - compose.yaml and compose.cluster.yaml through Debian's docker-compose 1.29 (`config`: schema,
 *   interpolation, required secrets) and read with the YAML parser docker-compose uses (PyYAML);
 * - haproxy.cfg through Debian's haproxy (`haproxy -c`);
 * - influxdb-init.sh through shellcheck, and run against a stand-in `influx` CLI;
 * - the Dockerfiles through a parser of their instructions (../deploy/dockerfile.ts);
 * - first-start.ts run on a temporary DATA_DIR.
 * Every variable a service is given must be one it reads, with a value its configuration accepts.
 * The tools are Debian packages; a missing one fails the test with the line that installs it.
 */
import { spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { COMMON_CONFIG, PROVINCE_CODES, readConfig, type ConfigSpec } from '@citypulse/contracts';
import { BROKER_CONFIG, DeviceRegistry, generateSecret } from '@citypulse/broker';
import { INGEST_CONFIG, parseShard, ROLLUP_AGGREGATES, ROLLUPS } from '@citypulse/ingest';
import { API_CONFIG, OperatorStore } from '@citypulse/api';
import { REDIS_CONFIG, SERVICE_NODE_FLAGS, startRedis } from '../src/index.js';
import { copyPaths, DockerIgnore, healthcheckCommand, parseDockerfile, type Dockerfile, type Instruction, type Stage } from '../deploy/dockerfile.js';
import { FIRST_START_CONFIG, firstStart } from '../deploy/first-start.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const DEPLOY = join(ROOT, 'infra', 'deploy');
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');
const TOOLS_TIMEOUT = 60_000;

// ---- the Debian tools ----------------------------------------------------------------------------

const DEBIAN_TOOLS = { 'docker-compose': 'docker-compose', haproxy: 'haproxy', shellcheck: 'shellcheck' } as const;
const INSTALL_LINE = `apt-get install -y ${Object.values(DEBIAN_TOOLS).join(' ')}`;

/** Runs a Debian tool; missing, it fails with the line that installs it (never a skipped test). */
function tool(name: keyof typeof DEBIAN_TOOLS, args: readonly string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; input?: string } = {}) {
  const result = spawnSync(name, args, { cwd: options.cwd ?? ROOT, env: options.env ?? process.env, input: options.input, encoding: 'utf8', timeout: TOOLS_TIMEOUT });
  if (result.error && 'code' in result.error && result.error.code === 'ENOENT') {
    throw new Error(`${name} is not installed: these checks need Debian's ${Object.values(DEBIAN_TOOLS).join(', ')}. Install them with: ${INSTALL_LINE}`);
  }
  return result;
}

/**
 * YAML → JSON with PyYAML, the parser docker-compose itself uses (`<<` merge keys included), in
 * Debian's Python, the one docker-compose runs on (a `python3` on PATH may be another).
 */
function pyyaml(text: string): unknown {
  const result = spawnSync('/usr/bin/python3', ['-c', 'import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)'], { input: text, encoding: 'utf8', timeout: TOOLS_TIMEOUT });
  if (result.status !== 0) throw new Error(`/usr/bin/python3 with PyYAML (installed with docker-compose: ${INSTALL_LINE}) could not read the YAML: ${result.stderr || String(result.error)}`);
  return JSON.parse(result.stdout);
}

const scratch: string[] = [];
const tempDir = (prefix: string) => {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  scratch.push(dir);
  return dir;
};
afterAll(() => {
  for (const dir of scratch) rmSync(dir, { recursive: true, force: true });
});

// ---- what the services read --------------------------------------------------------------------

type ServiceKind = 'broker' | 'ingest' | 'api' | 'simulators';
const SERVICE_KINDS: readonly ServiceKind[] = ['broker', 'ingest', 'api', 'simulators'];

/** The simulate command reads MQTT_URL, DATA_DIR, LOG_LEVEL, REGISTRY_STORE and REDIS_URL (simulators/src/cli/options.ts). */
const SIMULATOR_VARIABLES = [...new Set([...read('simulators/src/cli/options.ts').matchAll(/\benv\.([A-Z][A-Z0-9_]*)/g)].map((m) => m[1] as string))];
const SHARED_SPECS: ConfigSpec = { ...COMMON_CONFIG, ...REDIS_CONFIG };
const SIMULATOR_CONFIG: ConfigSpec = Object.fromEntries(
  SIMULATOR_VARIABLES.map((name) => [name, SHARED_SPECS[name] ?? { kind: 'url', optional: true, values: ['mqtt', 'mqtts', 'ws', 'wss'], description: name }]),
);
const SPECS: Record<ServiceKind | 'setup', ConfigSpec> = { broker: BROKER_CONFIG, ingest: INGEST_CONFIG, api: API_CONFIG, simulators: SIMULATOR_CONFIG, setup: FIRST_START_CONFIG };
/** The HTTP port each service's health check asks, by the variable that sets it. */
const HEALTH_PORT: Record<ServiceKind, string | undefined> = { broker: 'BROKER_HTTP_PORT', ingest: 'INGEST_HTTP_PORT', api: 'API_PORT', simulators: undefined };
/** Ports each image listens on (their variables' defaults). */
const LISTEN_PORTS: Record<ServiceKind, readonly string[]> = {
  broker: [BROKER_CONFIG.MQTT_PORT.default, BROKER_CONFIG.MQTT_WS_PORT.default, BROKER_CONFIG.MQTT_TLS_PORT.default, BROKER_CONFIG.MQTT_WSS_PORT.default, BROKER_CONFIG.BROKER_HTTP_PORT.default],
  ingest: [INGEST_CONFIG.INGEST_HTTP_PORT.default],
  api: [API_CONFIG.API_PORT.default],
  simulators: [],
};

/** Workspace packages a package needs at run time: its own and its `dependencies`' (transitively). */
function runtimePackages(name: string, seen = new Set<string>()): Set<string> {
  if (seen.has(name)) return seen;
  seen.add(name);
  const manifest = JSON.parse(read(`${name}/package.json`)) as { dependencies?: Record<string, string> };
  for (const dep of Object.keys(manifest.dependencies ?? {})) {
    if (dep.startsWith('@citypulse/')) runtimePackages(dep.slice('@citypulse/'.length), seen);
  }
  return seen;
}
/** Files outside src/ a package reads at run time. */
const RUNTIME_FILES: Record<string, readonly string[]> = { ingest: ['ingest/alert-rules.yaml'], simulators: ['simulators/scenarios/'] };

/** From pnpm-workspace.yaml: the catalog's tsx version and the patch files pnpm checks at install. */
const WORKSPACE = read('pnpm-workspace.yaml');
const TSX_VERSION = /^\s+tsx: (\S+)$/m.exec(WORKSPACE)?.[1];
const PATCH_FILES = [...(/^patchedDependencies:\n((?:\s+.*\n?)*)/m.exec(WORKSPACE)?.[1] ?? '').matchAll(/^\s+[^#\s][^:]*: (\S+)$/gm)].map((m) => m[1] as string);
const PNPM_VERSION = /const PNPM_VERSION = '([^']+)'/.exec(read('scripts/run.mjs'))?.[1];

// ---- Dockerfiles ---------------------------------------------------------------------------------

const dockerfiles = Object.fromEntries(SERVICE_KINDS.map((kind) => [kind, parseDockerfile(read(`infra/deploy/${kind}.Dockerfile`))])) as Record<ServiceKind, Dockerfile>;
const ignores = Object.fromEntries(SERVICE_KINDS.map((kind) => [kind, new DockerIgnore(read(`infra/deploy/${kind}.Dockerfile.dockerignore`))])) as Record<ServiceKind, DockerIgnore>;
const all = (stage: Stage, keyword: string) => stage.instructions.filter((i) => i.keyword === keyword);
const one = (stage: Stage, keyword: string): Instruction => {
  const found = all(stage, keyword);
  expect(found, `${keyword} in stage ${stage.name ?? stage.index}`).toHaveLength(1);
  return found[0] as Instruction;
};
const envOf = (stage: Stage) => Object.fromEntries(all(stage, 'ENV').flatMap((i) => [...i.args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=(\S*)/g)].map((m) => [m[1] as string, m[2] as string])));

describe.each(SERVICE_KINDS)('%s.Dockerfile', (kind) => {
  const dockerfile = dockerfiles[kind];
  const stages = dockerfile.stages;
  const runtime = stages[stages.length - 1] as Stage;
  const packages = runtimePackages(kind);

  it('is multi-stage, every base image pinned to a version (same Node everywhere), BuildKit syntax declared', () => {
    expect(stages.length).toBeGreaterThanOrEqual(2);
    expect(dockerfile.directives.syntax).toMatch(/^docker\/dockerfile:\d/);
    const names = stages.map((s) => s.name);
    expect(new Set(names).size, 'stage names are unique').toBe(names.length);
    for (const stage of stages) {
      expect(stage.from, `FROM of stage ${stage.name}`).toMatch(/^[a-z0-9./-]+:\d+\.\d+\.\d+[a-z0-9.-]*$/);
      expect(stage.from).not.toMatch(/:latest$/);
    }
    const nodeTags = new Set(stages.map((s) => s.from).filter((f) => f.startsWith('node:')));
    expect([...nodeTags]).toEqual(['node:20.20.2-bookworm-slim']);
    const [major, minor] = (/^node:(\d+)\.(\d+)/.exec([...nodeTags][0] as string) ?? []).slice(1).map(Number);
    const engines = /(\d+)\.(\d+)/.exec((JSON.parse(read('package.json')) as { engines: { node: string } }).engines.node)?.slice(1).map(Number) ?? [];
    expect((major as number) * 1000 + (minor as number), 'the image Node satisfies engines.node').toBeGreaterThanOrEqual((engines[0] as number) * 1000 + (engines[1] as number));
  });

  it('runs as a non-root user, with a health check by node, the right ports, SIGTERM and tsx', () => {
    const user = one(runtime, 'USER').args;
    expect(user).not.toMatch(/^(root|0)(:|$)/);
    expect(user).toBe('node');
    const health = healthcheckCommand(one(runtime, 'HEALTHCHECK'));
    expect(health).not.toBe('NONE');
    const exec = (health as { exec?: readonly string[] }).exec;
    expect(exec?.[0], 'exec form, run by node (slim images have no curl)').toBe('node');
    const port = HEALTH_PORT[kind];
    if (port) {
      const spec = SPECS[kind][port] as { default: string };
      expect(exec?.join(' ')).toContain(`process.env.${port} || ${spec.default}`);
      expect(exec?.join(' ')).toContain('/healthz');
    }
    for (const key of ['interval', 'timeout', 'start-period', 'retries']) expect(one(runtime, 'HEALTHCHECK').flags[key], key).toBeDefined();
    const exposed = all(runtime, 'EXPOSE').flatMap((i) => i.args.split(' '));
    expect(exposed.sort()).toEqual([...LISTEN_PORTS[kind]].sort());
    expect(one(runtime, 'STOPSIGNAL').args).toBe('SIGTERM');
    const cmd = one(runtime, 'CMD').exec;
    expect(cmd, 'CMD in exec form (the process gets the signals)').toBeDefined();
    const script = cmd?.find((a) => a.endsWith('.ts'));
    expect(script && existsSync(join(ROOT, script)), `CMD runs ${script}, which exists`).toBe(true);
    expect(basename(cmd?.[0] ?? '')).toBe('tsx');
    if (kind !== 'simulators') expect(cmd).toEqual(expect.arrayContaining([...SERVICE_NODE_FLAGS]));
  });

  it('sets only variables the service reads (DATA_DIR=/data, a volume the user owns) and NODE_ENV', () => {
    const env = envOf(runtime);
    expect(env.DATA_DIR).toBe('/data');
    expect(env.NODE_ENV).toBe('production');
    for (const name of Object.keys(env).filter((n) => n !== 'NODE_ENV')) expect(Object.keys(SPECS[kind]), `ENV ${name}`).toContain(name);
    readConfig(SPECS[kind], { ...env, INGEST_MQTT_PASSWORD: 'x', API_MQTT_PASSWORD: 'x' });
    expect(all(runtime, 'VOLUME').map((v) => v.exec ?? v.args)).toEqual([['/data']]);
    expect(all(runtime, 'RUN').map((r) => r.args)).toContain('mkdir -p /data && chown node:node /data');
    // No build stage sets NODE_ENV=production: pnpm would leave out the dev tools the build needs.
    for (const stage of stages.slice(0, -1)) expect(envOf(stage).NODE_ENV).toBeUndefined();
  });

  it('installs with pnpm from the lockfile (the pinned pnpm, the patches), only what the service needs', () => {
    for (const stage of stages) {
      const runs = all(stage, 'RUN').map((r) => r.args);
      const installs = runs.filter((r) => /\bpnpm install\b/.test(r));
      if (installs.length === 0) continue;
      expect(runs).toContain(`npm install -g pnpm@${PNPM_VERSION ?? '?'}`);
      for (const install of installs) expect(install).toMatch(/--frozen-lockfile/);
      const copied = all(stage, 'COPY').flatMap((c) => copyPaths(c).sources);
      for (const file of ['package.json', 'pnpm-lock.yaml', 'pnpm-workspace.yaml']) expect(copied).toContain(file);
      expect(PATCH_FILES.length).toBeGreaterThan(0);
      for (const patch of PATCH_FILES) expect(copied.some((c) => patch.startsWith(c.replace(/\/$/, ''))), `${patch} copied before pnpm install`).toBe(true);
    }
    const deps = stages.find((s) => s.name === 'deps') as Stage;
    expect(all(deps, 'RUN').map((r) => r.args).join('\n')).toContain(`pnpm install --frozen-lockfile --prod --filter "@citypulse/${kind}..."`);
    // The manifests of exactly the workspace packages the service needs, and their sources at run time.
    const manifests = all(deps, 'COPY').flatMap((c) => copyPaths(c).sources).filter((s) => s.endsWith('/package.json'));
    expect(manifests.map((m) => m.split('/')[0]).sort()).toEqual([...packages].sort());
    const runtimeSources = all(runtime, 'COPY').filter((c) => !c.flags.from).flatMap((c) => copyPaths(c).sources);
    for (const pkg of packages) expect(runtimeSources, `${pkg}/src/ in the runtime stage`).toContain(`${pkg}/src/`);
    for (const file of [...packages].flatMap((p) => RUNTIME_FILES[p] ?? [])) expect(runtimeSources).toContain(file);
    const tsxInstall = all(runtime, 'RUN').find((r) => /npm install -g tsx@/.test(r.args));
    if (kind === 'simulators') expect(tsxInstall, 'the simulators run the tsx of their own dependencies').toBeUndefined();
    else expect(tsxInstall?.args).toContain(`tsx@${TSX_VERSION ?? '?'}`);
  });

  it('copies only files that exist and that its .dockerignore lets through; COPY --from names an earlier stage', () => {
    const ignore = ignores[kind];
    for (const [index, stage] of stages.entries()) {
      for (const copy of all(stage, 'COPY')) {
        const { sources } = copyPaths(copy);
        if (copy.flags.from) {
          expect(stages.slice(0, index).map((s) => s.name), `COPY --from=${copy.flags.from} (line ${copy.line})`).toContain(copy.flags.from);
          continue;
        }
        for (const source of sources) {
          expect(existsSync(join(ROOT, source)), `${source} (line ${copy.line}) exists`).toBe(true);
          const target = statSync(join(ROOT, source)).isDirectory() ? readdirSync(join(ROOT, source)).map((f) => `${source.replace(/\/$/, '')}/${f}`)[0] : source;
          expect(ignore.includes(target as string), `${source} (line ${copy.line}) passes the .dockerignore`).toBe(true);
        }
      }
    }
    // Nothing secret or bulky goes to the builder.
    for (const path of ['.env', '.data/credentials.json', '.data/devices.json', 'node_modules/.modules.yaml', `${kind}/node_modules/x`, 'dashboard/dist/index.html', `${kind}/test/x.test.ts`, 'test-artifacts/x', '.git/HEAD']) {
      expect(ignore.includes(path), `${path} is not sent`).toBe(false);
    }
  });
});

describe('api.Dockerfile', () => {
  it('builds the dashboard in its own stage and serves it from DASHBOARD_DIR', () => {
    const stages = dockerfiles.api.stages;
    const dashboard = stages.find((s) => s.name === 'dashboard') as Stage;
    expect(all(dashboard, 'RUN').map((r) => r.args)).toContain('pnpm --filter @citypulse/dashboard run build');
    const runtime = stages[stages.length - 1] as Stage;
    const fromDashboard = all(runtime, 'COPY').find((c) => c.flags.from === 'dashboard');
    expect(fromDashboard && copyPaths(fromDashboard)).toEqual({ sources: ['/app/dashboard/dist/'], dest: 'dashboard/dist/' });
    expect(envOf(runtime).DASHBOARD_DIR).toBe('/app/dashboard/dist');
    // and the first-start step, inside the api package so its imports resolve
    const firstStartCopy = all(runtime, 'COPY').find((c) => copyPaths(c).sources.includes('infra/deploy/first-start.ts'));
    expect(firstStartCopy && copyPaths(firstStartCopy).dest).toBe('api/deploy/first-start.ts');
  });
});

// ---- compose files ---------------------------------------------------------------------------------

/** Dummy values for the variables the compose files require. */
const DUMMY_SECRETS = { INFLUXDB_TOKEN: 'dummy-influxdb-token', INFLUXDB_PASSWORD: 'dummy-password', INGEST_MQTT_PASSWORD: 'dummy-ingest-secret', API_MQTT_PASSWORD: 'dummy-api-secret' };

interface ComposeService {
  image?: string;
  build?: { context: string; dockerfile: string };
  environment?: Record<string, string | number | boolean | null>;
  healthcheck?: { test?: string[]; disable?: boolean; interval?: string };
  depends_on?: Record<string, { condition: string }>;
  volumes?: (string | { source?: string; target: string; type?: string })[];
  ports?: (string | { published: number | string; target: number })[];
  restart?: string;
  command?: string[];
  profiles?: string[];
  init?: boolean;
}
interface Compose {
  services: Record<string, ComposeService>;
  volumes?: Record<string, unknown>;
  version?: unknown;
  name?: unknown;
}

/** `docker-compose -f FILE config` with a clean environment (a developer's INFLUX_* must not leak in). */
function composeConfig(file: string, env: Record<string, string> = DUMMY_SECRETS) {
  const dir = tempDir('citypulse-compose-');
  const envFile = join(dir, 'empty.env');
  writeFileSync(envFile, '');
  return tool('docker-compose', ['--env-file', envFile, '-f', join(DEPLOY, file), 'config'], { env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: dir, ...env } });
}

/** The configuration docker-compose renders with the dummy secrets (once per file). */
const renderedConfigs = new Map<string, Compose>();
function rendered(file: string): Compose {
  let config = renderedConfigs.get(file);
  if (!config) {
    const result = composeConfig(file);
    expect(result.status, `docker-compose config:\n${result.stderr}`).toBe(0);
    config = pyyaml(result.stdout) as Compose;
    renderedConfigs.set(file, config);
  }
  return config;
}

const kindOf = (service: ComposeService): ServiceKind | undefined => SERVICE_KINDS.find((kind) => service.build?.dockerfile === `infra/deploy/${kind}.Dockerfile` || service.image?.startsWith(`citypulse/${kind}:`));
const envStrings = (service: ComposeService) => Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, v === null ? '' : String(v)]));
const publishedPorts = (service: ComposeService) => (service.ports ?? []).map((p) => (typeof p === 'string' ? p.replace(/\/tcp$/, '') : `${p.published}:${p.target}`));
const dataMount = (service: ComposeService) => (service.volumes ?? []).map((v) => (typeof v === 'string' ? v.replace(/:rw$/, '') : `${v.source ?? ''}:${v.target}`)).find((v) => v.endsWith(':/data'));

describe.each(['compose.yaml', 'compose.cluster.yaml'])('%s', (file) => {
  let parsed: Compose | undefined;
  /** The file as written (anchors merged), read when a test needs it. */
  const raw = (): Compose => (parsed ??= pyyaml(read(`infra/deploy/${file}`)) as Compose);
  const config = () => rendered(file);

  it('is valid for docker-compose 1.29 (`docker-compose -f FILE config`), without `version:` or `name:`', () => {
    expect(raw().version).toBeUndefined();
    expect(raw().name).toBeUndefined();
    expect(Object.keys(config().services).sort()).toEqual(Object.keys(raw().services).sort());
  }, TOOLS_TIMEOUT);

  it('refuses to start without each secret, naming it', () => {
    for (const missing of Object.keys(DUMMY_SECRETS)) {
      const env = Object.fromEntries(Object.entries(DUMMY_SECRETS).filter(([k]) => k !== missing));
      const result = composeConfig(file, env);
      expect(result.status, `without ${missing}`).not.toBe(0);
      expect(result.stderr).toContain(missing);
    }
  }, TOOLS_TIMEOUT);

  it('writes no secret: every *TOKEN*, *PASSWORD* and *SECRET* value is a ${VARIABLE} reference', () => {
    for (const [name, service] of Object.entries(raw().services)) {
      for (const [key, value] of Object.entries(service.environment ?? {})) {
        if (!/TOKEN|PASSWORD|SECRET/.test(key)) continue;
        expect(String(value), `${name}: ${key}`).toMatch(/^\$\{[A-Z][A-Z0-9_]*(:\?[^}]+|:-)\}$/);
      }
      expect(JSON.stringify(service.command ?? []), `${name}: command`).not.toMatch(/requirepass|password|token/i);
    }
  });

  it('pins every image; builds ours from the Dockerfiles; every service has a health check', () => {
    for (const [name, service] of Object.entries(config().services)) {
      const kind = kindOf(service);
      if (service.build) {
        expect(kind, `${name} is built from one of our Dockerfiles`).toBeDefined();
        expect(service.build.context.replace(/\/$/, '')).toBe(ROOT.replace(/\/$/, ''));
        expect(service.image).toMatch(new RegExp(`^citypulse/(${kind ?? ''}):`));
      } else {
        expect(service.image, name).toMatch(/^[a-z0-9./-]+:\d+\.\d+\.\d+[a-z0-9.-]*$/);
      }
      // `disable: true` comes out of `docker-compose config` as `test: [NONE]`.
      if (service.healthcheck?.disable || service.healthcheck?.test?.[0] === 'NONE') {
        // Only a one-shot job, which the others wait for to complete.
        expect(service.restart, `${name} has no health check: it must be a one-shot job`).toBe('no');
        const waiting = Object.values(config().services).filter((s) => s.depends_on?.[name]);
        expect(waiting.length).toBeGreaterThan(0);
        for (const s of waiting) expect(s.depends_on?.[name]?.condition).toBe('service_completed_successfully');
      } else {
        expect(service.healthcheck?.test?.length, `${name} health check`).toBeGreaterThan(1);
        expect(service.restart, name).toBe('unless-stopped');
      }
      for (const [dep, { condition }] of Object.entries(service.depends_on ?? {})) {
        expect(config().services[dep], `${name} depends on ${dep}`).toBeDefined();
        expect(['service_healthy', 'service_completed_successfully']).toContain(condition);
      }
    }
  }, TOOLS_TIMEOUT);

  it('gives each service only variables it reads, with values its configuration accepts', () => {
    for (const [name, service] of Object.entries(config().services)) {
      const kind = name === 'setup' ? 'setup' : kindOf(service);
      if (!kind) continue;
      const env = envStrings(service);
      const spec = SPECS[kind];
      for (const key of Object.keys(env)) expect(Object.keys(spec), `${name}: ${key}`).toContain(key);
      // With the image's ENV, as the container sees it; the dummy secrets are not generated ones.
      const image = kind === 'setup' ? dockerfiles.api : dockerfiles[kind];
      const imageEnv = envOf(image.stages[image.stages.length - 1] as Stage);
      expect(() => readConfig(spec, { ...imageEnv, ...env }), name).not.toThrow();
    }
  }, TOOLS_TIMEOUT);

  it('mounts one data volume at DATA_DIR in every CityPulse service (the registry, operators, rules)', () => {
    const services = Object.entries(config().services).filter(([name, s]) => name === 'setup' || kindOf(s));
    expect(services.length).toBeGreaterThanOrEqual(5);
    for (const [name, service] of services) expect(dataMount(service), name).toBe('citypulse-data:/data');
    expect(Object.keys(config().volumes ?? {})).toContain('citypulse-data');
  }, TOOLS_TIMEOUT);

  it('sets InfluxDB 2.x up for the services: same org, bucket and token; the init script mounted and executable', () => {
    const services = config().services;
    const influxdb = services.influxdb as ComposeService;
    expect(influxdb.image).toMatch(/^influxdb:2\.\d+\.\d+$/);
    const init = envStrings(influxdb);
    expect(init.DOCKER_INFLUXDB_INIT_MODE).toBe('setup');
    expect(influxdb.volumes).toContain(`${DEPLOY}/influxdb-init.sh:/docker-entrypoint-initdb.d/citypulse.sh:ro`);
    expect(statSync(join(DEPLOY, 'influxdb-init.sh')).mode & 0o111, 'influxdb-init.sh is executable (the image runs only executable *.sh)').not.toBe(0);
    for (const [name, service] of Object.entries(services).filter(([n, s]) => n !== 'setup' && (kindOf(s) === 'ingest' || kindOf(s) === 'api'))) {
      const env = envStrings(service);
      expect(env.INFLUX_API, name).toBe('v2');
      expect(env.INFLUX_URL, name).toBe('http://influxdb:8086');
      expect(env.INFLUX_TOKEN, name).toBe(init.DOCKER_INFLUXDB_INIT_ADMIN_TOKEN);
      expect(env.INFLUX_ORG, name).toBe(init.DOCKER_INFLUXDB_INIT_ORG);
      expect(env.INFLUX_BUCKET, name).toBe(init.DOCKER_INFLUXDB_INIT_BUCKET);
      expect(env.INFLUX_DATABASE, name).toBe(init.CITYPULSE_DATABASE);
      expect(env.INFLUX_RETENTION_POLICY, name).toBe(init.CITYPULSE_RAW_RP);
      expect(env.INFLUX_RAW_RETENTION, name).toBe(init.CITYPULSE_RAW_RETENTION);
      expect(service.depends_on?.influxdb?.condition).toBe('service_healthy');
    }
    const redis = services.redis as ComposeService;
    expect(redis.command?.join(' ')).toContain('--appendonly yes');
    expect(redis.command?.join(' ')).toContain('--maxmemory-policy noeviction');
  }, TOOLS_TIMEOUT);
});

describe('env.example', () => {
  it('lists exactly the variables the compose files read, the secrets empty and required', () => {
    const code = (f: string) => read(`infra/deploy/${f}`).replace(/^\s*#.*$/gm, '');
    const used = new Set(['compose.yaml', 'compose.cluster.yaml'].flatMap((f) => [...code(f).matchAll(/\$\{([A-Z][A-Z0-9_]*)/g)].map((m) => m[1] as string)));
    const example = read('infra/deploy/env.example');
    const listed = [...example.matchAll(/^#? ?([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1] as string);
    expect([...listed].sort()).toEqual([...used].sort());
    for (const secret of Object.keys(DUMMY_SECRETS)) expect(example).toMatch(new RegExp(`^${secret}=$`, 'm'));
  });
});

describe('compose.yaml (one host)', () => {
  it('runs one of each service, the broker on Redis, the simulators only with --profile simulated', () => {
    const { services } = rendered('compose.yaml');
    const kinds = Object.values(services).map(kindOf).filter(Boolean);
    expect(kinds.sort()).toEqual(['api', 'api', 'broker', 'ingest', 'simulators']); // api: the api and the setup job
    const broker = services.broker as ComposeService;
    expect(envStrings(broker)).toMatchObject({ BROKER_STORE: 'redis', REDIS_URL: 'redis://redis:6379/0' });
    expect(publishedPorts(broker)).toEqual(['1883:1883', '8083:8083']);
    expect(publishedPorts(services.api as ComposeService)).toEqual(['3000:3000']);
    expect(services.simulators?.profiles).toEqual(['simulated']);
    for (const name of ['ingest', 'api', 'simulators']) expect(envStrings(services[name] as ComposeService).MQTT_URL).toBe('mqtt://broker:1883');
  }, TOOLS_TIMEOUT);
});

describe('compose.cluster.yaml and haproxy.cfg', () => {
  const cluster = () => rendered('compose.cluster.yaml').services;
  const ofKind = (services: Record<string, ComposeService>, kind: ServiceKind) => Object.entries(services).filter(([name, s]) => kindOf(s) === kind && name !== 'setup');

  it('runs two brokers joined through Redis, two ingest workers sharing the provinces, two api nodes joined through Redis', () => {
    const services = cluster();
    const brokers = ofKind(services, 'broker');
    expect(brokers.map(([n]) => n).sort()).toEqual(['broker-1', 'broker-2']);
    for (const [, b] of brokers) expect(envStrings(b)).toMatchObject({ BROKER_MQ: 'redis', BROKER_STORE: 'redis', REDIS_URL: 'redis://redis:6379/0' });
    const ingest = ofKind(services, 'ingest');
    const shards = ingest.map(([, s]) => envStrings(s).INGEST_SHARD as string).sort();
    expect(shards).toEqual(['1/2', '2/2']);
    const owned = shards.flatMap((s) => parseShard(s).provinces);
    expect(owned.sort(), 'every province owned by exactly one worker').toEqual([...PROVINCE_CODES].sort());
    const apis = ofKind(services, 'api');
    expect(apis.map(([n]) => n).sort()).toEqual(['api-1', 'api-2']);
    for (const [, a] of apis) expect(envStrings(a)).toMatchObject({ API_ADAPTER: 'redis', REDIS_URL: 'redis://redis:6379/0' });
    // Devices and services alike go through the front; only the front is published.
    for (const [name, s] of [...ingest, ...apis, ...ofKind(services, 'simulators')]) expect(envStrings(s).MQTT_URL, name).toBe('mqtt://lb:1883');
    for (const [name, s] of [...brokers, ...ingest, ...apis]) expect(publishedPorts(s), name).toEqual([]);
    const lb = services.lb as ComposeService;
    expect(lb.image).toMatch(/^haproxy:\d+\.\d+\.\d+$/);
    expect(publishedPorts(lb).filter((p) => !p.startsWith('127.0.0.1:'))).toEqual(['1883:1883', '8083:8083', '3000:3000']);
    expect(lb.volumes).toContain(`${DEPLOY}/haproxy.cfg:/usr/local/etc/haproxy/haproxy.cfg:ro`);
  }, TOOLS_TIMEOUT);

  it('keeps the device registry in Redis for every service and the setup job (no shared file for it)', () => {
    const services = cluster();
    const readers = Object.entries(services).filter(([name, s]) => name === 'setup' || kindOf(s));
    expect(readers.map(([n]) => n).sort()).toEqual(['api-1', 'api-2', 'broker-1', 'broker-2', 'ingest-1', 'ingest-2', 'setup', 'simulators']);
    for (const [name, s] of readers) {
      expect(envStrings(s), name).toMatchObject({ REGISTRY_STORE: 'redis', REDIS_URL: 'redis://redis:6379/0' });
      expect(s.depends_on?.redis?.condition, name).toBe('service_healthy');
    }
  }, TOOLS_TIMEOUT);

  it('haproxy -c accepts haproxy.cfg (service names unresolved here: init-addr none, resolvers docker)', () => {
    const result = tool('haproxy', ['-c', '-f', join(DEPLOY, 'haproxy.cfg')]);
    expect(result.status, `${result.stdout}${result.stderr}`).toBe(0);
    expect(result.stdout).toContain('Configuration file is valid');
  });

  it('haproxy.cfg sends each port to the services that listen on it, checks their health, keeps browsers on one api node', () => {
    const cfg = read('infra/deploy/haproxy.cfg');
    const services = cluster();
    const binds = [...cfg.matchAll(/^\s*bind :(\d+)/gm)].map((m) => m[1] as string);
    expect(binds.sort()).toEqual(publishedPorts(services.lb as ComposeService).map((p) => p.split(':').at(-1) as string).sort());
    const servers = [...cfg.matchAll(/^\s*server (\S+) (\S+):(\d+)(.*)$/gm)].map((m) => ({ name: m[1] as string, host: m[2] as string, port: m[3] as string, rest: m[4] as string }));
    expect(servers.length).toBe(6);
    for (const server of servers) {
      const service = services[server.host];
      expect(service, `${server.host} is a service of compose.cluster.yaml`).toBeDefined();
      const kind = kindOf(service as ComposeService) as ServiceKind;
      expect(LISTEN_PORTS[kind], `${server.host}:${server.port}`).toContain(server.port);
      // MQTT over TCP and over WebSocket start with a PROXY v2 header (the device's address), and
      // the broker reads it on that port.
      if (kind === 'broker') {
        expect(server.rest.trim()).toBe(`port ${BROKER_CONFIG.BROKER_HTTP_PORT.default} send-proxy-v2`);
        const setting = server.port === BROKER_CONFIG.MQTT_PORT.default ? 'BROKER_PROXY_PROTOCOL' : 'BROKER_WS_PROXY_PROTOCOL';
        expect(server.port === BROKER_CONFIG.MQTT_PORT.default || server.port === BROKER_CONFIG.MQTT_WS_PORT.default, `${server.host}:${server.port}`).toBe(true);
        expect(envStrings(service as ComposeService)[setting], `${server.host} reads the header on ${server.port} (${setting})`).toBe('true');
      }
      if (kind === 'api') expect(server.rest.trim()).toBe(`cookie ${server.name}`);
    }
    // The health checks ask /healthz on the check port: no PROXY header before their HTTP.
    expect(cfg).not.toMatch(/^\s*[^#\s].*check-send-proxy/m);
    expect(cfg).toMatch(/option httpchk GET \/healthz/);
    expect(cfg).toMatch(/cookie CITYPULSE_NODE insert/);
    // Stickiness is needed while the dashboard's socket.io client may start with long-polling.
    expect(read('dashboard/src/live/socket.ts')).not.toMatch(/transports:\s*\[\s*['"]websocket['"]\s*\]/);
    // The front waits longer than the longest MQTT keep-alive the broker accepts, times 1.5.
    const clientTimeoutMin = Number(/timeout client (\d+)m/.exec(cfg)?.[1]);
    expect(clientTimeoutMin * 60).toBeGreaterThan(Number((BROKER_CONFIG as ConfigSpec).BROKER_KEEPALIVE_MAX_S?.default) * 1.5);
  }, TOOLS_TIMEOUT);
});

// ---- InfluxDB 2.x init -----------------------------------------------------------------------------

describe('influxdb-init.sh', () => {
  it('passes shellcheck', () => {
    const result = tool('shellcheck', [join(DEPLOY, 'influxdb-init.sh')]);
    expect(result.status, result.stdout).toBe(0);
  });

  it('creates the buckets, the DBRP mappings the api reads through and the roll-up tasks ingest keeps on 1.x', () => {
    const dir = tempDir('citypulse-influx-init-');
    const log = join(dir, 'calls.log');
    // A stand-in for the influx CLI: records each call (and each task's Flux), answers `bucket list`.
    writeFileSync(
      join(dir, 'influx'),
      `#!/bin/bash\nprintf '%s\\n' "$*" >> ${log}\nif [ "$1 $2" = "bucket list" ]; then printf 'id-of-%s\\tname\\n' "$6"; fi\nif [ "$1 $2" = "task create" ]; then cat "$6" >> ${log}; echo '<<end>>' >> ${log}; fi\n`,
    );
    chmodSync(join(dir, 'influx'), 0o755);
    const env = {
      PATH: `${dir}:${process.env.PATH ?? ''}`,
      DOCKER_INFLUXDB_INIT_ORG: 'citypulse',
      DOCKER_INFLUXDB_INIT_BUCKET: 'citypulse',
      DOCKER_INFLUXDB_INIT_BUCKET_ID: 'raw-id',
      CITYPULSE_DATABASE: 'citypulse',
      CITYPULSE_RAW_RP: 'raw',
      CITYPULSE_RAW_RETENTION: '30d',
      CITYPULSE_ROLLUP_1M_RETENTION: '90d',
      CITYPULSE_ROLLUP_1H_RETENTION: 'INF',
    };
    const result = spawnSync('bash', [join(DEPLOY, 'influxdb-init.sh')], { env, encoding: 'utf8' });
    expect(result.status, result.stderr).toBe(0);
    const calls = readFileSync(log, 'utf8');
    const lines = calls.split('\n');
    expect(lines).toContain('bucket update --id raw-id --retention 30d');
    expect(lines).toContain('v1 dbrp create --org citypulse --db citypulse --rp raw --bucket-id raw-id --default');
    expect(lines).toContain('bucket create --org citypulse --name citypulse_rollup_1m --retention 90d');
    expect(lines).toContain('bucket create --org citypulse --name citypulse_rollup_1h --retention 0');
    for (const resolution of ['1m', '1h'] as const) {
      const rp = ROLLUPS[resolution].retentionPolicy;
      expect(lines).toContain(`v1 dbrp create --org citypulse --db citypulse --rp ${rp} --bucket-id id-of-citypulse_${rp}`);
    }
    // One task per schedule of ingest's roll-ups (ROLLUPS in ingest/src/storage.ts), every aggregate.
    const tasks = calls.split('<<end>>').filter((t) => t.includes('option task'));
    const expected = (['1m', '1h'] as const).flatMap((r) => ROLLUPS[r].schedules.map((s) => ({ r, s })));
    expect(tasks).toHaveLength(expected.length);
    for (const { r, s } of expected) {
      const task = tasks.find((t) => t.includes(`name: "citypulse-rollup-${r}${s.suffix.replace('_', '-')}"`));
      expect(task, `task for ${r}${s.suffix}`).toBeDefined();
      expect(task).toContain(`every: ${s.every},`);
      expect(task).toContain(`range(start: -${s.for})`);
      expect(task).toContain(`aggregateWindow(every: ${ROLLUPS[r].interval},`);
      expect(task).toContain(`to(bucket: "citypulse_${ROLLUPS[r].retentionPolicy}")`);
      for (const aggregate of ROLLUP_AGGREGATES) expect(task).toContain(`prefix: "${aggregate}_"`);
    }
    expect(result.stdout).toContain('storage layout ready');
  });
});

// ---- the first-start step --------------------------------------------------------------------------

describe('first-start.ts', () => {
  it('registers the service accounts (hashes only) and creates the first admin once', async () => {
    const dataDir = tempDir('citypulse-first-start-');
    const env = { DATA_DIR: dataDir, INGEST_MQTT_PASSWORD: generateSecret(), API_MQTT_PASSWORD: generateSecret() };
    const first = await firstStart(env);
    expect(first.services).toEqual(['ingest', 'api']);
    expect(first.admin?.username).toBe('admin');
    const registry = await DeviceRegistry.open(dataDir);
    expect(await registry.authenticate('ingest', env.INGEST_MQTT_PASSWORD)).toMatchObject({ type: 'service', service: { role: 'ingest' } });
    expect(await registry.authenticate('api', env.API_MQTT_PASSWORD)).toMatchObject({ type: 'service', service: { role: 'api' } });
    registry.close();
    const stored = readFileSync(join(dataDir, 'devices.json'), 'utf8') + readFileSync(join(dataDir, 'operators.json'), 'utf8');
    for (const secret of [env.INGEST_MQTT_PASSWORD, env.API_MQTT_PASSWORD, first.admin?.password ?? '?']) expect(stored).not.toContain(secret);
    const operators = await OperatorStore.open(dataDir);
    expect(operators.count).toBe(1);
    operators.close();
    // Every later start: nothing to do.
    expect(await firstStart(env)).toEqual({ services: [], admin: undefined });
    // A rotated secret in the env file is taken over.
    const rotated = { ...env, API_MQTT_PASSWORD: generateSecret() };
    expect((await firstStart(rotated)).services).toEqual(['api']);
  });

  it('registers the service accounts in the Redis registry with REGISTRY_STORE=redis (compose.cluster.yaml)', async () => {
    const dataDir = tempDir('citypulse-first-start-');
    const redis = await startRedis({ dataDir: join(dataDir, 'redis') });
    try {
      const env = { DATA_DIR: dataDir, REGISTRY_STORE: 'redis', REDIS_URL: `${redis.url}/0`, INGEST_MQTT_PASSWORD: generateSecret(), API_MQTT_PASSWORD: generateSecret() };
      expect((await firstStart(env)).services).toEqual(['ingest', 'api']);
      expect(existsSync(join(dataDir, 'devices.json'))).toBe(false);
      const registry = await DeviceRegistry.open(tempDir('citypulse-other-node-'), { store: 'redis', redisUrl: env.REDIS_URL });
      expect(await registry.authenticate('api', env.API_MQTT_PASSWORD)).toMatchObject({ type: 'service', service: { role: 'api' } });
      registry.close();
      expect((await firstStart(env)).services).toEqual([]);
    } finally {
      await redis.stop();
    }
  });

  it('refuses secrets that were not generated', async () => {
    const dataDir = tempDir('citypulse-first-start-');
    await expect(firstStart({ DATA_DIR: dataDir, INGEST_MQTT_PASSWORD: 'changeme', API_MQTT_PASSWORD: generateSecret() })).rejects.toThrow(/INGEST_MQTT_PASSWORD must be generated/);
  });
});
