import { describe, expect, it } from 'vitest';
import { Compile } from 'typebox/compile';
import { batchSchema, decodeTelemetry, decodeStatus, MAX_BATCH_READINGS, TrafficReading } from '../src/index.js';

const NOW = Date.UTC(2026, 10, 22, 1, 0, 0); // 08:00 in Hà Nội
const traffic = { ts: NOW - 1000, seq: 7, intensity: 42, periodSeconds: 60, occupancy: 0.18, averageVehicleSpeed: 31.5, intensityByVehicleType: { motorcycle: 34, car: 6, bus: 2 } };
const energy = { ts: NOW, seq: 1, frequency: 50.02, totalActivePower: 310_000, totalReactivePower: 95_000, powerFactor: 0.95, phaseVoltage: { L1: 229, L2: 231, L3: 230 }, current: { L1: 470, L2: 465, L3: 472 } };

describe('telemetry schemas', () => {
  it('accepts a good single reading of each domain', () => {
    expect(decodeTelemetry('traffic', JSON.stringify(traffic), NOW)).toMatchObject({ ok: true, value: { batch: false, readings: [traffic] } });
    expect(decodeTelemetry('environment', JSON.stringify({ ts: NOW, seq: 1, pm25: 35.2, pm10: 60, relativeHumidity: 0.8 }), NOW).ok).toBe(true);
    expect(decodeTelemetry('energy', new TextEncoder().encode(JSON.stringify(energy)), NOW).ok).toBe(true);
  });

  it.each([
    ['not JSON', '{"ts":', 'E_PAYLOAD_JSON'],
    ['invalid UTF-8', new Uint8Array([0x7b, 0xff, 0xfe, 0x7d]), 'E_PAYLOAD_JSON'],
    ['a JSON array', '[1,2]', 'E_PAYLOAD_SCHEMA'],
    ['null', 'null', 'E_PAYLOAD_SCHEMA'],
    ['ts in seconds', JSON.stringify({ ...traffic, ts: Math.floor(NOW / 1000) }), 'E_PAYLOAD_SCHEMA'],
    ['a negative speed', JSON.stringify({ ...traffic, averageVehicleSpeed: -3 }), 'E_PAYLOAD_SCHEMA'],
    ['occupancy above 1', JSON.stringify({ ...traffic, occupancy: 1.5 }), 'E_PAYLOAD_SCHEMA'],
    ['an unknown field', JSON.stringify({ ...traffic, hacked: true }), 'E_PAYLOAD_SCHEMA'],
    ['a __proto__ key', `{"ts":${NOW},"seq":1,"intensity":1,"periodSeconds":60,"occupancy":0,"averageVehicleSpeed":1,"__proto__":{"admin":true}}`, 'E_PAYLOAD_SCHEMA'],
    ['identity in the body', JSON.stringify({ ...traffic, deviceId: 'someone-else' }), 'E_PAYLOAD_SCHEMA'],
    ['a string number', JSON.stringify({ ...traffic, intensity: '42' }), 'E_PAYLOAD_SCHEMA'],
    ['a future timestamp', JSON.stringify({ ...traffic, ts: NOW + 3_600_000 }), 'E_CLOCK_SKEW'],
    ['a timestamp older than retention', JSON.stringify({ ...traffic, ts: NOW - 40 * 86_400_000 }), 'E_TOO_OLD'],
    ['a huge payload', JSON.stringify({ ...traffic, pad: 'x'.repeat(300_000) }), 'E_TOO_LARGE'],
  ])('rejects %s', (_name, payload, code) => {
    const result = decodeTelemetry('traffic', payload, NOW);
    expect(result.ok).toBe(false);
    if (!result.ok) {
      expect(result.error.code).toBe(code);
      expect(result.error.message.length).toBeGreaterThan(10);
    }
  });

  it('names the offending field in the message', () => {
    const result = decodeTelemetry('traffic', JSON.stringify({ ...traffic, occupancy: 2 }), NOW);
    expect(!result.ok && result.error.message).toContain('/occupancy');
  });

  it('rejects an environment reading without any measurement', () => {
    const result = decodeTelemetry('environment', JSON.stringify({ ts: NOW, seq: 1 }), NOW);
    expect(!result.ok && result.error.code).toBe('E_PAYLOAD_SCHEMA');
  });

  it('keeps the good readings of a batch and reports the bad ones by index', () => {
    const readings = [traffic, { ...traffic, seq: 8, occupancy: 3 }, { ...traffic, seq: 9 }];
    const result = decodeTelemetry('traffic', JSON.stringify({ readings }), NOW);
    expect(result.ok).toBe(true);
    if (result.ok) {
      expect(result.value.batch).toBe(true);
      expect(result.value.readings.map((r) => r.seq)).toEqual([7, 9]);
      expect(result.value.rejected).toEqual([expect.objectContaining({ index: 1, code: 'E_PAYLOAD_SCHEMA' })]);
    }
  });

  it('refuses batches that are empty, too large or carry extra keys', () => {
    expect(decodeTelemetry('traffic', JSON.stringify({ readings: [] }), NOW)).toMatchObject({ ok: false, error: { code: 'E_PAYLOAD_SCHEMA' } });
    const big = { readings: Array.from({ length: MAX_BATCH_READINGS + 1 }, (_, i) => ({ ...traffic, seq: i })) };
    expect(decodeTelemetry('traffic', JSON.stringify(big), NOW, { maxPayloadBytes: 10_000_000, maxClockSkewMs: 0, maxAgeMs: 86_400_000 })).toMatchObject({ ok: false, error: { code: 'E_BATCH_TOO_LARGE' } });
    expect(decodeTelemetry('traffic', JSON.stringify({ readings: [traffic], extra: 1 }), NOW)).toMatchObject({ ok: false, error: { code: 'E_PAYLOAD_SCHEMA' } });
  });

  it('publishes the batch form as a JSON Schema', () => {
    const batch = Compile(batchSchema(TrafficReading));
    expect(batch.Check({ readings: [traffic] })).toBe(true);
    expect(batch.Check({ readings: [] })).toBe(false);
    expect(batch.Check([traffic])).toBe(false);
  });

  it('decodes status payloads, the last will included', () => {
    expect(decodeStatus('{"state":"offline"}')).toEqual({ ok: true, value: { state: 'offline' } });
    expect(decodeStatus('{"state":"sleeping"}')).toMatchObject({ ok: false, error: { code: 'E_PAYLOAD_SCHEMA' } });
  });
});
