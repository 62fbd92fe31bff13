import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.js';
import { ensureDebianPackage } from './system.js';

/**
 * Runs a private Redis (Debian's `redis-server` package) on a free loopback port, in the
 * foreground as a child process: the broker's session store when BROKER_STORE=redis, and the one
 * the durability tests restart the broker against. No snapshots by default; pass `appendOnly`
 * when Redis itself must keep its data across its own restarts.
 */
export const REDIS_DEFAULTS = {
  host: '127.0.0.1',
  startTimeoutMs: 15_000,
  stopTimeoutMs: 5_000,
} as const;

export interface RedisOptions {
  /** Working folder (the append-only file goes here when `appendOnly`). */
  readonly dataDir: string;
  readonly port?: number;
  /** Keep an append-only file (fsync every second), so data survives a Redis restart. */
  readonly appendOnly?: boolean;
  readonly log?: (line: string) => void;
}

export interface RunningRedis {
  /** redis://127.0.0.1:PORT (database 0). */
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

export async function startRedis(options: RedisOptions): Promise<RunningRedis> {
  const binary = await ensureDebianPackage('redis-server', 'redis-server', options.log);
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  const port = options.port || (await freePort(REDIS_DEFAULTS.host));
  const args = [
    '--port', String(port),
    '--bind', REDIS_DEFAULTS.host,
    '--dir', dataDir,
    '--save', '',
    '--appendonly', options.appendOnly ? 'yes' : 'no',
    '--appendfsync', 'everysec',
    '--daemonize', 'no',
    '--loglevel', 'warning',
    '--logfile', '', // stdout, which we keep the tail of for error messages
  ];
  const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString()).slice(-4000);
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const deadline = Date.now() + REDIS_DEFAULTS.startTimeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode}): ${output}`);
    // A listening socket is not enough: Redis answers LOADING while it reads an append-only file.
    if (await answersPing(port)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`redis-server did not answer PING on ${port} within ${REDIS_DEFAULTS.startTimeoutMs} ms: ${output}`);
    }
    await sleep(50);
  }
  return {
    url: `redis://${REDIS_DEFAULTS.host}:${port}`,
    port,
    process: child,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), REDIS_DEFAULTS.stopTimeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** True when something on `port` answers a RESP PING with +PONG. */
function answersPing(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ port, host: REDIS_DEFAULTS.host });
    let reply = '';
    const finish = (ok: boolean) => {
      socket.destroy();
      done(ok);
    };
    socket.setTimeout(1000, () => finish(false));
    socket.once('connect', () => socket.write('*1\r\n$4\r\nPING\r\n'));
    socket.on('data', (chunk: Buffer) => {
      reply += chunk.toString();
      if (reply.includes('\r\n')) finish(reply.startsWith('+PONG'));
    });
    socket.once('error', () => finish(false));
  });
}
