import {
  CodedError,
  isProvinceCode,
  LOS_LEVELS,
  type Derived,
  type Domain,
  type Fields,
  type FieldValue,
  type ProvinceSummary,
  type SummaryAlertCounts,
} from '@citypulse/contracts';

/**
 * Province summaries (contracts' ProvinceSummary), built from the latest reading of each device.
 *
 * Hot path: onReading runs for every reading (50,000/s at national scale). It does one Map lookup
 * and overwrites a few numbers in the device's slot; nothing is allocated after a device's first
 * reading. build() does the aggregation, once per publish period, in one pass over the devices:
 * memory and build time are O(devices).
 *
 * A device is in exactly one state at build time:
 * - offline: its last word was an offline status (its own or its last will), with no reading since;
 * - stale: otherwise, when nothing arrived for longer than max(staleIntervals × interval, minStaleMs)
 *   since its last reading (or its online status, if no reading came after it);
 * - online: otherwise. Only online devices feed the domain figures.
 * Its interval is the registry's expectedIntervalMs when given, else learnt from the gaps between
 * its readings' device times (the smallest recent gap, drifting up 6 % per reading so a device that
 * slows down is followed while one outage barely moves it), else defaultIntervalMs.
 */
export const SUMMARY_DEFAULTS = {
  staleIntervals: 3,
  /** Gateways upload 1 Hz readings every 5 s and ingest flushes every second: never stale sooner. */
  minStaleMs: 30_000,
  /** Until an interval is known (loop detectors and stations report every 20–60 s). */
  defaultIntervalMs: 60_000,
} as const;

export interface SummaryOptions {
  readonly staleIntervals?: number;
  readonly minStaleMs?: number;
  readonly defaultIntervalMs?: number;
}

export interface SummaryDevice {
  readonly deviceId: string;
  readonly province: string;
  readonly domain: Domain;
  /** The reporting interval from the registry, when it is known. */
  readonly expectedIntervalMs?: number | undefined;
}

export type ActiveAlertCounts = Readonly<Record<string, SummaryAlertCounts>>;

/** Upward drift per reading of a learnt interval (as in the alert engine). */
const INTERVAL_GROWTH = 1.0625;
/** LOS E and F count as congested. */
const CONGESTED_RANK = LOS_LEVELS.indexOf('E');
const NO_ALERTS: SummaryAlertCounts = { info: 0, warning: 0, critical: 0 };

/** One device's state: plain numbers, NaN (or -1 for the LOS rank) when the latest reading lacks the value. */
class Slot {
  /** Last word was an offline status. */
  offline = false;
  /** Arrival of the last reading, or of an online status after it: staleness counts from here. */
  lastSignOfLife = -Infinity;
  /** Arrival of the last reading. */
  lastReadingAt = -Infinity;
  /** Device time of the newest reading whose values are held. */
  lastTs = Number.NaN;
  learnedIntervalMs = Number.NaN;
  expectedIntervalMs: number | undefined = undefined;
  hasReading = false;
  vnAqi = Number.NaN;
  pm25 = Number.NaN;
  losRank = -1;
  speedRatio = Number.NaN;
  loadFactor = Number.NaN;
  outOfBand = false;

  constructor(
    readonly deviceId: string,
    public province: string,
    public domain: Domain,
  ) {}

  clearValues(): void {
    this.hasReading = false;
    this.lastTs = Number.NaN;
    this.learnedIntervalMs = Number.NaN;
    this.vnAqi = Number.NaN;
    this.pm25 = Number.NaN;
    this.losRank = -1;
    this.speedRatio = Number.NaN;
    this.loadFactor = Number.NaN;
    this.outOfBand = false;
  }
}

export class ProvinceSummaries {
  readonly #devices = new Map<string, Slot>();
  readonly #provinces = new Set<string>();
  readonly #staleIntervals: number;
  readonly #minStaleMs: number;
  readonly #defaultIntervalMs: number;

  constructor(options: SummaryOptions = {}) {
    this.#staleIntervals = options.staleIntervals ?? SUMMARY_DEFAULTS.staleIntervals;
    this.#minStaleMs = options.minStaleMs ?? SUMMARY_DEFAULTS.minStaleMs;
    this.#defaultIntervalMs = options.defaultIntervalMs ?? SUMMARY_DEFAULTS.defaultIntervalMs;
  }

  /** Devices held. */
  get size(): number {
    return this.#devices.size;
  }

  /** Summarise this province even before any of its devices is seen (a worker's own provinces). */
  declare(province: string): void {
    if (!isProvinceCode(province)) throw new CodedError('E_PROVINCE', `"${province.slice(0, 16)}" is not one of the 34 province codes`);
    this.#provinces.add(province);
  }

  /**
   * A stored reading. `receivedAt` is its arrival (ingest's clock, the clock of build's `now`);
   * `ts`, the device's time of measurement, orders readings (an older one, e.g. from a backlog
   * arriving out of order, does not replace newer values) and measures the interval. Without it,
   * arrival time does both.
   */
  onReading(device: SummaryDevice, values: Fields, derived: Derived, receivedAt: number, ts: number = receivedAt): void {
    const slot = this.#slot(device.deviceId, device.province, device.domain);
    if (device.expectedIntervalMs !== undefined) slot.expectedIntervalMs = device.expectedIntervalMs;
    slot.offline = false;
    if (receivedAt > slot.lastReadingAt) slot.lastReadingAt = receivedAt;
    if (receivedAt > slot.lastSignOfLife) slot.lastSignOfLife = receivedAt;
    if (slot.hasReading) {
      const gap = ts - slot.lastTs;
      if (gap < 0) return; // older than the values held
      if (gap > 0) slot.learnedIntervalMs = Number.isNaN(slot.learnedIntervalMs) ? gap : Math.min(gap, slot.learnedIntervalMs * INTERVAL_GROWTH);
    }
    slot.hasReading = true;
    slot.lastTs = ts;
    switch (slot.domain) {
      case 'environment':
        slot.vnAqi = numberOr(derived.vnAqi);
        slot.pm25 = numberOr(values.pm25);
        break;
      case 'traffic': {
        slot.losRank = derived.los === undefined ? -1 : (LOS_LEVELS as readonly string[]).indexOf(derived.los);
        // Probe sources report currentSpeed and freeFlowSpeed (domain.md); loop detectors only
        // their average speed, which needs a free-flow speed to mean anything.
        const current = numberOr(values.currentSpeed ?? values.averageVehicleSpeed);
        const freeFlow = numberOr(values.freeFlowSpeed);
        slot.speedRatio = freeFlow > 0 ? current / freeFlow : Number.NaN;
        break;
      }
      case 'energy':
        slot.loadFactor = numberOr(derived.loadFactor);
        slot.outOfBand = derived.outOfBand === true;
        break;
      default:
        assertNever(slot.domain);
    }
  }

  /** A device's status (retained on …/status, also its last will); `ts` in the clock of receivedAt. */
  onStatus(deviceId: string, province: string, domain: Domain, state: 'online' | 'offline', ts: number): void {
    const slot = this.#slot(deviceId, province, domain);
    if (state === 'online') {
      slot.offline = false;
      if (ts > slot.lastSignOfLife) slot.lastSignOfLife = ts;
    } else if (ts >= slot.lastReadingAt) {
      // An offline status older than the last reading is old news (status and telemetry are
      // different topics, so MQTT does not order them).
      slot.offline = true;
    }
  }

  /** Drops a device removed from the registry. Its province stays summarised. */
  forget(deviceId: string): void {
    this.#devices.delete(deviceId);
  }

  /**
   * One summary per province seen or declared, sorted by code. `activeAlerts` holds the active
   * alert counts by province (the alert engine's); a province missing from it has none.
   */
  build(now: number, activeAlerts: ActiveAlertCounts = {}): ProvinceSummary[] {
    const acc = new Map<string, Accumulator>();
    for (const province of this.#provinces) acc.set(province, new Accumulator());
    for (const slot of this.#devices.values()) {
      let a = acc.get(slot.province);
      if (!a) acc.set(slot.province, (a = new Accumulator()));
      a.add(slot, this.#state(slot, now));
    }
    return [...acc.entries()]
      .sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0))
      .map(([province, a]) => a.summary(province, now, Object.hasOwn(activeAlerts, province) ? (activeAlerts[province] ?? NO_ALERTS) : NO_ALERTS));
  }

  #state(slot: Slot, now: number): DeviceState {
    if (slot.offline) return 'offline';
    const interval = slot.expectedIntervalMs ?? (Number.isNaN(slot.learnedIntervalMs) ? this.#defaultIntervalMs : slot.learnedIntervalMs);
    const limit = Math.max(this.#staleIntervals * interval, this.#minStaleMs);
    return now - slot.lastSignOfLife > limit ? 'stale' : 'online';
  }

  #slot(deviceId: string, province: string, domain: Domain): Slot {
    let slot = this.#devices.get(deviceId);
    if (!slot) {
      slot = new Slot(deviceId, province, domain);
      this.#devices.set(deviceId, slot);
      this.#provinces.add(province);
    } else if (slot.province !== province || slot.domain !== domain) {
      // Re-registered elsewhere: its values belong to the old place.
      slot.province = province;
      slot.domain = domain;
      slot.clearValues();
      this.#provinces.add(province);
    }
    return slot;
  }
}

type DeviceState = 'online' | 'offline' | 'stale';

/** Sums for one province during build(). Ties for a maximum go to the smaller device id, so the figure is stable between builds. */
class Accumulator {
  total = 0;
  online = 0;
  offline = 0;
  stale = 0;
  readonly env = { devices: 0, reporting: 0, aqiSum: 0, aqiCount: 0, aqiMax: -Infinity, aqiMaxDevice: '', pm25Sum: 0, pm25Count: 0 };
  readonly traffic = { devices: 0, reporting: 0, losCount: 0, congested: 0, worstRank: -1, worstDevice: '', ratioSum: 0, ratioCount: 0 };
  readonly energy = { devices: 0, reporting: 0, loadSum: 0, loadCount: 0, loadMax: -Infinity, loadMaxDevice: '', outOfBand: 0 };

  add(slot: Slot, state: DeviceState): void {
    this.total++;
    this[state]++;
    const reporting = state === 'online' && slot.hasReading;
    const id = slot.deviceId;
    switch (slot.domain) {
      case 'environment': {
        const e = this.env;
        e.devices++;
        if (!reporting) return;
        e.reporting++;
        if (!Number.isNaN(slot.vnAqi)) {
          e.aqiSum += slot.vnAqi;
          e.aqiCount++;
          if (slot.vnAqi > e.aqiMax || (slot.vnAqi === e.aqiMax && id < e.aqiMaxDevice)) {
            e.aqiMax = slot.vnAqi;
            e.aqiMaxDevice = id;
          }
        }
        if (!Number.isNaN(slot.pm25)) {
          e.pm25Sum += slot.pm25;
          e.pm25Count++;
        }
        return;
      }
      case 'traffic': {
        const t = this.traffic;
        t.devices++;
        if (!reporting) return;
        t.reporting++;
        if (slot.losRank >= 0) {
          t.losCount++;
          if (slot.losRank >= CONGESTED_RANK) t.congested++;
          if (slot.losRank > t.worstRank || (slot.losRank === t.worstRank && id < t.worstDevice)) {
            t.worstRank = slot.losRank;
            t.worstDevice = id;
          }
        }
        if (!Number.isNaN(slot.speedRatio)) {
          t.ratioSum += slot.speedRatio;
          t.ratioCount++;
        }
        return;
      }
      case 'energy': {
        const g = this.energy;
        g.devices++;
        if (!reporting) return;
        g.reporting++;
        if (slot.outOfBand) g.outOfBand++;
        if (!Number.isNaN(slot.loadFactor)) {
          g.loadSum += slot.loadFactor;
          g.loadCount++;
          if (slot.loadFactor > g.loadMax || (slot.loadFactor === g.loadMax && id < g.loadMaxDevice)) {
            g.loadMax = slot.loadFactor;
            g.loadMaxDevice = id;
          }
        }
        return;
      }
      default:
        assertNever(slot.domain);
    }
  }

  summary(province: string, now: number, alerts: SummaryAlertCounts): ProvinceSummary {
    const { env: e, traffic: t, energy: g } = this;
    const worstLos = t.worstRank >= 0 ? LOS_LEVELS[t.worstRank] : undefined;
    return {
      province,
      ts: now,
      devices: { total: this.total, online: this.online, offline: this.offline, stale: this.stale },
      environment: {
        devices: e.devices,
        reporting: e.reporting,
        ...(e.aqiCount > 0 ? { vnAqiMean: e.aqiSum / e.aqiCount, vnAqiMax: e.aqiMax, vnAqiMaxDevice: e.aqiMaxDevice } : {}),
        ...(e.pm25Count > 0 ? { pm25Mean: e.pm25Sum / e.pm25Count } : {}),
      },
      traffic: {
        devices: t.devices,
        reporting: t.reporting,
        ...(t.losCount > 0 ? { congestedShare: t.congested / t.losCount } : {}),
        ...(t.ratioCount > 0 ? { meanSpeedRatio: t.ratioSum / t.ratioCount } : {}),
        ...(worstLos !== undefined ? { worstLos, worstDevice: t.worstDevice } : {}),
      },
      energy: {
        devices: g.devices,
        reporting: g.reporting,
        ...(g.loadCount > 0 ? { loadFactorMean: g.loadSum / g.loadCount, loadFactorMax: g.loadMax, loadFactorMaxDevice: g.loadMaxDevice } : {}),
        outOfBand: g.outOfBand,
      },
      alerts: { info: alerts.info, warning: alerts.warning, critical: alerts.critical },
    };
  }
}

function numberOr(value: FieldValue | undefined): number {
  return typeof value === 'number' && Number.isFinite(value) ? value : Number.NaN;
}

function assertNever(value: never): never {
  throw new Error(`unexpected domain ${String(value)}`);
}
