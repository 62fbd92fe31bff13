import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
/**
 * Calls `stop` once when the process should shut down: on SIGTERM, and on SIGINT unless a
 * supervisor (npm start) runs it. Supervised children ignore the terminal's Ctrl+C, so the
 * supervisor can stop them in order (devices, readers, broker, database), and they stop by
 * themselves when the supervisor dies (their stdin closes).
 */
export function onShutdown(stop: (reason: string) => void): void {
  let called = false;
  const once = (reason: string) => {
    if (called) return;
    called = true;
    // Let the event loop end once `stop` is done: a resumed stdin would keep the process alive.
    if (process.env.CITYPULSE_SUPERVISED === '1') process.stdin.destroy();
    stop(reason);
  };
  process.on('SIGTERM', () => once('SIGTERM'));
  if (process.env.CITYPULSE_SUPERVISED === '1') {
    process.on('SIGINT', () => undefined);
    process.stdin.on('end', () => once('supervisor exited'));
    process.stdin.on('error', () => once('supervisor exited'));
    process.stdin.resume();
  } else {
    process.on('SIGINT', () => once('SIGINT'));
  }
}

/** What a service's server.ts needs from the process: a logger with fatal/info. */
interface ServiceLogger {
  info(object: object, message: string): void;
  fatal(object: object, message: string): void;
}

/**
 * Node flags for the services that handle every message (broker, ingest, api): a 64 MiB young
 * generation instead of V8's 16 MiB, so the short-lived objects of each MQTT packet die in fewer
 * scavenges. Measured with CPU profiles of the ingest bench at 10,000 messages/s: garbage
 * collection fell from 12 % to 4 % of the broker's samples and from 13 % to 5 % of ingest's
 * (BENCHMARKS.md). Costs up to ~200 MiB of address space per process, most of it untouched at
 * low rates. Whoever starts a service (npm start, the benches, a container) passes these.
 */
export const SERVICE_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=64'];

export const SERVICE_DEFAULTS = {
  /** Longest a service may take to close before it exits anyway. */
  shutdownGraceMs: 10_000,
} as const;

/**
 * Runs a service's `start`, which returns its `close`. On shutdown (see onShutdown) it closes and
 * exits; a start failure is logged (with its stable code when it has one) and exits 1.
 */
export function runService(logger: ServiceLogger, start: () => Promise<() => Promise<void>>): void {
  start().then(
    (close) => {
      onShutdown((reason) => {
        logger.info({ reason }, 'shutting down');
        setTimeout(() => process.exit(0), SERVICE_DEFAULTS.shutdownGraceMs).unref();
        close().then(
          () => process.exit(0),
          (err: unknown) => {
            logger.fatal({ err }, 'shutdown failed');
            process.exit(1);
          },
        );
      });
    },
    (err: unknown) => {
      const code = (err as { code?: unknown }).code;
      if (err instanceof Error && typeof code === 'string' && code.startsWith('E_')) logger.fatal({ code }, err.message);
      else logger.fatal({ err }, 'failed to start');
      process.exit(1);
    },
  );
}

/**
 * Runs a command-line tool's `main(argv)` when the module is the script node was started with
 * (not when a test imports it): its resolved number is the exit code; a thrown error prints as
 * "CODE: message" (or its message) and exits 1.
 */
export function runCliIfEntry(moduleUrl: string, main: (argv: readonly string[]) => Promise<number>): void {
  let entry = false;
  try {
    entry = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(moduleUrl);
  } catch {
    entry = false;
  }
  if (!entry) return;
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      const code = (err as { code?: unknown }).code;
      console.error(typeof code === 'string' && code.startsWith('E_') && err instanceof Error ? `${code}: ${err.message}` : err instanceof Error ? err.message : String(err));
      process.exitCode = 1;
    },
  );
}
