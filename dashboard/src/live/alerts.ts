import { type AlertAck, type AlertSeverity, type AlertView, type AlertsSnapshot, type SummaryAlertCounts } from '@citypulse/contracts';

/**
 * The dashboard's book of active alerts: the `alerts` snapshot of each subscribe, then `alert`
 * (raised/cleared) and `alertAck` events. Pure state (no DOM), unit-tested in Node. Stored alerts
 * are never mutated, only replaced, so a view can tell a changed alert by identity; `version`
 * tells it that anything changed at all.
 */

/** Severity rank, higher is worse. */
const RANK: Readonly<Record<AlertSeverity, number>> = { info: 0, warning: 1, critical: 2 };

/** Filter for `list()`. */
export interface AlertFilter {
  /** Only this province (code); all when absent. */
  readonly province?: string;
}

export function emptyAlertCounts(): SummaryAlertCounts {
  return { info: 0, warning: 0, critical: 0 };
}

/** Newest first; at the same time the more severe first; then by id so the order is stable. */
export function compareAlerts(a: AlertView, b: AlertView): number {
  return b.raisedAt - a.raisedAt || RANK[b.severity] - RANK[a.severity] || (a.id < b.id ? -1 : a.id > b.id ? 1 : 0);
}

/** The worse of two severities. */
export function worseSeverity(a: AlertSeverity, b: AlertSeverity): AlertSeverity {
  return RANK[b] > RANK[a] ? b : a;
}

export class ActiveAlerts {
  private readonly byId = new Map<string, AlertView>();
  private changes = 0;
  /** list() and worstByDevice() results for the current version (rendered often, changed less). */
  private sorted: AlertView[] | null = null;
  private worst: Map<string, AlertSeverity> | null = null;

  /** Increments on every change; compare it to the one last drawn to know whether to redraw. */
  get version(): number {
    return this.changes;
  }

  get size(): number {
    return this.byId.size;
  }

  get(id: string): AlertView | undefined {
    return this.byId.get(id);
  }

  /**
   * Replaces the alerts of exactly the provinces × domains the snapshot covers (a subscribe's
   * rooms) and keeps the others, which other rooms' snapshots own.
   */
  applySnapshot(snapshot: AlertsSnapshot): void {
    const provinces = new Set(snapshot.provinces);
    const domains = new Set<string>(snapshot.domains);
    const previous = new Map<string, AlertView>();
    for (const [id, alert] of this.byId) {
      if (provinces.has(alert.province) && domains.has(alert.domain)) {
        previous.set(id, alert);
        this.byId.delete(id);
      }
    }
    let changed = false;
    for (const alert of snapshot.alerts) {
      if (alert.state !== 'raised') continue;
      const held = previous.get(alert.id);
      const next = withKeptAck(alert, held);
      // An unchanged alert keeps its object, so views do not redraw it.
      if (held !== undefined && sameAlert(held, next)) this.byId.set(alert.id, held);
      else {
        this.byId.set(alert.id, next);
        changed = true;
      }
      previous.delete(alert.id);
    }
    // Whatever is left in `previous` was dropped by the snapshot.
    if (changed || previous.size > 0) this.touch();
  }

  /** A raised alert is added (or replaces its earlier copy); a cleared one is removed. */
  apply(alert: AlertView): boolean {
    const held = this.byId.get(alert.id);
    if (alert.state === 'cleared') {
      if (!held) return false;
      this.byId.delete(alert.id);
      this.touch();
      return true;
    }
    const next = withKeptAck(alert, held);
    if (held && sameAlert(held, next)) return false;
    this.byId.set(alert.id, next);
    this.touch();
    return true;
  }

  /**
   * Records an acknowledgement on its alert. The first one is kept (as the api does), so the
   * answer to our own POST and the broadcast `alertAck` that follows it change the book once.
   */
  applyAck(ack: AlertAck): boolean {
    const held = this.byId.get(ack.id);
    if (!held || held.ack) return false;
    this.byId.set(ack.id, { ...held, ack });
    this.touch();
    return true;
  }

  /** Forgets every alert (sign-out, or before a full resubscribe). */
  clear(): void {
    if (this.byId.size === 0) return;
    this.byId.clear();
    this.touch();
  }

  /** Active alerts, newest first (then most severe first). A fresh array: the caller may keep it. */
  list(filter: AlertFilter = {}): AlertView[] {
    this.sorted ??= [...this.byId.values()].sort(compareAlerts);
    const { province } = filter;
    return province === undefined ? [...this.sorted] : this.sorted.filter((a) => a.province === province);
  }

  /** deviceId → severity of its worst active alert (for the map's alert rings). */
  worstByDevice(): Map<string, AlertSeverity> {
    if (!this.worst) {
      this.worst = new Map();
      for (const alert of this.byId.values()) {
        const held = this.worst.get(alert.deviceId);
        this.worst.set(alert.deviceId, held === undefined ? alert.severity : worseSeverity(held, alert.severity));
      }
    }
    return new Map(this.worst);
  }

  /** Active alerts by severity, of one province or of all. */
  counts(province?: string): SummaryAlertCounts {
    const out = emptyAlertCounts();
    for (const alert of this.byId.values()) if (province === undefined || alert.province === province) out[alert.severity]++;
    return out;
  }

  private touch(): void {
    this.changes++;
    this.sorted = null;
    this.worst = null;
  }
}

/** An event carries the ack known when it was sent; one we already hold is never lost by a later copy without it. */
function withKeptAck(alert: AlertView, held: AlertView | undefined): AlertView {
  return alert.ack === null && held?.ack ? { ...alert, ack: held.ack } : alert;
}

function sameAlert(a: AlertView, b: AlertView): boolean {
  if (a === b) return true;
  return (
    a.state === b.state &&
    a.severity === b.severity &&
    a.ts === b.ts &&
    a.message === b.message &&
    a.value === b.value &&
    a.field === b.field &&
    a.threshold === b.threshold &&
    a.province === b.province &&
    a.domain === b.domain &&
    a.deviceId === b.deviceId &&
    (a.ack?.ts ?? null) === (b.ack?.ts ?? null) &&
    (a.ack?.operator ?? null) === (b.ack?.operator ?? null)
  );
}
