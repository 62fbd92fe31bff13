import { DOMAINS, type DeviceStatusEvent, type DeviceView, type Domain, type FieldValue, type LiveFrame } from '@citypulse/contracts';
import {
  NO_READING_COLOR,
  displayColor,
  drawnLocations,
  featureProperties,
  type DeviceFeatureCollection,
  type DeviceFeatureProperties,
  type DisplayOptions,
} from './features.js';

export { NO_READING_COLOR };

/**
 * The dashboard's copy of every device it shows: the REST list gives identity and location, the
 * socket.io snapshots and frames give readings. Pure state (no DOM, no map), so it is unit-tested
 * in Node; the map layer drains its change sets once per animation frame.
 */

/** A reading counts as live when its device time is at most this old (server clock). */
export const LIVE_WINDOW_MS = 5 * 60_000; // 5 minutes

export interface CurrentReading {
  readonly ts: number;
  readonly seq: number;
  readonly values: Readonly<Record<string, FieldValue>>;
  /** contracts' Derived (vnAqi, los, loadFactor, …) as plain fields. */
  readonly derived: Readonly<Record<string, FieldValue>>;
  readonly state: { readonly level: string; readonly color: string };
}

export interface DeviceEntry {
  readonly id: string;
  name: string;
  province: string;
  domain: Domain;
  kind: string;
  /** [lng, lat] */
  location: readonly [number, number];
  status: DeviceView['status'];
  reading: CurrentReading | null;
}

export interface PendingChanges {
  /** Devices were added, removed or moved: the source needs new data. */
  readonly membership: boolean;
  /** Devices whose colour or status changed: one feature-state pass. */
  readonly changed: readonly string[];
}

export class DeviceStore {
  private readonly devices = new Map<string, DeviceEntry>();
  private readonly changed = new Set<string>();
  private membershipChanged = false;
  /** Reading ids with no known location yet (a device registered after our list was fetched). */
  private readonly unknown = new Set<string>();
  private lastFrame: number | null = null;
  private lastHeartbeat: number | null = null;
  private lastList: number | null = null;
  /** server clock − client clock, from frame.sentAt and heartbeats; used for "is this reading live". */
  private clockOffsetMs = 0;
  private options: DisplayOptions = { scale: 'vn', domains: new Set(DOMAINS) };
  /** deviceId → alert level (features.ts ALERT_LEVEL) of its most severe active alert. */
  private alertLevels = new Map<string, number>();
  /** Where each device is drawn (co-located ones spread out); rebuilt on a membership change. */
  private drawn: Map<string, [number, number]> | null = null;

  get size(): number {
    return this.devices.size;
  }

  get(id: string): DeviceEntry | undefined {
    return this.devices.get(id);
  }

  all(): IterableIterator<DeviceEntry> {
    return this.devices.values();
  }

  /** Client time (ms) the last snapshot or frame was applied, or null before the first one. */
  lastFrameAt(): number | null {
    return this.lastFrame;
  }

  /**
   * Client time of the latest sign of life from the server: a frame, a heartbeat, or the device
   * list (so a socket that never delivers anything still turns the data stale).
   */
  lastSignAt(): number | null {
    let latest: number | null = null;
    for (const t of [this.lastFrame, this.lastHeartbeat, this.lastList]) if (t !== null && (latest === null || t > latest)) latest = t;
    return latest;
  }

  /**
   * Replaces the device list (it is authoritative for identity and location); keeps the newer
   * reading, unless `readings` is false (during a replay the list's live readings must not mix in).
   */
  replaceDevices(views: readonly DeviceView[], receivedAt: number = Date.now(), readings = true): void {
    this.lastList = receivedAt;
    this.drawn = null;
    const seen = new Set<string>();
    for (const view of views) {
      seen.add(view.id);
      this.unknown.delete(view.id);
      const existing = this.devices.get(view.id);
      const reading = readings ? newer(existing?.reading ?? null, view.latest) : (existing?.reading ?? null);
      if (!existing) {
        this.devices.set(view.id, {
          id: view.id,
          name: view.name,
          province: view.province,
          domain: view.domain,
          kind: view.kind,
          location: [view.location[0], view.location[1]],
          status: view.status,
          reading,
        });
        this.membershipChanged = true;
        continue;
      }
      if (existing.location[0] !== view.location[0] || existing.location[1] !== view.location[1] || existing.domain !== view.domain) {
        this.membershipChanged = true;
      }
      existing.name = view.name;
      existing.province = view.province;
      existing.domain = view.domain;
      existing.kind = view.kind;
      existing.location = [view.location[0], view.location[1]];
      existing.status = view.status;
      existing.reading = reading;
      this.changed.add(view.id);
    }
    for (const id of this.devices.keys()) {
      if (!seen.has(id)) {
        this.devices.delete(id);
        this.membershipChanged = true;
      }
    }
  }

  /**
   * Applies a snapshot or frame. Live readings older than the one held are dropped (frames can
   * overtake each other across reconnects); replay frames are applied as they come, since seeking
   * back in a replay legitimately moves time backwards.
   * A replay snapshot is the whole state of its province and domain: devices there without a
   * reading in it lose the one they had (a seek back, or a new range).
   * @returns how many devices not in the list were seen for the first time (the caller refetches
   * the list; an id it still lacks after that, e.g. a deleted device, is not asked for again).
   */
  applyFrame(frame: LiveFrame, receivedAt: number, kind: 'snapshot' | 'frame' = 'frame'): number {
    let unknown = 0;
    if (frame.mode === 'replay' && kind === 'snapshot') {
      const present = new Set(frame.readings.map((r) => r.deviceId));
      for (const entry of this.devices.values()) {
        if (entry.province !== frame.province || entry.domain !== frame.domain || present.has(entry.id) || entry.reading === null) continue;
        entry.reading = null;
        this.changed.add(entry.id);
      }
    }
    for (const reading of frame.readings) {
      const entry = this.devices.get(reading.deviceId);
      if (!entry) {
        if (!this.unknown.has(reading.deviceId)) unknown++;
        this.unknown.add(reading.deviceId);
        continue;
      }
      if (frame.mode === 'live' && entry.reading && reading.ts < entry.reading.ts) continue;
      entry.reading = { ts: reading.ts, seq: reading.seq, values: reading.values, derived: reading.derived as Record<string, FieldValue>, state: reading.state };
      // A device that sends readings is online, whatever the last status event said.
      if (frame.mode === 'live') entry.status = 'online';
      this.changed.add(entry.id);
    }
    this.lastFrame = receivedAt;
    this.noteServerTime(frame.sentAt, receivedAt);
    return unknown;
  }

  applyStatus(event: DeviceStatusEvent): boolean {
    const entry = this.devices.get(event.deviceId);
    if (!entry) {
      const known = this.unknown.has(event.deviceId);
      this.unknown.add(event.deviceId);
      return known;
    }
    if (entry.status !== event.state) {
      entry.status = event.state;
      this.changed.add(entry.id);
    }
    return true;
  }

  noteHeartbeat(serverTime: number, receivedAt: number): void {
    this.lastHeartbeat = receivedAt;
    this.noteServerTime(serverTime, receivedAt);
  }

  private noteServerTime(serverTime: number, receivedAt: number): void {
    if (Number.isFinite(serverTime)) this.clockOffsetMs = serverTime - receivedAt;
  }

  hasUnknown(): boolean {
    return this.unknown.size > 0;
  }

  /** Takes (and clears) what changed since the last call. */
  takeChanges(): PendingChanges {
    const changes = { membership: this.membershipChanged, changed: [...this.changed] };
    this.membershipChanged = false;
    this.changed.clear();
    return changes;
  }

  hasChanges(): boolean {
    return this.membershipChanged || this.changed.size > 0;
  }

  /** Devices with a reading no older than LIVE_WINDOW_MS on the server's clock and not reported offline. */
  liveCount(clientNow: number): number {
    const cutoff = clientNow + this.clockOffsetMs - LIVE_WINDOW_MS;
    let count = 0;
    for (const entry of this.devices.values()) {
      if (entry.status !== 'offline' && entry.reading !== null && entry.reading.ts >= cutoff) count++;
    }
    return count;
  }

  colorOf(entry: DeviceEntry): string {
    return displayColor(entry, this.options.scale);
  }

  /** deviceId → the fill colour the map shows for it. */
  colors(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const entry of this.devices.values()) out[entry.id] = this.colorOf(entry);
    return out;
  }

  get displayOptions(): DisplayOptions {
    return this.options;
  }

  /** A new scale or set of domains: every feature is rebuilt (a membership change). */
  setDisplayOptions(options: DisplayOptions): void {
    this.options = options;
    this.membershipChanged = true;
  }

  /** The alert level of every device with an active alert; devices whose level changed are marked. */
  setAlertLevels(levels: ReadonlyMap<string, number>): void {
    for (const id of new Set([...this.alertLevels.keys(), ...levels.keys()])) {
      if ((this.alertLevels.get(id) ?? 0) !== (levels.get(id) ?? 0) && this.devices.has(id)) this.changed.add(id);
    }
    this.alertLevels = new Map(levels);
  }

  alertLevel(id: string): number {
    return this.alertLevels.get(id) ?? 0;
  }

  /**
   * Forgets every reading (a replay starts: the map must show only what the replay brings, not
   * live values of devices without data in the replayed range).
   */
  clearReadings(): void {
    for (const entry of this.devices.values()) entry.reading = null;
    this.membershipChanged = true;
  }

  isShown(entry: DeviceEntry): boolean {
    return this.options.domains.has(entry.domain);
  }

  /** The map properties of one device now (for an in-place update of its feature). */
  propertiesOf(entry: DeviceEntry): DeviceFeatureProperties {
    return featureProperties(entry, this.options, this.alertLevel(entry.id));
  }

  /** The devices of the shown domains as GeoJSON, co-located ones spread on a small ring. */
  toFeatureCollection(filter: (entry: DeviceEntry) => boolean = () => true): DeviceFeatureCollection {
    const drawn = this.drawnLocations();
    const features: DeviceFeatureCollection['features'] = [];
    for (const entry of this.devices.values()) {
      if (!this.isShown(entry) || !filter(entry)) continue;
      const at = drawn.get(entry.id) ?? [entry.location[0], entry.location[1]];
      features.push({ type: 'Feature', properties: this.propertiesOf(entry), geometry: { type: 'Point', coordinates: [at[0], at[1]] } });
    }
    return { type: 'FeatureCollection', features };
  }

  /** Where a device is drawn (its location, or its place on the ring of co-located devices). */
  drawnAt(id: string): readonly [number, number] | undefined {
    return this.drawnLocations().get(id);
  }

  private drawnLocations(): Map<string, [number, number]> {
    this.drawn ??= drawnLocations(this.devices.values());
    return this.drawn;
  }
}

function newer(held: CurrentReading | null, fromList: DeviceView['latest']): CurrentReading | null {
  if (!fromList) return held;
  if (held && held.ts >= fromList.ts) return held;
  return { ts: fromList.ts, seq: fromList.seq, values: fromList.values, derived: fromList.derived, state: fromList.state };
}
