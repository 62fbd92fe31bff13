# syntax=docker/dockerfile:1
#
# CityPulse VN: the api (api/: Fastify REST, operator login, socket.io live frames) serving the
# built dashboard at /. Build context: the repository root.
#   docker build -f infra/deploy/api.Dockerfile -t citypulse/api .
# BuildKit sends only what api.Dockerfile.dockerignore (next to this file) lets through.
# The TypeScript sources run with tsx, as `npm start` runs them; only the dashboard is built.
# The same image runs the deployment's first-start step (infra/deploy/first-start.ts).

# ---- dashboard: vite build of dashboard/ (and the contracts it imports) into dashboard/dist ----
FROM node:20.20.2-bookworm-slim AS dashboard
ENV CI=true
RUN npm install -g pnpm@10.34.8
WORKDIR /app
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml tsconfig.base.json ./
COPY patches/ patches/
COPY contracts/package.json contracts/
COPY dashboard/package.json dashboard/
# The dashboard with its build tools (vite) and the workspace packages its bundle imports.
RUN --mount=type=cache,id=citypulse-pnpm-store,target=/root/.local/share/pnpm/store \
    pnpm install --frozen-lockfile --filter-prod "@citypulse/dashboard..."
COPY contracts/src/ contracts/src/
COPY dashboard/index.html dashboard/vite.config.ts dashboard/tsconfig.json dashboard/tsconfig.node.json dashboard/
COPY dashboard/src/ dashboard/src/
RUN pnpm --filter @citypulse/dashboard run build

# ---- deps: production dependencies of the api and of the workspace packages it imports ----
FROM node:20.20.2-bookworm-slim AS deps
ENV CI=true
RUN npm install -g pnpm@10.34.8
WORKDIR /app
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml ./
COPY patches/ patches/
COPY contracts/package.json contracts/
COPY infra/package.json infra/
COPY broker/package.json broker/
COPY ingest/package.json ingest/
COPY api/package.json api/
RUN --mount=type=cache,id=citypulse-pnpm-store,target=/root/.local/share/pnpm/store \
    pnpm install --frozen-lockfile --prod --filter "@citypulse/api..."

# ---- runtime: Node, tsx, the installed packages, the sources and the built dashboard ----
FROM node:20.20.2-bookworm-slim AS runtime
# tsx is a development dependency of the workspace: the catalog's version, installed globally.
RUN npm install -g tsx@4.23.15 && npm cache clean --force
ENV NODE_ENV=production \
    DATA_DIR=/data \
    API_HOST=0.0.0.0 \
    DASHBOARD_DIR=/app/dashboard/dist
WORKDIR /app
COPY --from=deps /app ./
COPY tsconfig.json tsconfig.base.json ./
COPY contracts/src/ contracts/src/
COPY infra/src/ infra/src/
COPY broker/src/ broker/src/
COPY ingest/src/ ingest/src/
# The shipped alert rules: the api creates DATA_DIR/alert-rules.yaml from them if ingest has not yet.
COPY ingest/alert-rules.yaml ingest/
COPY api/src/ api/src/
# Inside the api package, so that it resolves @citypulse/api, @citypulse/broker and the others.
COPY infra/deploy/first-start.ts api/deploy/first-start.ts
COPY --from=dashboard /app/dashboard/dist/ dashboard/dist/
# DATA_DIR: operators.json, session.key and audit/ (shared by every api node), the device
# registry (devices.json) and the alert rules (alert-rules.yaml, shared with ingest).
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
# REST, socket.io and the dashboard.
EXPOSE 3000
# SIGTERM: the api closes its listeners and socket.io and exits within 10 s.
STOPSIGNAL SIGTERM
# /healthz answers 503 while InfluxDB or the broker does not answer the api.
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.API_PORT || 3000) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# --max-semi-space-size=64: SERVICE_NODE_FLAGS (infra/src/process.ts), as npm start passes it.
CMD ["tsx", "--max-semi-space-size=64", "api/src/server.ts"]
