/**
 * Reading a Chrome trace (the JSON format that `Tracing.start` with `transferMode:
 * 'ReturnAsStream'` hands back) for the frame bench (frame.bench.ts): streamed event by event, so
 * a trace of several hundred MB never has to sit in one string, keeping only what the analysis
 * needs; then the page's main-thread time cut into live frames at the dashboard's
 * `citypulse:flush` User Timing marks.
 */

/** One trace event as Chrome writes it (the fields used here). */
interface RawEvent {
  readonly name?: string;
  readonly cat?: string;
  readonly ph?: string;
  readonly pid?: number;
  readonly tid?: number;
  /** µs, the trace clock (CLOCK_MONOTONIC on Linux). */
  readonly ts?: number;
  readonly dur?: number;
  /** Thread (CPU) time, µs, of complete events; tts on B/E. */
  readonly tdur?: number;
  readonly tts?: number;
  readonly id?: string;
  readonly id2?: { readonly local?: string; readonly global?: string };
  readonly args?: { readonly name?: string; readonly data?: { readonly frames?: readonly TraceFrame[] } };
}

interface TraceFrame {
  readonly frame?: string;
  readonly url?: string;
  readonly processId?: number;
  readonly parent?: string;
  readonly isOutermostMainFrame?: boolean;
}

const OPEN_OBJECT = 123; // {
const OPEN_ARRAY = 91; // [
const CLOSE_OBJECT = 125; // }
const CLOSE_ARRAY = 93; // ]
const QUOTE = 34;
const BACKSLASH = 92;

/**
 * Splits the JSON text of a trace, fed in chunks of any size, into its events: the objects of
 * the top-level `traceEvents` array (`{"traceEvents":[…],"metadata":{…}}`) or of a bare
 * top-level array (`[…]`). Only the brackets outside strings are tracked; each event object is
 * parsed on its own.
 */
export class TraceEventSplitter {
  readonly #open: number[] = [];
  #inString = false;
  #escaped = false;
  #capturing = false;
  #pending = '';

  constructor(private readonly onEvent: (event: RawEvent) => void) {}

  push(chunk: string): void {
    let start = this.#capturing ? 0 : -1;
    const open = this.#open;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (this.#inString) {
        if (this.#escaped) this.#escaped = false;
        else if (c === BACKSLASH) this.#escaped = true;
        else if (c === QUOTE) this.#inString = false;
        continue;
      }
      if (c === QUOTE) this.#inString = true;
      else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
        if (c === OPEN_OBJECT && !this.#capturing && open[open.length - 1] === OPEN_ARRAY && (open.length === 1 || (open.length === 2 && open[0] === OPEN_OBJECT))) {
          this.#capturing = true;
          start = i;
        }
        open.push(c);
      } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
        open.pop();
        if (this.#capturing && open[open.length - 1] === OPEN_ARRAY && (open.length === 1 || (open.length === 2 && open[0] === OPEN_OBJECT))) {
          const text = this.#pending + chunk.slice(start, i + 1);
          this.#pending = '';
          this.#capturing = false;
          start = -1;
          this.onEvent(JSON.parse(text) as RawEvent);
        }
      }
    }
    if (this.#capturing) this.#pending += chunk.slice(start);
  }

  /** Fails when the text ended inside an event (a truncated trace). */
  end(): void {
    if (this.#capturing || this.#inString) throw new Error('the trace ended in the middle of an event (truncated?)');
  }
}

/** Complete events of one thread: names interned, [name index, ts µs, dur µs, thread time µs] flattened. */
interface ThreadEvents {
  readonly complete: number[];
  /** B events not yet closed by their E, as [name index, ts, tts]. */
  readonly open: [number, number, number | undefined][];
}

/** A complete event of a thread: wall time and thread (CPU) time, µs. */
export interface Slice {
  readonly name: string;
  readonly ts: number;
  readonly dur: number;
  /** Thread time; the wall time when the trace has none for the event. */
  readonly tdur: number;
}

/** A top-level task: start, wall and thread time, µs. */
export type Task = Omit<Slice, 'name'>;

interface Mark {
  readonly name: string;
  readonly pid: number;
  readonly ts: number;
}

interface Measure {
  readonly name: string;
  readonly pid: number;
  readonly ts: number;
  readonly dur: number;
}

/** Names of the tasks the scheduler runs: the top level of a thread's work. */
const TASK_NAMES = new Set(['RunTask', 'ThreadControllerImpl::RunTask']);
/** Name prefix of the dashboard's own User Timing entries. */
const OURS = 'citypulse';

/** Keeps, while a trace streams past, what the analysis needs: thread names, complete events per thread, User Timing marks and measures. */
export class TraceCollector {
  readonly splitter = new TraceEventSplitter((event) => this.#add(event));
  readonly threadNames = new Map<string, string>();
  readonly processNames = new Map<number, string>();
  readonly frames: TraceFrame[] = [];
  readonly marks: Mark[] = [];
  readonly measures: Measure[] = [];
  readonly #threads = new Map<string, ThreadEvents>();
  readonly #names: string[] = [];
  readonly #nameIndex = new Map<string, number>();
  readonly #openMeasures = new Map<string, number[]>();
  events = 0;
  startedAt: number | undefined;
  firstTs = Infinity;
  lastTs = -Infinity;

  #intern(name: string): number {
    let index = this.#nameIndex.get(name);
    if (index === undefined) {
      index = this.#names.length;
      this.#names.push(name);
      this.#nameIndex.set(name, index);
    }
    return index;
  }

  #thread(pid: number, tid: number): ThreadEvents {
    const key = `${pid}:${tid}`;
    let thread = this.#threads.get(key);
    if (!thread) {
      thread = { complete: [], open: [] };
      this.#threads.set(key, thread);
    }
    return thread;
  }

  #add(e: RawEvent): void {
    this.events++;
    const { ph, name = '', pid = 0, tid = 0, ts = 0 } = e;
    if (ph === 'M') {
      if (name === 'thread_name' && e.args?.name) this.threadNames.set(`${pid}:${tid}`, e.args.name);
      if (name === 'process_name' && e.args?.name) this.processNames.set(pid, e.args.name);
      return;
    }
    if (ts > 0) {
      this.firstTs = Math.min(this.firstTs, ts);
      this.lastTs = Math.max(this.lastTs, ts + (e.dur ?? 0));
    }
    if (name === 'TracingStartedInBrowser') {
      this.startedAt ??= ts;
      this.frames.push(...(e.args?.data?.frames ?? []));
      return;
    }
    if (e.cat?.includes('blink.user_timing')) {
      if (ph === 'I' || ph === 'i' || ph === 'R' || ph === 'n') this.marks.push({ name, pid, ts });
      else if (ph === 'b' || ph === 'e') {
        const key = `${pid}|${name}|${e.id2?.local ?? e.id2?.global ?? e.id ?? ''}`;
        const open = this.#openMeasures.get(key) ?? [];
        if (ph === 'b') {
          open.push(ts);
          this.#openMeasures.set(key, open);
        } else {
          const begin = open.shift();
          if (begin !== undefined) this.measures.push({ name, pid, ts: begin, dur: ts - begin });
        }
      }
      return;
    }
    if (ph === 'X') {
      this.#thread(pid, tid).complete.push(this.#intern(name), ts, e.dur ?? 0, e.tdur ?? e.dur ?? 0);
    } else if (ph === 'B') {
      this.#thread(pid, tid).open.push([this.#intern(name), ts, e.tts]);
    } else if (ph === 'E') {
      const thread = this.#thread(pid, tid);
      const begin = thread.open.pop();
      if (begin) thread.complete.push(begin[0], begin[1], ts - begin[1], begin[2] !== undefined && e.tts !== undefined ? e.tts - begin[2] : ts - begin[1]);
    }
  }

  /** Complete events of a thread, sorted by start (parents before their children). */
  eventsOf(pid: number, tid: number): Slice[] {
    const flat = this.#threads.get(`${pid}:${tid}`)?.complete ?? [];
    const out: Slice[] = [];
    for (let i = 0; i < flat.length; i += 4) out.push({ name: this.#names[flat[i] as number] as string, ts: flat[i + 1] as number, dur: flat[i + 2] as number, tdur: flat[i + 3] as number });
    return out.sort((a, b) => a.ts - b.ts || b.dur - a.dur);
  }

  /** Every thread with its process and thread names and top-level task time (µs). */
  threads(): { pid: number; tid: number; process: string; thread: string; busyUs: number; cpuUs: number }[] {
    return [...this.#threads.keys()].map((key) => {
      const [pid, tid] = key.split(':').map(Number) as [number, number];
      const tasks = topLevelTasks(this.eventsOf(pid, tid));
      return {
        pid,
        tid,
        process: this.processNames.get(pid) ?? `pid ${pid}`,
        thread: this.threadNames.get(key) ?? `tid ${tid}`,
        busyUs: tasks.reduce((sum, t) => sum + t.dur, 0),
        cpuUs: tasks.reduce((sum, t) => sum + t.tdur, 0),
      };
    });
  }
}

/** The scheduler tasks of a thread that no other task contains (nested run loops stay inside their parent). */
export function topLevelTasks(events: readonly Slice[]): Task[] {
  const tasks: Task[] = [];
  let end = -Infinity;
  for (const e of events) {
    if (!TASK_NAMES.has(e.name) || e.ts < end) continue;
    tasks.push({ ts: e.ts, dur: e.dur, tdur: e.tdur });
    end = e.ts + e.dur;
  }
  return tasks;
}

export interface Distribution {
  readonly count: number;
  readonly mean: number;
  readonly p50: number;
  readonly p95: number;
  readonly p99: number;
  readonly max: number;
}

/** Nearest-rank quantiles (the smallest value at least q of them do not exceed); undefined when empty. */
export function distribution(values: readonly number[]): Distribution | undefined {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] as number;
  return { count: sorted.length, mean: sorted.reduce((a, b) => a + b, 0) / sorted.length, p50: at(0.5), p95: at(0.95), p99: at(0.99), max: sorted[sorted.length - 1] as number };
}

/** The task (of tasks sorted by start, not overlapping) running at `ts`, if any. */
function containing<T extends Task>(tasks: readonly T[], ts: number): T | undefined {
  let lo = 0;
  let hi = tasks.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if ((tasks[mid] as T).ts <= ts) lo = mid + 1;
    else hi = mid;
  }
  const task = tasks[lo - 1];
  return task && task.ts + task.dur >= ts ? task : undefined;
}

/**
 * Cuts a thread's top-level tasks into intervals at `boundaries` (µs): a boundary inside a task
 * moves to that task's start, so every task belongs wholly to one interval: the one its start
 * falls in. Returns, per interval between consecutive boundaries, the summed task time (wall
 * and thread time) and the interval's wall time (µs).
 */
export function perInterval(tasks: readonly Task[], boundaries: readonly number[]): { busyUs: number; cpuUs: number; wallUs: number }[] {
  const starts = tasks.map((t) => t.ts);
  const prefix = [0];
  const cpuPrefix = [0];
  for (const t of tasks) {
    prefix.push((prefix[prefix.length - 1] as number) + t.dur);
    cpuPrefix.push((cpuPrefix[cpuPrefix.length - 1] as number) + t.tdur);
  }
  /** Index of the first task starting at or after `ts`. */
  const firstFrom = (ts: number) => {
    let lo = 0;
    let hi = starts.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if ((starts[mid] as number) < ts) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
  const snapped: number[] = [];
  for (const b of [...boundaries].sort((a, c) => a - c)) {
    const at = containing(tasks, b)?.ts ?? b;
    if (snapped[snapped.length - 1] !== at) snapped.push(at);
  }
  const out: { busyUs: number; cpuUs: number; wallUs: number }[] = [];
  for (let k = 0; k + 1 < snapped.length; k++) {
    const from = firstFrom(snapped[k] as number);
    const to = firstFrom(snapped[k + 1] as number);
    out.push({ busyUs: (prefix[to] as number) - (prefix[from] as number), cpuUs: (cpuPrefix[to] as number) - (cpuPrefix[from] as number), wallUs: (snapped[k + 1] as number) - (snapped[k] as number) });
  }
  return out;
}

export interface TraceAnalysis {
  readonly events: number;
  /** The page's renderer main thread and how it was found. */
  readonly renderer: { readonly pid: number; readonly tid: number; readonly foundBy: string } | undefined;
  readonly windowMs: number;
  readonly mainThread: {
    readonly tasks: number;
    readonly busyMs: number;
    /** Busy time over the traced window (1 = the thread never idled). */
    readonly busyShare: number;
    /** Thread (CPU) time of those tasks: busy time minus the time the thread waited inside them (e.g. a commit blocked on the compositor). */
    readonly cpuMs: number;
    readonly longTasks: number;
    readonly longestTaskMs: number;
    /** Where the top-level tasks' time went: their direct children by name, and the tasks' own remainder. */
    readonly breakdown: readonly { readonly name: string; readonly ms: number; readonly share: number }[];
    /** Main-thread 'Commit' events: frames the page handed to the compositor. */
    readonly commits: number;
  };
  /** Marks named `citypulse…` on the page, by name. */
  readonly marks: Readonly<Record<string, number>>;
  readonly flushMark: string;
  /** Main-thread busy time per live frame (between consecutive flush marks), ms; undefined without two marks. */
  readonly perLiveFrameMs: Distribution | undefined;
  /** The same intervals, thread (CPU) time of the main thread only, ms. */
  readonly perLiveFrameCpuMs: Distribution | undefined;
  /** Wall time between consecutive flushes, ms. */
  readonly flushIntervalMs: Distribution | undefined;
  /** Duration of the task each flush mark falls in (the animation frame that applies the batch, with its rendering), ms. */
  readonly flushTaskMs: Distribution | undefined;
  /** The requestAnimationFrame callback each flush mark falls in (FireAnimationFrame: the batch's own JS), ms. */
  readonly flushCallbackMs: Distribution | undefined;
  /**
   * Per socket.io live frame (a `LiveFrame`): the main-thread task that received it (the WebSocket
   * message, socket.io's decoding, the store update), found by the frame mark inside it; a task
   * that carried several frames is shared evenly between them. Wall and thread time, ms.
   */
  readonly frameTaskMs: Distribution | undefined;
  readonly frameTaskCpuMs: Distribution | undefined;
  /** Main-thread busy time per animation frame (between consecutive tasks running requestAnimationFrame callbacks), ms. */
  readonly perAnimationFrameMs: Distribution | undefined;
  /** `performance.measure`s named `citypulse…` on the page: durations by name, ms. */
  readonly measuresMs: Readonly<Record<string, Distribution>>;
  /** The busiest threads of the whole browser (share of the window in top-level tasks, ≥ 2 %). */
  readonly busiestThreads: readonly { readonly process: string; readonly thread: string; readonly pid: number; readonly busyShare: number; readonly cpuShare: number }[];
}

const LONG_TASK_US = 50_000;

/**
 * The page's main thread in a collected trace: its renderer is the one the traced page's main
 * frame lives in (TracingStartedInBrowser, by origin), else the one with our marks, else the busiest.
 */
export function analyseTrace(trace: TraceCollector, options: { readonly origin?: string; readonly flushMark: string; readonly frameMark?: string }): TraceAnalysis {
  const threads = trace.threads();
  const mains = threads.filter((t) => t.thread === 'CrRendererMain');
  const byFrame = trace.frames.filter((f) => f.isOutermostMainFrame !== false && !f.parent && f.processId !== undefined && (!options.origin || (f.url ?? '').startsWith(options.origin)));
  const markPids = new Set(trace.marks.filter((m) => m.name === options.flushMark).map((m) => m.pid));
  let renderer: TraceAnalysis['renderer'];
  const pick = (pid: number | undefined, foundBy: string) => {
    const main = mains.find((m) => m.pid === pid);
    if (!renderer && main) renderer = { pid: main.pid, tid: main.tid, foundBy };
  };
  pick(byFrame[byFrame.length - 1]?.processId, `TracingStartedInBrowser (main frame${options.origin ? ` of ${options.origin}` : ''})`);
  pick(markPids.size === 1 ? [...markPids][0] : undefined, `the renderer with the '${options.flushMark}' marks`);
  pick([...mains].sort((a, b) => b.busyUs - a.busyUs)[0]?.pid, 'the busiest CrRendererMain');

  const startedAt = trace.startedAt ?? trace.firstTs;
  const windowUs = Math.max(0, trace.lastTs - startedAt);
  const events = renderer ? trace.eventsOf(renderer.pid, renderer.tid) : [];
  const tasks = topLevelTasks(events);
  const busyUs = tasks.reduce((sum, t) => sum + t.dur, 0);
  const cpuUs = tasks.reduce((sum, t) => sum + t.tdur, 0);

  // Direct children of the top-level tasks, by name; the rest of a task's time is its own.
  const byName = new Map<string, number>();
  let taskIndex = -1;
  let childEnd = -Infinity;
  let own = 0;
  const rafTaskStarts: number[] = [];
  const rafCallbacks: Slice[] = [];
  let commits = 0;
  for (const e of events) {
    const task = tasks[taskIndex + 1];
    if (task && e.ts === task.ts && TASK_NAMES.has(e.name) && e.dur === task.dur) {
      taskIndex++;
      own += task.dur;
      childEnd = -Infinity;
      continue;
    }
    const current = tasks[taskIndex];
    if (!current || e.ts >= current.ts + current.dur) continue; // outside any task
    if (e.name === 'Commit') commits++;
    if (e.name === 'FireAnimationFrame') {
      rafCallbacks.push(e);
      if (rafTaskStarts[rafTaskStarts.length - 1] !== current.ts) rafTaskStarts.push(current.ts);
    }
    if (e.ts < childEnd) continue; // a grandchild
    byName.set(e.name, (byName.get(e.name) ?? 0) + e.dur);
    own -= e.dur;
    childEnd = e.ts + e.dur;
  }
  const breakdown = [...byName, ['(task itself, not broken down)', own] as [string, number]]
    .map(([name, us]) => ({ name, ms: us / 1000, share: busyUs > 0 ? us / busyUs : 0 }))
    .sort((a, b) => b.ms - a.ms);

  const pageMarks = renderer ? trace.marks.filter((m) => m.pid === renderer?.pid && m.name.startsWith(OURS)) : [];
  const marks: Record<string, number> = {};
  for (const m of pageMarks) marks[m.name] = (marks[m.name] ?? 0) + 1;
  const flushes = perInterval(
    tasks,
    pageMarks.filter((m) => m.name === options.flushMark).map((m) => m.ts),
  );
  const animationFrames = perInterval(tasks, rafTaskStarts);
  const flushMarks = pageMarks.filter((m) => m.name === options.flushMark);
  const flushTasks = flushMarks.flatMap((m) => {
    const task = containing(tasks, m.ts);
    return task ? [task.dur / 1000] : [];
  });
  const flushCallbacks = flushMarks.flatMap((m) => {
    const callback = containing(rafCallbacks, m.ts);
    return callback ? [callback.dur / 1000] : [];
  });

  const framesPerTask = new Map<Task, number>();
  for (const m of pageMarks) {
    if (m.name !== options.frameMark) continue;
    const task = containing(tasks, m.ts);
    if (task) framesPerTask.set(task, (framesPerTask.get(task) ?? 0) + 1);
  }
  const frameTasks: number[] = [];
  const frameTaskCpu: number[] = [];
  for (const [task, frames] of framesPerTask) {
    for (let i = 0; i < frames; i++) {
      frameTasks.push(task.dur / frames / 1000);
      frameTaskCpu.push(task.tdur / frames / 1000);
    }
  }

  const measures = new Map<string, number[]>();
  for (const m of trace.measures) {
    if (m.pid !== renderer?.pid || !m.name.startsWith(OURS)) continue;
    const list = measures.get(m.name) ?? [];
    list.push(m.dur / 1000);
    measures.set(m.name, list);
  }
  const measuresMs: Record<string, Distribution> = {};
  for (const [name, list] of measures) {
    const d = distribution(list);
    if (d) measuresMs[name] = d;
  }

  return {
    events: trace.events,
    renderer,
    windowMs: windowUs / 1000,
    mainThread: {
      tasks: tasks.length,
      busyMs: busyUs / 1000,
      busyShare: windowUs > 0 ? busyUs / windowUs : 0,
      cpuMs: cpuUs / 1000,
      longTasks: tasks.filter((t) => t.dur > LONG_TASK_US).length,
      longestTaskMs: tasks.reduce((max, t) => Math.max(max, t.dur), 0) / 1000,
      breakdown,
      commits,
    },
    marks,
    flushMark: options.flushMark,
    perLiveFrameMs: distribution(flushes.map((f) => f.busyUs / 1000)),
    perLiveFrameCpuMs: distribution(flushes.map((f) => f.cpuUs / 1000)),
    flushIntervalMs: distribution(flushes.map((f) => f.wallUs / 1000)),
    flushTaskMs: distribution(flushTasks),
    flushCallbackMs: distribution(flushCallbacks),
    frameTaskMs: distribution(frameTasks),
    frameTaskCpuMs: distribution(frameTaskCpu),
    perAnimationFrameMs: distribution(animationFrames.map((f) => f.busyUs / 1000)),
    measuresMs,
    busiestThreads: threads
      .map((t) => ({ process: t.process, thread: t.thread, pid: t.pid, busyShare: windowUs > 0 ? t.busyUs / windowUs : 0, cpuShare: windowUs > 0 ? t.cpuUs / windowUs : 0 }))
      .filter((t) => t.busyShare >= 0.02)
      .sort((a, b) => b.busyShare - a.busyShare)
      .slice(0, 10),
  };
}
