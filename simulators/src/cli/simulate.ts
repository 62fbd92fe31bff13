/**
 * `pnpm --filter @citypulse/simulators simulate -- --provinces 01,79 --devices 5 --interval 2s`
 * Starts simulated devices, prints a status line periodically and stops cleanly on Ctrl+C / SIGTERM.
 */
import { CodedError } from '@citypulse/contracts';
import { onShutdown } from '@citypulse/infra';
import { pino } from 'pino';
import { startSimulation } from '../simulation.js';
import { formatStatus, parseCli, USAGE, UsageError } from './options.js';

async function main(): Promise<number> {
  let command;
  try {
    command = parseCli(process.argv.slice(2), process.env, process.env.INIT_CWD ?? process.cwd());
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`simulate: ${err.message}\nRun with --help for the flags.`);
    return 2;
  }
  if (command.help) {
    console.log(USAGE);
    return 0;
  }
  const { options } = command;
  // Logs on stderr keep stdout for the status lines.
  const logger = pino({ level: options.logLevel, name: 'simulate' }, pino.destination(2));

  let simulation;
  try {
    simulation = await startSimulation({ ...options, logger });
  } catch (err) {
    if (!(err instanceof CodedError)) throw err;
    console.error(`simulate: ${err.code}: ${err.message}`);
    return 1;
  }
  const total = simulation.devices.length;
  console.log(`simulating ${total} devices in ${options.provinces.join(', ')} (${options.domains.join(', ')}) every ${options.intervalMs} ms → ${options.mqttUrl}; Ctrl+C to stop`);

  let last = { at: performance.now(), published: 0 };
  const status = setInterval(() => {
    const stats = simulation.stats();
    const now = performance.now();
    const rate = ((stats.published - last.published) * 1000) / Math.max(1, now - last.at);
    last = { at: now, published: stats.published };
    console.log(formatStatus(stats, total, rate, new Date()));
  }, options.statusIntervalMs);

  const signal = await new Promise<string>((resolve) => onShutdown(resolve));
  clearInterval(status);
  console.log(`${signal}: stopping (publishing offline status); press Ctrl+C again to quit at once`);
  if (process.env.CITYPULSE_SUPERVISED !== '1') process.once('SIGINT', () => process.exit(130));
  await simulation.stop();
  const stats = simulation.stats();
  console.log(`stopped: published ${stats.published}, errors ${stats.errors}`);
  return 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error('simulate: failed:', err);
    process.exitCode = 1;
  },
);
