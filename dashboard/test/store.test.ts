import { type DeviceView, type LiveFrame, type LiveReading } from '@citypulse/contracts';
import { describe, expect, it } from 'vitest';
import { DeviceStore, LIVE_WINDOW_MS, NO_READING_COLOR } from '../src/live/store.js';

const NOW = Date.UTC(2026, 0, 1, 3, 0, 0);

function view(id: string, latest: DeviceView['latest'] = null): DeviceView {
  return { id, name: `Device ${id}`, province: '01', domain: 'environment', kind: 'station', location: [105.8, 21.0], enabled: true, status: 'online', latest };
}

function reading(deviceId: string, ts: number, color: string): LiveReading {
  return { deviceId, province: '01', domain: 'environment', ts, seq: ts, values: { pm25: 10 }, derived: { vnAqi: 40 }, state: { level: 'good', color } };
}

function frame(readings: LiveReading[], mode: LiveFrame['mode'] = 'live'): LiveFrame {
  return { province: '01', domain: 'environment', mode, sentAt: NOW, readings };
}

describe('DeviceStore', () => {
  it('adds devices from the list as a membership change, then readings as feature changes', () => {
    const store = new DeviceStore();
    store.replaceDevices([view('env-a'), view('env-b')]);
    expect(store.takeChanges()).toEqual({ membership: true, changed: [] });
    expect(store.colors()).toEqual({ 'env-a': NO_READING_COLOR, 'env-b': NO_READING_COLOR });

    expect(store.applyFrame(frame([reading('env-a', NOW - 1000, 'rgb(0,228,0)')]), NOW)).toBe(0);
    expect(store.takeChanges()).toEqual({ membership: false, changed: ['env-a'] });
    expect(store.colors()['env-a']).toBe('rgb(0,228,0)');
    expect(store.lastFrameAt()).toBe(NOW);
    expect(store.hasChanges()).toBe(false);
  });

  it('drops live readings older than the one held, but applies replay frames as they come', () => {
    const store = new DeviceStore();
    store.replaceDevices([view('env-a')]);
    store.applyFrame(frame([reading('env-a', NOW, 'rgb(255,255,0)')]), NOW);
    store.applyFrame(frame([reading('env-a', NOW - 5000, 'rgb(0,228,0)')]), NOW);
    expect(store.get('env-a')?.reading?.ts).toBe(NOW);
    store.applyFrame(frame([reading('env-a', NOW - 5000, 'rgb(0,228,0)')], 'replay'), NOW);
    expect(store.get('env-a')?.reading?.ts).toBe(NOW - 5000);
  });

  it('counts readings for devices it cannot place, so the caller refetches the list', () => {
    const store = new DeviceStore();
    store.replaceDevices([view('env-a')]);
    expect(store.applyFrame(frame([reading('env-new', NOW, '#000')]), NOW)).toBe(1);
    expect(store.hasUnknown()).toBe(true);
    store.replaceDevices([view('env-a'), view('env-new')]);
    expect(store.hasUnknown()).toBe(false);
  });

  it('keeps the newer of the listed and the streamed reading, and removes devices no longer listed', () => {
    const store = new DeviceStore();
    store.replaceDevices([view('env-a'), view('env-b')]);
    store.applyFrame(frame([reading('env-a', NOW, 'rgb(255,0,0)')]), NOW);
    const older = { ts: NOW - 60_000, seq: 1, values: {}, derived: {}, state: { level: 'good', color: 'rgb(0,228,0)' } };
    store.takeChanges();
    store.replaceDevices([view('env-a', older)]);
    expect(store.get('env-a')?.reading?.state.color).toBe('rgb(255,0,0)');
    expect(store.get('env-b')).toBeUndefined();
    expect(store.takeChanges().membership).toBe(true);
  });

  it('counts a device as live while its reading is recent on the server clock and it is not offline', () => {
    const store = new DeviceStore();
    store.replaceDevices([view('env-a'), view('env-b'), view('env-c')]);
    store.applyFrame(frame([reading('env-a', NOW - 1000, '#fff'), reading('env-b', NOW - LIVE_WINDOW_MS - 1000, '#fff')]), NOW);
    expect(store.liveCount(NOW)).toBe(1);
    // The client clock runs 1 h behind the server's: the server's sentAt corrects it.
    store.noteHeartbeat(NOW, NOW - 3_600_000);
    expect(store.liveCount(NOW - 3_600_000)).toBe(1);
    store.applyStatus({ deviceId: 'env-a', province: '01', domain: 'environment', state: 'offline', ts: NOW });
    expect(store.liveCount(NOW - 3_600_000)).toBe(0);
  });

  it('remembers the latest sign of life from the server: list, frame or heartbeat', () => {
    const store = new DeviceStore();
    expect(store.lastSignAt()).toBeNull();
    store.replaceDevices([view('env-a')], NOW);
    expect(store.lastSignAt()).toBe(NOW);
    store.applyFrame(frame([]), NOW + 1000);
    store.noteHeartbeat(NOW, NOW + 500);
    expect(store.lastSignAt()).toBe(NOW + 1000);
    expect(store.lastFrameAt()).toBe(NOW + 1000);
  });

  it('builds one GeoJSON point per device with its id, domain and colour', () => {
    const store = new DeviceStore();
    store.replaceDevices([view('env-a')]);
    const fc = store.toFeatureCollection();
    expect(fc.features).toEqual([
      {
        type: 'Feature',
        properties: { deviceId: 'env-a', domain: 'environment', color: NO_READING_COLOR, rank: 0, offline: false, alert: 0, aqi: 0 },
        geometry: { type: 'Point', coordinates: [105.8, 21.0] },
      },
    ]);
  });

  it('leaves hidden domains out of the features and rebuilds them when the options change', () => {
    const store = new DeviceStore();
    store.replaceDevices([view('env-a'), { ...view('tr-a'), domain: 'traffic', location: [105.9, 21.1] }]);
    store.takeChanges();
    store.setDisplayOptions({ scale: 'vn', domains: new Set(['traffic'] as const) });
    expect(store.takeChanges().membership).toBe(true);
    expect(store.toFeatureCollection().features.map((f) => f.properties.deviceId)).toEqual(['tr-a']);
  });

  it('marks the devices whose alert level changed, and only those', () => {
    const store = new DeviceStore();
    store.replaceDevices([view('env-a'), view('env-b')]);
    store.takeChanges();
    store.setAlertLevels(new Map([['env-a', 3]]));
    expect(store.takeChanges()).toEqual({ membership: false, changed: ['env-a'] });
    expect(store.propertiesOf(store.get('env-a') ?? fail()).alert).toBe(3);
    store.setAlertLevels(new Map([['env-a', 3]]));
    expect(store.hasChanges()).toBe(false);
    store.setAlertLevels(new Map());
    expect(store.takeChanges().changed).toEqual(['env-a']);
  });

  it('forgets every reading when a replay starts', () => {
    const store = new DeviceStore();
    store.replaceDevices([view('env-a')]);
    store.applyFrame(frame([reading('env-a', NOW, 'rgb(0,228,0)')]), NOW);
    store.clearReadings();
    expect(store.get('env-a')?.reading).toBeNull();
    expect(store.takeChanges().membership).toBe(true);
  });
});

describe('DeviceStore in a replay', () => {
  it('clears the devices of a province and domain that a replay snapshot does not mention', () => {
    const store = new DeviceStore();
    store.replaceDevices([view('env-a'), view('env-b'), { ...view('tr-a'), domain: 'traffic' }]);
    store.applyFrame(frame([reading('env-a', NOW, 'rgb(0,228,0)'), reading('env-b', NOW, 'rgb(0,228,0)')], 'replay'), NOW);
    store.applyFrame({ ...frame([], 'replay'), domain: 'traffic', readings: [{ ...reading('tr-a', NOW, '#1a9850'), domain: 'traffic' }] }, NOW);
    // A seek back: only env-a had a reading by then.
    store.applyFrame(frame([reading('env-a', NOW - 60_000, 'rgb(255,255,0)')], 'replay'), NOW, 'snapshot');
    expect(store.get('env-a')?.reading?.ts).toBe(NOW - 60_000);
    expect(store.get('env-b')?.reading).toBeNull();
    expect(store.get('tr-a')?.reading).not.toBeNull(); // another domain's snapshot is its own
  });

  it('keeps replayed readings when the device list is refetched during a replay', () => {
    const store = new DeviceStore();
    store.replaceDevices([view('env-a')]);
    store.applyFrame(frame([reading('env-a', NOW - 3_600_000, 'rgb(0,228,0)')], 'replay'), NOW);
    const live = { ts: NOW, seq: 9, values: { pm25: 80 }, derived: { vnAqi: 160 }, state: { level: 'bad', color: 'rgb(255,0,0)' } };
    store.replaceDevices([view('env-a', live)], NOW, false);
    expect(store.get('env-a')?.reading?.ts).toBe(NOW - 3_600_000);
  });

  it('asks for the device list once per unknown device, not on every reading of it', () => {
    const store = new DeviceStore();
    store.replaceDevices([]);
    expect(store.applyFrame(frame([reading('ghost', NOW, 'rgb(0,228,0)')]), NOW)).toBe(1);
    expect(store.applyFrame(frame([reading('ghost', NOW + 1000, 'rgb(0,228,0)')]), NOW)).toBe(0);
  });
});

function fail(): never {
  throw new Error('missing');
}
