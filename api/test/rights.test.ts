import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import { io as connectSocket, type Socket } from 'socket.io-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DeviceRegistry } from '@citypulse/broker/registry';
import { SOCKET_IO_PATH, type SubscribeAck } from '@citypulse/contracts';
import { OperatorStore, type ApiApp } from '../src/index.js';
import { buildOfflineApi } from './offline-api.js';

/**
 * Who may do what: every role, a province-scoped operator (REST and socket.io rooms), logout and
 * password changes ending sessions, the last admin kept, the audit log, rate limits, headers and
 * the OpenAPI document. InfluxDB and the broker are addresses with nothing listening (no route
 * here needs them).
 */
describe('api rights', () => {
  let dir: string;
  let api: ApiApp;
  let registry: DeviceRegistry;
  let url: string;
  const password = 'a-long-enough-password';
  const tokens: Record<string, string> = {};
  const sockets: Socket[] = [];

  const call = (method: 'GET' | 'POST' | 'PUT' | 'PATCH' | 'DELETE', path: string, who?: string, payload?: unknown) =>
    api.app.inject({ method, url: `/api/v1${path}`, headers: who ? { authorization: `Bearer ${tokens[who]}` } : {}, ...(payload === undefined ? {} : { payload: payload as object }) });
  const login = async (username: string, pass = password) => {
    const res = await api.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username, password: pass }, remoteAddress: `10.0.0.${Object.keys(tokens).length + 1}` });
    expect(res.statusCode, res.body).toBe(200);
    return res.json<{ token: string; role: string; provinces: string[] | null }>();
  };

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-api-rights-'));
    registry = await DeviceRegistry.open(dir);
    await registry.upsertDevices([
      { id: 'hn-air-01', province: '01', domain: 'environment', location: [105.8525, 21.0287], name: 'Trạm Hoàn Kiếm' },
      { id: 'hcm-traffic-01', province: '79', domain: 'traffic', location: [106.7009, 10.7769], name: 'Ngã tư Hàng Xanh' },
    ]);
    const operators = await OperatorStore.open(dir);
    await operators.upsert('root', 'admin', password);
    await operators.upsert('vera', 'viewer', password);
    await operators.upsert('otto', 'operator', password);
    api = await buildOfflineApi(dir, registry, operators);
    await api.app.listen({ port: 0, host: '127.0.0.1' });
    url = `http://127.0.0.1:${(api.app.server.address() as AddressInfo).port}`;
    for (const name of ['root', 'vera', 'otto']) tokens[name] = (await login(name)).token;
  });

  afterAll(async () => {
    for (const socket of sockets) socket.disconnect();
    await api.close();
    await rm(dir, { recursive: true, force: true });
  });

  const socketFor = (token: string) =>
    new Promise<Socket>((resolve, reject) => {
      const socket = connectSocket(url, { path: SOCKET_IO_PATH, auth: { token }, transports: ['websocket'], reconnection: false });
      sockets.push(socket);
      socket.once('connect', () => resolve(socket));
      socket.once('connect_error', reject);
    });
  const subscribe = (socket: Socket, provinces: string[]) => socket.timeout(5000).emitWithAck('subscribe', { provinces }) as Promise<SubscribeAck>;

  it('lets only admins manage operators and read the audit log', async () => {
    for (const who of ['vera', 'otto']) {
      for (const [method, path, body] of [
        ['GET', '/operators', undefined],
        ['POST', '/operators', { username: 'mallory', role: 'admin', password }],
        ['PATCH', '/operators/root', { role: 'viewer' }],
        ['DELETE', '/operators/root', undefined],
        ['GET', '/audit', undefined],
      ] as const) {
        const res = await call(method, path, who, body);
        expect(res.statusCode, `${who} ${method} ${path}`).toBe(403);
        expect(res.json()).toMatchObject({ code: 'E_FORBIDDEN' });
        expect(res.json<{ message: string }>().message).toContain('needs the admin role');
      }
    }
    const list = await call('GET', '/operators', 'root');
    expect(list.statusCode).toBe(200);
    expect(list.json<{ operators: { username: string }[] }>().operators.map((o) => o.username)).toEqual(['otto', 'root', 'vera']);
    expect(list.body).not.toMatch(/scrypt|passwordHash/);
  });

  it('lets only admins manage devices, within their provinces, and audits every change', async () => {
    const device = { id: 'hn-air-02', province: '01', domain: 'environment', location: [105.84, 21.02], kind: 'station', name: 'Trạm Ba Đình' };
    for (const who of ['vera', 'otto']) {
      for (const [method, path, body] of [
        ['POST', '/devices', device],
        ['PATCH', '/devices/hn-air-01', { enabled: false }],
        ['POST', '/devices/hn-air-01/secret', undefined],
        ['DELETE', '/devices/hn-air-01', undefined],
      ] as const) {
        const res = await call(method, path, who, body);
        expect(res.statusCode, `${who} ${method} ${path}`).toBe(403);
        expect(res.json<{ message: string }>().message).toContain('needs the admin role');
      }
    }
    const created = await call('POST', '/devices', 'root', device);
    expect(created.statusCode, created.body).toBe(201);
    const { secret } = created.json<{ secret: string }>();
    expect(created.json()).toMatchObject({ device: { id: 'hn-air-02', province: '01', enabled: true, status: 'unknown', latest: null } });
    expect(await registry.authenticate('hn-air-02', secret)).toMatchObject({ type: 'device' }); // the broker's check
    expect(JSON.stringify(registry.device('hn-air-02'))).not.toContain(secret); // only the hash is kept
    expect((await call('POST', '/devices', 'root', device)).json()).toMatchObject({ code: 'E_CONFLICT' });
    for (const bad of [{ ...device, id: 'hn-air-03', location: [106.7, 10.78] }, { ...device, id: 'Bad Id' }, { ...device, id: 'hn-air-03', province: '99' }, { ...device, id: 'hn-air-03', secretHash: 'x' }, { ...device, id: 'hn-air-03', kind: 'a"b' }]) {
      const res = await call('POST', '/devices', 'root', bad);
      expect(res.statusCode, JSON.stringify(bad)).toBe(400);
      expect(res.json<{ code: string }>().code).toMatch(/^E_(BAD_REQUEST|PROVINCE)$/);
    }
    const patched = await call('PATCH', '/devices/hn-air-02', 'root', { enabled: false, name: 'Trạm Ba Đình (bảo trì)' });
    expect(patched.json()).toMatchObject({ id: 'hn-air-02', enabled: false, name: 'Trạm Ba Đình (bảo trì)' });
    expect(await registry.authenticate('hn-air-02', secret)).toBeUndefined(); // disabled: refused
    expect((await call('PATCH', '/devices/hn-air-02', 'root', { enabled: true })).json()).toMatchObject({ enabled: true });
    const rotated = (await call('POST', '/devices/hn-air-02/secret', 'root')).json<{ secret: string }>().secret;
    expect(rotated).not.toBe(secret);
    expect(await registry.authenticate('hn-air-02', secret)).toBeUndefined();
    expect(await registry.authenticate('hn-air-02', rotated)).toMatchObject({ type: 'device' });
    expect((await call('DELETE', '/devices/hn-air-02', 'root')).statusCode).toBe(204);
    expect((await call('GET', '/devices/hn-air-02', 'root')).statusCode).toBe(404);
    const audit = (await call('GET', '/audit?action=device', 'root')).json<{ entries: { action: string; target: string }[] }>();
    expect(audit.entries.map((e) => e.action)).toEqual(['device.remove', 'device.secret', 'device.update', 'device.update', 'device.create']);
  });

  it('shows the alert rules to every role and lets only admins replace them, validated', async () => {
    const shown = await call('GET', '/alert-rules', 'vera');
    expect(shown.statusCode, shown.body).toBe(200);
    const { yaml, rules } = shown.json<{ yaml: string; rules: { id: string }[] }>();
    expect(rules.length).toBeGreaterThan(0);
    for (const who of ['vera', 'otto']) {
      const res = await call('PUT', '/alert-rules', who, { yaml });
      expect([res.statusCode, res.json<{ code: string }>().code]).toEqual([403, 'E_FORBIDDEN']);
    }
    // A mistake is refused with its line; nothing is written.
    const bad = await call('PUT', '/alert-rules', 'root', { yaml: 'version: 1\nrules:\n  - id: pm25-high\n    kind: threshold\n    domain: environment\n    field: pm25\n    above: lots\n    severity: warning\n' });
    expect(bad.statusCode).toBe(400);
    expect(bad.json<{ code: string; message: string }>()).toMatchObject({ code: 'E_BAD_REQUEST', message: expect.stringMatching(/rules\[0\]\.above.*line 7/) as string });
    expect((await call('PUT', '/alert-rules', 'root', { yaml: '{{{' })).json()).toMatchObject({ code: 'E_BAD_REQUEST' });
    expect((await call('GET', '/alert-rules', 'vera')).json<{ yaml: string }>().yaml).toBe(yaml);
    // A valid one is written where ingest reads it, and audited.
    const smaller = 'version: 1\nrules:\n  - id: pm25-high\n    kind: threshold\n    domain: environment\n    field: pm25\n    above: 55.4\n    for: 10m\n    severity: warning\n';
    const put = await call('PUT', '/alert-rules', 'root', { yaml: smaller });
    expect(put.statusCode, put.body).toBe(200);
    expect(put.json<{ rules: { id: string }[] }>().rules.map((r) => r.id)).toEqual(['pm25-high']);
    expect(await readFile(join(dir, 'alert-rules.yaml'), 'utf8')).toBe(smaller);
    expect((await call('GET', '/alert-rules', 'otto')).json<{ yaml: string }>().yaml).toBe(smaller);
    const audit = (await call('GET', '/audit?action=rules', 'root')).json<{ entries: { operator: string; action: string }[] }>();
    expect(audit.entries).toEqual([expect.objectContaining({ operator: 'root', action: 'rules.update' })]);
  });

  it('limits a province-scoped operator to its provinces on every route', async () => {
    const created = await call('POST', '/operators', 'root', { username: 'hanoi-desk', role: 'operator', password, provinces: ['01'] });
    expect(created.statusCode, created.body).toBe(201);
    expect(created.json()).toMatchObject({ username: 'hanoi-desk', role: 'operator', provinces: ['01'], disabled: false });
    tokens['hanoi-desk'] = (await login('hanoi-desk')).token;

    expect((await call('GET', '/auth/me', 'hanoi-desk')).json()).toMatchObject({ username: 'hanoi-desk', role: 'operator', provinces: ['01'] });
    const devices = await call('GET', '/devices', 'hanoi-desk');
    expect(devices.json<{ devices: { id: string }[]; total: number }>()).toMatchObject({ total: 1, devices: [{ id: 'hn-air-01' }] });
    const provinces = await call('GET', '/provinces', 'hanoi-desk');
    expect(provinces.json<{ features: { properties: { code: string } }[] }>().features.map((f) => f.properties.code)).toEqual(['01']);
    for (const path of ['/devices/hcm-traffic-01', '/devices/hcm-traffic-01/latest', '/devices/hcm-traffic-01/history?from=0', '/devices/hcm-traffic-01/rejected', '/devices?province=79']) {
      const res = await call('GET', path, 'hanoi-desk');
      expect(res.statusCode, path).toBe(403);
      expect(res.json<{ code: string }>().code).toBe('E_FORBIDDEN');
    }
    // An unscoped viewer sees both provinces.
    expect((await call('GET', '/devices', 'vera')).json<{ total: number }>().total).toBe(2);
    expect((await call('GET', '/devices/hcm-traffic-01', 'vera')).statusCode).toBe(200);
  });

  it('keeps a scoped operator out of other provinces\' socket.io rooms', async () => {
    const scoped = await socketFor(tokens['hanoi-desk'] as string);
    const refused = await subscribe(scoped, ['79']);
    expect(refused).toMatchObject({ ok: false, error: { code: 'E_FORBIDDEN' } });
    expect(JSON.stringify(refused)).toContain('79');
    expect(await subscribe(scoped, ['01', '79'])).toMatchObject({ ok: false, error: { code: 'E_FORBIDDEN' } });
    expect(await subscribe(scoped, ['01'])).toEqual({ ok: true, provinces: ['01'], domains: ['traffic', 'environment', 'energy'] });
    const viewer = await socketFor(tokens.vera as string);
    expect(await subscribe(viewer, ['01', '79'])).toEqual({ ok: true, provinces: ['01', '79'], domains: ['traffic', 'environment', 'energy'] });
    // Rooms per province and domain.
    expect(await viewer.timeout(5000).emitWithAck('subscribe', { provinces: ['79'], domains: ['traffic'] })).toEqual({ ok: true, provinces: ['79'], domains: ['traffic'] });
    expect(await viewer.timeout(5000).emitWithAck('subscribe', { provinces: ['79'], domains: ['water'] })).toMatchObject({ ok: false, error: { code: 'E_BAD_REQUEST' } });
    // Replays: operators only, and only within their provinces.
    const range = { from: Date.now() - 3_600_000, to: Date.now() - 60_000, speed: 10 };
    expect(await viewer.timeout(5000).emitWithAck('replayStart', { ...range, provinces: ['01'] })).toMatchObject({ ok: false, error: { code: 'E_FORBIDDEN' } });
    expect(await scoped.timeout(5000).emitWithAck('replayStart', { ...range, provinces: ['79'] })).toMatchObject({ ok: false, error: { code: 'E_FORBIDDEN' } });
    expect(await scoped.timeout(5000).emitWithAck('replayControl', { action: 'pause' })).toMatchObject({ ok: false, error: { code: 'E_NOT_FOUND' } });
    await expect(socketFor('not-a-token')).rejects.toThrow(/E_UNAUTHORIZED/);
  });

  it('takes a role or scope change at once, without a new login', async () => {
    expect((await call('PATCH', '/operators/hanoi-desk', 'root', { provinces: ['01', '79'] })).statusCode).toBe(200);
    expect((await call('GET', '/devices/hcm-traffic-01', 'hanoi-desk')).statusCode).toBe(200);
    expect((await call('PATCH', '/operators/hanoi-desk', 'root', { role: 'viewer', provinces: ['01'] })).json()).toMatchObject({ role: 'viewer', provinces: ['01'] });
    expect((await call('GET', '/auth/me', 'hanoi-desk')).json()).toMatchObject({ role: 'viewer', provinces: ['01'] });
    expect((await call('GET', '/devices/hcm-traffic-01', 'hanoi-desk')).statusCode).toBe(403);
  });

  it('ends a session on logout and all of an operator\'s sessions on a new password or when disabled', async () => {
    const second = (await login('otto')).token;
    const out = await api.app.inject({ method: 'POST', url: '/api/v1/auth/logout', headers: { authorization: `Bearer ${second}` } });
    expect(out.statusCode).toBe(204);
    expect(out.headers['set-cookie']).toMatch(/cp_session=; .*Max-Age=0/);
    expect((await api.app.inject({ url: '/api/v1/auth/me', headers: { authorization: `Bearer ${second}` } })).statusCode).toBe(401);
    expect((await call('GET', '/auth/me', 'otto')).statusCode).toBe(200); // the other session goes on

    expect((await call('PATCH', '/operators/otto', 'root', { password: 'another-long-password' })).statusCode).toBe(200);
    expect((await call('GET', '/auth/me', 'otto')).json()).toMatchObject({ code: 'E_UNAUTHORIZED' });
    tokens.otto = (await login('otto', 'another-long-password')).token;
    expect((await call('GET', '/auth/me', 'otto')).statusCode).toBe(200);

    expect((await call('PATCH', '/operators/otto', 'root', { disabled: true })).statusCode).toBe(200);
    expect((await call('GET', '/auth/me', 'otto')).statusCode).toBe(401);
    const refused = await api.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'otto', password: 'another-long-password' } });
    expect(refused.json()).toEqual({ code: 'E_UNAUTHORIZED', message: 'wrong username or password' });
  });

  it('never removes the last admin, and refuses a taken name', async () => {
    for (const [method, body] of [
      ['PATCH', { role: 'operator' }],
      ['PATCH', { disabled: true }],
      ['PATCH', { provinces: ['01'] }],
      ['DELETE', undefined],
    ] as const) {
      const res = await call(method, '/operators/root', 'root', body);
      expect(res.statusCode, `${method} ${JSON.stringify(body)}`).toBe(409);
      expect(res.json<{ code: string; message: string }>().code).toBe('E_CONFLICT');
      expect(res.json<{ code: string; message: string }>().message).toContain('last enabled admin');
    }
    const taken = await call('POST', '/operators', 'root', { username: 'vera', role: 'viewer', password });
    expect(taken.json()).toMatchObject({ code: 'E_CONFLICT' });
    expect((await call('DELETE', '/operators/nobody', 'root')).json()).toMatchObject({ code: 'E_NOT_FOUND' });
  });

  it.each([
    ['POST', '/operators', { username: 'Robert\'); DROP TABLE operators;--', role: 'viewer', password }],
    ['POST', '/operators', { username: 'eve', role: 'root', password }],
    ['POST', '/operators', { username: 'eve', role: 'viewer', password: 'short' }],
    ['POST', '/operators', { username: 'eve', role: 'viewer', password, provinces: ['99'] }],
    ['POST', '/operators', { username: 'eve', role: 'viewer', password, provinces: ['01\' OR 1=1'] }],
    ['POST', '/operators', { username: 'eve', role: 'viewer', password, provinces: [] }],
    ['POST', '/operators', { username: 'eve', role: 'viewer', password, isAdmin: true }],
    ['PATCH', '/operators/vera', {}],
    ['PATCH', '/operators/..%2F..%2Fetc%2Fpasswd', { role: 'viewer' }],
    ['PATCH', '/operators/%3Cimg%20src%3Dx%3E', { role: 'viewer' }],
    ['GET', '/audit?operator=%22%3B%20DROP', undefined],
    ['GET', '/audit?action=%3Cscript%3E', undefined],
    ['GET', '/audit?from=yesterday', undefined],
    ['GET', '/audit?limit=100000', undefined],
    ['GET', '/devices?q=' + 'x'.repeat(200), undefined],
    ['GET', '/devices?status=burning', undefined],
    ['GET', '/devices?limit=0', undefined],
    ['GET', '/devices?offset=-1', undefined],
  ] as const)('%s %s with hostile input → 4xx with a code', async (method, path, body) => {
    const res = await call(method, path, 'root', body);
    expect(res.statusCode).toBeGreaterThanOrEqual(400);
    expect(res.statusCode).toBeLessThan(500);
    const error = res.json<{ code: string; message: string }>();
    expect(error.code).toMatch(/^E_(BAD_REQUEST|PROVINCE|NOT_FOUND)$/);
    expect(error.message.length).toBeGreaterThan(5);
  });

  it('records logins, failed logins and operator changes in the audit log', async () => {
    const res = await call('GET', '/audit?limit=500', 'root');
    expect(res.statusCode).toBe(200);
    const entries = res.json<{ entries: { operator: string; action: string; target?: string }[] }>().entries;
    const seen = entries.map((e) => `${e.operator} ${e.action}${e.target ? ` ${e.target}` : ''}`);
    expect(seen).toEqual(expect.arrayContaining(['root login', 'otto logout', 'root operator.create hanoi-desk', 'root operator.update otto', 'otto login.failed otto']));
    const logins = await call('GET', '/audit?action=login&operator=otto', 'root');
    expect(logins.json<{ entries: { action: string }[] }>().entries.every((e) => e.action.startsWith('login'))).toBe(true);
    expect(JSON.stringify(entries)).not.toMatch(/another-long-password|a-long-enough-password/);
  });

  it('limits login attempts per address with E_RATE_LIMITED', async () => {
    const codes: number[] = [];
    for (let i = 0; i < 12; i++) {
      const res = await api.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'vera', password: 'guess-number-' + i }, remoteAddress: '192.0.2.7' });
      codes.push(res.statusCode);
      if (res.statusCode === 429) expect(res.json()).toMatchObject({ code: 'E_RATE_LIMITED' });
    }
    expect(codes.slice(0, 10).every((c) => c === 401)).toBe(true);
    expect(codes.slice(10)).toEqual([429, 429]);
    // Another address is not held back.
    const other = await api.app.inject({ method: 'POST', url: '/api/v1/auth/login', payload: { username: 'vera', password }, remoteAddress: '192.0.2.8' });
    expect(other.statusCode).toBe(200);
  });

  it('sends security headers and no CORS headers unless origins are configured', async () => {
    const res = await api.app.inject({ url: '/api/v1/auth/me', headers: { authorization: `Bearer ${tokens.vera}`, origin: 'https://evil.example' } });
    expect(res.headers['content-security-policy']).toMatch(/default-src 'self'/);
    expect(res.headers['content-security-policy']).toMatch(/frame-ancestors 'none'/);
    expect(res.headers['x-content-type-options']).toBe('nosniff');
    expect(res.headers['x-frame-options']).toBe('SAMEORIGIN');
    expect(res.headers['referrer-policy']).toBe('no-referrer');
    expect(res.headers['access-control-allow-origin']).toBeUndefined();
  });

  it('publishes an OpenAPI document built from the route schemas, with interactive docs at /docs', async () => {
    const spec = await api.app.inject({ url: '/docs/json' });
    expect(spec.statusCode).toBe(200);
    const doc = spec.json<{ openapi: string; paths: Record<string, Record<string, { parameters?: { name: string }[] }>> }>();
    expect(doc.openapi).toMatch(/^3\./);
    for (const path of ['/api/v1/devices', '/api/v1/devices/{id}/history', '/api/v1/operators', '/api/v1/audit', '/api/v1/auth/login']) expect(Object.keys(doc.paths)).toContain(path);
    expect(doc.paths['/api/v1/devices']?.get?.parameters?.map((p) => p.name)).toEqual(expect.arrayContaining(['province', 'domain', 'status', 'q', 'limit', 'offset']));
    const ui = await api.app.inject({ url: '/docs/' });
    expect(ui.statusCode).toBe(200);
    expect(ui.body).toMatch(/swagger/i);
  });
});
