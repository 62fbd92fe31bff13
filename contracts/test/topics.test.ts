import { describe, expect, it } from 'vitest';
import { deviceTopic, parseDeviceTopic, topicMatchesFilter, TOPIC_FILTERS } from '../src/index.js';

describe('topic scheme', () => {
  it('builds and parses a device topic (round trip)', () => {
    const address = { province: '79', domain: 'traffic' as const, deviceId: 'hcm-loop-0001' };
    const topic = deviceTopic(address, 'telemetry');
    expect(topic).toBe('city/79/traffic/hcm-loop-0001/telemetry');
    expect(parseDeviceTopic(topic)).toEqual({ ok: true, value: { ...address, channel: 'telemetry' } });
  });

  it.each([
    ['wrong root', 'town/01/traffic/dev-1/telemetry', 'form'],
    ['too few levels', 'city/01/traffic/telemetry', 'form'],
    ['too many levels', 'city/01/traffic/dev-1/telemetry/x', 'form'],
    ['63-era code that no longer exists', 'city/02/traffic/dev-1/telemetry', 'segment 2'],
    ['unknown domain', 'city/01/water/dev-1/telemetry', 'segment 3'],
    ['upper-case device id', 'city/01/traffic/Dev-1/telemetry', 'segment 4'],
    ['wildcard as device id', 'city/01/traffic/+/telemetry', 'segment 4'],
    ['unknown channel', 'city/01/traffic/dev-1/config', 'segment 5'],
    ['empty', '', 'form'],
  ])('rejects %s with E_TOPIC', (_name, topic, hint) => {
    const result = parseDeviceTopic(topic);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.code).toBe('E_TOPIC');
      expect(result.error.message).toContain(hint);
    }
  });

  it('matches MQTT filters like a broker', () => {
    expect(topicMatchesFilter(TOPIC_FILTERS.allTelemetry, 'city/01/energy/feeder-1/telemetry')).toBe(true);
    expect(topicMatchesFilter(TOPIC_FILTERS.allTelemetry, 'city/01/energy/feeder-1/status')).toBe(false);
    expect(topicMatchesFilter('city/#', 'city/01/energy/feeder-1/status')).toBe(true);
    expect(topicMatchesFilter('city/#', 'city')).toBe(true);
    expect(topicMatchesFilter('#', '$SYS/broker/uptime')).toBe(false);
    expect(topicMatchesFilter(TOPIC_FILTERS.provinceTelemetry('79'), 'city/01/energy/f/telemetry')).toBe(false);
  });
});
