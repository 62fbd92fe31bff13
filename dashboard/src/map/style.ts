import { PROVINCE_BOUNDARIES, PROVINCES, type Domain } from '@citypulse/contracts';
import type { ExpressionSpecification, GeoJSONSourceSpecification, LngLatBoundsLike, StyleSpecification } from 'maplibre-gl';
import { NO_READING_COLOR } from '../live/store.js';

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

export const SOURCE = { provinces: 'provinces', devices: 'devices' } as const;
export const LAYER = {
  sea: 'sea',
  provinceFill: 'province-fill',
  provinceLine: 'province-line',
  provinceSelected: 'province-selected',
  deviceSelected: 'device-selected',
  devices: 'devices',
} as const;

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

export function buildStyle(): StyleSpecification {
  const provinces: GeoJSONSourceSpecification = {
    type: 'geojson',
    // maplibre types `data` with the global GeoJSON namespace of @types/geojson, which is not a
    // dependency here, so it accepts any value; the contract's collection is RFC 7946 GeoJSON.
    data: PROVINCE_BOUNDARIES,
  };
  const devices: GeoJSONSourceSpecification = {
    type: 'geojson',
    data: { type: 'FeatureCollection', features: [] },
    // deviceId becomes the feature id, so a reading updates one feature's state in place.
    promoteId: 'deviceId',
  };
  return {
    version: 8,
    name: 'CityPulse offline',
    sources: { [SOURCE.provinces]: provinces, [SOURCE.devices]: devices },
    layers: [
      { id: LAYER.sea, type: 'background', paint: { 'background-color': PALETTE.sea } },
      { id: LAYER.provinceFill, type: 'fill', source: SOURCE.provinces, paint: { 'fill-color': PALETTE.land, 'fill-opacity': 1 } },
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
        paint: {
          // feature-state carries the live colour (set once per animation frame for the devices
          // that changed); the property is the colour at the last setData.
          'circle-color': ['to-color', ['coalesce', ['feature-state', 'color'], ['get', 'color'], NO_READING_COLOR]],
          'circle-radius': ['interpolate', ['linear'], ['zoom'], 4, 5.5, 8, 8, 12, 12],
          'circle-stroke-color': domainStroke,
          'circle-stroke-width': ['interpolate', ['linear'], ['zoom'], 4, 1.5, 10, 2.5],
          'circle-opacity': ['case', ['boolean', ['coalesce', ['feature-state', 'offline'], ['get', 'offline']], false], 0.35, 1],
          'circle-stroke-opacity': ['case', ['boolean', ['coalesce', ['feature-state', 'offline'], ['get', 'offline']], false], 0.35, 1],
        },
      },
    ],
  };
}
