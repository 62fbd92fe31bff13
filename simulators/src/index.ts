/**
 * @citypulse/simulators: stand-ins for field devices in Vietnam's provinces. Devices are placed
 * inside their province, provisioned in the device registry, and publish plausible readings over
 * MQTT on the contract's topics, following local time (Asia/Ho_Chi_Minh).
 */
export { startSimulation, SIMULATION_DEFAULTS, type MessageSink, type Simulation, type SimulationOptions, type SimulationStats } from './simulation.js';
export {
  CONNECTION_MODES,
  describeScenario,
  expectedReadings,
  FAULT_DEFAULTS,
  FAULT_TYPES,
  loadScenarioFile,
  parseScenarioText,
  resolveScenario,
  SCENARIO_DEFAULTS,
  SCENARIO_LIMITS,
  scenarioFromFlags,
  shippedScenarioPath,
  validateScenarioData,
  type ConnectionMode,
  type FaultSettings,
  type FaultType,
  type GroupPlan,
  type ResolveOptions,
  type Scenario,
  type ScenarioFile,
} from './scenario.js';
export { applyFaults, faultsForDevice, MALFORMED_KINDS, WRONG_TOPIC_KINDS, type DeviceFaults, type FaultOutcome } from './faults.js';
export { WORLD_EVENT_TYPES, type DeviceGroup, type WorldEvent } from './events.js';
export { formatDuration, parseDuration } from './units.js';
export {
  DEVICE_KINDS,
  parseSegmentId,
  PLACEMENT_DEFAULTS,
  placeDevices,
  RoadNetwork,
  SECONDARY_TOWNS,
  segmentId,
  simulatedDeviceId,
  URBAN_CENTRES,
  urbanCentre,
  urbanHubs,
  type PlacementOptions,
  type RoadSegment,
} from './placement.js';
export { buildWorld, WORLD_DEFAULTS, type World, type WorldOptions } from './world.js';
export { SECRETS_FILE_NAME } from './secrets.js';
export * from './models/index.js';
export { deriveSeed, mulberry32, Rng, walkStep, type WalkSpec } from './random.js';
export { isWeekend, localTime, VN_UTC_OFFSET_MS, vnLocalMs, type LocalTime } from './time.js';
export {
  BROKER_RECORDING_DEFAULTS,
  countRecordedMessages,
  encodeRecordedMessage,
  openRecorder,
  readRecording,
  recordBroker,
  RECORDER_DEFAULTS,
  RECORDING_FORMAT,
  RECORDING_VERSION,
  recordingPartPath,
  resolveRecordingFiles,
  type BrokerRecording,
  type BrokerRecordingOptions,
  type BrokerRecordingStats,
  type RecordedMessage,
  type Recorder,
  type RecorderOptions,
  type RecorderStats,
} from './recording.js';
export { replay, REPLAY_DEFAULTS, shiftPayloadToNow, type InfluxReplaySource, type RecordingReplaySource, type Replay, type ReplayOptions, type ReplaySource, type ReplaySpeed, type ReplayState, type ReplayStats } from './replay.js';
export { createProgress, formatBytes, formatCount, formatSeconds, PROGRESS_DEFAULTS, type Progress, type ProgressExtra, type ProgressOptions } from './progress.js';
