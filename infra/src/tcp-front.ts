import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { encodeProxyV2 } from './proxy-protocol.js';

/**
 * A TCP front for a broker cluster on one machine (`npm run cluster`, the cluster tests): accepts
 * MQTT connections on one port and hands each to the next broker node in turn, skipping a node
 * that refuses the connection, so when a node dies its devices' reconnects land on the others.
 * It only forwards bytes: sessions, subscriptions and queued messages are the brokers' business
 * (shared through Redis); with `proxyProtocol: 'v2'` it first tells the broker who the client
 * is. In production this is any TCP load balancer (HAProxy, nginx stream, a cloud NLB);
 * infra/deploy/haproxy.cfg is the one the cluster compose file runs.
 */
export interface TcpBackend {
  readonly host: string;
  readonly port: number;
}

export interface TcpFrontOptions {
  readonly backends: readonly TcpBackend[];
  /** Port to listen on (0: a free one). */
  readonly port?: number;
  readonly host?: string;
  /** A backend that does not accept within this long is skipped for this connection. */
  readonly connectTimeoutMs?: number;
  /**
   * 'v2': each backend connection starts with a PROXY protocol v2 header carrying the client's
   * address and port (HAProxy's `send-proxy-v2`), for brokers run with BROKER_PROXY_PROTOCOL=true.
   * Default: none, the backend sees the front's address.
   */
  readonly proxyProtocol?: 'v2';
}

export interface TcpFront {
  readonly url: string;
  readonly port: number;
  /** Connections handed to each backend so far (by index). */
  readonly handed: readonly number[];
  /** Stops accepting and cuts every forwarded connection. */
  close(): Promise<void>;
}

export const TCP_FRONT_DEFAULTS = { connectTimeoutMs: 2_000 } as const;

export async function startTcpFront(options: TcpFrontOptions): Promise<TcpFront> {
  if (options.backends.length === 0) throw new Error('a TCP front needs at least one backend');
  const host = options.host ?? '127.0.0.1';
  const timeoutMs = options.connectTimeoutMs ?? TCP_FRONT_DEFAULTS.connectTimeoutMs;
  const handed = options.backends.map(() => 0);
  const open = new Set<Socket>();
  let next = 0;

  /** Connects to the backends in turn from the round-robin position; null when none accepts. */
  const pickBackend = async (): Promise<{ socket: Socket; index: number } | null> => {
    const start = next;
    next = (next + 1) % options.backends.length;
    for (let i = 0; i < options.backends.length; i++) {
      const index = (start + i) % options.backends.length;
      const backend = options.backends[index] as TcpBackend;
      const socket = await new Promise<Socket | null>((resolve) => {
        const s = connect({ host: backend.host, port: backend.port });
        const timer = setTimeout(() => {
          s.destroy();
          resolve(null);
        }, timeoutMs);
        s.once('connect', () => {
          clearTimeout(timer);
          resolve(s);
        });
        s.once('error', () => {
          clearTimeout(timer);
          resolve(null);
        });
      });
      if (socket) return { socket, index };
    }
    return null;
  };

  const server: Server = createServer((client) => {
    client.pause();
    // Taken now: once the client hangs up its addresses are gone.
    const proxyHeader = options.proxyProtocol === 'v2' ? proxyHeaderFor(client) : undefined;
    if (options.proxyProtocol && !proxyHeader) {
      client.destroy();
      return;
    }
    open.add(client);
    client.once('close', () => open.delete(client));
    client.on('error', () => undefined);
    void pickBackend().then((picked) => {
      if (!picked || client.destroyed) {
        picked?.socket.destroy();
        client.destroy();
        return;
      }
      const { socket, index } = picked;
      handed[index] = (handed[index] ?? 0) + 1;
      open.add(socket);
      socket.once('close', () => open.delete(socket));
      socket.on('error', () => undefined);
      socket.setNoDelay(true);
      client.setNoDelay(true);
      // Before any of the client's bytes: the client is paused until the pipes below.
      if (proxyHeader) socket.write(proxyHeader);
      // Either side closing or failing ends both: a client whose broker died reconnects.
      socket.once('close', () => client.destroy());
      client.once('close', () => socket.destroy());
      client.pipe(socket);
      socket.pipe(client);
      client.resume();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    url: `mqtt://${host}:${port}`,
    port,
    handed,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of open) socket.destroy();
        server.close(() => resolve());
      }),
  };
}

/** The PROXY v2 header naming `client` and the address it reached; undefined once it is gone. */
function proxyHeaderFor(client: Socket): Buffer | undefined {
  const { remoteAddress, remotePort, localAddress, localPort } = client;
  if (remoteAddress === undefined || remotePort === undefined || localAddress === undefined || localPort === undefined) return undefined;
  return encodeProxyV2({ address: remoteAddress, port: remotePort }, { address: localAddress, port: localPort });
}
