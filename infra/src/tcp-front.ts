import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';

/**
 * A TCP front for a broker cluster on one machine (`npm run cluster`, the cluster tests): accepts
 * MQTT connections on one port and hands each to the next broker node in turn, skipping a node
 * that refuses the connection, so when a node dies its devices' reconnects land on the others.
 * It only forwards bytes: sessions, subscriptions and queued messages are the brokers' business
 * (shared through Redis). In production this is any TCP load balancer (HAProxy, nginx stream, a
 * cloud NLB); infra/deploy/haproxy.cfg is the one the cluster compose file runs.
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
