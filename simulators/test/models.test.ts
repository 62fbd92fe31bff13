import { decodeTelemetry, DOMAINS, frequencyBand, GRID_CODE, type EnergyReading, type EnvironmentReading, type Reading, type TrafficReading } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import type { WorldEvent } from '../src/events.js';
import {
  buildWorld,
  dailyTrafficShape,
  deriveSeed,
  ENVIRONMENT_BOUNDS,
  initialState,
  loadShape,
  localTime,
  mulberry32,
  nextReading,
  placeDevices,
  provinceTraffic,
  Rng,
  solarGenerationW,
  speedFlow,
  trafficDemand,
  vnLocalMs,
  walkStep,
  WORLD_DEFAULTS,
  type DeviceState,
  type SimulatedDevice,
  type World,
} from '../src/index.js';
import { seedFromPrefix, seedPrefix } from '../src/random.js';

const SEED = 1234;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

const MINUTE = 60_000;

function devicesOf(province: string, domain: SimulatedDevice['domain'], count = 6): SimulatedDevice[] {
  return placeDevices({ seed: SEED, groups: [{ province, domain, count }] });
}

/** Readings of one device at the given timestamps, in order. */
function series<R extends Reading>(device: SimulatedDevice, timestamps: readonly number[], periodSeconds = 60, seed = SEED, world?: World): R[] {
  let state: DeviceState = initialState();
  return timestamps.map((ts) => {
    const step = nextReading(device, state, ts, { seed, periodSeconds, world });
    state = step.state;
    return step.reading as R;
  });
}

/** A world with only the given events: no background draws, so a test sees exactly what it set up. */
function worldOf(devices: readonly SimulatedDevice[], events: readonly WorldEvent[] = []): World {
  return buildWorld({ seed: SEED, events, devices, background: false });
}

/** Every `stepMs` from `startMs` for `count` steps. */
function times(startMs: number, stepMs: number, count: number): number[] {
  return Array.from({ length: count }, (_, i) => startMs + i * stepMs);
}

/** Readings of all devices at the same local hour on each of `days` consecutive days (one-minute steps within the hour). */
function atLocalHour<R extends Reading>(devices: readonly SimulatedDevice[], firstDayMs: number, hour: number, days: number): R[] {
  return devices.flatMap((d) => Array.from({ length: days }, (_, day) => series<R>(d, times(firstDayMs + day * DAY + hour * HOUR, 60_000, 30))).flat());
}

const mean = (values: readonly number[]) => values.reduce((a, b) => a + b, 0) / values.length;

describe('local time', () => {
  it('is UTC+7 all year, without daylight saving', () => {
    expect(localTime(Date.UTC(2026, 0, 15, 0, 0)).hour).toBe(7);
    expect(localTime(Date.UTC(2026, 6, 15, 0, 0)).hour).toBe(7);
    expect(localTime(Date.UTC(2026, 0, 15, 18, 30))).toMatchObject({ hour: 1.5, weekday: 5, month: 1 });
    expect(vnLocalMs(2026, 1, 16, 1, 30)).toBe(Date.UTC(2026, 0, 15, 18, 30));
  });
});

describe('seeded randomness', () => {
  it('repeats for a seed and walks with the configured spread', () => {
    const a = mulberry32(9);
    const b = mulberry32(9);
    expect(Array.from({ length: 5 }, a)).toEqual(Array.from({ length: 5 }, b));
    // Rng keeps mulberry32's sequence; a hashed prefix finishes to the same seed as deriveSeed.
    const inline = new Rng(9);
    expect(Array.from({ length: 5 }, () => inline.uniform())).toEqual(Array.from({ length: 5 }, mulberry32(9)));
    expect(seedFromPrefix(seedPrefix(3, 'reading', 'sim-01-traffic-001'), 42)).toBe(deriveSeed(3, 'reading', 'sim-01-traffic-001', 42));
    const rng = new Rng(5);
    const spec = { sigma: 2, tauS: 60 };
    let x = 0;
    const values: number[] = [];
    for (let i = 0; i < 20_000; i++) values.push((x = walkStep(x, 30, spec, rng.normal())));
    const m = mean(values);
    expect(Math.sqrt(mean(values.map((v) => (v - m) ** 2)))).toBeCloseTo(2, 0);
    expect(mean(Array.from({ length: 5000 }, () => rng.poisson(3.2)))).toBeCloseTo(3.2, 0);
  });
});

describe('traffic model', () => {
  const monday = vnLocalMs(2026, 3, 2); // a Monday
  const hanoi = devicesOf('01', 'traffic', 12);

  it('has morning and evening rush peaks well above the night, and quieter weekends', () => {
    const at = (h: number, day = monday) => trafficDemand(day + h * HOUR, '01');
    expect(at(8)).toBeGreaterThan(5 * at(3));
    expect(at(18)).toBeGreaterThan(5 * at(3));
    expect(at(8)).toBeGreaterThan(at(13));
    expect(at(18)).toBeGreaterThan(at(13));
    const saturday = monday + 5 * DAY;
    expect(localTime(saturday + 8 * HOUR).weekday).toBe(6);
    expect(at(8, saturday)).toBeLessThan(0.8 * at(8));
    // The two metropolises are busier than a provincial town.
    expect(trafficDemand(monday + 8 * HOUR, '79')).toBeGreaterThan(trafficDemand(monday + 8 * HOUR, '04'));
    expect(dailyTrafficShape(localTime(monday + 8 * HOUR))).toBeGreaterThan(0.9);
  });

  it('counts more vehicles at rush hour than at night, in local time', () => {
    const rush = atLocalHour<TrafficReading>(hanoi, monday, 7.5, 3);
    const night = atLocalHour<TrafficReading>(hanoi, monday, 2.5, 3);
    expect(mean(rush.map((r) => r.intensity))).toBeGreaterThan(4 * mean(night.map((r) => r.intensity)));
    // Speed falls and occupancy rises as flow approaches capacity.
    expect(mean(rush.map((r) => r.averageVehicleSpeed))).toBeLessThan(0.8 * mean(night.map((r) => r.averageVehicleSpeed)));
    expect(mean(rush.map((r) => r.occupancy))).toBeGreaterThan(3 * mean(night.map((r) => r.occupancy)));
    expect(rush.some((r) => r.congested)).toBe(true);
    expect(night.some((r) => r.congested)).toBe(false);
  });

  it('is slower at 08:00 on a weekday than at 03:00, across every detector of a city', () => {
    const devices = devicesOf('79', 'traffic', 40);
    const speedAt = (hour: number) => mean(devices.flatMap((d) => series<TrafficReading>(d, times(monday + hour * HOUR, MINUTE, 10)).map((r) => r.averageVehicleSpeed)));
    expect(speedAt(8)).toBeLessThan(0.8 * speedAt(3));
  });

  it('reports its segment and lane, and inbound lanes are busier in the morning, outbound ones in the evening', () => {
    const readings = hanoi.map((d) => series<TrafficReading>(d, [monday + 8 * HOUR])[0]);
    hanoi.forEach((device, i) => {
      expect(readings[i]?.refRoadSegment).toBe(device.segment?.id);
      expect(readings[i]?.laneId).toBe(device.segment?.lane);
    });
    // Occupancy, not counts: an oversaturated lane moves fewer vehicles, but they cover the loop longer.
    const occupancy = (direction: 'forward' | 'backward', hour: number) =>
      mean(hanoi.flatMap((d) => series<TrafficReading>(d, times(monday + hour * HOUR, MINUTE, 30))).filter((r) => r.laneDirection === direction).map((r) => r.occupancy));
    expect(occupancy('forward', 7.5) / occupancy('backward', 7.5)).toBeGreaterThan(occupancy('forward', 17.8) / occupancy('backward', 17.8));
  });

  it('follows a speed–flow curve: slower as flow nears capacity, breakdown beyond it', () => {
    const points = [0, 0.3, 0.6, 0.9, 1, 1.2, 1.5].map(speedFlow);
    for (let i = 1; i < points.length; i++) expect(points[i]?.speedRatio).toBeLessThan(points[i - 1]?.speedRatio ?? 0);
    expect(speedFlow(1)).toEqual({ flowRatio: 1, speedRatio: 0.5 });
    expect(speedFlow(1.5).flowRatio).toBeLessThan(1);
  });

  it('is dominated by motorcycles (75–85 %) on every road class', () => {
    const devices = devicesOf('79', 'traffic', 40);
    for (const kind of ['urban', 'arterial', 'highway']) {
      const ofKind = devices.filter((d) => d.kind === kind).slice(0, 4);
      expect(ofKind.length, kind).toBeGreaterThan(0);
      const readings = ofKind.flatMap((d) => series<TrafficReading>(d, times(monday, 10 * 60_000, 6 * 24), 300));
      const total = readings.reduce((sum, r) => sum + r.intensity, 0);
      const motorcycles = readings.reduce((sum, r) => sum + (r.intensityByVehicleType?.motorcycle ?? 0), 0);
      const share = motorcycles / total;
      expect(share, kind).toBeGreaterThan(0.75);
      expect(share, kind).toBeLessThan(0.85);
      for (const r of readings) {
        expect(Object.values(r.intensityByVehicleType ?? {}).reduce((a, b) => a + b, 0)).toBe(r.intensity);
      }
    }
  });

  it('slows down on an incident segment, then a few minutes later on the segment upstream, and recovers after the end', () => {
    const incident = hanoi.find((d) => d.segment?.id === '01-c1-s1');
    const upstream = hanoi.filter((d) => d.segment?.id === '01-c1-s2' && d.segment.lane === 1);
    const [atIncident, behind] = [hanoi.filter((d) => d.segment?.id === '01-c1-s1' && d.segment.lane === 1)[0], upstream[0]];
    if (!incident || !atIncident || !behind) throw new Error('expected detectors on 01-c1-s1 and 01-c1-s2');
    const startMs = monday + 8 * HOUR;
    const endMs = startMs + 30 * MINUTE;
    const world = worldOf(hanoi, [{ type: 'traffic-incident', province: '01', segment: '01-c1-s1', severity: 0.8, startMs, endMs }]);
    const calm = worldOf(hanoi);
    const ts = times(startMs - 10 * MINUTE, MINUTE, 140);
    const speeds = (device: SimulatedDevice, w: World) => series<TrafficReading>(device, ts, 60, SEED, w).map((r) => r.averageVehicleSpeed);
    const ratioAt = (device: SimulatedDevice, minute: number) => {
      const i = ts.indexOf(startMs + minute * MINUTE);
      return (speeds(device, world)[i] ?? NaN) / (speeds(device, calm)[i] ?? NaN);
    };
    // Before: identical. Two minutes in: the incident segment is much slower, upstream not yet.
    expect(ratioAt(atIncident, -5)).toBe(1);
    expect(ratioAt(atIncident, 2)).toBeLessThan(0.6);
    expect(ratioAt(behind, 2)).toBe(1);
    // The queue reaches upstream after a spill delay.
    expect(ratioAt(behind, 15)).toBeLessThan(0.8);
    const reading = series<TrafficReading>(atIncident, ts, 60, SEED, world)[ts.indexOf(startMs + 10 * MINUTE)];
    expect(reading?.congested).toBe(true);
    expect(reading?.occupancy).toBeGreaterThan(0.3);
    // After the end the incident segment clears first, then the one behind it; both fully recover.
    const clearanceMin = (WORLD_DEFAULTS.incident.clearanceBaseMs + 0.8 * WORLD_DEFAULTS.incident.clearancePerSeverityMs) / MINUTE;
    expect(ratioAt(atIncident, 30 + clearanceMin + 1)).toBe(1);
    expect(ratioAt(behind, 30 + clearanceMin + 1)).toBeLessThan(1);
    expect(ratioAt(behind, 30 + 1.5 * clearanceMin + 1)).toBe(1);
  });

  it('slows a little in the rain', () => {
    const startMs = monday + 11 * HOUR;
    const world = worldOf(hanoi, [{ type: 'rain', provinces: ['01'], mmPerHour: 25, startMs, endMs: startMs + HOUR }]);
    const ts = times(startMs + 5 * MINUTE, MINUTE, 30);
    const wet = mean(hanoi.flatMap((d) => series<TrafficReading>(d, ts, 60, SEED, world)).map((r) => r.averageVehicleSpeed));
    const dry = mean(hanoi.flatMap((d) => series<TrafficReading>(d, ts, 60, SEED, worldOf(hanoi))).map((r) => r.averageVehicleSpeed));
    expect(wet).toBeLessThan(0.95 * dry);
    expect(wet).toBeGreaterThan(0.7 * dry);
  });
});

describe('energy model', () => {
  const monday = vnLocalMs(2026, 3, 2);

  it('peaks in the evening, far above 03:00', () => {
    for (const code of ['01', '79', '48']) {
      const devices = devicesOf(code, 'energy');
      const evening = atLocalHour<EnergyReading>(devices, monday, 19, 3);
      const night = atLocalHour<EnergyReading>(devices, monday, 3, 3);
      expect(mean(evening.map((r) => r.totalActivePower)), code).toBeGreaterThan(1.4 * mean(night.map((r) => r.totalActivePower)));
      expect(loadShape(monday + 19.5 * HOUR, code)).toBeGreaterThan(loadShape(monday + 3 * HOUR, code));
    }
  });

  it('generates rooftop solar at midday below 16°N only: zero at night, lower in rain', () => {
    const south = devicesOf('79', 'energy', 12);
    const north = devicesOf('01', 'energy', 12);
    const day = vnLocalMs(2026, 3, 10);
    const solar = (devices: readonly SimulatedDevice[], hour: number, world?: World) => devices.reduce((sum, d) => sum + solarGenerationW(d, day + hour * HOUR, { seed: SEED, world }), 0);
    for (const hour of [0, 3, 5.9, 18.1, 21]) expect(solar(south, hour), `${hour} h`).toBe(0);
    expect(solar(south, 12)).toBeGreaterThan(solar(south, 8));
    expect(solar(south, 8)).toBeGreaterThan(0);
    for (const hour of [0, 8, 12, 15]) expect(solar(north, hour)).toBe(0);
    const rain = worldOf(south, [{ type: 'rain', provinces: ['79'], mmPerHour: 15, startMs: day + 11 * HOUR, endMs: day + 14 * HOUR }]);
    expect(solar(south, 12, rain)).toBeLessThan(0.5 * solar(south, 12));
  });

  it('cuts the midday net load in the south; meters with more panels than load export', () => {
    const netRatio = (code: string) => {
      const devices = devicesOf(code, 'energy', 12);
      return mean(atLocalHour<EnergyReading>(devices, monday, 12, 2).map((r) => r.totalActivePower)) / mean(atLocalHour<EnergyReading>(devices, monday, 9, 2).map((r) => r.totalActivePower));
    };
    expect(netRatio('79')).toBeLessThan(netRatio('01') - 0.1);
    expect(netRatio('48')).toBeLessThan(netRatio('01') - 0.1);
    const south = devicesOf('79', 'energy', 30);
    const day = vnLocalMs(2026, 3, 10);
    const exporters = south.filter((d) => (series<EnergyReading>(d, [day + 12 * HOUR])[0]?.totalActivePower ?? 0) < 0);
    expect(exporters.length).toBeGreaterThan(0);
    const exporter = exporters[0];
    if (!exporter) throw new Error('no exporting meter');
    const readings = series<EnergyReading>(exporter, times(day + 11.5 * HOUR, MINUTE, 60));
    const middle = readings[30];
    expect(middle?.totalActivePower).toBeLessThan(0);
    expect(middle?.powerFactor).toBeLessThan(0);
    expect((readings.at(-1)?.totalActiveEnergyExport ?? 0) - (readings[0]?.totalActiveEnergyExport ?? 0)).toBeGreaterThan(0);
    // A northern meter has no export register at all.
    expect(series<EnergyReading>(devicesOf('01', 'energy', 1)[0] as SimulatedDevice, [day + 12 * HOUR])[0]?.totalActiveEnergyExport).toBeUndefined();
    // The power factor always carries the sign of the active power.
    for (const r of south.flatMap((d) => series<EnergyReading>(d, times(day + 6 * HOUR, 20 * MINUTE, 40)))) {
      expect(Math.sign(r.powerFactor) * Math.sign(r.totalActivePower)).toBeGreaterThanOrEqual(0);
    }
  });

  it('stays within the grid code and keeps power, voltage and current consistent', () => {
    for (const device of devicesOf('01', 'energy', 3)) {
      const readings = series<EnergyReading>(device, times(monday, 7 * 60_000, 400));
      const nominal = device.profile?.nominalPhaseVoltageV ?? 0;
      let previousImport = -Infinity;
      for (const r of readings) {
        expect(Math.abs(r.frequency - GRID_CODE.nominalFrequencyHz)).toBeLessThan(0.1);
        for (const v of Object.values(r.phaseVoltage)) expect(Math.abs(v - nominal) / nominal).toBeLessThanOrEqual(GRID_CODE.voltageTolerance);
        expect(r.powerFactor).toBeGreaterThanOrEqual(0.85);
        expect(r.powerFactor).toBeLessThanOrEqual(0.98);
        const apparent = r.totalApparentPower ?? 0;
        expect(Math.hypot(r.totalActivePower, r.totalReactivePower) / apparent).toBeCloseTo(1, 3);
        const meanV = (r.phaseVoltage.L1 + r.phaseVoltage.L2 + r.phaseVoltage.L3) / 3;
        const meanI = (r.current.L1 + r.current.L2 + r.current.L3) / 3;
        expect(meanI / (apparent / (3 * meanV))).toBeCloseTo(1, 1);
        expect(r.totalActiveEnergyImport).toBeGreaterThan(previousImport);
        previousImport = r.totalActiveEnergyImport ?? 0;
      }
      // Energy integrates power: 400 × 7 minutes at the mean active power.
      const first = readings[0];
      const last = readings.at(-1);
      const expectedKWh = (mean(readings.slice(1).map((r) => r.totalActivePower)) * 399 * 7) / 60 / 1000;
      expect(((last?.totalActiveEnergyImport ?? 0) - (first?.totalActiveEnergyImport ?? 0)) / expectedKWh).toBeCloseTo(1, 1);
    }
  });

  it('sees one grid frequency across all meters at the same moment', () => {
    const ts = monday + 10 * HOUR;
    const frequencies = [...devicesOf('01', 'energy', 2), ...devicesOf('96', 'energy', 2)].map((d) => series<EnergyReading>(d, [ts])[0]?.frequency ?? 0);
    expect(Math.max(...frequencies) - Math.min(...frequencies)).toBeLessThan(0.02);
  });

  it('keeps 50 ± 0.2 Hz without events and leaves the band during an excursion', () => {
    const devices = [...devicesOf('01', 'energy', 2), ...devicesOf('79', 'energy', 2)];
    const week = times(monday, 3 * MINUTE + 7_000, 7 * 480);
    for (const d of devices) for (const r of series<EnergyReading>(d, week, 60, SEED, worldOf(devices))) expect(frequencyBand(r.frequency)).toBe('normal');
    const startMs = monday + 10 * HOUR;
    const world = worldOf(devices, [{ type: 'frequency-excursion', deltaHz: -0.35, startMs, endMs: startMs + 4 * MINUTE }]);
    const readings = series<EnergyReading>(devices[0] as SimulatedDevice, times(startMs - 2 * MINUTE, 30_000, 20), 60, SEED, world);
    const bands = readings.map((r) => frequencyBand(r.frequency));
    expect(bands.slice(0, 4)).toEqual(['normal', 'normal', 'normal', 'normal']);
    expect(bands.slice(5, 12).every((b) => b !== 'normal')).toBe(true);
    expect(bands.slice(-4)).toEqual(['normal', 'normal', 'normal', 'normal']);
  });

  it('reads zero voltage, current, power and frequency in an outage, with its registers standing still', () => {
    const devices = devicesOf('48', 'energy', 200);
    const startMs = monday + 19 * HOUR;
    const endMs = startMs + HOUR;
    const world = worldOf(devices, [{ type: 'grid-outage', province: '48', share: 0.3, startMs, endMs }]);
    const ts = [startMs - MINUTE, startMs + MINUTE, startMs + 30 * MINUTE, endMs + MINUTE];
    const runs = devices.map((d) => series<EnergyReading>(d, ts, 60, SEED, world));
    const out = runs.filter((rs) => rs[1]?.phaseVoltage.L1 === 0);
    // About 30 % of the province's meters lose supply, the same ones for the whole outage.
    expect(out.length / devices.length).toBeGreaterThan(0.2);
    expect(out.length / devices.length).toBeLessThan(0.4);
    for (const [before, first, second, after] of out) {
      expect(second).toMatchObject({ frequency: 0, totalActivePower: 0, totalReactivePower: 0, phaseVoltage: { L1: 0, L2: 0, L3: 0 }, current: { L1: 0, L2: 0, L3: 0 } });
      expect(second?.totalActiveEnergyImport).toBe(first?.totalActiveEnergyImport);
      expect(before?.phaseVoltage.L1).toBeGreaterThan(0);
      expect(after?.frequency).toBeGreaterThan(49);
    }
  });

  it('moves the phase voltages of a whole province out of tolerance during a sag', () => {
    const devices = devicesOf('01', 'energy', 6);
    const startMs = monday + 15 * HOUR;
    const world = worldOf(devices, [{ type: 'voltage-sag', province: '01', depth: -0.12, startMs, endMs: startMs + 2 * MINUTE }]);
    for (const d of devices) {
      const nominal = d.profile?.nominalPhaseVoltageV ?? 230;
      const [before, during, after] = series<EnergyReading>(d, [startMs - MINUTE, startMs + MINUTE, startMs + 3 * MINUTE], 60, SEED, world);
      expect(Math.abs((before?.phaseVoltage.L2 ?? 0) / nominal - 1)).toBeLessThanOrEqual(GRID_CODE.voltageTolerance);
      expect((during?.phaseVoltage.L2 ?? Infinity) / nominal).toBeLessThan(1 - GRID_CODE.voltageTolerance);
      expect(Math.abs((after?.phaseVoltage.L2 ?? 0) / nominal - 1)).toBeLessThanOrEqual(GRID_CODE.voltageTolerance);
    }
  });
});

describe('environment model', () => {
  it('has a northern winter haze: Hà Nội in January is far dirtier than in July and than Hồ Chí Minh in July', () => {
    const hours = [0, 4, 10, 16, 20];
    const hanoi = devicesOf('01', 'environment');
    const northWinter = hours.flatMap((h) => atLocalHour<EnvironmentReading>(hanoi, vnLocalMs(2026, 1, 5), h, 4));
    const northSummer = hours.flatMap((h) => atLocalHour<EnvironmentReading>(hanoi, vnLocalMs(2026, 7, 5), h, 4));
    const southSummer = hours.flatMap((h) => atLocalHour<EnvironmentReading>(devicesOf('79', 'environment'), vnLocalMs(2026, 7, 5), h, 4));
    const pm = (rs: EnvironmentReading[]) => mean(rs.map((r) => r.pm25 ?? 0));
    expect(pm(northWinter)).toBeGreaterThan(1.8 * pm(northSummer));
    expect(pm(northWinter)).toBeGreaterThan(2 * pm(southSummer));
    expect(mean(northWinter.map((r) => r.temperature ?? 0))).toBeLessThan(mean(southSummer.map((r) => r.temperature ?? 0)) - 8);
  });

  it('follows the day: O3 peaks early afternoon, NO2 and noise with traffic, PM under the night inversion', () => {
    const devices = devicesOf('01', 'environment');
    const day = vnLocalMs(2026, 4, 6);
    const at = (h: number) => atLocalHour<EnvironmentReading>(devices, day, h, 4);
    const [night, rush, afternoon] = [at(3), at(8), at(14)];
    const avg = (rs: EnvironmentReading[], key: 'o3' | 'no2' | 'pm25' | 'LAeq') => mean(rs.map((r) => r[key] ?? 0));
    expect(avg(afternoon, 'o3')).toBeGreaterThan(2 * avg(night, 'o3'));
    expect(avg(rush, 'no2')).toBeGreaterThan(1.5 * avg(afternoon, 'no2'));
    expect(avg(rush, 'LAeq')).toBeGreaterThan(avg(night, 'LAeq') + 5);
    expect(avg(night, 'pm25')).toBeGreaterThan(avg(afternoon, 'pm25'));
    const ofKind = (kind: string) => atLocalHour<EnvironmentReading>(devices.filter((d) => d.kind === kind), day, 8, 4);
    const [roadside, station] = [ofKind('roadside'), ofKind('urban-station')];
    expect(avg(roadside, 'LAeq')).toBeGreaterThan(avg(station, 'LAeq'));
  });

  it("rises with the province's traffic: busier cities, rush hours and incident queues", () => {
    const monday = vnLocalMs(2026, 4, 6);
    expect(provinceTraffic(monday + 8 * HOUR, '01')).toBeGreaterThan(3 * provinceTraffic(monday + 3 * HOUR, '01'));
    expect(provinceTraffic(monday + 8 * HOUR, '01')).toBeGreaterThan(provinceTraffic(monday + 8 * HOUR, '04'));
    const no2 = (code: string) => mean(atLocalHour<EnvironmentReading>(devicesOf(code, 'environment'), monday, 8, 2).map((r) => r.no2 ?? 0));
    expect(no2('79')).toBeGreaterThan(no2('12'));
    const detectors = devicesOf('01', 'traffic', 12);
    const startMs = monday + 8 * HOUR;
    const world = worldOf(detectors, [{ type: 'traffic-incident', province: '01', segment: '01-c1-s1', severity: 0.9, startMs, endMs: startMs + HOUR }]);
    expect(world.trafficCongestion('01', startMs + 20 * MINUTE)).toBeGreaterThan(1);
    expect(provinceTraffic(startMs + 20 * MINUTE, '01', { world })).toBeGreaterThan(provinceTraffic(startMs + 20 * MINUTE, '01'));
  });

  it('is washed out by rain: PM2.5 falls during and after it, the air gets cooler and wetter', () => {
    const devices = devicesOf('01', 'environment', 6);
    const day = vnLocalMs(2026, 7, 7);
    const world = worldOf(devices, [{ type: 'rain', provinces: ['01'], mmPerHour: 20, startMs: day + 14 * HOUR, endMs: day + 16 * HOUR }]);
    const ts = times(day + 12 * HOUR, 10 * MINUTE, 60);
    const at = (w: World, hour: number) => devices.map((d) => series<EnvironmentReading>(d, ts, 60, SEED, w)[ts.indexOf(day + hour * HOUR)] as EnvironmentReading);
    const calm = worldOf(devices);
    const avg = (rs: EnvironmentReading[], key: 'pm25' | 'pm10' | 'temperature' | 'relativeHumidity') => mean(rs.map((r) => r[key] ?? 0));
    expect(avg(at(world, 13), 'pm25')).toBe(avg(at(calm, 13), 'pm25'));
    expect(avg(at(world, 15.5), 'pm25')).toBeLessThan(0.6 * avg(at(calm, 15.5), 'pm25'));
    expect(avg(at(world, 15.5), 'pm10')).toBeLessThan(0.6 * avg(at(calm, 15.5), 'pm10'));
    expect(avg(at(world, 18), 'pm25')).toBeLessThan(0.8 * avg(at(calm, 18), 'pm25'));
    expect(avg(at(world, 15.5), 'temperature')).toBeLessThan(avg(at(calm, 15.5), 'temperature') - 1.5);
    expect(avg(at(world, 15.5), 'relativeHumidity')).toBeGreaterThan(avg(at(calm, 15.5), 'relativeHumidity') + 0.05);
  });

  it('multiplies primary pollutants during a pollution episode', () => {
    const devices = devicesOf('01', 'environment', 4);
    const day = vnLocalMs(2026, 12, 7);
    const world = worldOf(devices, [{ type: 'pollution-episode', provinces: ['01'], factor: 2, startMs: day, endMs: day + 12 * HOUR }]);
    const ts = times(day + 5 * HOUR, 10 * MINUTE, 6);
    const pm = (w: World) => mean(devices.flatMap((d) => series<EnvironmentReading>(d, ts, 60, SEED, w)).map((r) => r.pm25 ?? 0));
    expect(pm(world) / pm(worldOf(devices))).toBeCloseTo(2, 1);
  });

  it('always has PM10 above PM2.5 and smooth, correlated consecutive readings', () => {
    const [device] = devicesOf('48', 'environment', 1);
    if (!device) throw new Error('no device');
    const readings = series<EnvironmentReading>(device, times(vnLocalMs(2026, 11, 1), 60_000, 2000));
    for (const r of readings) expect(r.pm10 ?? 0).toBeGreaterThan(r.pm25 ?? Infinity);
    const pm = readings.map((r) => r.pm25 ?? 0);
    const diffs = pm.slice(1).map((v, i) => Math.abs(v - (pm[i] ?? 0)));
    // Minute to minute the value moves by a small fraction of its range: a walk, not white noise.
    expect(mean(diffs)).toBeLessThan(0.05 * (Math.max(...pm) - Math.min(...pm)));
  });
});

describe('every generated reading', () => {
  const provinces = ['01', '79', '48', '04', '68', '96'];
  const devices = placeDevices({ seed: SEED, groups: provinces.flatMap((province) => DOMAINS.map((domain) => ({ province, domain, count: 5 }))) });
  // A week and a half across a year at odd steps: every hour, weekday and season is visited.
  const timestamps = times(vnLocalMs(2026, 1, 1), 37 * 60_000 + 13_000, 400).map((ts, i) => ts + Math.floor(i / 40) * 35 * DAY);
  // Background events from the seed plus one of each scenario event, all inside the sampled span.
  const from = timestamps[0] ?? 0;
  const events: WorldEvent[] = [
    { type: 'traffic-incident', province: '01', severity: 1, startMs: from, endMs: from + 6 * HOUR },
    { type: 'rain', provinces: ['79', '96'], mmPerHour: 80, startMs: from, endMs: from + 2 * DAY },
    { type: 'pollution-episode', provinces: ['01'], factor: 4, startMs: from, endMs: from + DAY },
    { type: 'grid-outage', province: '68', share: 0.5, startMs: from, endMs: from + DAY },
    { type: 'frequency-excursion', deltaHz: -0.45, startMs: from + 2 * HOUR, endMs: from + 3 * HOUR },
    { type: 'voltage-sag', province: '48', depth: -0.15, startMs: from, endMs: from + 4 * HOUR },
  ];
  const world = buildWorld({ seed: SEED, events, devices });

  it('passes the contract decoder and stays within physical bounds, events included', () => {
    let count = 0;
    for (const device of devices) {
      let state = initialState();
      for (const ts of timestamps) {
        const step = nextReading(device, state, ts, { seed: SEED, periodSeconds: 30, world });
        state = step.state;
        const decoded = decodeTelemetry(device.domain, JSON.stringify(step.reading), ts);
        if (!decoded.ok) throw new Error(`${device.id} at ${new Date(ts).toISOString()}: ${decoded.error.message}`);
        expect(decoded.value.rejected).toEqual([]);
        expect(step.reading.seq).toBe(count % timestamps.length);
        expectPlausible(device, step.reading);
        count++;
      }
    }
    expect(count).toBe(devices.length * timestamps.length);
  });

  it('is the same for the same seed and different for another', () => {
    for (const device of devices.slice(0, 15).concat(devices.slice(-15))) {
      const ts = timestamps.slice(0, 50);
      expect(JSON.stringify(series(device, ts, 30, SEED, world))).toBe(JSON.stringify(series(device, ts, 30, SEED, buildWorld({ seed: SEED, events, devices }))));
      expect(JSON.stringify(series(device, ts, 30, SEED + 1, world))).not.toBe(JSON.stringify(series(device, ts, 30, SEED, world)));
    }
  });
});

/** Physical bounds, tighter than the schema's: what a real sensor in a Vietnamese city could read. */
function expectPlausible(device: SimulatedDevice, reading: Reading): void {
  const within = (value: number | undefined, [min, max]: readonly [number, number], what: string) => {
    if (value === undefined || !(value >= min && value <= max)) throw new Error(`${device.id} ${what} = ${value} outside ${min}…${max}`);
  };
  switch (device.domain) {
    case 'traffic': {
      const r = reading as TrafficReading;
      within(r.averageVehicleSpeed, [0, 90], 'speed');
      within(r.occupancy, [0, 1], 'occupancy');
      // At most two vehicles a second in a lane, motorcycles riding abreast.
      within(r.intensity, [0, 2 * r.periodSeconds + 10], 'intensity');
      break;
    }
    case 'environment': {
      const r = reading as EnvironmentReading;
      for (const key of Object.keys(ENVIRONMENT_BOUNDS) as (keyof typeof ENVIRONMENT_BOUNDS)[]) within(r[key], ENVIRONMENT_BOUNDS[key], key);
      if ((r.pm10 ?? 0) < (r.pm25 ?? 0)) throw new Error(`${device.id} PM10 below PM2.5`);
      break;
    }
    case 'energy': {
      const r = reading as EnergyReading;
      const nominal = device.profile?.nominalPhaseVoltageV ?? 230;
      const rated = device.profile?.ratedPowerVA ?? 1e6;
      if (r.frequency !== 0) within(r.frequency, [49.4, 50.6], 'frequency');
      for (const v of Object.values(r.phaseVoltage)) if (v !== 0) within(v / nominal, [0.8, 1.1], 'voltage');
      within(r.totalApparentPower, [0, 1.3 * rated], 'apparent power');
      within(r.powerFactor, [-1, 1], 'power factor');
      break;
    }
  }
}
