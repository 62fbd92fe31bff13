import { once } from 'node:events';
import { createServer, type Server } from 'node:http';

export interface OpsEndpoints {
  /** Prometheus text. */
  metrics(): Promise<string>;
  /** Health: ok while serving; `draining` once shutdown began (load balancers take the node out). */
  health(): { readonly status: 'ok' | 'draining'; readonly [key: string]: unknown };
  /**
   * Readiness, when the service has one: `ready: false` while a dependency it needs is not
   * answering (ingest: InfluxDB). Without it, /readyz answers as /healthz does.
   */
  ready?(): Promise<{ readonly ready: boolean; readonly [key: string]: unknown }>;
}

const JSON_TYPE = { 'content-type': 'application/json', 'cache-control': 'no-store' } as const;

/**
 * A service's small operations port: `GET /metrics` (Prometheus text format 0.0.4), `GET /healthz`
 * (200 while serving, 503 while draining) and `GET /readyz` (200 only while the service can do
 * its work). Nothing else is served.
 */
export async function listenOps(endpoints: OpsEndpoints, port: number, host: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', ...JSON_TYPE }).end(JSON.stringify({ code: 'E_BAD_REQUEST', message: 'only GET /metrics, /healthz and /readyz' }));
      return;
    }
    if (path === '/metrics') {
      endpoints.metrics().then(
        (text) => res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4; charset=utf-8' }).end(text),
        () => res.writeHead(500, JSON_TYPE).end(JSON.stringify({ code: 'E_INTERNAL', message: 'metrics unavailable' })),
      );
      return;
    }
    if (path === '/healthz') {
      const health = endpoints.health();
      res.writeHead(health.status === 'ok' ? 200 : 503, JSON_TYPE).end(JSON.stringify(health));
      return;
    }
    if (path === '/readyz') {
      const health = endpoints.health();
      if (health.status !== 'ok' || !endpoints.ready) {
        res.writeHead(health.status === 'ok' ? 200 : 503, JSON_TYPE).end(JSON.stringify({ ready: health.status === 'ok', status: health.status }));
        return;
      }
      endpoints.ready().then(
        (state) => res.writeHead(state.ready ? 200 : 503, JSON_TYPE).end(JSON.stringify(state)),
        (err: unknown) => res.writeHead(503, JSON_TYPE).end(JSON.stringify({ ready: false, reason: err instanceof Error ? err.message : String(err) })),
      );
      return;
    }
    res.writeHead(404, JSON_TYPE).end(JSON.stringify({ code: 'E_NOT_FOUND', message: `no ${path}: this port serves /metrics, /healthz and /readyz` }));
  });
  server.listen(port, host);
  await once(server, 'listening');
  return server;
}
