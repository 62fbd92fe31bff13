/**
 * The live bench's devices (forked by live.bench.ts, driven over IPC): a few MQTT connections
 * of gateway accounts, each publishing for the fleet devices registered behind it (the fleet of
 * the ingest bench: domains and the 34 provinces in turn, payloads valid for contracts' decoders).
 * One reading per message at QoS 0, every device at the asked rate, spread evenly over the
 * second; each reading's `ts` is its publish time, which the clients measure latency from.
 */
import { connectAsync, type MqttClient } from 'mqtt';
import { fleetDevice, fleetReading, type FleetDevice } from '../../ingest/bench/fleet.js';
import { reply, serveCommands, type BenchGateway, type PublisherCommand, type PublisherReply } from './protocol.js';

interface Slot {
  readonly client: MqttClient;
  readonly device: FleetDevice;
  seq: number;
}

const TICK_MS = 2;
/** After a stall (the machine is shared), at most this much of the schedule is caught up at once; the rest is skipped and counted. */
const CATCH_UP_MS = 50;

const send = (message: PublisherReply) => reply(message);
const clients: MqttClient[] = [];
const slots: Slot[] = [];
let next = 0;
let ticker: NodeJS.Timeout | undefined;
let sent = 0;
let skipped = 0;
let byProvince: Record<string, number> = {};
let windowStart = performance.now();

async function connect(url: string, gateways: readonly BenchGateway[]): Promise<void> {
  for (const gateway of gateways) {
    const client = await connectAsync(url, { clientId: gateway.username, username: gateway.username, password: gateway.password, protocolVersion: 4, clean: true, reconnectPeriod: 0, keepalive: 60 });
    client.on('error', () => undefined); // the orchestrator sees a stalled run; a dropped gateway shows as readings not delivered
    clients.push(client);
    for (const n of gateway.devices) slots.push({ client, device: fleetDevice(n), seq: 0 });
  }
  // Consecutive messages go to different devices, provinces and connections.
  slots.sort((a, b) => a.device.n - b.device.n);
  send({ type: 'connected', connections: clients.length });
}

function publishNext(): void {
  const slot = slots[next] as Slot;
  next = (next + 1) % slots.length;
  const payload = JSON.stringify(fleetReading(slot.device, ++slot.seq, Date.now()));
  slot.client.publish(slot.device.topic, payload, { qos: 0 });
  sent++;
  const province = slot.device.province;
  byProvince[province] = (byProvince[province] ?? 0) + 1;
}

function setRate(perDeviceHz: number): void {
  clearInterval(ticker);
  ticker = undefined;
  if (perDeviceHz <= 0 || slots.length === 0) return;
  const perMs = (perDeviceHz * slots.length) / 1000;
  const startedAt = performance.now();
  let due = 0;
  ticker = setInterval(() => {
    const scheduled = Math.floor((performance.now() - startedAt) * perMs);
    const behind = scheduled - due - Math.ceil(CATCH_UP_MS * perMs);
    if (behind > 0) {
      skipped += behind;
      due += behind;
    }
    for (; due < scheduled; due++) publishNext();
  }, TICK_MS);
}

serveCommands<PublisherCommand>(async (command) => {
  switch (command.type) {
    case 'connect':
      return connect(command.url, command.gateways);
    case 'rate':
      setRate(command.perDeviceHz);
      return send({ type: 'rate' });
    case 'reset':
      sent = 0;
      skipped = 0;
      byProvince = {};
      windowStart = performance.now();
      return send({ type: 'reset' });
    case 'report':
      return send({ type: 'report', sent, skipped, byProvince, seconds: (performance.now() - windowStart) / 1000 });
    case 'close':
      clearInterval(ticker);
      await Promise.all(clients.map((c) => c.endAsync().catch(() => undefined)));
      process.exit(0);
  }
});
