import { join } from 'node:path';
import { pino } from 'pino';
import type { DeviceRegistry } from '@citypulse/broker/registry';
import { freePort, Influx } from '@citypulse/infra';
import { buildApi, SessionSigner, type ApiApp, type OperatorStore } from '../src/index.js';

/**
 * An api whose InfluxDB and broker are addresses with nothing listening: routes that need neither
 * work, and the others show the "backing service down" case, which must give a code, not a crash.
 */
export async function buildOfflineApi(dir: string, registry: DeviceRegistry, operators: OperatorStore): Promise<ApiApp> {
  const down = await freePort();
  return buildApi({
    influx: new Influx({ url: `http://127.0.0.1:${down}`, database: 'citypulse', retentionPolicy: 'raw', apiVersion: 'v1' }),
    registry,
    operators,
    sessions: await SessionSigner.fromDataDir(dir, 3_600_000),
    logger: pino({ level: 'silent' }),
    mqtt: { url: `mqtt://127.0.0.1:${down}`, username: 'api', password: 'x' },
    dashboardDir: join(dir, 'no-dashboard'),
    dataDir: dir,
  });
}
