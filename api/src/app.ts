import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyError } from 'fastify';
import fastifyStatic from '@fastify/static';
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Type from 'typebox';
import mqtt, { type MqttClient } from 'mqtt';
import { Server as SocketServer, type Socket } from 'socket.io';
import type { Logger } from 'pino';
import {
  API_PREFIX,
  CodedError,
  DeviceId,
  DeviceList,
  DevicesQuery,
  DeviceView,
  ErrorBody,
  HistoryQuery,
  HistoryResponse,
  isProvinceCode,
  LoginBody,
  PROVINCE_BOUNDARIES,
  RejectedList,
  RejectedQuery,
  SessionInfo,
  SOCKET_IO_PATH,
  TOPIC_FILTERS,
  type ClientToServerEvents,
  type RejectionCode,
  type ServerToClientEvents,
  type SubscribeAck,
} from '@citypulse/contracts';
import type { DeviceRecord, DeviceRegistry } from '@citypulse/broker/registry';
import type { Influx } from '@citypulse/infra';
import { DEAD_LETTER_DEFAULTS, queryDeadLetters } from './dead-letters.js';
import { parseTime, queryHistory, resolveFields, HISTORY_DEFAULTS } from './history.js';
import { LiveState } from './live.js';
import type { OperatorStore } from './operators.js';
import { readCookie, SESSION_COOKIE, type Session, type SessionSigner } from './sessions.js';

/** api knobs in one place (units in the names). */
export const API_DEFAULTS = {
  frameIntervalMs: 500,
  heartbeatIntervalMs: 5000,
  /** A socket with more packets than this waiting to be written skips frames until it drains, then gets a snapshot. */
  maxSocketBacklog: 64,
  bodyLimitBytes: 64 * 1024,
} as const;

export interface ApiOptions {
  readonly influx: Influx;
  readonly registry: DeviceRegistry;
  readonly operators: OperatorStore;
  readonly sessions: SessionSigner;
  readonly logger: Logger;
  readonly mqtt: { readonly url: string; readonly username: string; readonly password: string; readonly clientId?: string };
  readonly dashboardDir?: string | undefined;
  readonly frameIntervalMs?: number;
  readonly cookieSecure?: boolean;
  readonly mapboxAccessToken?: string | undefined;
}

function createFastify(logger: Logger) {
  return Fastify({ loggerInstance: logger, bodyLimit: API_DEFAULTS.bodyLimitBytes, trustProxy: false }).withTypeProvider<TypeBoxTypeProvider>();
}
export type ApiFastify = ReturnType<typeof createFastify>;

export interface ApiApp {
  readonly app: ApiFastify;
  readonly io: SocketServer<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>;
  readonly live: LiveState;
  readonly mqtt: MqttClient;
  close(): Promise<void>;
}

interface SocketData {
  session: Session;
  /** Provinces whose frames were skipped while the socket lagged: they get a snapshot when it drains. */
  resync: Set<string>;
}

declare module 'fastify' {
  interface FastifyRequest {
    session: Session | null;
  }
}

const STATUS_BY_CODE: Partial<Record<RejectionCode, number>> = {
  E_BAD_REQUEST: 400,
  E_PROVINCE: 400,
  E_UNAUTHORIZED: 401,
  E_AUTH: 401,
  E_FORBIDDEN: 403,
  E_NOT_FOUND: 404,
  E_TOO_LARGE: 413,
  E_RATE_LIMITED: 429,
  E_UPSTREAM: 503,
};

const provinceRoom = (code: string) => `province:${code}`;

/**
 * Builds the api: Fastify REST under /api/v1, socket.io live frames, the built dashboard at /.
 * Connects to the broker with its own service account; never calls ingest. Does not listen:
 * server.ts (or a test) calls app.listen.
 */
export async function buildApi(options: ApiOptions): Promise<ApiApp> {
  const { influx, registry, operators, sessions, logger } = options;
  const app = createFastify(logger);
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  const live = new LiveState(registry, logger);

  app.decorateRequest('session', null);

  app.setErrorHandler((error: FastifyError | CodedError, request, reply) => {
    if (error instanceof CodedError) {
      return reply.status(STATUS_BY_CODE[error.code] ?? 400).send({ code: error.code, message: error.message });
    }
    if (error.validation) {
      return reply.status(400).send({ code: 'E_BAD_REQUEST', message: `${error.validationContext ?? 'request'}: ${error.message}` });
    }
    const status = error.statusCode ?? 500;
    if (status === 413) return reply.status(413).send({ code: 'E_TOO_LARGE', message: 'request body is too large' });
    if (status >= 400 && status < 500) return reply.status(status).send({ code: 'E_BAD_REQUEST', message: error.message });
    request.log.error({ err: error }, 'request failed');
    return reply.status(500).send({ code: 'E_INTERNAL', message: 'internal error; see the api log' });
  });
  app.setNotFoundHandler((request, reply) => reply.status(404).send({ code: 'E_NOT_FOUND', message: `no route ${request.method} ${request.url.slice(0, 200)}` }));

  app.addHook('onSend', async (_request, reply) => {
    reply.header('x-content-type-options', 'nosniff');
    reply.header('x-frame-options', 'DENY');
    reply.header('referrer-policy', 'no-referrer');
  });

  // Every /api route except login needs a session (cookie, or a Bearer token for scripts).
  const PUBLIC = new Set([`${API_PREFIX}/auth/login`]);
  app.addHook('onRequest', async (request) => {
    const path = request.url.split('?')[0] ?? '';
    if (!path.startsWith(`${API_PREFIX}/`) || PUBLIC.has(path)) return;
    const bearer = request.headers.authorization?.match(/^Bearer (.+)$/)?.[1];
    request.session = sessions.verify(bearer ?? readCookie(request.headers.cookie, SESSION_COOKIE)) ?? null;
    if (!request.session) throw new CodedError('E_UNAUTHORIZED', 'login required: POST /api/v1/auth/login');
  });

  const mqttClient = mqtt.connect(options.mqtt.url, {
    clientId: options.mqtt.clientId ?? `api-${process.pid}-${Math.random().toString(16).slice(2, 8)}`,
    username: options.mqtt.username,
    password: options.mqtt.password,
    clean: true,
    protocolVersion: 4,
    reconnectPeriod: 1000,
  });
  mqttClient.on('connect', () => {
    mqttClient.subscribe([TOPIC_FILTERS.allTelemetry, TOPIC_FILTERS.allStatus], { qos: 0 }, (err) => {
      if (err) logger.error({ err }, 'api: MQTT subscribe failed');
    });
  });
  mqttClient.on('error', (err) => logger.warn({ err }, 'api: MQTT error'));

  // ---- REST ----
  const errors = { 400: ErrorBody, 401: ErrorBody, 404: ErrorBody, 503: ErrorBody };

  const Health = Type.Object({ status: Type.String(), mqtt: Type.Boolean(), influx: Type.Boolean() });
  app.get('/healthz', { schema: { response: { 200: Health, 503: Health } } }, async (_request, reply) => {
    const influxUp = await influx.ping();
    const body = { status: influxUp && mqttClient.connected ? 'ok' : 'degraded', mqtt: mqttClient.connected, influx: influxUp };
    return reply.status(body.status === 'ok' ? 200 : 503).send(body);
  });

  app.post(`${API_PREFIX}/auth/login`, { schema: { body: LoginBody, response: { 200: Type.Object({ username: Type.String(), role: Type.String(), token: Type.String() }), ...errors } } }, async (request, reply) => {
    const operator = await operators.verify(request.body.username, request.body.password);
    if (!operator) throw new CodedError('E_UNAUTHORIZED', 'wrong username or password');
    const { token } = sessions.issue(operator.username, operator.role);
    const secure = options.cookieSecure ? '; Secure' : '';
    reply.header('set-cookie', `${SESSION_COOKIE}=${token}; HttpOnly; SameSite=Strict; Path=/; Max-Age=${Math.floor(sessions.ttlMs / 1000)}${secure}`);
    request.log.info({ operator: operator.username }, 'operator logged in');
    return { username: operator.username, role: operator.role, token };
  });

  app.post(`${API_PREFIX}/auth/logout`, async (_request, reply) => {
    reply.header('set-cookie', `${SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0`);
    return reply.status(204).send();
  });

  app.get(`${API_PREFIX}/auth/me`, { schema: { response: { 200: SessionInfo, ...errors } } }, async (request) => {
    const session = request.session as Session;
    return { username: session.username, role: session.role };
  });

  app.get(`${API_PREFIX}/ui-config`, async () => ({ mapboxAccessToken: options.mapboxAccessToken ?? null }));

  app.get(`${API_PREFIX}/provinces`, async (_request, reply) => {
    const counts = new Map<string, number>();
    for (const d of registry.devices) counts.set(d.province, (counts.get(d.province) ?? 0) + 1);
    reply.type('application/geo+json');
    return {
      type: 'FeatureCollection',
      features: PROVINCE_BOUNDARIES.features.map((f) => ({ ...f, properties: { ...f.properties, devices: counts.get(f.properties.code) ?? 0 } })),
    };
  });

  const view = (device: DeviceRecord): DeviceView => {
    const latest = live.latest(device.id);
    return {
      id: device.id,
      name: device.name,
      province: device.province,
      domain: device.domain,
      kind: device.kind,
      location: [device.location[0], device.location[1]],
      status: live.status(device.id)?.state ?? 'unknown',
      latest: latest ? { ts: latest.ts, seq: latest.seq, values: latest.values, derived: latest.derived as Record<string, number | boolean | string>, state: latest.state } : null,
    };
  };

  app.get(`${API_PREFIX}/devices`, { schema: { querystring: DevicesQuery, response: { 200: DeviceList, ...errors } } }, async (request) => {
    const { province, domain } = request.query;
    if (province !== undefined && !isProvinceCode(province)) throw new CodedError('E_PROVINCE', `province "${province}" is not one of the 34 codes`);
    const devices = registry.devices.filter((d) => d.enabled && (province === undefined || d.province === province) && (domain === undefined || d.domain === domain));
    return { devices: devices.map(view) };
  });

  const deviceParams = Type.Object({ id: DeviceId }, { additionalProperties: false });
  const findDevice = (id: string): DeviceRecord => {
    const device = registry.device(id);
    if (!device) throw new CodedError('E_NOT_FOUND', `no device "${id}"`);
    return device;
  };

  app.get(`${API_PREFIX}/devices/:id`, { schema: { params: deviceParams, response: { 200: DeviceView, ...errors } } }, async (request) => view(findDevice(request.params.id)));

  app.get(`${API_PREFIX}/devices/:id/history`, { schema: { params: deviceParams, querystring: HistoryQuery, response: { 200: HistoryResponse, ...errors } } }, async (request) => {
    const device = findDevice(request.params.id);
    const q = request.query;
    const toMs = q.to === undefined ? Date.now() : parseTime('to', q.to);
    const fromMs = parseTime('from', q.from);
    try {
      return await queryHistory(influx, {
        deviceId: device.id,
        domain: device.domain,
        fromMs,
        toMs,
        fields: resolveFields(device.domain, q.fields),
        aggregate: q.aggregate ?? 'mean',
        maxPoints: q.maxPoints ?? HISTORY_DEFAULTS.maxPoints,
      });
    } catch (err) {
      if (err instanceof CodedError) throw err;
      throw new CodedError('E_UPSTREAM', 'InfluxDB did not answer the history query; try again shortly', { cause: err });
    }
  });

  // What ingest refused from this device, and why: the dead-letter records, counted by code.
  app.get(`${API_PREFIX}/devices/:id/rejected`, { schema: { params: deviceParams, querystring: RejectedQuery, response: { 200: RejectedList, ...errors } } }, async (request) => {
    const device = findDevice(request.params.id);
    const q = request.query;
    const toMs = q.to === undefined ? Date.now() : parseTime('to', q.to);
    const fromMs = q.from === undefined ? toMs - DEAD_LETTER_DEFAULTS.rangeMs : parseTime('from', q.from);
    try {
      return await queryDeadLetters(influx, { deviceId: device.id, fromMs, toMs, code: q.code, limit: q.limit ?? DEAD_LETTER_DEFAULTS.limit });
    } catch (err) {
      if (err instanceof CodedError) throw err;
      throw new CodedError('E_UPSTREAM', 'InfluxDB did not answer the dead-letter query; try again shortly', { cause: err });
    }
  });

  // ---- dashboard ----
  const dashboardDir = options.dashboardDir;
  if (dashboardDir && existsSync(join(dashboardDir, 'index.html'))) {
    await app.register(fastifyStatic, { root: dashboardDir, wildcard: true, index: ['index.html'] });
  } else {
    app.get('/', async (_request, reply) =>
      reply.status(503).type('text/plain').send('The dashboard is not built. Run: pnpm --filter @citypulse/dashboard build (npm start does this for you).\n'),
    );
  }

  // ---- live: socket.io ----
  const io = new SocketServer<ClientToServerEvents, ServerToClientEvents, Record<string, never>, SocketData>(app.server, {
    path: SOCKET_IO_PATH,
    serveClient: false,
    maxHttpBufferSize: 16 * 1024,
  });
  io.use((socket, next) => {
    const authToken = (socket.handshake.auth as { token?: unknown }).token;
    const token = readCookie(socket.request.headers.cookie, SESSION_COOKIE) ?? (typeof authToken === 'string' ? authToken : undefined);
    const session = sessions.verify(token);
    if (!session) {
      next(Object.assign(new Error('E_UNAUTHORIZED'), { data: { code: 'E_UNAUTHORIZED', message: 'login required' } }));
      return;
    }
    socket.data.session = session;
    socket.data.resync = new Set();
    next();
  });

  const checkProvinces = (request: unknown): string[] | SubscribeAck => {
    const provinces = (request as { provinces?: unknown } | null)?.provinces;
    if (!Array.isArray(provinces) || provinces.length === 0 || provinces.length > 34 || !provinces.every((p): p is string => typeof p === 'string' && isProvinceCode(p))) {
      return { ok: false, error: { code: 'E_BAD_REQUEST', message: 'provinces must be a list of 1–34 province codes, e.g. ["01","79"]' } };
    }
    return [...new Set(provinces)];
  };

  io.on('connection', (socket) => {
    socket.on('subscribe', (request, ack) => {
      const reply = typeof ack === 'function' ? ack : () => undefined;
      const provinces = checkProvinces(request);
      if (!Array.isArray(provinces)) return reply(provinces);
      void socket.join(provinces.map(provinceRoom));
      reply({ ok: true, provinces });
      for (const code of provinces) socket.emit('snapshot', live.snapshot(code));
    });
    socket.on('unsubscribe', (request, ack) => {
      const reply = typeof ack === 'function' ? ack : () => undefined;
      const provinces = checkProvinces(request);
      if (!Array.isArray(provinces)) return reply(provinces);
      for (const code of provinces) void socket.leave(provinceRoom(code));
      reply({ ok: true, provinces });
    });
  });

  const backlog = (socket: Socket) => (socket.conn as unknown as { writeBuffer?: unknown[] }).writeBuffer?.length ?? 0;
  const frameTimer = setInterval(() => {
    for (const frame of live.drainFrames()) {
      const members = io.sockets.adapter.rooms.get(provinceRoom(frame.province));
      if (!members) continue;
      for (const id of members) {
        const socket = io.sockets.sockets.get(id);
        if (!socket) continue;
        // A lagging screen skips frames (and is resynced later); it never holds up the others.
        if (backlog(socket) > API_DEFAULTS.maxSocketBacklog) {
          socket.data.resync.add(frame.province);
          continue;
        }
        if (socket.data.resync.delete(frame.province)) socket.emit('snapshot', live.snapshot(frame.province));
        else socket.emit('frame', frame);
      }
    }
  }, options.frameIntervalMs ?? API_DEFAULTS.frameIntervalMs);
  const heartbeatTimer = setInterval(() => io.emit('heartbeat', { serverTime: Date.now() }), API_DEFAULTS.heartbeatIntervalMs);

  mqttClient.on('message', (topic, payload) => {
    const status = live.handleMessage(topic, payload);
    if (status) io.to(provinceRoom(status.province)).emit('deviceStatus', status);
  });

  try {
    const restored = await live.restore(influx);
    logger.info({ restored }, 'live state restored from InfluxDB');
  } catch (err) {
    logger.warn({ err }, 'could not restore live state from InfluxDB; starting empty');
  }

  return {
    app,
    io,
    live,
    mqtt: mqttClient,
    async close() {
      clearInterval(frameTimer);
      clearInterval(heartbeatTimer);
      await new Promise<void>((resolve) => void io.close(() => resolve()));
      await mqttClient.endAsync();
      await app.close();
    },
  };
}
