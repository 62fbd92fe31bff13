import { spawn, type ChildProcess } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { createConnection } from 'node:net';
import { join, resolve } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { freePort } from './ports.js';
import { ensureDebianPackage } from './system.js';

/**
 * Runs a private Mosquitto (Debian's `mosquitto` package) on a free port: the reference broker the
 * benchmarks compare against, and a fast sink when the thing measured is a publisher. Anonymous,
 * no persistence, no Nagle (mosquitto's default would hold PUBACKs back by delayed ACKs).
 */
export const MOSQUITTO_DEFAULTS = {
  host: '127.0.0.1',
  startTimeoutMs: 15_000,
  stopTimeoutMs: 5_000,
} as const;

export interface MosquittoOptions {
  /** Folder for the generated config. */
  readonly dataDir: string;
  readonly port?: number;
  readonly log?: (line: string) => void;
  /**
   * Never drop queued QoS 1/2 messages for a client that falls behind (`max_queued_messages 0`):
   * what a fair broker benchmark needs. Without it the queue holds 100,000 messages per client.
   */
  readonly unlimitedQueue?: boolean;
}

export interface RunningMosquitto {
  readonly url: string;
  readonly port: number;
  readonly process: ChildProcess;
  stop(): Promise<void>;
}

export async function startMosquitto(options: MosquittoOptions): Promise<RunningMosquitto> {
  const binary = await ensureDebianPackage('mosquitto', 'mosquitto', options.log);
  const dataDir = resolve(options.dataDir);
  await mkdir(dataDir, { recursive: true });
  const port = options.port || (await freePort(MOSQUITTO_DEFAULTS.host));
  const configFile = join(dataDir, 'mosquitto.conf');
  await writeFile(
    configFile,
    [
      `listener ${port} ${MOSQUITTO_DEFAULTS.host}`,
      'allow_anonymous true',
      'persistence false',
      'set_tcp_nodelay true',
      'max_connections -1',
      `max_queued_messages ${options.unlimitedQueue ? 0 : 100_000}`,
      'log_dest stderr',
      'log_type error',
      'log_type warning',
      '',
    ].join('\n'),
  );
  const child = spawn(binary, ['-c', configFile], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const exited = new Promise<number | null>((done) => child.once('exit', (code) => done(code)));
  const deadline = Date.now() + MOSQUITTO_DEFAULTS.startTimeoutMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`mosquitto exited (${child.exitCode}): ${stderr}`);
    if (await canConnect(port)) break;
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`mosquitto did not listen on ${port} within ${MOSQUITTO_DEFAULTS.startTimeoutMs} ms: ${stderr}`);
    }
    await sleep(50);
  }
  return {
    url: `mqtt://${MOSQUITTO_DEFAULTS.host}:${port}`,
    port,
    process: child,
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), MOSQUITTO_DEFAULTS.stopTimeoutMs);
      await exited;
      clearTimeout(timer);
    },
  };
}

function canConnect(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = createConnection({ port, host: MOSQUITTO_DEFAULTS.host });
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}
