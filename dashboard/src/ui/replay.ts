import { type ReplayControlRequest, type ReplayStartRequest, type ReplayState } from '@citypulse/contracts';
import { messages, onLanguageChange, tx, type Message } from '../i18n.js';
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
  state: (s: ReplayState['state'] | 'live' | 'starting') => STATE_LABELS[s],
  problem: (p: RangeProblem) => PROBLEMS[p],
});

let nextId = 0;

/**
 * The operator's replay control: a toggle that opens a bar with the range (Vietnam time), presets,
 * play/pause, speed, a timeline to seek on, the clock and state, and "back to live". The server owns
 * the session; the bar sends requests and draws the states it is given (`applyState`), so what it
 * shows is what the map shows. Only built for operators.
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

  /** The running session as the server last reported it; null in live mode. */
  private session: ReplayState | null = null;
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

  constructor(private readonly deps: ReplayBarDeps) {
    const barId = `replay-bar-${++nextId}`;
    this.toggleButton.setAttribute('aria-controls', barId);
    tx(this.toggleButton, M.toggle);
    tx(this.toggleButton, M.toggleHint, 'title');
    tx(this.liveButton, M.live);
    tx(this.seekInput, M.seek, 'aria-label');
    this.playButton.append(this.playIcon, ' ', this.playLabel);

    const presets = (Object.keys(REPLAY_PRESETS) as ReplayPreset[]).map((preset) => {
      const button = tx(h('button', { className: 'replay-preset', attrs: { type: 'button', 'data-preset': preset } }), () => M.preset(preset));
      button.addEventListener('click', () => this.applyPreset(preset));
      return button;
    });
    const presetGroup = tx(h('div', { className: 'replay-presets', attrs: { role: 'group' } }, presets), M.presets, 'aria-label');

    this.bar = h('section', { className: 'replay-bar', attrs: { id: barId } }, [
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
    this.el = h('div', { className: 'replay' }, [this.toggleButton, this.bar]);

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

  /** 'replay' while a session runs (playing, paused, buffering or ended), else 'live'. */
  get mode(): ReplayMode {
    return this.session === null ? 'live' : 'replay';
  }

  /** The replay clock (device time, epoch ms), or null in live mode. */
  get clock(): number | null {
    return this.session?.clock ?? null;
  }

  /** A state from the socket (`replayState`): 'stopped' returns to live, anything else is replay. */
  applyState(state: ReplayState): void {
    if (state.state === 'stopped') {
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
    const mode = this.mode;
    this.el.dataset.mode = mode;
    this.toggleButton.classList.toggle('is-active', s !== null);
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
