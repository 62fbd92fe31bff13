import { type OperatorReplayState, type ReplayControlRequest, type ReplayStartRequest, type ReplayState } from '@citypulse/contracts';
import { messages, onLanguageChange, tx, type Message } from '../i18n.js';
import { OtherScreenReplays } from '../live/other-screens.js';
import {
  REPLAY_MAX_RANGE_MS,
  REPLAY_PRESETS,
  REPLAY_SPEED_CHOICES,
  checkRange,
  clampToRange,
  formatVnClock,
  fromVnInputValue,
  jumpRange,
  presetRange,
  toVnInputValue,
  type RangeProblem,
  type ReplayPreset,
} from '../live/replay-time.js';
import { h } from './dom.js';
import { OtherScreenNoticeView } from './other-screen.js';
import './replay.css';

export type ReplayMode = 'live' | 'replay';

/**
 * What a replay request comes back with. Looser than the contract's ReplayAck on purpose: the
 * socket adds its own codes (E_TIMEOUT, E_OFFLINE), and the bar only shows code and message.
 */
export type ReplayResult = { readonly ok: true; readonly replay: ReplayState } | { readonly ok: false; readonly error: { readonly code: string; readonly message: string } };

export interface ReplayBarDeps {
  /** Provinces a replay covers (the operator's scope). */
  readonly provinces: readonly string[];
  /** LiveConnection.replayStart. Must not reject. */
  start(request: ReplayStartRequest): Promise<ReplayResult>;
  /** LiveConnection.replayControl. Must not reject. */
  control(request: ReplayControlRequest): Promise<ReplayResult>;
  /** Called when the mode changes (not on every clock tick): 'replay' with the first state, 'live' with null. */
  onMode(mode: ReplayMode, state: ReplayState | null): void;
}

/** Speed a replay started from the bar begins with: an hour plays in six minutes. */
const DEFAULT_SPEED = 10;
/** "Replay from this alert" plays at this speed. */
const JUMP_SPEED = 10;
/** Arrow keys on the timeline move this share of the range, Page keys ten times as much. */
const KEY_STEP_SHARE = 0.01;
/** Keyboard seeks are sent once the keys rest this long (each seek reads a snapshot on the server). */
const KEY_SEEK_DELAY_MS = 350;

const PRESET_LABELS: Readonly<Record<ReplayPreset, { vi: string; en: string }>> = {
  '15m': { vi: '15 phút', en: '15 min' },
  '1h': { vi: '1 giờ', en: '1 h' },
  '6h': { vi: '6 giờ', en: '6 h' },
  '24h': { vi: '24 giờ', en: '24 h' },
};

const STATE_LABELS: Readonly<Record<ReplayState['state'] | 'live' | 'starting', { vi: string; en: string }>> = {
  live: { vi: 'Trực tiếp', en: 'Live' },
  starting: { vi: 'Đang bắt đầu…', en: 'Starting…' },
  playing: { vi: 'Đang phát', en: 'Playing' },
  paused: { vi: 'Tạm dừng', en: 'Paused' },
  buffering: { vi: 'Đang tải dữ liệu…', en: 'Buffering…' },
  ended: { vi: 'Đã hết', en: 'Ended' },
  stopped: { vi: 'Đã dừng', en: 'Stopped' },
};

const PROBLEMS: Readonly<Record<RangeProblem, { vi: string; en: string }>> = {
  missing: { vi: 'Nhập đủ thời điểm bắt đầu và kết thúc.', en: 'Enter both the start and the end.' },
  order: { vi: '"Đến" phải sau "Từ".', en: '"To" must be after "From".' },
  future: { vi: 'Khoảng phát lại phải kết thúc trong quá khứ.', en: 'A replay must end in the past.' },
  'too-long': { vi: `Phát lại tối đa ${REPLAY_MAX_RANGE_MS / 86_400_000} ngày.`, en: `A replay covers at most ${REPLAY_MAX_RANGE_MS / 86_400_000} days.` },
};

const M = messages({
  toggle: { vi: 'Phát lại', en: 'Replay' },
  toggleHint: { vi: 'Mở/đóng thanh phát lại dữ liệu đã lưu', en: 'Show or hide the replay of stored data' },
  region: { vi: 'Phát lại dữ liệu', en: 'Data replay' },
  from: { vi: 'Từ', en: 'From' },
  to: { vi: 'Đến', en: 'To' },
  zone: { vi: 'giờ Việt Nam (UTC+7)', en: 'Vietnam time (UTC+7)' },
  presets: { vi: 'Khoảng nhanh', en: 'Quick ranges' },
  preset: (p: ReplayPreset) => PRESET_LABELS[p],
  start: { vi: 'Phát', en: 'Play' },
  pause: { vi: 'Tạm dừng', en: 'Pause' },
  resume: { vi: 'Tiếp tục', en: 'Resume' },
  again: { vi: 'Phát lại từ đầu', en: 'Play again' },
  speed: { vi: 'Tốc độ', en: 'Speed' },
  seek: { vi: 'Mốc thời gian phát lại', en: 'Replay time' },
  live: { vi: 'Về trực tiếp', en: 'Back to live' },
  remote: { vi: 'Đang điều khiển phát lại trên màn hình khác của bạn. Bản đồ ở đây vẫn trực tiếp.', en: 'Controlling the replay on your other screen. This map stays live.' },
  stopThere: { vi: 'Dừng phát lại ở màn hình kia', en: 'Stop the replay there' },
  unfollow: { vi: 'Thôi điều khiển', en: 'Stop controlling' },
  unfollowHint: { vi: 'Trả thanh này về màn hình này; phát lại ở màn hình kia vẫn tiếp tục', en: 'Give this bar back to this screen; the replay on the other screen goes on' },
  state: (s: ReplayState['state'] | 'live' | 'starting') => STATE_LABELS[s],
  problem: (p: RangeProblem) => PROBLEMS[p],
});

let nextId = 0;

/**
 * The operator's replay control: a toggle that opens a bar with the range (Vietnam time), presets,
 * play/pause, speed, a timeline to seek on, the clock and state, and "back to live". The server owns
 * the session; the bar sends requests and draws the states it is given (`applyState`), so what it
 * shows is what the map shows. Only built for operators.
 *
 * Over it, a notice of a replay the same operator runs on another screen (`applyOtherState`).
 * "Follow" turns the bar into a remote control of that replay: the same controls, sent with its
 * replayId, which the api applies wherever it runs (another api node included). The api streams a
 * replay's frames to the screen that started it only, so following does not replay this map: it
 * stays live, and the bar says so.
 */
export class ReplayBar {
  /** The toggle and the bar under it; positions itself over the map's top-left corner. */
  readonly el: HTMLElement;
  private readonly toggleButton = h('button', { className: 'replay-toggle', attrs: { type: 'button', 'data-testid': 'replay-toggle', 'aria-expanded': 'false' } });
  private readonly bar: HTMLElement;
  private readonly fromInput = dateInput('replay-from');
  private readonly toInput = dateInput('replay-to');
  private readonly playButton = h('button', { className: 'replay-play', attrs: { type: 'button', 'data-testid': 'replay-play' } });
  private readonly playIcon = h('span', { className: 'replay-play-icon', attrs: { 'aria-hidden': 'true' } });
  private readonly playLabel = h('span');
  private readonly speedSelect = h(
    'select',
    { className: 'replay-speed', attrs: { 'data-testid': 'replay-speed' } },
    REPLAY_SPEED_CHOICES.map((s) => h('option', { text: `${s}×`, attrs: { value: String(s) } })),
  );
  private readonly seekInput = h('input', { className: 'replay-seek', attrs: { type: 'range', step: '1', 'data-testid': 'replay-seek' } });
  private readonly clockEl = h('span', { className: 'replay-clock', attrs: { 'data-testid': 'replay-clock' } });
  private readonly stateEl = h('span', { className: 'replay-state', attrs: { 'data-testid': 'replay-state', 'aria-live': 'polite' } });
  private readonly liveButton = h('button', { className: 'replay-live', attrs: { type: 'button', 'data-testid': 'replay-live' } });
  private readonly errorEl = h('p', { className: 'replay-error', attrs: { 'data-testid': 'replay-error', role: 'alert' } });
  private readonly remoteEl: HTMLElement;
  private readonly unfollowButton = h('button', { className: 'replay-unfollow', attrs: { type: 'button', 'data-testid': 'replay-unfollow' } });
  private readonly presetButtons: readonly HTMLButtonElement[];
  /** Replays of the operator's other screens (`operatorReplayState`): the notice, and the one followed. */
  private readonly others = new OtherScreenReplays();
  private readonly notice: OtherScreenNoticeView;

  /**
   * The session the bar shows, as the server last reported it: this screen's own replay, or the
   * one of another screen it follows (`remoteId`); null in live mode.
   */
  private session: ReplayState | null = null;
  /**
   * Following another screen's replay: the bar controls it by its replayId. The api sends its frames
   * to the screen that started it only, so this screen's map stays live meanwhile.
   */
  private remoteId: string | null = null;
  /** Speed for the next start (the session's own speed once one runs). */
  private speed = DEFAULT_SPEED;
  /** A start is on its way: the replaced session's 'stopped' is not a return to live. */
  private starting = false;
  /** A play/pause/resume is on its way: further presses would race it. */
  private playBusy = false;
  /** The timeline is held by the user (dragging, keys resting, or its seek unanswered): states do not move it. */
  private dragging = false;
  private seekBusy = false;
  private keySeekTimer: ReturnType<typeof setTimeout> | undefined;
  /** The operator typed a range: opening the bar no longer replaces it with the default preset. */
  private rangeTouched = false;
  private error: (() => string) | null = null;
  private readonly unsubscribe: () => void;
  private readonly remoteTextId: string;

  constructor(private readonly deps: ReplayBarDeps) {
    const barId = `replay-bar-${++nextId}`;
    this.remoteTextId = `${barId}-remote`;
    this.toggleButton.setAttribute('aria-controls', barId);
    tx(this.toggleButton, M.toggle);
    tx(this.toggleButton, M.toggleHint, 'title');
    tx(this.seekInput, M.seek, 'aria-label');
    tx(this.unfollowButton, M.unfollow);
    tx(this.unfollowButton, M.unfollowHint, 'title');
    this.playButton.append(this.playIcon, ' ', this.playLabel);

    const presets = (Object.keys(REPLAY_PRESETS) as ReplayPreset[]).map((preset) => {
      const button = tx(h('button', { className: 'replay-preset', attrs: { type: 'button', 'data-preset': preset } }), () => M.preset(preset));
      button.addEventListener('click', () => this.applyPreset(preset));
      return button;
    });
    this.presetButtons = presets;
    const remoteText = tx(h('span', { attrs: { id: this.remoteTextId } }), M.remote);
    this.remoteEl = h('div', { className: 'replay-row replay-remote', attrs: { 'data-testid': 'replay-remote' } }, [remoteText, this.unfollowButton]);
    this.notice = new OtherScreenNoticeView({ onFollow: (id) => this.follow(id), onDismiss: (id) => this.dismissOther(id) });
    const presetGroup = tx(h('div', { className: 'replay-presets', attrs: { role: 'group' } }, presets), M.presets, 'aria-label');

    this.bar = h('section', { className: 'replay-bar', attrs: { id: barId } }, [
      this.remoteEl,
      h('div', { className: 'replay-row replay-range' }, [
        h('label', { className: 'replay-field' }, [tx(h('span'), M.from), this.fromInput]),
        h('label', { className: 'replay-field' }, [tx(h('span'), M.to), this.toInput]),
        tx(h('small', { className: 'replay-zone' }), M.zone),
        presetGroup,
      ]),
      h('div', { className: 'replay-row replay-transport' }, [
        this.playButton,
        h('label', { className: 'replay-field' }, [tx(h('span'), M.speed), this.speedSelect]),
        this.seekInput,
        this.clockEl,
        this.stateEl,
        this.liveButton,
      ]),
      this.errorEl,
    ]);
    tx(this.bar, M.region, 'aria-label');
    this.bar.hidden = true;
    // The notice first: it shows above the toggle, and is reached before it with Tab.
    this.el = h('div', { className: 'replay' }, [this.notice.el, this.toggleButton, this.bar]);

    this.toggleButton.addEventListener('click', () => this.setOpen(this.bar.hidden));
    for (const input of [this.fromInput, this.toInput]) {
      input.addEventListener('input', () => {
        this.rangeTouched = true;
        this.render();
      });
    }
    this.playButton.addEventListener('click', () => void this.togglePlay());
    this.speedSelect.addEventListener('change', () => void this.changeSpeed(Number(this.speedSelect.value)));
    this.liveButton.addEventListener('click', () => {
      // The button is disabled in live mode: keep keyboard focus in the bar.
      this.playButton.focus();
      this.stop();
    });
    this.unfollowButton.addEventListener('click', () => {
      this.playButton.focus();
      this.unfollow();
    });
    this.bindTimeline();
    // Space plays and pauses from anywhere in the bar that has no Space of its own (the timeline, the texts).
    this.bar.addEventListener('keydown', (event) => {
      if (event.key !== ' ' || event.defaultPrevented) return;
      const target = event.target as HTMLElement;
      if (target instanceof HTMLButtonElement || target instanceof HTMLSelectElement || (target instanceof HTMLInputElement && target.type !== 'range')) return;
      event.preventDefault();
      void this.togglePlay();
    });
    this.unsubscribe = onLanguageChange(() => this.render());
    this.speedSelect.value = String(this.speed);
    this.render();
  }

  /**
   * 'replay' while this screen's own session runs (playing, paused, buffering or ended), else
   * 'live' (following another screen's replay included: this map is live).
   */
  get mode(): ReplayMode {
    return this.session === null || this.remoteId !== null ? 'live' : 'replay';
  }

  /** The replay clock (device time, epoch ms) of this screen's own session, or null. */
  get clock(): number | null {
    return this.mode === 'replay' ? (this.session?.clock ?? null) : null;
  }

  /** A state from the socket (`replayState`): 'stopped' returns to live, anything else is replay. */
  applyState(state: ReplayState): void {
    if (this.remoteId !== null) {
      // Nothing of this screen's own runs while it follows: a 'stopped' is not news, and a replay
      // of its own (started from this bar) ends the following.
      if (state.state === 'stopped') return;
      this.remoteId = null;
      this.session = null;
    }
    if (state.state === 'stopped') {
      // Over for this screen. After a network drop its api node may not have noticed yet and tell
      // the reconnected socket of it as another screen's replay, until it ends it too.
      if (state.replayId !== undefined) this.others.forget(state.replayId);
      // Starting a replay over a running one stops the old one first: not a return to live.
      if (this.starting) return;
      const was = this.session;
      this.session = null;
      this.dragging = false;
      if (state.error) this.showError(state.error);
      this.render();
      if (was !== null) this.deps.onMode('live', null);
      return;
    }
    const entering = this.session === null;
    this.session = state;
    if (entering) {
      this.setOpen(true);
      this.fillRange(state.from, state.to);
    }
    this.render();
    if (entering) this.deps.onMode('replay', state);
  }

  /**
   * A replay of the same operator's other screen (`operatorReplayState`): the notice, or the bar
   * when it is the one followed. This screen's own replay is told by `replayState`; should it come
   * this way too, it is drawn the same.
   */
  applyOtherState(state: OperatorReplayState): void {
    if (this.remoteId === null && this.session !== null && state.replayId === this.session.replayId) {
      this.applyState(state);
      return;
    }
    this.others.apply(state, Date.now());
    this.syncFollowed();
    this.render();
  }

  /** The connection dropped: the other screens' replays are forgotten until they are told again. */
  forgetOtherScreens(): void {
    if (this.others.size === 0 && this.remoteId === null) return;
    this.others.clear();
    this.syncFollowed();
    this.render();
  }

  /** Called every second: drops other screens' playing replays that went silent. */
  expireOtherScreens(now: number): void {
    if (!this.others.expire(now)) return;
    this.syncFollowed();
    this.render();
  }

  /** The replayId this bar follows (controls) on another screen, or null. */
  get following(): string | null {
    return this.remoteId;
  }

  /** Replays 10 min before `ts` to 20 min after (not past now) at 10×, playing ("replay from this alert"). */
  jumpTo(ts: number): void {
    const { from, to } = jumpRange(ts, Date.now());
    this.setOpen(true);
    this.fillRange(from, to);
    this.rangeTouched = true;
    this.speed = JUMP_SPEED;
    this.speedSelect.value = String(JUMP_SPEED);
    void this.begin(from, to, JUMP_SPEED);
  }

  /** Ends the replay (back to live); nothing in live mode. Failures show in the bar. */
  stop(): void {
    if (this.session !== null) void this.send({ action: 'stop' });
  }

  /**
   * Follow: the bar shows another screen's replay and controls it (play, pause, seek, speed, stop)
   * by its replayId. Only from live: a screen replaying itself is told of the others quietly.
   */
  private follow(replayId: string): void {
    const state = this.others.get(replayId);
    if (state === undefined || this.session !== null || this.starting) return;
    this.remoteId = replayId;
    this.session = state;
    this.error = null;
    this.setOpen(true);
    this.fillRange(state.from, state.to);
    this.render();
    this.playButton.focus();
  }

  /** Back to this screen's own (live) bar; the followed replay goes on where it runs. */
  private unfollow(): void {
    if (this.remoteId === null) return;
    this.remoteId = null;
    this.session = null;
    this.dragging = false;
    this.error = null;
    this.render();
  }

  private dismissOther(replayId: string): void {
    const focused = this.notice.hasFocus();
    this.others.dismiss(replayId);
    this.render();
    // Its buttons are gone: the toggle next to them takes the keyboard focus.
    if (focused && !this.notice.hasFocus()) this.toggleButton.focus();
  }

  /** After the other screens' replays changed: the followed one's latest state, or live when it is over. */
  private syncFollowed(): void {
    if (this.remoteId === null) return;
    const followed = this.others.get(this.remoteId);
    if (followed !== undefined) {
      this.session = followed;
      return;
    }
    this.remoteId = null;
    this.session = null;
    this.dragging = false;
  }

  /** Stops following language changes and drops pending timers (the app is being torn down). */
  dispose(): void {
    this.unsubscribe();
    clearTimeout(this.keySeekTimer);
  }

  private setOpen(open: boolean): void {
    // Fresh presets each time the bar opens in live mode, unless the operator set a range.
    if (open && this.bar.hidden && this.session === null && !this.rangeTouched) {
      const { from, to } = presetRange('1h', Date.now());
      this.fillRange(from, to);
    }
    this.bar.hidden = !open;
    this.toggleButton.setAttribute('aria-expanded', String(open));
  }

  private applyPreset(preset: ReplayPreset): void {
    const { from, to } = presetRange(preset, Date.now());
    this.fillRange(from, to);
    this.rangeTouched = true;
    this.error = null;
    this.render();
  }

  private fillRange(from: number, to: number): void {
    this.fromInput.value = toVnInputValue(from);
    this.toInput.value = toVnInputValue(to);
  }

  /** The range typed, if it differs from the running session's: Play then starts it instead. */
  private rangeChanged(): boolean {
    // A followed replay's range is not this bar's to change (its inputs are disabled).
    if (this.remoteId !== null) return false;
    const s = this.session;
    return s !== null && (fromVnInputValue(this.fromInput.value) !== s.from || fromVnInputValue(this.toInput.value) !== s.to);
  }

  private async togglePlay(): Promise<void> {
    if (this.playBusy || this.starting) return;
    const s = this.session;
    if (s === null || this.rangeChanged()) {
      const from = fromVnInputValue(this.fromInput.value);
      const to = fromVnInputValue(this.toInput.value);
      const problem = checkRange(from, to, Date.now());
      if (problem !== null || from === null || to === null) {
        this.error = () => M.problem(problem ?? 'missing');
        this.render();
        return;
      }
      await this.begin(from, to, this.speed);
      return;
    }
    this.playBusy = true;
    try {
      switch (s.state) {
        case 'playing':
        case 'buffering':
          await this.send({ action: 'pause' });
          break;
        case 'paused':
          await this.send({ action: 'resume' });
          break;
        case 'ended': {
          // An ended replay plays again from the start: seek (which pauses it) then resume.
          const sought = await this.send({ action: 'seek', at: s.from });
          if (sought.ok) await this.send({ action: 'resume' });
          break;
        }
        case 'stopped':
          break;
      }
    } finally {
      this.playBusy = false;
      this.render();
    }
  }

  private async begin(from: number, to: number, speed: number): Promise<void> {
    if (this.starting) return;
    this.starting = true;
    this.error = null;
    this.render();
    let reply: ReplayResult;
    try {
      reply = await this.deps.start({ from, to, speed, provinces: [...this.deps.provinces] });
    } finally {
      this.starting = false;
    }
    if (reply.ok) {
      this.error = null;
      this.applyState(reply.replay);
      // A restart over a running session: its range is now the one typed.
      if (this.session !== null) this.fillRange(this.session.from, this.session.to);
    } else {
      this.showError(reply.error);
    }
    this.render();
  }

  private async changeSpeed(speed: number): Promise<void> {
    if (!Number.isFinite(speed)) return;
    this.speed = speed;
    if (this.session === null) return;
    const reply = await this.send({ action: 'speed', speed });
    // Refused: the select shows the session's speed again.
    if (!reply.ok) this.render();
  }

  /** Sends a control and draws its answer; a replay the server no longer has is over here too. */
  private async send(request: ReplayControlRequest): Promise<ReplayResult> {
    const remote = this.remoteId;
    if (remote !== null) return this.sendFollowed(remote, request);
    const reply = await this.deps.control(request);
    if (reply.ok) {
      this.error = null;
      this.applyState(reply.replay);
    } else {
      this.showError(reply.error);
      // E_NOT_FOUND: the server has no replay for this connection; E_OFFLINE: it dropped it with the connection.
      const gone = reply.error.code === 'E_NOT_FOUND' || reply.error.code === 'E_OFFLINE';
      if (gone && this.session !== null) this.applyState({ ...this.session, state: 'stopped' });
    }
    this.render();
    return reply;
  }

  /** A control for the followed replay, by its id (the api forwards it to the node that holds it). */
  private async sendFollowed(replayId: string, request: ReplayControlRequest): Promise<ReplayResult> {
    const reply = await this.deps.control({ ...request, replayId });
    if (reply.ok) {
      this.error = null;
      this.others.apply({ ...reply.replay, replayId }, Date.now());
    } else {
      this.showError(reply.error);
      // E_NOT_FOUND: it ended meanwhile; E_OFFLINE: this screen lost its connection (told again once back).
      if (reply.error.code === 'E_NOT_FOUND') this.others.forget(replayId);
      if (reply.error.code === 'E_OFFLINE') this.others.clear();
    }
    this.syncFollowed();
    this.render();
    return reply;
  }

  private async seek(at: number): Promise<void> {
    const s = this.session;
    if (s === null) return;
    this.seekBusy = true;
    try {
      await this.send({ action: 'seek', at: clampToRange(at, s) });
    } finally {
      this.seekBusy = false;
      this.render();
    }
  }

  /**
   * The timeline seeks on `change` (release, click, Home/End), not on every `input` while dragging.
   * Arrow and Page keys move by a share of the range (1 s steps would take hours to cross a day)
   * and seek once the keys rest.
   */
  private bindTimeline(): void {
    const input = this.seekInput;
    input.addEventListener('input', () => {
      this.dragging = true;
      this.renderClock();
    });
    input.addEventListener('change', () => {
      this.dragging = false;
      void this.seek(Number(input.value) * 1000);
    });
    // A drag released where it started fires no change: let go of the timeline anyway.
    const release = (): void => {
      setTimeout(() => {
        if (!this.dragging) return;
        this.dragging = false;
        this.render();
      }, 0);
    };
    input.addEventListener('pointerup', release);
    input.addEventListener('pointercancel', release);
    input.addEventListener('blur', release);
    input.addEventListener('keydown', (event) => {
      const s = this.session;
      if (s === null) return;
      const spanS = (s.to - s.from) / 1000;
      const step = Math.max(1, Math.round(spanS * KEY_STEP_SHARE));
      const deltas: Readonly<Record<string, number>> = { ArrowLeft: -step, ArrowDown: -step, ArrowRight: step, ArrowUp: step, PageDown: -10 * step, PageUp: 10 * step };
      const delta = deltas[event.key];
      if (delta === undefined) return;
      event.preventDefault();
      const next = Math.min(Number(input.max), Math.max(Number(input.min), Number(input.value) + delta));
      input.value = String(next);
      clearTimeout(this.keySeekTimer);
      this.keySeekTimer = setTimeout(() => {
        this.keySeekTimer = undefined;
        void this.seek(next * 1000);
      }, KEY_SEEK_DELAY_MS);
      this.renderClock();
    });
  }

  private timelineHeld(): boolean {
    return this.dragging || this.seekBusy || this.keySeekTimer !== undefined;
  }

  private showError(error: { readonly code: string; readonly message: string }): void {
    // The api's messages are English; the code is what operators quote to support.
    const text = `${error.code}: ${error.message}`;
    this.error = () => text;
  }

  private render(): void {
    const s = this.session;
    const remote = this.remoteId !== null;
    this.el.dataset.mode = remote ? 'remote' : this.mode;
    this.toggleButton.classList.toggle('is-active', s !== null);
    this.toggleButton.classList.toggle('is-remote', remote);
    this.remoteEl.hidden = !remote;
    if (remote) this.playButton.setAttribute('aria-describedby', this.remoteTextId);
    else this.playButton.removeAttribute('aria-describedby');
    for (const input of [this.fromInput, this.toInput, ...this.presetButtons]) input.disabled = remote;
    this.notice.render(this.others.notice({ ownReplayId: remote ? null : (s?.replayId ?? null), followingId: this.remoteId, replaying: (s !== null && !remote) || this.starting }));
    this.bar.setAttribute('aria-busy', String(this.starting || this.playBusy || this.seekBusy));

    const restart = s === null || this.rangeChanged();
    const playState = this.starting ? 'starting' : (s?.state ?? 'live');
    this.playButton.dataset.state = playState;
    const [icon, label]: [string, Message] = restart
      ? ['▶', M.start]
      : s.state === 'playing' || s.state === 'buffering'
        ? ['❚❚', M.pause]
        : s.state === 'ended'
          ? ['↻', M.again]
          : ['▶', M.resume];
    this.playIcon.textContent = icon;
    this.playLabel.textContent = label();
    this.playButton.setAttribute('aria-disabled', String(this.starting || this.playBusy));

    // Only when it differs: rewriting the value of an open select can close it under the pointer.
    const speed = String(s?.speed ?? this.speed);
    if (this.speedSelect.value !== speed) this.speedSelect.value = speed;

    const range = s ?? { from: fromVnInputValue(this.fromInput.value) ?? 0, to: fromVnInputValue(this.toInput.value) ?? 0 };
    this.seekInput.disabled = s === null;
    if (!this.timelineHeld()) {
      // min and max before value, or the browser clamps the value to the old bounds.
      this.seekInput.min = String(Math.floor(range.from / 1000));
      this.seekInput.max = String(Math.ceil(range.to / 1000));
      this.seekInput.value = String(Math.round((s?.clock ?? range.from) / 1000));
    }
    this.renderClock();

    this.stateEl.dataset.state = playState;
    this.stateEl.textContent = M.state(playState);
    this.liveButton.disabled = s === null;
    const liveLabel = remote ? M.stopThere() : M.live();
    if (this.liveButton.textContent !== liveLabel) this.liveButton.textContent = liveLabel;

    this.errorEl.hidden = this.error === null;
    this.errorEl.textContent = this.error?.() ?? '';
  }

  /** The clock text: where the timeline is while the user holds it, else the session's clock. */
  private renderClock(): void {
    const s = this.session;
    if (s === null) {
      this.clockEl.textContent = '—';
      this.seekInput.removeAttribute('aria-valuetext');
      return;
    }
    const shown = this.timelineHeld() ? Number(this.seekInput.value) * 1000 : s.clock;
    const text = formatVnClock(shown);
    this.clockEl.textContent = text;
    this.seekInput.setAttribute('aria-valuetext', text);
  }
}

function dateInput(testId: string): HTMLInputElement {
  return h('input', { className: 'replay-date', attrs: { type: 'datetime-local', step: '1', 'data-testid': testId } });
}
