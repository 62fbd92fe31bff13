import { createServer, type Server } from 'node:http';
import { once } from 'node:events';

export interface OpsEndpoints {
  /** Prometheus text. */
  metrics(): Promise<string>;
  /** Health: ok while serving; `draining` once shutdown began (load balancers take the node out). */
  health(): { readonly status: 'ok' | 'draining'; readonly [key: string]: unknown };
}

/**
 * The broker's small HTTP port: `GET /metrics` (Prometheus text format 0.0.4) and `GET /healthz`
 * (200 while serving, 503 while draining). Nothing else is served.
 */
export async function listenOps(endpoints: OpsEndpoints, port: number, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'application/json' }).end(JSON.stringify({ code: 'E_BAD_REQUEST', message: 'only GET /metrics and GET /healthz' }));
      return;
    }
    if (path === '/metrics') {
      endpoints.metrics().then(
        (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
        () => res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'E_INTERNAL', message: 'metrics unavailable' })),
      );
      return;
    }
    if (path === '/healthz') {
      const health = endpoints.health();
      res.writeHead(health.status === 'ok' ? 200 : 503, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(health));
      return;
    }
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'E_NOT_FOUND', message: `no ${path}: the broker serves /metrics and /healthz` }));
  });
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}
