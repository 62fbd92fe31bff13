import { createServer as createHttpServer, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer, isIPv6, type Server as NetServer, type Socket } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { hostname } from 'node:os';
import type { Duplex } from 'node:stream';
import { Aedes, type AedesOptions, type AedesPublishPacket, type AuthenticateError, type Client, type PublishPacket } from 'aedes';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { Logger } from 'pino';
import { deviceTopic, parseDeviceTopic, type DeviceStatusPayload } from '@citypulse/contracts';
import { readProxyHeader, type ProxyEndpoint } from '@citypulse/infra';
import { canPublish, canSubscribe, type AclDecision } from './acl.js';
import { BROKER_DEFAULTS, type BrokerLimits } from './config.js';
import { LoginThrottle, RateLimiter, type RateWindow } from './limits.js';
import { BrokerMetrics, domainOfTopic, type ClientErrorKind, type DomainLabel, type RefusalReason } from './metrics.js';
import type { DeviceRegistry, Principal } from './registry.js';
import { memoryPersistence } from './persistence.js';
import { createRouter, type Router } from './router.js';
import { QUEUE_SWEEP_DEFAULTS, type FastQueue, type QueueSweepSettings, type SweptClient, type WindowHoldSettings } from './session-queue.js';

export { BROKER_DEFAULTS, type BrokerLimits };

export interface PlatformBroker {
  readonly aedes: Aedes;
  readonly counters: BrokerMetrics;
  readonly limits: Readonly<BrokerLimits>;
  /** Who is logged in on a connection (undefined before authentication, or with authentication off). */
  principalOf(client: Client): Principal | undefined;
  /** Prometheus text of the broker's metrics. */
  metrics(): Promise<string>;
  /** Watches a transport's socket or stream for oversized packets (the listen* functions call it). */
  readonly guard: (stream: Duplex) => void;
  /**
   * Reads the PROXY protocol header a load balancer puts before MQTT and makes the socket report
   * the client's address (listeners with `proxyProtocol` call it): true once it does; false when
   * the socket was closed instead (no header, a bad one, or none in time: logged E_PROXY_HEADER).
   */
  readonly readClientAddress: (socket: Socket) => Promise<boolean>;
  /** Disconnects every client, spread over `shutdownSpreadMs`, then closes Aedes. */
  close(): Promise<void>;
}

export interface BuildBrokerOptions {
  readonly registry: DeviceRegistry;
  readonly logger: Logger;
  readonly limits?: Partial<BrokerLimits>;
  /** An Aedes persistence (sessions, subscriptions, queued QoS 1/2 messages, retained); in memory without (persistence.ts). */
  readonly persistence?: unknown;
  /** Queued messages for offline sessions, for /metrics (when the store can count them cheaply). */
  readonly queuedMessages?: () => Promise<number>;
  /**
   * Logins and the ACL (default true). False accepts anyone and allows everything: only for MQTT
   * conformance tools on a closed network.
   */
  readonly authentication?: boolean;
  /** Clock for the rate limit and login throttle, ms (default Date.now). */
  readonly clock?: () => number;
  /**
   * Broker id (default: new for every start). Unique per start, so the wills a crashed broker left
   * in the store are seen as another broker's and published, and message numbers never collide.
   */
  readonly id?: string;
  /**
   * Aedes' router (mqemitter). Default: one node's own (router.ts createRouter); a cluster passes
   * createRedisRouter's, shared by every node through Redis.
   */
  readonly mq?: Router;
  /** The sweep of a shared (Redis) message queue: session-queue.ts withQueue (tests shorten it). */
  readonly queueSweep?: Partial<QueueSweepSettings>;
  /** How long, and how many, publishes may wait for a subscriber past its in-flight window: session-queue.ts withQueue (tests shorten it). */
  readonly windowHold?: Partial<WindowHoldSettings>;
}

/** A client whose socket buffer has not emptied for the drain timeout is cut off past this size even if alive (memory bound). */
export const MAX_WRITE_BUFFER_BYTES = 64 * 1024 * 1024;

const CONNACK = { UNACCEPTABLE_PROTOCOL: 1, IDENTIFIER_REJECTED: 2, SERVER_UNAVAILABLE: 3, BAD_USERNAME_OR_PASSWORD: 4, NOT_AUTHORIZED: 5 } as const;

function authError(message: string, returnCode: number): AuthenticateError {
  const error = new Error(message) as AuthenticateError;
  (error as { returnCode: number }).returnCode = returnCode;
  return error;
}

/** What the broker knows about one logged-in connection; the last publish decision is cached. */
interface Session {
  readonly principal: Principal | undefined;
  readonly address: string;
  /** Registry generation the cached decision was made under. */
  generation: number;
  topic: string | undefined;
  retain: boolean;
  decision: AclDecision;
  domain: DomainLabel;
  /** Device whose bucket a publish to `topic` takes from (undefined: not limited). */
  rateKey: string | undefined;
}

/** Marks a publish the rate limit dropped: acknowledged to the device, delivered to nobody. */
const DROPPED = Symbol('citypulse.dropped');
type MaybeDropped = PublishPacket & { [DROPPED]?: true };
const PENDING = Symbol('citypulse.pendingPublishes');
const PAUSED = Symbol('citypulse.pausedForPublishes');
/** A connection's publishes still being routed, and whether that stopped its reading (paceOf). */
interface PacedClient {
  [PENDING]?: number;
  [PAUSED]?: boolean;
  pause(): void;
  resume(): void;
  readonly closed: boolean;
}

/**
 * Builds the platform's Aedes broker: device authentication against the registry (hashes only),
 * per-device ACL, per-device publish rate, failed-login throttling, oversized-packet guard and
 * metrics. It listens on nothing: pass it to listenMqttTcp / listenMqttTls / listenMqttWebSocket,
 * or `aedes.handle` an in-memory stream in a test.
 */
export async function buildBroker(options: BuildBrokerOptions): Promise<PlatformBroker> {
  const { registry, logger } = options;
  const limits: BrokerLimits = { ...BROKER_DEFAULTS, ...options.limits };
  const authentication = options.authentication ?? true;
  const now = options.clock ?? Date.now;
  const sessions = new WeakMap<Client, Session>();
  /** Keep-alive each client asked for in its CONNECT (0: none; TCP keep-alive then finds dead peers). */
  const keepalives = new WeakMap<Client, number>();
  const lookup = (id: string) => registry.device(id);
  const metrics = new BrokerMetrics();
  // Bumped on every registry change: cached publish decisions made before are stale.
  let generation = 0;
  let connecting = 0;

  const refuse = (reason: RefusalReason) => {
    metrics.refused[reason]++;
  };

  const rateLimiter = new RateLimiter(
    { perSecond: limits.ratePerS, burst: limits.rateBurst, windowMs: limits.rateWindowMs, abuseWindows: limits.rateAbuseWindows },
    (window) => reportRateWindow(window),
  );
  const throttle = new LoginThrottle({
    slowAfter: limits.loginSlowAfter,
    refuseAfter: limits.loginRefuseAfter,
    windowMs: limits.loginWindowMs,
    baseDelayMs: limits.loginDelayMs,
    maxDelayMs: limits.loginMaxDelayMs,
    maxAddresses: 100_000,
  });

  /** A device over its rate gets a status message saying so, once per window (not retained: it passes). */
  function reportRateWindow(window: RateWindow): void {
    const device = registry.device(window.deviceId);
    logger.warn({ code: 'E_RATE_LIMITED', device: window.deviceId, dropped: window.dropped, windows: window.strikes }, 'publish rate limit: messages dropped');
    if (!device) return;
    const status: DeviceStatusPayload = {
      state: 'online',
      ts: now(),
      reason: `rate limited: ${window.dropped} messages dropped in ${Math.round(limits.rateWindowMs / 1000)} s (limit ${limits.ratePerS}/s, burst ${limits.rateBurst})`,
    };
    publishStatus(device.province, device.domain, device.id, status, false);
  }

  function publishStatus(province: string, domain: string, deviceId: string, status: DeviceStatusPayload, retain: boolean): void {
    const topic = deviceTopic({ province, domain: domain as 'traffic', deviceId }, 'status');
    broker.publish({ cmd: 'publish', topic, payload: Buffer.from(JSON.stringify(status)), qos: 1, retain, dup: false }, (err) => {
      if (err) logger.debug({ err, topic }, 'status publish failed');
    });
  }

  const fail = (client: Client, address: string, reason: RefusalReason, message: string, returnCode: number, done: (err: AuthenticateError | null, ok: boolean) => void, extra: Record<string, unknown> = {}) => {
    metrics.authFailures++;
    refuse(reason);
    const failures = reason === 'max_connections' ? 0 : throttle.failed(address, now());
    logger.warn({ code: 'E_AUTH', clientId: client.id, address, reason, failures, ...extra }, `login refused: ${message}`);
    done(authError(message, returnCode), false);
  };

  const persistence = options.persistence ?? memoryPersistence();
  // A queue from session-queue.ts gives each persistent subscriber an outgoing in-flight window.
  const queue = persistence as Partial<Pick<FastQueue<object>, 'windowClient' | 'windowStats'>>;

  const aedesOptions: AedesOptions = {
    id: options.id ?? `citypulse-${hostname()}-${process.pid}-${Date.now().toString(36)}`,
    concurrency: limits.concurrency,
    mq: options.mq ?? createRouter(limits.concurrency),
    connectTimeout: limits.connectTimeoutMs,
    heartbeatInterval: limits.heartbeatIntervalMs,
    drainTimeout: limits.drainTimeoutMs,
    // patches/aedes@1.2.0.patch: past the drain timeout a client still alive (taking bytes, or
    // sending: a subscriber's PUBACKs) keeps its connection unless this much waits for it.
    ...({ maxWriteBufferBytes: MAX_WRITE_BUFFER_BYTES } as object),
    // Aedes would refuse an unacceptable keep-alive with CONNACK 6, which MQTT 3.1.1 does not
    // define; the check is done in authenticate instead (see keepalives).
    keepaliveLimit: 0,

    preConnect(client, packet, done) {
      keepalives.set(client, packet.keepalive ?? 0);
      // Before the session's subscriptions are restored: they capture the client's delivery.
      queue.windowClient?.(client as unknown as SweptClient, limits.maxInflightOutbound, { maxHeld: Math.max(1, Math.floor(limits.concurrency / 2)), ...options.windowHold });
      done(null, true);
    },
    maxInflightInbound: limits.maxInflightInbound,
    persistence,

    authenticate(client, username, password, done) {
      const address = addressOf(client);
      const keepalive = keepalives.get(client) ?? 0;
      if (keepalive > limits.keepaliveMaxS) {
        refuse('keepalive');
        logger.warn({ clientId: client.id, address, keepaliveS: keepalive, limitS: limits.keepaliveMaxS }, 'login refused: keep-alive above the limit');
        done(authError(`keep-alive ${keepalive} s is above the broker's limit of ${limits.keepaliveMaxS} s`, CONNACK.NOT_AUTHORIZED), false);
        return;
      }
      if (!authentication) {
        sessions.set(client, newSession(undefined, address));
        metrics.connectionsTotal++;
        done(null, true);
        return;
      }
      if (broker.connectedClients + connecting >= limits.maxConnections) {
        fail(client, address, 'max_connections', `the broker is at its limit of ${limits.maxConnections} connections; retry later`, CONNACK.SERVER_UNAVAILABLE, done);
        return;
      }
      const verdict = throttle.check(address, now());
      if (verdict.action === 'refuse') {
        fail(client, address, 'throttled', `too many failed logins from ${address}; retry in ${Math.ceil(verdict.retryAfterMs / 1000)} s`, CONNACK.NOT_AUTHORIZED, done);
        return;
      }
      if (!username || !password) {
        fail(client, address, 'anonymous', 'anonymous clients are not allowed: log in with the device id and its secret', CONNACK.NOT_AUTHORIZED, done);
        return;
      }
      connecting++;
      const check = () =>
        registry.authenticate(username, password.toString('utf8')).then(
          (principal) => {
            connecting--;
            if (!principal) {
              fail(client, address, 'bad_credentials', 'bad username or password', CONNACK.BAD_USERNAME_OR_PASSWORD, done, { username: username.slice(0, 64) });
              return;
            }
            // A device's client id is its device id: one session per device, no session hijacking.
            if (principal.type === 'device' && client.id !== principal.device.id) {
              fail(client, address, 'client_id', 'client id must equal the device id', CONNACK.IDENTIFIER_REJECTED, done, { device: principal.device.id });
              return;
            }
            throttle.succeeded(address);
            sessions.set(client, newSession(principal, address));
            metrics.connectionsTotal++;
            done(null, true);
          },
          (err: unknown) => {
            connecting--;
            logger.error({ err }, 'authentication failed');
            done(authError('authentication unavailable', CONNACK.SERVER_UNAVAILABLE), false);
          },
        );
      // Repeated failures from this address: answer later (the secret is still checked, so a
      // device that got its secret right is let in, only slower).
      if (verdict.delayMs > 0) setTimeout(check, verdict.delayMs);
      else void check();
    },

    authorizePublish(client, packet, done) {
      if (!client) {
        done(null); // the broker's own publishes ($SYS, statuses, wills)
        return;
      }
      const session = sessions.get(client);
      if (!session) {
        done(new Error('not authenticated'));
        return;
      }
      if (!authentication) {
        done(null);
        return;
      }
      if (session.topic === packet.topic && session.retain === packet.retain && session.generation === generation) {
        admit(client, session, packet, done);
        return;
      }
      const decide = () => decidePublish(session, packet.topic, packet.retain);
      decide();
      // A gateway's rights depend on device records: one provisioned a moment ago may not be
      // loaded yet, so look at the file once more before refusing.
      if (!session.decision.allowed && session.principal?.type === 'service' && session.principal.service.role === 'gateway') {
        registry.refreshIfChanged().then(
          () => {
            decide();
            admit(client, session, packet, done);
          },
          () => admit(client, session, packet as MaybeDropped, done),
        );
        return;
      }
      admit(client, session, packet, done);
    },

    authorizeSubscribe(client, subscription, done) {
      if (!authentication) {
        done(null, subscription);
        return;
      }
      const principal = sessions.get(client)?.principal;
      const decision = principal ? canSubscribe(principal, subscription.topic, lookup) : { allowed: false as const, reason: 'not authenticated' };
      if (!decision.allowed) {
        metrics.aclSubscribeDenied++;
        logger.warn({ code: 'E_ACL_SUBSCRIBE', clientId: client.id, filter: subscription.topic.slice(0, 200), reason: decision.reason }, 'subscription refused');
        done(null, null); // negated: SUBACK 0x80 for this filter, the connection stays
        return;
      }
      done(null, subscription);
    },

    authorizeForward(_client, packet) {
      count(metrics.messagesOut, metrics.bytesOut, packet.topic, packet.payload);
      return packet;
    },
  };

  function newSession(principal: Principal | undefined, address: string): Session {
    return { principal, address, generation: -1, topic: undefined, retain: false, decision: { allowed: false, reason: '' }, domain: 'other', rateKey: undefined };
  }

  function decidePublish(session: Session, topic: string, retain: boolean): void {
    const principal = session.principal;
    session.decision = principal ? canPublish(principal, topic, retain, lookup) : { allowed: false, reason: 'not authenticated' };
    session.topic = topic;
    session.retain = retain;
    session.generation = generation;
    session.domain = domainOfTopic(topic);
    // Devices, and gateways for each of their devices, are rate limited; services are not.
    const limited = principal?.type === 'device' || (principal?.type === 'service' && principal.service.role === 'gateway');
    if (!limited || !session.decision.allowed) session.rateKey = undefined;
    else if (principal.type === 'device') session.rateKey = principal.device.id;
    else {
      const parsed = parseDeviceTopic(topic);
      session.rateKey = parsed.ok ? parsed.value.deviceId : undefined;
    }
  }

  function admit(client: Client, session: Session, packet: MaybeDropped, done: (err?: Error | null) => void): void {
    const decision = session.decision;
    if (!decision.allowed) {
      metrics.aclPublishDenied++;
      logger.warn({ code: 'E_ACL_PUBLISH', clientId: client.id, topic: packet.topic.slice(0, 200), reason: decision.reason }, 'publish refused');
      // MQTT 3.1.1 has no negative PUBACK: the server closes the connection [MQTT-3.3.5-2].
      done(Object.assign(new Error(decision.reason), { code: 'E_ACL_PUBLISH' }));
      return;
    }
    if (session.rateKey !== undefined) {
      const verdict = rateLimiter.take(session.rateKey, now());
      if (verdict !== 'pass') {
        metrics.rateLimited[session.domain]++;
        packet[DROPPED] = true;
        if (verdict === 'abuse' && session.principal?.type === 'device') disconnectForAbuse(client, session.principal.device.id);
        done(null);
        return;
      }
    }
    done(null);
  }

  function disconnectForAbuse(client: Client, deviceId: string): void {
    if (client.closed) return;
    metrics.rateLimitDisconnects++;
    refuse('rate_abuse');
    logger.warn({ code: 'E_RATE_LIMITED', device: deviceId, windows: limits.rateAbuseWindows }, 'publish rate limit: disconnecting a device that stays over it');
    const device = registry.device(deviceId);
    client.close();
    rateLimiter.forget(deviceId);
    // After the will (if any): the retained status says why the device is gone.
    if (device) {
      const reason = `disconnected by the broker: over its publish rate limit (${limits.ratePerS}/s) for ${Math.round((limits.rateAbuseWindows * limits.rateWindowMs) / 1000)} s`;
      setImmediate(() => publishStatus(device.province, device.domain, device.id, { state: 'offline', ts: now(), reason }, true));
    }
  }

  const broker = await Aedes.createBroker(aedesOptions);
  // A dropped publish is acknowledged (QoS 1: the patched Aedes sends its PUBACK on `stored`, see
  // patches/aedes@1.2.0.patch; QoS 2: received) but goes to no subscriber.
  const publish = broker.publish.bind(broker) as (packet: AedesPublishPacket, ...rest: unknown[]) => void;
  (broker as { publish: unknown }).publish = (packet: MaybeDropped & AedesPublishPacket, ...rest: unknown[]) => {
    if (packet[DROPPED]) {
      const [first, second, third] = rest;
      const done = (typeof first === 'function' ? first : second) as ((err?: Error) => void) | undefined;
      (third as (() => void) | undefined)?.();
      done?.();
      return;
    }
    // The broker's own publishes (no client) and the platform's services (ingest, api: ingest's
    // PUBACKs to its window would not be read) are not held back. Devices and gateways are.
    const [client, done, ...more] = rest;
    const principal = client && typeof client === 'object' ? sessions.get(client as Client)?.principal : undefined;
    if (!client || typeof client !== 'object' || (principal?.type === 'service' && principal.service.role !== 'gateway')) {
      publish(packet, ...rest);
      return;
    }
    publish(packet, client, paceOf(client as Client & PacedClient, done as ((err?: Error) => void) | undefined), ...more);
  };
  /**
   * Back-pressure per publisher. Aedes goes on reading a connection while its earlier publishes
   * are still being routed (each new chunk on the socket is read), so nothing slowed a device
   * whose messages waited for a subscriber: a persistent subscriber past its in-flight window
   * (session-queue.ts holds those publishes until it acknowledges) or a cluster router behind
   * (router.ts withAdmission). Past `maxPendingPublishes` unfinished publishes a connection
   * is not read (Aedes' pause: TCP slows the device) until half of them have finished.
   */
  const paceOf = (client: Client & PacedClient, done: ((err?: Error) => void) | undefined) => {
    client[PENDING] = (client[PENDING] ?? 0) + 1;
    if (client[PENDING] >= limits.maxPendingPublishes && !client[PAUSED]) {
      client[PAUSED] = true;
      metrics.publishersPaused++;
      client.pause();
    }
    return (err?: Error) => {
      client[PENDING] = (client[PENDING] ?? 1) - 1;
      if (client[PAUSED] && client[PENDING] <= limits.maxPendingPublishes / 2) {
        client[PAUSED] = false;
        if (!client.closed) client.resume();
      }
      done?.(err);
    };
  };

  // One count per connection: a client cut off with writes pending fails each of them.
  const errored = new WeakSet<Client>();
  const onError = (client: Client, err: Error) => {
    const kind = classifyError(err);
    if (kind && !errored.has(client)) metrics.clientErrors[kind]++;
    errored.add(client);
    logger.debug({ clientId: client.id, address: addressOf(client), kind, err: err.message }, 'connection ended in an error');
  };
  broker.on('clientError', onError);
  // Counted once the message is routed: a QoS 2 resend (DUP) that Aedes drops as a duplicate, and
  // a rate-limited drop, are not messages in. The broker's own publishes have no client.
  broker.on('publish', (packet, client) => {
    if (client) count(metrics.messagesIn, metrics.bytesIn, packet.topic, packet.payload);
  });
  // A store failure mid-publish surfaces here; the message was not acknowledged, the broker stays up.
  broker.on('error' as 'clientError', (err: unknown) => logger.error({ err }, 'broker error'));
  broker.on('connectionError', onError);
  broker.on('clientDisconnect', (client) => {
    const session = sessions.get(client);
    if (session?.principal?.type === 'device') rateLimiter.forget(session.principal.device.id);
  });

  const stopSweep = startQueueSweep(broker, persistence, options.queueSweep, metrics, logger);

  // A disabled, removed or re-keyed account is disconnected at once; cached decisions are dropped.
  const onRegistryChange = ({ revoked }: { revoked: readonly string[] }) => {
    generation++;
    const clients = (broker as unknown as { clients: Record<string, Client | undefined> }).clients;
    for (const id of revoked) {
      const client = clients[id];
      if (client) {
        refuse('revoked');
        logger.info({ clientId: id }, 'credentials revoked: disconnecting');
        client.close();
      }
    }
  };
  registry.on('change', onRegistryChange);

  let closed: Promise<void> | undefined;
  return {
    aedes: broker,
    counters: metrics,
    limits,
    principalOf: (client) => sessions.get(client)?.principal,
    metrics: async () => {
      let queued: number | undefined;
      try {
        queued = options.queuedMessages ? await options.queuedMessages() : undefined;
      } catch (err) {
        logger.debug({ err }, 'queue depth unavailable');
      }
      return metrics.render({ connections: broker.connectedClients, queuedMessages: queued, throttledAddresses: throttle.refusedCount(now()), rateBuckets: rateLimiter.size, window: queue.windowStats?.() });
    },
    guard: (stream) => guardPacketSize(stream, limits.maxPacketBytes, (size) => {
      metrics.clientErrors.too_large++;
      logger.warn({ code: 'E_TOO_LARGE', address: streamAddress(stream), bytes: size, limit: limits.maxPacketBytes }, 'packet larger than the limit: disconnecting');
      stream.destroy();
    }),
    readClientAddress: async (socket) => {
      const balancer = socket.remoteAddress;
      try {
        const header = await readProxyHeader(socket, limits.connectTimeoutMs);
        if (!header) {
          logger.debug({ address: balancer }, 'connection closed before a PROXY header (a TCP health check?)');
          socket.destroy();
          return false;
        }
        if (header.source) reportAddress(socket, header.source);
        return true;
      } catch (err) {
        metrics.clientErrors.proxy_header++;
        const reason = (err as Error).message;
        logger.warn({ code: 'E_PROXY_HEADER', address: balancer, reason }, `connection closed: ${reason}. ${PROXY_PROTOCOL_HINT}`);
        socket.destroy();
        return false;
      }
    },
    close: () => {
      closed ??= (async () => {
        registry.off('change', onRegistryChange);
        stopSweep();
        await spreadDisconnects(broker, limits.shutdownSpreadMs);
        await new Promise<void>((resolve) => broker.close(() => resolve()));
      })();
      return closed;
    },
  };
}

/**
 * Runs the persistence's queue sweep (a shared store only: session-queue.ts withQueue) every
 * `intervalMs` over the connected clients: messages a persistent subscriber's connection missed
 * from another node are delivered without waiting for it to reconnect. Returns the stop.
 */
function startQueueSweep(aedes: Aedes, persistence: unknown, overrides: Partial<QueueSweepSettings> | undefined, metrics: BrokerMetrics, logger: Logger): () => void {
  const sweepQueues = (persistence as Partial<Pick<FastQueue<object>, 'sweepQueues'>>).sweepQueues;
  if (typeof sweepQueues !== 'function') return () => undefined;
  const clients = (aedes as unknown as { clients: Record<string, SweptClient | undefined> }).clients;
  const settings = { ...QUEUE_SWEEP_DEFAULTS, ...overrides };
  let failing = false;
  let checked = false;
  const sweep = () => {
    const persistent = Object.values(clients).filter((c): c is SweptClient => c !== undefined && !c.clean);
    const sample = persistent[0];
    if (!checked && sample) {
      if (typeof sample.deliverQoS !== 'function' || typeof sample.duplicates !== 'object') {
        clearInterval(timer);
        logger.error({ code: 'E_INTERNAL' }, 'Aedes changed: a client has no deliverQoS or duplicates; the queue sweep is off (review broker/src/session-queue.ts)');
        return;
      }
      checked = true;
    }
    sweepQueues.call(persistence, persistent, settings).then(
      ({ delivered, read }) => {
        if (failing && read > 0) {
          logger.info('MQTT message queue sweep: working again');
          failing = false;
        }
        for (const [clientId, messages] of delivered) {
          metrics.queueRedelivered += messages;
          logger.warn({ clientId, messages }, 'queued messages had missed their live delivery from another node (lost on the way through Redis); delivered now');
        }
      },
      (err: unknown) => {
        // The store's connection logs the outage itself: one line here, without the stack.
        if (!failing) logger.warn({ code: 'E_UPSTREAM', reason: (err as Error).message }, `MQTT message queue sweep failed; tried again every ${settings.intervalMs} ms`);
        failing = true;
      },
    );
  };
  const timer = setInterval(sweep, settings.intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}

/** Adds one message to a per-domain count and its payload bytes. */
function count(messages: Record<DomainLabel, number>, bytes: Record<DomainLabel, number>, topic: string, payload: Buffer | string): void {
  const domain = domainOfTopic(topic);
  messages[domain]++;
  bytes[domain] += typeof payload === 'string' ? Buffer.byteLength(payload) : payload.length;
}

/** Closes clients in slices over `spreadMs`, so they do not all reconnect to the next node at once. */
async function spreadDisconnects(aedes: Aedes, spreadMs: number): Promise<void> {
  const clients = Object.values((aedes as unknown as { clients: Record<string, Client | undefined> }).clients).filter((c): c is Client => c !== undefined);
  if (clients.length === 0 || spreadMs <= 0) return;
  const slices = Math.min(20, clients.length);
  const perSlice = Math.ceil(clients.length / slices);
  for (let i = 0; i < clients.length; i += perSlice) {
    for (const client of clients.slice(i, i + perSlice)) client.close();
    if (i + perSlice < clients.length) await new Promise((resolve) => setTimeout(resolve, spreadMs / slices));
  }
}

/** What kind of trouble ended a connection; undefined for a refused login (counted as a refusal). */
function classifyError(err: Error & { code?: unknown; errorCode?: unknown }): ClientErrorKind | undefined {
  if (err.code === 'E_ACL_PUBLISH') return 'publish_refused';
  if (typeof err.errorCode === 'number') return undefined;
  const message = err.message;
  if (/keep ?alive timeout/i.test(message)) return 'keepalive_timeout';
  if (/connect did not arrive|connect.*timeout/i.test(message)) return 'connect_timeout';
  if (/drain/i.test(message)) return 'drain_timeout';
  if (/ECONNRESET|EPIPE|ETIMEDOUT|connection closed|write after end|destroyed/i.test(message)) return 'socket';
  if (/invalid|malformed|protocol|header|length|cmd|not supported|unknown|wrong|packet|string|topic|parse|short|not allowed|queue limit|maxInflight/i.test(message)) return 'protocol';
  return 'other';
}

/** The remote address of a client's connection (TCP, TLS or WebSocket). */
function addressOf(client: Client): string {
  const withReq = client as Client & { req?: { socket?: Socket }; conn?: Duplex };
  return streamAddress(withReq.conn) ?? withReq.req?.socket?.remoteAddress ?? 'unknown';
}

function streamAddress(stream: Duplex | undefined): string | undefined {
  return (stream as Partial<Socket> | undefined)?.remoteAddress;
}

const PROXY_PROTOCOL_HINT =
  'BROKER_PROXY_PROTOCOL is on: connections must come through a load balancer that sends the PROXY protocol (HAProxy send-proxy-v2, nginx proxy_protocol on); set that on the load balancer, or turn BROKER_PROXY_PROTOCOL off if clients connect directly';

/**
 * Makes a socket report the client a PROXY header named, in place of the load balancer: where
 * addressOf and streamAddress (the login throttle, the logs) and Node's own getters read it.
 */
function reportAddress(socket: Socket, client: ProxyEndpoint): void {
  Object.defineProperties(socket, {
    remoteAddress: { value: client.address },
    remotePort: { value: client.port },
    remoteFamily: { value: isIPv6(client.address) ? 'IPv6' : 'IPv4' },
  });
}

/**
 * Follows the MQTT fixed headers in what the client sends (a passive 'data' tap: Aedes reads the
 * stream, this only sees the same chunks) and reports a packet whose remaining length is over the
 * limit as soon as its header arrives, before the parser buffers it.
 */
export function guardPacketSize(stream: Duplex, maxBytes: number, onTooLarge: (bytes: number) => void): void {
  let phase: 'type' | 'length' | 'body' | 'off' = 'type';
  let length = 0;
  let multiplier = 1;
  let remaining = 0;
  stream.on('data', (chunk: Buffer) => {
    let i = 0;
    const n = chunk.length;
    while (i < n && phase !== 'off') {
      if (phase === 'body') {
        const take = Math.min(remaining, n - i);
        remaining -= take;
        i += take;
        if (remaining === 0) phase = 'type';
      } else if (phase === 'type') {
        i++;
        phase = 'length';
        length = 0;
        multiplier = 1;
      } else {
        const byte = chunk[i++] as number;
        length += (byte & 0x7f) * multiplier;
        if (byte & 0x80) {
          multiplier *= 128;
          if (multiplier > 128 ** 3) phase = 'off'; // a malformed length: the MQTT parser rejects it
          continue;
        }
        if (length > maxBytes) {
          phase = 'off';
          onTooLarge(length);
          return;
        }
        remaining = length;
        phase = remaining === 0 ? 'type' : 'body';
      }
    }
  });
}

/** TCP keep-alive probes find a dead peer of a client that asked for no MQTT keep-alive. */
const TCP_KEEPALIVE_MS = 60_000;

export interface ListenOptions {
  /**
   * Behind a TCP load balancer that sends the PROXY protocol (BROKER_PROXY_PROTOCOL): every
   * connection must start with its header, which gives the client's address; others are closed.
   */
  readonly proxyProtocol?: boolean;
}

// No Nagle: a PUBACK held back 40 ms by delayed ACKs caps a windowed publisher at ~2,500 msg/s.
const SOCKET_OPTIONS = { noDelay: true, keepAlive: true, keepAliveInitialDelay: TCP_KEEPALIVE_MS } as const;

/** MQTT over TCP. Resolves once listening; port 0 picks a free port. */
export async function listenMqttTcp(broker: PlatformBroker, port: number, host: string, options: ListenOptions = {}): Promise<NetServer> {
  const server = createNetServer(SOCKET_OPTIONS, (socket) => {
    broker.aedes.handle(socket);
    broker.guard(socket);
  });
  return listen(broker, server, port, host, options);
}

/**
 * Listens for `server`'s connections on `port`. With `proxyProtocol` a plain TCP listener takes
 * them and reads each one's PROXY header first (under TLS too: the balancer passes TLS through),
 * then hands the socket to `server` as if it had accepted it.
 */
async function listen(broker: PlatformBroker, server: NetServer, port: number, host: string, options: ListenOptions): Promise<NetServer> {
  const listener = options.proxyProtocol
    ? createNetServer(SOCKET_OPTIONS, (socket) => {
        void broker.readClientAddress(socket).then((ok) => {
          if (ok) server.emit('connection', socket);
        });
      })
    : server;
  listener.listen(port, host);
  await once(listener, 'listening');
  return listener;
}

export interface TlsFiles {
  readonly cert: string | Buffer;
  readonly key: string | Buffer;
}

/** MQTT over TLS (8883 by default). */
export async function listenMqttTls(broker: PlatformBroker, port: number, host: string, tls: TlsFiles, options: ListenOptions = {}): Promise<NetServer> {
  const server = createTlsServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, (socket) => {
    socket.setNoDelay(true);
    socket.setKeepAlive(true, TCP_KEEPALIVE_MS);
    if (options.proxyProtocol) reportAddress(socket, tcpPeer(socket));
    broker.aedes.handle(socket);
    broker.guard(socket);
  });
  server.on('tlsClientError', () => undefined); // a failed handshake is the client's problem; the socket is gone
  return listen(broker, server, port, host, options);
}

/**
 * The address the TCP socket under a TLS socket reports (the client's, after its PROXY header).
 * Node has no public accessor for that socket: `_parent` is the one tls.Server wraps, and
 * test/proxy-protocol.test.ts fails if a Node version changes it.
 */
function tcpPeer(socket: TLSSocket): ProxyEndpoint {
  const tcp = (socket as TLSSocket & { _parent?: Socket })._parent ?? socket;
  return { address: tcp.remoteAddress ?? 'unknown', port: tcp.remotePort ?? 0 };
}

/**
 * MQTT over WebSocket (subprotocol "mqtt"), for browser-side tools; with `tls`, secure WebSocket.
 * Behind a TCP balancer sending the PROXY protocol (`options.proxyProtocol`) as MQTT over TCP: the
 * header is read before the HTTP upgrade (under TLS too), so the login throttle and the logs see
 * the client's address, not the balancer's.
 */
export async function listenMqttWebSocket(broker: PlatformBroker, port: number, host: string, tls?: TlsFiles, options: ListenOptions = {}): Promise<NetServer> {
  const answer = (_req: unknown, res: ServerResponse) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket: connect with the "mqtt" subprotocol\n');
  };
  const http: HttpServer = tls ? createHttpsServer({ cert: tls.cert, key: tls.key, minVersion: 'TLSv1.2' }, answer) : createHttpServer(answer);
  const wss = new WebSocketServer({
    server: http,
    maxPayload: broker.limits.maxPacketBytes + 16,
    handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false),
  });
  wss.on('connection', (socket, request) => {
    const stream = createWebSocketStream(socket);
    stream.on('error', () => socket.terminate());
    // Under TLS the address after a PROXY header is on the TCP socket beneath.
    const address = options.proxyProtocol && tls ? tcpPeer(request.socket as TLSSocket).address : request.socket.remoteAddress;
    Object.defineProperty(stream, 'remoteAddress', { value: address });
    broker.aedes.handle(stream, request);
    broker.guard(stream);
  });
  return listen(broker, http, port, host, options);
}
