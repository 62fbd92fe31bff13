import { setMaxListeners } from 'node:events';
import { unwatchFile, watchFile } from 'node:fs';
import { setLogger } from '@influxdata/influxdb-client';
import mqtt, { type IPublishPacket, type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import {
  decodeStatus,
  decodeTelemetry,
  DEFAULT_DECODE_LIMITS,
  enrichReading,
  flattenReading,
  opsTopic,
  parseDeviceTopic,
  type AlertEvent,
  type DecodeLimits,
  type Domain,
  type Fields,
  type SummaryAlertCounts,
} from '@citypulse/contracts';
import type { DeviceRegistry } from '@citypulse/broker/registry';
import type { Influx } from '@citypulse/infra';
import { AlertEngine, type AlertDevice } from './alerts/engine.js';
import { readAlertRules, type AlertRules } from './alerts/rules.js';
import { drainOrphanSession, type OrphanDrainResult } from './drain.js';
import { LateAcks, type AckToken } from './late-acks.js';
import { IngestMetrics } from './metrics.js';
import { rejectedLine, seriesPrefix, seriesReadingLine, statusLine, type Rejected } from './records.js';
import { StreamRollups } from './rollups.js';
import { foreignFilters, MAX_SHARDS, orphanClientIds, shardClientId, shardFilters, shardOf, type Shard } from './shards.js';
import { alertEventLine, backfillRollups, loadAlertEvents, newestRaw, newestRollup, ROLLUP_RESOLUTIONS, ROLLUPS, type RollupResolution } from './storage.js';
import { ProvinceSummaries } from './summaries.js';
import { BatchWriter } from './writer.js';

/** Ingest knobs in one place (units in the names); the environment overrides them (config.ts). */
export const INGEST_DEFAULTS = {
  /** Lines per InfluxDB write: InfluxDB 1.x takes ~93,000 points/s here in batches of 5,000. */
  batchLines: 5000,
  /** Longest a reading waits for its batch to fill. */
  flushIntervalMs: 200,
  /** InfluxDB writes in flight at once. */
  writeConcurrency: 2,
  /**
   * Lines held until stored. At the bound ingest disconnects from the broker (which keeps the
   * queue) and reconnects once half of it is stored. Bounded well below 65,535 messages, the MQTT
   * message ids a connection can have unacknowledged.
   */
  maxBufferedLines: 40_000,
  /** How long close() waits for InfluxDB before leaving the rest to the broker's redelivery. */
  closeTimeoutMs: 10_000,
  influxPingIntervalMs: 2000,
  /** How often silent devices are checked against the no-data rules. */
  alertTickMs: 1000,
  /** Stream roll-ups: a window is written this long after its end (later readings are recomputed from raw). */
  rollupGraceMs: 15_000,
  /** Stream roll-ups: how often windows are checked for being due. */
  rollupTickMs: 1000,
  /** Stream roll-ups: a start recovers at most this far back (older gaps: backfillRollups by hand). */
  rollupRecoveryMs: 6 * 3600_000,
  /** Province summaries are published this often (retained, on ops/{province}/summary). */
  summaryIntervalMs: 5000,
  /** How often the rules file is checked for changes. */
  rulesPollMs: 1000,
  /** Alert events read back at start to rebuild the active alerts: as far back as raw data is kept by default. */
  alertHistoryMs: 30 * 24 * 3600_000,
  /**
   * After a start, how long the persistent session keeps the filters of provinces this worker no
   * longer owns (left by an older INGEST_SHARD layout), storing their messages too: the time the
   * new layout's other workers have to subscribe before nobody is subscribed to those provinces.
   */
  handoverMs: 120_000,
  /**
   * Sessions of removed workers (drain.ts): a pass over one ends once nothing arrived for this long
   * and all it received is stored; the queue follows the CONNACK at once, this is for the stragglers.
   */
  orphanQuietMs: 1000,
  /** A drain holds a removed worker's session this long before dropping its filters: a worker still running reconnects within it (reconnectPeriodMs) and takes it back intact. */
  orphanHoldMs: 3000,
  /** A drain cut short (the removed worker still running, the broker away) is tried again this much later, twice as late each time up to orphanRetryMaxMs. */
  orphanRetryMs: 60_000,
  orphanRetryMaxMs: 30 * 60_000,
} as const;

export interface IngestOptions {
  readonly mqttUrl: string;
  readonly username: string;
  readonly password: string;
  /** Stable id: the broker keeps this persistent session's QoS 1 queue while ingest is away. Default from the shard. */
  readonly clientId?: string;
  /** Provinces this worker owns (INGEST_SHARD); default: all of them. */
  readonly shard?: Shard;
  /**
   * INGEST_HANDOVER_MS: how long after the start the session keeps filters an older shard layout
   * left (their messages are stored too), before it drops them; 0 drops them at once. Then the
   * sessions of removed workers that fall to this one are drained (drain.ts).
   */
  readonly handoverMs?: number;
  readonly influx: Influx;
  readonly registry: DeviceRegistry;
  readonly logger: Logger;
  readonly decodeLimits?: DecodeLimits;
  readonly batchLines?: number;
  readonly flushIntervalMs?: number;
  readonly writeConcurrency?: number;
  readonly maxBufferedLines?: number;
  readonly reconnectPeriodMs?: number;
  /** The alert rules (INGEST_RULES_FILE); default: the shipped ingest/alert-rules.yaml. */
  readonly alertRules?: AlertRules;
  /** The file the rules came from: watched, and a valid change replaces the rules without a restart. */
  readonly rulesFile?: string;
  /** How far back stored alert events are read at start (the raw retention). */
  readonly alertHistoryMs?: number;
  readonly summaryIntervalMs?: number;
  /**
   * Who keeps the 1 m and 1 h roll-ups (INGEST_ROLLUPS, InfluxDB 1.x): 'stream', ingest as it
   * stores (rollups.ts; late readings and restarts recomputed from raw); 'cq', the continuous
   * queries, a backlog batch older than they reach rolled up by ingest (backfillRollups for that
   * device) once stored; 'none' (default here), nobody.
   */
  readonly rollups?: 'stream' | 'cq' | 'none';
  /** Stream roll-ups: how long after its end a window waits for readings still on their way. */
  readonly rollupGraceMs?: number;
  readonly now?: () => number;
}

/** What a stored message releases: its PUBACK, and its device time for the lag figure. */
interface Item {
  readonly token: AckToken | undefined;
  readonly readings: number;
  /** Device time of its (first) reading; 0 when it has none. */
  readonly deviceTs: number;
  /** Alert events it raised or cleared: published once stored, so the api never sees one InfluxDB lacks. */
  readonly events?: readonly AlertEvent[] | undefined;
  /** A backlog older than the CQs reach: its device's roll-ups to recompute once stored. */
  readonly backfill?: Backfill | undefined;
}

interface Backfill {
  /** One device's series, or (undefined) every series of `provinces`. */
  readonly device?: string | undefined;
  readonly provinces?: readonly string[] | undefined;
  readonly domain: Domain;
  from: number;
  to: number;
  resolutions: RollupResolution[];
  attempts: number;
  /** writer.addedMark when queued (the latest, once merged): the raw points to wait for. */
  after?: number;
}

export interface IngestPipeline {
  readonly metrics: IngestMetrics;
  readonly mqtt: MqttClient;
  readonly shard: Shard;
  readonly clientId: string;
  /** The alert engine of the rules in force (replaced when the rules change). */
  readonly alerts: AlertEngine;
  /** Puts new rules in force now (what a change of the rules file does); returns the events it stored. */
  replaceRules(rules: AlertRules): readonly AlertEvent[];
  readonly summaries: ProvinceSummaries;
  /** Lines waiting to be stored. */
  readonly bufferedLines: number;
  /** True while ingest has stopped reading because its buffer is full. */
  readonly paused: boolean;
  /** Handles one MQTT message (the 'message' handler; exported for tests without a broker). */
  handleMessage(topic: string, payload: Buffer, packet?: IPublishPacket): void;
  /** Stores everything received so far. */
  flush(): Promise<void>;
  /** Builds the province summaries now and publishes them (also done every summaryIntervalMs). */
  publishSummaries(): number;
  /** Checks silent devices against the no-data rules now (also done every second). */
  tickAlerts(): void;
  /** Ready while InfluxDB answers (the last ping, at most a few seconds old). */
  ready(): { ready: boolean; influxdb: boolean; mqtt: boolean; bufferedLines: number };
  renderMetrics(): string;
  close(): Promise<void>;
}

/**
 * MQTT → validate → enrich → InfluxDB, at least once: a message is acknowledged to the broker
 * only once everything it produced (readings, status, dead-letter records) is stored. A crash
 * loses nothing (the broker redelivers what was not acknowledged, and a redelivered reading
 * overwrites its own point), and a slow or absent InfluxDB makes ingest stop reading at its
 * buffer's bound while the broker holds the queue.
 */
export async function startIngest(options: IngestOptions): Promise<IngestPipeline> {
  const { influx, registry, logger } = options;
  const limits = options.decodeLimits ?? DEFAULT_DECODE_LIMITS;
  const now = options.now ?? Date.now;
  const startedAt = now();
  const shard = options.shard ?? shardOf(1, 1);
  const owned = new Set(shard.provinces);
  const clientId = options.clientId ?? shardClientId(shard);
  const maxBufferedLines = options.maxBufferedLines ?? INGEST_DEFAULTS.maxBufferedLines;
  const metrics = new IngestMetrics();
  let engine = new AlertEngine(options.alertRules ?? (await readAlertRules()));
  const summaries = new ProvinceSummaries();
  for (const province of shard.provinces) summaries.declare(province);

  // The client logs failed writes to the console; BatchWriter reports them (onRetry) in the service's log.
  setLogger({
    error: (message: string, err?: unknown) => logger.debug({ err: err instanceof Error ? err.message : err }, `influxdb-client: ${message}`),
    warn: (message: string, err?: unknown) => logger.debug({ err: err instanceof Error ? err.message : err }, `influxdb-client: ${message}`),
  });
  // Writes go straight to the client's transport (Influx.writeLines): no retries, no timer, no
  // buffer of its own (BatchWriter has them), one request per batch.
  const batchLines = options.batchLines ?? INGEST_DEFAULTS.batchLines;
  const writer = new BatchWriter<Item>({
    write: (lines) => influx.writeLines(lines),
    batchLines,
    flushIntervalMs: options.flushIntervalMs ?? INGEST_DEFAULTS.flushIntervalMs,
    concurrency: options.writeConcurrency ?? INGEST_DEFAULTS.writeConcurrency,
    onWritten(items, lines, startedAt) {
      const at = now();
      metrics.linesWritten += lines;
      metrics.batchLines.observe(lines);
      metrics.writeSeconds.observe((at - startedAt) / 1000);
      for (const item of items) {
        metrics.readings += item.readings;
        if (item.events) publishAlerts(item.events);
        if (item.backfill) queueBackfill(item.backfill);
        if (item.deviceTs > 0) metrics.lagSeconds.observe(Math.max(0, at - item.deviceTs) / 1000);
        if (!item.token) continue;
        if (item.token.from.ack(item.token)) metrics.acked++;
        else metrics.ackVoided++;
      }
      resumeIfDrained();
    },
    onRefused(line, reason) {
      metrics.refusedLines++;
      logger.warn({ code: 'E_STORE_REFUSED', reason, line: line.slice(0, 300) }, 'InfluxDB refused a line; kept as a dead-letter record');
      // Recorded without a PUBACK of its own: it rides with the next message's batch.
      writer.add([rejectedLine({ code: 'E_STORE_REFUSED', topic: '-', reason, payload: Buffer.from(line) }, uniqueTs('E_STORE_REFUSED', '-'))], { token: undefined, readings: 0, deviceTs: 0 });
    },
    onRetry(failure, attempt, lines, delayMs) {
      metrics.writeFailures++;
      influxUp = false;
      disconnectWhileFailing();
      logger.warn({ code: 'E_UPSTREAM', status: failure.status, err: failure.message, attempt, lines, retryInMs: delayMs, bufferedLines: writer.bufferedLines }, 'InfluxDB write failed; retrying (nothing is dropped)');
    },
  });

  // ---- Stream roll-ups (INGEST_ROLLUPS=stream): windows in memory, written to the roll-up retention policies ----
  let streamRollups: StreamRollups | undefined;
  const rollupWriters = new Map<RollupResolution, BatchWriter<undefined>>();
  if (options.rollups === 'stream') {
    const newest = await newestRollup(influx, shard.provinces);
    const floor = startedAt - INGEST_DEFAULTS.rollupRecoveryMs;
    const from = Math.max(floor, newest === undefined ? floor : newest + ROLLUPS['1m'].intervalMs);
    // Nothing stored since (a first start): nothing to recompute, the stream sees it all.
    const recoverFrom = from < startedAt && (await newestRaw(influx, shard.provinces, from, startedAt)) !== undefined ? from : undefined;
    streamRollups = new StreamRollups({ startedAt, recoverFrom, provinces: shard.provinces, graceMs: options.rollupGraceMs ?? INGEST_DEFAULTS.rollupGraceMs });
    for (const resolution of ROLLUP_RESOLUTIONS) {
      const retentionPolicy = ROLLUPS[resolution].retentionPolicy;
      rollupWriters.set(
        resolution,
        new BatchWriter<undefined>({
          write: (lines) => influx.writeLines(lines, { retentionPolicy }),
          batchLines,
          flushIntervalMs: 1000,
          concurrency: 1,
          onWritten(_items, lines) {
            metrics.rollupPoints[resolution] += lines;
          },
          onRefused(line, reason) {
            metrics.refusedLines++;
            logger.warn({ code: 'E_STORE_REFUSED', reason, line: line.slice(0, 300) }, `InfluxDB refused a ${resolution} roll-up point`);
          },
          onRetry(failure, attempt, lines, delayMs) {
            metrics.writeFailures++;
            logger.warn({ code: 'E_UPSTREAM', status: failure.status, err: failure.message, attempt, lines, retryInMs: delayMs }, 'InfluxDB roll-up write failed; retrying');
          },
        }),
      );
    }
    logger.info({ recoverFrom: recoverFrom === undefined ? 'nothing stored before this start' : new Date(recoverFrom).toISOString(), graceMs: options.rollupGraceMs ?? INGEST_DEFAULTS.rollupGraceMs }, 'roll-ups computed in the stream');
  }
  const writeDueRollups = (): void => {
    if (!streamRollups || closing) return;
    const due = streamRollups.due(now());
    if (due.minute.length > 0) rollupWriters.get('1m')?.add(due.minute, undefined);
    if (due.hour.length > 0) rollupWriters.get('1h')?.add(due.hour, undefined);
    for (const job of due.jobs) queueBackfill({ ...job, resolutions: [...job.resolutions], attempts: 0 });
  };

  // Dead-letter records share a series per (code, device): a millisecond each keeps two apart.
  const lastRejectedTs = new Map<string, number>();
  const uniqueTs = (code: string, deviceId: string): number => {
    const key = `${code}|${deviceId}`;
    const ts = Math.max(now(), (lastRejectedTs.get(key) ?? 0) + 1);
    lastRejectedTs.set(key, ts);
    if (lastRejectedTs.size > 100_000) lastRejectedTs.clear();
    return ts;
  };
  const rejection = (rejected: Rejected): string => {
    metrics.rejected[rejected.code]++;
    logger.warn({ code: rejected.code, topic: rejected.topic.slice(0, 200), reason: rejected.reason, payload: rejected.payload.toString('utf8', 0, 200) }, 'message rejected');
    return rejectedLine(rejected, uniqueTs(rejected.code, rejected.deviceId ?? '-'));
  };

  /** `orphan`: the message came from a removed worker's session being drained (drain.ts), to be acknowledged there. */
  const handleMessage = (topic: string, payload: Buffer, packet?: IPublishPacket, orphan?: LateAcks): void => {
    if (closing) return; // not acknowledged: the broker redelivers it at the next start
    const token = packet ? (orphan ?? acks).token(packet) : undefined;
    if (packet?.dup) metrics.redelivered++;
    const parsedTopic = parseDeviceTopic(topic);
    if (!parsedTopic.ok) {
      metrics.received.other++;
      writer.add([rejection({ code: parsedTopic.error.code, topic, reason: parsedTopic.error.message, payload })], { token, readings: 0, deviceTs: 0 });
      return pauseIfFull();
    }
    const address = parsedTopic.value;
    // A province another worker owns: queued for this session, or matched by a filter it keeps
    // until the handover ends, under an older shard layout. Its owner may not have been subscribed
    // when it was published, so it is stored here too (a copy the owner also got overwrites the
    // same point); its alerts, summaries and stream roll-ups are the owner's.
    // A removed worker's queue is treated alike, whoever owns the province: its readings are
    // older than those the owner has evaluated since it subscribed (the alert engine skips a
    // device time it has passed), and the owner, this worker or another, raises each alert once.
    const foreign = orphan !== undefined || !owned.has(address.province);
    if (foreign && !orphan) metrics.foreign++;
    const where = { deviceId: address.deviceId, province: address.province };
    if (address.channel === 'status') {
      metrics.received.status++;
      const status = decodeStatus(payload);
      if (status.ok && !foreign) summaries.onStatus(address.deviceId, address.province, address.domain, status.value.state, now());
      const line = status.ok ? statusLine(address.domain, address.province, address.deviceId, status.value, now()) : rejection({ code: status.error.code, topic, reason: status.error.message, payload, ...where });
      writer.add([line], { token, readings: 0, deviceTs: 0 });
      return pauseIfFull();
    }
    if (address.channel !== 'telemetry') {
      metrics.received.other++;
      if (token && acks.ack(token)) metrics.acked++;
      return;
    }
    metrics.received.telemetry++;
    const receivedAt = now();
    const decoded = decodeTelemetry(address.domain, payload, receivedAt, limits);
    if (!decoded.ok) {
      writer.add([rejection({ code: decoded.error.code, topic, reason: decoded.error.message, payload, ...where })], { token, readings: 0, deviceTs: 0 });
      return pauseIfFull();
    }
    const lines: string[] = [];
    for (const r of decoded.value.rejected) lines.push(rejection({ code: r.code, topic, reason: `reading ${r.index}: ${r.message}`, payload, ...where }));
    const device = registry.device(address.deviceId);
    const kind = device?.kind ?? 'unknown';
    const subject: AlertDevice = { deviceId: address.deviceId, province: address.province, domain: address.domain, kind: device?.kind };
    let events: AlertEvent[] | undefined;
    const prefix = seriesPrefix(address.domain, address.province, address.deviceId, kind);
    let late: Backfill | undefined;
    for (const reading of decoded.value.readings) {
      const derived = enrichReading(address.domain, reading, device?.profile);
      const fields = flattenReading(reading);
      Object.assign(fields, derived as Fields);
      lines.push(seriesReadingLine(prefix, reading.ts, fields));
      if (foreign) {
        // From before this start (an older layout's queue): the owner, which may not have had it,
        // may have written its windows already, so they are recomputed from raw once it is stored.
        // Later ones the owner got too, or recomputes at its own start (rollups.ts). A removed
        // worker's queue is read after the handover, when the owner has written its windows.
        if (streamRollups && (orphan || reading.ts < startedAt)) late = widen(late ?? { device: address.deviceId, domain: address.domain, from: reading.ts, to: reading.ts + 1, resolutions: [], attempts: 0 }, reading.ts, reading.ts + 1, ROLLUP_RESOLUTIONS);
        continue;
      }
      if (streamRollups) {
        const lateFor = streamRollups.add(prefix, address.deviceId, address.domain, reading.ts, fields);
        if (lateFor.length > 0) late = widen(late ?? { device: address.deviceId, domain: address.domain, from: reading.ts, to: reading.ts + 1, resolutions: [], attempts: 0 }, reading.ts, reading.ts + 1, lateFor);
      }
      summaries.onReading(subject, fields, derived, receivedAt, reading.ts);
      const raised = engine.onReading(subject, reading.ts, fields, derived, receivedAt);
      for (const event of raised) {
        lines.push(alertEventLine(event));
        (events ??= []).push(event);
      }
    }
    const first = decoded.value.readings[0];
    let backfill = late;
    if (options.rollups === 'cq' && first) {
      let from = first.ts;
      let to = first.ts;
      for (const reading of decoded.value.readings) {
        if (reading.ts < from) from = reading.ts;
        if (reading.ts > to) to = reading.ts;
      }
      if (from < receivedAt - ROLLUPS['1m'].lateReadingsMs) backfill = { device: address.deviceId, domain: address.domain, from, to: to + 1, resolutions: [...ROLLUP_RESOLUTIONS], attempts: 0 };
    }
    writer.add(lines, { token, readings: decoded.value.readings.length, deviceTs: first ? first.ts : 0, events, backfill });
    pauseIfFull();
  };

  // ---- Alerts: state rebuilt from the stored events before the first message is read ----
  const known = new Set<string>();
  const pendingEvents: AlertEvent[] = [];
  const restoredFrom = await loadAlertEvents(influx, shard.provinces, Math.max(0, now() - (options.alertHistoryMs ?? INGEST_DEFAULTS.alertHistoryMs)), {
    onSkip: (reason) => logger.warn({ code: 'E_PAYLOAD_SCHEMA', reason }, 'stored alert event skipped'),
  });
  pendingEvents.push(...engine.restore(restoredFrom, now()));
  /**
   * Registered devices of this shard are watched by the no-data rules from the moment they are
   * known (a device that never reports raises too) and counted in the summaries; removed ones are
   * forgotten, their alerts cleared.
   */
  const syncRegistry = (): AlertEvent[] => {
    const at = now();
    const out: AlertEvent[] = [];
    const registered = new Set<string>();
    for (const device of registry.devices) {
      if (!device.enabled || !owned.has(device.province)) continue;
      registered.add(device.id);
      if (known.has(device.id)) continue;
      known.add(device.id);
      out.push(...engine.watch({ deviceId: device.id, province: device.province, domain: device.domain, kind: device.kind }, at));
      // Presumed online from now: stale if nothing arrives within its interval's allowance.
      summaries.onStatus(device.id, device.province, device.domain, 'online', at);
    }
    for (const id of known) {
      if (registered.has(id)) continue; // else removed, disabled, or moved to another shard's province
      known.delete(id);
      out.push(...engine.forget(id, at));
      summaries.forget(id);
    }
    return out;
  };
  pendingEvents.push(...syncRegistry());
  logger.info({ storedEvents: restoredFrom.length, activeAlerts: engine.active().length }, 'alert state rebuilt from InfluxDB');

  /** Events not tied to a message (no-data, restore, registry changes): stored, then published. */
  const storeEvents = (events: readonly AlertEvent[]): void => {
    if (events.length === 0) return;
    writer.add(
      events.map((event) => alertEventLine(event)),
      { token: undefined, readings: 0, deviceTs: 0, events },
    );
  };
  const publishAlerts = (events: readonly AlertEvent[]): void => {
    for (const event of events) {
      if (event.state === 'raised') metrics.alertsRaised++;
      else metrics.alertsCleared++;
      client.publish(opsTopic(event.province, 'alerts'), JSON.stringify(event), { qos: 1 });
    }
  };
  /**
   * New rules (the rules file changed): a new engine takes over the active alerts as at a restart
   * (those whose rule is gone or no longer applies are cleared) and watches the registered devices.
   */
  const replaceRules = (rules: AlertRules): readonly AlertEvent[] => {
    const at = now();
    const next = new AlertEngine(rules);
    const events = [...next.restore(engine.active(), at)];
    for (const id of known) {
      const device = registry.device(id);
      if (device) events.push(...next.watch({ deviceId: device.id, province: device.province, domain: device.domain, kind: device.kind }, at));
    }
    next.inheritTiming(engine);
    engine = next;
    storeEvents(events);
    metrics.rulesReloaded++;
    logger.info({ rules: rules.rules.length, events: events.length }, 'alert rules replaced');
    return events;
  };
  const alertCounts = (): Record<string, SummaryAlertCounts> => {
    const counts: Record<string, { info: number; warning: number; critical: number }> = {};
    for (const event of engine.active()) (counts[event.province] ??= { info: 0, warning: 0, critical: 0 })[event.severity]++;
    return counts;
  };
  const tickAlerts = (): void => {
    if (!closing) storeEvents(engine.tick(now()));
  };
  const publishSummaries = (): number => {
    // While disconnected (back-pressure, broker away) a summary would only queue up behind newer ones.
    if (closing || !client.connected) return 0;
    storeEvents(syncRegistry());
    const built = summaries.build(now(), alertCounts());
    for (const summary of built) client.publish(opsTopic(summary.province, 'summary'), JSON.stringify(summary), { qos: 0, retain: true });
    metrics.summariesPublished += built.length;
    return built.length;
  };

  // ---- Roll-ups recomputed from raw (late readings, restarts): one job at a time, in the background ----
  const backfills = new Map<string, Backfill>();
  let backfilling = false;
  const queueBackfill = (job: Backfill): void => {
    const key = job.device ?? `${job.domain}|${job.provinces?.join(',') ?? '*'}`;
    const queued = backfills.get(key);
    const after = writer.addedMark;
    if (queued) {
      widen(queued, job.from, job.to, job.resolutions);
      queued.after = after;
    } else backfills.set(key, { ...job, resolutions: [...job.resolutions], after });
    void runBackfills();
  };
  const runBackfills = async (): Promise<void> => {
    if (backfilling) return;
    backfilling = true;
    try {
      for (const [key, job] of backfills) {
        if (closing) break;
        // Every raw point of the range must be in: wait for what was added before the job was
        // queued (batches are written concurrently); usually long stored, so no wait.
        await writer.whenStored(job.after);
        backfills.delete(key);
        try {
          await backfillRollups(influx, job.from, job.to, { device: job.device, provinces: job.provinces, domains: [job.domain], resolutions: job.resolutions });
          metrics.rollupBackfills++;
        } catch (err) {
          logger.warn({ code: 'E_UPSTREAM', device: job.device, provinces: job.provinces?.length, domain: job.domain, from: new Date(job.from).toISOString(), to: new Date(job.to).toISOString(), attempt: job.attempts + 1, err: (err as Error).message }, 'roll-up recompute from raw failed');
          if (++job.attempts < 5) setTimeout(() => queueBackfill(job), 10_000 * job.attempts).unref();
        }
      }
    } finally {
      backfilling = false;
    }
  };

  // ---- MQTT: persistent session, the shard's filters, PUBACK only once stored ----
  const client = mqtt.connect(options.mqttUrl, {
    clientId,
    username: options.username,
    password: options.password,
    clean: false,
    protocolVersion: 4,
    reconnectPeriod: options.reconnectPeriodMs ?? 1000,
    connectTimeout: 10_000,
  });
  const acks = new LateAcks(client);
  storeEvents(pendingEvents);
  client.on('message', (topic, payload, packet) => handleMessage(topic, payload, packet));
  client.on('error', (err) => logger.warn({ code: 'E_UPSTREAM', err: err.message }, 'MQTT error'));
  client.on('offline', () => logger.warn({ code: 'E_UPSTREAM' }, 'MQTT connection lost; reconnecting (the broker keeps the queue)'));

  // Back-pressure. At the bound ingest stops reading its socket: the broker holds the queue, and
  // the PUBACKs of what is being stored still go out on the same connection. Disconnecting there
  // instead would void those PUBACKs: after an outage the broker resent its whole queue on every
  // reconnect, ingest filled up again before any acknowledgement got through, and nothing moved.
  // Only while InfluxDB is failing (no acknowledgement can come) does ingest disconnect, so the
  // broker keeps the backlog in its store rather than in a socket buffer. Both end at half.
  let paused = false;
  let disconnected = false;
  /** Connected clients of removed workers' sessions being drained: paused and resumed with `client`. */
  const orphanClients = new Set<MqttClient>();
  let closing = false;
  const disconnectWhileFailing = (): void => {
    if (!paused || disconnected || closing || writer.failingWrites === 0) return;
    disconnected = true;
    logger.warn({ code: 'E_UPSTREAM', bufferedLines: writer.bufferedLines, maxBufferedLines }, 'InfluxDB is failing with the buffer full: disconnecting from the broker until it catches up (the broker keeps the queue)');
    client.end(false);
  };
  const pauseIfFull = (): void => {
    if (closing || writer.bufferedLines < maxBufferedLines) return;
    // The socket may have been resumed by MQTT.js's pipe since: pause it again.
    if (!disconnected) client.stream.pause();
    for (const drain of orphanClients) drain.stream.pause();
    if (paused) return;
    paused = true;
    metrics.backpressurePauses++;
    logger.warn({ code: 'E_UPSTREAM', bufferedLines: writer.bufferedLines, maxBufferedLines }, 'buffer full: not reading from the broker until InfluxDB catches up (the broker keeps the queue)');
    disconnectWhileFailing();
  };
  const resumeIfDrained = (): void => {
    if (!paused || closing || writer.bufferedLines > maxBufferedLines / 2) return;
    paused = false;
    logger.info({ bufferedLines: writer.bufferedLines }, 'buffer drained: reading from the broker again');
    if (disconnected) {
      disconnected = false;
      client.reconnect();
    } else client.stream.resume();
    for (const drain of orphanClients) drain.stream.resume();
  };

  /**
   * A session kept from another layout (one worker, or another i/N) may hold filters of provinces
   * this worker no longer owns. They stay until the handover ends, so that what is published
   * before the new owner subscribes still reaches a session (this one, which stores it); then
   * they are dropped, and the owner alone gets those provinces. MQTT cannot list a session's
   * filters, so every filter this shard must not hold is unsubscribed (unknown ones are no-ops).
   */
  const handoverMs = options.handoverMs ?? INGEST_DEFAULTS.handoverMs;
  let handoverOver = handoverMs <= 0;
  const dropForeignFilters = async (): Promise<void> => {
    await client.unsubscribeAsync(foreignFilters(shard));
    logger.info({ shard: `${shard.index}/${shard.count}`, clientId, foreignMessages: metrics.foreign }, 'handover over: filters of provinces other workers own dropped from the session');
  };
  const subscribe = async (sessionPresent: boolean): Promise<void> => {
    // Own filters first: a country-wide filter an older layout left covers them until then.
    const filters = shardFilters(shard);
    const granted = await client.subscribeAsync(filters, { qos: 1 });
    const refused = granted.filter((g) => g.qos === 128).map((g) => g.topic);
    if (refused.length > 0) throw new Error(`broker refused ingest's subscription to ${refused.join(', ')}: is ${options.username} an ingest service account?`);
    if (sessionPresent && handoverOver) await dropForeignFilters();
    logger.info({ sessionPresent, provinces: shard.provinces.length, shard: `${shard.index}/${shard.count}`, clientId, handoverMs: handoverOver ? 0 : handoverMs }, 'ingest subscribed');
  };

  await new Promise<void>((resolve, reject) => {
    // A refused login will not get better by retrying: stop with the reason. Anything else (the
    // broker not up yet, busy, a timeout) is retried by the client until it connects.
    const onError = (err: Error & { code?: number | string }) => {
      if (err.code !== 4 && err.code !== 5 && err.code !== 134 && err.code !== 135) {
        logger.warn({ code: 'E_UPSTREAM', err: err.message }, 'cannot reach the broker yet; retrying');
        client.once('error', onError);
        return;
      }
      client.end(true);
      reject(err);
    };
    client.once('error', onError);
    client.once('connect', (connack) => {
      client.off('error', onError);
      subscribe(connack.sessionPresent).then(resolve, reject);
    });
  });
  // Later connections (reconnects) resubscribe too: cheap, and covers a session the broker lost.
  client.on('connect', (connack) => {
    subscribe(connack.sessionPresent).catch((err: unknown) => logger.error({ err }, 'resubscribe failed'));
  });

  // ---- Readiness: InfluxDB answers ----
  let influxUp = await influx.ping();
  const pinger = setInterval(() => {
    void influx.ping().then((up) => {
      if (up !== influxUp) logger[up ? 'info' : 'warn']({ code: up ? undefined : 'E_UPSTREAM' }, up ? 'InfluxDB answers again' : 'InfluxDB does not answer');
      influxUp = up;
    });
  }, INGEST_DEFAULTS.influxPingIntervalMs);
  pinger.unref();
  const alertTimer = setInterval(tickAlerts, INGEST_DEFAULTS.alertTickMs);
  alertTimer.unref();
  const rollupTimer = setInterval(writeDueRollups, INGEST_DEFAULTS.rollupTickMs);
  rollupTimer.unref();
  const summaryTimer = setInterval(publishSummaries, options.summaryIntervalMs ?? INGEST_DEFAULTS.summaryIntervalMs);
  summaryTimer.unref();

  /**
   * Sessions of removed workers (`ingest-j`, j > N) that fall to this worker (shards.ts
   * orphanClientIds), drained once the handover is over. By then every worker of the new layout has
   * subscribed and every removed one has stopped (README: a layout change is over within
   * INGEST_HANDOVER_MS), so such a session is nobody's: its queue is stored here, then the session
   * is removed from the broker (drain.ts). One still in use (worker j still running took it back)
   * is left to it and tried again later.
   */
  const orphanAbort = new AbortController();
  setMaxListeners(MAX_SHARDS, orphanAbort.signal); // one per drain under way
  let orphanTimer: NodeJS.Timeout | undefined;
  let orphanDrains: Promise<void> | undefined;
  const drainOrphans = (clientIds: readonly string[], retryMs: number): void => {
    if (closing || clientIds.length === 0) return;
    const drain = async (orphanId: string): Promise<[string, OrphanDrainResult]> => [
      orphanId,
      await drainOrphanSession({
        mqttUrl: options.mqttUrl,
        username: options.username,
        password: options.password,
        clientId: orphanId,
        onMessage: (topic, payload, packet, from) => {
          metrics.orphanMessages.set(orphanId, (metrics.orphanMessages.get(orphanId) ?? 0) + 1);
          handleMessage(topic, payload, packet, from);
        },
        clients: orphanClients,
        paused: () => paused,
        quietMs: INGEST_DEFAULTS.orphanQuietMs,
        holdMs: Math.max(INGEST_DEFAULTS.orphanHoldMs, 3 * (options.reconnectPeriodMs ?? 1000)),
        signal: orphanAbort.signal,
      }),
    ];
    orphanDrains = Promise.all(clientIds.map(drain)).then((results) => {
      const again: string[] = [];
      for (const [orphanId, result] of results) {
        switch (result.outcome) {
          case 'absent':
            break;
          case 'drained':
            metrics.orphanSessionsRemoved++;
            logger.info({ session: orphanId, messages: result.messages, passes: result.passes, shard: `${shard.index}/${shard.count}` }, `session ${orphanId} of a removed worker drained: ${result.messages} queued messages stored, the session removed from the broker`);
            break;
          case 'interrupted':
            if (closing) break;
            metrics.orphanDrainsInterrupted++;
            again.push(orphanId);
            logger.warn(
              { code: result.conflict ? 'E_CONFLICT' : 'E_UPSTREAM', session: orphanId, messages: result.messages, reason: result.reason, retryInMs: retryMs },
              result.conflict
                ? `session ${orphanId} is still in use: stop the worker that runs it (INGEST_SHARD=${orphanId.slice('ingest-'.length)}/M, M > ${shard.count}), it is not part of this layout; its session is drained after it`
                : `could not drain session ${orphanId} of a removed worker; retrying`,
            );
            break;
          default:
            result satisfies never;
        }
      }
      logger.debug({ checked: clientIds.length, retrying: again }, 'sessions of removed workers checked');
      if (again.length === 0 || closing) return;
      orphanTimer = setTimeout(() => drainOrphans(again, Math.min(retryMs * 2, INGEST_DEFAULTS.orphanRetryMaxMs)), retryMs);
      orphanTimer.unref();
    });
  };
  const endHandover = (): void => {
    handoverOver = true;
    if (!closing && client.connected) dropForeignFilters().catch((err: unknown) => logger.warn({ code: 'E_UPSTREAM', err: (err as Error).message }, 'could not drop the filters of provinces other workers own; retried at the next connection'));
    drainOrphans(orphanClientIds(shard, clientId), INGEST_DEFAULTS.orphanRetryMs);
  };
  // Not connected now: the next connection drops them (subscribe, handover over).
  const handoverTimer = handoverOver ? undefined : setTimeout(endHandover, handoverMs);
  handoverTimer?.unref();
  if (handoverOver) drainOrphans(orphanClientIds(shard, clientId), INGEST_DEFAULTS.orphanRetryMs);
  // The rules file is polled (an atomic rename replaces its inode, which a file watch would lose).
  const rulesFile = options.rulesFile;
  const onRulesChange = (current: { mtimeMs: number }, previous: { mtimeMs: number }) => {
    if (closing || current.mtimeMs === previous.mtimeMs || current.mtimeMs === 0) return;
    readAlertRules(rulesFile)
      .then(
        (rules) => {
          if (!closing) replaceRules(rules);
        },
        (err: unknown) => {
          metrics.rulesRejected++;
          logger.error({ code: 'E_CONFIG', err: (err as Error).message }, 'the changed alert rules file is not valid; the previous rules stay in force');
        },
      )
      .catch((err: unknown) => logger.error({ err }, 'could not put the changed alert rules in force; the previous rules stay'));
  };
  if (rulesFile) watchFile(rulesFile, { interval: INGEST_DEFAULTS.rulesPollMs, persistent: false }, onRulesChange);

  return {
    metrics,
    mqtt: client,
    shard,
    clientId,
    get alerts() {
      return engine;
    },
    replaceRules,
    summaries,
    get bufferedLines() {
      return writer.bufferedLines;
    },
    get paused() {
      return paused;
    },
    handleMessage,
    flush: () => writer.flush(),
    publishSummaries,
    tickAlerts,
    ready: () => ({ ready: influxUp && writer.failingWrites === 0, influxdb: influxUp, mqtt: client.connected, bufferedLines: writer.bufferedLines }),
    renderMetrics: () =>
      metrics.render({ bufferedLines: writer.bufferedLines, maxBufferedLines, connected: client.connected, paused, influxUp, activeAlerts: engine.active().length, provinces: shard.provinces.length }),
    async close() {
      closing = true;
      if (rulesFile) unwatchFile(rulesFile, onRulesChange);
      clearInterval(pinger);
      clearInterval(alertTimer);
      clearInterval(rollupTimer);
      clearInterval(summaryTimer);
      clearTimeout(handoverTimer);
      clearTimeout(orphanTimer);
      // Stop taking messages, store what was taken, acknowledge it, then leave.
      client.options.reconnectPeriod = 0;
      const unwritten = await writer.close(INGEST_DEFAULTS.closeTimeoutMs);
      // Windows still open are left to the next start, which recomputes them from raw.
      for (const rollupWriter of rollupWriters.values()) await rollupWriter.close(INGEST_DEFAULTS.closeTimeoutMs);
      if (unwritten > 0) logger.warn({ code: 'E_UPSTREAM', unwritten }, 'InfluxDB did not take everything before shutdown: the broker redelivers those messages at the next start');
      // A drain under way stops where it is: what it did not acknowledge stays in that session.
      orphanAbort.abort();
      await orphanDrains;
      await client.endAsync();
    },
  };
}

/** Widens a recompute job to cover [from, to) and these roll-ups too. */
function widen(job: Backfill, from: number, to: number, resolutions: readonly RollupResolution[]): Backfill {
  job.from = Math.min(job.from, from);
  job.to = Math.max(job.to, to);
  for (const resolution of resolutions) if (!job.resolutions.includes(resolution)) job.resolutions.push(resolution);
  return job;
}
