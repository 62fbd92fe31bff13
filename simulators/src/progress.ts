/**
 * A status line for long-running commands (record, replay, simulate). On a terminal: one line
 * redrawn in place with a bar, rate and ETA. Elsewhere (CI, a log file, `npm start`'s pipe): a
 * plain line every `intervalMs`, so logs stay readable. `update()` only stores numbers, so it can
 * be called per message; drawing happens on a timer.
 */
export interface ProgressOptions {
  /** What 100 % is, in the same unit as `done`; without it there is no bar, percent or ETA. */
  readonly total?: number;
  /** Printed first, e.g. "replay". */
  readonly label: string;
  /** Default process.stdout. */
  readonly stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** How often to draw: default 250 ms on a terminal, 10 s otherwise. */
  readonly intervalMs?: number;
  /** Unit of the rate, default "msg" (→ "812 msg/s"). */
  readonly unit?: string;
  /** Clock in ms (default performance.now), for tests. */
  readonly now?: () => number;
}

export type ProgressExtra = Readonly<Record<string, string | number>>;

export interface Progress {
  /** `done` so far (a count, not an increment) and extra fields shown after the rate. */
  update(done: number, extra?: ProgressExtra): void;
  /** A new total (e.g. once it is known). */
  setTotal(total: number | undefined): void;
  /** Draws the final line and stops the timer; later calls do nothing. */
  done(): void;
  /** The current line, as it would be drawn now (for tests and for callers that print it themselves). */
  render(): string;
}

export const PROGRESS_DEFAULTS = {
  ttyIntervalMs: 250,
  plainIntervalMs: 10_000,
  barWidth: 24,
  /** Weight of the newest interval in the smoothed rate. */
  rateSmoothing: 0.3,
} as const;

export function createProgress(options: ProgressOptions): Progress {
  const stream = options.stream ?? process.stdout;
  const tty = stream.isTTY === true;
  const now = options.now ?? (() => performance.now());
  const unit = options.unit ?? 'msg';
  const startedAt = now();
  let total = options.total;
  let done = 0;
  let extra: ProgressExtra | undefined;
  let rate: number | undefined;
  let sample = { at: startedAt, done: 0 };
  let finished = false;

  const measureRate = (): void => {
    const at = now();
    const seconds = (at - sample.at) / 1000;
    if (seconds <= 0) return;
    const current = (done - sample.done) / seconds;
    rate = rate === undefined ? current : rate + PROGRESS_DEFAULTS.rateSmoothing * (current - rate);
    sample = { at, done };
  };

  const render = (final = false): string => {
    const elapsedS = (now() - startedAt) / 1000;
    const shownRate = final ? done / Math.max(elapsedS, 1e-3) : (rate ?? 0);
    const parts = [options.label];
    if (total !== undefined && total > 0) {
      const fraction = Math.min(1, Math.max(0, done / total));
      if (tty) parts.push(bar(fraction));
      parts.push(`${(fraction * 100).toFixed(1)}%`, `${formatCount(done)}/${formatCount(total)}`);
    } else {
      parts.push(formatCount(done));
    }
    parts.push(`${formatRate(shownRate)} ${unit}/s`);
    if (final) parts.push(`in ${formatSeconds(elapsedS)}`);
    else if (total !== undefined && total > done && shownRate > 0) parts.push(`ETA ${formatSeconds((total - done) / shownRate)}`);
    for (const [key, value] of Object.entries(extra ?? {})) parts.push(`${key} ${typeof value === 'number' ? formatCount(value) : value}`);
    const line = parts.join('  ');
    // A terminal line must not wrap (the redraw would leave pieces behind); a log line gets its time.
    return tty ? line.slice(0, Math.max(20, (stream.columns ?? 120) - 1)) : `${new Date().toISOString().slice(11, 19)}Z  ${line}`;
  };

  const draw = (final = false): void => {
    measureRate();
    const line = render(final);
    // \r + "erase line" redraws in place on a terminal.
    stream.write(tty ? `\r\x1b[2K${line}${final ? '\n' : ''}` : `${line}\n`);
  };

  const timer = setInterval(() => draw(), options.intervalMs ?? (tty ? PROGRESS_DEFAULTS.ttyIntervalMs : PROGRESS_DEFAULTS.plainIntervalMs));
  timer.unref();

  return {
    update(value, more) {
      done = value;
      if (more) extra = more;
    },
    setTotal(value) {
      total = value;
    },
    done() {
      if (finished) return;
      finished = true;
      clearInterval(timer);
      draw(true);
    },
    render: () => render(),
  };
}

function bar(fraction: number): string {
  const width = PROGRESS_DEFAULTS.barWidth;
  const full = Math.round(fraction * width);
  return `[${'█'.repeat(full)}${'░'.repeat(width - full)}]`;
}

/** 1234567 → "1,234,567"; fractions keep one decimal. */
export function formatCount(value: number): string {
  return Number.isInteger(value) ? value.toLocaleString('en-US') : value.toLocaleString('en-US', { maximumFractionDigits: 1 });
}

function formatRate(perSecond: number): string {
  return perSecond >= 100 ? formatCount(Math.round(perSecond)) : perSecond.toFixed(1);
}

/** 75 → "1:15", 3725 → "1:02:05". */
export function formatSeconds(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

/** 1536 → "1.5 KiB": sizes for status lines. */
export function formatBytes(bytes: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let value = bytes;
  let i = 0;
  while (value >= 1024 && i < units.length - 1) {
    value /= 1024;
    i++;
  }
  return `${i === 0 ? value : value.toFixed(1)} ${units[i]}`;
}
