import { PROVINCE_CODES } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import { type Kpis } from '../src/live/kpis.js';
import { ProvinceChoropleth } from '../src/map/choropleth.js';
import { type MapInstance } from '../src/map/engine.js';
import { LAYER } from '../src/map/style.js';

/** A stand-in for the map that records calls (the drawing itself is covered by the browser tests). */
function recordingMap() {
  const calls = { featureStates: [] as { id: string; color: string | null }[], visibility: [] as string[] };
  const map = {
    getLayer: (id: string) => (id === LAYER.choropleth ? {} : undefined),
    setLayoutProperty: (_layer: string, _name: string, value: string) => calls.visibility.push(value),
    setFeatureState: (target: { id: string }, state: { color: string | null }) => calls.featureStates.push({ id: target.id, color: state.color }),
  };
  return { map: map as unknown as MapInstance, calls };
}

const kpisWithAqi = (mean: number | undefined) => ({ vnAqiMean: mean }) as unknown as Kpis;

describe('ProvinceChoropleth', () => {
  it('sets every province once, then only the ones whose colour changed', () => {
    const { map, calls } = recordingMap();
    const choropleth = new ProvinceChoropleth(map);
    const values = new Map<string, number>([['01', 40], ['79', 120]]);
    const kpisOf = (code: string) => kpisWithAqi(values.get(code));
    choropleth.apply('vnAqi', kpisOf);
    expect(calls.visibility).toEqual(['visible']);
    expect(calls.featureStates).toHaveLength(PROVINCE_CODES.length);
    expect(calls.featureStates.find((c) => c.id === '11')?.color).toBeNull();

    calls.featureStates.length = 0;
    choropleth.apply('vnAqi', kpisOf);
    expect(calls.featureStates).toEqual([]);

    values.set('01', 45); // same band, same colour
    values.set('79', 160); // poor → bad
    choropleth.apply('vnAqi', kpisOf);
    expect(calls.featureStates).toEqual([{ id: '79', color: 'rgb(255,0,0)' }]);
    expect(calls.visibility).toEqual(['visible']);
  });

  it('does nothing while hidden, and draws everything again after a style load', () => {
    const { map, calls } = recordingMap();
    const choropleth = new ProvinceChoropleth(map);
    let asked = 0;
    const kpisOf = (code: string) => {
      asked++;
      return kpisWithAqi(code === '01' ? 40 : undefined);
    };
    choropleth.apply('none', kpisOf);
    choropleth.apply('none', kpisOf);
    expect(calls.visibility).toEqual(['none']);
    expect(calls.featureStates).toEqual([]);
    expect(asked).toBe(0);

    choropleth.apply('vnAqi', kpisOf);
    expect(calls.featureStates).toHaveLength(PROVINCE_CODES.length);
    choropleth.invalidate();
    choropleth.apply('vnAqi', kpisOf);
    expect(calls.featureStates).toHaveLength(2 * PROVINCE_CODES.length);
    expect(calls.visibility).toEqual(['none', 'visible', 'visible']);
  });
});
