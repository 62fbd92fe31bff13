#!/usr/bin/env node
// The two commands of the quick start, `npm start` and `npm test`, land here. Plain Node with no
// dependencies: it installs whatever is missing (pnpm, the workspace's packages, Debian's
// influxdb, chromium, mosquitto-clients, redis-server, python3-paho-mqtt, and the deployment files'
// validators docker-compose, haproxy and shellcheck), builds the dashboard
// when it is stale, then starts the platform or runs every check.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = dirname(dirname(fileURLToPath(import.meta.url)));
process.env.CITYPULSE_STARTED_AT ??= String(Date.now());
const PNPM_VERSION = '10.34.8';
const command = process.argv[2] ?? 'start';
const say = (line) => process.stdout.write(`[citypulse] ${line}\n`);
const fail = (line) => {
  process.stderr.write(`[citypulse] ${line}\n`);
  process.exit(1);
};

function checkNode() {
  const [major, minor] = process.versions.node.split('.').map(Number);
  if (major < 20 || (major === 20 && minor < 19)) fail(`Node ${process.versions.node} is too old: install Node 20.19 or newer.`);
}

/** Loads .env (KEY=value lines) without overriding variables already set. */
function loadDotEnv() {
  const file = join(ROOT, '.env');
  if (!existsSync(file)) return;
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const match = line.match(/^\s*([A-Z][A-Z0-9_]*)\s*=\s*(.*?)\s*$/);
    if (!match || line.trim().startsWith('#')) continue;
    const [, key, raw] = match;
    if (process.env[key] === undefined) process.env[key] = raw.replace(/^(['"])(.*)\1$/, '$2');
  }
}

function has(cmd) {
  return spawnSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' }).status === 0;
}

function isRoot() {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** pnpm from PATH, installed globally with npm when we may, else run through npx. */
function pnpmCommand() {
  if (has('pnpm')) {
    const version = spawnSync('pnpm', ['--version'], { encoding: 'utf8' }).stdout.trim();
    if (version.startsWith('10.')) return ['pnpm'];
  }
  if (isRoot()) {
    say(`installing pnpm ${PNPM_VERSION} with npm …`);
    const result = spawnSync('npm', ['install', '-g', `pnpm@${PNPM_VERSION}`], { stdio: ['ignore', 'ignore', 'inherit'] });
    if (result.status === 0 && has('pnpm')) return ['pnpm'];
  }
  return ['npx', '-y', `pnpm@${PNPM_VERSION}`];
}

function run(argv, options = {}) {
  const [cmd, ...args] = argv;
  const result = spawnSync(cmd, args, { cwd: ROOT, stdio: 'inherit', ...options });
  return result.status ?? 1;
}

function installWorkspace(pnpm) {
  const marker = join(ROOT, 'node_modules', '.modules.yaml');
  const lock = join(ROOT, 'pnpm-lock.yaml');
  if (existsSync(marker) && statSync(marker).mtimeMs >= statSync(lock).mtimeMs && statSync(marker).mtimeMs >= newest([join(ROOT, 'package.json')])) return;
  say('installing the workspace packages (pnpm install) …');
  if (run([...pnpm, 'install', '--frozen-lockfile', '--reporter=append-only']) !== 0) fail('pnpm install failed (see above).');
}

/** Debian packages the command needs: installed with apt-get as root (or passwordless sudo). */
function ensureDebianPackages(packages) {
  const missing = packages.filter(([binary]) => !existsSync(binary) && !has(binary.split('/').pop()));
  if (missing.length === 0) return;
  const names = missing.map(([, pkg]) => pkg);
  const sudo = isRoot() ? [] : spawnSync('sudo', ['-n', 'true'], { stdio: 'ignore' }).status === 0 ? ['sudo', '-n'] : undefined;
  if (!sudo) fail(`missing Debian packages: ${names.join(' ')}. Install them with: sudo apt-get install -y ${names.join(' ')}  (or run this command as root)`);
  say(`installing Debian packages: ${names.join(' ')} …`);
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
  const apt = (...args) => run([...sudo, 'apt-get', ...args], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  if (apt('install', '-y', '-qq', ...names) !== 0) {
    apt('update', '-qq');
    if (apt('install', '-y', '-qq', ...names) !== 0) fail(`apt-get install ${names.join(' ')} failed (see above).`);
  }
}

function newest(paths) {
  let latest = 0;
  const visit = (p) => {
    if (!existsSync(p)) return;
    const s = statSync(p);
    if (s.isDirectory()) {
      for (const entry of readdirSync(p)) if (entry !== 'node_modules' && entry !== 'dist') visit(join(p, entry));
    } else latest = Math.max(latest, s.mtimeMs);
  };
  paths.forEach(visit);
  return latest;
}

function buildDashboard(pnpm, force) {
  const index = join(ROOT, 'dashboard', 'dist', 'index.html');
  const sources = newest([join(ROOT, 'dashboard', 'src'), join(ROOT, 'dashboard', 'index.html'), join(ROOT, 'dashboard', 'vite.config.ts'), join(ROOT, 'contracts', 'src')]);
  if (!force && existsSync(index) && statSync(index).mtimeMs >= sources) return;
  say('building the dashboard (vite build) …');
  if (run([...pnpm, '--filter', '@citypulse/dashboard', 'run', 'build'], { stdio: ['ignore', 'ignore', 'inherit'] }) !== 0) fail('dashboard build failed (see above).');
}

function runTests(pnpm) {
  const steps = [
    ['lint (typescript-eslint)', [...pnpm, 'run', 'lint']],
    ['type check (tsc --noEmit, every package)', [...pnpm, 'run', 'typecheck']],
  ];
  for (const [name, argv] of steps) {
    say(`${name} …`);
    if (run(argv) !== 0) fail(`${name} failed.`);
  }
  say('tests (vitest: unit, end-to-end, browser) …');
  mkdirSync(join(ROOT, 'test-artifacts'), { recursive: true });
  const report = join(ROOT, 'test-artifacts', 'vitest-report.json');
  const status = run([join(ROOT, 'node_modules', '.bin', 'vitest'), 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`]);
  if (existsSync(report)) {
    const r = JSON.parse(readFileSync(report, 'utf8'));
    // The plain closing line CI reads.
    process.stdout.write(`\nTests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${r.numPendingTests + r.numTodoTests} skipped\n`);
  }
  process.exit(status);
}

/**
 * Every package's `bench` script, one after the other (they measure, so never in parallel): the
 * services' benches first, then the dashboard's (Chromium against the whole platform, with the
 * dashboard built).
 */
function runBenchmarks(pnpm) {
  say('benchmarks (figures go to BENCHMARKS.md by hand, with the machine they came from) …');
  const services = run([...pnpm, '--recursive', '--workspace-concurrency=1', '--if-present', '--filter', '!@citypulse/dashboard', 'run', 'bench']);
  if (services !== 0) process.exit(services);
  buildDashboard(pnpm, false);
  say('dashboard bench (main-thread time per live frame in headless Chromium) …');
  process.exit(run([...pnpm, '--filter', '@citypulse/dashboard', 'run', 'bench']));
}

function startPlatform(extraArgs = []) {
  const tsx = join(ROOT, 'node_modules', '.bin', 'tsx');
  const child = spawn(tsx, [join(ROOT, 'scripts', 'start.ts'), ...extraArgs, ...process.argv.slice(3)], { cwd: ROOT, stdio: 'inherit' });
  const forward = (signal) => child.kill(signal);
  process.on('SIGINT', forward);
  process.on('SIGTERM', forward);
  child.on('exit', (code, signal) => process.exit(code ?? (signal ? 0 : 1)));
}

checkNode();
loadDotEnv();
const pnpm = pnpmCommand();
installWorkspace(pnpm);
switch (command) {
  case 'start':
    if (!process.env.INFLUX_URL) ensureDebianPackages([['/usr/bin/influxd', 'influxdb']]);
    buildDashboard(pnpm, false);
    startPlatform();
    break;
  case 'cluster':
    // The local cluster of issue 8: Redis, two brokers behind a TCP front, two ingest shards, two api nodes.
    ensureDebianPackages([['/usr/bin/redis-server', 'redis-server'], ...(process.env.INFLUX_URL ? [] : [['/usr/bin/influxd', 'influxdb']])]);
    buildDashboard(pnpm, false);
    startPlatform(['--cluster']);
    break;
  case 'test':
    ensureDebianPackages([
      ['/usr/bin/influxd', 'influxdb'],
      ['/usr/bin/chromium', 'chromium'],
      ['/usr/bin/mosquitto_pub', 'mosquitto-clients'],
      ['/usr/bin/redis-server', 'redis-server'],
      // paho, the Python MQTT client the broker's interoperability test drives
      ['/usr/lib/python3/dist-packages/paho/mqtt/client.py', 'python3-paho-mqtt'],
      // the validators infra/test/deploy.test.ts runs on the Dockerfiles' compose and HAProxy files
      ['/usr/bin/docker-compose', 'docker-compose'],
      ['/usr/sbin/haproxy', 'haproxy'],
      ['/usr/bin/shellcheck', 'shellcheck'],
    ]);
    buildDashboard(pnpm, true);
    runTests(pnpm);
    break;
  case 'bench':
    ensureDebianPackages([
      ['/usr/bin/influxd', 'influxdb'],
      ['/usr/sbin/mosquitto', 'mosquitto'],
      ['/usr/bin/redis-server', 'redis-server'],
      ['/usr/bin/chromium', 'chromium'],
    ]);
    runBenchmarks(pnpm);
    break;
  default:
    fail(`unknown command "${command}": use start, cluster, test or bench`);
}
