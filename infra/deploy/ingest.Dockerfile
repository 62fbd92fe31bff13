# syntax=docker/dockerfile:1
#
# CityPulse VN: ingest (ingest/: MQTT → validate → enrich → InfluxDB). Build context: the
# repository root.
#   docker build -f infra/deploy/ingest.Dockerfile -t citypulse/ingest .
# BuildKit sends only what ingest.Dockerfile.dockerignore (next to this file) lets through.
# The TypeScript sources run with tsx, as `npm start` runs them: nothing is compiled.

# ---- deps: production dependencies of ingest and of the workspace packages it imports ----
FROM node:20.20.2-bookworm-slim AS deps
ENV CI=true
RUN npm install -g pnpm@10.34.8
WORKDIR /app
# Manifests, lockfile and the Aedes patch (patchedDependencies: pnpm checks it) first: this layer
# is rebuilt only when one of them changes.
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml ./
COPY patches/ patches/
COPY contracts/package.json contracts/
COPY infra/package.json infra/
COPY broker/package.json broker/
COPY ingest/package.json ingest/
RUN --mount=type=cache,id=citypulse-pnpm-store,target=/root/.local/share/pnpm/store \
    pnpm install --frozen-lockfile --prod --filter "@citypulse/ingest..."

# ---- runtime: Node, tsx, the installed packages and the sources; no pnpm, no dev tools ----
FROM node:20.20.2-bookworm-slim AS runtime
# tsx is a development dependency of the workspace: the catalog's version, installed globally.
RUN npm install -g tsx@4.23.15 && npm cache clean --force
ENV NODE_ENV=production \
    DATA_DIR=/data \
    INGEST_HTTP_HOST=0.0.0.0
WORKDIR /app
COPY --from=deps /app ./
COPY tsconfig.json tsconfig.base.json ./
COPY contracts/src/ contracts/src/
COPY infra/src/ infra/src/
COPY broker/src/ broker/src/
COPY ingest/src/ ingest/src/
# The shipped alert rules, copied to DATA_DIR/alert-rules.yaml at first start.
COPY ingest/alert-rules.yaml ingest/
# DATA_DIR: the device registry ingest reads (devices.json, written by the broker's tools, the api
# and the simulators) and the alert rules (alert-rules.yaml, edited through the api): share it.
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
# /metrics, /healthz and /readyz (ready only while InfluxDB takes writes).
EXPOSE 9103
# SIGTERM: what ingest took is stored and acknowledged, the rest stays queued in the broker's
# persistent session; give the container at least 15 s to stop.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.INGEST_HTTP_PORT || 9103) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# --max-semi-space-size=64: SERVICE_NODE_FLAGS (infra/src/process.ts), as npm start passes it.
CMD ["tsx", "--max-semi-space-size=64", "ingest/src/server.ts"]
