import type * as maplibre from 'maplibre-gl';
import 'maplibre-gl/dist/maplibre-gl.css';
// maplibre-gl 6 computes its worker's URL at run time from its own module URL, which a bundler
// cannot follow; the worker (a self-contained ES module) is emitted as an asset instead and
// handed to setWorkerUrl, so it always loads from our own origin.
import maplibreWorkerUrl from 'maplibre-gl/dist/maplibre-gl-worker.mjs?url';

/**
 * The one seam between the dashboard and a map library. The rest of the code uses maplibre's
 * types; mapbox-gl 1.x has the same API for everything used here (Map, Marker, GeoJSON sources
 * with promoteId, feature-state, fitBounds), so either engine satisfies MapEngine.
 */
export type MapInstance = maplibre.Map;
export type MapOptions = maplibre.MapOptions;

export interface MapEngine {
  readonly name: 'maplibre' | 'mapbox';
  readonly Map: typeof maplibre.Map;
  readonly Marker: typeof maplibre.Marker;
  readonly NavigationControl: typeof maplibre.NavigationControl;
  readonly AttributionControl: typeof maplibre.AttributionControl;
  readonly Popup: typeof maplibre.Popup;
}

/**
 * Loads the map library. Without a token (the default) it is always maplibre-gl with the style
 * the project ships: no account, no remote request, works offline. With an operator-configured
 * Mapbox token it loads mapbox-gl 1.x instead (v2+ needs a token for every map load and reports
 * usage to Mapbox). Both are dynamic imports, so each is its own chunk and only one is fetched.
 */
export async function loadMapEngine(mapboxToken: string | null): Promise<MapEngine> {
  if (mapboxToken === null) {
    const lib = await import('maplibre-gl');
    lib.setWorkerUrl(maplibreWorkerUrl);
    return { name: 'maplibre', Map: lib.Map, Marker: lib.Marker, NavigationControl: lib.NavigationControl, AttributionControl: lib.AttributionControl, Popup: lib.Popup };
  }
  const [lib] = await Promise.all([import('mapbox-gl'), import('mapbox-gl/dist/mapbox-gl.css')]);
  const mapboxgl = lib.default;
  mapboxgl.accessToken = mapboxToken;
  return {
    name: 'mapbox',
    Map: mapboxgl.Map as typeof maplibre.Map,
    Marker: mapboxgl.Marker as typeof maplibre.Marker,
    NavigationControl: mapboxgl.NavigationControl as typeof maplibre.NavigationControl,
    AttributionControl: mapboxgl.AttributionControl as typeof maplibre.AttributionControl,
    Popup: mapboxgl.Popup as typeof maplibre.Popup,
  };
}
