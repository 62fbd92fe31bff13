import { provinceByCode, type AlertSeverity, type AlertView } from '@citypulse/contracts';
import { ApiError } from '../api.js';
import { DOMAIN_LABELS, formatAge, formatDateTime } from '../format.js';
import { lang, messages, onLanguageChange, pick, tx } from '../i18n.js';
import type { ActiveAlerts } from '../live/alerts.js';
import { h } from './dom.js';
import './alerts.css';

/** Items drawn at most; the rest are counted in a "+N" line (a flood must not stall the page). */
export const ALERTS_SHOWN_MAX = 200;
/** How often the "5 phút trước" ages are brought up to date. */
const AGE_REFRESH_MS = 30_000;
/** The api's limit for an acknowledgement note. */
const NOTE_MAX_LENGTH = 500;

const SEVERITY = messages({
  critical: { vi: 'Nghiêm trọng', en: 'Critical' },
  warning: { vi: 'Cảnh báo', en: 'Warning' },
  info: { vi: 'Thông tin', en: 'Info' },
});

/** The severity's name in the current language (colour is never the only cue). */
export function severityLabel(severity: AlertSeverity): string {
  return SEVERITY[severity]();
}

/** A shape per severity, so the badge differs in more than colour. */
export const SEVERITY_GLYPHS: Readonly<Record<AlertSeverity, string>> = { critical: '▲', warning: '◆', info: '●' };

const M = messages({
  title: { vi: 'Cảnh báo đang hoạt động', en: 'Active alerts' },
  count: (n: number) => ({ vi: `${n} cảnh báo`, en: `${n} ${n === 1 ? 'alert' : 'alerts'}` }),
  empty: { vi: 'Không có cảnh báo đang hoạt động.', en: 'No active alerts.' },
  more: (n: number) => ({ vi: `+${n} cảnh báo cũ hơn không hiển thị`, en: `+${n} older alerts not shown` }),
  acknowledge: { vi: 'Xác nhận', en: 'Acknowledge' },
  noteLabel: { vi: 'Ghi chú (không bắt buộc)', en: 'Note (optional)' },
  confirm: { vi: 'Xác nhận', en: 'Confirm' },
  cancel: { vi: 'Hủy', en: 'Cancel' },
  sending: { vi: 'Đang gửi…', en: 'Sending…' },
  sent: { vi: 'Đã gửi xác nhận, đang chờ cập nhật…', en: 'Acknowledgement sent, waiting for the update…' },
  acked: (operator: string, note: string) => ({
    vi: `Đã xác nhận bởi ${operator}${note ? `: ${note}` : ''}`,
    en: `Acknowledged by ${operator}${note ? `: ${note}` : ''}`,
  }),
  conflict: { vi: 'Cảnh báo này đã được xác nhận.', en: 'This alert was already acknowledged.' },
  failed: { vi: 'Không gửi được xác nhận, vui lòng thử lại.', en: 'Could not send the acknowledgement; try again.' },
  replay: { vi: 'Phát lại từ đây', en: 'Replay from here' },
});

export interface AlertsPanelDeps {
  readonly book: ActiveAlerts;
  /** The operator may acknowledge (operator role): otherwise the action is not offered at all. */
  readonly canAcknowledge: boolean;
  /** The operator may start a replay. */
  readonly canReplay: boolean;
  deviceName(id: string): string | undefined;
  /** Sends the acknowledgement; rejects with ApiError. The app applies the returned ack to the book. */
  acknowledge(id: string, note: string): Promise<void>;
  onSelect(alert: AlertView): void;
  onReplayAt(alert: AlertView): void;
  /** The session expired (401) while acknowledging. */
  onUnauthorized(): void;
  /** Clock for the ages; Date.now by default. */
  now?(): number;
}

/** The open acknowledgement form of one alert: kept across redraws so a half-typed note survives. */
interface AckForm {
  readonly form: HTMLFormElement;
  readonly note: HTMLTextAreaElement;
  readonly error: HTMLElement;
  readonly confirm: HTMLButtonElement;
  readonly cancel: HTMLButtonElement;
  busy: boolean;
}

interface DrawnItem {
  readonly alert: AlertView;
  readonly li: HTMLLIElement;
  readonly age: HTMLElement;
}

let panelCount = 0;
let formCount = 0;

/**
 * The active alerts, newest first, of the whole country or one province. Each item selects its
 * device; operators acknowledge inline with a note; replay starts from the alert's time. Items
 * are redrawn only when their alert changed (the book replaces changed alerts), so `render()` on
 * every book version is cheap.
 */
export class AlertsPanel {
  readonly el: HTMLElement;
  private readonly deps: AlertsPanelDeps;
  private readonly idPrefix = `alerts-${++panelCount}`;
  private readonly countEl = h('span', { className: 'alerts-count', attrs: { 'data-testid': 'alerts-count' } });
  private readonly list = h('ul', { className: 'alerts-list' });
  private readonly emptyEl = h('p', { className: 'alerts-empty muted' });
  private readonly moreEl = h('p', { className: 'alerts-more muted' });
  private readonly heading: HTMLElement;
  private province: string | null = null;
  private drawn = { version: -1, province: null as string | null, lang: '' };
  private namesChanged = false;
  private readonly items = new Map<string, DrawnItem>();
  private readonly forms = new Map<string, AckForm>();
  /** Acknowledged by us, not yet in the book (the broadcast or the app's update is on its way). */
  private readonly sent = new Set<string>();
  private readonly timer: ReturnType<typeof setInterval>;
  private readonly unsubscribe: () => void;

  constructor(deps: AlertsPanelDeps) {
    this.deps = deps;
    this.heading = h('h2', { className: 'alerts-title', attrs: { id: `${this.idPrefix}-title`, tabindex: '-1' } }, [tx(h('span'), M.title), ' ', this.countEl]);
    this.el = h('section', { className: 'alerts-panel', attrs: { 'data-testid': 'alerts-panel', 'aria-labelledby': `${this.idPrefix}-title` } }, [this.heading, this.emptyEl, this.list, this.moreEl]);
    this.list.addEventListener('click', (event) => this.onListClick(event));
    this.list.addEventListener('keydown', (event) => this.onListKey(event));
    this.timer = setInterval(() => this.refreshAges(), AGE_REFRESH_MS);
    this.unsubscribe = onLanguageChange(() => this.render());
    this.render();
  }

  /** Shows only this province's alerts (null: the whole country). */
  setProvince(code: string | null): void {
    if (code === this.province) return;
    this.province = code;
    this.render();
  }

  /** Brings the list up to the book; does nothing when neither the book, the filter nor the language changed. */
  /** The device list changed (names may have): the next render() rebuilds every item. */
  invalidate(): void {
    this.namesChanged = true;
  }

  render(): void {
    const version = this.deps.book.version;
    const language = lang();
    if (this.drawn.version === version && this.drawn.province === this.province && this.drawn.lang === language && !this.namesChanged) return;
    const relabel = this.drawn.lang !== language || this.namesChanged;
    this.namesChanged = false;
    this.drawn = { version, province: this.province, lang: language };
    const focus = this.focusedPlace();

    const alerts = this.deps.book.list(this.province === null ? {} : { province: this.province });
    const shown = alerts.slice(0, ALERTS_SHOWN_MAX);
    const keep = new Set(shown.map((a) => a.id));
    for (const [id, item] of this.items) {
      if (keep.has(id)) continue;
      item.li.remove();
      this.items.delete(id);
    }
    for (const id of this.forms.keys()) if (!keep.has(id)) this.forms.delete(id);
    for (const id of this.sent) if (!keep.has(id) || this.deps.book.get(id)?.ack) this.sent.delete(id);

    // Walk the wanted order, reusing unchanged items and moving only what is out of place (moving
    // the focused element would blur it).
    let cursor: ChildNode | null = this.list.firstChild;
    for (const alert of shown) {
      let item = this.items.get(alert.id);
      if (!item || item.alert !== alert || relabel) {
        const next = this.buildItem(alert);
        if (item) {
          if (cursor === item.li) cursor = next.li;
          item.li.replaceWith(next.li);
        }
        item = next;
        this.items.set(alert.id, item);
      }
      if (item.li === cursor) cursor = cursor.nextSibling;
      else this.list.insertBefore(item.li, cursor);
    }

    this.countEl.textContent = M.count(alerts.length);
    this.emptyEl.textContent = M.empty();
    this.emptyEl.hidden = alerts.length > 0;
    this.moreEl.hidden = alerts.length <= shown.length;
    this.moreEl.textContent = M.more(alerts.length - shown.length);
    this.restoreFocus(focus);
  }

  /** Stops the age timer and the language subscription. */
  destroy(): void {
    clearInterval(this.timer);
    this.unsubscribe();
  }

  private now(): number {
    return this.deps.now?.() ?? Date.now();
  }

  private buildItem(alert: AlertView): DrawnItem {
    const language = lang();
    const province = provinceByCode(alert.province);
    const provinceName = province ? (language === 'en' ? province.nameEn : province.name) : alert.province;
    const name = this.deps.deviceName(alert.deviceId) ?? alert.deviceId;
    const age = h('span', { className: 'alert-age', text: formatAge(this.now() - alert.raisedAt) });
    const form = this.forms.get(alert.id);
    const actions: HTMLElement[] = [];
    if (this.deps.canAcknowledge && alert.ack === null && !form && !this.sent.has(alert.id)) {
      const ack = h('button', { className: 'alert-action', text: M.acknowledge(), attrs: { type: 'button', 'data-testid': 'alert-ack', 'data-focus': 'ack', 'aria-expanded': 'false' } });
      ack.addEventListener('click', () => this.openForm(alert.id));
      actions.push(ack);
    }
    if (this.deps.canReplay) {
      const replay = h('button', { className: 'alert-action', text: M.replay(), attrs: { type: 'button', 'data-testid': 'alert-replay', 'data-focus': 'replay' } });
      replay.addEventListener('click', () => this.deps.onReplayAt(this.deps.book.get(alert.id) ?? alert));
      actions.push(replay);
    }
    const ackLine = alert.ack
      ? h('p', { className: 'alert-acked', text: M.acked(alert.ack.operator, alert.ack.note), title: formatDateTime(alert.ack.ts), attrs: { 'data-testid': 'alert-acked' } })
      : this.sent.has(alert.id)
        ? h('p', { className: 'alert-acked pending', text: M.sent() })
        : null;

    const li = h(
      'li',
      {
        className: `alert-item sev-${alert.severity}`,
        attrs: { tabindex: '0', 'data-testid': 'alert-item', 'data-alert-id': alert.id, 'data-severity': alert.severity, 'data-focus': 'item' },
      },
      [
        h('div', { className: 'alert-head' }, [
          h('span', { className: 'alert-sev' }, [h('span', { className: 'alert-glyph', text: SEVERITY_GLYPHS[alert.severity], attrs: { 'aria-hidden': 'true' } }), severityLabel(alert.severity)]),
          h('strong', { className: 'alert-device', text: name, title: alert.deviceId }),
        ]),
        h('p', { className: 'alert-where muted', text: `${provinceName} · ${pick(DOMAIN_LABELS[alert.domain], language)}` }),
        h('p', { className: 'alert-message', text: alert.message }),
        h('p', { className: 'alert-time muted' }, [h('time', { text: formatDateTime(alert.raisedAt), attrs: { datetime: new Date(alert.raisedAt).toISOString() } }), ' · ', age]),
        ackLine,
        actions.length > 0 ? h('div', { className: 'alert-actions' }, actions) : null,
        form?.form,
      ],
    );
    return { alert, li, age };
  }

  private openForm(id: string): void {
    if (this.forms.has(id)) return;
    const formId = `${this.idPrefix}-ack-${++formCount}`;
    const note = h('textarea', {
      className: 'alert-note',
      attrs: { id: `${formId}-note`, maxlength: String(NOTE_MAX_LENGTH), rows: '2', 'data-testid': 'alert-ack-note', 'data-focus': 'note' },
    });
    const error = h('p', { className: 'alert-error', attrs: { role: 'alert' } });
    error.hidden = true;
    const confirm = tx(h('button', { className: 'alert-action primary', attrs: { type: 'submit', 'data-testid': 'alert-ack-confirm', 'data-focus': 'confirm' } }), M.confirm);
    const cancel = tx(h('button', { className: 'alert-action', attrs: { type: 'button', 'data-focus': 'cancel' } }), M.cancel);
    const form = h('form', { className: 'alert-ack-form', attrs: { id: formId } }, [
      tx(h('label', { className: 'alert-note-label', attrs: { for: `${formId}-note` } }), M.noteLabel),
      note,
      error,
      h('div', { className: 'alert-actions' }, [confirm, cancel]),
    ]);
    const state: AckForm = { form, note, error, confirm, cancel, busy: false };
    form.addEventListener('submit', (event) => {
      event.preventDefault();
      void this.submit(id, state);
    });
    cancel.addEventListener('click', () => this.closeForm(id, 'ack'));
    form.addEventListener('keydown', (event) => {
      if (event.key === 'Escape') {
        // The app may close a panel on Escape too: this one is ours.
        event.preventDefault();
        event.stopPropagation();
        if (!state.busy) this.closeForm(id, 'ack');
      } else if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        form.requestSubmit();
      }
    });
    this.forms.set(id, state);
    this.redrawItem(id);
    note.focus();
  }

  private closeForm(id: string, focus: 'ack' | 'item'): void {
    this.forms.delete(id);
    this.redrawItem(id);
    const li = this.items.get(id)?.li;
    (li?.querySelector<HTMLElement>(`[data-focus="${focus}"]`) ?? li)?.focus();
  }

  private async submit(id: string, state: AckForm): Promise<void> {
    if (state.busy) return;
    state.busy = true;
    state.confirm.disabled = true;
    state.cancel.disabled = true;
    state.confirm.textContent = M.sending();
    state.error.hidden = true;
    try {
      await this.deps.acknowledge(id, state.note.value.trim());
      if (!this.deps.book.get(id)?.ack) this.sent.add(id);
      if (this.forms.get(id) === state) this.closeForm(id, 'item');
    } catch (error) {
      state.busy = false;
      state.confirm.disabled = false;
      state.cancel.disabled = false;
      state.confirm.textContent = M.confirm();
      if (error instanceof ApiError && error.status === 401) {
        this.deps.onUnauthorized();
        return;
      }
      state.error.textContent = error instanceof ApiError ? (error.code === 'E_CONFLICT' ? M.conflict() : error.message) : M.failed();
      state.error.hidden = false;
    }
  }

  /** Redraws one item in place (its form opened or closed). */
  private redrawItem(id: string): void {
    const item = this.items.get(id);
    if (!item) return;
    const next = this.buildItem(this.deps.book.get(id) ?? item.alert);
    item.li.replaceWith(next.li);
    this.items.set(id, next);
  }

  private onListClick(event: MouseEvent): void {
    const target = event.target instanceof Element ? event.target : null;
    // Buttons and the form act for themselves; anywhere else on the item selects it.
    if (!target || target.closest('button, textarea, form, a')) return;
    const li = target.closest<HTMLElement>('.alert-item');
    if (li) this.select(li);
  }

  private onListKey(event: KeyboardEvent): void {
    const li = event.target instanceof HTMLElement && event.target.classList.contains('alert-item') ? event.target : null;
    if (!li) return;
    switch (event.key) {
      case 'Enter':
      case ' ':
        event.preventDefault();
        this.select(li);
        break;
      case 'ArrowDown':
      case 'ArrowUp': {
        event.preventDefault();
        const sibling = event.key === 'ArrowDown' ? li.nextElementSibling : li.previousElementSibling;
        if (sibling instanceof HTMLElement) sibling.focus();
        break;
      }
      case 'Home':
      case 'End': {
        event.preventDefault();
        const edge = event.key === 'Home' ? this.list.firstElementChild : this.list.lastElementChild;
        if (edge instanceof HTMLElement) edge.focus();
        break;
      }
      default:
        break;
    }
  }

  private select(li: HTMLElement): void {
    const id = li.dataset.alertId;
    const alert = id === undefined ? undefined : (this.deps.book.get(id) ?? this.items.get(id)?.alert);
    if (alert) this.deps.onSelect(alert);
  }

  private refreshAges(): void {
    if (!this.el.isConnected) return;
    const now = this.now();
    for (const item of this.items.values()) item.age.textContent = formatAge(now - item.alert.raisedAt);
  }

  /** Which alert and which control of it has the focus, so a redraw can give it back. */
  private focusedPlace(): { id: string; key: string } | null {
    const active = document.activeElement;
    if (!(active instanceof HTMLElement) || !this.list.contains(active)) return null;
    const li = active.closest<HTMLElement>('.alert-item');
    const id = li?.dataset.alertId;
    return id === undefined ? null : { id, key: active.dataset.focus ?? 'item' };
  }

  private restoreFocus(place: { id: string; key: string } | null): void {
    if (!place) return;
    const active = document.activeElement;
    if (active instanceof HTMLElement && active !== document.body && this.el.contains(active)) return;
    const li = this.items.get(place.id)?.li;
    // The alert was cleared: keep the keyboard in the panel rather than dropping it to the page.
    const target = li ? (li.querySelector<HTMLElement>(`[data-focus="${place.key}"]`) ?? li) : this.heading;
    target.focus({ preventScroll: true });
  }
}
