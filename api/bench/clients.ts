/**
 * Dashboard clients of the live bench (forked by live.bench.ts, driven over IPC): one socket per
 * client, over socket.io to the api (a session token, path SOCKET_IO_PATH, websocket transport,
 * `subscribe` with its ack) or over plain WebSocket to the baseline server (ws-server.ts, a
 * `{"type":"subscribe"}` message). Whatever the transport, a frame is counted the same way: its
 * readings, each reading's publish→receipt latency (`Date.now() - reading.ts`: the publisher set
 * `ts` at publish, same machine clock), missed frame intervals and device sequence gaps.
 */
import { io, type Socket } from 'socket.io-client';
import WebSocket from 'ws';
import { SOCKET_IO_PATH, type ClientToServerEvents, type LiveFrame, type ServerToClientEvents, type SubscribeAck } from '@citypulse/contracts';
import { LatencyHistogram, reply, serveCommands, type ClientsCommand, type ClientsReply, type Transport } from './protocol.js';

const CONNECT_CONCURRENCY = 10;
const CONNECT_TIMEOUT_MS = 30_000;

const send = (message: ClientsReply) => reply(message);

let counts = { frames: 0, readings: 0, snapshots: 0, missedSlots: 0, seqGaps: 0, disconnects: 0 };
let latency = new LatencyHistogram();
let windowStart = performance.now();
let frameIntervalMs = 0;
const closers: (() => void)[] = [];

/** What one client remembers between frames: the last frame time per room, the last seq per device. */
class Viewer {
  readonly #lastSentAt = new Map<string, number>();
  readonly #lastSeq = new Map<string, number>();

  frame(frame: LiveFrame): void {
    const now = Date.now();
    counts.frames++;
    counts.readings += frame.readings.length;
    for (const reading of frame.readings) {
      latency.record(now - reading.ts);
      const last = this.#lastSeq.get(reading.deviceId);
      if (last !== undefined && reading.seq > last + 1) counts.seqGaps += reading.seq - last - 1;
      this.#lastSeq.set(reading.deviceId, reading.seq);
    }
    const room = `${frame.province}/${frame.domain}`;
    const previous = this.#lastSentAt.get(room);
    this.#lastSentAt.set(room, frame.sentAt);
    if (previous !== undefined && frameIntervalMs > 0) counts.missedSlots += Math.max(0, Math.round((frame.sentAt - previous) / frameIntervalMs) - 1);
  }

  snapshot(frame: LiveFrame): void {
    counts.snapshots++;
    for (const reading of frame.readings) this.#lastSeq.set(reading.deviceId, reading.seq);
  }
}

type CitySocket = Socket<ServerToClientEvents, ClientToServerEvents>;

async function connectSocketIo(url: string, token: string, provinces: readonly string[]): Promise<void> {
  const socket: CitySocket = io(url, { path: SOCKET_IO_PATH, transports: ['websocket'], auth: { token }, reconnection: false, forceNew: true, timeout: CONNECT_TIMEOUT_MS });
  closers.push(() => socket.disconnect());
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('connect_error', reject);
  });
  const viewer = new Viewer();
  let subscribed = false;
  // Snapshots right after the subscribe are the join's; later ones are resyncs after lagging.
  socket.on('snapshot', (frame) => (subscribed ? viewer.snapshot(frame) : undefined));
  socket.on('frame', (frame) => viewer.frame(frame));
  socket.on('disconnect', () => counts.disconnects++);
  const ack = await new Promise<SubscribeAck>((resolve) => socket.emit('subscribe', { provinces }, resolve));
  if (!ack.ok) throw new Error(`subscribe refused: ${ack.error.code} ${ack.error.message}`);
  subscribed = true;
}

async function connectWs(url: string, provinces: readonly string[]): Promise<void> {
  const socket = new WebSocket(url, { perMessageDeflate: false, handshakeTimeout: CONNECT_TIMEOUT_MS });
  closers.push(() => socket.terminate());
  await new Promise<void>((resolve, reject) => {
    socket.once('open', resolve);
    socket.once('error', reject);
  });
  const viewer = new Viewer();
  await new Promise<void>((resolve, reject) => {
    socket.once('message', (data: Buffer) => {
      const answer = JSON.parse(data.toString('utf8')) as { subscribed?: unknown; error?: string };
      if (answer.subscribed) resolve();
      else reject(new Error(`subscribe refused: ${answer.error ?? data.toString('utf8')}`));
    });
    socket.send(JSON.stringify({ type: 'subscribe', provinces }));
  });
  socket.on('message', (data: Buffer) => viewer.frame(JSON.parse(data.toString('utf8')) as LiveFrame));
  socket.on('close', () => counts.disconnects++);
}

async function connectAll(transport: Transport, url: string, token: string, watch: readonly (readonly string[])[]): Promise<void> {
  let connected = 0;
  let failed = 0;
  let firstError: string | undefined;
  const queue = [...watch];
  await Promise.all(
    Array.from({ length: CONNECT_CONCURRENCY }, async () => {
      for (let provinces = queue.shift(); provinces; provinces = queue.shift()) {
        await (transport === 'socket.io' ? connectSocketIo(url, token, provinces) : connectWs(url, provinces)).then(
          () => connected++,
          (err: unknown) => {
            failed++;
            firstError ??= err instanceof Error ? err.message : String(err);
          },
        );
      }
    }),
  );
  send({ type: 'connected', clients: connected, failed, ...(firstError ? { firstError } : {}) });
}

serveCommands<ClientsCommand>(async (command) => {
  switch (command.type) {
    case 'connect':
      frameIntervalMs = command.frameIntervalMs;
      return connectAll(command.transport, command.url, command.token, command.watch);
    case 'reset':
      counts = { frames: 0, readings: 0, snapshots: 0, missedSlots: 0, seqGaps: 0, disconnects: 0 };
      latency = new LatencyHistogram();
      windowStart = performance.now();
      return send({ type: 'reset' });
    case 'report':
      return send({ type: 'report', clients: closers.length, ...counts, latency: latency.sparse(), seconds: (performance.now() - windowStart) / 1000 });
    case 'close':
      for (const close of closers) close();
      process.exit(0);
  }
});
