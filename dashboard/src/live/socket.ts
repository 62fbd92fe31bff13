import {
  SOCKET_IO_PATH,
  type ClientToServerEvents,
  type DeviceStatusEvent,
  type LiveFrame,
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
}

export interface LiveConnection {
  readonly socket: LiveSocket;
  close(): void;
}

/** How long the server has to acknowledge a subscription. */
const SUBSCRIBE_ACK_TIMEOUT_MS = 10_000;

/**
 * Opens the socket.io connection (same origin, authenticated by the session cookie) and
 * subscribes to `provinces` on every (re)connect, since rooms do not survive a reconnect; the
 * server then sends one snapshot per province before the coalesced frames.
 */
export function connectLive(provinces: readonly string[], handlers: LiveHandlers): LiveConnection {
  const socket: LiveSocket = io({ path: SOCKET_IO_PATH, withCredentials: true, reconnectionDelayMax: 10_000 });
  handlers.state({ kind: 'connecting' });

  socket.on('connect', () => {
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
  socket.on('disconnect', (reason) => {
    // 'io client disconnect' is our own close(); every other reason is retried by socket.io.
    if (reason !== 'io client disconnect') handlers.state({ kind: 'reconnecting', reason });
  });
  socket.on('connect_error', (error) => {
    // socket.active is false when the server's middleware refused us (e.g. the session expired).
    handlers.state(socket.active ? { kind: 'reconnecting', reason: error.message } : { kind: 'refused', reason: error.message });
  });

  return {
    socket,
    close(): void {
      socket.removeAllListeners();
      socket.disconnect();
      handlers.state({ kind: 'closed' });
    },
  };
}
