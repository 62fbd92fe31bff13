import type { ReplayState } from '@citypulse/contracts';
import { messages, tx } from '../i18n.js';
import type { OtherScreenNotice } from '../live/other-screens.js';
import { formatVnRange } from '../live/replay-time.js';
import { h } from './dom.js';

const STATES: Readonly<Record<ReplayState['state'], { vi: string; en: string }>> = {
  playing: { vi: 'đang phát', en: 'playing' },
  paused: { vi: 'tạm dừng', en: 'paused' },
  buffering: { vi: 'đang tải dữ liệu', en: 'buffering' },
  ended: { vi: 'đã hết', en: 'ended' },
  stopped: { vi: 'đã dừng', en: 'stopped' },
};

const M = messages({
  running: (range: string, speed: number, state: ReplayState['state']) => ({
    vi: `Màn hình khác của bạn đang phát lại: ${range}, ${speed}×, ${STATES[state].vi}`,
    en: `A replay is running on your other screen: ${range}, ${speed}×, ${STATES[state].en}`,
  }),
  alsoRunning: (range: string, speed: number, state: ReplayState['state']) => ({
    vi: `Màn hình khác của bạn cũng đang phát lại: ${range}, ${speed}×, ${STATES[state].vi}`,
    en: `Your other screen is replaying too: ${range}, ${speed}×, ${STATES[state].en}`,
  }),
  follow: { vi: 'Theo dõi', en: 'Follow' },
  followHint: { vi: 'Điều khiển phát lại đó từ màn hình này (bản đồ ở đây vẫn trực tiếp)', en: 'Control that replay from this screen (this map stays live)' },
  dismiss: { vi: 'Ẩn', en: 'Dismiss' },
  dismissHint: { vi: 'Ẩn thông báo; phát lại trên màn hình kia vẫn tiếp tục', en: 'Hide this notice; the replay on the other screen goes on' },
});

let nextId = 0;

/** The notice's sentence in the current language (exported for the unit test). */
export function noticeText(notice: OtherScreenNotice): string {
  const { replay, subtle } = notice;
  const range = formatVnRange(replay.from, replay.to);
  return subtle ? M.alsoRunning(range, replay.speed, replay.state) : M.running(range, replay.speed, replay.state);
}

export interface OtherScreenNoticeDeps {
  onFollow(replayId: string): void;
  onDismiss(replayId: string): void;
}

/**
 * "A replay is running on your other screen: range, speed, state — [Follow] [Dismiss]", over the
 * replay bar. The sentence is a polite live region that stays in the page (empty when there is
 * nothing to say), so screen readers announce it when it appears and when its state or speed
 * changes; the replay clock is left out of it, or it would be read out every second.
 */
export class OtherScreenNoticeView {
  readonly el: HTMLElement;
  private readonly text = h('p', { className: 'other-screen-text', attrs: { role: 'status', 'aria-live': 'polite', 'data-testid': 'other-screen-text' } });
  private readonly followButton = h('button', { className: 'other-screen-follow', attrs: { type: 'button', 'data-testid': 'other-screen-follow' } });
  private readonly dismissButton = h('button', { className: 'other-screen-dismiss', attrs: { type: 'button', 'data-testid': 'other-screen-dismiss' } });
  private shown: OtherScreenNotice | null = null;

  constructor(deps: OtherScreenNoticeDeps) {
    tx(this.followButton, M.follow);
    tx(this.followButton, M.followHint, 'title');
    tx(this.dismissButton, M.dismiss);
    tx(this.dismissButton, M.dismissHint, 'title');
    // Tabbing to "Follow" or "Dismiss" reads the sentence they act on.
    this.text.id = `other-screen-text-${++nextId}`;
    for (const button of [this.followButton, this.dismissButton]) button.setAttribute('aria-describedby', this.text.id);
    this.el = h('div', { className: 'other-screen', attrs: { 'data-testid': 'other-screen' } }, [this.text, this.followButton, this.dismissButton]);
    this.followButton.addEventListener('click', () => {
      if (this.shown !== null) deps.onFollow(this.shown.replay.replayId);
    });
    this.dismissButton.addEventListener('click', () => {
      if (this.shown !== null) deps.onDismiss(this.shown.replay.replayId);
    });
    this.render(null);
  }

  /** Draws `notice` (null: nothing to say); touches the DOM only where something changed. */
  render(notice: OtherScreenNotice | null): void {
    this.shown = notice;
    const text = notice === null ? '' : noticeText(notice);
    if (this.text.textContent !== text) this.text.textContent = text;
    const state = notice === null ? 'none' : notice.subtle ? 'subtle' : 'full';
    if (this.el.dataset.state !== state) this.el.dataset.state = state;
    if (notice !== null) this.el.dataset.replayId = notice.replay.replayId;
    else delete this.el.dataset.replayId;
    // Following needs a screen that is live: one replaying itself only hears of it.
    this.followButton.hidden = notice === null || notice.subtle;
    this.dismissButton.hidden = notice === null;
  }

  /** Whether keyboard focus is on one of the notice's buttons (it moves elsewhere when they go). */
  hasFocus(): boolean {
    return this.el.contains(document.activeElement);
  }
}
