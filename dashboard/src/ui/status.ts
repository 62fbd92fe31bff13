import { formatDuration, formatTime } from '../format.js';
import { messages, tx } from '../i18n.js';
import { type ConnectionState } from '../live/socket.js';
import { h } from './dom.js';

/** No frame and no heartbeat for longer than this and the data on screen is called stale. */
export const STALE_AFTER_MS = 15_000;

const M = messages({
  live: { vi: 'Trực tiếp', en: 'Live' },
  replay: { vi: 'Đang phát lại', en: 'Replaying' },
  connecting: { vi: 'Đang kết nối…', en: 'Connecting…' },
  reconnecting: { vi: 'Mất kết nối, đang thử lại', en: 'Reconnecting' },
  refused: { vi: 'Máy chủ từ chối', en: 'Refused by the server' },
  closed: { vi: 'Đã ngắt kết nối', en: 'Disconnected' },
  staleSince: (time: string) => ({ vi: `Dữ liệu cũ từ ${time}`, en: `Stale since ${time}` }),
  connected: (n: number) => ({ vi: `Đã kết nối (${n} tỉnh/thành)`, en: `Connected (${n} provinces)` }),
  reason: (text: string, reason: string) => ({ vi: `${text} (${reason})`, en: `${text} (${reason})` }),
  online: (live: number, total: number) => ({ vi: `Thiết bị trực tuyến: ${live}/${total}`, en: `Devices online: ${live}/${total}` }),
  noFrame: { vi: 'Chưa nhận khung dữ liệu', en: 'No frame received yet' },
  lastFrame: (time: string) => ({ vi: `Khung cuối: ${time} (giờ VN)`, en: `Last frame: ${time} (Vietnam time)` }),
  stale: (silence: string) => ({ vi: `⚠ Dữ liệu cũ: ${silence} không có tín hiệu từ máy chủ`, en: `⚠ Stale data: no word from the server for ${silence}` }),
  status: { vi: 'Trạng thái', en: 'Status' },
  batch: (ms: string) => ({ vi: `Cập nhật bản đồ: ${ms} ms`, en: `Map update: ${ms} ms` }),
});

/**
 * How long the server has been silent (no frame, no heartbeat) if that makes the data stale, else
 * null. A closed connection is reported as such, not as stale data.
 */
export function staleFor(connection: ConnectionState, lastSignAt: number | null, now: number): number | null {
  if (connection.kind === 'closed' || lastSignAt === null) return null;
  const silent = now - lastSignAt;
  return silent > STALE_AFTER_MS ? silent : null;
}

export interface StatusInputs {
  readonly connection: ConnectionState;
  readonly mode: 'live' | 'replay';
  readonly liveDevices: number;
  readonly totalDevices: number;
  readonly lastFrameAt: number | null;
  readonly lastSignAt: number | null;
  readonly now: number;
  readonly message: string | null;
  /** Main-thread time of the last map batch, ms. */
  readonly lastBatchMs: number;
}

/** The header's connection indicator: live, replaying, reconnecting, or stale since a time. */
export function indicatorState(s: Pick<StatusInputs, 'connection' | 'mode' | 'lastSignAt' | 'now'>): { readonly kind: 'live' | 'replay' | 'connecting' | 'reconnecting' | 'stale' | 'refused' | 'closed'; readonly text: string } {
  const silent = staleFor(s.connection, s.lastSignAt, s.now);
  if (s.connection.kind === 'refused') return { kind: 'refused', text: M.refused() };
  if (s.connection.kind === 'closed') return { kind: 'closed', text: M.closed() };
  if (silent !== null && s.lastSignAt !== null) return { kind: 'stale', text: M.staleSince(formatTime(s.lastSignAt)) };
  if (s.connection.kind === 'reconnecting') return { kind: 'reconnecting', text: M.reconnecting() };
  if (s.connection.kind === 'connecting') return { kind: 'connecting', text: M.connecting() };
  return s.mode === 'replay' ? { kind: 'replay', text: M.replay() } : { kind: 'live', text: M.live() };
}

/** The pill in the header; `data-state` is what the browser test and the CSS read. */
export class ConnectionIndicator {
  readonly el = h('span', { className: 'connection-indicator', attrs: { role: 'status', 'aria-live': 'polite', 'data-testid': 'connection' } });

  render(s: Pick<StatusInputs, 'connection' | 'mode' | 'lastSignAt' | 'now'>): void {
    const { kind, text } = indicatorState(s);
    if (this.el.dataset.state !== kind) this.el.dataset.state = kind;
    setText(this.el, `● ${text}`);
  }
}

/** The bottom bar: connection detail, live devices, last frame, the stale-data warning, errors. */
export class StatusBar {
  readonly el: HTMLElement;
  private readonly connection = h('span', { className: 'status-item status-connection' });
  private readonly devices = h('span', { className: 'status-item', attrs: { 'data-testid': 'live-count' } });
  private readonly lastFrame = h('span', { className: 'status-item' });
  private readonly batch = h('span', { className: 'status-item muted' });
  private readonly stale = h('span', { className: 'status-item status-stale', attrs: { role: 'alert' } });
  private readonly message = h('span', { className: 'status-item status-message' });

  constructor() {
    this.el = tx(h('footer', { className: 'statusbar' }, [this.connection, this.devices, this.lastFrame, this.batch, this.stale, this.message]), M.status, 'aria-label');
  }

  /** Called every second and on every change: touches the DOM only where a text changed. */
  render(s: StatusInputs): void {
    const [text, kind] = describeConnection(s.connection);
    setText(this.connection, `● ${text}`);
    if (this.connection.dataset.state !== kind) this.connection.dataset.state = kind;
    setText(this.devices, M.online(s.liveDevices, s.totalDevices));
    setText(this.lastFrame, s.lastFrameAt === null ? M.noFrame() : M.lastFrame(formatTime(s.lastFrameAt)));
    setText(this.batch, M.batch(s.lastBatchMs.toFixed(1)));
    const silentFor = staleFor(s.connection, s.lastSignAt, s.now);
    if (this.stale.hidden !== (silentFor === null)) this.stale.hidden = silentFor === null;
    setText(this.stale, silentFor === null ? '' : M.stale(formatDuration(silentFor)));
    if (this.el.classList.contains('is-stale') !== (silentFor !== null)) this.el.classList.toggle('is-stale', silentFor !== null);
    if (this.message.hidden !== (s.message === null)) this.message.hidden = s.message === null;
    setText(this.message, s.message ?? '');
  }
}

function setText(el: HTMLElement, text: string): void {
  if (el.textContent !== text) el.textContent = text;
}

function describeConnection(state: ConnectionState): [string, string] {
  switch (state.kind) {
    case 'connecting':
      return [M.connecting(), 'connecting'];
    case 'connected':
      return [M.connected(state.provinces.length), 'connected'];
    case 'reconnecting':
      return [M.reason(M.reconnecting(), state.reason), 'reconnecting'];
    case 'refused':
      return [M.reason(M.refused(), state.reason), 'refused'];
    case 'closed':
      return [M.closed(), 'closed'];
    default: {
      const unreachable: never = state;
      return [String(unreachable), 'unknown'];
    }
  }
}
