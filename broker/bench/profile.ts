/**
 * Summarises a V8 `.cpuprofile` (node --cpu-prof) by self time, within a window of the monotonic
 * clock: per function, and per package or area (aedes, mqtt-packet, Node core streams, GC, …).
 */

interface CallFrame {
  readonly functionName: string;
  readonly url: string;
  readonly lineNumber: number;
}

interface ProfileNode {
  readonly id: number;
  readonly callFrame: CallFrame;
}

export interface CpuProfile {
  readonly nodes: readonly ProfileNode[];
  readonly startTime: number;
  readonly endTime: number;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

export interface ProfileEntry {
  readonly name: string;
  readonly location: string;
  readonly ms: number;
  readonly share: number;
}

export interface ProfileSummary {
  readonly totalMs: number;
  readonly idleMs: number;
  readonly byGroup: readonly ProfileEntry[];
  readonly byFunction: readonly ProfileEntry[];
}

/** The package (or area) a frame belongs to. */
export function groupOf(frame: CallFrame): string {
  const { url, functionName } = frame;
  if (!url) {
    if (functionName === '(garbage collector)') return 'garbage collection';
    if (functionName === '(program)') return '(program: V8 and native code outside JS)';
    if (functionName.startsWith('(')) return functionName;
    return 'V8 builtins and native functions';
  }
  const pkg = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)\//.exec(url)?.[1];
  if (pkg) return pkg;
  if (url.startsWith('node:')) {
    const parts = url.slice(5).split('/');
    return `node:${parts[0] === 'internal' ? parts.slice(0, 2).join('/') : parts[0]}`;
  }
  const own = /\/(broker|contracts|infra)\/src\//.exec(url)?.[1];
  if (own) return `@citypulse/${own} (ours)`;
  return url;
}

function shortLocation(frame: CallFrame): string {
  if (!frame.url) return '';
  const url = frame.url.replace(/^file:\/\//, '').replace(/^.*node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?/, '').replace(/^.*\/work\/main\//, '');
  return `${url}:${frame.lineNumber + 1}`;
}

/** Self time per function and per group for the samples taken within [fromUs, toUs] (monotonic µs). */
export function summariseCpuProfile(profile: CpuProfile, windowUs: readonly [number, number]): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const functions = new Map<string, { name: string; location: string; us: number }>();
  const groups = new Map<string, number>();
  let total = 0;
  let idle = 0;
  let t = profile.startTime;
  const [from, to] = windowUs[1] > windowUs[0] ? windowUs : [Number.NEGATIVE_INFINITY, Number.POSITIVE_INFINITY];
  for (let i = 0; i < profile.samples.length; i++) {
    t += profile.timeDeltas[i] ?? 0;
    if (t < from || t > to) continue;
    const node = byId.get(profile.samples[i] as number);
    if (!node) continue;
    // A sample stands for the time until the next one.
    const us = profile.timeDeltas[i + 1] ?? 0;
    total += us;
    if (node.callFrame.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const location = shortLocation(node.callFrame);
    const key = `${node.callFrame.functionName}@${location}`;
    const entry = functions.get(key) ?? { name: node.callFrame.functionName || '(anonymous)', location, us: 0 };
    entry.us += us;
    functions.set(key, entry);
    const group = groupOf(node.callFrame);
    groups.set(group, (groups.get(group) ?? 0) + us);
  }
  const busy = Math.max(1, total - idle);
  const entries = (list: { name: string; location: string; us: number }[]) =>
    list.sort((a, b) => b.us - a.us).map((e) => ({ name: e.name, location: e.location, ms: e.us / 1000, share: (e.us / busy) * 100 }));
  return {
    totalMs: total / 1000,
    idleMs: idle / 1000,
    byGroup: entries([...groups].map(([name, us]) => ({ name, location: '', us }))),
    byFunction: entries([...functions.values()]),
  };
}
