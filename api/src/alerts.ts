import { Compile } from 'typebox/compile';
import type { Logger } from 'pino';
import { AlertEvent, CodedError, PROVINCE_CODES, type AlertAck, type AlertView, type Domain } from '@citypulse/contracts';
import { alertAckLine, loadAlertAcks, loadAlertEvents } from '@citypulse/ingest/storage';
import type { Influx } from '@citypulse/infra';

/** Alert book limits (units in the names). */
export const ALERT_DEFAULTS = {
  /** How far back the api looks for alerts still active at start (ingest rebuilds its rules' state over the same span). */
  restoreMs: 30 * 86_400_000,
  /** Alert events remembered as cleared, so a restore that raced them cannot bring them back. */
  clearedMemory: 10_000,
} as const;

export interface AlertFilter {
  readonly provinces: readonly string[] | null;
  readonly province?: string | undefined;
  readonly domain?: Domain | undefined;
  readonly severity?: string | undefined;
  readonly device?: string | undefined;
}

const checkEvent = Compile(AlertEvent);

/**
 * The active alerts, in memory: rebuilt from InfluxDB at start, then kept from ingest's alert
 * events (ops/{province}/alerts, published only once stored) and the operators' acknowledgements
 * (written to InfluxDB before they count). What the dashboard's alert list and the province KPIs show.
 */
export class AlertBook {
  readonly #active = new Map<string, AlertView>();
  /** Ids cleared since start, newest last: a restore that read InfluxDB before the clear must not revive them. */
  readonly #cleared = new Set<string>();
  /** Acknowledgements being stored, by alert id: the operator (a second one at the same time is E_CONFLICT). */
  readonly #acknowledging = new Map<string, string>();
  /**
   * Acknowledgements another api node stored for alerts this one has not heard of yet (its MQTT
   * delivery of the raise can lag the peer's message), oldest first: applied when the raise comes.
   */
  readonly #earlyAcks = new Map<string, AlertAck>();
  readonly #influx: Influx;
  readonly #logger: Logger;
  rejected = 0;

  constructor(influx: Influx, logger: Logger) {
    this.#influx = influx;
    this.#logger = logger;
  }

  /** Active alerts matching the filter, newest first. */
  active(filter: AlertFilter): AlertView[] {
    const out: AlertView[] = [];
    for (const alert of this.#active.values()) if (matches(alert, filter)) out.push(alert);
    return out.sort((a, b) => b.raisedAt - a.raisedAt || (a.id < b.id ? -1 : 1));
  }

  get(id: string): AlertView | undefined {
    return this.#active.get(id);
  }

  /**
   * Applies one message of ops/{province}/alerts; returns the alert as it now stands (for the
   * sockets), or undefined for a payload that is not an AlertEvent (counted, logged once per kind).
   */
  handleMessage(payload: Buffer): AlertView | undefined {
    let event: unknown;
    try {
      event = JSON.parse(payload.toString('utf8'));
    } catch {
      event = undefined;
    }
    if (!checkEvent.Check(event)) {
      this.rejected++;
      this.#logger.warn({ bytes: payload.length }, 'api: an alert event that is not an AlertEvent was ignored');
      return undefined;
    }
    return this.apply(event);
  }

  /** Applies an alert event; undefined when it changes nothing (a raise of an alert already cleared: a redelivery). */
  apply(event: AlertEvent): AlertView | undefined {
    const previous = this.#active.get(event.id);
    const view: AlertView = { ...event, ack: previous?.ack ?? this.#earlyAcks.get(event.id) ?? null };
    this.#earlyAcks.delete(event.id);
    if (event.state === 'raised') {
      if (this.#cleared.has(event.id)) return undefined;
      this.#active.set(event.id, view);
    } else {
      this.#active.delete(event.id);
      this.#cleared.add(event.id);
      if (this.#cleared.size > ALERT_DEFAULTS.clearedMemory) this.#cleared.delete(this.#cleared.values().next().value as string);
    }
    return view;
  }

  /** Rebuilds the active alerts and their acknowledgements from InfluxDB. */
  async restore(now = Date.now()): Promise<number> {
    const since = Math.max(0, now - ALERT_DEFAULTS.restoreMs);
    const events = await loadAlertEvents(this.#influx, PROVINCE_CODES, since, { onSkip: this.#onSkip });
    const acks = await this.#storedAcks(now);
    const ackById = new Map<string, AlertAck>();
    for (const ack of acks) if (!ackById.has(ack.id)) ackById.set(ack.id, ack);
    const active = new Map<string, AlertEvent>();
    for (const event of events) {
      if (event.state === 'raised') active.set(event.id, event);
      else active.delete(event.id);
    }
    for (const event of active.values()) {
      if (this.#cleared.has(event.id)) continue;
      const current = this.#active.get(event.id);
      this.#active.set(event.id, { ...event, ack: current?.ack ?? this.#earlyAcks.get(event.id) ?? ackById.get(event.id) ?? null });
      this.#earlyAcks.delete(event.id);
    }
    return this.#active.size;
  }

  /**
   * An operator acknowledges an active alert: stored in InfluxDB first (E_UPSTREAM when it cannot
   * be), then kept. E_NOT_FOUND when the alert is not active, E_CONFLICT when already acknowledged.
   */
  async acknowledge(id: string, operator: string, note: string, now = Date.now()): Promise<{ alert: AlertView; ack: AlertAck }> {
    const alert = this.#active.get(id);
    if (!alert) throw new CodedError('E_NOT_FOUND', `no active alert "${id.slice(0, 200)}" (it may have cleared)`);
    if (alert.ack) throw new CodedError('E_CONFLICT', `alert already acknowledged by ${alert.ack.operator} at ${new Date(alert.ack.ts).toISOString()}`);
    const pending = this.#acknowledging.get(id);
    if (pending) throw new CodedError('E_CONFLICT', `alert is being acknowledged by ${pending} right now`);
    const ack: AlertAck = { id, province: alert.province, deviceId: alert.deviceId, operator, note, ts: now };
    this.#acknowledging.set(id, operator);
    try {
      await this.#influx.writeLines([alertAckLine(ack)]);
    } catch (err) {
      throw new CodedError('E_UPSTREAM', 'InfluxDB did not store the acknowledgement; try again shortly', { cause: err });
    } finally {
      this.#acknowledging.delete(id);
    }
    // Cleared (or acknowledged by someone else) while it was being stored: the store keeps the first.
    const current = this.#active.get(id);
    const updated: AlertView = { ...(current ?? alert), ack: current?.ack ?? ack };
    if (current) this.#active.set(id, updated);
    return { alert: updated, ack };
  }

  /**
   * An acknowledgement another api node stored (cluster mode): kept as if made here, not stored
   * again. Two nodes may each store one for the same alert at the same moment; every node keeps
   * the earliest, as a restore from InfluxDB would, so they agree. Returns the alert as it now
   * stands, or undefined when it is not active here (yet: see #earlyAcks).
   */
  applyAck(ack: AlertAck): AlertView | undefined {
    const alert = this.#active.get(ack.id);
    if (!alert) {
      if (this.#cleared.has(ack.id)) return undefined;
      const early = this.#earlyAcks.get(ack.id);
      if (!early || earlier(ack, early)) this.#earlyAcks.set(ack.id, ack);
      if (this.#earlyAcks.size > ALERT_DEFAULTS.clearedMemory) this.#earlyAcks.delete(this.#earlyAcks.keys().next().value as string);
      return undefined;
    }
    if (alert.ack && !earlier(ack, alert.ack)) return alert;
    const updated: AlertView = { ...alert, ack };
    this.#active.set(ack.id, updated);
    return updated;
  }

  /**
   * The acknowledgements other nodes stored while this one could not hear them (cluster mode, a
   * Redis outage): read back from InfluxDB, where every acknowledgement is stored before it is
   * told, and kept as applyAck does. Returns those that changed an active alert here.
   */
  async catchUpAcks(now = Date.now()): Promise<Array<{ ack: AlertAck; alert: AlertView }>> {
    const acks = await this.#storedAcks(now);
    const changed: Array<{ ack: AlertAck; alert: AlertView }> = [];
    for (const ack of acks) {
      const before = this.#active.get(ack.id)?.ack;
      const alert = this.applyAck(ack);
      if (alert && alert.ack === ack && before !== ack) changed.push({ ack, alert });
    }
    return changed;
  }

  /** The acknowledgements stored over the restore window (ALERT_DEFAULTS.restoreMs). */
  #storedAcks(now: number): Promise<AlertAck[]> {
    return loadAlertAcks(this.#influx, PROVINCE_CODES, Math.max(0, now - ALERT_DEFAULTS.restoreMs), { onSkip: this.#onSkip });
  }

  readonly #onSkip = (reason: string): void => this.#logger.warn({ reason }, 'api: a stored alert row was skipped');
}

/** Whether `a` was stored before `b` (ties by operator name, so every node picks the same one). */
function earlier(a: AlertAck, b: AlertAck): boolean {
  return a.ts < b.ts || (a.ts === b.ts && a.operator < b.operator);
}

function matches(alert: AlertEvent, filter: AlertFilter): boolean {
  return (
    (filter.provinces === null || filter.provinces.includes(alert.province)) &&
    (filter.province === undefined || alert.province === filter.province) &&
    (filter.domain === undefined || alert.domain === filter.domain) &&
    (filter.severity === undefined || alert.severity === filter.severity) &&
    (filter.device === undefined || alert.deviceId === filter.device)
  );
}
