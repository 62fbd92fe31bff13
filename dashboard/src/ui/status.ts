import { formatDuration, formatTime } from '../format.js';
import { type ConnectionState } from '../live/socket.js';
import { h } from './dom.js';

/** No frame and no heartbeat for longer than this and the data on screen is called stale. */
export const STALE_AFTER_MS = 15_000;

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
  readonly liveDevices: number;
  readonly totalDevices: number;
  readonly lastFrameAt: number | null;
  readonly lastSignAt: number | null;
  readonly now: number;
  readonly message: string | null;
}

/** The bottom bar: connection, live devices, last frame, and the stale-data warning. */
export class StatusBar {
  readonly el: HTMLElement;
  private readonly connection = h('span', { className: 'status-item status-connection' });
  private readonly devices = h('span', { className: 'status-item', attrs: { 'data-testid': 'live-count' } });
  private readonly lastFrame = h('span', { className: 'status-item' });
  private readonly stale = h('span', { className: 'status-item status-stale', attrs: { role: 'alert' } });
  private readonly message = h('span', { className: 'status-item status-message' });

  constructor() {
    this.el = h('footer', { className: 'statusbar', attrs: { 'aria-label': 'Trạng thái' } }, [this.connection, this.devices, this.lastFrame, this.stale, this.message]);
  }

  render(s: StatusInputs): void {
    const [text, kind] = describeConnection(s.connection);
    this.connection.textContent = text;
    this.connection.dataset.state = kind;
    this.devices.textContent = `Thiết bị trực tuyến: ${s.liveDevices}/${s.totalDevices}`;
    this.lastFrame.textContent = s.lastFrameAt === null ? 'Chưa nhận khung dữ liệu' : `Khung cuối: ${formatTime(s.lastFrameAt)} (giờ VN)`;
    const silentFor = staleFor(s.connection, s.lastSignAt, s.now);
    this.stale.hidden = silentFor === null;
    this.stale.textContent = silentFor === null ? '' : `⚠ Dữ liệu cũ: ${formatDuration(silentFor)} không có tín hiệu từ máy chủ / stale data`;
    this.el.classList.toggle('is-stale', silentFor !== null);
    this.message.hidden = s.message === null;
    this.message.textContent = s.message ?? '';
  }
}

function describeConnection(state: ConnectionState): [string, string] {
  switch (state.kind) {
    case 'connecting':
      return ['● Đang kết nối…', 'connecting'];
    case 'connected':
      return [`● Đã kết nối (${state.provinces.length} tỉnh/thành)`, 'connected'];
    case 'reconnecting':
      return [`● Mất kết nối, đang thử lại (${state.reason})`, 'reconnecting'];
    case 'refused':
      return [`● Máy chủ từ chối: ${state.reason}`, 'refused'];
    case 'closed':
      return ['● Đã ngắt kết nối', 'closed'];
    default: {
      const unreachable: never = state;
      return [String(unreachable), 'unknown'];
    }
  }
}
