import { provinceByCode, vnAqiBand, type AlertSeverity } from '@citypulse/contracts';
import { formatNumber } from '../format.js';
import { lang, messages, onLanguageChange, tx, type Message } from '../i18n.js';
import type { Kpis } from '../live/kpis.js';
import { SEVERITY_GLYPHS, severityLabel } from './alerts.js';
import { h } from './dom.js';
import './kpis.css';

const M = messages({
  region: { vi: 'Chỉ số chính', en: 'Key figures' },
  country: { vi: 'Toàn quốc', en: 'Whole country' },
  replay: { vi: 'PHÁT LẠI', en: 'REPLAY' },
  online: { vi: 'Trực tuyến', en: 'Online' },
  onlineDetail: (online: string, offline: string, stale: string) => ({
    vi: `${online} trực tuyến · ${offline} mất kết nối · ${stale} không cập nhật`,
    en: `${online} online · ${offline} offline · ${stale} stale`,
  }),
  aqi: { vi: 'VN_AQI trung bình', en: 'Mean VN_AQI' },
  aqiDetail: (band: string) => ({ vi: `Chỉ số tức thời VN_AQI (QĐ 1459/QĐ-TCMT): ${band}`, en: `Indicative VN_AQI (Decision 1459/QĐ-TCMT): ${band}` }),
  max: (value: string) => ({ vi: `cao nhất ${value}`, en: `max ${value}` }),
  congestion: { vi: 'Ùn tắc (LOS E–F)', en: 'Congested (LOS E–F)' },
  worstLos: (los: string) => ({ vi: `tệ nhất ${los}`, en: `worst ${los}` }),
  load: { vi: 'Tải lưới điện TB', en: 'Mean grid load' },
  outOfBand: (n: string) => ({ vi: `${n} ngoài dải`, en: `${n} out of band` }),
  alerts: { vi: 'Cảnh báo', en: 'Alerts' },
});

/** Shown for a figure no reporting device has. */
const ABSENT = '—';

/** Order of the alert counts: the worst first, where the eye lands. */
const SEVERITY_ORDER: readonly AlertSeverity[] = ['critical', 'warning', 'info'];

interface Figure {
  readonly el: HTMLElement;
  readonly value: HTMLElement;
  readonly sub: HTMLElement;
}

function figure(testId: string, label: Message, value: HTMLElement = h('span', { className: 'kpi-value' })): Figure {
  const sub = h('small', { className: 'kpi-sub' });
  const el = h('div', { className: 'kpi', attrs: { 'data-testid': testId } }, [tx(h('span', { className: 'kpi-label' }), label), h('span', { className: 'kpi-figure' }, [value, sub])]);
  return { el, value, sub };
}

function percent(share: number | undefined): string {
  return share === undefined ? ABSENT : `${formatNumber(share * 100, 0)} %`;
}

/** Black or white, whichever reads better on `color` ('rgb(r,g,b)' or '#rrggbb'). */
export function textColorOn(color: string): '#111' | '#fff' {
  const rgb = /^rgb\((\d+),\s*(\d+),\s*(\d+)\)$/.exec(color)?.slice(1).map(Number) ?? /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(color)?.slice(1).map((x) => parseInt(x, 16));
  if (!rgb || rgb.length !== 3) return '#fff';
  const [r = 0, g = 0, b = 0] = rgb.map((c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  });
  // Contrast against black beats contrast against white above this relative luminance.
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.179 ? '#111' : '#fff';
}

/**
 * The header strip of headline figures for the area in view: devices online, mean VN_AQI,
 * congestion, grid load, active alerts, and a badge while a replay is shown. Elements are built
 * once; `render` only sets texts, so it can run on every summary.
 */
export class KpiHeader {
  readonly el: HTMLElement;
  private readonly scopeName = h('span', { className: 'kpi-scope-name', attrs: { 'data-testid': 'kpi-scope' } });
  private readonly replayBadge = tx(h('span', { className: 'kpi-replay', attrs: { 'data-testid': 'kpi-replay' } }), M.replay);
  private readonly online = figure('kpi-online', M.online);
  private readonly aqi = figure('kpi-aqi', M.aqi, h('span', { className: 'kpi-value kpi-aqi-chip' }));
  private readonly congestion = figure('kpi-congestion', M.congestion);
  private readonly load = figure('kpi-load', M.load);
  private readonly alertCounts = new Map<AlertSeverity, { el: HTMLElement; count: HTMLElement; label: HTMLElement }>();
  private last: { kpis: Kpis; scope: { province: string | null }; mode: 'live' | 'replay' } | null = null;
  private readonly unsubscribe: () => void;

  constructor() {
    const chips = SEVERITY_ORDER.map((severity) => {
      const count = h('span', { className: 'kpi-sev-count' });
      const label = h('span', { className: 'kpi-sev-label' });
      const el = h('span', { className: `kpi-sev sev-${severity}`, attrs: { 'data-severity': severity } }, [
        h('span', { className: 'kpi-sev-glyph', text: SEVERITY_GLYPHS[severity], attrs: { 'aria-hidden': 'true' } }),
        count,
        label,
      ]);
      this.alertCounts.set(severity, { el, count, label });
      return el;
    });
    const alerts = h('div', { className: 'kpi', attrs: { 'data-testid': 'kpi-alerts' } }, [tx(h('span', { className: 'kpi-label' }), M.alerts), h('span', { className: 'kpi-figure kpi-sevs' }, chips)]);
    this.replayBadge.hidden = true;
    this.el = tx(
      h('div', { className: 'kpi-strip', attrs: { role: 'group' } }, [
        h('div', { className: 'kpi kpi-scope' }, [this.scopeName, this.replayBadge]),
        this.online.el,
        this.aqi.el,
        this.congestion.el,
        this.load.el,
        alerts,
      ]),
      M.region,
      'aria-label',
    );
    this.unsubscribe = onLanguageChange(() => {
      if (this.last) this.render(this.last.kpis, this.last.scope, this.last.mode);
    });
  }

  /** Shows `kpis` for the area (null province: the whole country), live or at the replay clock. */
  render(kpis: Kpis, scope: { readonly province: string | null }, mode: 'live' | 'replay'): void {
    this.last = { kpis, scope, mode };
    const en = lang() === 'en';
    const province = scope.province === null ? undefined : provinceByCode(scope.province);
    this.scopeName.textContent = scope.province === null ? M.country() : province ? (en ? province.nameEn : province.name) : scope.province;
    this.replayBadge.hidden = mode !== 'replay';
    this.el.classList.toggle('is-replay', mode === 'replay');

    const d = kpis.devices;
    this.online.value.textContent = `${formatNumber(d.online)}/${formatNumber(d.total)}`;
    this.online.el.title = M.onlineDetail(formatNumber(d.online), formatNumber(d.offline), formatNumber(d.stale));

    const chip = this.aqi.value;
    if (kpis.vnAqiMean === undefined) {
      chip.textContent = ABSENT;
      chip.classList.remove('has-band');
      chip.style.removeProperty('background');
      chip.style.removeProperty('color');
      this.aqi.el.removeAttribute('title');
    } else {
      const band = vnAqiBand(kpis.vnAqiMean);
      chip.textContent = formatNumber(kpis.vnAqiMean, 0);
      chip.classList.add('has-band');
      chip.style.background = band.color;
      chip.style.color = textColorOn(band.color);
      this.aqi.el.title = M.aqiDetail(en ? band.labelEn : band.labelVi);
    }
    this.aqi.sub.textContent = kpis.vnAqiMax === undefined ? '' : M.max(formatNumber(kpis.vnAqiMax, 0));

    this.congestion.value.textContent = percent(kpis.congestedShare);
    this.congestion.sub.textContent = kpis.worstLos === undefined ? '' : M.worstLos(kpis.worstLos);

    this.load.value.textContent = percent(kpis.loadFactorMean);
    const loadNotes = [kpis.loadFactorMax === undefined ? '' : M.max(percent(kpis.loadFactorMax)), kpis.outOfBand > 0 ? M.outOfBand(formatNumber(kpis.outOfBand)) : ''];
    this.load.sub.textContent = loadNotes.filter(Boolean).join(' · ');
    this.load.sub.classList.toggle('is-bad', kpis.outOfBand > 0);

    for (const [severity, chipEls] of this.alertCounts) {
      const n = kpis.alerts[severity];
      chipEls.count.textContent = formatNumber(n);
      chipEls.label.textContent = severityLabel(severity);
      chipEls.el.classList.toggle('is-zero', n === 0);
      chipEls.el.title = `${formatNumber(n)} ${severityLabel(severity)}`;
    }
  }

  /** Stops following language changes. */
  destroy(): void {
    this.unsubscribe();
  }
}
