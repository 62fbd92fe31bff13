import { LOS_LEVELS, type LevelOfService, type ProvinceSummary, type SummaryAlertCounts } from '@citypulse/contracts';
import type { DeviceEntry } from './store.js';

/**
 * The headline figures of the header strip, for the whole country or one province. Two sources
 * give the same shape: ingest's province summaries (live), and the devices' readings at the replay
 * clock (replay, where no summaries are published). Pure, unit-tested in Node.
 */

/** Headline figures; an optional one is absent when no reporting device has the value. */
export interface Kpis {
  /** Each device counts in exactly one of online, offline and stale. */
  readonly devices: { readonly total: number; readonly online: number; readonly offline: number; readonly stale: number };
  /** Mean of the reporting stations' indicative VN_AQI. */
  readonly vnAqiMean?: number;
  readonly vnAqiMax?: number;
  /** Share (0–1) of reporting traffic detectors at level of service E or F. */
  readonly congestedShare?: number;
  readonly worstLos?: LevelOfService;
  /** Apparent over rated power (0–1, may exceed 1 when overloaded). */
  readonly loadFactorMean?: number;
  readonly loadFactorMax?: number;
  /** Reporting energy meters outside the grid code's frequency or voltage band. */
  readonly outOfBand: number;
  /** Active alerts by severity. */
  readonly alerts: SummaryAlertCounts;
  /**
   * Summaries: the build time of the oldest summary used (every figure is at least this fresh).
   * Devices: the clock they were judged at. Null when there was nothing to judge.
   */
  readonly asOf: number | null;
}

/** Levels of service that count as congested. */
const CONGESTED_LOS: ReadonlySet<string> = new Set<LevelOfService>(['E', 'F']);

/** A running weighted mean and max. */
class Stat {
  private sum = 0;
  private weight = 0;
  private top: number | undefined;

  add(value: number, weight = 1): void {
    if (!Number.isFinite(value) || !(weight > 0)) return;
    this.sum += value * weight;
    this.weight += weight;
  }

  max(value: number): void {
    if (Number.isFinite(value) && (this.top === undefined || value > this.top)) this.top = value;
  }

  get mean(): number | undefined {
    return this.weight > 0 ? this.sum / this.weight : undefined;
  }

  get maximum(): number | undefined {
    return this.top;
  }
}

function worseLos(a: LevelOfService | undefined, b: string | undefined): LevelOfService | undefined {
  const rank = b === undefined ? -1 : LOS_LEVELS.indexOf(b as LevelOfService);
  if (rank < 0) return a;
  return a === undefined || rank > LOS_LEVELS.indexOf(a) ? LOS_LEVELS[rank] : a;
}

type Figures = { -readonly [K in keyof Kpis]: Kpis[K] };

/** Sets only the figures that exist: an absent one stays absent, not `undefined`. */
function assemble(base: Pick<Kpis, 'devices' | 'outOfBand' | 'alerts' | 'asOf'>, aqi: Stat, congestedShare: number | undefined, worstLos: LevelOfService | undefined, load: Stat): Kpis {
  const out: Figures = { ...base };
  if (aqi.mean !== undefined) out.vnAqiMean = aqi.mean;
  if (aqi.maximum !== undefined) out.vnAqiMax = aqi.maximum;
  if (congestedShare !== undefined) out.congestedShare = congestedShare;
  if (worstLos !== undefined) out.worstLos = worstLos;
  if (load.mean !== undefined) out.loadFactorMean = load.mean;
  if (load.maximum !== undefined) out.loadFactorMax = load.maximum;
  return out;
}

/**
 * Country (or a set of provinces) from ingest's province summaries. Means are weighted by the
 * number of reporting devices of their domain in each province, maxima are the max of maxima,
 * counts are summed.
 * @param provinces only these province codes; every summary given when absent.
 */
export function kpisFromSummaries(summaries: Iterable<ProvinceSummary>, provinces?: readonly string[]): Kpis {
  const only = provinces ? new Set(provinces) : null;
  const devices = { total: 0, online: 0, offline: 0, stale: 0 };
  const alerts = { info: 0, warning: 0, critical: 0 };
  const aqi = new Stat();
  const congested = new Stat();
  const load = new Stat();
  let worstLos: LevelOfService | undefined;
  let outOfBand = 0;
  let asOf: number | null = null;
  for (const s of summaries) {
    if (only && !only.has(s.province)) continue;
    devices.total += s.devices.total;
    devices.online += s.devices.online;
    devices.offline += s.devices.offline;
    devices.stale += s.devices.stale;
    alerts.info += s.alerts.info;
    alerts.warning += s.alerts.warning;
    alerts.critical += s.alerts.critical;
    const { environment: env, traffic, energy } = s;
    if (env.vnAqiMean !== undefined) aqi.add(env.vnAqiMean, env.reporting);
    if (env.vnAqiMax !== undefined) aqi.max(env.vnAqiMax);
    if (traffic.congestedShare !== undefined) congested.add(traffic.congestedShare, traffic.reporting);
    worstLos = worseLos(worstLos, traffic.worstLos);
    if (energy.loadFactorMean !== undefined) load.add(energy.loadFactorMean, energy.reporting);
    if (energy.loadFactorMax !== undefined) load.max(energy.loadFactorMax);
    outOfBand += energy.outOfBand;
    asOf = asOf === null ? s.ts : Math.min(asOf, s.ts);
  }
  return assemble({ devices, outOfBand, alerts, asOf }, aqi, congested.mean, worstLos, load);
}

export interface DeviceKpiOptions {
  /** Only this province's devices; all when absent. */
  readonly province?: string;
  /** The time the devices are judged at (the replay clock, or the server's now), epoch ms. */
  readonly clock: number;
  /** A device is online when its reading is at most this old at `clock`. */
  readonly liveWindowMs: number;
  /** Active alert counts to show (the device readings do not carry them); zeros when absent. */
  readonly alerts?: SummaryAlertCounts;
  /**
   * 'live' (default): a device whose last word was an offline status counts offline, and readings
   * a little ahead of the clock (device clocks) are fine. 'replay': status events are not
   * replayed, so only the reading's age at the clock decides, and a reading after it is not known yet.
   */
  readonly mode?: 'live' | 'replay';
}

/**
 * The same figures computed from the devices' latest readings at a clock (replay, or a live
 * fallback before the first summary). Only reporting devices' readings count, as in the summaries.
 */
export function kpisFromDevices(entries: Iterable<DeviceEntry>, options: DeviceKpiOptions): Kpis {
  const { province, clock, liveWindowMs, mode = 'live' } = options;
  const cutoff = clock - liveWindowMs;
  const devices = { total: 0, online: 0, offline: 0, stale: 0 };
  const aqi = new Stat();
  const load = new Stat();
  let losCount = 0;
  let congestedCount = 0;
  let worstLos: LevelOfService | undefined;
  let outOfBand = 0;
  for (const entry of entries) {
    if (province !== undefined && entry.province !== province) continue;
    devices.total++;
    const reading = entry.reading;
    if (mode === 'live' && entry.status === 'offline') {
      devices.offline++;
      continue;
    }
    // A replay seeking back can leave readings from after its clock: not known at that time.
    if (reading === null || reading.ts < cutoff || (mode === 'replay' && reading.ts > clock)) {
      devices.stale++;
      continue;
    }
    devices.online++;
    const { vnAqi, los, loadFactor } = reading.derived;
    if (typeof vnAqi === 'number') {
      aqi.add(vnAqi);
      aqi.max(vnAqi);
    }
    if (typeof los === 'string' && (LOS_LEVELS as readonly string[]).includes(los)) {
      losCount++;
      if (CONGESTED_LOS.has(los)) congestedCount++;
      worstLos = worseLos(worstLos, los);
    }
    if (typeof loadFactor === 'number') {
      load.add(loadFactor);
      load.max(loadFactor);
    }
    if (reading.derived.outOfBand === true) outOfBand++;
  }
  const alerts = options.alerts ? { ...options.alerts } : { info: 0, warning: 0, critical: 0 };
  return assemble({ devices, outOfBand, alerts, asOf: clock }, aqi, losCount > 0 ? congestedCount / losCount : undefined, worstLos, load);
}
