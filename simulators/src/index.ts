/**
 * @citypulse/simulators: stand-ins for field devices in Vietnam's provinces. Devices are placed
 * inside their province, provisioned in the device registry, and publish plausible readings over
 * MQTT on the contract's topics, following local time (Asia/Ho_Chi_Minh).
 */
export { startSimulation, SIMULATION_DEFAULTS, type Simulation, type SimulationOptions, type SimulationStats } from './simulation.js';
export { DEVICE_KINDS, PLACEMENT_DEFAULTS, placeDevices, simulatedDeviceId, URBAN_CENTRES, urbanCentre, type PlacementOptions } from './placement.js';
export { SECRETS_FILE_NAME } from './secrets.js';
export * from './models/index.js';
export { deriveSeed, mulberry32, Rng, walkStep, type WalkSpec } from './random.js';
export { isWeekend, localTime, VN_UTC_OFFSET_MS, vnLocalMs, type LocalTime } from './time.js';
