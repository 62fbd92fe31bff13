import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyError, type FastifyRequest } from 'fastify';
import fastifyCors from '@fastify/cors';
import fastifyHelmet from '@fastify/helmet';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifyStatic from '@fastify/static';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Type from 'typebox';
import mqtt, { type MqttClient } from 'mqtt';
import { Server as SocketServer, type Socket } from 'socket.io';
import type { Logger } from 'pino';
import {
  API_PREFIX,
  CodedError,
  isProvinceCode,
  SOCKET_IO_PATH,
  TOPIC_FILTERS,
  type ClientToServerEvents,
  type RejectionCode,
  type ServerToClientEvents,
  type SubscribeAck,
} from '@citypulse/contracts';
import type { DeviceRegistry } from '@citypulse/broker/registry';
import type { Influx } from '@citypulse/infra';
import { AuditLog } from './audit.js';
import { LiveState } from './live.js';
import type { OperatorStore } from './operators.js';
import { canSeeProvince } from './rights.js';
import { adminRoutes } from './routes/admin.js';
import { authRoutes } from './routes/auth.js';
import type { AuthPrincipal, RouteContext } from './routes/context.js';
import { deviceRoutes } from './routes/devices.js';
import { readCookie, SESSION_COOKIE, type SessionSigner } from './sessions.js';

/** api knobs in one place (units in the names). */
export const API_DEFAULTS = {
  frameIntervalMs: 500,
  heartbeatIntervalMs: 5000,
  /** A socket with more packets than this waiting to be written skips frames until it drains, then gets a snapshot. */
  maxSocketBacklog: 64,
  bodyLimitBytes: 64 * 1024,
  /** History, dead-letter and export queries per operator and minute. */
  expensiveQueriesPerMinute: 120,
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
  /** Origins allowed to call the api from a browser (CORS); none by default. */
  readonly corsOrigins?: readonly string[];
  /** Where the audit log lives (DATA_DIR); a temp folder in tests. */
  readonly dataDir: string;
  readonly expensiveQueriesPerMinute?: number;
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
  principal: AuthPrincipal;
  /** Provinces whose frames were skipped while the socket lagged: they get a snapshot when it drains. */
  resync: Set<string>;
}

const STATUS_BY_CODE: Partial<Record<RejectionCode, number>> = {
  E_BAD_REQUEST: 400,
  E_PROVINCE: 400,
  E_UNAUTHORIZED: 401,
  E_AUTH: 401,
  E_FORBIDDEN: 403,
  E_NOT_FOUND: 404,
  E_CONFLICT: 409,
  E_TOO_LARGE: 413,
  E_RATE_LIMITED: 429,
  E_UPSTREAM: 503,
};

const PROVINCE_ROOM = 'province:';
const provinceRoom = (code: string) => `${PROVINCE_ROOM}${code}`;
const provincesOfRooms = (rooms: Iterable<string>): string[] => [...rooms].filter((room) => room.startsWith(PROVINCE_ROOM)).map((room) => room.slice(PROVINCE_ROOM.length));

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
  const audit = await AuditLog.open(options.dataDir, logger);

  /**
   * The operator behind a login, with their rights as of now; undefined once the login is revoked,
   * expired, or outdated (a new password, a disabled or deleted account).
   */
  const currentPrincipal = (login: { readonly sid: string; readonly username: string; readonly version: number; readonly expiresAt: number }): AuthPrincipal | undefined => {
    if (login.expiresAt <= Date.now() || operators.isRevoked(login.sid)) return undefined;
    const operator = operators.principal(login.username);
    if (!operator || operator.tokenVersion !== login.version) return undefined;
    return { username: operator.username, role: operator.role, provinces: operator.provinces, sid: login.sid, version: login.version, expiresAt: login.expiresAt };
  };
  const authenticate = (token: string | undefined): AuthPrincipal | undefined => {
    const session = sessions.verify(token);
    return session && currentPrincipal({ ...session, expiresAt: session.exp });
  };
  const tokenOf = (request: FastifyRequest) => request.headers.authorization?.match(/^Bearer (.+)$/)?.[1] ?? readCookie(request.headers.cookie, SESSION_COOKIE);

  app.decorateRequest('principal', null);

  app.setErrorHandler((error: FastifyError | CodedError, request, reply) => {
    if (error instanceof CodedError) {
      return reply.status(STATUS_BY_CODE[error.code] ?? 400).send({ code: error.code, message: error.message });
    }
    if (error.validation) {
      return reply.status(400).send({ code: 'E_BAD_REQUEST', message: `${error.validationContext ?? 'request'}: ${error.message}` });
    }
    const status = error.statusCode ?? 500;
    if (status === 413) return reply.status(413).send({ code: 'E_TOO_LARGE', message: 'request body is too large' });
    if (status === 429) return reply.status(429).send({ code: 'E_RATE_LIMITED', message: error.message });
    if (status >= 400 && status < 500) return reply.status(status).send({ code: 'E_BAD_REQUEST', message: error.message });
    request.log.error({ err: error }, 'request failed');
    return reply.status(500).send({ code: 'E_INTERNAL', message: 'internal error; see the api log' });
  });
  app.setNotFoundHandler((request, reply) => reply.status(404).send({ code: 'E_NOT_FOUND', message: `no route ${request.method} ${request.url.slice(0, 200)}` }));

  // Security headers. The dashboard's map draws in a blob: worker; a Mapbox token also lets it reach Mapbox.
  const mapbox = options.mapboxAccessToken ? ['https://*.mapbox.com'] : [];
  await app.register(fastifyHelmet, {
    contentSecurityPolicy: {
      useDefaults: false,
      directives: {
        defaultSrc: ["'self'"],
        scriptSrc: ["'self'"],
        styleSrc: ["'self'", "'unsafe-inline'"],
        imgSrc: ["'self'", 'data:', 'blob:', ...mapbox],
        fontSrc: ["'self'", 'data:'],
        connectSrc: ["'self'", ...mapbox],
        workerSrc: ["'self'", 'blob:'],
        childSrc: ["'self'", 'blob:'],
        objectSrc: ["'none'"],
        frameAncestors: ["'none'"],
        baseUri: ["'self'"],
        formAction: ["'self'"],
      },
    },
    hsts: options.cookieSecure ? { maxAge: 15_552_000 } : false,
    referrerPolicy: { policy: 'no-referrer' },
  });
  // CORS stays closed (no Access-Control-* headers) unless origins are configured.
  if (options.corsOrigins && options.corsOrigins.length > 0) {
    await app.register(fastifyCors, { origin: [...options.corsOrigins], credentials: true, methods: ['GET', 'POST', 'PATCH', 'DELETE'] });
  }
  await app.register(fastifyRateLimit, {
    global: false,
    keyGenerator: (request) => request.principal?.username ?? request.ip,
    errorResponseBuilder: (_request, context) => ({ statusCode: 429, code: 'E_RATE_LIMITED', message: `too many requests: at most ${context.max} per ${context.after === '1 minute' ? 'minute' : context.after}; try again shortly` }),
  });
  await app.register(fastifySwagger, {
    openapi: {
      openapi: '3.1.0',
      info: { title: 'CityPulse operations API', version: '1', description: 'REST of the CityPulse operations centre. Every error is `{ code, message }` with a stable code. Log in with POST /api/v1/auth/login, then send the cookie or `Authorization: Bearer <token>`.' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' }, cookie: { type: 'apiKey', in: 'cookie', name: SESSION_COOKIE } } },
      security: [{ bearer: [] }, { cookie: [] }],
    },
  });
  await app.register(fastifySwaggerUi, { routePrefix: '/docs', staticCSP: false });

  // Every /api route except login and logout needs a session (cookie, or a Bearer token for scripts).
  const PUBLIC = new Set([`${API_PREFIX}/auth/login`, `${API_PREFIX}/auth/logout`]);
  app.addHook('onRequest', async (request) => {
    const path = request.url.split('?')[0] ?? '';
    if (!path.startsWith(`${API_PREFIX}/`)) return;
    request.principal = authenticate(tokenOf(request)) ?? null;
    if (!request.principal && !PUBLIC.has(path)) throw new CodedError('E_UNAUTHORIZED', 'login required: POST /api/v1/auth/login');
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
  const Health = Type.Object({ status: Type.String(), mqtt: Type.Boolean(), influx: Type.Boolean() });
  app.get('/healthz', { schema: { tags: ['operations'], summary: 'Liveness and backing services', security: [], response: { 200: Health, 503: Health } } }, async (_request, reply) => {
    const influxUp = await influx.ping();
    const body = { status: influxUp && mqttClient.connected ? 'ok' : 'degraded', mqtt: mqttClient.connected, influx: influxUp };
    return reply.status(body.status === 'ok' ? 200 : 503).send(body);
  });

  app.get(`${API_PREFIX}/ui-config`, { schema: { tags: ['map'], summary: 'What the dashboard needs to draw the map' } }, async () => ({ mapboxAccessToken: options.mapboxAccessToken ?? null }));

  const context: RouteContext = {
    app,
    registry,
    operators,
    sessions,
    live,
    influx,
    audit,
    expensive: { max: options.expensiveQueriesPerMinute ?? API_DEFAULTS.expensiveQueriesPerMinute, timeWindow: 60_000 },
    cookieSecure: options.cookieSecure ?? false,
  };
  authRoutes(context);
  deviceRoutes(context);
  adminRoutes(context);

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
    const principal = authenticate(token);
    if (!principal) {
      next(Object.assign(new Error('E_UNAUTHORIZED'), { data: { code: 'E_UNAUTHORIZED', message: 'login required' } }));
      return;
    }
    socket.data.principal = principal;
    socket.data.resync = new Set();
    next();
  });

  const checkProvinces = (socket: Socket, request: unknown): string[] | SubscribeAck => {
    const provinces = (request as { provinces?: unknown } | null)?.provinces;
    if (!Array.isArray(provinces) || provinces.length === 0 || provinces.length > 34 || !provinces.every((p): p is string => typeof p === 'string' && isProvinceCode(p))) {
      return { ok: false, error: { code: 'E_BAD_REQUEST', message: 'provinces must be a list of 1–34 province codes, e.g. ["01","79"]' } };
    }
    const principal = (socket.data as SocketData).principal;
    const outside = provinces.filter((p) => !canSeeProvince(principal, p));
    if (outside.length > 0) {
      return { ok: false, error: { code: 'E_FORBIDDEN', message: `provinces ${outside.join(', ')} are outside the provinces "${principal.username}" may see` } };
    }
    return [...new Set(provinces)];
  };

  io.on('connection', (socket) => {
    socket.on('subscribe', (request, ack) => {
      const reply = typeof ack === 'function' ? ack : () => undefined;
      const provinces = checkProvinces(socket, request);
      if (!Array.isArray(provinces)) return reply(provinces);
      void socket.join(provinces.map(provinceRoom));
      reply({ ok: true, provinces });
      for (const code of provinces) socket.emit('snapshot', live.snapshot(code));
    });
    socket.on('unsubscribe', (request, ack) => {
      const reply = typeof ack === 'function' ? ack : () => undefined;
      const provinces = checkProvinces(socket, request);
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
  const heartbeatTimer = setInterval(() => {
    // A session logged out, an account disabled or given a new password: its sockets close too.
    for (const socket of io.sockets.sockets.values()) {
      const current = currentPrincipal(socket.data.principal);
      if (!current) {
        socket.disconnect(true);
        continue;
      }
      // Rights changed since the socket joined: leave the rooms now out of scope.
      socket.data.principal = current;
      for (const code of provincesOfRooms(socket.rooms)) if (!canSeeProvince(current, code)) void socket.leave(provinceRoom(code));
    }
    io.emit('heartbeat', { serverTime: Date.now() });
  }, API_DEFAULTS.heartbeatIntervalMs);

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
      await audit.flush();
    },
  };
}
