import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceRegistry } from '@citypulse/broker/registry';
import { chooseWindowMs, OperatorStore, type ApiApp } from '../src/index.js';
import { buildOfflineApi } from './offline-api.js';

/**
 * Route tests with inject(). InfluxDB and the broker are real addresses with nothing listening:
 * that is the "backing service down" case, which the api must report with a code, not crash on.
 */
describe('api routes', () => {
  let dir: string;
  let api: ApiApp;
  let registry: DeviceRegistry;
  let token: string;
  const auth = () => ({ authorization: `Bearer ${token}` });

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-api-'));
    registry = await DeviceRegistry.open(dir);
    await registry.upsertDevices([{ id: 'hn-air-01', province: '01', domain: 'environment', location: [105.8525, 21.0287], name: 'Trạm Hoàn Kiếm' }]);
    const operators = await OperatorStore.open(dir);
    await operators.upsert('viewer1', 'viewer', 'a-long-enough-password');
    api = await buildOfflineApi(dir, registry, operators);
    const login = await api.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'viewer1', password: 'a-long-enough-password' } });
    expect(login.statusCode).toBe(200);
    expect(login.headers['set-cookie']).toMatch(/cp_session=.*HttpOnly; SameSite=Strict/);
    token = login.json<{ token: string }>().token;
  });

  afterAll(async () => {
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('refuses a wrong password with E_UNAUTHORIZED', async () => {
    const res = await api.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'viewer1', password: 'nope' } });
    expect(res.statusCode).toBe(401);
    expect(res.json()).toEqual({ code: 'E_UNAUTHORIZED', message: 'wrong username or password' });
  });

  it('requires a session on every /api route', async () => {
    for (const url of ['/api/v1/devices', '/api/v1/provinces', '/api/v1/devices/hn-air-01/history?from=0']) {
      const res = await api.app.inject({ url });
      expect(res.statusCode, url).toBe(401);
      expect(res.json<{ code: string }>().code).toBe('E_UNAUTHORIZED');
    }
    const forged = await api.app.inject({ url: '/api/v1/devices', headers: { authorization: `Bearer ${token.slice(0, -2)}xx` } });
    expect(forged.statusCode).toBe(401);
  });

  it('serves the 34 provinces as GeoJSON', async () => {
    const res = await api.app.inject({ url: '/api/v1/provinces', headers: auth() });
    expect(res.statusCode).toBe(200);
    expect(res.headers['content-type']).toMatch(/geo\+json/);
    const body = res.json<{ features: { properties: { code: string; devices: number } }[] }>();
    expect(body.features).toHaveLength(34);
    expect(body.features.find((f) => f.properties.code === '01')?.properties.devices).toBe(1);
  });

  it('lists devices with their latest reading (none yet) and filters by province', async () => {
    const res = await api.app.inject({ url: '/api/v1/devices?province=01&domain=environment', headers: auth() });
    expect(res.json()).toEqual({
      devices: [{ id: 'hn-air-01', name: 'Trạm Hoàn Kiếm', province: '01', domain: 'environment', kind: 'default', location: [105.8525, 21.0287], enabled: true, status: 'unknown', latest: null }],
      total: 1,
      limit: 1000,
      offset: 0,
    });
    const other = await api.app.inject({ url: '/api/v1/devices?province=79', headers: auth() });
    expect(other.json()).toEqual({ devices: [], total: 0, limit: 1000, offset: 0 });
    // Text search ignores case and Vietnamese accents; paging reports the total.
    const found = await api.app.inject({ url: '/api/v1/devices?q=hoan%20kiem&limit=1&offset=0', headers: auth() });
    expect(found.json()).toMatchObject({ total: 1, devices: [{ id: 'hn-air-01' }] });
    const none = await api.app.inject({ url: '/api/v1/devices?q=hoan%20kiem&offset=1', headers: auth() });
    expect(none.json()).toMatchObject({ total: 1, devices: [] });
  });

  it.each([
    ['/api/v1/devices?province=99', 400, 'E_PROVINCE'],
    ['/api/v1/devices?province=01%27%20OR%201%3D1', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices?domain=water', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/..%2F..%2Fetc', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/nobody-here', 404, 'E_NOT_FOUND'],
    ['/api/v1/devices/hn-air-01/history', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/history?from=yesterday', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/history?from=0&fields=pm25%22%3B%20DROP%20DATABASE%20citypulse', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/history?from=0&fields=seq,secretHash', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/history?from=0&aggregate=sum', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/history?from=0&maxPoints=100000', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/history?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/history?from=2020-01-01T00:00:00Z&to=2026-01-01T00:00:00Z', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/rejected?code=E_NOPE', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/rejected?code=E_TOPIC%27%20OR%20%271%27%3D%271', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/rejected?limit=0', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/rejected?limit=5000', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/rejected?from=%22%3B%20DROP%20DATABASE%20citypulse', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/hn-air-01/rejected?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z', 400, 'E_BAD_REQUEST'],
    ['/api/v1/devices/nobody-here/rejected', 404, 'E_NOT_FOUND'],
    ['/api/v1/nothing-here', 404, 'E_NOT_FOUND'],
  ])('GET %s → %i %s', async (url, status, code) => {
    const res = await api.app.inject({ url, headers: auth() });
    expect(res.statusCode).toBe(status);
    const body = res.json<{ code: string; message: string }>();
    expect(body.code).toBe(code);
    expect(body.message.length).toBeGreaterThan(5);
  });

  it('answers 503 E_UPSTREAM when InfluxDB is down, and /healthz says degraded', async () => {
    const res = await api.app.inject({ url: '/api/v1/devices/hn-air-01/history?from=0&to=3600000', headers: auth() });
    expect(res.statusCode).toBe(503);
    expect(res.json<{ code: string }>().code).toBe('E_UPSTREAM');
    const rejected = await api.app.inject({ url: '/api/v1/devices/hn-air-01/rejected', headers: auth() });
    expect(rejected.statusCode).toBe(503);
    expect(rejected.json<{ code: string }>().code).toBe('E_UPSTREAM');
    const health = await api.app.inject({ url: '/healthz' });
    expect(health.statusCode).toBe(503);
    expect(health.json()).toEqual({ status: 'degraded', mqtt: false, influx: false });
  });

  it('says how to build the dashboard when it is missing', async () => {
    const res = await api.app.inject({ url: '/' });
    expect(res.statusCode).toBe(503);
    expect(res.body).toMatch(/pnpm --filter @citypulse\/dashboard build/);
  });

  it('refuses a malformed login body with a code', async () => {
    const res = await api.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: '{"username":', headers: { 'content-type': 'application/json' } });
    expect(res.statusCode).toBe(400);
    expect(res.json<{ code: string }>().code).toBe('E_BAD_REQUEST');
  });
});

describe('history windows', () => {
  it('keeps a 30-day range at or under about a thousand points', () => {
    const range = 30 * 86_400_000;
    const windowMs = chooseWindowMs(range, 1000);
    expect(range / windowMs).toBeLessThanOrEqual(1000);
    expect(windowMs).toBe(3_600_000);
  });

  it('uses one-second windows for a short range', () => {
    expect(chooseWindowMs(5 * 60_000, 500)).toBe(1000);
  });
});
