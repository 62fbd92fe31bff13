import { setTimeout as sleep } from 'node:timers/promises';
import mqtt, { type IConnackPacket, type IPublishPacket, type MqttClient } from 'mqtt';
import { LateAcks } from './late-acks.js';
import { everyShardFilter } from './shards.js';

/**
 * Draining the persistent session of a removed worker (`ingest-j`, j > N: shards.ts
 * orphanClientIds). MQTT 3.1.1 tells whether a session exists only to a client that connects with
 * its id and clean: false, in CONNACK's sessionPresent [MQTT-3.2.2-2]; that connection takes the
 * session over [MQTT-3.1.4-2] and is sent what is queued for it at once. So a drain is a series of
 * passes, each one connection as `ingest-j`:
 *
 * 1. connect with clean: false; the broker sends what is queued (unacknowledged ones included);
 *    when the session is present, UNSUBSCRIBE every filter a layout can hold, so that nothing new
 *    is queued for it, but only `holdMs` later: a worker still running reconnects within that and
 *    takes its session back with its filters intact;
 * 2. each message goes through the pipeline (`onMessage`), which acknowledges it once stored;
 * 3. DISCONNECT once nothing arrived for `quietMs` and everything received is acknowledged.
 *
 * A pass that receives nothing, with the filters gone (an earlier pass dropped them, or there was
 * no session), proves the queue empty: one more connection, with clean: true [MQTT-3.1.2-6],
 * removes the session (a probe of an absent session created one), and the drain is over. Until
 * then another pass follows, which takes what was still on its way when the last one ended.
 *
 * A connection closed by someone else ends the drain unfinished, and nothing is removed: what was
 * not acknowledged stays queued. Closed right after it was accepted, with no error, is a takeover:
 * another client connected as `ingest-j`, i.e. worker j is still running (its client reconnects
 * within a second and takes its session back). app.ts retries later.
 */
export interface OrphanDrainOptions {
  readonly mqttUrl: string;
  readonly username: string;
  readonly password: string;
  /** The removed worker's session, `ingest-j`. */
  readonly clientId: string;
  /** Takes each message and acknowledges it through `acks` once it is stored (app.ts: the pipeline). */
  readonly onMessage: (topic: string, payload: Buffer, packet: IPublishPacket, acks: LateAcks) => void;
  /** Holds each pass's client while it is connected: app.ts pauses their sockets with its own at its buffer's bound. */
  readonly clients?: Set<MqttClient>;
  /** True while the pipeline reads nothing (buffer full): the quiet period does not run meanwhile. */
  readonly paused?: () => boolean;
  /** A pass ends once nothing arrived for this long and everything it received is acknowledged. */
  readonly quietMs: number;
  /** How long a pass holds a present session before it drops its filters (longer than ingest's reconnect period). */
  readonly holdMs: number;
  /** Passes before giving up for now (the second normally finds nothing). */
  readonly maxPasses?: number;
  readonly connectTimeoutMs?: number;
  /** Ends the pass under way unfinished (ingest closing). */
  readonly signal?: AbortSignal;
}

export type OrphanDrainResult =
  /** No session and nothing queued: the probe's own session is removed again. */
  | { readonly outcome: 'absent' }
  /** Its queue stored and acknowledged, its filters dropped, the session removed. */
  | { readonly outcome: 'drained'; readonly messages: number; readonly passes: number }
  /** Stopped before the end; nothing removed. `conflict`: another client took the session over. */
  | { readonly outcome: 'interrupted'; readonly messages: number; readonly conflict: boolean; readonly reason: string };

export const DRAIN_DEFAULTS = {
  maxPasses: 5,
  connectTimeoutMs: 10_000,
  /** How often a pass looks whether it is quiet. */
  checkIntervalMs: 100,
} as const;

class Interrupted extends Error {
  constructor(
    message: string,
    readonly conflict: boolean,
  ) {
    super(message);
  }
}

/** Drains and removes `options.clientId`'s session; never throws (an unfinished drain is an outcome). */
export async function drainOrphanSession(options: OrphanDrainOptions): Promise<OrphanDrainResult> {
  const tally = { messages: 0 };
  const maxPasses = options.maxPasses ?? DRAIN_DEFAULTS.maxPasses;
  try {
    for (let passes = 1; passes <= maxPasses; passes++) {
      const { sessionPresent, received } = await connection(options, false, tally);
      if (received > 0 || (passes === 1 && sessionPresent)) continue;
      await connection(options, true, tally);
      return passes === 1 ? { outcome: 'absent' } : { outcome: 'drained', messages: tally.messages, passes };
    }
    return { outcome: 'interrupted', messages: tally.messages, conflict: false, reason: `messages still arrived after ${maxPasses} passes` };
  } catch (err) {
    const conflict = err instanceof Interrupted && err.conflict;
    return { outcome: 'interrupted', messages: tally.messages, conflict, reason: (err as Error).message };
  }
}

/** One connection as the orphan: a pass (clean: false), or its removal (clean: true). */
async function connection(options: OrphanDrainOptions, clean: boolean, tally: { messages: number }): Promise<{ sessionPresent: boolean; received: number }> {
  const client = mqtt.connect(options.mqttUrl, {
    clientId: options.clientId,
    username: options.username,
    password: options.password,
    clean,
    protocolVersion: 4,
    reconnectPeriod: 0,
    connectTimeout: options.connectTimeoutMs ?? DRAIN_DEFAULTS.connectTimeoutMs,
  });
  // Before the first packet: the queue follows the CONNACK, and MQTT.js would acknowledge it unstored.
  const acks = new LateAcks(client);
  let received = 0;
  let lastAt = Date.now();
  client.on('message', (topic, payload, packet) => {
    received++;
    tally.messages++;
    lastAt = Date.now();
    options.onMessage(topic, payload, packet, acks);
  });
  let accepted = false;
  let ending = false;
  let lastError: Error | undefined;
  let interrupt: (err: Interrupted) => void = () => undefined;
  const interrupted = new Promise<never>((_, reject) => {
    interrupt = reject;
  });
  interrupted.catch(() => undefined);
  client.on('error', (err) => {
    lastError = err;
  });
  client.on('close', () => {
    if (ending) return;
    if (!accepted) interrupt(new Interrupted(`cannot connect as ${options.clientId}: ${lastError?.message ?? 'connection closed'}`, false));
    else if (lastError) interrupt(new Interrupted(`connection as ${options.clientId} lost: ${lastError.message}`, false));
    else interrupt(new Interrupted(`the broker gave session ${options.clientId} to another connection: its worker is still running`, true));
  });
  const onAbort = () => interrupt(new Interrupted('ingest is closing', false));
  if (options.signal?.aborted) onAbort();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  let timer: NodeJS.Timeout | undefined;
  try {
    const connack = await Promise.race([new Promise<IConnackPacket>((resolve) => client.once('connect', resolve)), interrupted]);
    accepted = true;
    if (clean) return { sessionPresent: false, received: 0 };
    options.clients?.add(client);
    if (connack.sessionPresent) {
      await Promise.race([sleep(options.holdMs, undefined, { ref: false }), interrupted]);
      await Promise.race([client.unsubscribeAsync(everyShardFilter()), interrupted]);
    }
    await Promise.race([
      new Promise<void>((resolve) => {
        const check = () => {
          const now = Date.now();
          if (options.paused?.()) lastAt = now;
          if (now - lastAt >= options.quietMs && acks.outstanding === 0) resolve();
          else timer = setTimeout(check, DRAIN_DEFAULTS.checkIntervalMs);
        };
        check();
      }),
      interrupted,
    ]);
    return { sessionPresent: connack.sessionPresent, received };
  } catch (err) {
    ending = true;
    client.end(true);
    throw err;
  } finally {
    clearTimeout(timer);
    options.signal?.removeEventListener('abort', onAbort);
    options.clients?.delete(client);
    if (!ending) {
      ending = true;
      await client.endAsync();
    }
  }
}
