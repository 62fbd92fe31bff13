import { REJECTION_CODES, type RejectionCode } from '@citypulse/contracts';

const CODES = Object.keys(REJECTION_CODES) as RejectionCode[];
import { Histogram, PrometheusText } from '@citypulse/infra';

/** Seconds: batch write latency and device-to-stored lag. */
const LATENCY_BOUNDS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300, 3600];
const BATCH_BOUNDS = [1, 10, 100, 500, 1000, 2000, 5000, 10_000];

/** ingest's counters, kept as plain numbers on the hot path and rendered at scrape time. */
export class IngestMetrics {
  readonly startedAt = Date.now();
  /** MQTT messages received, by channel. */
  readonly received = { telemetry: 0, status: 0, other: 0 };
  /** Messages the broker sent again (DUP): a PUBACK of ours that did not arrive. */
  redelivered = 0;
  /** Messages of provinces another shard owns (queued or matched under an older layout, until the handover ends): stored, no alerts or summaries. */
  foreign = 0;
  /** Messages taken from removed workers' sessions (drain.ts), by session (`ingest-j`): stored like foreign ones. */
  readonly orphanMessages = new Map<string, number>();
  /** Removed workers' sessions drained and removed from the broker. */
  orphanSessionsRemoved = 0;
  /** Drains cut short (the removed worker still running, the broker away) and retried later. */
  orphanDrainsInterrupted = 0;
  /** Readings stored. */
  readings = 0;
  /** Lines stored (readings, statuses, dead-letter records, alert events). */
  linesWritten = 0;
  readonly rejected = Object.fromEntries(CODES.map((c) => [c, 0])) as Record<RejectionCode, number>;
  /** Lines InfluxDB refused on their own (the batch was split to find them). */
  refusedLines = 0;
  writeFailures = 0;
  acked = 0;
  /** PUBACKs given up because their connection closed (the broker redelivers those messages). */
  ackVoided = 0;
  /** Times ingest disconnected to stop reading because its buffer was full. */
  backpressurePauses = 0;
  alertsRaised = 0;
  alertsCleared = 0;
  summariesPublished = 0;
  /** Times the rules file changed and its new rules took over; or were refused as invalid. */
  rulesReloaded = 0;
  rulesRejected = 0;
  /** Roll-ups ingest recomputed from raw points (a late reading's device, a restart's first minutes and hour). */
  rollupBackfills = 0;
  /** Stream roll-up points stored (INGEST_ROLLUPS=stream), by resolution. */
  readonly rollupPoints = { '1m': 0, '1h': 0 };
  readonly batchLines = new Histogram(BATCH_BOUNDS);
  readonly writeSeconds = new Histogram(LATENCY_BOUNDS);
  /** From the reading's device timestamp to its batch being stored (a backlog shows as lag). */
  readonly lagSeconds = new Histogram(LATENCY_BOUNDS);

  render(gauges: { bufferedLines: number; maxBufferedLines: number; connected: boolean; paused: boolean; influxUp: boolean; activeAlerts: number; provinces: number }): string {
    const p = 'citypulse_ingest_';
    return new PrometheusText()
      .family(`${p}messages_received_total`, 'counter', 'MQTT messages received, by channel.', Object.entries(this.received).map(([c, v]) => [`{channel="${c}"}`, v] as const))
      .family(`${p}messages_redelivered_total`, 'counter', 'Messages the broker sent again because their PUBACK did not reach it.', [['', this.redelivered]])
      .family(`${p}messages_foreign_total`, 'counter', "Messages of provinces another shard owns (an older layout's queue or filters, until the handover ends), stored without alerts or summaries.", [['', this.foreign]])
      .family(`${p}orphan_messages_total`, 'counter', "Messages taken from removed workers' sessions (ingest-j, j > N) while draining them, by session; stored without alerts or summaries.", [...this.orphanMessages].map(([session, v]) => [`{session="${session}"}`, v] as const))
      .family(`${p}orphan_sessions_removed_total`, 'counter', "Removed workers' sessions drained and removed from the broker.", [['', this.orphanSessionsRemoved]])
      .family(`${p}orphan_drains_interrupted_total`, 'counter', "Drains of a removed worker's session cut short (that worker still running, or the broker away) and retried later.", [['', this.orphanDrainsInterrupted]])
      .family(`${p}readings_written_total`, 'counter', 'Readings stored in InfluxDB.', [['', this.readings]])
      .family(`${p}lines_written_total`, 'counter', 'Lines stored in InfluxDB (readings, statuses, dead-letter records, alert events).', [['', this.linesWritten]])
      .family(`${p}rejected_total`, 'counter', 'Messages or readings rejected, by code (each has a dead-letter record).', CODES.map((c) => [`{code="${c}"}`, this.rejected[c]] as const))
      .family(`${p}lines_refused_total`, 'counter', 'Lines InfluxDB refused on their own.', [['', this.refusedLines]])
      .family(`${p}write_failures_total`, 'counter', 'InfluxDB writes that failed and were retried.', [['', this.writeFailures]])
      .family(`${p}acks_total`, 'counter', 'PUBACKs sent once a message was stored.', [['', this.acked]])
      .family(`${p}acks_voided_total`, 'counter', 'PUBACKs not sent because their connection had closed (the broker redelivers).', [['', this.ackVoided]])
      .family(`${p}backpressure_pauses_total`, 'counter', 'Times ingest stopped reading because its buffer reached its bound.', [['', this.backpressurePauses]])
      .family(`${p}alerts_total`, 'counter', 'Alert events, by state.', [['{state="raised"}', this.alertsRaised], ['{state="cleared"}', this.alertsCleared]])
      .family(`${p}summaries_published_total`, 'counter', 'Province summaries published.', [['', this.summariesPublished]])
      .family(`${p}rules_reloads_total`, 'counter', 'Changes of the alert rules file, by result (applied, or refused as invalid: the previous rules stay).', [['{result="applied"}', this.rulesReloaded], ['{result="refused"}', this.rulesRejected]])
      .family(`${p}rollup_backfills_total`, 'counter', 'Roll-ups recomputed from raw points: a late reading\'s device, or a restart\'s first minutes and hour.', [['', this.rollupBackfills]])
      .family(`${p}rollup_points_written_total`, 'counter', 'Roll-up points ingest computed from the stream and stored (INGEST_ROLLUPS=stream), by resolution.', Object.entries(this.rollupPoints).map(([r, v]) => [`{resolution="${r}"}`, v] as const))
      .family(`${p}buffered_lines`, 'gauge', 'Lines waiting to be stored.', [['', gauges.bufferedLines]])
      .family(`${p}buffer_fill_ratio`, 'gauge', 'Buffered lines over the bound (INGEST_MAX_BUFFERED_LINES).', [['', gauges.maxBufferedLines > 0 ? gauges.bufferedLines / gauges.maxBufferedLines : 0]])
      .family(`${p}mqtt_connected`, 'gauge', '1 while connected to the broker.', [['', gauges.connected ? 1 : 0]])
      .family(`${p}paused`, 'gauge', '1 while ingest stopped reading because its buffer is full.', [['', gauges.paused ? 1 : 0]])
      .family(`${p}influxdb_up`, 'gauge', '1 while InfluxDB answers.', [['', gauges.influxUp ? 1 : 0]])
      .family(`${p}active_alerts`, 'gauge', 'Alerts raised and not cleared.', [['', gauges.activeAlerts]])
      .family(`${p}provinces_owned`, 'gauge', 'Provinces this worker owns (INGEST_SHARD).', [['', gauges.provinces]])
      .histogram(`${p}batch_lines`, 'Lines per stored batch.', this.batchLines)
      .histogram(`${p}write_seconds`, 'Time to store one batch, retries included.', this.writeSeconds)
      .histogram(`${p}lag_seconds`, "From a message's device timestamp to its batch being stored.", this.lagSeconds)
      .process(this.startedAt)
      .toString();
  }
}
