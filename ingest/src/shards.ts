import { CodedError, PROVINCE_CODES, TOPIC_FILTERS } from '@citypulse/contracts';

/**
 * Which provinces an ingest worker owns. Aedes has no shared subscriptions, so workers split the
 * country by province instead: with N workers, the provinces in catalogue order are dealt out
 * round-robin, and worker i (1-based) owns every N-th one starting at its own. No two workers
 * own a province and every province has an owner: each reading is stored once, and each
 * province's alerts are evaluated by exactly one worker.
 */
export interface Shard {
  /** 1-based. */
  readonly index: number;
  readonly count: number;
  readonly provinces: readonly string[];
}

export const MAX_SHARDS = PROVINCE_CODES.length;

/** Parses `i/N` (e.g. `2/3`); the message names what to fix. */
export function parseShard(text: string, variable = 'INGEST_SHARD'): Shard {
  const match = /^\s*(\d{1,3})\s*\/\s*(\d{1,3})\s*$/.exec(text);
  if (!match) throw new CodedError('E_CONFIG', `${variable}="${text.slice(0, 40)}" must be i/N, e.g. 1/1 for a single worker or 2/3 for the second of three`);
  const index = Number(match[1]);
  const count = Number(match[2]);
  if (count < 1 || count > MAX_SHARDS) throw new CodedError('E_CONFIG', `${variable}="${text}": N must be 1–${MAX_SHARDS} (one worker per province at most)`);
  if (index < 1 || index > count) throw new CodedError('E_CONFIG', `${variable}="${text}": i must be 1–${count}`);
  return shardOf(index, count);
}

export function shardOf(index: number, count: number): Shard {
  return { index, count, provinces: PROVINCE_CODES.filter((_, position) => position % count === index - 1) };
}

/** The subscription filters of a shard: telemetry and status of each owned province. */
export function shardFilters(shard: Shard): string[] {
  return shard.provinces.flatMap((province) => [TOPIC_FILTERS.provinceTelemetry(province), TOPIC_FILTERS.provinceStatus(province)]);
}

/**
 * Every filter some shard layout could have left in a persistent session that this shard must
 * not keep: the country-wide filters (one worker) and the filters of provinces it does not own.
 * A worker restarted with a new i/N drops them from its session once the handover is over
 * (app.ts: until then it stores their messages too, for owners not subscribed yet).
 */
export function foreignFilters(shard: Shard): string[] {
  const owned = new Set(shard.provinces);
  return [TOPIC_FILTERS.allTelemetry, TOPIC_FILTERS.allStatus, ...PROVINCE_CODES.filter((p) => !owned.has(p)).flatMap((p) => [TOPIC_FILTERS.provinceTelemetry(p), TOPIC_FILTERS.provinceStatus(p)])];
}

/**
 * Default MQTT client id of a shard's persistent session: `ingest-i`, whatever N. Worker i of a
 * new layout takes over worker i's session of the old one, with the messages queued for it
 * while the layout changed (a session named after i/N would be left behind, its queue never
 * read and growing for good). Going from 1/1 to two workers, 1/2 drains `ingest-1`'s queue and
 * 2/2 starts `ingest-2`; going back, 1/1 drains `ingest-2` and removes it (orphanClientIds).
 */
export function shardClientId(shard: Shard): string {
  return `ingest-${shard.index}`;
}

/**
 * Every filter some shard layout subscribes to: the country-wide ones (one worker) and each
 * province's. A removed worker's session is drained with all of them unsubscribed (drain.ts).
 */
export function everyShardFilter(): string[] {
  return [TOPIC_FILTERS.allTelemetry, TOPIC_FILTERS.allStatus, ...PROVINCE_CODES.flatMap((p) => [TOPIC_FILTERS.provinceTelemetry(p), TOPIC_FILTERS.provinceStatus(p)])];
}

/** The j of a default session id `ingest-j` (1–MAX_SHARDS); undefined for any other id. */
export function sessionIndex(clientId: string): number | undefined {
  const match = /^ingest-([1-9]\d{0,2})$/.exec(clientId);
  const index = match ? Number(match[1]) : 0;
  return index >= 1 && index <= MAX_SHARDS ? index : undefined;
}

/**
 * The sessions of removed workers this shard drains (drain.ts): `ingest-j` for each j from N+1 to
 * MAX_SHARDS (no layout has more workers) that falls to it, dealt out like the provinces: worker
 * ((j − 1) mod N) + 1. Each orphan has one drainer, so two workers never take a session from each
 * other, and the work spreads. All of them rather than up to the first absent one: a drain cut
 * short leaves gaps (ingest-2 ended, ingest-3 not), and a probe of an absent session costs two
 * short connections. `ownClientId` (INGEST_CLIENT_ID) is left out.
 */
export function orphanClientIds(shard: Shard, ownClientId = shardClientId(shard)): string[] {
  const ids: string[] = [];
  for (let j = shard.count + 1; j <= MAX_SHARDS; j++) if (((j - 1) % shard.count) + 1 === shard.index && `ingest-${j}` !== ownClientId) ids.push(`ingest-${j}`);
  return ids;
}
