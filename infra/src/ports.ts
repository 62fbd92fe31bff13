import { createServer } from 'node:net';

/**
 * Where freePort looks first: below Linux's ephemeral range (32768–60999), from which the OS
 * also takes the local port of every outgoing connection. A port the OS picked from that range
 * could be taken by one of those (a bench's thousand device connections, their reconnects)
 * between freePort and the service's listen: a cluster bench run failed with EADDRINUSE so.
 */
const QUIET_PORTS = { from: 20_000, to: 32_767, tries: 50 } as const;

/** A TCP port that was free a moment ago on `host`, outside the ephemeral range when one is. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let i = 0; i < QUIET_PORTS.tries; i++) {
    const port = QUIET_PORTS.from + Math.floor(Math.random() * (QUIET_PORTS.to - QUIET_PORTS.from + 1));
    if (await isPortFree(port, host)) return port;
  }
  return anyFreePort(host);
}

/** A port the OS picks (from the ephemeral range). */
function anyFreePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.unref();
    server.on('error', reject);
    server.listen(0, host, () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** True when nothing listens on host:port. */
export async function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen(port, host, () => server.close(() => resolve(true)));
  });
}
