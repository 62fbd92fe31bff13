import type { GeoJSONSource, GeoJSONSourceDiff } from 'maplibre-gl';
import { type MapInstance } from '../map/engine.js';
import { SOURCE } from '../map/style.js';
import { type DeviceFeatureProperties } from './features.js';
import { type DeviceEntry, type DeviceStore, type PendingChanges } from './store.js';

/**
 * At most this often the map's sources get the changes (one batch). Devices report at ~1 Hz and
 * the api coalesces each province's frame over 500 ms, so two batches a second show every change
 * within a second while the map regroups its clusters and repaints twice a second, not sixty
 * (software-rendered wall screens cannot afford more; see BENCHMARKS.md).
 */
export const FLUSH_MIN_INTERVAL_MS = 500;

/** The User Timing mark of each applied batch. */
export const FLUSH_MARK = 'citypulse:flush';
/** The User Timing mark of each socket.io live frame, once applied to the store. */
export const FRAME_MARK = 'citypulse:frame';

/** What the layer has done, for the status bar, the test hook and the bench. */
export interface LayerStats {
  framesReceived: number;
  readingsReceived: number;
  /** Batches applied to the map. */
  flushes: number;
  /** Duration of the last batch's own work on the main thread, ms. */
  lastFlushMs: number;
}

/**
 * Draws the store on the map, batched: socket.io frames only mark devices as changed in the store;
 * at most once per FLUSH_MIN_INTERVAL_MS, in an animation frame, the changes are drained and
 * applied in one pass — `setData` when devices were added, removed or moved (or the display
 * options changed), otherwise one `updateData` diff with the changed features' properties
 * (maplibre re-clusters in its worker). mapbox-gl 1.x has no `updateData`; there every batch is a
 * `setData`. A hidden tab does no work at all (no animation frames).
 */
export class DeviceLayer {
  private frame = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private lastFlushAt = 0;
  private full = true;
  /** What each feature on the map shows now (a signature of its drawn properties). */
  private readonly drawn = new Map<string, string>();
  /** The heatmap's source is only fed while the heatmap shows; it is refilled when it comes back. */
  private heatVisible = false;
  private heatStale = true;
  private readonly listeners: ((changes: PendingChanges) => void)[] = [];
  readonly stats: LayerStats = { framesReceived: 0, readingsReceived: 0, flushes: 0, lastFlushMs: 0 };

  constructor(
    private readonly map: MapInstance,
    private readonly store: DeviceStore,
  ) {}

  /** Called after each applied batch (panel, status bar refresh from the same pass). */
  onFlush(listener: (changes: PendingChanges) => void): void {
    this.listeners.push(listener);
  }

  /** Counts a socket.io frame applied to the store (for the bench and the hook) and marks it. */
  noteFrame(readings: number): void {
    this.stats.framesReceived++;
    this.stats.readingsReceived += readings;
    performance.clearMarks(FRAME_MARK);
    performance.mark(FRAME_MARK);
  }

  /** The next batch replaces the sources' data (after a style change re-created the sources). */
  invalidate(): void {
    this.full = true;
    this.heatStale = true;
    this.schedule();
  }

  /** Whether the heatmap shows: its source gets data only then. */
  setHeatVisible(visible: boolean): void {
    this.heatVisible = visible;
    if (visible && this.heatStale) this.schedule();
  }

  schedule(): void {
    if (this.frame !== 0 || this.timer !== undefined) return;
    const wait = this.lastFlushAt + FLUSH_MIN_INTERVAL_MS - performance.now();
    const request = (): void => {
      this.timer = undefined;
      this.frame = requestAnimationFrame(() => {
        this.frame = 0;
        this.flush();
      });
    };
    if (wait > 0) this.timer = setTimeout(request, wait);
    else request();
  }

  flush(): void {
    const heatDue = this.heatVisible && this.heatStale;
    if (!this.full && !heatDue && !this.store.hasChanges()) return;
    const devices = this.map.getSource<GeoJSONSource>(SOURCE.devices);
    const heat = this.map.getSource<GeoJSONSource>(SOURCE.heat);
    if (!devices || !heat) return; // the style is being replaced; invalidate() follows
    const started = performance.now();
    this.lastFlushAt = started;
    const changes = this.store.takeChanges();
    const canDiff = typeof devices.updateData === 'function' && !this.full && !changes.membership;
    if (canDiff) {
      // Only features whose drawn look changed go to the map: a reading that keeps its device in
      // the same band costs no re-clustering and no repaint.
      const update: NonNullable<GeoJSONSourceDiff['update']> = [];
      const heatUpdate: NonNullable<GeoJSONSourceDiff['update']> = [];
      for (const id of changes.changed) {
        const entry = this.store.get(id);
        if (!entry || !this.store.isShown(entry)) continue;
        const properties = this.store.propertiesOf(entry);
        const signature = signatureOf(properties);
        if (this.drawn.get(id) === signature) continue;
        this.drawn.set(id, signature);
        const diff = { id, addOrUpdateProperties: toPairs(properties) };
        update.push(diff);
        if (entry.domain === 'environment') heatUpdate.push(diff);
      }
      if (update.length > 0) void devices.updateData({ update });
      if (heatUpdate.length > 0) {
        if (this.heatVisible && !this.heatStale) void heat.updateData({ update: heatUpdate });
        else this.heatStale = true;
      }
    } else {
      const collection = this.store.toFeatureCollection();
      this.drawn.clear();
      for (const feature of collection.features) this.drawn.set(feature.properties.deviceId, signatureOf(feature.properties));
      void devices.setData(collection);
      this.heatStale = true;
      this.full = false;
    }
    if (this.heatVisible && this.heatStale) {
      void heat.setData(this.store.toFeatureCollection(isEnvironment));
      this.heatStale = false;
    }
    this.stats.flushes++;
    this.stats.lastFlushMs = performance.now() - started;
    // One mark per batch: the bench cuts its main-thread trace at these (the trace keeps them;
    // the page's own timeline does not need to, over a shift of hours).
    performance.clearMarks(FLUSH_MARK);
    performance.mark(FLUSH_MARK);
    for (const listener of this.listeners) listener(changes);
  }

  remove(): void {
    cancelAnimationFrame(this.frame);
    clearTimeout(this.timer);
    this.frame = 0;
    this.timer = undefined;
  }
}

function isEnvironment(entry: DeviceEntry): boolean {
  return entry.domain === 'environment';
}

function signatureOf(p: DeviceFeatureProperties): string {
  return `${p.color}|${p.rank}|${p.offline ? 1 : 0}|${p.alert}|${p.aqi}`;
}

/** The properties that change with a reading (the id and domain of a feature never do). */
function toPairs(p: DeviceFeatureProperties): { key: string; value: unknown }[] {
  return [
    { key: 'color', value: p.color },
    { key: 'rank', value: p.rank },
    { key: 'offline', value: p.offline },
    { key: 'alert', value: p.alert },
    { key: 'aqi', value: p.aqi },
  ];
}
