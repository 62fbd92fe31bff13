# syntax=docker/dockerfile:1
#
# CityPulse VN: the MQTT broker (broker/, Aedes). Build context: the repository root.
#   docker build -f infra/deploy/broker.Dockerfile -t citypulse/broker .
# BuildKit sends only what broker.Dockerfile.dockerignore (next to this file) lets through.
# The TypeScript sources run with tsx, as `npm start` runs them: nothing is compiled.

# ---- deps: production dependencies of the broker and of the workspace packages it imports ----
FROM node:20.20.2-bookworm-slim AS deps
ENV CI=true
RUN npm install -g pnpm@10.34.8
WORKDIR /app
# Manifests, lockfile and the Aedes patch (patchedDependencies) first: this layer is rebuilt only
# when one of them changes.
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml ./
COPY patches/ patches/
COPY contracts/package.json contracts/
COPY infra/package.json infra/
COPY broker/package.json broker/
RUN --mount=type=cache,id=citypulse-pnpm-store,target=/root/.local/share/pnpm/store \
    pnpm install --frozen-lockfile --prod --filter "@citypulse/broker..."

# ---- runtime: Node, tsx, the installed packages and the sources; no pnpm, no dev tools ----
FROM node:20.20.2-bookworm-slim AS runtime
# tsx is a development dependency of the workspace: the catalog's version, installed globally.
RUN npm install -g tsx@4.23.15 && npm cache clean --force
ENV NODE_ENV=production \
    DATA_DIR=/data \
    MQTT_HOST=0.0.0.0 \
    BROKER_HTTP_HOST=0.0.0.0
WORKDIR /app
COPY --from=deps /app ./
COPY tsconfig.json tsconfig.base.json ./
COPY contracts/src/ contracts/src/
COPY infra/src/ infra/src/
COPY broker/src/ broker/src/
# DATA_DIR: the device registry (devices.json, shared with ingest, api and the simulators) and,
# with BROKER_STORE=disk, the sessions (mqtt-sessions/) and their queue (mqtt-queue/).
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
# MQTT over TCP, over WebSocket, over TLS and secure WebSocket (the last two only with
# TLS_CERT_FILE and TLS_KEY_FILE), /metrics and /healthz.
EXPOSE 1883 8083 8883 8084 9102
# SIGTERM: the listeners close, /healthz answers 503 (draining) and clients are let go over
# BROKER_SHUTDOWN_SPREAD_MS; give the container at least 15 s to stop.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.BROKER_HTTP_PORT || 9102) + '/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
# --max-semi-space-size=64: SERVICE_NODE_FLAGS (infra/src/process.ts), as npm start passes it.
CMD ["tsx", "--max-semi-space-size=64", "broker/src/server.ts"]
