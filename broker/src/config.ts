import { COMMON_CONFIG, type ConfigSpec } from '@citypulse/contracts';

export const BROKER_CONFIG = {
  ...COMMON_CONFIG,
  MQTT_HOST: { kind: 'string', default: '0.0.0.0', description: 'interface the broker listens on (field devices connect here)' },
  MQTT_PORT: { kind: 'port', default: '1883', description: 'MQTT over TCP' },
  MQTT_WS_PORT: { kind: 'port', default: '8083', description: 'MQTT over WebSocket (0 turns it off)' },
  BROKER_CONNECT_TIMEOUT_MS: { kind: 'int', default: '30000', min: 1000, max: 600_000, description: 'close sockets that send no CONNECT within this time' },
  BROKER_DRAIN_TIMEOUT_MS: { kind: 'int', default: '10000', min: 100, max: 600_000, description: 'longest a slow subscriber may hold up delivery' },
} as const satisfies ConfigSpec;
