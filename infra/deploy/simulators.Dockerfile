# syntax=docker/dockerfile:1
#
# CityPulse VN: the provincial device simulators (simulators/), publishing to the broker as
# registered devices. Build context: the repository root.
#   docker build -f infra/deploy/simulators.Dockerfile -t citypulse/simulators .
# BuildKit sends only what simulators.Dockerfile.dockerignore (next to this file) lets through.
# The TypeScript sources run with tsx, a production dependency here (the worker threads load it).

# ---- deps: production dependencies of the simulators and of the workspace packages they import ----
FROM node:20.20.2-bookworm-slim AS deps
ENV CI=true
RUN npm install -g pnpm@10.34.8
WORKDIR /app
COPY package.json pnpm-lock.yaml pnpm-workspace.yaml ./
COPY patches/ patches/
COPY contracts/package.json contracts/
COPY infra/package.json infra/
COPY broker/package.json broker/
COPY simulators/package.json simulators/
RUN --mount=type=cache,id=citypulse-pnpm-store,target=/root/.local/share/pnpm/store \
    pnpm install --frozen-lockfile --prod --filter "@citypulse/simulators..."

# ---- runtime: Node, the installed packages (tsx among them) and the sources ----
FROM node:20.20.2-bookworm-slim AS runtime
ENV NODE_ENV=production \
    DATA_DIR=/data
WORKDIR /app
COPY --from=deps /app ./
COPY tsconfig.json tsconfig.base.json ./
COPY contracts/src/ contracts/src/
COPY infra/src/ infra/src/
COPY broker/src/ broker/src/
COPY simulators/src/ simulators/src/
# The shipped scenarios (--scenario hanoi-winter-rush, …).
COPY simulators/scenarios/ simulators/scenarios/
# DATA_DIR: the device registry the simulators register their devices in (devices.json, shared
# with the broker) and their secrets (simulator-secrets.json, mode 0600, this container's alone).
RUN mkdir -p /data && chown node:node /data
VOLUME ["/data"]
USER node
# SIGTERM: every simulated device publishes its offline status, then the process exits.
STOPSIGNAL SIGTERM
# No port of its own: healthy while the broker it publishes to (MQTT_URL) accepts connections.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["node", "-e", "const u = new URL(process.env.MQTT_URL || 'mqtt://127.0.0.1:1883'); require('node:net').connect(Number(u.port) || 1883, u.hostname).on('connect', () => process.exit(0)).on('error', () => process.exit(1))"]
# npm start's simulated city: 6 provinces × 3 domains × 4 devices, every 2 s. Pass other flags
# (or --scenario NAME) as the container's command arguments; --help lists them.
CMD ["simulators/node_modules/.bin/tsx", "simulators/src/cli/simulate.ts", "--provinces", "01,79,48,31,92,22", "--devices", "4", "--interval", "2s"]
