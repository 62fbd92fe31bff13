import Type, { type Static } from 'typebox';
import type { AlertAck, AlertView } from './alerts.js';
import { DomainName, ProvinceCode } from './api.js';
import type { Derived, Fields, ReadingState } from './enrich.js';
import type { Rejection } from './result.js';
import type { ProvinceSummary } from './summaries.js';
import type { Domain } from './topics.js';

/** One device's reading as the live map and the replay draw it (same shape for both). */
export interface LiveReading {
  readonly deviceId: string;
  readonly province: string;
  readonly domain: Domain;
  /** Device time of measurement, epoch ms. */
  readonly ts: number;
  readonly seq: number;
  readonly values: Fields;
  readonly derived: Derived;
  readonly state: ReadingState;
}

/**
 * A coalesced frame of one province and domain: the latest reading of every device there that
 * changed since the last frame. Live and replay use the same frame, so the dashboard draws both
 * with one code path.
 */
export interface LiveFrame {
  readonly province: string;
  readonly domain: Domain;
  readonly mode: 'live' | 'replay';
  /** Server time the frame was built, epoch ms. */
  readonly sentAt: number;
  /** Replay only: the replay clock (device time) the frame brings the map to, epoch ms. */
  readonly clock?: number;
  readonly readings: readonly LiveReading[];
}

export interface DeviceStatusEvent {
  readonly deviceId: string;
  readonly province: string;
  readonly domain: Domain;
  readonly state: 'online' | 'offline';
  readonly ts: number;
}

/** Joins (or leaves) the rooms of these provinces and domains (all three when domains is absent). */
export interface SubscribeRequest {
  readonly provinces: readonly string[];
  readonly domains?: readonly Domain[];
}

export type SubscribeAck =
  | { readonly ok: true; readonly provinces: readonly string[]; readonly domains: readonly Domain[] }
  | { readonly ok: false; readonly error: Rejection };

/** Sent on subscribe: the active alerts of the rooms joined (newest first). */
export interface AlertsSnapshot {
  readonly provinces: readonly string[];
  readonly domains: readonly Domain[];
  readonly alerts: readonly AlertView[];
}

/* ---- Replay sessions (operator role): one per socket ---- */

/** Fastest and slowest replay speeds (device time per wall time). */
export const REPLAY_SPEEDS = { min: 1, max: 60 } as const;

const ReplayTime = Type.Union([Type.Integer({ minimum: 0 }), Type.String({ maxLength: 40 })], { description: 'epoch ms, or ISO 8601' });
const ReplaySpeed = Type.Number({ minimum: REPLAY_SPEEDS.min, maximum: REPLAY_SPEEDS.max });

export const ReplayStartRequest = Type.Object(
  {
    from: ReplayTime,
    to: ReplayTime,
    speed: Type.Optional(ReplaySpeed),
    provinces: Type.Array(ProvinceCode, { minItems: 1, maxItems: 34 }),
    domains: Type.Optional(Type.Array(DomainName, { minItems: 1, maxItems: 3 })),
  },
  { additionalProperties: false },
);
export type ReplayStartRequest = Static<typeof ReplayStartRequest>;

/** A replay session's id (ReplayState.replayId): random, as the api gives it. */
export const ReplayId = Type.String({ minLength: 1, maxLength: 64, pattern: '^[A-Za-z0-9-]+$' });

/**
 * Without `replayId`, the control applies to this socket's replay. With it, to that replay wherever
 * it runs (another screen, another api node), when it is the caller's own or the caller is an admin.
 */
const ReplayTarget = { replayId: Type.Optional(ReplayId) };

export const ReplayControlRequest = Type.Union([
  Type.Object({ action: Type.Union([Type.Literal('pause'), Type.Literal('resume'), Type.Literal('stop')]), ...ReplayTarget }, { additionalProperties: false }),
  Type.Object({ action: Type.Literal('seek'), at: ReplayTime, ...ReplayTarget }, { additionalProperties: false }),
  Type.Object({ action: Type.Literal('speed'), speed: ReplaySpeed, ...ReplayTarget }, { additionalProperties: false }),
]);
export type ReplayControlRequest = Static<typeof ReplayControlRequest>;

/**
 * Where a replay is. `buffering`: playing, but waiting for InfluxDB to deliver the next chunk (the
 * clock holds); `ended`: the clock reached `to` (seek to play again); `stopped`: over, live again.
 */
export interface ReplayState {
  readonly state: 'playing' | 'paused' | 'buffering' | 'ended' | 'stopped';
  readonly from: number;
  readonly to: number;
  readonly speed: number;
  /** Device time shown now, epoch ms. */
  readonly clock: number;
  readonly provinces: readonly string[];
  readonly domains: readonly Domain[];
  /** Why it stopped, when it stopped on an error (InfluxDB unavailable). */
  readonly error?: Rejection;
  /** Names the session for a replayControl from another screen (optional: absent from older api nodes). */
  readonly replayId?: string;
}

/** A replay of the same operator running on another screen: its id is always given. */
export type OperatorReplayState = ReplayState & { readonly replayId: string };

export type ReplayAck = { readonly ok: true; readonly replay: ReplayState } | { readonly ok: false; readonly error: Rejection };

/** Events the api sends to dashboards (socket.io `Server<ClientToServerEvents, ServerToClientEvents>`). */
export interface ServerToClientEvents {
  /**
   * The whole state of one province and domain: sent on subscribe, after a lagging socket drained
   * (resync), when a replay starts or seeks (mode 'replay': the state at the replay clock), and
   * when a replay stops (live again).
   */
  snapshot: (frame: LiveFrame) => void;
  /** Coalesced deltas at the api's frame interval (live), or as the replay clock moves (replay). */
  frame: (frame: LiveFrame) => void;
  deviceStatus: (event: DeviceStatusEvent) => void;
  /** An alert raised or cleared, as ingest stored it (with its acknowledgement, if any). */
  alert: (alert: AlertView) => void;
  /** An operator acknowledged an alert (sent to the sockets in the alert's room). */
  alertAck: (ack: AlertAck) => void;
  /** The active alerts of the rooms a subscribe joined. */
  alerts: (snapshot: AlertsSnapshot) => void;
  /** A province's KPIs, as ingest publishes them every few seconds (and once on subscribe). */
  summary: (summary: ProvinceSummary) => void;
  /** The replay session's state, on every change and with each replay frame's clock. */
  replayState: (state: ReplayState) => void;
  /**
   * A replay the same operator runs on another screen (on any api node, cluster mode included): once
   * when this screen connects, on every change of state or speed, and about once a second while its
   * clock moves. Not this screen's replay (that is `replayState`); control it with replayControl
   * and its `replayId`.
   */
  operatorReplayState: (state: OperatorReplayState) => void;
  /** Lets the dashboard show staleness when frames stop. */
  heartbeat: (event: { readonly serverTime: number }) => void;
}

export interface ClientToServerEvents {
  subscribe: (request: SubscribeRequest, ack: (result: SubscribeAck) => void) => void;
  unsubscribe: (request: SubscribeRequest, ack: (result: SubscribeAck) => void) => void;
  /** Starts (or replaces) this socket's replay; live frames stop for it until the replay stops. */
  replayStart: (request: ReplayStartRequest, ack: (result: ReplayAck) => void) => void;
  replayControl: (request: ReplayControlRequest, ack: (result: ReplayAck) => void) => void;
}

/** The path socket.io is served on, shared by api and dashboard. */
export const SOCKET_IO_PATH = '/socket.io';
