import type { GeoJSONSource } from 'maplibre-gl';
import { type MapInstance } from '../map/engine.js';
import { SOURCE } from '../map/style.js';
import { type DeviceStore, type PendingChanges } from './store.js';

/**
 * Draws the store on the map, batched: socket.io frames only mark devices as changed in the store;
 * at most once per animation frame the changes are drained and applied in one pass — setData when
 * devices were added, removed or moved, otherwise one feature-state update per changed device
 * (no re-tiling in the worker). However many frames arrive between two repaints (34 provinces
 * each send one every ~500 ms), the map does the work once, and a hidden tab does none.
 */
export class DeviceLayer {
  private frame = 0;
  private readonly listeners: ((changes: PendingChanges) => void)[] = [];

  constructor(
    private readonly map: MapInstance,
    private readonly store: DeviceStore,
  ) {}

  /** Called after each applied batch (panel, status bar refresh from the same pass). */
  onFlush(listener: (changes: PendingChanges) => void): void {
    this.listeners.push(listener);
  }

  schedule(): void {
    if (this.frame !== 0) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.flush();
    });
  }

  flush(): void {
    if (!this.store.hasChanges()) return;
    const changes = this.store.takeChanges();
    const source = this.map.getSource<GeoJSONSource>(SOURCE.devices);
    if (!source) return;
    if (changes.membership) {
      // The new data carries every current colour as properties; states kept from before are
      // refreshed too so a stale feature-state never outlives a setData.
      void source.setData(this.store.toFeatureCollection());
      for (const entry of this.store.all()) this.setState(entry.id);
    } else {
      for (const id of changes.changed) this.setState(id);
    }
    for (const listener of this.listeners) listener(changes);
  }

  private setState(id: string): void {
    const entry = this.store.get(id);
    if (!entry) return;
    this.map.setFeatureState({ source: SOURCE.devices, id }, { color: this.store.colorOf(entry), offline: entry.status === 'offline' });
  }

  remove(): void {
    cancelAnimationFrame(this.frame);
    this.frame = 0;
  }
}
