import { type LayerStats } from './live/layer.js';
import { type MapInstance } from './map/engine.js';

/**
 * A small read-only window into the running dashboard for the browser test
 * (e2e/dashboard.browser.test.ts) and for operators' support staff in the devtools console.
 * Functions return copies; nothing here changes state.
 */
export interface CityPulseHook {
  readonly map: MapInstance;
  /** 'maplibre' or 'mapbox'. */
  readonly engine: string;
  /** Devices with a recent reading and not reported offline (the status bar's number). */
  liveCount(): number;
  /** Client time (epoch ms) the last snapshot or frame was applied, null before the first. */
  lastFrameAt(): number | null;
  /** deviceId → fill colour drawn for it. */
  featureColors(): Record<string, string>;
  /** deviceId → device time (epoch ms) of the reading drawn, for devices that have one. */
  readingTimes(): Record<string, number>;
  /** Where a device is drawn, in CSS pixels relative to the map canvas; null if unknown. */
  devicePoint(id: string): { readonly x: number; readonly y: number } | null;
  /** The style's background (sea) and province fill colours, as drawn. */
  mapColors(): { readonly sea: string; readonly land: string };
  /** The device whose panel is open. */
  selectedDevice(): string | null;
  /** Socket.io frames and readings received, map batches applied, the last batch's own time. */
  stats(): LayerStats;
  /** 'live', or 'replay' while a replay session runs. */
  mode(): 'live' | 'replay';
  /** The replay clock (device time, epoch ms) in replay, else null. */
  replayClock(): number | null;
  /** The layer control's state. */
  layers(): { domains: string[]; heatmap: boolean; scale: string; choropleth: string; base: string };
  /** Ids of the active alerts held, newest first. */
  activeAlerts(): string[];
}

declare global {
  interface Window {
    __citypulse?: CityPulseHook;
  }
}

export function installHook(hook: CityPulseHook): void {
  Object.defineProperty(window, '__citypulse', { value: Object.freeze(hook), configurable: true, writable: false });
}

export function removeHook(): void {
  delete window.__citypulse;
}
