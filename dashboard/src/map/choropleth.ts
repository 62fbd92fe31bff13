import { PROVINCE_CODES, vnAqiBand } from '@citypulse/contracts';
import { messages, type Message } from '../i18n.js';
import { type Kpis } from '../live/kpis.js';
import { type MapInstance } from './engine.js';
import { LAYER, SOURCE } from './style.js';

/**
 * The province choropleth: one KPI per province as a fill colour over the land. The colour of a
 * value is computed here, once, for both the map (feature-state per province) and the legend.
 */

const M = messages({
  none: { vi: 'Không tô màu', en: 'None' },
  vnAqi: { vi: 'VN_AQI trung bình', en: 'Mean VN_AQI' },
  congestion: { vi: 'Tỷ lệ ùn tắc (LOS E–F)', en: 'Congested share (LOS E–F)' },
  load: { vi: 'Tải lưới điện trung bình', en: 'Mean grid load' },
  online: { vi: 'Thiết bị trực tuyến', en: 'Devices online' },
  noData: { vi: 'Không có số liệu', en: 'No data' },
});

export const CHOROPLETH_KPIS = ['none', 'vnAqi', 'congestion', 'load', 'online'] as const;
export type ChoroplethKpi = (typeof CHOROPLETH_KPIS)[number];

export interface ChoroplethScale {
  readonly label: Message;
  /** The province's figure, undefined when it has none. */
  value(kpis: Kpis): number | undefined;
  color(value: number): string;
  /** Legend rows: a colour and the range it stands for. */
  readonly stops: readonly { readonly color: string; readonly text: string }[];
}

const pct = (v: number): string => `${Math.round(v * 100)} %`;
const ramp = (edges: readonly number[], colors: readonly string[]) => (v: number): string => {
  const i = edges.findIndex((edge) => v < edge);
  return colors[i === -1 ? colors.length - 1 : i] ?? colors[colors.length - 1] ?? '#9e9e9e';
};
const rows = (edges: readonly number[], colors: readonly string[], fmt: (v: number) => string) =>
  colors.map((color, i) => ({ color, text: i === 0 ? `< ${fmt(edges[0] ?? 0)}` : i === colors.length - 1 ? `≥ ${fmt(edges[i - 1] ?? 0)}` : `${fmt(edges[i - 1] ?? 0)}–${fmt(edges[i] ?? 0)}` }));

const GOOD_TO_BAD = ['#1a9850', '#a6d96a', '#fee08b', '#f46d43', '#a50026'];
const CONGESTION_EDGES = [0.05, 0.15, 0.3, 0.5];
const LOAD_EDGES = [0.5, 0.7, 0.8, 0.9];
const ONLINE_EDGES = [0.5, 0.8, 0.9, 0.97];
const ONLINE_COLORS = [...GOOD_TO_BAD].reverse();

export const CHOROPLETH_SCALES: Readonly<Record<Exclude<ChoroplethKpi, 'none'>, ChoroplethScale>> = {
  vnAqi: {
    label: M.vnAqi,
    value: (k) => k.vnAqiMean,
    // The official VN_AQI band colours, so the choropleth reads like the station points.
    color: (v) => vnAqiBand(v).color,
    stops: [0, 51, 101, 151, 201, 301].map((min) => {
      const band = vnAqiBand(min);
      return { color: band.color, text: `${band.min}–${band.max}` };
    }),
  },
  congestion: { label: M.congestion, value: (k) => k.congestedShare, color: ramp(CONGESTION_EDGES, GOOD_TO_BAD), stops: rows(CONGESTION_EDGES, GOOD_TO_BAD, pct) },
  load: { label: M.load, value: (k) => k.loadFactorMean, color: ramp(LOAD_EDGES, GOOD_TO_BAD), stops: rows(LOAD_EDGES, GOOD_TO_BAD, pct) },
  online: {
    label: M.online,
    value: (k) => (k.devices.total > 0 ? k.devices.online / k.devices.total : undefined),
    color: ramp(ONLINE_EDGES, ONLINE_COLORS),
    stops: rows(ONLINE_EDGES, ONLINE_COLORS, pct),
  },
};

export function choroplethLabel(kpi: ChoroplethKpi): string {
  return kpi === 'none' ? M.none() : CHOROPLETH_SCALES[kpi].label();
}

export function noDataLabel(): string {
  return M.noData();
}

/**
 * Colours the provinces by `kpi` (feature-state `color` per province; the layer draws nothing
 * where it is absent) or hides the layer for 'none'. Called every second: it remembers what the
 * map holds and sets only the provinces whose colour changed, and nothing at all while hidden.
 */
export class ProvinceChoropleth {
  /** Colour per province as last set on the map (null: cleared). */
  private readonly drawn = new Map<string, string | null>();
  private visible: boolean | null = null;

  constructor(private readonly map: MapInstance) {}

  /** After a style load the layer and its feature-states are new: the next apply sets them all. */
  invalidate(): void {
    this.drawn.clear();
    this.visible = null;
  }

  apply(kpi: ChoroplethKpi, kpisOf: (province: string) => Kpis | undefined): void {
    if (!this.map.getLayer(LAYER.choropleth)) return;
    const visible = kpi !== 'none';
    if (visible !== this.visible) {
      this.map.setLayoutProperty(LAYER.choropleth, 'visibility', visible ? 'visible' : 'none');
      this.visible = visible;
    }
    // Hidden, the colours are left as they were: they are recomputed before the layer shows again.
    if (!visible) return;
    const scale = CHOROPLETH_SCALES[kpi];
    for (const code of PROVINCE_CODES) {
      const kpis = kpisOf(code);
      const value = kpis ? scale.value(kpis) : undefined;
      const color = value !== undefined && Number.isFinite(value) ? scale.color(value) : null;
      if (this.drawn.get(code) === color && this.drawn.has(code)) continue;
      this.map.setFeatureState({ source: SOURCE.provinces, id: code }, { color });
      this.drawn.set(code, color);
    }
  }
}
