import { fileURLToPath } from 'node:url';
import { COMMON_CONFIG, type ConfigSpec } from '@citypulse/contracts';
import { INFLUX_CONFIG, REDIS_CONFIG } from '@citypulse/infra';
import { RULES_CONFIG } from '@citypulse/ingest';

const BUILT_DASHBOARD = fileURLToPath(new URL('../../dashboard/dist', import.meta.url));

export const API_CONFIG = {
  ...COMMON_CONFIG,
  ...INFLUX_CONFIG,
  ...RULES_CONFIG,
  API_HOST: { kind: 'string', default: '0.0.0.0', description: 'interface the API and dashboard listen on' },
  API_PORT: { kind: 'port', default: '3000', description: 'API and dashboard HTTP port' },
  MQTT_URL: { kind: 'url', default: 'mqtt://127.0.0.1:1883', values: ['mqtt', 'mqtts', 'ws', 'wss'], description: 'broker the services connect to' },
  API_MQTT_USERNAME: { kind: 'string', default: 'api', description: 'api service account in the device registry' },
  API_MQTT_PASSWORD: { kind: 'string', secret: true, description: 'its secret (npm start generates it and keeps it under DATA_DIR)' },
  DASHBOARD_DIR: { kind: 'path', default: BUILT_DASHBOARD, description: 'built dashboard served at / (dashboard/dist)' },
  FRAME_INTERVAL_MS: { kind: 'int', default: '500', min: 50, max: 10_000, description: 'live frames are coalesced over this interval' },
  SESSION_TTL_HOURS: { kind: 'int', default: '12', min: 1, max: 720, description: 'operator session lifetime' },
  COOKIE_SECURE: { kind: 'bool', default: 'false', description: 'mark the session cookie Secure (set true behind HTTPS)' },
  API_CORS_ORIGINS: { kind: 'string', optional: true, description: 'comma-separated origins allowed to call the API from a browser (CORS); unset: none' },
  API_ADAPTER: { kind: 'enum', default: 'local', values: ['local', 'redis'], description: 'how api nodes share socket.io events: local = one node; redis = nodes joined through @socket.io/redis-adapter over REDIS_URL' },
  ...REDIS_CONFIG,
  MAPBOX_ACCESS_TOKEN: { kind: 'string', optional: true, secret: true, description: 'optional Mapbox token; without it the map uses maplibre-gl and the shipped offline style; with it the dashboard loads mapbox-gl 1.x and offers Mapbox base maps, falling back to the offline style when Mapbox cannot be reached' },
} as const satisfies ConfigSpec;
