import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Fastify, { type FastifyError, type FastifyReply, type FastifyRequest } from 'fastify';
import fastifyCors from '@fastify/cors';
import fastifyHelmet from '@fastify/helmet';
import fastifyRateLimit from '@fastify/rate-limit';
import fastifyStatic from '@fastify/static';
import fastifySwagger from '@fastify/swagger';
import fastifySwaggerUi from '@fastify/swagger-ui';
import { TypeBoxValidatorCompiler, type TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import Type from 'typebox';
import mqtt, { type MqttClient } from 'mqtt';
import type { Logger } from 'pino';
import { API_PREFIX, CodedError, OPS_ROOT, TOPIC_FILTERS, type RejectionCode } from '@citypulse/contracts';
import type { DeviceRegistry } from '@citypulse/broker/registry';
import type { Influx } from '@citypulse/infra';
import { rulesFileIn } from '@citypulse/ingest';
import { AlertBook } from './alerts.js';
import { AuditLog } from './audit.js';
import { joinCluster } from './cluster.js';
import { LiveState } from './live.js';
import type { OperatorStore } from './operators.js';
import { attachRealtime, type CityIo } from './realtime.js';
import { adminRoutes } from './routes/admin.js';
import { alertRoutes } from './routes/alerts.js';
import { deviceAdminRoutes } from './routes/device-admin.js';
import { ruleRoutes } from './routes/rules.js';
import { authRoutes } from './routes/auth.js';
import type { AuthPrincipal, RouteContext } from './routes/context.js';
import { deviceRoutes } from './routes/devices.js';
import { historyRoutes } from './routes/history.js';
import { readCookie, SESSION_COOKIE, type SessionSigner } from './sessions.js';

/** api knobs in one place (units in the names); live delivery's are REALTIME_DEFAULTS. */
export const API_DEFAULTS = {
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
  /** Packets a socket may have waiting before it skips frames (REALTIME_DEFAULTS.maxSocketBacklog; tests lower it). */
  readonly maxSocketBacklog?: number;
  readonly cookieSecure?: boolean;
  readonly mapboxAccessToken?: string | undefined;
  /** Origins allowed to call the api from a browser (CORS); none by default. */
  readonly corsOrigins?: readonly string[];
  /** Where the audit log lives (DATA_DIR); a temp folder in tests. */
  readonly dataDir: string;
  /** The alert rules file (INGEST_RULES_FILE); default DATA_DIR/alert-rules.yaml. */
  readonly rulesFile?: string;
  readonly expensiveQueriesPerMinute?: number;
  /**
   * How api nodes share socket.io events (API_ADAPTER): `local` (default) for a single node;
   * `redis` joins the nodes using the same Redis (REDIS_URL) through @socket.io/redis-adapter.
   * `peerTimeoutMs` (CLUSTER_DEFAULTS) is for tests.
   */
  readonly adapter?: { readonly kind: 'local' } | { readonly kind: 'redis'; readonly url: string; readonly peerTimeoutMs?: number } | undefined;
}

function createFastify(logger: Logger) {
  return Fastify({
    loggerInstance: logger,
    bodyLimit: API_DEFAULTS.bodyLimitBytes,
    trustProxy: false,
    // What the router refuses before any route runs (a malformed URL, a path parameter over 100
    // characters) gets the same error shape and a stable code as everything else.
    frameworkErrors: (error, _request, reply) => {
      const status = error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 414 : 400;
      void (reply as FastifyReply).status(status).send({ code: 'E_BAD_REQUEST', message: error.code === 'FST_ERR_MAX_PARAM_LENGTH' ? 'a path parameter is longer than 100 characters' : 'the URL is malformed' });
    },
  }).withTypeProvider<TypeBoxTypeProvider>();
}
export type ApiFastify = ReturnType<typeof createFastify>;

export interface ApiApp {
  readonly app: ApiFastify;
  readonly io: CityIo;
  readonly live: LiveState;
  readonly alerts: AlertBook;
  readonly mqtt: MqttClient;
  close(): Promise<void>;
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

const OPS_PREFIX = `${OPS_ROOT}/`;

/**
 * Builds the api: Fastify REST under /api/v1, socket.io live frames, the built dashboard at /.
 * Connects to the broker with its own service account; never calls ingest. Does not listen:
 * server.ts (or a test) calls app.listen.
 */
export async function buildApi(options: ApiOptions): Promise<ApiApp> {
  const { influx, registry, operators, sessions, logger } = options;
  // First: a Redis that does not answer fails the start before anything else is opened.
  const cluster = options.adapter?.kind === 'redis' ? await joinCluster({ url: options.adapter.url, logger, peerTimeoutMs: options.adapter.peerTimeoutMs }) : undefined;
  const app = createFastify(logger);
  app.setValidatorCompiler(TypeBoxValidatorCompiler);
  const live = new LiveState(registry, logger);
  const alerts = new AlertBook(influx, logger);
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
    // Alerts at QoS 1 (each one counts); telemetry, status and the retained summaries at QoS 0.
    const subscriptions = { [TOPIC_FILTERS.allTelemetry]: { qos: 0 }, [TOPIC_FILTERS.allStatus]: { qos: 0 }, [TOPIC_FILTERS.allSummaries]: { qos: 0 }, [TOPIC_FILTERS.allAlerts]: { qos: 1 } } as const;
    mqttClient.subscribe(subscriptions, (err) => {
      if (err) logger.error({ err }, 'api: MQTT subscribe failed');
    });
  });
  mqttClient.on('error', (err) => logger.warn({ err }, 'api: MQTT error'));

  // ---- REST ----
  // `redis` in cluster mode only: while it is false the node serves its own screens, alone.
  const Health = Type.Object({ status: Type.String(), mqtt: Type.Boolean(), influx: Type.Boolean(), redis: Type.Optional(Type.Boolean()) });
  app.get('/healthz', { schema: { tags: ['operations'], summary: 'Liveness and backing services', security: [], response: { 200: Health, 503: Health } } }, async (_request, reply) => {
    const influxUp = await influx.ping();
    const redisUp = cluster?.connected();
    const body = { status: influxUp && mqttClient.connected && redisUp !== false ? 'ok' : 'degraded', mqtt: mqttClient.connected, influx: influxUp, ...(redisUp === undefined ? {} : { redis: redisUp }) };
    return reply.status(body.status === 'ok' ? 200 : 503).send(body);
  });

  app.get(`${API_PREFIX}/ui-config`, { schema: { tags: ['map'], summary: 'What the dashboard needs to draw the map' } }, async () => ({ mapboxAccessToken: options.mapboxAccessToken ?? null }));

  const context: RouteContext = {
    app,
    registry,
    operators,
    sessions,
    live,
    alerts,
    influx,
    audit,
    onAlertAck: (ack, alert) => realtime.alertAck(ack, alert),
    expensive: { max: options.expensiveQueriesPerMinute ?? API_DEFAULTS.expensiveQueriesPerMinute, timeWindow: 60_000 },
    cookieSecure: options.cookieSecure ?? false,
    rulesFile: options.rulesFile ?? rulesFileIn(options.dataDir),
  };
  authRoutes(context);
  deviceRoutes(context);
  historyRoutes(context);
  alertRoutes(context);
  deviceAdminRoutes(context);
  ruleRoutes(context);
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
  const realtime = attachRealtime({
    server: app.server,
    live,
    alerts,
    influx,
    audit,
    logger,
    authenticate,
    recheck: currentPrincipal,
    readSessionCookie: (header) => readCookie(header, SESSION_COOKIE),
    frameIntervalMs: options.frameIntervalMs,
    maxSocketBacklog: options.maxSocketBacklog,
    cluster,
  });

  mqttClient.on('message', (topic, payload) => {
    if (topic.startsWith(OPS_PREFIX)) {
      if (topic.endsWith('/summary')) {
        const summary = live.handleSummary(topic, payload);
        if (summary) realtime.summary(summary);
      } else if (topic.endsWith('/alerts')) {
        const alert = alerts.handleMessage(payload);
        if (alert) realtime.alert(alert);
      }
      return;
    }
    const status = live.handleMessage(topic, payload);
    if (status) realtime.deviceStatus(status);
  });

  try {
    const restored = await live.restore(influx);
    logger.info({ restored }, 'live state restored from InfluxDB');
  } catch (err) {
    logger.warn({ err }, 'could not restore live state from InfluxDB; starting empty');
  }
  try {
    const active = await alerts.restore();
    logger.info({ active }, 'active alerts restored from InfluxDB');
  } catch (err) {
    logger.warn({ err }, 'could not restore the active alerts from InfluxDB; they come back as ingest raises or clears them');
  }

  return {
    app,
    io: realtime.io,
    live,
    alerts,
    mqtt: mqttClient,
    async close() {
      await realtime.close(); // unsubscribes the adapter from Redis
      await mqttClient.endAsync();
      await app.close();
      await cluster?.close();
      await audit.flush();
    },
  };
}
