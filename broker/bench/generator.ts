/**
 * A load-generator process of the broker bench (forked by broker.bench.ts, driven over IPC): it
 * opens one MQTT.js connection per device it is given, then publishes readings on each device's
 * telemetry topic, either as fast as a window of in-flight messages per connection allows or at a
 * fixed total rate, and reports what it sent. Also holds idle connections for the memory figure.
 */
import { connect, type MqttClient } from 'mqtt';
import { nowMs, readingPayload, reply, type BenchDevice, type GeneratorCommand, type GeneratorReply } from './protocol.js';

interface Connection {
  readonly device: BenchDevice;
  readonly client: MqttClient;
  inflight: number;
  seq: number;
}

const send = (message: GeneratorReply) => reply(message);
const MAX_CATCH_UP_S = 0.02;
const connections: Connection[] = [];

let qos: 0 | 1 = 1;
let window = 16;
let endToEndWindow = 0;
let stopping = true;
let sent = 0;
let completed = 0;
let errors = 0;
let skipped = 0;
let writtenOff = 0;
let ticker: NodeJS.Timeout | undefined;
let watchdog: NodeJS.Timeout | undefined;
let startedAt = 0;
let cpuAtStart = process.cpuUsage();
let cursor = 0;
/** Since connecting: messages sent, and those the subscriber has received (relayed credit). */
let sentTotal = 0;
let receivedTotal = 0;
let lastCreditAt = performance.now();

function openOne(url: string, device: BenchDevice, keepaliveS: number): Promise<Connection> {
  return new Promise((resolve, reject) => {
    const client = connect(url, {
      protocolVersion: 4,
      clientId: device.id,
      ...(device.password !== undefined ? { username: device.id, password: device.password } : {}),
      keepalive: keepaliveS,
      reconnectPeriod: 0,
      connectTimeout: 120_000,
      clean: true,
    });
    const fail = (err: Error) => {
      client.end(true);
      reject(err);
    };
    client.once('error', fail);
    client.once('connect', () => {
      client.off('error', fail);
      client.on('error', () => undefined); // counted per message by the publish callbacks
      // MQTT.js waits for 'drain' once per message written to a full socket: up to the window of them.
      client.stream.setMaxListeners(0);
      resolve({ device, client, inflight: 0, seq: 0 });
    });
  });
}

async function connectAll(command: Extract<GeneratorCommand, { type: 'connect' }>): Promise<void> {
  const t0 = performance.now();
  let next = 0;
  let failed = 0;
  let firstError: string | undefined;
  const progress = setInterval(() => send({ type: 'progress', connected: connections.length, failed }), 1000);
  const worker = async () => {
    while (next < command.devices.length) {
      const device = command.devices[next++] as BenchDevice;
      try {
        connections.push(await openOne(command.url, device, command.keepaliveS));
      } catch (err) {
        failed++;
        firstError ??= err instanceof Error ? err.message : String(err);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, command.connectConcurrency) }, worker));
  clearInterval(progress);
  send({ type: 'connected', connected: connections.length, failed, seconds: (performance.now() - t0) / 1000, ...(firstError ? { firstError } : {}) });
}

const outstanding = () => sentTotal - receivedTotal - writtenOff;
const endToEndOpen = () => endToEndWindow <= 0 || outstanding() < endToEndWindow;

function publishOne(conn: Connection): void {
  conn.inflight++;
  sent++;
  sentTotal++;
  conn.client.publish(conn.device.topic, readingPayload(nowMs(), ++conn.seq), { qos }, (err) => {
    conn.inflight--;
    if (err) errors++;
    else completed++;
    if (ticker === undefined && !stopping && conn.inflight < window && endToEndOpen()) publishOne(conn);
  });
}

/** Max mode: one message at a time round-robin, while a connection has room and the end-to-end window is open. */
function fill(): void {
  let progressed = true;
  while (!stopping && progressed) {
    progressed = false;
    for (let k = 0; k < connections.length; k++) {
      if (!endToEndOpen()) return;
      const conn = connections[cursor++ % connections.length] as Connection;
      if (conn.inflight < window) {
        publishOne(conn);
        progressed = true;
      }
    }
  }
}

function credit(received: number): void {
  if (received !== receivedTotal) lastCreditAt = performance.now();
  receivedTotal = received;
  if (ticker === undefined && !stopping) fill();
}

function start(command: Extract<GeneratorCommand, { type: 'start' }>): void {
  qos = command.qos;
  window = command.window;
  endToEndWindow = command.ratePerS > 0 ? 0 : command.endToEndWindow;
  stopping = false;
  sent = completed = errors = skipped = writtenOff = 0;
  startedAt = performance.now();
  cpuAtStart = process.cpuUsage();
  lastCreditAt = performance.now();
  if (command.ratePerS <= 0) {
    setImmediate(fill); // after 'started' has gone out, however large the windows
    // A message lost on the way (QoS 0) would hold its place in the end-to-end window for ever:
    // when nothing has arrived for 2 s, write the outstanding ones off.
    watchdog = setInterval(() => {
      if (!endToEndOpen() && performance.now() - lastCreditAt > 2000) {
        writtenOff += outstanding();
        lastCreditAt = performance.now();
        fill();
      }
    }, 500);
  } else {
    // Fixed rate: every millisecond or so, send what is due, round-robin over the connections;
    // a connection whose window is full skips its turn (counted: the offered rate was not met).
    const rate = command.ratePerS;
    let due = 0;
    ticker = setInterval(() => {
      const target = Math.floor(((performance.now() - startedAt) / 1000) * rate);
      // After a stall of this process (the machine is shared), catch up at most 20 ms of the
      // schedule: the rest is skipped and counted, rather than sent as one burst.
      const floor = target - Math.ceil(rate * MAX_CATCH_UP_S);
      if (due < floor) {
        skipped += floor - due;
        due = floor;
      }
      while (due < target) {
        due++;
        const conn = connections[cursor++ % connections.length] as Connection;
        if (conn.inflight < window) publishOne(conn);
        else skipped++;
      }
    }, 1);
  }
  send({ type: 'started' });
}

async function stop(): Promise<void> {
  stopping = true;
  clearInterval(ticker);
  clearInterval(watchdog);
  ticker = undefined;
  const seconds = (performance.now() - startedAt) / 1000;
  const cpu = process.cpuUsage(cpuAtStart);
  // Let the messages in flight be acknowledged (or written), at most 30 s.
  const deadline = Date.now() + 30_000;
  while (connections.some((c) => c.inflight > 0) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20));
  send({ type: 'stopped', sent, completed, errors, skipped, writtenOff, cpuSeconds: (cpu.user + cpu.system) / 1e6, seconds });
}

async function close(): Promise<void> {
  stopping = true;
  clearInterval(ticker);
  await Promise.all(connections.map((c) => c.client.endAsync(true).catch(() => undefined)));
  process.exit(0);
}

process.on('message', (command: GeneratorCommand) => {
  const run = async () => {
    switch (command.type) {
      case 'connect':
        return connectAll(command);
      case 'start':
        return start(command);
      case 'credit':
        return credit(command.received);
      case 'stop':
        return stop();
      case 'close':
        return close();
    }
  };
  run().catch((err: unknown) => send({ type: 'fatal', message: err instanceof Error ? (err.stack ?? err.message) : String(err) }));
});
process.on('disconnect', () => process.exit(0));
