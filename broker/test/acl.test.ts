import { describe, expect, it } from 'vitest';
import { canPublish, canSubscribe, filterWithin, type DeviceRecord, type Principal } from '../src/index.js';

const device: DeviceRecord = {
  id: 'hn-air-01',
  province: '01',
  domain: 'environment',
  kind: 'urban-station',
  name: 'Trạm Hoàn Kiếm',
  location: [105.85, 21.03],
  secretHash: 'x',
  enabled: true,
  createdAt: '',
  updatedAt: '',
};
const asDevice: Principal = { type: 'device', device };
const service = (role: 'ingest' | 'api' | 'tools'): Principal => ({ type: 'service', service: { id: role, role, secretHash: 'x', enabled: true, createdAt: '' } });

describe('device ACL', () => {
  it('lets a device publish its own telemetry and status only', () => {
    expect(canPublish(asDevice, 'city/01/environment/hn-air-01/telemetry', false).allowed).toBe(true);
    expect(canPublish(asDevice, 'city/01/environment/hn-air-01/status', true).allowed).toBe(true);
  });

  it.each([
    ['another device', 'city/01/environment/hn-air-02/telemetry'],
    ['its id under another province', 'city/79/environment/hn-air-01/telemetry'],
    ['its id under another domain', 'city/01/energy/hn-air-01/telemetry'],
    ['its own command topic', 'city/01/environment/hn-air-01/commands'],
    ['a topic outside the scheme', 'city/01/alerts'],
    ['$SYS', '$SYS/broker/clients'],
  ])('refuses a publish to %s', (_name, topic) => {
    const decision = canPublish(asDevice, topic, false);
    expect(decision.allowed).toBe(false);
  });

  it('refuses retained telemetry', () => {
    expect(canPublish(asDevice, 'city/01/environment/hn-air-01/telemetry', true).allowed).toBe(false);
  });

  it('lets a device subscribe only to its own command topic', () => {
    expect(canSubscribe(asDevice, 'city/01/environment/hn-air-01/commands').allowed).toBe(true);
    expect(canSubscribe(asDevice, 'city/#').allowed).toBe(false);
    expect(canSubscribe(asDevice, 'city/01/environment/+/commands').allowed).toBe(false);
    expect(canSubscribe(asDevice, 'city/01/environment/hn-air-02/commands').allowed).toBe(false);
  });
});

describe('service ACL', () => {
  it('gives ingest and api the telemetry and status streams, nothing wider', () => {
    for (const role of ['ingest', 'api'] as const) {
      expect(canSubscribe(service(role), 'city/+/+/+/telemetry').allowed).toBe(true);
      expect(canSubscribe(service(role), 'city/01/+/+/telemetry').allowed).toBe(true);
      expect(canSubscribe(service(role), 'city/+/+/+/status').allowed).toBe(true);
      expect(canSubscribe(service(role), 'city/#').allowed).toBe(false);
      expect(canSubscribe(service(role), '#').allowed).toBe(false);
      expect(canPublish(service(role), 'city/01/environment/hn-air-01/telemetry', false).allowed).toBe(false);
    }
  });

  it('lets tools replay device traffic and watch everything', () => {
    expect(canPublish(service('tools'), 'city/01/environment/hn-air-01/telemetry', false).allowed).toBe(true);
    expect(canSubscribe(service('tools'), 'city/#').allowed).toBe(true);
    expect(canSubscribe(service('tools'), '$SYS/#').allowed).toBe(true);
  });

  it('checks filter containment level by level', () => {
    expect(filterWithin('city/01/traffic/x/telemetry', 'city/+/+/+/telemetry')).toBe(true);
    expect(filterWithin('city/+/+/+/+', 'city/+/+/+/telemetry')).toBe(false);
    expect(filterWithin('city/#', 'city/+/+/+/telemetry')).toBe(false);
    expect(filterWithin('city/01/#', 'city/#')).toBe(true);
  });
});
