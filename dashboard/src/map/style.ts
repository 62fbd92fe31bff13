import { PROVINCE_BOUNDARIES, PROVINCES, type Domain } from '@citypulse/contracts';
import type { ExpressionSpecification, GeoJSONSourceSpecification, LayerSpecification, LngLatBoundsLike, StyleSpecification } from 'maplibre-gl';
import { NO_READING_COLOR, SEVERITY_PALETTE } from '../live/features.js';

/**
 * The map style the project ships: sea, the 34 provinces from contracts' bundled boundaries, and
 * the live device layer. No glyphs, sprites, tiles or token, so the map never leaves the machine;
 * province names are HTML markers (labels.ts) because symbol text would need glyph PBFs.
 */

/** Map colours (exact, opaque fills: the browser test counts them in screenshots). */
export const PALETTE = {
  sea: '#0e2233',
  land: '#24394a',
  outline: '#6f8ea3',
  selected: '#ffd166',
} as const;

/** Ring colour of a device point, by domain; the fill is the reading's state colour. */
export const DOMAIN_STROKES: Readonly<Record<Domain, string>> = {
  traffic: '#ffffff',
  environment: '#00e5ff',
  energy: '#6f9bff',
};

export const SOURCE = { provinces: 'provinces', devices: 'devices', heat: 'heat' } as const;
export const LAYER = {
  sea: 'sea',
  provinceFill: 'province-fill',
  choropleth: 'province-choropleth',
  provinceLine: 'province-line',
  provinceSelected: 'province-selected',
  heatmap: 'aqi-heatmap',
  clusters: 'clusters',
  alertHalo: 'device-alert-halo',
  deviceSelected: 'device-selected',
  devices: 'devices',
} as const;

/** Zoom above which devices are never clustered (a district at street scale). */
export const CLUSTER_MAX_ZOOM = 11;
/** Cluster radius, px: devices closer than this on screen are drawn as one cluster. */
export const CLUSTER_RADIUS_PX = 44;
/** Ring colours of devices with active alerts, by level (features.ts ALERT_LEVEL). */
export const ALERT_RING_COLORS = { 1: '#4fc3f7', 2: '#ffb300', 3: '#ff1744' } as const;

/** [west, south, east, north] of the mainland of every province together. */
export const VIETNAM_BOUNDS: [number, number, number, number] = PROVINCES.reduce<[number, number, number, number]>(
  (acc, p) => [Math.min(acc[0], p.bbox[0]), Math.min(acc[1], p.bbox[1]), Math.max(acc[2], p.bbox[2]), Math.max(acc[3], p.bbox[3])],
  [180, 90, -180, -90],
);

export function boundsOf(bbox: readonly [number, number, number, number]): LngLatBoundsLike {
  return [
    [bbox[0], bbox[1]],
    [bbox[2], bbox[3]],
  ];
}

/** A filter matching one province's features, or none. */
export function provinceFilter(code: string | null): ExpressionSpecification {
  return ['==', ['get', 'code'], code ?? ''];
}

/** A filter matching one device's point, or none. */
export function deviceFilter(id: string | null): ExpressionSpecification {
  return ['==', ['get', 'deviceId'], id ?? ''];
}

const domainStroke: ExpressionSpecification = [
  'match',
  ['get', 'domain'],
  'traffic',
  DOMAIN_STROKES.traffic,
  'environment',
  DOMAIN_STROKES.environment,
  'energy',
  DOMAIN_STROKES.energy,
  '#ffffff',
];

/** The colour of the palette entry a cluster's worst member has (its `worst` property). */
const worstColor: ExpressionSpecification = ['to-color', ['at', ['min', ['get', 'worst'], SEVERITY_PALETTE.length - 1], ['literal', SEVERITY_PALETTE]]];
const isOffline: ExpressionSpecification = ['boolean', ['get', 'offline'], false];
const alertRing: ExpressionSpecification = ['match', ['get', 'alert'], 3, ALERT_RING_COLORS[3], 2, ALERT_RING_COLORS[2], 1, ALERT_RING_COLORS[1], 'rgba(0,0,0,0)'];
const clusterAlertRing: ExpressionSpecification = ['match', ['get', 'alerted'], 3, ALERT_RING_COLORS[3], 2, ALERT_RING_COLORS[2], 1, ALERT_RING_COLORS[1], '#0e2233'];

/** The sources of the live layers (devices clustered by the map library, the heatmap's stations). */
export function liveSources(): Record<string, GeoJSONSourceSpecification> {
  return {
    [SOURCE.devices]: {
      type: 'geojson',
      data: { type: 'FeatureCollection', features: [] },
      // deviceId becomes the feature id, so a reading updates one feature in place (updateData).
      promoteId: 'deviceId',
      cluster: true,
      clusterMaxZoom: CLUSTER_MAX_ZOOM,
      clusterRadius: CLUSTER_RADIUS_PX,
      // A cluster takes its worst member's colour and its most severe alert.
      clusterProperties: { worst: ['max', ['get', 'rank']], alerted: ['max', ['get', 'alert']], offline: ['+', ['case', isOffline, 1, 0]] },
    },
    [SOURCE.heat]: { type: 'geojson', data: { type: 'FeatureCollection', features: [] }, promoteId: 'deviceId' },
  };
}

/** Layers drawn over any base: the live layers on top of the province outlines. */
export function liveLayers(): LayerSpecification[] {
  return [
    {
      id: LAYER.heatmap,
      type: 'heatmap',
      source: SOURCE.heat,
      layout: { visibility: 'none' },
      paint: {
        // AQI 0–300 → weight 0–1: a cluster of "bad" stations glows, a "good" one barely shows.
        'heatmap-weight': ['interpolate', ['linear'], ['get', 'aqi'], 0, 0, 50, 0.15, 150, 0.6, 300, 1],
        'heatmap-intensity': ['interpolate', ['linear'], ['zoom'], 4, 0.8, 11, 2.5],
        'heatmap-radius': ['interpolate', ['linear'], ['zoom'], 4, 14, 9, 30, 13, 50],
        'heatmap-opacity': 0.75,
        'heatmap-color': ['interpolate', ['linear'], ['heatmap-density'], 0, 'rgba(0,0,0,0)', 0.15, 'rgb(0,228,0)', 0.35, 'rgb(255,255,0)', 0.55, 'rgb(255,126,0)', 0.75, 'rgb(255,0,0)', 1, 'rgb(143,63,151)'],
      },
    },
    {
      id: LAYER.clusters,
      type: 'circle',
      source: SOURCE.devices,
      filter: ['has', 'point_count'],
      paint: {
        'circle-color': worstColor,
        'circle-radius': ['step', ['get', 'point_count'], 12, 10, 15, 100, 19, 1000, 24],
        'circle-stroke-color': clusterAlertRing,
        'circle-stroke-width': ['case', ['>', ['get', 'alerted'], 0], 3.5, 2],
        'circle-opacity': 0.92,
      },
    },
    {
      // A ring around a device with an active alert, in its severity's colour.
      id: LAYER.alertHalo,
      type: 'circle',
      source: SOURCE.devices,
      filter: ['all', ['!', ['has', 'point_count']], ['>', ['get', 'alert'], 0]],
      paint: {
        'circle-color': 'rgba(0,0,0,0)',
        'circle-radius': ['interpolate', ['linear'], ['zoom'], 4, 9, 8, 12, 12, 16],
        'circle-stroke-color': alertRing,
        'circle-stroke-width': 2.5,
      },
    },
    {
      // A ring under the open device's point.
      id: LAYER.deviceSelected,
      type: 'circle',
      source: SOURCE.devices,
      filter: deviceFilter(null),
      paint: {
        'circle-color': 'rgba(0,0,0,0)',
        'circle-radius': ['interpolate', ['linear'], ['zoom'], 4, 10, 8, 13, 12, 17],
        'circle-stroke-color': PALETTE.selected,
        'circle-stroke-width': 2.5,
      },
    },
    {
      id: LAYER.devices,
      type: 'circle',
      source: SOURCE.devices,
      filter: ['!', ['has', 'point_count']],
      paint: {
        'circle-color': ['to-color', ['coalesce', ['get', 'color'], NO_READING_COLOR]],
        'circle-radius': ['interpolate', ['linear'], ['zoom'], 4, 5.5, 8, 8, 12, 12],
        'circle-stroke-color': domainStroke,
        'circle-stroke-width': ['interpolate', ['linear'], ['zoom'], 4, 1.5, 10, 2.5],
        'circle-opacity': ['case', isOffline, 0.35, 1],
        'circle-stroke-opacity': ['case', isOffline, 0.35, 1],
      },
    },
  ];
}

/** The province layers: land fill (with the KPI choropleth over it), outlines, the selection. */
function provinceLayers(withLand: boolean): LayerSpecification[] {
  const layers: LayerSpecification[] = [];
  if (withLand) layers.push({ id: LAYER.provinceFill, type: 'fill', source: SOURCE.provinces, paint: { 'fill-color': PALETTE.land, 'fill-opacity': 1 } });
  layers.push(
    {
      // The chosen KPI per province, from feature-state (set by ui/choropleth.ts); hidden by default.
      id: LAYER.choropleth,
      type: 'fill',
      source: SOURCE.provinces,
      layout: { visibility: 'none' },
      paint: { 'fill-color': ['coalesce', ['feature-state', 'color'], 'rgba(0,0,0,0)'], 'fill-opacity': 0.55 },
    },
    {
      id: LAYER.provinceLine,
      type: 'line',
      source: SOURCE.provinces,
      paint: { 'line-color': PALETTE.outline, 'line-width': ['interpolate', ['linear'], ['zoom'], 4, 0.6, 10, 1.5] },
    },
    {
      id: LAYER.provinceSelected,
      type: 'line',
      source: SOURCE.provinces,
      filter: provinceFilter(null),
      paint: { 'line-color': PALETTE.selected, 'line-width': 2.5 },
    },
  );
  return layers;
}

export function provinceSource(): GeoJSONSourceSpecification {
  return {
    type: 'geojson',
    // maplibre types `data` with the global GeoJSON namespace of @types/geojson, which is not a
    // dependency here, so it accepts any value; the contract's collection is RFC 7946 GeoJSON.
    data: PROVINCE_BOUNDARIES,
    // The province code is the feature id: the choropleth sets one feature-state per province.
    promoteId: 'code',
  };
}

/** The offline style: sea, provinces, live layers. Nothing in it is fetched from anywhere. */
export function buildStyle(): StyleSpecification {
  return {
    version: 8,
    name: 'CityPulse offline',
    sources: { [SOURCE.provinces]: provinceSource(), ...liveSources() },
    layers: [{ id: LAYER.sea, type: 'background', paint: { 'background-color': PALETTE.sea } }, ...provinceLayers(true), ...liveLayers()],
  };
}

/**
 * Adds the province outlines and the live layers on top of a base style that is not ours (a
 * Mapbox base map): its own land and water show through, our layers behave exactly the same.
 */
export function addOverlay(map: { addSource(id: string, source: GeoJSONSourceSpecification): unknown; addLayer(layer: LayerSpecification): unknown; getSource(id: string): unknown }): void {
  if (!map.getSource(SOURCE.provinces)) map.addSource(SOURCE.provinces, provinceSource());
  for (const [id, source] of Object.entries(liveSources())) if (!map.getSource(id)) map.addSource(id, source);
  for (const layer of [...provinceLayers(false), ...liveLayers()]) map.addLayer(layer);
}
