/**
 * `pnpm --filter @citypulse/simulators record -- --out rec/city.ndjson.gz --duration 10m`
 * Records everything the broker delivers under the filters, until --duration or Ctrl+C / SIGTERM.
 */
import { CodedError } from '@citypulse/contracts';
import { onShutdown } from '@citypulse/infra';
import { pino } from 'pino';
import { formatBytes, createProgress } from '../progress.js';
import { openRecorder, recordBroker } from '../recording.js';
import { parseRecordCli, RECORD_USAGE } from './record-options.js';
import { redactUrl, resolveToolsCredentials, UsageError } from './tool-flags.js';

/** How often everything recorded is pushed to disk (a killed recorder loses at most this much). */
const FLUSH_INTERVAL_MS = 5000;

async function main(): Promise<number> {
  let command;
  try {
    command = parseRecordCli(process.argv.slice(2), process.env, process.env.INIT_CWD ?? process.cwd());
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`record: ${err.message}\nRun with --help for the flags.`);
    return 2;
  }
  if (command.help) {
    console.log(RECORD_USAGE);
    return 0;
  }
  const { options } = command;
  const logger = pino({ level: options.logLevel, name: 'record' }, pino.destination(2));

  let recorder;
  let recording;
  try {
    const credentials = await resolveToolsCredentials(options);
    recorder = await openRecorder({
      path: options.out,
      gzip: options.gzip,
      rotateBytes: options.rotateBytes,
      rotateMs: options.rotateMs,
      overwrite: options.overwrite,
      header: { source: 'record', broker: redactUrl(options.mqttUrl), filters: options.filters },
    });
    try {
      recording = await recordBroker({ mqttUrl: options.mqttUrl, ...credentials, recorder, filters: options.filters, includeRetained: options.includeRetained, logger });
    } catch (err) {
      await recorder.close();
      throw err;
    }
  } catch (err) {
    if (!(err instanceof CodedError)) throw err;
    console.error(`record: ${err.code}: ${err.message}${err.code === 'E_CONFIG' && /already exists/.test(err.message) ? ' (--force replaces it)' : ''}`);
    return 1;
  }
  console.log(`recording ${options.filters.join(', ')} from ${redactUrl(options.mqttUrl)} to ${options.out}${options.durationMs ? ` for ${options.durationMs / 1000} s` : ''}; Ctrl+C to stop`);

  const progress = createProgress({ label: 'record', ...(options.statusIntervalMs ? { intervalMs: options.statusIntervalMs } : {}) });
  const activeRecorder = recorder;
  const activeRecording = recording;
  const feed = setInterval(() => {
    const stats = activeRecorder.stats();
    progress.update(stats.messages, { size: formatBytes(stats.bytes), files: stats.files.length, ...(activeRecording.stats().retainedSkipped > 0 ? { 'retained skipped': activeRecording.stats().retainedSkipped } : {}) });
  }, 200);
  const flusher = setInterval(() => {
    activeRecorder.flush().catch((err: unknown) => logger.error({ err }, 'flush failed'));
  }, FLUSH_INTERVAL_MS);

  const reason = await new Promise<string>((resolve) => {
    onShutdown(resolve);
    if (options.durationMs !== undefined) setTimeout(() => resolve('duration reached'), options.durationMs).unref();
  });
  clearInterval(feed);
  clearInterval(flusher);
  if (process.env.CITYPULSE_SUPERVISED === '1') process.stdin.destroy();
  else process.once('SIGINT', () => process.exit(130)); // a second Ctrl+C quits at once
  await recording.stop();
  let failed = false;
  try {
    await recorder.close();
  } catch (err) {
    failed = true;
    logger.error({ err }, 'closing the recording failed');
  }
  const stats = recorder.stats();
  progress.update(stats.messages, { size: formatBytes(stats.bytes), files: stats.files.length });
  progress.done();
  const files = stats.files.length > 2 ? `${stats.files[0]} … ${stats.files.at(-1)} (${stats.files.length} files)` : stats.files.join(', ');
  console.log(`${reason}: recorded ${stats.messages} messages (${formatBytes(stats.bytes)} uncompressed) in ${files}`);
  return failed || recording.stats().errors > 0 ? 1 : 0;
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error('record: failed:', err);
    process.exitCode = 1;
  },
);
