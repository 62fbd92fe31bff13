import { DeviceRegistry } from '@citypulse/broker/registry';
import { fleetDevice } from '../../ingest/bench/fleet.js';
import { OperatorStore } from '../src/operators.js';
import { type BenchGateway } from './protocol.js';

/**
 * The accounts of a live bench (the api's and the dashboard's): the api's service secret,
 * `gateways` gateway accounts with the ingest bench's fleet of `devices` registered behind them
 * (round-robin), and one operator to watch with.
 */
export async function provisionBenchFleet(
  dataDir: string,
  options: { readonly devices: number; readonly gateways: number; readonly operator: { readonly username: string; readonly role: 'viewer' | 'operator' | 'admin'; readonly password: string } },
): Promise<{ apiSecret: string; gateways: BenchGateway[] }> {
  const registry = await DeviceRegistry.open(dataDir);
  try {
    const apiSecret = await registry.upsertService('api', 'api');
    const gateways: BenchGateway[] = [];
    for (let g = 0; g < options.gateways; g++) {
      const username = `bench-gateway-${g}`;
      const password = await registry.upsertService(username, 'gateway');
      gateways.push({ username, password, devices: Array.from({ length: Math.ceil((options.devices - g) / options.gateways) }, (_, k) => g + k * options.gateways) });
    }
    // Devices behind gateways have no secret of their own: cheap to register by the ten thousand.
    await registry.upsertDevices(
      gateways.flatMap((gateway) =>
        gateway.devices.map((n) => {
          const d = fleetDevice(n);
          return { id: d.id, province: d.province, domain: d.domain, kind: d.kind, location: d.location, gateway: gateway.username, ...(d.profile ? { profile: d.profile } : {}) };
        }),
      ),
    );
    const operators = await OperatorStore.open(dataDir);
    await operators.upsert(options.operator.username, options.operator.role, options.operator.password);
    operators.close();
    return { apiSecret, gateways };
  } finally {
    registry.close();
  }
}
