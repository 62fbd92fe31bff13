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

  it('lets ingest publish alerts and summaries on ops topics, and the api read them; devices neither', () => {
    expect(canPublish(service('ingest'), 'ops/01/alerts', false).allowed).toBe(true);
    expect(canPublish(service('ingest'), 'ops/79/summary', true).allowed).toBe(true);
    expect(canPublish(service('ingest'), 'ops/99/alerts', false).allowed).toBe(false); // no such province
    expect(canPublish(service('ingest'), 'ops/01/other', false).allowed).toBe(false);
    expect(canPublish(service('ingest'), 'ops/01/alerts/extra', false).allowed).toBe(false);
    expect(canPublish(service('api'), 'ops/01/alerts', false).allowed).toBe(false);
    expect(canSubscribe(service('api'), 'ops/+/alerts').allowed).toBe(true);
    expect(canSubscribe(service('api'), 'ops/#').allowed).toBe(true);
    expect(canSubscribe(service('ingest'), 'ops/#').allowed).toBe(false);
    expect(canPublish(asDevice, 'ops/01/alerts', false).allowed).toBe(false);
    expect(canSubscribe(asDevice, 'ops/01/alerts').allowed).toBe(false);
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

describe('gateway ACL', () => {
  const gateway: Principal = { type: 'service', service: { id: 'gw-01', role: 'gateway', secretHash: 'x', enabled: true, createdAt: '' } };
  const behind: DeviceRecord = { ...device, id: 'hn-air-02', secretHash: undefined, gateway: 'gw-01' };
  const elsewhere: DeviceRecord = { ...device, id: 'hn-air-03', secretHash: undefined, gateway: 'gw-02' };
  const disabled: DeviceRecord = { ...behind, id: 'hn-air-04', enabled: false };
  const registry = new Map([behind, elsewhere, disabled, device].map((d) => [d.id, d]));
  const lookup = (id: string) => registry.get(id);

  it('publishes telemetry and retained status for the devices registered behind it', () => {
    expect(canPublish(gateway, 'city/01/environment/hn-air-02/telemetry', false, lookup).allowed).toBe(true);
    expect(canPublish(gateway, 'city/01/environment/hn-air-02/status', true, lookup).allowed).toBe(true);
  });

  it.each([
    ['a device behind another gateway', 'city/01/environment/hn-air-03/telemetry'],
    ['a device with its own login', 'city/01/environment/hn-air-01/telemetry'],
    ['a disabled device', 'city/01/environment/hn-air-04/telemetry'],
    ['its device under another province', 'city/79/environment/hn-air-02/telemetry'],
    ['its device under another domain', 'city/01/energy/hn-air-02/telemetry'],
    ['its device\'s command topic', 'city/01/environment/hn-air-02/commands'],
    ['an unknown device', 'city/01/environment/nobody-01/telemetry'],
    ['a topic outside the scheme', 'city/01/alerts'],
  ])('refuses a publish for %s', (_name, topic) => {
    expect(canPublish(gateway, topic, false, lookup).allowed).toBe(false);
  });

  it('refuses retained telemetry from a gateway too', () => {
    expect(canPublish(gateway, 'city/01/environment/hn-air-02/telemetry', true, lookup).allowed).toBe(false);
  });

  it('subscribes only to its own devices\' command topics', () => {
    expect(canSubscribe(gateway, 'city/01/environment/hn-air-02/commands', lookup).allowed).toBe(true);
    expect(canSubscribe(gateway, 'city/01/environment/hn-air-03/commands', lookup).allowed).toBe(false);
    expect(canSubscribe(gateway, 'city/+/+/+/commands', lookup).allowed).toBe(false);
    expect(canSubscribe(gateway, 'city/01/environment/hn-air-02/telemetry', lookup).allowed).toBe(false);
  });
});
