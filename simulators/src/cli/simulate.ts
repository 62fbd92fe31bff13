/**
 * `pnpm --filter @citypulse/simulators simulate -- --scenario hanoi-winter-rush`
 * `pnpm --filter @citypulse/simulators simulate -- --provinces 01,79 --devices 5 --interval 2s`
 * Runs a scenario against the broker with a status line; stops cleanly on Ctrl+C / SIGTERM, or at
 * the end of the scenario's duration.
 */
import { CodedError } from '@citypulse/contracts';
import { onShutdown } from '@citypulse/infra';
import { pino } from 'pino';
import { createProgress } from '../progress.js';
import { openRecorder, type Recorder } from '../recording.js';
import { describeScenario, expectedReadings, loadScenarioFile, resolveScenario, scenarioFromFlags, vnClock, type Scenario } from '../scenario.js';
import { startSimulation } from '../simulation.js';
import { formatStatus, parseCli, USAGE, UsageError, type CliOptions } from './options.js';

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

  let scenario: Scenario;
  try {
    scenario = await loadScenario(options);
  } catch (err) {
    if (!(err instanceof CodedError)) throw err;
    console.error(`simulate: ${err.code}: ${err.message}`);
    return 2;
  }
  if (options.check) {
    console.log(describeScenario(scenario));
    return 0;
  }

  let recorder: Recorder | undefined;
  let simulation;
  try {
    if (options.record) {
      recorder = await openRecorder({
        path: options.record.path,
        gzip: options.record.gzip,
        ...(options.record.rotateBytes !== undefined ? { rotateBytes: options.record.rotateBytes } : {}),
        ...(options.record.rotateMs !== undefined ? { rotateMs: options.record.rotateMs } : {}),
        header: { source: 'simulate', scenario: scenario.name, seed: scenario.seed, ...(scenario.timestamps === 'scenario' ? { createdAt: new Date(scenario.startMs).toISOString() } : {}) },
      });
    }
    simulation = await startSimulation({
      mqttUrl: options.mqttUrl,
      dataDir: options.dataDir,
      registry: options.registry,
      scenario,
      logger,
      provision: options.provision,
      threads: options.threads,
      ...(recorder ? { recorder } : {}),
      ...(options.connectRate !== undefined ? { connectRatePerSecond: options.connectRate } : {}),
    });
  } catch (err) {
    await recorder?.close();
    if (!(err instanceof CodedError)) throw err;
    console.error(`simulate: ${err.code}: ${err.message}`);
    return 1;
  }
  console.log(`${describeScenario(scenario).split('\n')[0] ?? ''} → ${options.mqttUrl}${options.record ? `, recording to ${options.record.path}` : ''}; Ctrl+C to stop`);

  const expected = expectedReadings(scenario);
  const progress = createProgress({
    label: 'simulate',
    unit: 'readings',
    ...(expected !== undefined ? { total: expected } : {}),
    ...(process.stdout.isTTY ? {} : { intervalMs: options.statusIntervalMs }),
  });
  const refresh = setInterval(() => {
    const stats = simulation.stats();
    progress.update(stats.readings, {
      connected: `${stats.connected}/${stats.devices}`,
      buffered: stats.buffered,
      lost: stats.lost,
      errors: stats.errors,
      clock: vnClock(stats.scenarioMs),
    });
  }, 200);

  const outcome = await Promise.race([new Promise<string>((resolve) => onShutdown(resolve)), simulation.finished.then(() => 'finished')]);
  clearInterval(refresh);
  progress.done();
  if (outcome !== 'finished') {
    console.log(`${outcome}: stopping (publishing offline status); press Ctrl+C again to quit at once`);
    if (process.env.CITYPULSE_SUPERVISED !== '1') process.once('SIGINT', () => process.exit(130));
  }
  await simulation.stop();
  await recorder?.close();
  const stats = simulation.stats();
  console.log(`stopped: ${formatStatus(stats, { readings: 0, messages: 0 }, new Date()).replace(/^\S+\s+\S+ readings\/s \(\S+ msg\/s\)\s+/, '')}`);
  if (recorder) console.log(`recorded ${recorder.stats().messages} messages in ${recorder.stats().files.join(', ')}`);
  return 0;
}

async function loadScenario(options: CliOptions): Promise<Scenario> {
  const file = options.scenario === undefined ? scenarioFromFlags(options) : await loadScenarioFile(options.scenario);
  return resolveScenario(file, {
    nowMs: Date.now(),
    faults: options.faults,
    ...(options.seed !== undefined ? { seed: options.seed } : {}),
    ...(options.speed !== undefined ? { speed: options.speed } : {}),
    ...(options.mode !== undefined ? { mode: options.mode } : {}),
    ...(options.gateways !== undefined ? { gateways: options.gateways } : {}),
    ...(options.uploadMs !== undefined ? { uploadMs: options.uploadMs } : {}),
    ...(options.durationMs !== undefined ? { durationMs: options.durationMs } : {}),
    ...(options.start !== undefined ? { start: options.start } : {}),
    ...(options.timestamps !== undefined ? { timestamps: options.timestamps } : {}),
  });
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
