import { COMMON_CONFIG, type ConfigSpec, type VarSpec } from '@citypulse/contracts';
import { REDIS_CONFIG } from '@citypulse/infra';

/**
 * Every limit that keeps the broker up, in one object: its default, its bounds, and what it is
 * for. Each is overridable by an environment variable named after it (`connectTimeoutMs` →
 * `BROKER_CONNECT_TIMEOUT_MS`), so the README table and .env.example list them all.
 */
export const BROKER_LIMIT_SPECS = {
  connectTimeoutMs: { default: 30_000, min: 1_000, max: 600_000, description: 'close sockets that send no CONNECT within this time' },
  keepaliveMaxS: { default: 1_200, min: 10, max: 65_535, description: 'longest keep-alive a client may ask for (refused with CONNACK 5 above it); 0 (none) is accepted, TCP keep-alive then finds dead peers' },
  maxConnections: { default: 50_000, min: 1, max: 1_000_000, description: 'logged-in clients at most; more are refused with CONNACK 3 (server unavailable)' },
  maxPacketBytes: { default: 300_000, min: 1_024, max: 268_435_455, description: 'largest MQTT packet; a client announcing a bigger one is disconnected before it is read' },
  drainTimeoutMs: { default: 10_000, min: 100, max: 600_000, description: 'longest a subscriber that stopped reading may hold up delivery before it is disconnected' },
  concurrency: { default: 20_000, min: 1, max: 100_000, description: 'messages Aedes routes at once; past it they queue (costly); the drain timeout cuts off a subscriber that stalls them' },
  heartbeatIntervalMs: { default: 60_000, min: 1_000, max: 3_600_000, description: 'interval of the $SYS heartbeat' },
  ratePerS: { default: 10, min: 1, max: 1_000_000, description: 'messages per second a device may publish, sustained (token bucket)' },
  rateBurst: { default: 100, min: 1, max: 1_000_000, description: 'messages a device may publish at once after a quiet spell' },
  rateWindowMs: { default: 10_000, min: 1_000, max: 3_600_000, description: 'accounting window of the rate limit: a device over it gets one status message per window' },
  rateAbuseWindows: { default: 6, min: 0, max: 10_000, description: 'consecutive windows over the limit after which a device is disconnected (0: never)' },
  loginSlowAfter: { default: 5, min: 1, max: 10_000, description: 'failed logins from one address after which each answer is delayed (doubling)' },
  loginRefuseAfter: { default: 20, min: 1, max: 100_000, description: 'failed logins from one address after which it is refused until the window ends' },
  loginWindowMs: { default: 600_000, min: 1_000, max: 86_400_000, description: 'window over which failed logins from an address are counted' },
  loginDelayMs: { default: 500, min: 0, max: 60_000, description: 'first delay of a slowed-down login' },
  loginMaxDelayMs: { default: 10_000, min: 0, max: 600_000, description: 'longest delay of a slowed-down login' },
  maxInflightInbound: { default: 1_000, min: 1, max: 65_535, description: 'QoS 2 messages a client may hold unreleased' },
  maxInflightOutbound: { default: 65_535, min: 1, max: 65_535, description: 'QoS 1/2 messages a persistent subscriber (ingest) may hold unacknowledged; past it the rest stay in the queue store and follow as it acknowledges. Lower keeps the broker\'s and ingest\'s memory smaller, but caps delivery at the window divided by ingest\'s acknowledgement delay, seconds on a busy machine (BENCHMARKS.md)' },
  maxPendingPublishes: { default: 100, min: 1, max: 100_000, description: 'publishes from one connection still being routed, past which the connection is not read until half have finished: devices slow to what the subscribers take (a persistent subscriber past its in-flight window, a cluster router behind)' },
  shutdownSpreadMs: { default: 2_000, min: 0, max: 600_000, description: 'on shutdown, clients are disconnected over this time so they reconnect elsewhere gradually' },
} as const satisfies Record<string, { default: number; min: number; max: number; description: string }>;

export type BrokerLimits = { -readonly [K in keyof typeof BROKER_LIMIT_SPECS]: number };

export const BROKER_DEFAULTS: Readonly<BrokerLimits> = Object.fromEntries(Object.entries(BROKER_LIMIT_SPECS).map(([key, spec]) => [key, spec.default])) as BrokerLimits;

/** `connectTimeoutMs` → `BROKER_CONNECT_TIMEOUT_MS`. */
export function limitVariable(key: keyof BrokerLimits): string {
  return `BROKER_${key.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase()}`;
}

/** The limits out of a config read with BROKER_CONFIG. */
export function limitsFromConfig(config: Readonly<Record<string, unknown>>): BrokerLimits {
  return Object.fromEntries(Object.keys(BROKER_LIMIT_SPECS).map((key) => [key, config[limitVariable(key as keyof BrokerLimits)] as number])) as BrokerLimits;
}

const limitVars = Object.fromEntries(
  (Object.entries(BROKER_LIMIT_SPECS) as [keyof BrokerLimits, (typeof BROKER_LIMIT_SPECS)[keyof BrokerLimits]][]).map(([key, spec]) => [
    limitVariable(key),
    { kind: 'int', default: String(spec.default), min: spec.min, max: spec.max, description: spec.description } satisfies VarSpec,
  ]),
) as Record<string, VarSpec>;

/** Where the broker keeps MQTT sessions (see persistence.ts). */
export const BROKER_STORES = ['memory', 'disk', 'redis'] as const;
/** How messages travel between broker nodes (see router.ts). */
export const BROKER_MQS = ['local', 'redis'] as const;

export const BROKER_CONFIG = {
  ...COMMON_CONFIG,
  MQTT_HOST: { kind: 'string', default: '0.0.0.0', description: 'interface the broker listens on (field devices connect here)' },
  MQTT_PORT: { kind: 'port', default: '1883', description: 'MQTT over TCP' },
  MQTT_WS_PORT: { kind: 'port', default: '8083', description: 'MQTT over WebSocket (0 turns it off)' },
  MQTT_TLS_PORT: { kind: 'port', default: '8883', description: 'MQTT over TLS, when TLS_CERT_FILE and TLS_KEY_FILE are set (0 turns it off)' },
  MQTT_WSS_PORT: { kind: 'port', default: '8084', description: 'MQTT over secure WebSocket, when TLS_CERT_FILE and TLS_KEY_FILE are set (0 turns it off)' },
  TLS_CERT_FILE: { kind: 'path', optional: true, description: 'PEM certificate (chain) for MQTT over TLS and secure WebSocket' },
  TLS_KEY_FILE: { kind: 'path', optional: true, description: 'PEM private key of TLS_CERT_FILE' },
  BROKER_HTTP_HOST: { kind: 'string', default: '127.0.0.1', description: 'interface of the broker\'s /metrics and /healthz' },
  BROKER_HTTP_PORT: { kind: 'port', default: '9102', description: 'port of the broker\'s /metrics (Prometheus) and /healthz (0 turns it off)' },
  BROKER_AUTH: { kind: 'bool', default: 'true', description: 'device logins and the ACL; false only for MQTT conformance tools on a closed network' },
  BROKER_STORE: { kind: 'enum', default: 'disk', values: BROKER_STORES, description: 'where sessions and queued QoS 1/2 messages live: disk (DATA_DIR/mqtt-sessions and DATA_DIR/mqtt-queue), redis, or memory (lost on restart)' },
  BROKER_MQ: { kind: 'enum', default: 'local', values: BROKER_MQS, description: 'how messages reach subscribers: local (one broker), or redis (a cluster: every node\'s subscribers get what any node receives, through Redis pub/sub; needs BROKER_STORE=redis)' },
  BROKER_PROXY_PROTOCOL: { kind: 'bool', default: 'false', description: 'true behind a TCP load balancer that sends the PROXY protocol (HAProxy send-proxy-v2 or send-proxy, nginx proxy_protocol on, the TCP front of npm run cluster): every MQTT over TCP and TLS connection must start with its header (v2 or v1), whose client address the login throttle and logs then use; one without it is closed (E_PROXY_HEADER). WebSocket ports: BROKER_WS_PROXY_PROTOCOL' },
  BROKER_WS_PROXY_PROTOCOL: { kind: 'bool', default: 'false', description: 'the same for MQTT over WebSocket and secure WebSocket (MQTT_WS_PORT, MQTT_WSS_PORT), when their balancer sends the PROXY protocol too (HAProxy send-proxy-v2 in infra/deploy/haproxy.cfg); the header is read before the HTTP upgrade' },
  ...REDIS_CONFIG,
  ...limitVars,
} as const satisfies ConfigSpec;
