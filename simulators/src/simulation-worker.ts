import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import { CodedError, type RejectionCode } from '@citypulse/contracts';
import { pino } from 'pino';
import { Engine, heapBytesHere, type EngineOptions, type MessageSink, type SimulationStats } from './engine.js';

/**
 * One worker thread of a simulation: an engine over its share of the connections. It reports its
 * stats every REPORT_MS, sends its log lines and (when recording) what it publishes to the parent,
 * and stops when told. Started by simulation.ts through simulation-worker-entry.mjs.
 */

export interface WorkerData extends Omit<EngineOptions, 'logger' | 'wallClock' | 'recorder' | 'skip' | 'secrets' | 'share'> {
  readonly skip: readonly string[];
  readonly secrets: readonly (readonly [string, string])[];
  readonly share: { readonly index: number; readonly count: number };
  readonly logLevel: string;
  /** Send published messages to the parent's recorder. */
  readonly record: boolean;
}

export type RecordEntry = Parameters<MessageSink['write']>[0];

export type ToWorker = { readonly type: 'stop' } | { readonly type: 'memory' };

export type FromWorker =
  | { readonly type: 'started'; readonly links: number }
  | { readonly type: 'stats'; readonly stats: SimulationStats }
  | { readonly type: 'record'; readonly entries: readonly RecordEntry[]; readonly watermark: number }
  | { readonly type: 'log'; readonly line: string }
  | { readonly type: 'memory'; readonly bytes: number }
  | { readonly type: 'finished'; readonly stats: SimulationStats }
  | { readonly type: 'stopped'; readonly stats: SimulationStats }
  | { readonly type: 'failed'; readonly code: RejectionCode; readonly message: string };

export const WORKER_REPORT_MS = 200;
/** Recorded messages sent to the parent in one go at most. */
const RECORD_BATCH = 2_000;

async function run(port: MessagePort, data: WorkerData): Promise<void> {
  const post = (message: FromWorker) => port.postMessage(message);
  const logger = pino({ level: data.logLevel }, { write: (line: string) => post({ type: 'log', line }) });
  let engine: Engine | undefined;
  let entries: RecordEntry[] = [];
  const sendRecorded = () => {
    if (!data.record || !engine) return;
    post({ type: 'record', entries, watermark: engine.recordTime() });
    entries = [];
  };
  const recorder: MessageSink | undefined = data.record
    ? {
        write: (message) => {
          entries.push(message);
          if (entries.length >= RECORD_BATCH) sendRecorded();
        },
      }
    : undefined;
  try {
    engine = new Engine({
      ...data,
      skip: new Set(data.skip),
      secrets: new Map(data.secrets),
      logger,
      wallClock: Date.now,
      ...(recorder ? { recorder } : {}),
    });
    await engine.start();
  } catch (err) {
    post({ type: 'failed', code: err instanceof CodedError ? err.code : 'E_INTERNAL', message: err instanceof Error ? err.message : String(err) });
    return;
  }
  const running = engine;
  post({ type: 'started', links: running.linkCount });
  const timer = setInterval(() => {
    sendRecorded();
    post({ type: 'stats', stats: running.stats() });
  }, WORKER_REPORT_MS);
  void running.finished.then(() => {
    sendRecorded();
    post({ type: 'finished', stats: running.stats() });
  });
  port.on('message', (message: ToWorker) => {
    if (message.type === 'memory') post({ type: 'memory', bytes: heapBytesHere() });
    else if (message.type === 'stop') {
      void running.stop().then(() => {
        clearInterval(timer);
        sendRecorded();
        post({ type: 'stopped', stats: running.stats() });
      });
    }
  });
}

if (parentPort && (workerData as WorkerData | undefined)?.share) void run(parentPort, workerData as WorkerData);
