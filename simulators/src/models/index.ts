import { type Reading } from '@citypulse/contracts';
import { type DeviceState, type ModelOptions, type ModelStep, type SimulatedDevice } from './common.js';
import { energyReading } from './energy.js';
import { environmentReading } from './environment.js';
import { trafficReading } from './traffic.js';

export * from './common.js';
export * from './energy.js';
export * from './environment.js';
export * from './traffic.js';

/** The next reading of any device, by its domain. */
export function nextReading(device: SimulatedDevice, state: DeviceState, ts: number, options: ModelOptions): ModelStep<Reading> {
  switch (device.domain) {
    case 'traffic':
      return trafficReading(device, state, ts, options);
    case 'environment':
      return environmentReading(device, state, ts, options);
    case 'energy':
      return energyReading(device, state, ts, options);
  }
}
