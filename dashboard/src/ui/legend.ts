import { LOS_COLORS, LOS_LEVELS, VN_AQI_BANDS, readingState, type Domain } from '@citypulse/contracts';
import { DOMAIN_LABELS } from '../format.js';
import { DOMAIN_STROKES } from '../map/style.js';
import { NO_READING_COLOR } from '../live/store.js';
import { bilingual, h, swatch } from './dom.js';

/**
 * Legend for the three domains. Every colour comes from the contract (VN_AQI_BANDS, LOS_COLORS,
 * readingState for energy), so the legend cannot drift from what the map draws.
 */
export function renderLegend(): HTMLElement {
  const row = (color: string, label: string, hint?: string): HTMLElement =>
    h('li', hint ? { title: hint } : {}, [swatch(color), h('span', { text: label })]);

  const environment = h('section', { className: 'legend-domain' }, [
    h('h3', {}, [ringSwatch('environment'), `${DOMAIN_LABELS.environment.vi} — VN_AQI (chỉ số tức thời)`]),
    h(
      'ul',
      { className: 'legend-grid' },
      VN_AQI_BANDS.map((band) => row(band.color, `${band.min}–${band.max} ${band.labelVi}`, band.labelEn)),
    ),
  ]);

  const traffic = h('section', { className: 'legend-domain' }, [
    h('h3', {}, [ringSwatch('traffic'), `${DOMAIN_LABELS.traffic.vi} — mức phục vụ LOS`]),
    h('ul', { className: 'legend-inline' }, LOS_LEVELS.map((los) => row(LOS_COLORS[los], los))),
  ]);

  const energyStates = [
    { state: readingState('energy', { loadFactor: 0.5 }), label: 'Tải < 70 %' },
    { state: readingState('energy', { loadFactor: 0.8 }), label: 'Tải 70–90 %' },
    { state: readingState('energy', { loadFactor: 0.95 }), label: 'Tải ≥ 90 %' },
    { state: readingState('energy', { outOfBand: true }), label: 'Ngoài dải tần số/điện áp' },
  ];
  const energy = h('section', { className: 'legend-domain' }, [
    h('h3', {}, [ringSwatch('energy'), `${DOMAIN_LABELS.energy.vi} — hệ số tải`]),
    h(
      'ul',
      { className: 'legend-grid' },
      energyStates.map((e) => row(e.state.color, e.label)),
    ),
  ]);

  const other = h('ul', { className: 'legend-other legend-grid' }, [row(NO_READING_COLOR, 'Chưa có số liệu', 'no reading'), offlineRow()]);

  const details = h('details', { className: 'legend', attrs: { open: '' } }, [
    h('summary', {}, [bilingual('Chú giải', 'Legend')]),
    environment,
    traffic,
    energy,
    other,
  ]);
  return details;
}

function ringSwatch(domain: Domain): HTMLElement {
  const el = h('span', { className: 'ring', attrs: { 'aria-hidden': 'true' }, title: `viền ${DOMAIN_LABELS[domain].vi}` });
  el.style.borderColor = DOMAIN_STROKES[domain];
  return el;
}

function offlineRow(): HTMLElement {
  const sw = swatch(NO_READING_COLOR);
  sw.style.opacity = '0.35';
  return h('li', { title: 'offline' }, [sw, h('span', { text: 'Mất kết nối (mờ)' })]);
}
