/**
 * A load generator of the ingest bench (forked by ingest.bench.ts, driven over IPC). It opens the
 * MQTT connections it is given (devices logging in as themselves, or gateway accounts; a lean
 * MQTT 3.1.1 client, raw-link.ts, so the generators take little of the CPU being measured), then
 * publishes valid telemetry at QoS 1 round-robin over its devices: one reading per message or
 * batches (`{"readings":[…]}`), at a fixed offered rate or as fast as ingest stores them. Every
 * reading carries its device time (the send time), which ingest's lag histogram measures from.
 */
import { reply } from '../../broker/bench/protocol.js';
import { fleetDevice, fleetReading, type FleetDevice } from './fleet.js';
import type { GeneratorCommand, GeneratorConnection, GeneratorCounts, GeneratorReply } from './protocol.js';
import { RawLink as Link } from './raw-link.js';

/** One device this process publishes for, on one of its links. */
interface Slot {
  readonly link: Link;
  readonly device: FleetDevice;
  seq: number;
  /** Newest timestamp sent: a series never gets two readings at the same millisecond (they would overwrite). */
  lastTs: number;
}

const TICK_MS = 1;
/** After a stall (the machine is shared), at most this much of the schedule is caught up at once; the rest is skipped and counted. */
const CATCH_UP_MS = 20;
const STOP_WAIT_MS = 60_000;

const links: Link[] = [];
const slots: Slot[] = [];
let next = 0;
let running = false;
let ticker: NodeJS.Timeout | undefined;
let perMessage = 1;
let inflightLimit = 64;
let readingsWindow = 0;
let storedShare = 0;
let counts = { messagesSent: 0, messagesAcked: 0, readingsSent: 0, readingsAcked: 0, errors: 0, skipped: 0 };
let startedAt = 0;
let cpuAtStart = process.cpuUsage();

const send = (message: GeneratorReply) => reply(message);

async function open(url: string, spec: GeneratorConnection): Promise<Link> {
  const { hostname, port } = new URL(url);
  const link = await Link.open({ host: hostname, port: Number(port || 1883), clientId: spec.clientId, username: spec.username, password: spec.password, keepaliveS: 60, timeoutMs: 60_000 });
  for (const n of spec.devices) slots.push({ link, device: fleetDevice(n), seq: 0, lastTs: 0 });
  return link;
}

async function connectAll(url: string, specs: readonly GeneratorConnection[], concurrency: number): Promise<void> {
  const t0 = performance.now();
  let failed = 0;
  let firstError: string | undefined;
  const queue = [...specs];
  await Promise.all(
    Array.from({ length: Math.max(1, concurrency) }, async () => {
      for (let spec = queue.shift(); spec; spec = queue.shift()) {
        await open(url, spec).then(
          (link) => links.push(link),
          (err: unknown) => {
            failed++;
            firstError ??= err instanceof Error ? err.message : String(err);
          },
        );
      }
    }),
  );
  // Devices interleaved across links, so consecutive messages go to different connections.
  slots.sort((a, b) => a.device.n - b.device.n);
  send({ type: 'connected', connected: links.length, failed, seconds: (performance.now() - t0) / 1000, ...(firstError ? { firstError } : {}) });
}

function payloadOf(slot: Slot): string {
  // Readings 1 ms apart, the last at the send time (a batch is what the device held until now).
  const base = Math.max(Date.now() - (perMessage - 1), slot.lastTs + 1);
  slot.lastTs = base + perMessage - 1;
  if (perMessage === 1) return JSON.stringify(fleetReading(slot.device, ++slot.seq, base));
  const readings = [];
  for (let k = 0; k < perMessage; k++) readings.push(fleetReading(slot.device, ++slot.seq, base + k));
  return JSON.stringify({ readings });
}

function publish(slot: Slot): void {
  const link = slot.link;
  counts.messagesSent++;
  counts.readingsSent += perMessage;
  link.publish(slot.device.topic, payloadOf(slot), (err) => {
    if (err) counts.errors++;
    else {
      counts.messagesAcked++;
      counts.readingsAcked += perMessage;
    }
    if (running && ticker === undefined) pump();
  });
}

/** The next slot whose link has room, or undefined after one full round without any. */
function nextFree(): Slot | undefined {
  for (let tried = 0; tried < slots.length; tried++) {
    const slot = slots[next] as Slot;
    next = (next + 1) % slots.length;
    if (slot.link.inflight < inflightLimit) return slot;
  }
  return undefined;
}

/** As fast as stored: fill the readings window (sent, not yet stored by ingest). */
function pump(): void {
  while (running && counts.readingsSent - storedShare + perMessage <= readingsWindow) {
    const slot = nextFree();
    if (!slot) return;
    publish(slot);
  }
}

function start(command: Extract<GeneratorCommand, { type: 'start' }>): void {
  perMessage = command.readingsPerMessage;
  inflightLimit = command.inflight;
  readingsWindow = command.readingsWindow;
  storedShare = 0;
  counts = { messagesSent: 0, messagesAcked: 0, readingsSent: 0, readingsAcked: 0, errors: 0, skipped: 0 };
  startedAt = performance.now();
  cpuAtStart = process.cpuUsage();
  running = true;
  if (command.messagesPerS > 0) {
    const perMs = command.messagesPerS / 1000;
    let due = 0;
    ticker = setInterval(() => {
      const scheduled = Math.floor((performance.now() - startedAt) * perMs);
      const behind = scheduled - due - Math.ceil(CATCH_UP_MS * perMs);
      if (behind > 0) {
        counts.skipped += behind;
        due += behind;
      }
      for (; due < scheduled; due++) {
        const slot = slots[next] as Slot;
        next = (next + 1) % slots.length;
        if (slot.link.inflight < inflightLimit) publish(slot);
        else counts.skipped++;
      }
    }, TICK_MS);
  } else {
    setImmediate(pump);
  }
  send({ type: 'started' });
}

function snapshot(): GeneratorCounts {
  const cpu = process.cpuUsage(cpuAtStart);
  return { ...counts, cpuSeconds: (cpu.user + cpu.system) / 1e6, seconds: (performance.now() - startedAt) / 1000 };
}

async function stop(): Promise<void> {
  running = false;
  clearInterval(ticker);
  ticker = undefined;
  const done = snapshot();
  const deadline = Date.now() + STOP_WAIT_MS;
  while (links.some((l) => l.inflight > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  // The counts of acknowledgements include those that arrived while waiting; time and CPU are the run's.
  send({ type: 'stopped', ...done, messagesAcked: counts.messagesAcked, readingsAcked: counts.readingsAcked, errors: counts.errors });
}

async function close(): Promise<void> {
  running = false;
  clearInterval(ticker);
  for (const link of links) link.end();
  process.exit(0);
}

process.on('message', (command: GeneratorCommand) => {
  const handle = async (): Promise<void> => {
    switch (command.type) {
      case 'connect':
        return connectAll(command.url, command.connections, command.connectConcurrency);
      case 'start':
        return start(command);
      case 'stored':
        storedShare = command.readings;
        if (running && ticker === undefined) pump();
        return;
      case 'count':
        return send({ type: 'counts', ...snapshot() });
      case 'stop':
        return stop();
      case 'close':
        return close();
    }
  };
  handle().catch((err: unknown) => send({ type: 'fatal', message: err instanceof Error ? (err.stack ?? err.message) : String(err) }));
});
process.on('disconnect', () => process.exit(0));
