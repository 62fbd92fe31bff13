import { decodeTelemetry, GRID_CODE, type EnergyReading, type EnvironmentReading, type Reading, type TrafficReading } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import {
  dailyTrafficShape,
  initialState,
  loadShape,
  localTime,
  mulberry32,
  nextReading,
  placeDevices,
  Rng,
  speedFlow,
  trafficDemand,
  vnLocalMs,
  walkStep,
  type DeviceState,
  type SimulatedDevice,
} from '../src/index.js';

const SEED = 1234;
const HOUR = 3_600_000;
const DAY = 24 * HOUR;

function devicesOf(province: string, domain: SimulatedDevice['domain'], count = 6): SimulatedDevice[] {
  return placeDevices({ provinces: [province], domains: [domain], devicesPerProvince: count, seed: SEED });
}

/** Readings of one device at the given timestamps, in order. */
function series<R extends Reading>(device: SimulatedDevice, timestamps: readonly number[], periodSeconds = 60, seed = SEED): R[] {
  let state: DeviceState = initialState();
  return timestamps.map((ts) => {
    const step = nextReading(device, state, ts, { seed, periodSeconds });
    state = step.state;
    return step.reading as R;
  });
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
  const hanoi = devicesOf('01', 'traffic');

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

  it('follows a speed–flow curve: slower as flow nears capacity, breakdown beyond it', () => {
    const points = [0, 0.3, 0.6, 0.9, 1, 1.2, 1.5].map(speedFlow);
    for (let i = 1; i < points.length; i++) expect(points[i]?.speedRatio).toBeLessThan(points[i - 1]?.speedRatio ?? 0);
    expect(speedFlow(1)).toEqual({ flowRatio: 1, speedRatio: 0.5 });
    expect(speedFlow(1.5).flowRatio).toBeLessThan(1);
  });

  it('is dominated by motorcycles (75–85 %) on every road class', () => {
    const devices = devicesOf('79', 'traffic', 5);
    for (const kind of ['urban', 'arterial', 'highway']) {
      const readings = devices.filter((d) => d.kind === kind).flatMap((d) => series<TrafficReading>(d, times(monday, 10 * 60_000, 6 * 24), 300));
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

  it('dips at midday where rooftop solar is common (below 16°N), not in the north', () => {
    const dip = (code: string) => loadShape(monday + 12 * HOUR, code) / loadShape(monday + 10 * HOUR, code);
    expect(dip('79')).toBeLessThan(dip('01') - 0.1);
    expect(dip('48')).toBeLessThan(dip('01') - 0.1);
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
});

describe('environment model', () => {
  it('has a northern winter haze: Hà Nội in January is far dirtier than Hồ Chí Minh in July', () => {
    const northWinter = [0, 4, 10, 16, 20].flatMap((h) => atLocalHour<EnvironmentReading>(devicesOf('01', 'environment'), vnLocalMs(2026, 1, 5), h, 4));
    const southSummer = [0, 4, 10, 16, 20].flatMap((h) => atLocalHour<EnvironmentReading>(devicesOf('79', 'environment'), vnLocalMs(2026, 7, 5), h, 4));
    expect(mean(northWinter.map((r) => r.pm25 ?? 0))).toBeGreaterThan(2 * mean(southSummer.map((r) => r.pm25 ?? 0)));
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
  const devices = placeDevices({ provinces: ['01', '79', '48', '04', '68', '96'], domains: ['traffic', 'environment', 'energy'], devicesPerProvince: 5, seed: SEED });
  // A week and a half across a year at odd steps: every hour, weekday and season is visited.
  const timestamps = times(vnLocalMs(2026, 1, 1), 37 * 60_000 + 13_000, 400).map((ts, i) => ts + Math.floor(i / 40) * 35 * DAY);

  it('passes the contract decoder', () => {
    let count = 0;
    for (const device of devices) {
      let state = initialState();
      for (const ts of timestamps) {
        const step = nextReading(device, state, ts, { seed: SEED, periodSeconds: 30 });
        state = step.state;
        const decoded = decodeTelemetry(device.domain, JSON.stringify(step.reading), ts);
        if (!decoded.ok) throw new Error(`${device.id} at ${new Date(ts).toISOString()}: ${decoded.error.message}`);
        expect(decoded.value.rejected).toEqual([]);
        expect(step.reading.seq).toBe(count % timestamps.length);
        count++;
      }
    }
    expect(count).toBe(devices.length * timestamps.length);
  });

  it('is the same for the same seed and different for another', () => {
    for (const device of devices.slice(0, 15)) {
      const ts = timestamps.slice(0, 50);
      expect(series(device, ts, 30, SEED)).toEqual(series(device, ts, 30, SEED));
      expect(series(device, ts, 30, SEED + 1)).not.toEqual(series(device, ts, 30, SEED));
    }
  });
});
