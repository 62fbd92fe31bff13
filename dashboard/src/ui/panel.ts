import { DEFAULT_HISTORY_FIELDS, provinceByCode, type HistoryResponse } from '@citypulse/contracts';
import { isUnauthorized, type HistoryParams } from '../api.js';
import { DOMAIN_LABELS, describeReading, formatDateTime, formatNumber, headline } from '../format.js';
import { lang, messages, onLanguageChange, pick, tx, type Message, type Translation } from '../i18n.js';
import { type DeviceEntry, type DeviceStore } from '../live/store.js';
import { HistoryCharts } from './chart.js';
import { h } from './dom.js';
import './panel.css';

/** History windows the panel offers, in ms. */
export const HISTORY_RANGES = {
  '1h': 3_600_000,
  '6h': 6 * 3_600_000,
  '24h': 24 * 3_600_000,
  '7d': 7 * 86_400_000,
  '30d': 30 * 86_400_000,
} as const;
export type HistoryRange = keyof typeof HISTORY_RANGES;

/** History shown when a device is first opened. */
export const HISTORY_WINDOW_MS = HISTORY_RANGES['1h'];
/** The history is reloaded at most this often. */
export const HISTORY_REFRESH_MS = 5_000;
/**
 * Windows asked for: the api picks the nicest window width that fits (10 s for 1 h, 1 min for 6 h,
 * 5 min for 24 h, 30 min for 7 days, 3 h for 30 days) and raw data or roll-ups by itself.
 */
const HISTORY_MAX_POINTS = 360;
/** Panel width minus its padding (styles.css .panel). */
const CHART_WIDTH_PX = 336;

/**
 * How far the window's end must move before a reload is worth it: about half a window, so a
 * 30-day chart is not re-read every 5 s for a change no one can see.
 */
function refreshAfterMs(range: HistoryRange): number {
  return Math.max(HISTORY_REFRESH_MS, HISTORY_RANGES[range] / 720);
}

interface RangeText {
  readonly button: Translation;
  /** Vietnamese span ("6 giờ"), English "last …" and span ("6 hours"). */
  readonly vi: string;
  readonly enLast: string;
  readonly enSpan: string;
}

const RANGE_TEXT: Readonly<Record<HistoryRange, RangeText>> = {
  '1h': { button: { vi: '1 giờ', en: '1 h' }, vi: '1 giờ', enLast: 'last hour', enSpan: '1 hour' },
  '6h': { button: { vi: '6 giờ', en: '6 h' }, vi: '6 giờ', enLast: 'last 6 hours', enSpan: '6 hours' },
  '24h': { button: { vi: '24 giờ', en: '24 h' }, vi: '24 giờ', enLast: 'last 24 hours', enSpan: '24 hours' },
  '7d': { button: { vi: '7 ngày', en: '7 days' }, vi: '7 ngày', enLast: 'last 7 days', enSpan: '7 days' },
  '30d': { button: { vi: '30 ngày', en: '30 days' }, vi: '30 ngày', enLast: 'last 30 days', enSpan: '30 days' },
};

const STATUS: Readonly<Record<string, Translation>> = {
  online: { vi: 'Trực tuyến', en: 'Online' },
  offline: { vi: 'Mất kết nối', en: 'Offline' },
  unknown: { vi: 'Chưa rõ', en: 'Unknown' },
};

/** "6 giờ qua" / "last 6 hours", or up to the replay clock when following a replay. */
function span(range: HistoryRange, replay: boolean): Translation {
  const t = RANGE_TEXT[range];
  return replay ? { vi: `${t.vi} trước thời điểm phát lại`, en: `${t.enSpan} up to the replay clock` } : { vi: `${t.vi} qua`, en: t.enLast };
}

/** An aggregation window's width: "10 s", "5 phút" / "5 min", "3 giờ" / "3 h", "1 ngày" / "1 day". */
function windowText(ms: number): Translation {
  const s = Math.round(ms / 1000);
  if (s < 60) return { vi: `${s} s`, en: `${s} s` };
  if (s < 3600) return { vi: `${Math.round(s / 60)} phút`, en: `${Math.round(s / 60)} min` };
  if (s < 86_400) return { vi: `${Math.round(s / 3600)} giờ`, en: `${Math.round(s / 3600)} h` };
  const days = Math.round(s / 86_400);
  return { vi: `${days} ngày`, en: `${days} ${days === 1 ? 'day' : 'days'}` };
}

const M = messages({
  region: { vi: 'Chi tiết thiết bị', en: 'Device details' },
  close: { vi: 'Đóng', en: 'Close' },
  latest: { vi: 'Giá trị mới nhất', en: 'Latest values' },
  rangeGroup: { vi: 'Khoảng thời gian của lịch sử', en: 'History range' },
  rangeButton: (r: HistoryRange) => RANGE_TEXT[r].button,
  heading: (r: HistoryRange, replay: boolean) => {
    const s = span(r, replay);
    return { vi: `Lịch sử ${s.vi}`, en: `History, ${s.en}` };
  },
  deviceId: { vi: 'Mã thiết bị', en: 'Device ID' },
  province: { vi: 'Tỉnh/thành', en: 'Province' },
  domain: { vi: 'Lĩnh vực', en: 'Domain' },
  kind: { vi: 'Loại', en: 'Type' },
  status: { vi: 'Trạng thái', en: 'Status' },
  location: { vi: 'Vị trí', en: 'Location' },
  readingTime: { vi: 'Thời điểm đo', en: 'Measured at' },
  statusLabel: (s: string) => STATUS[s] ?? { vi: s, en: s },
  ago: (ms: number) => {
    const s = Math.max(0, Math.round(ms / 1000));
    const m = Math.round(s / 60);
    if (s < 60) return { vi: `${s} s trước`, en: `${s} s ago` };
    if (m < 60) return { vi: `${m} phút trước`, en: `${m} min ago` };
    return { vi: `${formatNumber(m / 60, 1)} giờ trước`, en: `${(m / 60).toFixed(1)} h ago` };
  },
  gone: { vi: 'Thiết bị không còn trong danh sách', en: 'Device no longer listed' },
  noReading: { vi: 'Chưa có số liệu', en: 'No reading yet' },
  loading: { vi: 'Đang tải…', en: 'Loading…' },
  noData: (r: HistoryRange, replay: boolean) => {
    const s = span(r, replay);
    return { vi: `Chưa có số liệu trong ${s.vi}`, en: `No data in the ${s.en}` };
  },
  // The Vietnamese text keeps "N điểm": the browser test reads it.
  points: (n: number, window: Translation, at: string, replay: boolean) => ({
    vi: `${n} điểm, trung bình mỗi ${window.vi} · ${replay ? 'đến' : 'cập nhật'} ${at}`,
    en: `${n} ${n === 1 ? 'point' : 'points'}, mean per ${window.en} · ${replay ? 'up to' : 'updated'} ${at}`,
  }),
  failed: (reason: string) => ({ vi: `Không tải được lịch sử: ${reason}`, en: `Could not load the history: ${reason}` }),
});

export interface PanelDeps {
  readonly store: DeviceStore;
  readonly fetchHistory: (id: string, params: HistoryParams, signal: AbortSignal) => Promise<HistoryResponse>;
  readonly onClose: () => void;
  readonly onUnauthorized: () => void;
}

/**
 * The side panel of one device: identity, latest values with units, and its history over a range
 * the operator picks (1 h to 30 days). While a replay runs (`setClock`) the history ends at the
 * replay clock and the charts mark it.
 */
export class DevicePanel {
  readonly el: HTMLElement;
  private readonly title = h('h2', { className: 'panel-title' });
  private readonly identity = h('dl', { className: 'panel-identity' });
  private readonly summary = h('div', { className: 'panel-summary' });
  private readonly values = h('table', { className: 'panel-values' });
  private readonly historyHeading = h('h3', { className: 'panel-history-heading' });
  private readonly rangeButtons: Map<HistoryRange, HTMLButtonElement>;
  private readonly historyStatus = h('p', { className: 'panel-history-status' });
  private readonly charts = new HistoryCharts();
  private deviceId: string | null = null;
  private historyRange: HistoryRange = '1h';
  /** The replay clock the history ends at, or null for now (live). */
  private clock: number | null = null;
  /** Wall time the last history answer (or failure) came. 0: nothing shown yet for this device and range. */
  private historyLoadedAt = 0;
  /** End of the window last asked for (now, or the replay clock). */
  private loadedEnd = 0;
  private historyRequest: AbortController | null = null;
  private historyTimer: ReturnType<typeof setTimeout> | undefined;
  /** The status line as a function of the language, so a language change re-renders it. */
  private statusText: Message | null = null;
  private readonly unsubscribe: () => void;

  constructor(private readonly deps: PanelDeps) {
    const close = h('button', { className: 'panel-close', text: '×', attrs: { type: 'button' } });
    tx(close, M.close, 'aria-label');
    tx(close, M.close, 'title');
    close.addEventListener('click', () => this.deps.onClose());

    this.rangeButtons = new Map(
      (Object.keys(HISTORY_RANGES) as HistoryRange[]).map((range) => {
        const button = tx(h('button', { className: 'history-range-button', attrs: { type: 'button', 'data-range': range, 'aria-pressed': String(range === this.historyRange) } }), () => M.rangeButton(range));
        button.addEventListener('click', () => this.setRange(range));
        return [range, button];
      }),
    );
    const rangeControl = h('div', { className: 'history-range', attrs: { role: 'group', 'data-testid': 'history-range' } }, [...this.rangeButtons.values()]);
    tx(rangeControl, M.rangeGroup, 'aria-label');

    this.el = h('aside', { className: 'panel', attrs: { 'data-testid': 'device-panel' } }, [
      h('header', { className: 'panel-header' }, [this.title, close]),
      this.identity,
      this.summary,
      tx(h('h3'), M.latest),
      this.values,
      this.historyHeading,
      rangeControl,
      this.historyStatus,
      this.charts.el,
    ]);
    tx(this.el, M.region, 'aria-label');
    this.el.hidden = true;
    this.renderHeading();
    this.unsubscribe = onLanguageChange(() => {
      this.renderHeading();
      this.historyStatus.textContent = this.statusText?.() ?? '';
      this.charts.relabel();
      if (this.deviceId !== null) this.renderDevice();
    });
  }

  get selected(): string | null {
    return this.deviceId;
  }

  /** The history range shown. */
  get range(): HistoryRange {
    return this.historyRange;
  }

  open(id: string): void {
    if (this.deviceId !== id) {
      this.cancelHistory();
      this.charts.clear();
      this.historyLoadedAt = 0;
    }
    this.deviceId = id;
    this.el.hidden = false;
    this.el.dataset.deviceId = id;
    this.renderDevice();
    this.loadHistory();
  }

  close(): void {
    this.cancelHistory();
    this.charts.clear();
    this.deviceId = null;
    delete this.el.dataset.deviceId;
    this.el.hidden = true;
  }

  /** After a batch was applied: re-render if the open device changed, refresh its history (throttled). */
  update(changed: readonly string[], membership: boolean): void {
    if (this.deviceId === null) return;
    if (!membership && !changed.includes(this.deviceId)) return;
    this.renderDevice();
    this.scheduleHistory();
  }

  /** Re-renders relative times ("12 s trước") without new data. */
  tick(): void {
    if (this.deviceId !== null) this.renderIdentity();
  }

  /** Shows the history over `range` (reloaded now). */
  setRange(range: HistoryRange): void {
    if (range === this.historyRange) return;
    this.historyRange = range;
    for (const [r, button] of this.rangeButtons) button.setAttribute('aria-pressed', String(r === range));
    this.renderHeading();
    if (this.deviceId === null) return;
    this.historyLoadedAt = 0; // "loading" until the new range arrives
    this.reloadHistory();
  }

  /**
   * Follows a replay: with a clock (epoch ms) the history ends there and the charts mark it,
   * reloaded as the clock moves (throttled) and at once after a seek; null returns to live.
   */
  setClock(clock: number | null): void {
    const previous = this.clock;
    if (clock === previous) return;
    this.clock = clock;
    this.charts.setMarker(clock);
    const modeChanged = (previous === null) !== (clock === null);
    if (modeChanged) this.renderHeading();
    if (this.deviceId === null) return;
    // A jump of more than a tenth of the window is a seek, not the clock playing on.
    const jumped = clock !== null && previous !== null && Math.abs(clock - previous) > HISTORY_RANGES[this.historyRange] / 10;
    if (modeChanged || jumped) this.reloadHistory();
    else this.scheduleHistory();
  }

  /** Stops following language changes and drops the pending history request (the app is torn down). */
  dispose(): void {
    this.unsubscribe();
    this.close();
  }

  private renderHeading(): void {
    this.historyHeading.textContent = M.heading(this.historyRange, this.clock !== null);
  }

  private setStatus(text: Message): void {
    this.statusText = text;
    this.historyStatus.textContent = text();
  }

  private renderDevice(): void {
    const entry = this.entry();
    if (!entry) {
      this.title.textContent = this.deviceId ?? '';
      this.identity.replaceChildren(h('dd', { text: M.gone() }));
      this.summary.replaceChildren();
      this.values.replaceChildren();
      return;
    }
    this.title.textContent = entry.name;
    this.renderIdentity();
    this.renderValues(entry);
  }

  private renderIdentity(): void {
    const entry = this.entry();
    if (!entry) return;
    const province = provinceByCode(entry.province);
    const pair = (term: string, value: string, testId?: string): HTMLElement[] => [
      h('dt', { text: term }),
      h('dd', { text: value, ...(testId ? { attrs: { 'data-testid': testId } } : {}) }),
    ];
    const reading = entry.reading;
    this.identity.replaceChildren(
      ...pair(M.deviceId(), entry.id, 'device-id'),
      ...pair(M.province(), province ? `${province.name} (${entry.province})` : entry.province),
      ...pair(M.domain(), pick(DOMAIN_LABELS[entry.domain])),
      ...pair(M.kind(), entry.kind),
      ...pair(M.status(), M.statusLabel(entry.status)),
      ...pair(M.location(), `${formatNumber(entry.location[1], 5)}, ${formatNumber(entry.location[0], 5)}`),
      ...pair(M.readingTime(), reading ? `${formatDateTime(reading.ts)} · ${M.ago(Date.now() - reading.ts)} · #${reading.seq}` : '—', 'reading-time'),
    );
  }

  private renderValues(entry: DeviceEntry): void {
    const reading = entry.reading;
    if (!reading) {
      this.summary.replaceChildren(h('p', { className: 'muted', text: M.noReading() }));
      this.values.replaceChildren();
      return;
    }
    const head = headline(entry.domain, reading.values, reading.derived);
    const badge = h('span', { className: 'panel-badge', attrs: { 'aria-hidden': 'true' } });
    badge.style.background = reading.state.color;
    const headlineEl = h('div', { className: 'panel-headline' }, [badge, h('strong', { text: head.title, attrs: { 'data-testid': 'headline' } }), h('span', { text: head.detail })]);
    this.summary.replaceChildren(headlineEl, ...(head.note ? [h('p', { className: 'panel-note', text: head.note })] : []));
    const english = lang() === 'en';
    const rows = describeReading(reading.values, reading.derived).map((row) =>
      h('tr', { className: row.highlight ? 'dominant' : '', attrs: { 'data-field': row.name } }, [
        // The other language's name as a tooltip: field names are what operators search manuals for.
        h('th', { text: english ? row.labelEn : row.labelVi, title: english ? row.labelVi : row.labelEn, attrs: { scope: 'row' } }),
        h('td', { text: row.text }),
      ]),
    );
    this.values.replaceChildren(h('tbody', {}, rows));
  }

  private entry(): DeviceEntry | undefined {
    return this.deviceId === null ? undefined : this.deps.store.get(this.deviceId);
  }

  /**
   * Reloads once the window's end moved enough: live, with new readings and the wall clock; in a
   * replay, with the replay clock (a paused replay reloads nothing). Never within 5 s of the last.
   */
  private scheduleHistory(): void {
    if (this.deviceId === null || this.historyTimer !== undefined || this.historyRequest !== null) return;
    const now = Date.now();
    const minGap = this.historyLoadedAt + HISTORY_REFRESH_MS;
    let due: number;
    if (this.clock === null) {
      due = Math.max(minGap, this.loadedEnd + refreshAfterMs(this.historyRange));
    } else {
      if (Math.abs(this.clock - this.loadedEnd) < refreshAfterMs(this.historyRange)) return; // the next clock re-checks
      due = minGap;
    }
    this.historyTimer = setTimeout(
      () => {
        this.historyTimer = undefined;
        this.loadHistory();
      },
      Math.max(0, due - now),
    );
  }

  private reloadHistory(): void {
    this.cancelHistory();
    this.loadHistory();
  }

  private cancelHistory(): void {
    clearTimeout(this.historyTimer);
    this.historyTimer = undefined;
    this.historyRequest?.abort();
    this.historyRequest = null;
  }

  private loadHistory(): void {
    const entry = this.entry();
    if (!entry || this.historyRequest !== null) return;
    const id = entry.id;
    const range = this.historyRange;
    const replay = this.clock !== null;
    const end = this.clock ?? Date.now();
    const request = new AbortController();
    this.historyRequest = request;
    this.loadedEnd = end;
    if (this.historyLoadedAt === 0) this.setStatus(M.loading);
    this.deps
      .fetchHistory(
        id,
        { fromMs: end - HISTORY_RANGES[range], toMs: end, fields: DEFAULT_HISTORY_FIELDS[entry.domain], aggregate: 'mean', maxPoints: HISTORY_MAX_POINTS },
        request.signal,
      )
      .then((history) => {
        if (request.signal.aborted || this.deviceId !== id) return;
        const loadedAt = Date.now();
        this.historyLoadedAt = loadedAt;
        const count = history.points.length;
        const window = windowText(history.windowMs);
        this.setStatus(count === 0 ? () => M.noData(range, replay) : () => M.points(count, window, formatDateTime(replay ? end : loadedAt), replay));
        this.charts.render(history, CHART_WIDTH_PX);
      })
      .catch((error: unknown) => {
        if (request.signal.aborted) return;
        if (isUnauthorized(error)) {
          this.deps.onUnauthorized();
          return;
        }
        this.historyLoadedAt = Date.now();
        const reason = error instanceof Error ? error.message : String(error);
        this.setStatus(() => M.failed(reason));
      })
      .finally(() => {
        if (this.historyRequest === request) this.historyRequest = null;
      });
  }
}
