/**
 * The live bench's baseline (forked by live.bench.ts with the api's Node flags): the same frames
 * as the api, over a plain WebSocket server (npm `ws`) instead of socket.io. It subscribes to the
 * same telemetry with the api's service account, keeps the same state with the api's own
 * LiveState (decode, enrich, latest per device), drains frames at the same interval and sends
 * each one, `JSON.stringify`-ed once, to the sockets that subscribed to its province and domain.
 * No rights, snapshots, heartbeat or lag handling: the cost of moving frames and nothing else.
 */
import { connectAsync, type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { WebSocketServer, type WebSocket } from 'ws';
import { DOMAINS, isDomain, isProvinceCode, TOPIC_FILTERS, type Domain } from '@citypulse/contracts';
import { DeviceRegistry } from '@citypulse/broker/registry';
import { LiveState } from '../src/live.js';
import { reply, serveCommands, type WsServerCommand, type WsServerReply } from './protocol.js';

const send = (message: WsServerReply) => reply(message);
const logger = pino({ name: 'ws-baseline', level: 'warn' });
const roomOf = (province: string, domain: Domain) => `${province}:${domain}`;

let mqttClient: MqttClient | undefined;
let server: WebSocketServer | undefined;
let frameTimer: NodeJS.Timeout | undefined;
let registry: DeviceRegistry | undefined;

/** `{"type":"subscribe","provinces":["01"],"domains"?:[…]}`: the rooms asked for, or why not. */
function roomsAsked(data: string): string[] | string {
  let request: { type?: unknown; provinces?: unknown; domains?: unknown };
  try {
    request = JSON.parse(data) as typeof request;
  } catch {
    return 'not JSON';
  }
  const { provinces, domains = [...DOMAINS] } = request;
  if (request.type !== 'subscribe' || !Array.isArray(provinces) || !provinces.every((p): p is string => typeof p === 'string' && isProvinceCode(p))) return 'send {"type":"subscribe","provinces":["01",…]}';
  if (!Array.isArray(domains) || !domains.every((d): d is Domain => typeof d === 'string' && isDomain(d))) return `domains must be among ${DOMAINS.join(', ')}`;
  return provinces.flatMap((p: string) => domains.map((d: Domain) => roomOf(p, d)));
}

async function start(command: Extract<WsServerCommand, { type: 'start' }>): Promise<void> {
  registry = await DeviceRegistry.open(command.dataDir);
  const live = new LiveState(registry, logger);
  const rooms = new Map<string, Set<WebSocket>>();

  server = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
  server.on('connection', (socket) => {
    const joined: string[] = [];
    socket.on('message', (data: Buffer) => {
      const asked = roomsAsked(data.toString('utf8'));
      if (typeof asked === 'string') return socket.send(JSON.stringify({ error: asked }));
      for (const room of asked) {
        let members = rooms.get(room);
        if (!members) rooms.set(room, (members = new Set()));
        members.add(socket);
        joined.push(room);
      }
      socket.send(JSON.stringify({ subscribed: asked }));
    });
    socket.on('close', () => {
      for (const room of joined) rooms.get(room)?.delete(socket);
    });
  });
  await new Promise<void>((resolve) => server?.once('listening', resolve));

  mqttClient = await connectAsync(command.mqttUrl, { clientId: `ws-baseline-${process.pid}`, username: command.username, password: command.password, protocolVersion: 4, clean: true, reconnectPeriod: 1000 });
  mqttClient.on('message', (topic, payload) => void live.handleMessage(topic, payload));
  await mqttClient.subscribeAsync({ [TOPIC_FILTERS.allTelemetry]: { qos: 0 }, [TOPIC_FILTERS.allStatus]: { qos: 0 } });

  frameTimer = setInterval(() => {
    for (const frame of live.drainFrames()) {
      const members = rooms.get(roomOf(frame.province, frame.domain));
      if (!members || members.size === 0) continue;
      // Encoded once per frame, as socket.io's room broadcast does.
      const data = Buffer.from(JSON.stringify(frame));
      for (const socket of members) socket.send(data, { binary: false });
    }
  }, command.frameIntervalMs);

  const address = server.address();
  send({ type: 'listening', port: typeof address === 'object' && address ? address.port : 0 });
}

serveCommands<WsServerCommand>(async (command) => {
  switch (command.type) {
    case 'start':
      return start(command);
    case 'close':
      clearInterval(frameTimer);
      for (const socket of server?.clients ?? []) socket.terminate();
      server?.close();
      await mqttClient?.endAsync(true).catch(() => undefined);
      registry?.close();
      // process.exit, not a drained event loop: --cpu-prof writes its profile on the way out either way.
      process.exit(0);
  }
});
