import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { createServer as createNetServer, type Server as NetServer } from 'node:net';
import { once } from 'node:events';
import { Aedes, type AedesOptions, type AuthenticateError, type Client } from 'aedes';
import { WebSocketServer, createWebSocketStream } from 'ws';
import type { Logger } from 'pino';
import { DOMAINS, parseDeviceTopic, type Domain } from '@citypulse/contracts';
import { canPublish, canSubscribe, type AclDecision } from './acl.js';
import type { DeviceRegistry, Principal } from './registry.js';

/** Every broker knob in one place (units in the names); server.ts overrides from the environment. */
export const BROKER_DEFAULTS = {
  connectTimeoutMs: 30_000, // a socket that has not sent CONNECT by then is closed
  heartbeatIntervalMs: 60_000,
  drainTimeoutMs: 10_000, // one stalled subscriber cannot hold delivery to the others longer than this
  concurrency: 100,
  keepaliveLimitS: 1200,
} as const;

export type BrokerLimits = { -readonly [K in keyof typeof BROKER_DEFAULTS]: number };

export interface BrokerCounters {
  connectionsTotal: number;
  authFailures: number;
  aclPublishDenied: number;
  aclSubscribeDenied: number;
  messagesIn: Record<Domain, number>;
}

export interface PlatformBroker {
  readonly aedes: Aedes;
  readonly counters: BrokerCounters;
  /** Who is logged in on a connection (undefined before authentication). */
  principalOf(client: Client): Principal | undefined;
  close(): Promise<void>;
}

export interface BuildBrokerOptions {
  readonly registry: DeviceRegistry;
  readonly logger: Logger;
  readonly limits?: Partial<BrokerLimits>;
}

const BAD_USERNAME_OR_PASSWORD = 4;
const IDENTIFIER_REJECTED = 2;
const NOT_AUTHORIZED = 5;

function authError(message: string, returnCode: number): AuthenticateError {
  const error = new Error(message) as AuthenticateError;
  (error as { returnCode: number }).returnCode = returnCode;
  return error;
}

/**
 * Builds the platform's Aedes broker: device authentication against the registry (hashes only),
 * per-device ACL, counters. It listens on nothing: pass `aedes.handle` to a server
 * (see listenMqttTcp / listenMqttWebSocket), or to an in-memory stream in a test.
 */
export async function buildBroker(options: BuildBrokerOptions): Promise<PlatformBroker> {
  const { registry, logger } = options;
  const limits: BrokerLimits = { ...BROKER_DEFAULTS, ...options.limits };
  const principals = new WeakMap<Client, Principal>();
  const lookup = (id: string) => registry.device(id);
  const counters: BrokerCounters = {
    connectionsTotal: 0,
    authFailures: 0,
    aclPublishDenied: 0,
    aclSubscribeDenied: 0,
    messagesIn: Object.fromEntries(DOMAINS.map((d) => [d, 0])) as Record<Domain, number>,
  };

  const aedesOptions: AedesOptions = {
    id: 'citypulse-broker',
    concurrency: limits.concurrency,
    connectTimeout: limits.connectTimeoutMs,
    heartbeatInterval: limits.heartbeatIntervalMs,
    drainTimeout: limits.drainTimeoutMs,
    keepaliveLimit: limits.keepaliveLimitS,

    authenticate(client, username, password, done) {
      if (!username || !password) {
        counters.authFailures++;
        logger.warn({ code: 'E_AUTH', clientId: client.id }, 'anonymous connection refused');
        done(authError('anonymous clients are not allowed', NOT_AUTHORIZED), false);
        return;
      }
      registry.authenticate(username, password.toString('utf8')).then(
        (principal) => {
          if (!principal) {
            counters.authFailures++;
            logger.warn({ code: 'E_AUTH', clientId: client.id, username: username.slice(0, 64) }, 'login refused: unknown id, wrong secret or disabled');
            done(authError('bad username or password', BAD_USERNAME_OR_PASSWORD), false);
            return;
          }
          // A device's client id is its device id: one session per device, no session hijacking.
          if (principal.type === 'device' && client.id !== principal.device.id) {
            counters.authFailures++;
            logger.warn({ code: 'E_AUTH', clientId: client.id, device: principal.device.id }, 'client id must equal the device id');
            done(authError('client id must equal the device id', IDENTIFIER_REJECTED), false);
            return;
          }
          principals.set(client, principal);
          counters.connectionsTotal++;
          done(null, true);
        },
        (err: unknown) => {
          logger.error({ err }, 'authentication failed');
          done(authError('authentication unavailable', 3), false);
        },
      );
    },

    authorizePublish(client, packet, done) {
      if (!client) {
        done(null); // the broker's own publishes ($SYS, internal)
        return;
      }
      const principal = principals.get(client);
      const decide = () => (principal ? canPublish(principal, packet.topic, packet.retain, lookup) : { allowed: false as const, reason: 'not authenticated' });
      const finish = (decision: AclDecision) => {
        if (!decision.allowed) {
          counters.aclPublishDenied++;
          logger.warn({ code: 'E_ACL_PUBLISH', clientId: client.id, topic: packet.topic.slice(0, 200), reason: decision.reason }, 'publish refused');
          // MQTT 3.1.1 has no negative PUBACK: the server closes the connection [MQTT-3.3.5-2].
          done(new Error(decision.reason));
          return;
        }
        const parsed = parseDeviceTopic(packet.topic);
        if (parsed.ok && parsed.value.channel === 'telemetry') counters.messagesIn[parsed.value.domain]++;
        done(null);
      };
      const decision = decide();
      // A gateway's rights depend on device records: one provisioned a moment ago may not be
      // loaded yet, so look at the file once more before refusing.
      if (!decision.allowed && principal?.type === 'service' && principal.service.role === 'gateway') {
        registry.refreshIfChanged().then(
          () => finish(decide()),
          () => finish(decision),
        );
        return;
      }
      finish(decision);
    },

    authorizeSubscribe(client, subscription, done) {
      const principal = principals.get(client);
      const decision = principal ? canSubscribe(principal, subscription.topic, lookup) : { allowed: false as const, reason: 'not authenticated' };
      if (!decision.allowed) {
        counters.aclSubscribeDenied++;
        logger.warn({ code: 'E_ACL_SUBSCRIBE', clientId: client.id, filter: subscription.topic.slice(0, 200), reason: decision.reason }, 'subscription refused');
        done(null, null); // negated: SUBACK 0x80 for this filter, the connection stays
        return;
      }
      done(null, subscription);
    },
  };

  const aedes = await Aedes.createBroker(aedesOptions);
  aedes.on('clientError', (client, err) => logger.debug({ clientId: client.id, err }, 'client error'));
  aedes.on('connectionError', (client, err) => logger.debug({ clientId: client.id, err }, 'connection error'));

  // A disabled, removed or re-keyed account is disconnected at once.
  const onRegistryChange = ({ revoked }: { revoked: readonly string[] }) => {
    const clients = (aedes as unknown as { clients: Record<string, Client | undefined> }).clients;
    for (const id of revoked) {
      const client = clients[id];
      if (client) {
        logger.info({ clientId: id }, 'credentials revoked: disconnecting');
        client.close();
      }
    }
  };
  registry.on('change', onRegistryChange);

  return {
    aedes,
    counters,
    principalOf: (client) => principals.get(client),
    async close() {
      registry.off('change', onRegistryChange);
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
    },
  };
}

/** MQTT over TCP. Resolves once listening; port 0 picks a free port. */
export async function listenMqttTcp(aedes: Aedes, port: number, host: string): Promise<NetServer> {
  // No Nagle: a PUBACK held back 40 ms by delayed ACKs caps a windowed publisher at ~2,500 msg/s.
  const server = createNetServer({ noDelay: true }, aedes.handle);
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}

/** MQTT over WebSocket (subprotocol "mqtt"), for browser-side tools. */
export async function listenMqttWebSocket(aedes: Aedes, port: number, host: string): Promise<HttpServer> {
  const http = createHttpServer((_req, res) => {
    res.writeHead(426, { 'content-type': 'text/plain' }).end('MQTT over WebSocket: connect with the "mqtt" subprotocol\n');
  });
  const wss = new WebSocketServer({ server: http, handleProtocols: (protocols) => (protocols.has('mqtt') ? 'mqtt' : protocols.has('mqttv3.1') ? 'mqttv3.1' : false) });
  wss.on('connection', (socket, request) => {
    const stream = createWebSocketStream(socket);
    stream.on('error', () => socket.terminate());
    aedes.handle(stream, request);
  });
  http.listen(port, host);
  await once(http, 'listening');
  return http;
}
