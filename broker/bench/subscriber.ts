/**
 * The fan-in subscriber of the broker bench (forked by broker.bench.ts, driven over IPC): one
 * MQTT.js connection subscribed to every device's telemetry, as ingest is. Per message it reads
 * the send time the generator wrote at the start of the payload and records the latency (µs) in
 * an HDR histogram (the pure-JS build); it reports counts, rate and percentiles per window.
 */
import * as hdr from 'hdr-histogram-js';
import { connectAsync, type MqttClient } from 'mqtt';
import { deviceNumberOf, nowMs, reply, sentTimeOf, type SubscriberCommand, type SubscriberReply } from './protocol.js';

const send = (message: SubscriberReply) => reply(message);
const newHistogram = () => hdr.build({ useWebAssembly: false, numberOfSignificantValueDigits: 3, lowestDiscernibleValue: 1, highestTrackableValue: 600_000_000, autoResize: false });

let client: MqttClient | undefined;
let histogram = newHistogram();
let count = 0;
let total = 0;
let windowStart = performance.now();
let cpuAtStart = process.cpuUsage();
let perGenerator: number[] = [];
let creditSentAt = 0;

function onMessage(topic: string, payload: Buffer): void {
  total++;
  count++;
  const device = deviceNumberOf(topic);
  if (device >= 0) {
    const g = device % perGenerator.length;
    perGenerator[g] = (perGenerator[g] ?? 0) + 1;
  }
  const sent = sentTimeOf(payload);
  if (Number.isFinite(sent)) histogram.recordValue(Math.min(600_000_000, Math.max(1, Math.round((nowMs() - sent) * 1000))));
}

async function handle(command: SubscriberCommand): Promise<void> {
  switch (command.type) {
    case 'connect': {
      client = await connectAsync(command.url, {
        protocolVersion: 4,
        clientId: `bench-subscriber-${process.pid}`,
        ...(command.username !== undefined ? { username: command.username, password: command.password } : {}),
        reconnectPeriod: 0,
        clean: true,
        keepalive: 120,
      });
      perGenerator = new Array<number>(Math.max(1, command.generators)).fill(0);
      client.on('message', onMessage);
      // Tell the generators (through the orchestrator) what arrived: their end-to-end window.
      setInterval(() => {
        if (total === creditSentAt) return;
        creditSentAt = total;
        send({ type: 'credit', received: perGenerator });
      }, 5);
      const granted = await client.subscribeAsync(command.filter, { qos: command.qos });
      if (granted[0]?.qos !== command.qos) throw new Error(`subscription to ${command.filter} not granted at QoS ${command.qos}: ${JSON.stringify(granted)}`);
      send({ type: 'ready' });
      return;
    }
    case 'reset':
      histogram = newHistogram();
      count = 0;
      windowStart = performance.now();
      cpuAtStart = process.cpuUsage();
      send({ type: 'reset' });
      return;
    case 'report': {
      const cpu = process.cpuUsage(cpuAtStart);
      send({
        type: 'report',
        count,
        seconds: (performance.now() - windowStart) / 1000,
        p50Ms: histogram.getValueAtPercentile(50) / 1000,
        p99Ms: histogram.getValueAtPercentile(99) / 1000,
        maxMs: histogram.maxValue / 1000,
        total,
        cpuSeconds: (cpu.user + cpu.system) / 1e6,
      });
      return;
    }
    case 'close':
      await client?.endAsync(true).catch(() => undefined);
      process.exit(0);
  }
}

process.on('message', (command: SubscriberCommand) => {
  handle(command).catch((err: unknown) => send({ type: 'fatal', message: err instanceof Error ? (err.stack ?? err.message) : String(err) }));
});
process.on('disconnect', () => process.exit(0));
