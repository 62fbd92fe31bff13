import type { Logger } from 'pino';
import { Compile } from 'typebox/compile';
import {
  decodeStatus,
  decodeTelemetry,
  DERIVED_FIELDS,
  DOMAINS,
  enrichReading,
  flattenReading,
  opsTopic,
  parseDeviceTopic,
  ProvinceSummary,
  readingState,
  type Derived,
  type DeviceStatusEvent,
  type Domain,
  type FieldValue,
  type Fields,
  type LiveFrame,
  type LiveReading,
} from '@citypulse/contracts';
import type { DeviceRegistry } from '@citypulse/broker/registry';
import type { Influx } from '@citypulse/infra';

const DERIVED = new Set<string>(DERIVED_FIELDS);
const TAG_COLUMNS = new Set(['time', 'province', 'device', 'kind']);
const checkSummary = Compile(ProvinceSummary);

/**
 * The latest reading and status of every device, kept in memory from the api's own MQTT
 * subscription (rebuilt from InfluxDB at start), and the set of devices that changed since the
 * last frame, per province. The live map keeps working when InfluxDB is down.
 */
export class LiveState {
  readonly #latest = new Map<string, LiveReading>();
  readonly #status = new Map<string, DeviceStatusEvent>();
  /** Changed devices since the last frame, per room key (province and domain). */
  readonly #dirty = new Map<string, Map<string, LiveReading>>();
  readonly #summaries = new Map<string, ProvinceSummary>();
  readonly #registry: DeviceRegistry;
  readonly #logger: Logger;
  rejected = 0;

  constructor(registry: DeviceRegistry, logger: Logger) {
    this.#registry = registry;
    this.#logger = logger;
  }

  latest(deviceId: string): LiveReading | undefined {
    return this.#latest.get(deviceId);
  }

  status(deviceId: string): DeviceStatusEvent | undefined {
    return this.#status.get(deviceId);
  }

  /** Every latest reading of a province's domain: the snapshot a client gets when it joins. */
  snapshot(province: string, domain: Domain, now = Date.now()): LiveFrame {
    const readings: LiveReading[] = [];
    for (const r of this.#latest.values()) if (r.province === province && r.domain === domain) readings.push(r);
    return { province, domain, mode: 'live', sentAt: now, readings };
  }

  /** Takes the frames accumulated since the last call (one per province and domain with changes). */
  drainFrames(now = Date.now()): LiveFrame[] {
    const frames: LiveFrame[] = [];
    for (const changed of this.#dirty.values()) {
      const first = changed.values().next().value as LiveReading;
      frames.push({ province: first.province, domain: first.domain, mode: 'live', sentAt: now, readings: [...changed.values()] });
    }
    this.#dirty.clear();
    return frames;
  }

  /** The newest KPIs ingest published for a province (ops/{province}/summary), if any. */
  summary(province: string): ProvinceSummary | undefined {
    return this.#summaries.get(province);
  }

  /** Applies one summary message; returns it when it is a valid ProvinceSummary newer than the one held. */
  handleSummary(topic: string, payload: Buffer): ProvinceSummary | undefined {
    if (payload.length === 0) return undefined; // retained summary cleared
    let summary: unknown;
    try {
      summary = JSON.parse(payload.toString('utf8'));
    } catch {
      summary = undefined;
    }
    if (!checkSummary.Check(summary) || topic !== opsTopic(summary.province, 'summary')) {
      this.rejected++;
      this.#logger.debug({ topic }, 'live: a summary that is not a ProvinceSummary was ignored');
      return undefined;
    }
    const held = this.#summaries.get(summary.province);
    if (held && held.ts > summary.ts) return undefined;
    this.#summaries.set(summary.province, summary);
    return summary;
  }

  /** Applies one MQTT message; returns a status event when the message was a status change. */
  handleMessage(topic: string, payload: Buffer, now = Date.now()): DeviceStatusEvent | undefined {
    const parsed = parseDeviceTopic(topic);
    if (!parsed.ok) {
      this.rejected++;
      return undefined;
    }
    const { province, domain, deviceId, channel } = parsed.value;
    if (channel === 'status') {
      if (payload.length === 0) return undefined; // retained status cleared
      const status = decodeStatus(payload);
      if (!status.ok) {
        this.rejected++;
        return undefined;
      }
      const event: DeviceStatusEvent = { deviceId, province, domain, state: status.value.state, ts: status.value.ts ?? now };
      this.#status.set(deviceId, event);
      return event;
    }
    if (channel !== 'telemetry') return undefined;
    const decoded = decodeTelemetry(domain, payload, now);
    if (!decoded.ok) {
      this.rejected++;
      this.#logger.debug({ code: decoded.error.code, topic }, 'live: message rejected');
      return undefined;
    }
    const profile = this.#registry.device(deviceId)?.profile;
    for (const reading of decoded.value.readings) {
      const derived = enrichReading(domain, reading, profile);
      this.#put({ deviceId, province, domain, ts: reading.ts, seq: reading.seq, values: flattenReading(reading), derived, state: readingState(domain, derived) });
    }
    if (!this.#status.has(deviceId)) this.#status.set(deviceId, { deviceId, province, domain, state: 'online', ts: now });
    return undefined;
  }

  /** Rebuilds the latest reading of every device from InfluxDB (the last hour), so a restarted api draws at once. */
  async restore(influx: Influx, lookback = '1h'): Promise<number> {
    let restored = 0;
    for (const domain of DOMAINS) {
      const [series = []] = await influx.query(`SELECT * FROM "${domain}" WHERE time > now() - ${lookback} GROUP BY "device" ORDER BY time DESC LIMIT 1`);
      for (const s of series) {
        const row = s.values[0];
        const deviceId = s.tags?.device;
        if (!row || !deviceId) continue;
        const reading = readingFromRow(domain, s.columns, row, deviceId);
        if (reading && !this.#latest.has(deviceId)) {
          this.#latest.set(deviceId, reading);
          restored++;
        }
      }
    }
    return restored;
  }

  #put(reading: LiveReading): void {
    const previous = this.#latest.get(reading.deviceId);
    if (previous && previous.ts > reading.ts) return; // a backlog batch never moves the map back in time
    this.#latest.set(reading.deviceId, reading);
    const key = `${reading.province}/${reading.domain}`;
    let changed = this.#dirty.get(key);
    if (!changed) this.#dirty.set(key, (changed = new Map<string, LiveReading>()));
    changed.set(reading.deviceId, reading);
  }
}

/**
 * A stored reading (a row of `SELECT *` on a domain measurement) as the live map draws it. The
 * device id comes from the series tags (GROUP BY "device") or else from the row's device column.
 */
export function readingFromRow(domain: Domain, columns: readonly string[], row: readonly unknown[], seriesDevice?: string): LiveReading | undefined {
  const values: Fields = {};
  const derived: Record<string, FieldValue> = {};
  let province: string | undefined;
  let deviceId = seriesDevice;
  columns.forEach((column, i) => {
    const value = row[i];
    if (column === 'province' && typeof value === 'string') province = value;
    if (column === 'device' && typeof value === 'string') deviceId ??= value;
    if (TAG_COLUMNS.has(column) || value === null || value === undefined) return;
    if (typeof value !== 'number' && typeof value !== 'boolean' && typeof value !== 'string') return;
    if (DERIVED.has(column)) derived[column] = value;
    else values[column] = value;
  });
  const ts = row[0];
  if (typeof ts !== 'number' || !province || !deviceId) return undefined;
  const seq = typeof values.seq === 'number' ? values.seq : 0;
  const d = derived as Derived;
  return { deviceId, province, domain, ts, seq, values, derived: d, state: readingState(domain, d) };
}
