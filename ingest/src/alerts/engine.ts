import { alertId, DERIVED_FIELDS, type AlertEvent, type Derived, type Domain, type FieldValue, type Fields } from '@citypulse/contracts';
import type { AlertRule, AlertRules } from './rules.js';

/**
 * The alert rules engine: pure state, no I/O. ingest feeds it every reading (each province is
 * owned by one ingest worker, so one engine sees all of a device's readings) and a clock tick for
 * no-data; it answers with the events to publish and store. Threshold, category and frozen rules
 * are evaluated in device time (the reading's `ts`); no-data in the arrival time the caller passes.
 *
 * Hot path: one Map lookup per reading, a loop over the rules that select the device (indexed by
 * domain, province and kind once per device), and no allocation unless an alert is raised or
 * cleared. Per device it keeps a few numbers and, per rule that ever held, one small slot.
 */

/** What the engine needs to know about a device; ingest has it from the topic and the registry. */
export interface AlertDevice {
  readonly deviceId: string;
  readonly province: string;
  readonly domain: Domain;
  /** Registry kind (road class, station type, feeder level); rules may select by it. */
  readonly kind?: string | undefined;
  /** The device's reporting interval when the registry knows it; otherwise learnt from its readings. */
  readonly expectedIntervalMs?: number | undefined;
}

/** Returned when a call changes nothing: callers must not mutate it. */
const NO_EVENTS: readonly AlertEvent[] = Object.freeze([]);

/** Upward drift per reading of a learnt interval (see DeviceState.learnedIntervalMs). */
const INTERVAL_GROWTH = 1.0625;

interface FieldText {
  readonly label: string;
  readonly unit: string;
  /** Stored as a fraction (0.05), read as a percentage (5 %). */
  readonly percent: boolean;
}

const text = (label: string, unit = '', percent = false): FieldText => ({ label, unit, percent });

/** How operators read each field in messages. Fields not listed are shown by their name. */
const FIELD_TEXT: Readonly<Record<string, FieldText>> = {
  pm25: text('PM2.5', 'µg/m³'),
  pm10: text('PM10', 'µg/m³'),
  no2: text('NO2', 'µg/m³'),
  o3: text('O3', 'µg/m³'),
  co: text('CO', 'µg/m³'),
  so2: text('SO2', 'µg/m³'),
  temperature: text('temperature', '°C'),
  relativeHumidity: text('relative humidity', '', true),
  LAeq: text('noise level', 'dB(A)'),
  vnAqi: text('VN_AQI'),
  vnAqiDominant: text('dominant pollutant'),
  intensity: text('vehicle count'),
  occupancy: text('occupancy', '', true),
  averageVehicleSpeed: text('average speed', 'km/h'),
  averageVehicleLength: text('average vehicle length', 'm'),
  averageHeadwayTime: text('average headway', 's'),
  flowVehPerHour: text('flow', 'veh/h'),
  densityPcPerMiLn: text('density', 'pc/mi/ln'),
  los: text('level of service'),
  congested: text('congested'),
  frequency: text('frequency', 'Hz'),
  frequencyBand: text('frequency band'),
  outOfBand: text("outside the grid code's normal band"),
  totalActivePower: text('active power', 'W'),
  totalReactivePower: text('reactive power', 'VAr'),
  totalApparentPower: text('apparent power', 'VA'),
  apparentPowerVA: text('apparent power', 'VA'),
  powerFactor: text('power factor'),
  thdVoltage: text('voltage THD', '', true),
  thdCurrent: text('current THD', '', true),
  loadFactor: text('load factor', '', true),
  voltageDeviation: text('voltage deviation', '', true),
  ...Object.fromEntries(['L1', 'L2', 'L3'].flatMap((p) => [[`phaseVoltage_${p}`, text(`phase voltage ${p}`, 'V')], [`current_${p}`, text(`current ${p}`, 'A')]])),
};

const DERIVED_NAMES: ReadonlySet<string> = new Set(DERIVED_FIELDS);

/** A rule prepared for the hot path. */
interface CompiledRule {
  readonly rule: AlertRule;
  readonly field: string;
  readonly fromDerived: boolean;
  readonly text: FieldText;
  /** Threshold: raised above `above` or below `below` (±Infinity when not set) … */
  readonly above: number;
  readonly below: number;
  /** … cleared while clearMin ≤ value ≤ clearMax (the limits moved inwards by the hysteresis). */
  readonly clearMax: number;
  readonly clearMin: number;
}

/** The state of one (rule, device) pair; created the first time the rule's condition holds. */
class Slot {
  /** Threshold/category: when the raise condition started holding. Frozen: when the value last changed. */
  since = Number.NaN;
  /** When the clear condition started holding while active. */
  clearSince = Number.NaN;
  /** Frozen: consecutive readings with the value `ref`. */
  count = 0;
  ref: FieldValue | undefined = undefined;
  active: AlertEvent | undefined = undefined;
}

class DeviceState {
  /** Undefined while only restored alerts are known, before the device's kind is. */
  kind: string | undefined = undefined;
  rules: readonly CompiledRule[] = [];
  slots: (Slot | undefined)[] = [];
  hasNoDataRule = false;
  activeNoData = 0;
  /** Device time of the last evaluated reading. */
  lastTs = -Infinity;
  /** Arrival time of the last reading, or when watch() started watching. -Infinity: not watched. */
  lastSeenAt = -Infinity;
  /**
   * Reporting interval seen in device time: the smallest recent gap, drifting up 6 % per reading
   * so a device that slows down is followed, while one outage gap moves it little.
   */
  learnedIntervalMs = Number.NaN;
  expectedIntervalMs: number | undefined = undefined;
  /** Restored active alerts waiting for the device's kind (see restore()). */
  restored: AlertEvent[] | undefined = undefined;

  constructor(
    readonly deviceId: string,
    public province: string,
    public domain: Domain,
  ) {}
}

export class AlertEngine {
  readonly #byDomain: Readonly<Record<Domain, readonly CompiledRule[]>>;
  readonly #byId: ReadonlyMap<string, CompiledRule>;
  /** Rules that select a (domain, province, kind): computed once per combination, shared by devices. */
  readonly #selections = new Map<string, readonly CompiledRule[]>();
  readonly #devices = new Map<string, DeviceState>();

  constructor(rules: AlertRules) {
    const compiled = rules.rules.map(compile);
    this.#byId = new Map(compiled.map((c) => [c.rule.id, c]));
    this.#byDomain = {
      traffic: compiled.filter((c) => c.rule.domain === 'traffic'),
      environment: compiled.filter((c) => c.rule.domain === 'environment'),
      energy: compiled.filter((c) => c.rule.domain === 'energy'),
    };
  }

  /** Devices the engine keeps state for. */
  get size(): number {
    return this.#devices.size;
  }

  /**
   * Evaluates one reading (`values` flattened as stored, `derived` from enrichReading) at device
   * time `ts`; `receivedAt` (default `ts`) is when it arrived, the clock no-data uses. Returns the
   * events it raised or cleared. Readings not newer than the device's last one (redeliveries,
   * stragglers) only count as a sign of life.
   */
  onReading(device: AlertDevice, ts: number, values: Fields, derived: Derived, receivedAt: number = ts): readonly AlertEvent[] {
    let state = this.#devices.get(device.deviceId);
    let out: AlertEvent[] | undefined;
    if (state === undefined || state.kind !== (device.kind ?? '') || state.province !== device.province || state.domain !== device.domain) {
      const admitted = this.#admit(device, ts);
      state = admitted.state;
      out = admitted.events;
    }
    state.expectedIntervalMs = device.expectedIntervalMs;
    const silentSince = state.lastSeenAt;
    if (receivedAt > state.lastSeenAt) state.lastSeenAt = receivedAt;
    if (state.activeNoData > 0) out = this.#clearNoData(state, receivedAt, silentSince, out);
    if (!(ts > state.lastTs)) return out ?? NO_EVENTS;
    if (state.lastTs !== -Infinity) learnInterval(state, ts - state.lastTs);
    state.lastTs = ts;

    const { rules, slots } = state;
    const derivedFields = derived as Readonly<Record<string, FieldValue | undefined>>;
    for (let i = 0; i < rules.length; i++) {
      const c = rules[i] as CompiledRule;
      const rule = c.rule;
      if (rule.kind === 'no-data') continue;
      const value = c.fromDerived ? derivedFields[c.field] : values[c.field];
      if (value === undefined) continue; // not measured this time: neither holds nor breaks a condition
      let event: AlertEvent | undefined;
      switch (rule.kind) {
        case 'threshold': {
          if (typeof value !== 'number' || !Number.isFinite(value)) continue;
          const raising = value > c.above || value < c.below;
          const slot = slots[i] ?? (raising ? (slots[i] = new Slot()) : undefined);
          if (slot) event = this.#step(c, state, slot, ts, value, raising, value <= c.clearMax && value >= c.clearMin, rule.forMs, rule.clearForMs);
          break;
        }
        case 'category': {
          const raising = rule.in.includes(value as string | boolean);
          const slot = slots[i] ?? (raising ? (slots[i] = new Slot()) : undefined);
          if (slot) event = this.#step(c, state, slot, ts, value, raising, !raising, rule.forMs, rule.clearForMs);
          break;
        }
        case 'frozen':
          event = this.#frozen(c, rule.readings, rule.forMs, rule.tolerance, state, (slots[i] ??= new Slot()), ts, value);
          break;
        default:
          assertNever(rule);
      }
      if (event) (out ??= []).push(event);
    }
    return out ?? NO_EVENTS;
  }

  /**
   * No-data: raises for every watched device silent for longer than its rule's `intervals` times
   * its expected interval (the registry's, else the larger of the rule's `interval` and the one
   * learnt from its readings). A device is watched once seen, or once declared with watch().
   */
  tick(now: number): readonly AlertEvent[] {
    let out: AlertEvent[] | undefined;
    for (const state of this.#devices.values()) {
      if (!state.hasNoDataRule || state.lastSeenAt === -Infinity) continue;
      const silentMs = now - state.lastSeenAt;
      for (let i = 0; i < state.rules.length; i++) {
        const c = state.rules[i] as CompiledRule;
        const rule = c.rule;
        if (rule.kind !== 'no-data' || state.slots[i]?.active) continue;
        const expectedMs = state.expectedIntervalMs ?? (state.learnedIntervalMs > rule.intervalMs ? state.learnedIntervalMs : rule.intervalMs);
        if (silentMs <= rule.intervals * expectedMs) continue;
        const slot = (state.slots[i] ??= new Slot());
        slot.active = raised(c, state, now, undefined, undefined, `no data for ${formatDuration(silentMs)} (expected every ${formatDuration(expectedMs)})`);
        state.activeNoData++;
        (out ??= []).push(slot.active);
      }
    }
    return out ?? NO_EVENTS;
  }

  /**
   * Declares a device (from the registry at start) so no-data watches it from `now` even if it
   * never sends. Returns events only when restored alerts of it no longer apply (see restore()).
   */
  watch(device: AlertDevice, now: number): readonly AlertEvent[] {
    let state = this.#devices.get(device.deviceId);
    let out: AlertEvent[] | undefined;
    if (state === undefined || state.kind !== (device.kind ?? '') || state.province !== device.province || state.domain !== device.domain) {
      const admitted = this.#admit(device, now);
      state = admitted.state;
      out = admitted.events;
    }
    state.expectedIntervalMs = device.expectedIntervalMs;
    if (state.lastSeenAt === -Infinity) state.lastSeenAt = now;
    return out ?? NO_EVENTS;
  }

  /**
   * Rebuilds the active alerts from stored events at start (any order; for each rule and device
   * the latest event counts), so a restart neither raises an active alert again nor forgets to
   * clear it. Returns `cleared` events, at `now`, for active alerts whose rule is gone or no longer
   * selects the device's domain or province; publish them like any other event. Alerts of a device
   * are checked against the rules' device kinds when the device is next seen or watched.
   */
  restore(events: Iterable<AlertEvent>, now: number): readonly AlertEvent[] {
    const latest = new Map<string, AlertEvent>();
    const ordered = [...events].sort((a, b) => a.ts - b.ts || (a.state === b.state ? 0 : a.state === 'raised' ? -1 : 1));
    for (const event of ordered) latest.set(`${event.ruleId}|${event.deviceId}`, event);
    let out: AlertEvent[] | undefined;
    for (const event of latest.values()) {
      if (event.state !== 'raised') continue;
      const c = this.#byId.get(event.ruleId);
      if (!c || c.rule.domain !== event.domain || (c.rule.provinces && !c.rule.provinces.includes(event.province))) {
        (out ??= []).push(cleared(event, now, undefined, `cleared: rule ${event.ruleId} was removed or no longer applies to this device`));
        continue;
      }
      let state = this.#devices.get(event.deviceId);
      if (!state) this.#devices.set(event.deviceId, (state = new DeviceState(event.deviceId, event.province, event.domain)));
      if (state.kind === undefined) (state.restored ??= []).push(event);
      else {
        const stale = this.#adopt(state, event, now);
        if (stale) (out ??= []).push(stale);
      }
    }
    return out ?? NO_EVENTS;
  }

  /**
   * Takes over what `previous` (the engine of the rules before a change) learnt of each device's
   * timing: its last reading, when it was last seen, its reporting interval. Without it a device
   * slower than a no-data rule's default interval would look silent until it had reported twice.
   */
  inheritTiming(previous: AlertEngine): void {
    for (const [id, state] of this.#devices) {
      const before = previous.#devices.get(id);
      if (!before) continue;
      state.lastTs = before.lastTs;
      state.lastSeenAt = before.lastSeenAt;
      state.learnedIntervalMs = before.learnedIntervalMs;
      state.expectedIntervalMs ??= before.expectedIntervalMs;
    }
  }

  /** Every active alert: its raised event. */
  active(): AlertEvent[] {
    const out: AlertEvent[] = [];
    for (const state of this.#devices.values()) {
      for (const slot of state.slots) if (slot?.active) out.push(slot.active);
      if (state.restored) out.push(...state.restored);
    }
    return out;
  }

  /** Drops a removed device; returns `cleared` events (at `now`) for its active alerts. */
  forget(deviceId: string, now: number): readonly AlertEvent[] {
    const state = this.#devices.get(deviceId);
    if (!state) return NO_EVENTS;
    this.#devices.delete(deviceId);
    const out = activeOf(state).map((event) => cleared(event, now, undefined, 'cleared: device removed from the registry'));
    return out.length > 0 ? out : NO_EVENTS;
  }

  /**
   * Threshold and category: raise once `raising` has held for `forMs`, clear once `clearing` has
   * held for `clearForMs`. Between the two (inside the hysteresis) nothing changes: no flapping.
   */
  #step(c: CompiledRule, state: DeviceState, slot: Slot, ts: number, value: FieldValue, raising: boolean, clearing: boolean, forMs: number, clearForMs: number): AlertEvent | undefined {
    if (slot.active === undefined) {
      if (!raising) {
        slot.since = Number.NaN;
        return undefined;
      }
      if (Number.isNaN(slot.since)) slot.since = ts;
      if (ts - slot.since < forMs) return undefined;
      slot.since = Number.NaN;
      const threshold = typeof value === 'number' ? (value > c.above ? c.above : c.below) : undefined;
      slot.active = raised(c, state, ts, value, threshold, raiseMessage(c, value));
      return slot.active;
    }
    if (!clearing) {
      slot.clearSince = Number.NaN;
      return undefined;
    }
    if (Number.isNaN(slot.clearSince)) slot.clearSince = ts;
    if (ts - slot.clearSince < clearForMs) return undefined;
    slot.clearSince = Number.NaN;
    const event = cleared(slot.active, ts, value, clearMessage(c, value));
    slot.active = undefined;
    return event;
  }

  /** Frozen: the same value (within `tolerance`) for `readings` readings and `forMs`; any change clears. */
  #frozen(c: CompiledRule, readings: number, forMs: number, tolerance: number, state: DeviceState, slot: Slot, ts: number, value: FieldValue): AlertEvent | undefined {
    const ref = slot.ref;
    const same = slot.count > 0 && (typeof value === 'number' && typeof ref === 'number' ? Math.abs(value - ref) <= tolerance : value === ref);
    if (same) {
      slot.count++;
      if (slot.active || slot.count < readings || ts - slot.since < forMs) return undefined;
      const message = `${c.text.label} unchanged at ${withUnit(ref as FieldValue, c.text)} for ${slot.count} readings over ${formatDuration(ts - slot.since)}`;
      slot.active = raised(c, state, ts, ref, undefined, message);
      return slot.active;
    }
    slot.ref = value;
    slot.count = 1;
    slot.since = ts;
    if (!slot.active) return undefined;
    const event = cleared(slot.active, ts, value, `${c.text.label} changing again (${formatValue(value, c.text)})`);
    slot.active = undefined;
    return event;
  }

  #clearNoData(state: DeviceState, at: number, silentSince: number, out: AlertEvent[] | undefined): AlertEvent[] | undefined {
    for (const slot of state.slots) {
      if (slot?.active?.kind !== 'no-data') continue;
      const ts = Math.max(at, slot.active.raisedAt);
      const silence = silentSince === -Infinity ? '' : ` after ${formatDuration(at - silentSince)} without readings`;
      (out ??= []).push(cleared(slot.active, ts, undefined, `data again${silence}`));
      slot.active = undefined;
    }
    state.activeNoData = 0;
    return out;
  }

  /**
   * First sight of a device, or its province, domain or kind changed (re-registered): selects its
   * rules. A changed device starts over (its active alerts are cleared); restored alerts move into
   * their rules' slots, or are cleared when their rule does not select the device.
   */
  #admit(device: AlertDevice, at: number): { state: DeviceState; events: AlertEvent[] | undefined } {
    const kind = device.kind ?? '';
    const previous = this.#devices.get(device.deviceId);
    let events: AlertEvent[] | undefined;
    let state: DeviceState;
    if (previous?.kind === undefined) {
      state = previous ?? new DeviceState(device.deviceId, device.province, device.domain);
    } else {
      for (const event of activeOf(previous)) (events ??= []).push(cleared(event, at, undefined, "cleared: the device's province or kind changed"));
      state = new DeviceState(device.deviceId, device.province, device.domain);
      state.lastSeenAt = previous.lastSeenAt;
    }
    state.province = device.province;
    state.domain = device.domain;
    state.kind = kind;
    state.rules = this.#select(device.domain, device.province, kind);
    state.slots = state.rules.map(() => undefined);
    state.hasNoDataRule = state.rules.some((c) => c.rule.kind === 'no-data');
    state.activeNoData = 0;
    const restored = state.restored;
    state.restored = undefined;
    for (const event of restored ?? []) {
      const stale = this.#adopt(state, event, at);
      if (stale) (events ??= []).push(stale);
    }
    this.#devices.set(device.deviceId, state);
    return { state, events };
  }

  /** Puts a restored alert into its slot; returns a `cleared` event when its rule does not select the device. */
  #adopt(state: DeviceState, event: AlertEvent, at: number): AlertEvent | undefined {
    const index = state.rules.findIndex((c) => c.rule.id === event.ruleId);
    if (index < 0) return cleared(event, at, undefined, `cleared: rule ${event.ruleId} no longer applies to this device`);
    const slot = (state.slots[index] ??= new Slot());
    if (slot.active) return undefined; // already raised again since the restart: keep that one
    slot.active = event;
    if (event.kind === 'no-data') state.activeNoData++;
    if (event.kind === 'frozen') {
      // A first reading with another value clears it; the same value keeps it active.
      slot.ref = event.value;
      slot.count = event.value === undefined ? 0 : 1;
      slot.since = event.raisedAt;
    }
    return undefined;
  }

  #select(domain: Domain, province: string, kind: string): readonly CompiledRule[] {
    const key = `${domain}\u0000${province}\u0000${kind}`;
    let rules = this.#selections.get(key);
    if (!rules) {
      rules = this.#byDomain[domain].filter((c) => (!c.rule.provinces || c.rule.provinces.includes(province)) && (!c.rule.deviceKinds || c.rule.deviceKinds.includes(kind)));
      this.#selections.set(key, rules);
    }
    return rules;
  }
}

function compile(rule: AlertRule): CompiledRule {
  const field = rule.kind === 'no-data' ? '' : rule.field;
  const above = rule.kind === 'threshold' && rule.above !== undefined ? rule.above : Infinity;
  const below = rule.kind === 'threshold' && rule.below !== undefined ? rule.below : -Infinity;
  const hysteresis = rule.kind === 'threshold' ? rule.hysteresis : 0;
  return {
    rule,
    field,
    fromDerived: DERIVED_NAMES.has(field),
    text: FIELD_TEXT[field] ?? text(field),
    above,
    below,
    // Rounded so that e.g. 0.3 − 0.1 clears at 0.2, not at 0.19999999999999998.
    clearMax: trim(above - hysteresis),
    clearMin: trim(below + hysteresis),
  };
}

function learnInterval(state: DeviceState, gapMs: number): void {
  const learnt = state.learnedIntervalMs;
  state.learnedIntervalMs = Number.isNaN(learnt) || gapMs < learnt ? gapMs : Math.min(gapMs, learnt * INTERVAL_GROWTH);
}

function raised(c: CompiledRule, state: DeviceState, ts: number, value: FieldValue | undefined, threshold: number | undefined, message: string): AlertEvent {
  const rule = c.rule;
  const event: AlertEvent = {
    id: alertId(rule.id, state.deviceId, ts),
    ruleId: rule.id,
    kind: rule.kind,
    state: 'raised',
    severity: rule.severity,
    deviceId: state.deviceId,
    province: state.province,
    domain: state.domain,
    message,
    raisedAt: ts,
    ts,
  };
  // Optional keys are left out rather than set to undefined: the event is JSON and schema-checked.
  if (c.field !== '') event.field = c.field;
  if (value !== undefined) event.value = value;
  if (threshold !== undefined && Number.isFinite(threshold)) event.threshold = threshold;
  return event;
}

function cleared(active: AlertEvent, ts: number, value: FieldValue | undefined, message: string): AlertEvent {
  const event: AlertEvent = { ...active, state: 'cleared', ts, message };
  if (value !== undefined) event.value = value;
  return event;
}

function activeOf(state: DeviceState): AlertEvent[] {
  const out: AlertEvent[] = [];
  for (const slot of state.slots) if (slot?.active) out.push(slot.active);
  if (state.restored) out.push(...state.restored);
  return out;
}

/* ---- Messages: plain English an operator reads ---- */

function raiseMessage(c: CompiledRule, value: FieldValue): string {
  const rule = c.rule;
  const { label } = c.text;
  if (rule.kind === 'category') {
    const condition = isBooleanList(rule.in) ? (rule.in[0] ? label : `not ${label}`) : `${label} ${orList(rule.in.map(String))}`;
    return `${condition}${forText(rule.forMs)}${isBooleanList(rule.in) ? '' : ` (${String(value)})`}`;
  }
  if (rule.kind !== 'threshold') return label;
  const limit = rule.above !== undefined && rule.below !== undefined ? `outside ${bare(rule.below, c.text)}–${withUnit(rule.above, c.text)}` : rule.above !== undefined ? `above ${withUnit(rule.above, c.text)}` : `below ${withUnit(rule.below ?? 0, c.text)}`;
  return `${label} ${limit}${forText(rule.forMs)} (${formatValue(value, c.text)})`;
}

function clearMessage(c: CompiledRule, value: FieldValue): string {
  const rule = c.rule;
  const { label } = c.text;
  if (rule.kind === 'category') {
    if (isBooleanList(rule.in)) return rule.in[0] ? `no longer ${label}` : `${label} again`;
    return `${label} back to ${String(value)}${forText(rule.clearForMs)}`;
  }
  if (rule.kind !== 'threshold') return label;
  const limit = rule.above !== undefined && rule.below !== undefined ? `within ${bare(c.clearMin, c.text)}–${withUnit(c.clearMax, c.text)}` : rule.above !== undefined ? `at or below ${withUnit(c.clearMax, c.text)}` : `at or above ${withUnit(c.clearMin, c.text)}`;
  return `${label} back ${limit}${forText(rule.clearForMs)} (${formatValue(value, c.text)})`;
}

function isBooleanList(values: readonly (string | boolean)[]): values is readonly boolean[] {
  return values.length === 1 && typeof values[0] === 'boolean';
}

function orList(items: readonly string[]): string {
  return items.length <= 1 ? (items[0] ?? '') : `${items.slice(0, -1).join(', ')} or ${items[items.length - 1]}`;
}

function forText(ms: number): string {
  return ms > 0 ? ` for ${formatDuration(ms)}` : '';
}

/** 62.1 → "62.1"; a fraction field 0.062 → "6.2 %". */
function formatValue(value: FieldValue, t: FieldText): string {
  return typeof value === 'number' ? (t.percent ? `${formatNumber(value * 100)} %` : formatNumber(value)) : String(value);
}

/** 55.4 → "55.4 µg/m³"; 0.05 → "5 %". */
function withUnit(value: FieldValue, t: FieldText): string {
  if (typeof value !== 'number' || t.percent || t.unit === '') return formatValue(value, t);
  return `${formatNumber(value)} ${t.unit}`;
}

/** The lower end of a range, its unit written once after the upper end. */
function bare(value: number, t: FieldText): string {
  return formatNumber(t.percent ? value * 100 : value);
}

function formatNumber(value: number): string {
  return Number.isInteger(value) ? String(value) : String(Number(value.toPrecision(4)));
}

/** 600000 → "10 min"; 150000 → "2 min 30 s"; 500 → "500 ms". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  let seconds = Math.round(ms / 1000);
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86_400], ['h', 3600], ['min', 60], ['s', 1]] as const) {
    if (seconds >= size) {
      parts.push(`${Math.floor(seconds / size)} ${unit}`);
      seconds %= size;
    }
  }
  return parts.slice(0, 2).join(' ');
}

function trim(value: number): number {
  return Number.isFinite(value) ? Number(value.toPrecision(12)) : value;
}

function assertNever(value: never): never {
  throw new Error(`unexpected rule ${JSON.stringify(value)}`);
}
