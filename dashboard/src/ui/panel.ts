import { DEFAULT_HISTORY_FIELDS, provinceByCode, type HistoryResponse } from '@citypulse/contracts';
import { isUnauthorized, type HistoryParams } from '../api.js';
import { DOMAIN_LABELS, STATUS_LABELS, describeReading, formatAge, formatDateTime, formatNumber, headline } from '../format.js';
import { type DeviceEntry, type DeviceStore } from '../live/store.js';
import { HistoryCharts } from './chart.js';
import { bilingual, h } from './dom.js';

/** History shown when a device is opened. */
export const HISTORY_WINDOW_MS = 60 * 60_000; // 1 hour
/** New readings refresh the history at most this often. */
export const HISTORY_REFRESH_MS = 5_000;
const HISTORY_MAX_POINTS = 300;
/** Panel width minus its padding (styles.css .panel). */
const CHART_WIDTH_PX = 336;

export interface PanelDeps {
  readonly store: DeviceStore;
  readonly fetchHistory: (id: string, params: HistoryParams, signal: AbortSignal) => Promise<HistoryResponse>;
  readonly onClose: () => void;
  readonly onUnauthorized: () => void;
}

/** The side panel of one device: identity, latest values with units, and the last hour's history. */
export class DevicePanel {
  readonly el: HTMLElement;
  private readonly title = h('h2', { className: 'panel-title' });
  private readonly identity = h('dl', { className: 'panel-identity' });
  private readonly summary = h('div', { className: 'panel-summary' });
  private readonly values = h('table', { className: 'panel-values' });
  private readonly historyStatus = h('p', { className: 'panel-history-status' });
  private readonly charts = new HistoryCharts();
  private deviceId: string | null = null;
  private historyLoadedAt = 0;
  private historyRequest: AbortController | null = null;
  private historyTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(private readonly deps: PanelDeps) {
    const close = h('button', { className: 'panel-close', text: '×', attrs: { type: 'button', 'aria-label': 'Đóng / Close' } });
    close.addEventListener('click', () => this.deps.onClose());
    this.el = h('aside', { className: 'panel', attrs: { 'aria-label': 'Chi tiết thiết bị', 'data-testid': 'device-panel' } }, [
      h('header', { className: 'panel-header' }, [this.title, close]),
      this.identity,
      this.summary,
      h('h3', {}, [bilingual('Giá trị mới nhất', 'latest values')]),
      this.values,
      h('h3', {}, [bilingual('Lịch sử 1 giờ qua', 'last hour')]),
      this.historyStatus,
      this.charts.el,
    ]);
    this.el.hidden = true;
  }

  get selected(): string | null {
    return this.deviceId;
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

  private renderDevice(): void {
    const entry = this.entry();
    if (!entry) {
      this.title.textContent = this.deviceId ?? '';
      this.identity.replaceChildren(h('dd', { text: 'Thiết bị không còn trong danh sách / device no longer listed' }));
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
    const domain = DOMAIN_LABELS[entry.domain];
    const pair = (term: string, value: string, testId?: string): HTMLElement[] => [
      h('dt', { text: term }),
      h('dd', { text: value, ...(testId ? { attrs: { 'data-testid': testId } } : {}) }),
    ];
    const reading = entry.reading;
    this.identity.replaceChildren(
      ...pair('Mã thiết bị', entry.id, 'device-id'),
      ...pair('Tỉnh/thành', province ? `${province.name} (${entry.province})` : entry.province),
      ...pair('Lĩnh vực', `${domain.vi} / ${domain.en}`),
      ...pair('Loại', entry.kind),
      ...pair('Trạng thái', STATUS_LABELS[entry.status] ?? entry.status),
      ...pair('Vị trí', `${formatNumber(entry.location[1], 5)}, ${formatNumber(entry.location[0], 5)}`),
      ...pair('Thời điểm đo', reading ? `${formatDateTime(reading.ts)} · ${formatAge(Date.now() - reading.ts)} · #${reading.seq}` : '—', 'reading-time'),
    );
  }

  private renderValues(entry: DeviceEntry): void {
    const reading = entry.reading;
    if (!reading) {
      this.summary.replaceChildren(h('p', { className: 'muted', text: 'Chưa có số liệu / no reading yet' }));
      this.values.replaceChildren();
      return;
    }
    const head = headline(entry.domain, reading.values, reading.derived);
    const badge = h('span', { className: 'panel-badge', attrs: { 'aria-hidden': 'true' } });
    badge.style.background = reading.state.color;
    const headlineEl = h('div', { className: 'panel-headline' }, [badge, h('strong', { text: head.title, attrs: { 'data-testid': 'headline' } }), h('span', { text: head.detail })]);
    this.summary.replaceChildren(headlineEl, ...(head.note ? [h('p', { className: 'panel-note', text: head.note })] : []));
    const rows = describeReading(reading.values, reading.derived).map((row) =>
      h('tr', { className: row.highlight ? 'dominant' : '', attrs: { 'data-field': row.name } }, [
        h('th', { text: row.labelVi, title: row.labelEn, attrs: { scope: 'row' } }),
        h('td', { text: row.text }),
      ]),
    );
    this.values.replaceChildren(h('tbody', {}, rows));
  }

  private entry(): DeviceEntry | undefined {
    return this.deviceId === null ? undefined : this.deps.store.get(this.deviceId);
  }

  private scheduleHistory(): void {
    if (this.historyTimer !== undefined || this.historyRequest !== null) return;
    const wait = Math.max(0, this.historyLoadedAt + HISTORY_REFRESH_MS - Date.now());
    this.historyTimer = setTimeout(() => {
      this.historyTimer = undefined;
      this.loadHistory();
    }, wait);
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
    const request = new AbortController();
    this.historyRequest = request;
    const now = Date.now();
    if (this.historyLoadedAt === 0) this.historyStatus.textContent = 'Đang tải… / loading';
    this.deps
      .fetchHistory(
        id,
        { fromMs: now - HISTORY_WINDOW_MS, toMs: now, fields: DEFAULT_HISTORY_FIELDS[entry.domain], aggregate: 'mean', maxPoints: HISTORY_MAX_POINTS },
        request.signal,
      )
      .then((history) => {
        if (this.deviceId !== id) return;
        this.historyLoadedAt = Date.now();
        const windowS = Math.round(history.windowMs / 1000);
        this.historyStatus.textContent =
          history.points.length === 0
            ? 'Chưa có số liệu trong 1 giờ qua / no data in the last hour'
            : `${history.points.length} điểm, trung bình mỗi ${windowS} s · cập nhật ${formatDateTime(this.historyLoadedAt)}`;
        this.charts.render(history, CHART_WIDTH_PX);
      })
      .catch((error: unknown) => {
        if (request.signal.aborted) return;
        if (isUnauthorized(error)) {
          this.deps.onUnauthorized();
          return;
        }
        this.historyLoadedAt = Date.now();
        this.historyStatus.textContent = `Không tải được lịch sử: ${error instanceof Error ? error.message : String(error)}`;
      })
      .finally(() => {
        if (this.historyRequest === request) this.historyRequest = null;
      });
  }
}
