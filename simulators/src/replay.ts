import { CodedError, DOMAINS, deviceTopic, isDeviceId, isDomain, isProvinceCode, parseDeviceTopic, unflattenReading, type Domain, type FieldValue } from '@citypulse/contracts';
import { Influx, quoteIdentifier, type InfluxSettings } from '@citypulse/infra';
import { connect, type MqttClient } from 'mqtt';
import { pino, type Logger } from 'pino';
import { countRecordedMessages, readRecording, resolveRecordingFiles, waitForConnect, type RecordedMessage } from './recording.js';

/**
 * Replays recorded traffic, or a time range read back from InfluxDB, into the broker, so ingest,
 * alerts and dashboards see it as live data. Messages keep their order and their relative timing
 * (by `at`, relative to the first message) at 1–100×, or go as fast as the broker acknowledges
 * with a bounded window of messages in flight.
 */
export const REPLAY_DEFAULTS = {
  /** QoS 1/2 messages awaiting their acknowledgement on the one connection. MQTT packet ids are 16-bit: stay far below 65,535. */
  maxInFlight: 1000,
  maxInFlightLimit: 60_000,
  minSpeed: 1,
  maxSpeed: 100,
  /** Rows per InfluxDB query page. */
  influxPageRows: 5000,
  connectTimeoutMs: 10_000,
  reconnectPeriodMs: 1000,
  /** How long stop() waits for acknowledgements of messages in flight before it drops the connection. */
  stopTimeoutMs: 5000,
  /** Warnings about skipped messages logged before going quiet (they are still counted). */
  maxSkipWarnings: 10,
} as const;

/** Tag columns ingest writes (see ingest's toPoint); every other column is a field. */
const TAG_COLUMNS: ReadonlySet<string> = new Set(['province', 'device', 'kind']);

export type ReplaySpeed = number | 'max';

export interface InfluxReplaySource {
  readonly kind: 'influx';
  readonly influx: Influx | InfluxSettings;
  /** Time range [from, to), epoch ms. */
  readonly from: number;
  readonly to: number;
  readonly provinces?: readonly string[];
  readonly domains?: readonly Domain[];
  readonly devices?: readonly string[];
  readonly pageRows?: number;
}

export interface RecordingReplaySource {
  readonly kind: 'recording';
  /** A file, a list, or the first part of a rotated set (see readRecording). */
  readonly paths: string | readonly string[];
}

export type ReplaySource = RecordingReplaySource | InfluxReplaySource;

export interface ReplayOptions {
  readonly source: ReplaySource;
  readonly mqttUrl: string;
  /** A `tools` service account: the broker lets it publish device telemetry and status. */
  readonly username: string;
  readonly password: string;
  readonly clientId?: string;
  /** 1–100 (×), or 'max': as fast as the broker acknowledges. */
  readonly speed: ReplaySpeed;
  /** Rewrite each reading's ts so it looks measured now: ts' = wall clock at publish + (ts − at). */
  readonly shiftToNow?: boolean;
  readonly maxInFlight?: number;
  readonly logger?: Logger;
}

export type ReplayState = 'running' | 'paused' | 'stopped' | 'done' | 'failed';

export interface ReplayStats {
  readonly state: ReplayState;
  /** Messages in the source, when known (counted before the start). */
  readonly total: number | undefined;
  readonly sent: number;
  /** Acknowledged by the broker (QoS 1/2), or written to the socket (QoS 0). */
  readonly acked: number;
  readonly errors: number;
  /** Messages not replayed: topics the tools account may not publish (commands, non-device), rows that are not readings. */
  readonly skipped: number;
  readonly inFlight: number;
  /** Share of `total` handled (sent or skipped), 0–1; undefined without a total. */
  readonly progress: number | undefined;
  /** `at` of the last message sent: where in the recording the replay is. */
  readonly position: number | undefined;
}

export interface Replay {
  stats(): ReplayStats;
  pause(): void;
  resume(): void;
  /** Stops sending, waits briefly for acknowledgements, disconnects; resolves like `done`. */
  stop(): Promise<ReplayStats>;
  /** Resolves when everything was sent and acknowledged (or after stop()); rejects when the source fails (a bad line …). */
  readonly done: Promise<ReplayStats>;
}

interface OpenedSource {
  readonly total: number | undefined;
  readonly messages: AsyncIterable<RecordedMessage>;
}

interface Counters {
  sent: number;
  acked: number;
  errors: number;
  skipped: number;
}

/** Checks the options, opens the source, connects; then replays in the background. */
export async function replay(options: ReplayOptions): Promise<Replay> {
  const speed = checkSpeed(options.speed);
  const maxInFlight = options.maxInFlight ?? REPLAY_DEFAULTS.maxInFlight;
  if (!Number.isInteger(maxInFlight) || maxInFlight < 1 || maxInFlight > REPLAY_DEFAULTS.maxInFlightLimit) {
    throw new CodedError('E_CONFIG', `maxInFlight ${maxInFlight} must be a whole number from 1 to ${REPLAY_DEFAULTS.maxInFlightLimit} (MQTT packet ids are 16-bit)`);
  }
  const logger = (options.logger ?? pino({ enabled: false })).child({ component: 'replay' });
  const counters: Counters = { sent: 0, acked: 0, errors: 0, skipped: 0 };
  const source = await openSource(options.source, logger, counters);
  const client = connect(options.mqttUrl, {
    clientId: options.clientId ?? `citypulse-replay-${process.pid}-${Math.random().toString(36).slice(2, 8)}`,
    username: options.username,
    password: options.password,
    clean: true,
    protocolVersion: 4,
    reconnectPeriod: REPLAY_DEFAULTS.reconnectPeriodMs,
    connectTimeout: REPLAY_DEFAULTS.connectTimeoutMs,
  });
  await waitForConnect(client, REPLAY_DEFAULTS.connectTimeoutMs);
  client.on('error', (err) => logger.warn({ err }, 'MQTT error'));
  client.on('reconnect', () => logger.info('reconnecting to the broker'));
  logger.info({ speed, total: source.total, shiftToNow: options.shiftToNow === true }, 'replay started');
  return new ReplayRun(client, source, counters, { speed, maxInFlight, shiftToNow: options.shiftToNow === true, logger });
}

function checkSpeed(speed: ReplaySpeed): ReplaySpeed {
  if (speed === 'max') return speed;
  if (typeof speed !== 'number' || !Number.isFinite(speed) || speed < REPLAY_DEFAULTS.minSpeed || speed > REPLAY_DEFAULTS.maxSpeed) {
    throw new CodedError('E_CONFIG', `speed ${String(speed)} must be ${REPLAY_DEFAULTS.minSpeed}–${REPLAY_DEFAULTS.maxSpeed} or "max"`);
  }
  return speed;
}

class ReplayRun implements Replay {
  readonly done: Promise<ReplayStats>;
  readonly #client: MqttClient;
  readonly #counters: Counters;
  readonly #total: number | undefined;
  readonly #speed: ReplaySpeed;
  readonly #maxInFlight: number;
  readonly #shiftToNow: boolean;
  readonly #logger: Logger;
  #state: ReplayState = 'running';
  #inFlight = 0;
  /** qos × 2 + retain of the messages in flight (see the ordering note in #run). */
  #inFlightKind = -1;
  #position: number | undefined;
  #stopRequested = false;
  /** performance.now() at which the first message went out, moved forward by every pause. */
  #startedAt: number | undefined;
  #pausedAt = 0;
  /** Wakes whatever the run loop waits on (a timer, a pause, the in-flight window). */
  #wake: (() => void) | undefined;
  #skipWarnings = 0;
  readonly #shiftStates = new Map<string, ShiftState>();

  constructor(client: MqttClient, source: OpenedSource, counters: Counters, settings: { speed: ReplaySpeed; maxInFlight: number; shiftToNow: boolean; logger: Logger }) {
    this.#client = client;
    this.#counters = counters;
    this.#total = source.total;
    this.#speed = settings.speed;
    this.#maxInFlight = settings.maxInFlight;
    this.#shiftToNow = settings.shiftToNow;
    this.#logger = settings.logger;
    this.done = this.#run(source.messages);
    // Handled here so a caller that only calls stop() never sees an unhandled rejection; `done` still rejects.
    this.done.catch(() => undefined);
  }

  stats(): ReplayStats {
    const { sent, acked, errors, skipped } = this.#counters;
    const total = this.#total;
    return {
      state: this.#state,
      total,
      sent,
      acked,
      errors,
      skipped,
      inFlight: this.#inFlight,
      progress: total === undefined ? undefined : total === 0 ? 1 : Math.min(1, (sent + skipped) / total),
      position: this.#position,
    };
  }

  pause(): void {
    if (this.#state !== 'running') return;
    this.#state = 'paused';
    this.#pausedAt = performance.now();
    this.#wakeUp();
  }

  resume(): void {
    if (this.#state !== 'paused') return;
    this.#state = 'running';
    // The schedule moves by the pause: what was due in 2 s is due 2 s after resuming.
    if (this.#startedAt !== undefined) this.#startedAt += performance.now() - this.#pausedAt;
    this.#wakeUp();
  }

  stop(): Promise<ReplayStats> {
    this.#stopRequested = true;
    this.#wakeUp();
    return this.done;
  }

  async #run(messages: AsyncIterable<RecordedMessage>): Promise<ReplayStats> {
    const iterator = messages[Symbol.asyncIterator]();
    let firstAt: number | undefined;
    try {
      for (;;) {
        if (this.#stopRequested) break;
        const next = await iterator.next();
        if (next.done) break;
        const message = next.value;
        const address = parseDeviceTopic(message.topic);
        if (!address.ok || address.value.channel === 'commands') {
          this.#skip(message.topic, address.ok ? 'commands flow towards devices; a replay never sends them' : address.error.message);
          continue;
        }
        if (this.#speed === 'max') {
          await this.#waitUntil(() => 0);
        } else {
          firstAt ??= message.at;
          this.#startedAt ??= performance.now();
          const offsetMs = (message.at - firstAt) / this.#speed;
          await this.#waitUntil(() => (this.#startedAt ?? 0) + offsetMs);
        }
        // MQTT orders delivery only among messages of one QoS [MQTT-4.6.0-6], and with many in
        // flight a QoS 0 message does overtake QoS 1 ones: before switching QoS (or retain), let
        // the messages in flight be acknowledged, so subscribers see the recorded order.
        const kind = message.qos * 2 + (message.retain ? 1 : 0);
        while (this.#inFlight > 0 && kind !== this.#inFlightKind && !this.#stopRequested) await this.#sleep();
        while (this.#inFlight >= this.#maxInFlight && !this.#stopRequested) await this.#sleep();
        if (this.#stopRequested) break;
        this.#publish(message);
      }
      await iterator.return?.();
      if (this.#stopRequested) {
        await this.#disconnect(REPLAY_DEFAULTS.stopTimeoutMs);
        this.#state = 'stopped';
      } else {
        while (this.#inFlight > 0 && !this.#stopRequested) await this.#sleep();
        await this.#disconnect(REPLAY_DEFAULTS.stopTimeoutMs);
        this.#state = this.#stopRequested ? 'stopped' : 'done';
      }
      const stats = this.stats();
      this.#logger.info(stats, 'replay finished');
      return stats;
    } catch (err) {
      this.#state = 'failed';
      await iterator.return?.().catch(() => undefined);
      this.#client.end(true);
      this.#logger.error({ err }, 'replay failed');
      throw err;
    }
  }

  /** Waits until performance.now() reaches `due()` (re-read after a pause), while paused, or until stop(). */
  async #waitUntil(due: () => number): Promise<void> {
    for (;;) {
      if (this.#stopRequested) return;
      if (this.#state === 'paused') {
        await this.#sleep();
        continue;
      }
      const waitMs = due() - performance.now();
      if (waitMs < 1) return; // timers have 1 ms resolution: send what is due within it now
      await this.#sleep(waitMs);
    }
  }

  /** Sleeps for `ms` (forever without it) or until #wakeUp(). */
  #sleep(ms?: number): Promise<void> {
    return new Promise((resolve) => {
      const timer = ms === undefined ? undefined : setTimeout(() => wake(), ms);
      const wake = () => {
        clearTimeout(timer);
        if (this.#wake === wake) this.#wake = undefined;
        resolve();
      };
      this.#wake = wake;
    });
  }

  #wakeUp(): void {
    this.#wake?.();
  }

  #publish(message: RecordedMessage): void {
    let payload = message.payload;
    if (this.#shiftToNow) {
      let state = this.#shiftStates.get(message.topic);
      if (!state) this.#shiftStates.set(message.topic, (state = { original: -Infinity, shifted: -Infinity }));
      payload = shiftPayloadToNow(payload, message.at, Date.now(), state);
    }
    this.#inFlight++;
    this.#inFlightKind = message.qos * 2 + (message.retain ? 1 : 0);
    this.#counters.sent++;
    this.#position = message.at;
    this.#client.publish(message.topic, payload, { qos: message.qos, retain: message.retain }, (err) => {
      this.#inFlight--;
      if (err) {
        this.#counters.errors++;
        this.#logger.warn({ err, topic: message.topic }, 'publish failed');
      } else {
        this.#counters.acked++;
      }
      // Wake the loop when it may be waiting for room in the window or for the last acknowledgement.
      if (this.#inFlight === 0 || this.#inFlight === this.#maxInFlight - 1) this.#wakeUp();
    });
  }

  #skip(topic: string, reason: string): void {
    this.#counters.skipped++;
    if (this.#skipWarnings++ < REPLAY_DEFAULTS.maxSkipWarnings) this.#logger.warn({ topic: topic.slice(0, 200), reason }, 'message skipped');
  }

  async #disconnect(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((resolve) => {
      timer = setTimeout(() => resolve('timeout'), timeoutMs);
    });
    // end() without force waits for the messages in flight to be acknowledged.
    const outcome = await Promise.race([this.#client.endAsync().then(() => 'ended' as const), timedOut]);
    clearTimeout(timer);
    if (outcome === 'timeout') await this.#client.endAsync(true);
  }
}

/** Per topic: the last reading's original ts and the ts it was given (see shiftPayloadToNow). */
export interface ShiftState {
  original: number;
  shifted: number;
}

/**
 * Rewrites the `ts` of every reading in a payload (single form, or each of a batch's readings) to
 * `nowMs + (ts − at)`: a reading keeps its distance to the moment it was published, measured from
 * now. Payloads that are not UTF-8 JSON objects with a numeric ts come back unchanged (the same
 * object). A rewritten payload is re-serialised with JSON.stringify (same keys, same order).
 *
 * With `previous` (one per topic), a faster-than-real-time replay cannot give two different
 * readings of one device the same millisecond: InfluxDB would keep only one of them (same series
 * and time). The later one gets 1 ms more; a reading that repeats a ts (a redelivery) keeps
 * repeating it.
 */
export function shiftPayloadToNow(payload: string | Buffer, at: number, nowMs: number, previous?: ShiftState): string | Buffer {
  let text: string;
  try {
    text = typeof payload === 'string' ? payload : strictUtf8.decode(payload);
  } catch {
    return payload;
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    return payload;
  }
  if (!isObject(body)) return payload;
  const shift = (reading: Record<string, unknown>): boolean => {
    const original = reading.ts;
    if (typeof original !== 'number' || !Number.isFinite(original)) return false;
    let ts = Math.round(nowMs + (original - at));
    if (previous) {
      if (original === previous.original) ts = previous.shifted;
      else if (original > previous.original && ts <= previous.shifted) ts = previous.shifted + 1;
      previous.original = original;
      previous.shifted = ts;
    }
    reading.ts = ts;
    return true;
  };
  let changed = false;
  if (Array.isArray(body.readings)) {
    for (const reading of body.readings as unknown[]) if (isObject(reading) && shift(reading)) changed = true;
  } else {
    changed = shift(body);
  }
  return changed ? JSON.stringify(body) : payload;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function openSource(source: ReplaySource, logger: Logger, counters: Counters): Promise<OpenedSource> {
  switch (source.kind) {
    case 'recording': {
      const files = await resolveRecordingFiles(source.paths);
      const total = await countRecordedMessages(files);
      logger.info({ files, total }, 'replaying a recording');
      return { total, messages: readRecording(files) };
    }
    case 'influx':
      return openInfluxSource(source, logger, counters);
    default:
      throw new CodedError('E_CONFIG', `unknown replay source ${JSON.stringify(source satisfies never)}`);
  }
}

async function openInfluxSource(source: InfluxReplaySource, logger: Logger, counters: Counters): Promise<OpenedSource> {
  const { from, to } = source;
  if (!Number.isSafeInteger(from) || !Number.isSafeInteger(to) || from < 0) throw new CodedError('E_CONFIG', 'from and to must be whole epoch milliseconds');
  if (to <= from) throw new CodedError('E_CONFIG', `the end ${new Date(to).toISOString()} must be after the start ${new Date(from).toISOString()}`);
  for (const code of source.provinces ?? []) if (!isProvinceCode(code)) throw new CodedError('E_CONFIG', `"${code}" is not a province code`);
  for (const id of source.devices ?? []) if (!isDeviceId(id)) throw new CodedError('E_CONFIG', `"${id}" is not a device id`);
  const domains = [...new Set(source.domains ?? DOMAINS)];
  for (const domain of domains) if (!isDomain(domain)) throw new CodedError('E_CONFIG', `"${String(domain)}" is not a domain (${DOMAINS.join(', ')})`);
  const pageRows = source.pageRows ?? REPLAY_DEFAULTS.influxPageRows;
  const influx = source.influx instanceof Influx ? source.influx : new Influx(source.influx);

  // Tag values are bound parameters; measurement and retention policy are quoted identifiers; times are numbers we checked.
  const params: Record<string, string> = {};
  const anyOf = (tag: string, values: readonly string[] | undefined, prefix: string): string => {
    if (!values || values.length === 0) return '';
    const terms = values.map((value, i) => {
      params[`${prefix}${i}`] = value;
      return `${quoteIdentifier(tag)} = $${prefix}${i}`;
    });
    return ` AND (${terms.join(' OR ')})`;
  };
  const tagFilter = anyOf('province', source.provinces, 'p') + anyOf('device', source.devices, 'd');
  const measurement = (domain: Domain) => `${quoteIdentifier(influx.settings.retentionPolicy)}.${quoteIdentifier(domain)}`;

  let total = 0;
  try {
    for (const domain of domains) {
      const [series = []] = await influx.query(`SELECT COUNT("seq") FROM ${measurement(domain)} WHERE time >= ${from}ms AND time < ${to}ms${tagFilter}`, params);
      const count = series[0]?.values[0]?.[1];
      total += typeof count === 'number' ? count : 0;
    }
  } catch (err) {
    throw new CodedError('E_UPSTREAM', `cannot read from InfluxDB at ${influx.settings.url}: ${(err as Error).message}`, { cause: err });
  }
  logger.info({ from: new Date(from).toISOString(), to: new Date(to).toISOString(), domains, total }, 'replaying from InfluxDB');

  let warnings = 0;
  const skip = (domain: Domain, row: readonly unknown[], reason: string) => {
    counters.skipped++;
    if (warnings++ < REPLAY_DEFAULTS.maxSkipWarnings) logger.warn({ domain, time: row[0], reason }, 'stored row skipped');
  };

  async function* rows(domain: Domain): AsyncGenerator<RecordedMessage, void, undefined> {
    // Pages in time order. Rows sharing a timestamp (many devices) may straddle a page: the next
    // page starts at that timestamp and skips the rows of it already read (OFFSET).
    let cursor = from;
    let skipAtCursor = 0;
    for (;;) {
      const q = `SELECT * FROM ${measurement(domain)} WHERE time >= ${cursor}ms AND time < ${to}ms${tagFilter} ORDER BY time ASC LIMIT ${pageRows}${skipAtCursor > 0 ? ` OFFSET ${skipAtCursor}` : ''}`;
      const [series = []] = await influx.query(q, params);
      const page = series[0];
      const values = page?.values ?? [];
      if (page) {
        const columns = page.columns;
        for (const row of values) {
          const message = rowToMessage(domain, columns, row);
          if (typeof message === 'string') skip(domain, row, message);
          else yield message;
        }
      }
      if (values.length < pageRows) return;
      const lastTs = values[values.length - 1]?.[0] as number;
      const atLast = values.filter((row) => row[0] === lastTs).length;
      if (lastTs === cursor) skipAtCursor += values.length;
      else {
        cursor = lastTs;
        skipAtCursor = atLast;
      }
    }
  }

  return { total, messages: mergeByAt(domains.map((domain) => rows(domain))) };
}

/** One stored row as the telemetry message its device published; a string says why it cannot be. */
function rowToMessage(domain: Domain, columns: readonly string[], row: readonly unknown[]): RecordedMessage | string {
  const ts = row[0];
  if (typeof ts !== 'number') return 'row has no numeric time';
  const fields: Record<string, FieldValue> = {};
  const tags: Record<string, string> = {};
  for (let i = 1; i < columns.length; i++) {
    const name = columns[i] as string;
    const value = row[i];
    if (value === null || value === undefined) continue;
    if (TAG_COLUMNS.has(name)) tags[name] = typeof value === 'string' ? value : JSON.stringify(value);
    else if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string') fields[name] = value;
  }
  const province = tags.province ?? '';
  const deviceId = tags.device ?? '';
  if (!isProvinceCode(province) || !isDeviceId(deviceId)) return `tags province "${province}" and device "${deviceId}" do not make a device topic`;
  const reading = unflattenReading(domain, fields, ts);
  if (!reading.ok) return reading.error.message;
  return { at: ts, topic: deviceTopic({ province, domain, deviceId }, 'telemetry'), qos: 1, retain: false, payload: JSON.stringify(reading.value) };
}

/** Merges time-ordered streams into one, by `at` (ties keep the order of `sources`). */
async function* mergeByAt(sources: AsyncGenerator<RecordedMessage, void, undefined>[]): AsyncGenerator<RecordedMessage, void, undefined> {
  try {
    const heads = await Promise.all(sources.map((s) => s.next()));
    for (;;) {
      let best = -1;
      for (let i = 0; i < heads.length; i++) {
        const head = heads[i];
        if (head && !head.done && (best === -1 || head.value.at < (heads[best] as IteratorYieldResult<RecordedMessage>).value.at)) best = i;
      }
      if (best === -1) return;
      yield (heads[best] as IteratorYieldResult<RecordedMessage>).value;
      heads[best] = await (sources[best] as AsyncGenerator<RecordedMessage, void, undefined>).next();
    }
  } finally {
    await Promise.all(sources.map((s) => s.return(undefined)));
  }
}
