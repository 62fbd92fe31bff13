import collection from './data/provinces.json' with { type: 'json' };

/**
 * Vietnam's 34 provincial-level units since 1 July 2025 (Resolution 202/2025/QH15, codes per
 * Decision 19/2025/QĐ-TTg). Data: data/provinces.json, copied with data/NOTICE.md (MIT).
 * Codes changed meaning in the merger (91 was Kiên Giang, now An Giang): never join 63-era data
 * on the code alone.
 */
export type LngLat = readonly [lng: number, lat: number];
type Ring = readonly LngLat[];
type PolygonCoordinates = readonly Ring[];

export interface ProvinceProperties {
  readonly code: string;
  readonly name: string;
  readonly nameEn: string;
  readonly type: 'city' | 'province';
  readonly areaKm2: number;
  readonly population: number;
  readonly adminCentre: string;
  readonly mergedFrom: readonly string[];
  readonly labelLng: number;
  readonly labelLat: number;
}

export type ProvinceGeometry =
  | { readonly type: 'Polygon'; readonly coordinates: PolygonCoordinates }
  | { readonly type: 'MultiPolygon'; readonly coordinates: readonly PolygonCoordinates[] };

export interface ProvinceFeature {
  readonly type: 'Feature';
  readonly properties: ProvinceProperties;
  readonly geometry: ProvinceGeometry;
}

export interface ProvinceCollection {
  readonly type: 'FeatureCollection';
  readonly features: readonly ProvinceFeature[];
}

export interface Province extends ProvinceProperties {
  /** A point inside the polygon, for labels and as the centre of simulated device clusters. */
  readonly label: LngLat;
  /**
   * [west, south, east, north] of the largest part (the mainland), so "fly to Đà Nẵng" frames
   * the city rather than the city and the Hoàng Sa islands together.
   */
  readonly bbox: readonly [number, number, number, number];
}

/** The boundaries as RFC 7946 GeoJSON (outer rings counter-clockwise). */
export const PROVINCE_BOUNDARIES = collection as unknown as ProvinceCollection;

export const PROVINCES: readonly Province[] = PROVINCE_BOUNDARIES.features.map((f) => ({
  ...f.properties,
  label: [f.properties.labelLng, f.properties.labelLat] as const,
  bbox: boundingBox(f.geometry),
}));

const BY_CODE = new Map(PROVINCES.map((p) => [p.code, p]));
const FEATURE_BY_CODE = new Map(PROVINCE_BOUNDARIES.features.map((f) => [f.properties.code, f]));

export const PROVINCE_CODES: readonly string[] = PROVINCES.map((p) => p.code);

export function isProvinceCode(code: string): boolean {
  return BY_CODE.has(code);
}

export function provinceByCode(code: string): Province | undefined {
  return BY_CODE.get(code);
}

export function provinceFeature(code: string): ProvinceFeature | undefined {
  return FEATURE_BY_CODE.get(code);
}

/** Even-odd ray casting over every ring of the province (holes excluded). */
export function isInsideProvince(code: string, point: LngLat): boolean {
  const feature = FEATURE_BY_CODE.get(code);
  if (!feature) return false;
  const polygons = feature.geometry.type === 'Polygon' ? [feature.geometry.coordinates] : feature.geometry.coordinates;
  return polygons.some((rings) => rings.reduce((inside, ring) => (ringContains(ring, point) ? !inside : inside), false));
}

function ringContains(ring: Ring, [x, y]: LngLat): boolean {
  let inside = false;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const a = ring[i];
    const b = ring[j];
    if (!a || !b) continue;
    if (a[1] > y !== b[1] > y && x < ((b[0] - a[0]) * (y - a[1])) / (b[1] - a[1]) + a[0]) inside = !inside;
  }
  return inside;
}

/** Bounding box of the outer ring of the largest polygon. */
function boundingBox(geometry: ProvinceGeometry): [number, number, number, number] {
  const polygons = geometry.type === 'Polygon' ? [geometry.coordinates] : geometry.coordinates;
  let largest: Ring = [];
  let largestArea = -1;
  for (const rings of polygons) {
    const outer = rings[0] ?? [];
    const area = Math.abs(ringArea(outer));
    if (area > largestArea) {
      largest = outer;
      largestArea = area;
    }
  }
  const box: [number, number, number, number] = [Infinity, Infinity, -Infinity, -Infinity];
  for (const [lng, lat] of largest) {
    box[0] = Math.min(box[0], lng);
    box[1] = Math.min(box[1], lat);
    box[2] = Math.max(box[2], lng);
    box[3] = Math.max(box[3], lat);
  }
  return box;
}

/** Shoelace area in square degrees: enough to rank the parts of one province. */
function ringArea(ring: Ring): number {
  let sum = 0;
  for (let i = 0, j = ring.length - 1; i < ring.length; j = i++) {
    const a = ring[i];
    const b = ring[j];
    if (a && b) sum += (b[0] - a[0]) * (b[1] + a[1]);
  }
  return sum / 2;
}
