/**
 * mapbox-gl 1.13 ships no TypeScript types. Only what src/map/engine.ts touches is declared; the
 * classes are used through maplibre-gl's types, whose API mapbox-gl 1.x shares.
 */
declare module 'mapbox-gl' {
  const mapboxgl: {
    accessToken: string;
    readonly Map: unknown;
    readonly Marker: unknown;
    readonly NavigationControl: unknown;
    readonly AttributionControl: unknown;
    readonly Popup: unknown;
  };
  export default mapboxgl;
}
