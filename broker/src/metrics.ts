import { DOMAINS, TOPIC_ROOT, type Domain } from '@citypulse/contracts';
import { PrometheusText } from '@citypulse/infra';
import type { WindowStats } from './session-queue.js';

const ROOT = `${TOPIC_ROOT}/`;

/**
 * The broker's counters, kept as plain numbers (the hot path only adds) and rendered in the
 * Prometheus text format on demand. Messages are counted by the domain of their topic; anything
 * that is not a device topic (a service's, `$SYS`) counts as "other".
 */
export type DomainLabel = Domain | 'other';
export const DOMAIN_LABELS: readonly DomainLabel[] = [...DOMAINS, 'other'];

/** Why a connection was refused or closed by the broker. */
export const REFUSAL_REASONS = ['bad_credentials', 'anonymous', 'client_id', 'throttled', 'max_connections', 'keepalive', 'revoked', 'rate_abuse'] as const;
export type RefusalReason = (typeof REFUSAL_REASONS)[number];

/** Client errors by kind: what hostile or broken input looks like from the broker. */
export const CLIENT_ERROR_KINDS = ['protocol', 'too_large', 'keepalive_timeout', 'connect_timeout', 'drain_timeout', 'publish_refused', 'socket', 'proxy_header', 'other'] as const;
export type ClientErrorKind = (typeof CLIENT_ERROR_KINDS)[number];

type PerDomain = Record<DomainLabel, number>;
const perDomain = (): PerDomain => Object.fromEntries(DOMAIN_LABELS.map((d) => [d, 0])) as PerDomain;

export class BrokerMetrics {
  connectionsTotal = 0;
  authFailures = 0;
  aclPublishDenied = 0;
  aclSubscribeDenied = 0;
  rateLimitDisconnects = 0;
  /** Queued messages delivered by the sweep: they had missed their live delivery from another node. */
  queueRedelivered = 0;
  /** Times a connection was not read because its publishes waited for subscribers (app.ts paceOf). */
  publishersPaused = 0;
  readonly messagesIn: PerDomain = perDomain();
  readonly messagesOut: PerDomain = perDomain();
  readonly bytesIn: PerDomain = perDomain();
  readonly bytesOut: PerDomain = perDomain();
  readonly rateLimited: PerDomain = perDomain();
  readonly refused = Object.fromEntries(REFUSAL_REASONS.map((r) => [r, 0])) as Record<RefusalReason, number>;
  readonly clientErrors = Object.fromEntries(CLIENT_ERROR_KINDS.map((k) => [k, 0])) as Record<ClientErrorKind, number>;
  readonly startedAt = Date.now();

  /** Prometheus text exposition (version 0.0.4). `gauges` are read at scrape time. */
  render(gauges: { connections: number; queuedMessages: number | undefined; throttledAddresses: number; rateBuckets: number; window?: Readonly<WindowStats> | undefined }): string {
    const text = new PrometheusText();
    const family = text.family.bind(text);
    const byDomain = (values: PerDomain) => DOMAIN_LABELS.map((d) => [`{domain="${d}"}`, values[d]] as const);
    const p = 'citypulse_broker_';
    family(`${p}connections`, 'gauge', 'Clients connected now.', [['', gauges.connections]]);
    family(`${p}connections_total`, 'counter', 'Clients that logged in since start.', [['', this.connectionsTotal]]);
    family(`${p}connections_refused_total`, 'counter', 'Connections refused or closed by the broker, by reason.', REFUSAL_REASONS.map((r) => [`{reason="${r}"}`, this.refused[r]] as const));
    family(`${p}auth_failures_total`, 'counter', 'Failed logins (bad id or secret, anonymous, wrong client id, throttled).', [['', this.authFailures]]);
    family(`${p}messages_in_total`, 'counter', 'PUBLISH packets accepted from clients, by domain of the topic.', byDomain(this.messagesIn));
    family(`${p}messages_out_total`, 'counter', 'PUBLISH packets delivered to subscribers, by domain of the topic.', byDomain(this.messagesOut));
    family(`${p}queue_redelivered_total`, 'counter', 'Queued QoS 1/2 messages a connected persistent subscriber had missed from another node (cluster mode), delivered by the queue sweep.', [['', this.queueRedelivered]]);
    family(`${p}publishers_paused_total`, 'counter', 'Times a connection was not read for a while because BROKER_MAX_PENDING_PUBLISHES of its publishes waited for subscribers (back-pressure).', [['', this.publishersPaused]]);
    if (gauges.window) {
      family(`${p}inflight_window_full_total`, 'counter', 'Times a persistent subscriber\'s outgoing in-flight window (BROKER_MAX_INFLIGHT_OUTBOUND) filled, so its messages waited (parked in memory, or in the queue store) until it acknowledged.', [['', gauges.window.windowFull]]);
      family(`${p}queue_pulled_total`, 'counter', 'Queued QoS 1/2 messages read from the store and delivered as a persistent subscriber\'s acknowledgements freed its in-flight window (past 65,535 parked, or after a reconnect\'s first window).', [['', gauges.window.pulled]]);
      family(`${p}publish_held_total`, 'counter', 'Publishes whose completion waited for a persistent subscriber reading from its queue (back-pressure: the publisher\'s next packets are read as the subscriber acknowledges).', [['', gauges.window.held]]);
      family(`${p}publish_held_timeout_total`, 'counter', 'Held publishes let go after the longest wait (5 s) rather than by the subscriber\'s acknowledgements.', [['', gauges.window.heldTimedOut]]);
    }
    family(`${p}payload_bytes_in_total`, 'counter', 'Payload bytes of accepted PUBLISH packets, by domain.', byDomain(this.bytesIn));
    family(`${p}payload_bytes_out_total`, 'counter', 'Payload bytes delivered to subscribers, by domain.', byDomain(this.bytesOut));
    family(`${p}acl_denied_total`, 'counter', 'Publishes and subscriptions refused by the ACL.', [
      ['{action="publish"}', this.aclPublishDenied],
      ['{action="subscribe"}', this.aclSubscribeDenied],
    ]);
    family(`${p}rate_limited_total`, 'counter', 'Publishes dropped by the per-device rate limit, by domain.', byDomain(this.rateLimited));
    family(`${p}rate_limit_disconnects_total`, 'counter', 'Devices disconnected for staying over their rate limit.', [['', this.rateLimitDisconnects]]);
    family(`${p}client_errors_total`, 'counter', 'Connections that ended in an error, by kind (malformed packets, timeouts, oversized packets, …).', CLIENT_ERROR_KINDS.map((k) => [`{kind="${k}"}`, this.clientErrors[k]] as const));
    if (gauges.queuedMessages !== undefined) family(`${p}queued_messages`, 'gauge', 'QoS 1/2 messages queued for offline persistent sessions.', [['', gauges.queuedMessages]]);
    family(`${p}login_throttled_addresses`, 'gauge', 'Client addresses refused for repeated failed logins now.', [['', gauges.throttledAddresses]]);
    family(`${p}rate_limit_buckets`, 'gauge', 'Devices with a publish-rate bucket in memory.', [['', gauges.rateBuckets]]);
    return text.process(this.startedAt).toString();
  }
}

/** The domain of a topic `city/{province}/{domain}/…`, without allocating. */
export function domainOfTopic(topic: string): DomainLabel {
  const first = topic.indexOf('/');
  if (first < 0) return 'other';
  const second = topic.indexOf('/', first + 1);
  if (second < 0) return 'other';
  const third = topic.indexOf('/', second + 1);
  const end = third < 0 ? topic.length : third;
  const length = end - second - 1;
  // Compare in place: traffic / energy / environment.
  if (!topic.startsWith(ROOT)) return 'other';
  if (length === 7 && topic.startsWith('traffic', second + 1)) return 'traffic';
  if (length === 6 && topic.startsWith('energy', second + 1)) return 'energy';
  if (length === 11 && topic.startsWith('environment', second + 1)) return 'environment';
  return 'other';
}
