import { DOMAINS, LOS_COLORS, LOS_LEVELS, US_EPA_AQI_BANDS, VN_AQI_BANDS, readingState, type Domain } from '@citypulse/contracts';
import { DOMAIN_LABELS } from '../format.js';
import { messages, onLanguageChange, pick, tx } from '../i18n.js';
import { NO_READING_COLOR, SEVERITY_PALETTE, type AqiScale } from '../live/features.js';
import { CHOROPLETH_KPIS, CHOROPLETH_SCALES, choroplethLabel, noDataLabel, type ChoroplethKpi } from '../map/choropleth.js';
import { ALERT_RING_COLORS, DOMAIN_STROKES } from '../map/style.js';
import { h, swatch } from './dom.js';

/**
 * The layer control and its legend, in one panel over the map: which domains are drawn, the
 * air-quality scale (VN_AQI by default; US EPA as a clearly labelled alternative), the VN_AQI
 * heatmap, the province choropleth and, with a Mapbox token, the base map. Every colour shown
 * comes from the contract or from the module that draws it, so the legend cannot drift.
 */

const M = messages({
  title: { vi: 'Lớp bản đồ & chú giải', en: 'Layers & legend' },
  heatmap: { vi: 'Bản đồ nhiệt chất lượng không khí', en: 'Air-quality heatmap' },
  scale: { vi: 'Thang chất lượng không khí', en: 'Air-quality scale' },
  vnScale: { vi: 'VN_AQI (QĐ 1459/QĐ-TCMT) — chuẩn Việt Nam', en: 'VN_AQI (Decision 1459/QĐ-TCMT) — Vietnam' },
  epaScale: { vi: 'US EPA AQI (2024) — thang Mỹ, KHÔNG phải VN_AQI', en: 'US EPA AQI (2024) — US scale, NOT VN_AQI' },
  epaNote: { vi: 'Đang hiển thị thang US EPA, không phải VN_AQI', en: 'Showing the US EPA scale, not VN_AQI' },
  choropleth: { vi: 'Tô màu tỉnh/thành theo', en: 'Colour provinces by' },
  base: { vi: 'Nền bản đồ', en: 'Base map' },
  baseOffline: { vi: 'CityPulse (ngoại tuyến)', en: 'CityPulse (offline)' },
  baseDark: { vi: 'Mapbox tối', en: 'Mapbox dark' },
  baseStreets: { vi: 'Mapbox đường phố', en: 'Mapbox streets' },
  los: { vi: 'mức phục vụ LOS (HCM)', en: 'level of service (HCM)' },
  load: { vi: 'hệ số tải', en: 'load factor' },
  loadLow: { vi: 'Tải < 70 %', en: 'Load < 70 %' },
  loadMid: { vi: 'Tải 70–90 %', en: 'Load 70–90 %' },
  loadHigh: { vi: 'Tải ≥ 90 %', en: 'Load ≥ 90 %' },
  outOfBand: { vi: 'Ngoài dải tần số/điện áp', en: 'Frequency/voltage out of band' },
  noReading: { vi: 'Chưa có số liệu', en: 'No reading' },
  offline: { vi: 'Mất kết nối (mờ)', en: 'Offline (faded)' },
  alerts: { vi: 'Vòng cảnh báo: thông tin / cảnh báo / nghiêm trọng', en: 'Alert ring: info / warning / critical' },
  cluster: { vi: 'Cụm: màu của thiết bị xấu nhất, số là số thiết bị', en: 'Cluster: colour of its worst device, number of devices' },
  ring: { vi: 'Viền: lĩnh vực', en: 'Outline: domain' },
  vnAqiIndicative: { vi: 'VN_AQI (chỉ số tức thời)', en: 'VN_AQI (indicative)' },
});

export type BaseMap = 'offline' | 'mapbox-dark' | 'mapbox-streets';

export interface LayerState {
  readonly domains: ReadonlySet<Domain>;
  readonly heatmap: boolean;
  readonly scale: AqiScale;
  readonly choropleth: ChoroplethKpi;
  readonly base: BaseMap;
}

export const DEFAULT_LAYERS: LayerState = { domains: new Set(DOMAINS), heatmap: false, scale: 'vn', choropleth: 'none', base: 'offline' };

export class LayerControl {
  readonly el: HTMLDetailsElement;
  private state: LayerState;
  private readonly body = h('div', { className: 'legend-body' });

  private mapbox: boolean;
  private readonly unsubscribe: () => void;

  constructor(
    initial: LayerState,
    private readonly options: { readonly mapbox: boolean; onChange(state: LayerState): void },
  ) {
    this.state = initial;
    this.mapbox = options.mapbox;
    const summary = h('summary', {});
    tx(summary, M.title);
    this.el = h('details', { className: 'legend', attrs: { open: '', 'data-testid': 'layers' } }, [summary, this.body]);
    this.render();
    this.unsubscribe = onLanguageChange(() => this.render());
  }

  destroy(): void {
    this.unsubscribe();
  }

  get current(): LayerState {
    return this.state;
  }

  /** Offers the Mapbox base maps (the Mapbox engine was loaded: a token is configured). */
  enableBaseMaps(): void {
    this.mapbox = true;
    this.render();
  }

  /** Shows a base map chosen by the app (the default, or the fallback after a failure); no onChange. */
  setBase(base: BaseMap): void {
    this.state = { ...this.state, base };
    this.render();
  }

  private set(next: Partial<LayerState>): void {
    this.state = { ...this.state, ...next };
    this.render();
    this.options.onChange(this.state);
  }

  private render(): void {
    const s = this.state;
    const focused = document.activeElement instanceof HTMLElement && this.el.contains(document.activeElement) ? document.activeElement.dataset.key : undefined;
    const check = (key: string, label: Node | string, checked: boolean, onChange: (on: boolean) => void): HTMLElement => {
      const input = h('input', { attrs: { type: 'checkbox', 'data-key': key, 'data-testid': `layer-${key}` } });
      input.checked = checked;
      input.addEventListener('change', () => onChange(input.checked));
      return h('label', { className: 'legend-toggle' }, [input, label]);
    };
    const domainSection = (domain: Domain, rows: HTMLElement[], detail: string): HTMLElement => {
      const on = s.domains.has(domain);
      const label = h('span', {}, [ringSwatch(domain), `${pick(DOMAIN_LABELS[domain])} — ${detail}`]);
      return h('section', { className: `legend-domain${on ? '' : ' is-off'}` }, [
        check(domain, label, on, (checked) => {
          const domains = new Set(s.domains);
          if (checked) domains.add(domain);
          else domains.delete(domain);
          this.set({ domains });
        }),
        on ? h('ul', { className: 'legend-grid' }, rows) : null,
      ]);
    };

    const bands = s.scale === 'epa' ? US_EPA_AQI_BANDS : VN_AQI_BANDS;
    const envRows = bands.map((band) => row(band.color, `${band.min}–${band.max} ${pick({ vi: band.labelVi, en: band.labelEn })}`));
    const scaleSelect = h('select', { attrs: { 'data-key': 'scale', 'data-testid': 'layer-scale', 'aria-label': M.scale() } }, [
      h('option', { text: M.vnScale(), attrs: { value: 'vn' } }),
      h('option', { text: M.epaScale(), attrs: { value: 'epa' } }),
    ]);
    scaleSelect.value = s.scale;
    scaleSelect.addEventListener('change', () => this.set({ scale: scaleSelect.value === 'epa' ? 'epa' : 'vn' }));

    const energyRows = [
      row(readingState('energy', { loadFactor: 0.5 }).color, M.loadLow()),
      row(readingState('energy', { loadFactor: 0.8 }).color, M.loadMid()),
      row(readingState('energy', { loadFactor: 0.95 }).color, M.loadHigh()),
      row(readingState('energy', { outOfBand: true }).color, M.outOfBand()),
    ];

    const choropleth = h(
      'select',
      { attrs: { 'data-key': 'choropleth', 'data-testid': 'layer-choropleth', 'aria-label': M.choropleth() } },
      CHOROPLETH_KPIS.map((kpi) => h('option', { text: choroplethLabel(kpi), attrs: { value: kpi } })),
    );
    choropleth.value = s.choropleth;
    choropleth.addEventListener('change', () => this.set({ choropleth: choropleth.value as ChoroplethKpi }));
    const choroplethLegend =
      s.choropleth === 'none'
        ? null
        : h('ul', { className: 'legend-grid' }, [...CHOROPLETH_SCALES[s.choropleth].stops.map((stop) => row(stop.color, stop.text)), row('rgba(0,0,0,0)', noDataLabel())]);

    let base: HTMLElement | null = null;
    if (this.mapbox) {
      const select = h('select', { attrs: { 'data-key': 'base', 'data-testid': 'layer-base', 'aria-label': M.base() } }, [
        h('option', { text: M.baseOffline(), attrs: { value: 'offline' } }),
        h('option', { text: M.baseDark(), attrs: { value: 'mapbox-dark' } }),
        h('option', { text: M.baseStreets(), attrs: { value: 'mapbox-streets' } }),
      ]);
      select.value = s.base;
      select.addEventListener('change', () => this.set({ base: select.value as BaseMap }));
      base = h('label', { className: 'legend-field' }, [h('span', { text: M.base() }), select]);
    }

    const alertRings = h('li', {}, [
      ...([1, 2, 3] as const).map((level) => {
        const ring = h('span', { className: 'ring', attrs: { 'aria-hidden': 'true' } });
        ring.style.borderColor = ALERT_RING_COLORS[level];
        return ring;
      }),
      h('span', { text: M.alerts() }),
    ]);
    const cluster = swatch(SEVERITY_PALETTE[12] ?? '#f00');
    cluster.classList.add('swatch-round');

    const children: (HTMLElement | null)[] = [
      h('label', { className: 'legend-field' }, [h('span', { text: M.scale() }), scaleSelect]),
      s.scale === 'epa' ? h('p', { className: 'legend-warning', text: `⚠ ${M.epaNote()}`, attrs: { 'data-testid': 'epa-note' } }) : null,
      domainSection('environment', envRows, s.scale === 'epa' ? 'US EPA AQI' : M.vnAqiIndicative()),
      check('heatmap', M.heatmap(), s.heatmap, (heatmap) => this.set({ heatmap })),
      domainSection('traffic', LOS_LEVELS.map((los) => row(LOS_COLORS[los], los)), M.los()),
      domainSection('energy', energyRows, M.load()),
      h('label', { className: 'legend-field' }, [h('span', { text: M.choropleth() }), choropleth]),
      choroplethLegend,
      base,
      h('ul', { className: 'legend-other legend-grid' }, [row(NO_READING_COLOR, M.noReading()), offlineRow(), alertRings, h('li', {}, [cluster, h('span', { text: M.cluster() })])]),
    ];
    this.body.replaceChildren(...children.filter((child): child is HTMLElement => child !== null));
    if (focused) this.body.querySelector<HTMLElement>(`[data-key="${focused}"]`)?.focus();
  }
}

function row(color: string, label: string): HTMLElement {
  return h('li', {}, [swatch(color), h('span', { text: label })]);
}

function ringSwatch(domain: Domain): HTMLElement {
  const el = h('span', { className: 'ring', attrs: { 'aria-hidden': 'true' }, title: M.ring() });
  el.style.borderColor = DOMAIN_STROKES[domain];
  return el;
}

function offlineRow(): HTMLElement {
  const sw = swatch(NO_READING_COLOR);
  sw.style.opacity = '0.35';
  return h('li', {}, [sw, h('span', { text: M.offline() })]);
}
