import { US_EPA_AQI_METHOD, provinceByCode } from '@citypulse/contracts';
import { DOMAIN_LABELS, formatAge, formatDateTime, headline } from '../format.js';
import { messages, pick } from '../i18n.js';
import { SEVERITY_PALETTE, epaAqiOf } from '../live/features.js';
import { type DeviceStore } from '../live/store.js';
import { h } from '../ui/dom.js';
import { type MapEngine, type MapInstance } from './engine.js';
import { LAYER, SOURCE } from './style.js';

const M = messages({
  devices: (n: number) => ({ vi: `${n} thiết bị`, en: `${n} devices` }),
  offline: (n: number) => ({ vi: `${n} mất kết nối`, en: `${n} offline` }),
  worst: { vi: 'Màu: thiết bị xấu nhất trong cụm', en: 'Colour: the worst device in the cluster' },
  zoomIn: { vi: 'Nhấp để phóng to', en: 'Click to zoom in' },
  noReading: { vi: 'Chưa có số liệu', en: 'No reading yet' },
  alert: { vi: 'Có cảnh báo đang hoạt động', en: 'Active alert' },
  openDetail: { vi: 'Nhấp để xem chi tiết', en: 'Click for details' },
});

/** Click tolerance around a device point, px. */
const CLICK_TOLERANCE_PX = 8;
/** Cluster count labels are refreshed at most this often while data flows. */
const COUNT_REFRESH_MS = 300;
/** At most this many cluster labels (a national view has far fewer clusters than that). */
const MAX_COUNT_LABELS = 400;

export interface InteractionDeps {
  readonly map: MapInstance;
  readonly engine: MapEngine;
  readonly store: DeviceStore;
  onSelectDevice(id: string): void;
}

interface ClusterProps {
  readonly cluster_id: number;
  readonly point_count: number;
  readonly worst: number;
  readonly offline: number;
}

/**
 * What the pointer does on the live layers: a popup with a device's latest values (or a
 * cluster's size) on hover, the detail panel on click, zoom into a cluster on click. Also the
 * count labels of clusters, as HTML markers (symbol text would need glyph files the project
 * does not ship). Every text from a device goes through textContent.
 */
export class MapInteraction {
  private readonly popup: InstanceType<MapEngine['Popup']>;
  private hovered: string | number | null = null;
  private readonly counts = new Map<number, { marker: InstanceType<MapEngine['Marker']>; el: HTMLElement; lng: number; lat: number }>();
  private countTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly off: (() => void)[] = [];

  constructor(private readonly deps: InteractionDeps) {
    const { engine } = deps;
    this.popup = new engine.Popup({ closeButton: false, closeOnClick: false, offset: 12, maxWidth: '280px', className: 'map-popup' });
    this.listen('mousemove', (event) => this.onMove(event.point));
    this.listen('mouseout', () => this.hidePopup());
    this.listen('click', (event) => this.onClick(event.point));
    this.listen('moveend', () => this.scheduleCounts());
    // Only the devices source's data moves clusters (the provinces and heat sources do not).
    this.listen('sourcedata', (event) => {
      if (event.sourceId === SOURCE.devices) this.scheduleCounts();
    });
    this.scheduleCounts();
  }

  /** Re-renders the open popup (new reading, or a language change). */
  refresh(): void {
    if (typeof this.hovered === 'string') this.showDevice(this.hovered);
    // A cluster's popup is rebuilt on the next pointer move (its members may have changed).
    else if (typeof this.hovered === 'number') this.hidePopup();
  }

  remove(): void {
    for (const off of this.off) off();
    clearTimeout(this.countTimer);
    this.popup.remove();
    for (const { marker } of this.counts.values()) marker.remove();
    this.counts.clear();
  }

  private listen(type: 'mousemove' | 'mouseout' | 'click' | 'moveend' | 'sourcedata', handler: (event: { point: { x: number; y: number }; sourceId?: string }) => void): void {
    const map = this.deps.map as unknown as { on(t: string, f: (e: never) => void): void; off(t: string, f: (e: never) => void): void };
    const fn = (event: never): void => handler(event);
    map.on(type, fn);
    this.off.push(() => map.off(type, fn));
  }

  /** The nearest device or cluster under a point. */
  private hit(point: { x: number; y: number }): { kind: 'device'; id: string } | { kind: 'cluster'; props: ClusterProps; at: [number, number] } | null {
    const { map, store } = this.deps;
    const box: [[number, number], [number, number]] = [
      [point.x - CLICK_TOLERANCE_PX, point.y - CLICK_TOLERANCE_PX],
      [point.x + CLICK_TOLERANCE_PX, point.y + CLICK_TOLERANCE_PX],
    ];
    if (!map.getLayer(LAYER.devices)) return null;
    let best: { id: string; d: number } | null = null;
    for (const feature of map.queryRenderedFeatures(box, { layers: [LAYER.devices] })) {
      const id = feature.properties.deviceId as unknown;
      const at = typeof id === 'string' ? store.drawnAt(id) : undefined;
      if (typeof id !== 'string' || !at) continue;
      const p = map.project([at[0], at[1]]);
      const d = Math.hypot(p.x - point.x, p.y - point.y);
      if (!best || d < best.d) best = { id, d };
    }
    if (best) return { kind: 'device', id: best.id };
    const [cluster] = map.queryRenderedFeatures(box, { layers: [LAYER.clusters] });
    const at = cluster ? pointOf(cluster) : null;
    if (cluster && at) return { kind: 'cluster', props: cluster.properties as unknown as ClusterProps, at };
    return null;
  }

  private onMove(point: { x: number; y: number }): void {
    const hit = this.hit(point);
    this.deps.map.getCanvas().style.cursor = hit ? 'pointer' : '';
    if (!hit) {
      this.hidePopup();
      return;
    }
    if (hit.kind === 'device') {
      if (this.hovered !== hit.id) this.showDevice(hit.id);
      return;
    }
    if (this.hovered === hit.props.cluster_id) return;
    this.hovered = hit.props.cluster_id;
    const swatch = h('span', { className: 'popup-swatch', attrs: { 'aria-hidden': 'true' } });
    swatch.style.background = SEVERITY_PALETTE[hit.props.worst] ?? SEVERITY_PALETTE[0] ?? '#9e9e9e';
    this.popup
      .setLngLat(hit.at)
      .setDOMContent(
        h('div', { className: 'popup' }, [
          h('strong', { text: M.devices(hit.props.point_count) }),
          hit.props.offline > 0 ? h('div', { className: 'muted', text: M.offline(hit.props.offline) }) : null,
          h('div', {}, [swatch, ' ', M.worst()]),
          h('div', { className: 'muted', text: M.zoomIn() }),
        ]),
      )
      .addTo(this.deps.map);
  }

  private showDevice(id: string): void {
    const { store, map } = this.deps;
    const entry = store.get(id);
    const at = store.drawnAt(id);
    if (!entry || !at) {
      this.hidePopup();
      return;
    }
    this.hovered = id;
    const reading = entry.reading;
    const province = provinceByCode(entry.province);
    const swatch = h('span', { className: 'popup-swatch', attrs: { 'aria-hidden': 'true' } });
    swatch.style.background = store.colorOf(entry);
    const head = reading ? headline(entry.domain, reading.values, reading.derived) : null;
    // On the EPA scale the swatch is the EPA colour: the EPA figure goes beside it, labelled.
    const epa = store.displayOptions.scale === 'epa' && entry.domain === 'environment' ? epaAqiOf(entry) : undefined;
    this.popup
      .setLngLat([at[0], at[1]])
      .setDOMContent(
        h('div', { className: 'popup', attrs: { 'data-testid': 'map-popup', 'data-device-id': entry.id } }, [
          h('strong', { className: 'popup-name', text: entry.name }),
          h('div', { className: 'muted', text: `${entry.id} · ${pick(DOMAIN_LABELS[entry.domain])} · ${province?.name ?? entry.province}` }),
          epa !== undefined ? h('div', { className: 'popup-headline' }, [swatch, ' ', h('strong', { text: `${US_EPA_AQI_METHOD} ${Math.round(epa)}` })]) : null,
          head ? h('div', { className: 'popup-headline' }, [epa === undefined ? swatch : null, ' ', h('strong', { text: head.title }), ` ${head.detail}`]) : h('div', { text: M.noReading() }),
          reading ? h('div', { className: 'muted', text: `${formatDateTime(reading.ts)} · ${formatAge(Date.now() - reading.ts)}` }) : null,
          store.alertLevel(entry.id) > 0 ? h('div', { className: 'popup-alert', text: `⚠ ${M.alert()}` }) : null,
          h('div', { className: 'muted', text: M.openDetail() }),
        ]),
      )
      .addTo(map);
  }

  private hidePopup(): void {
    if (this.hovered === null) return;
    this.hovered = null;
    this.popup.remove();
  }

  private onClick(point: { x: number; y: number }): void {
    const hit = this.hit(point);
    if (!hit) return;
    if (hit.kind === 'device') {
      this.deps.onSelectDevice(hit.id);
      return;
    }
    // Two zoom levels in, at the cluster: the same gesture on both map engines (their
    // getClusterExpansionZoom differ: a promise in maplibre, a callback in mapbox-gl 1.x).
    const { map } = this.deps;
    map.easeTo({ center: hit.at, zoom: Math.min(map.getZoom() + 2, map.getMaxZoom()) });
  }

  private scheduleCounts(): void {
    if (this.countTimer !== undefined) return;
    this.countTimer = setTimeout(() => {
      this.countTimer = undefined;
      this.updateCounts();
    }, COUNT_REFRESH_MS);
  }

  private updateCounts(): void {
    const { map, engine } = this.deps;
    if (!map.getLayer(LAYER.clusters)) {
      for (const { marker } of this.counts.values()) marker.remove();
      this.counts.clear();
      return;
    }
    const seen = new Set<number>();
    const visible = map.getLayoutProperty(LAYER.clusters, 'visibility') !== 'none';
    const features = visible ? map.queryRenderedFeatures({ layers: [LAYER.clusters] }) : [];
    for (const feature of features) {
      if (seen.size >= MAX_COUNT_LABELS) break;
      const props = feature.properties as unknown as ClusterProps;
      const at = pointOf(feature);
      if (seen.has(props.cluster_id) || !at) continue;
      seen.add(props.cluster_id);
      const [lng, lat] = at;
      const text = props.point_count >= 1000 ? `${Math.round(props.point_count / 100) / 10}k` : String(props.point_count);
      const held = this.counts.get(props.cluster_id);
      if (held) {
        // Readings change colours, not clusters: most refreshes find every label as it was.
        if (held.lng !== lng || held.lat !== lat) {
          held.marker.setLngLat([lng, lat]);
          held.lng = lng;
          held.lat = lat;
        }
        if (held.el.textContent !== text) held.el.textContent = text;
        continue;
      }
      const el = h('div', { className: 'cluster-count', text, attrs: { 'aria-hidden': 'true' } });
      this.counts.set(props.cluster_id, { el, lng, lat, marker: new engine.Marker({ element: el }).setLngLat([lng, lat]).addTo(map) });
    }
    for (const [id, held] of this.counts) {
      if (seen.has(id)) continue;
      held.marker.remove();
      this.counts.delete(id);
    }
  }
}

/** A point feature's coordinates (maplibre types geometry with @types/geojson, which is not installed). */
function pointOf(feature: { readonly geometry: unknown }): [number, number] | null {
  const geometry = feature.geometry as { readonly type?: unknown; readonly coordinates?: unknown };
  if (geometry.type !== 'Point' || !Array.isArray(geometry.coordinates)) return null;
  const [lng, lat] = geometry.coordinates as unknown[];
  return typeof lng === 'number' && typeof lat === 'number' ? [lng, lat] : null;
}
