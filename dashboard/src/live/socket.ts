import {
  SOCKET_IO_PATH,
  type AlertAck,
  type AlertsSnapshot,
  type AlertView,
  type ClientToServerEvents,
  type DeviceStatusEvent,
  type LiveFrame,
  type OperatorReplayState,
  type ProvinceSummary,
  type ReplayAck,
  type ReplayControlRequest,
  type ReplayStartRequest,
  type ReplayState,
  type ServerToClientEvents,
  type SubscribeAck,
} from '@citypulse/contracts';
import { io, type Socket } from 'socket.io-client';

export type LiveSocket = Socket<ServerToClientEvents, ClientToServerEvents>;

export type ConnectionState =
  | { readonly kind: 'connecting' }
  | { readonly kind: 'connected'; readonly provinces: readonly string[] }
  | { readonly kind: 'reconnecting'; readonly reason: string }
  /** The server refused the connection or the subscription (not retried automatically). */
  | { readonly kind: 'refused'; readonly reason: string }
  | { readonly kind: 'closed' };

export interface LiveHandlers {
  frame(frame: LiveFrame, kind: 'snapshot' | 'frame'): void;
  status(event: DeviceStatusEvent): void;
  heartbeat(serverTime: number): void;
  state(state: ConnectionState): void;
  /**
   * The replay session's state: on every change and with each replay frame's clock. 'stopped'
   * means live again; it is also reported here when a reconnect dropped a running replay.
   */
  replayState?(state: ReplayState): void;
  /**
   * A replay the same operator runs on another screen (any api node): its state once when this
   * screen connects, on every change, about once a second while its clock moves, and 'stopped'
   * when it ends.
   */
  operatorReplayState?(state: OperatorReplayState): void;
  /** A province's KPIs (every few seconds, once on subscribe and when a replay ends). */
  summary?(summary: ProvinceSummary): void;
  /** The active alerts of the subscribed rooms (on subscribe and when a replay ends). */
  alerts?(snapshot: AlertsSnapshot): void;
  /** An alert raised or cleared. */
  alert?(alert: AlertView): void;
  /** An operator acknowledged an alert. */
  alertAck?(ack: AlertAck): void;
}

/**
 * A failure on this side of the socket, in the contract's Rejection shape: no answer in time
 * (E_TIMEOUT) or no connection to send on (E_OFFLINE). The api answers E_TIMEOUT too, when the api
 * node holding a replay does not answer a control forwarded to it (cluster mode).
 */
export interface ClientRejection {
  readonly code: 'E_TIMEOUT' | 'E_OFFLINE';
  readonly message: string;
}

/** What a replay request comes back with: the api's ack, or a ClientRejection. */
export type ReplayReply = ReplayAck | { readonly ok: false; readonly error: ClientRejection };

export interface LiveConnection {
  readonly socket: LiveSocket;
  /** Starts (or replaces) this connection's replay; live frames stop until it is stopped. Never rejects. */
  replayStart(request: ReplayStartRequest): Promise<ReplayReply>;
  /** Pause, resume, seek, speed or stop the running replay (another screen's, with its replayId). Never rejects. */
  replayControl(request: ReplayControlRequest): Promise<ReplayReply>;
  close(): void;
}

/** How long the server has to acknowledge a subscription. */
const SUBSCRIBE_ACK_TIMEOUT_MS = 10_000;
/**
 * How long the server has to acknowledge a replay request: a start or seek reads a snapshot from
 * InfluxDB, retried up to 3 times a second apart, so this is longer than the subscribe's.
 */
export const REPLAY_ACK_TIMEOUT_MS = 20_000;

/**
 * Opens the socket.io connection (same origin, authenticated by the session cookie) and
 * subscribes to `provinces` on every (re)connect, since rooms do not survive a reconnect; the
 * server then sends one snapshot per province before the coalesced frames.
 */
export function connectLive(provinces: readonly string[], handlers: LiveHandlers): LiveConnection {
  const socket: LiveSocket = io({ path: SOCKET_IO_PATH, withCredentials: true, reconnectionDelayMax: 10_000 });
  handlers.state({ kind: 'connecting' });
  /** The last replay state the server sent: the server forgets a replay when the socket drops. */
  let replay: ReplayState | null = null;

  socket.on('connect', () => {
    if (replay !== null && replay.state !== 'stopped') {
      // The replay ended with the old connection; the subscribe below brings live snapshots.
      const last = replay;
      replay = null;
      handlers.replayState?.({ ...last, state: 'stopped' });
    }
    socket.timeout(SUBSCRIBE_ACK_TIMEOUT_MS).emit('subscribe', { provinces }, (err: Error | null, ack: SubscribeAck) => {
      if (err) {
        handlers.state({ kind: 'reconnecting', reason: 'máy chủ không xác nhận đăng ký / subscribe timed out' });
        // A lost ack leaves the subscription unknown: start over on a fresh connection.
        socket.disconnect().connect();
        return;
      }
      if (ack.ok) handlers.state({ kind: 'connected', provinces: ack.provinces });
      else handlers.state({ kind: 'refused', reason: `${ack.error.code}: ${ack.error.message}` });
    });
  });
  socket.on('snapshot', (frame) => handlers.frame(frame, 'snapshot'));
  socket.on('frame', (frame) => handlers.frame(frame, 'frame'));
  socket.on('deviceStatus', (event) => handlers.status(event));
  socket.on('heartbeat', (event) => handlers.heartbeat(event.serverTime));
  socket.on('replayState', (state) => {
    replay = state;
    handlers.replayState?.(state);
  });
  socket.on('operatorReplayState', (state) => handlers.operatorReplayState?.(state));
  socket.on('summary', (summary) => handlers.summary?.(summary));
  socket.on('alerts', (snapshot) => handlers.alerts?.(snapshot));
  socket.on('alert', (alert) => handlers.alert?.(alert));
  socket.on('alertAck', (ack) => handlers.alertAck?.(ack));
  socket.on('disconnect', (reason) => {
    // 'io client disconnect' is our own close(); every other reason is retried by socket.io.
    if (reason !== 'io client disconnect') handlers.state({ kind: 'reconnecting', reason });
  });
  socket.on('connect_error', (error) => {
    // socket.active is false when the server's middleware refused us (e.g. the session expired).
    handlers.state(socket.active ? { kind: 'reconnecting', reason: error.message } : { kind: 'refused', reason: error.message });
  });

  /**
   * Sends a replay request and waits for its ack. Refused at once when disconnected: socket.io
   * would buffer the emit and send it after a reconnect, starting a replay nobody waits for.
   */
  const ask = async (send: () => Promise<ReplayAck>): Promise<ReplayReply> => {
    if (!socket.connected) return { ok: false, error: { code: 'E_OFFLINE', message: 'not connected to the server; try again once the connection is back' } };
    try {
      return await send();
    } catch {
      return { ok: false, error: { code: 'E_TIMEOUT', message: `the server did not answer within ${REPLAY_ACK_TIMEOUT_MS / 1000} s; check the connection and try again` } };
    }
  };

  return {
    socket,
    replayStart: (request) => ask(() => socket.timeout(REPLAY_ACK_TIMEOUT_MS).emitWithAck('replayStart', request)),
    replayControl: (request) => ask(() => socket.timeout(REPLAY_ACK_TIMEOUT_MS).emitWithAck('replayControl', request)),
    close(): void {
      socket.removeAllListeners();
      socket.disconnect();
      handlers.state({ kind: 'closed' });
    },
  };
}
