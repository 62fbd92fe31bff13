/**
 * Replays a Dockerfile of this folder on this machine, without a container engine:
 *
 *   npx tsx infra/deploy/dry-build.ts broker ingest api simulators [--out /tmp/citypulse-dry-build]
 *
 * Each build stage becomes a folder (OUT/SERVICE/STAGE) standing in for the stage's file system:
 * COPY takes exactly what the Dockerfile names, from the repository as the Dockerfile's
 * .dockerignore lets it through (or from an earlier stage's folder); RUN runs its commands with the
 * stage's ENV and WORKDIR mapped into the folder (`npm install -g` into the folder's /usr/local);
 * ENV, USER, EXPOSE, HEALTHCHECK and CMD are reported. What it cannot do: the base image (this
 * machine's Node and Debian stand in for node:…-bookworm-slim), file ownership (chown is skipped),
 * users. It shows that the install filters, the COPY lists and the dashboard build work with only
 * what the Dockerfile copies; the printed line starts the service from the runtime stage's folder.
 * Not part of `npm test`: it downloads pnpm and tsx from the npm registry and builds the dashboard.
 */
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runCliIfEntry } from '@citypulse/infra';
import { copyPaths, DockerIgnore, parseDockerfile, type Instruction } from './dockerfile.js';

const DEPLOY = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(DEPLOY, '..', '..');
export const SERVICES = ['broker', 'ingest', 'api', 'simulators'] as const;

interface StageState {
  readonly name: string;
  readonly root: string;
  workdir: string;
  readonly env: Record<string, string>;
  user: string;
  cmd: readonly string[];
  healthcheck: string;
  readonly expose: string[];
}

/** `A=b C="d e"` (ENV's key=value form) into pairs. */
export function parseEnv(args: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const match of args.matchAll(/([A-Za-z_][A-Za-z0-9_]*)=("([^"]*)"|\S*)/g)) out[match[1] as string] = match[3] ?? (match[2] as string);
  return out;
}

/** Files and folders of the build context that COPY may take: the .dockerignore applied. */
function copyFromContext(ignore: DockerIgnore, source: string, target: string): number {
  const path = join(ROOT, source);
  if (!existsSync(path)) throw new Error(`COPY ${source}: not in the repository`);
  let copied = 0;
  const visit = (rel: string, to: string) => {
    const abs = join(ROOT, rel);
    if (statSync(abs).isDirectory()) {
      if (!ignore.mayIncludeInside(rel)) return;
      for (const entry of readdirSync(abs)) visit(posix.join(rel, entry), join(to, entry));
    } else if (ignore.includes(rel)) {
      mkdirSync(dirname(to), { recursive: true });
      cpSync(abs, to);
      copied++;
    }
  };
  visit(posix.normalize(source).replace(/\/$/, ''), target);
  if (copied === 0) throw new Error(`COPY ${source}: the .dockerignore lets nothing through`);
  return copied;
}

function inside(stage: StageState, containerPath: string): string {
  return join(stage.root, posix.resolve(stage.workdir, containerPath));
}

function run(stage: StageState, instruction: Instruction, log: (line: string) => void): void {
  const cwd = inside(stage, '.');
  mkdirSync(cwd, { recursive: true });
  const usrLocal = join(stage.root, 'usr', 'local');
  for (const command of instruction.args.split(' && ').map((c) => c.trim())) {
    const words = command.match(/"[^"]*"|\S+/g)?.map((w) => w.replace(/^"(.*)"$/, '$1')) ?? [];
    let argv: string[];
    if (words[0] === 'npm' && words[1] === 'install' && words[2] === '-g') argv = ['npm', 'install', '-g', '--prefix', usrLocal, '--no-fund', '--no-audit', ...words.slice(3)];
    else if (words[0] === 'npm' && words[1] === 'cache') {
      log(`  skipped: ${command}`);
      continue;
    } else if (words[0] === 'mkdir') {
      for (const dir of words.slice(1).filter((w) => !w.startsWith('-'))) mkdirSync(inside(stage, dir), { recursive: true });
      log(`  done: ${command} (inside the stage folder)`);
      continue;
    } else if (words[0] === 'chown') {
      log(`  skipped: ${command} (ownership is not emulated)`);
      continue;
    } else if (words[0] === 'pnpm') argv = [join(usrLocal, 'bin', 'pnpm'), ...words.slice(1)];
    else throw new Error(`line ${instruction.line}: RUN ${command}: not emulated`);
    log(`  $ ${command}`);
    const env = { ...process.env, ...stage.env, PATH: `${join(usrLocal, 'bin')}:${process.env.PATH ?? ''}` };
    const result = spawnSync(argv[0] as string, argv.slice(1), { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], encoding: 'utf8' });
    if (result.status !== 0) throw new Error(`line ${instruction.line}: ${command} failed (${result.status ?? result.signal}):\n${result.stdout}${result.stderr}`);
    const tail = `${result.stdout}${result.stderr}`.trim().split('\n').slice(-2);
    for (const line of tail) log(`    ${line}`);
  }
}

/** Replays SERVICE.Dockerfile into OUT/SERVICE; returns the runtime stage. */
export function dryBuild(service: string, out: string, log: (line: string) => void = (l) => process.stdout.write(`${l}\n`)): StageState {
  const dockerfile = parseDockerfile(readFileSync(join(DEPLOY, `${service}.Dockerfile`), 'utf8'));
  const ignore = new DockerIgnore(readFileSync(join(DEPLOY, `${service}.Dockerfile.dockerignore`), 'utf8'));
  rmSync(join(out, service), { recursive: true, force: true });
  const stages = new Map<string, StageState>();
  let last: StageState | undefined;
  for (const stage of dockerfile.stages) {
    const name = stage.name ?? String(stage.index);
    const state: StageState = { name, root: join(out, service, name), workdir: '/', env: {}, user: 'root', cmd: [], healthcheck: '', expose: [] };
    mkdirSync(state.root, { recursive: true });
    log(`${service}: stage ${name} (FROM ${stage.from}: this machine's Node ${process.version} stands in for it)`);
    for (const instruction of stage.instructions) {
      switch (instruction.keyword) {
        case 'ENV':
          Object.assign(state.env, parseEnv(instruction.args));
          break;
        case 'WORKDIR':
          state.workdir = posix.resolve(state.workdir, instruction.args);
          mkdirSync(inside(state, '.'), { recursive: true });
          break;
        case 'COPY': {
          const { sources, dest } = copyPaths(instruction);
          const from = instruction.flags.from;
          for (const source of sources) {
            const target = inside(state, dest.endsWith('/') && !source.endsWith('/') && !statSync(from ? join((stages.get(from) as StageState).root, source) : join(ROOT, source)).isDirectory() ? posix.join(dest, posix.basename(source)) : dest);
            if (from) {
              const origin = stages.get(from);
              if (!origin) throw new Error(`line ${instruction.line}: COPY --from=${from}: no such stage before it`);
              cpSync(join(origin.root, posix.resolve('/', source)), target, { recursive: true, verbatimSymlinks: true });
              log(`  COPY --from=${from} ${source} → ${posix.resolve(state.workdir, dest)}`);
            } else {
              const n = copyFromContext(ignore, source, target);
              log(`  COPY ${source} → ${posix.resolve(state.workdir, dest)} (${n} file${n === 1 ? '' : 's'})`);
            }
          }
          break;
        }
        case 'RUN':
          run(state, instruction, log);
          break;
        case 'USER':
          state.user = instruction.args;
          break;
        case 'EXPOSE':
          state.expose.push(...instruction.args.split(' '));
          break;
        case 'CMD':
          state.cmd = instruction.exec ?? ['/bin/sh', '-c', instruction.args];
          break;
        case 'HEALTHCHECK':
          state.healthcheck = instruction.args;
          break;
        default:
          break;
      }
    }
    stages.set(name, state);
    last = state;
  }
  if (!last) throw new Error(`${service}.Dockerfile has no stage`);
  log(`${service}: runtime stage in ${relative(process.cwd(), last.root) || '.'}: USER ${last.user}, EXPOSE ${last.expose.join(' ')}, CMD ${JSON.stringify(last.cmd)}`);
  return last;
}

export async function main(argv: readonly string[]): Promise<number> {
  const outIndex = argv.indexOf('--out');
  const out = resolve(outIndex >= 0 ? (argv[outIndex + 1] ?? '') : '/tmp/citypulse-dry-build');
  const services = argv.filter((a, i) => !a.startsWith('--') && (outIndex < 0 || i !== outIndex + 1));
  const unknown = services.filter((s) => !(SERVICES as readonly string[]).includes(s));
  if (services.length === 0 || unknown.length > 0) {
    process.stderr.write(`usage: tsx infra/deploy/dry-build.ts ${SERVICES.join('|')}... [--out DIR]\n`);
    return 2;
  }
  for (const service of services) {
    const stage = dryBuild(service, out);
    const app = join(stage.root, stage.workdir);
    // The image's absolute paths, mapped into the stage folder.
    const env = Object.entries(stage.env).map(([k, v]) => `${k}=${v.startsWith('/') ? join(stage.root, v) : v}`);
    const [cmd, ...args] = stage.cmd;
    const bin = cmd === 'tsx' ? join(stage.root, 'usr', 'local', 'bin', 'tsx') : (cmd ?? '');
    process.stdout.write(`${service}: start it with\n  mkdir -p ${join(stage.root, 'data')} && cd ${app} && env ${env.join(' ')} ${bin} ${args.map((a) => `'${a}'`).join(' ')}\n\n`);
  }
  return 0;
}

runCliIfEntry(import.meta.url, main);
