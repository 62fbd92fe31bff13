/**
 * `pnpm --filter @citypulse/simulators replay -- --from-file rec/city.ndjson.gz --speed 10`
 * Replays a recording (or an InfluxDB time range) into the broker with a progress bar; space
 * pauses and resumes, q or Ctrl+C stops.
 */
import { emitKeypressEvents } from 'node:readline';
import { CodedError } from '@citypulse/contracts';
import { onShutdown } from '@citypulse/infra';
import { pino } from 'pino';
import { createProgress } from '../progress.js';
import { replay, type Replay } from '../replay.js';
import { parseReplayCli, REPLAY_USAGE } from './replay-options.js';
import { redactUrl, resolveToolsCredentials, UsageError } from './tool-flags.js';

async function main(): Promise<number> {
  let command;
  try {
    command = parseReplayCli(process.argv.slice(2), process.env, process.env.INIT_CWD ?? process.cwd());
  } catch (err) {
    if (!(err instanceof UsageError)) throw err;
    console.error(`replay: ${err.message}\nRun with --help for the flags.`);
    return 2;
  }
  if (command.help) {
    console.log(REPLAY_USAGE);
    return 0;
  }
  const { options } = command;
  const logger = pino({ level: options.logLevel, name: 'replay' }, pino.destination(2));

  let run: Replay;
  try {
    const credentials = await resolveToolsCredentials(options);
    run = await replay({ source: options.source, mqttUrl: options.mqttUrl, ...credentials, speed: options.speed, shiftToNow: options.shiftToNow, maxInFlight: options.maxInFlight, logger });
  } catch (err) {
    if (!(err instanceof CodedError)) throw err;
    console.error(`replay: ${err.code}: ${err.message}`);
    return 1;
  }
  const source = options.source.kind === 'recording' ? options.source.paths.join(', ') : `InfluxDB ${new Date(options.source.from).toISOString()} – ${new Date(options.source.to).toISOString()}`;
  const speed = options.speed === 'max' ? 'max' : `${options.speed}×`;
  console.log(`replaying ${run.stats().total ?? '?'} messages from ${source} into ${redactUrl(options.mqttUrl)} at ${speed}${options.shiftToNow ? ', shifted to now' : ''}`);

  const progress = createProgress({ label: 'replay', ...(run.stats().total !== undefined ? { total: run.stats().total } : {}) });
  const feed = setInterval(() => {
    const s = run.stats();
    progress.update(s.sent + s.skipped, { acked: s.acked, errors: s.errors, ...(s.skipped > 0 ? { skipped: s.skipped } : {}), speed, ...(s.state === 'paused' ? { state: 'PAUSED (space resumes)' } : {}) });
  }, 100);
  const releaseKeys = keyboardControls(run);
  onShutdown(() => {
    void run.stop();
    process.once('SIGINT', () => process.exit(130)); // a second Ctrl+C quits at once
  });

  let code = 0;
  try {
    await run.done;
  } catch (err) {
    code = 1;
    console.error(`\nreplay: ${err instanceof CodedError ? `${err.code}: ` : ''}${(err as Error).message}`);
  }
  clearInterval(feed);
  releaseKeys();
  const s = run.stats();
  progress.update(s.sent + s.skipped, { acked: s.acked, errors: s.errors });
  progress.done();
  console.log(`${s.state}: sent ${s.sent}, acknowledged ${s.acked}, errors ${s.errors}, skipped ${s.skipped}`);
  if (process.env.CITYPULSE_SUPERVISED === '1') process.stdin.destroy();
  return code !== 0 || s.errors > 0 ? 1 : 0;
}

/** Space or p pauses/resumes, q or Ctrl+C stops, on an interactive terminal; returns the undo. */
function keyboardControls(run: Replay): () => void {
  const stdin = process.stdin;
  if (!stdin.isTTY || process.env.CITYPULSE_SUPERVISED === '1') return () => undefined;
  emitKeypressEvents(stdin);
  stdin.setRawMode(true);
  let stopping = false;
  const onKey = (_text: string | undefined, key: { name?: string; ctrl?: boolean } | undefined) => {
    if (key?.name === 'space' || key?.name === 'p') {
      if (run.stats().state === 'paused') run.resume();
      else run.pause();
    } else if (key?.name === 'q' || (key?.ctrl && key.name === 'c')) {
      if (stopping && key.ctrl) process.exit(130); // a second Ctrl+C quits at once
      stopping = true;
      void run.stop();
    }
  };
  stdin.on('keypress', onKey);
  stdin.resume();
  return () => {
    stdin.off('keypress', onKey);
    stdin.setRawMode(false);
    stdin.pause();
  };
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    console.error('replay: failed:', err);
    process.exitCode = 1;
  },
);
