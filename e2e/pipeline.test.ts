import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import { io, type Socket } from 'socket.io-client';
import { deviceTopic, SOCKET_IO_PATH, type ClientToServerEvents, type DeviceAddress, type HistoryResponse, type LiveFrame, type RejectedList, type ServerToClientEvents, type SubscribeAck } from '@citypulse/contracts';
import { startStack, waitFor, type Stack } from './stack.js';

const run = promisify(execFile);

/**
 * End to end with real parts: InfluxDB, broker, ingest and api on free ports; a device publishes
 * over real MQTT with real credentials, and the reading must appear in InfluxDB, in the REST
 * history and in a socket.io live frame.
 */
describe('pipeline: device → broker → ingest → InfluxDB → api', () => {
  let stack: Stack;
  let token: string;
  let socket: Socket<ServerToClientEvents, ClientToServerEvents>;
  const frames: LiveFrame[] = [];
  const clients: MqttClient[] = [];
  const alpha: DeviceAddress = { province: '01', domain: 'environment', deviceId: 'e2e-env-alpha' };
  const beta: DeviceAddress = { province: '01', domain: 'environment', deviceId: 'e2e-env-beta' };
  const secrets = new Map<string, string>();

  const connectDevice = async (address: DeviceAddress): Promise<MqttClient> => {
    const client = await mqtt.connectAsync(stack.mqttUrl, {
      clientId: address.deviceId,
      username: address.deviceId,
      password: secrets.get(address.deviceId),
      protocolVersion: 4,
      reconnectPeriod: 0,
      will: { topic: deviceTopic(address, 'status'), payload: Buffer.from('{"state":"offline"}'), qos: 1, retain: true },
    });
    clients.push(client);
    return client;
  };

  const countRows = async (deviceId: string): Promise<number> => {
    const [series = []] = await stack.influxClient.query('SELECT count("seq") FROM "environment" WHERE "device" = $device', { device: deviceId });
    const value = series[0]?.values[0]?.[1];
    return typeof value === 'number' ? value : 0;
  };

  beforeAll(async () => {
    stack = await startStack();
    for (const address of [alpha, beta]) {
      const { secret } = await stack.provisionDevice({ id: address.deviceId, province: address.province, domain: address.domain });
      secrets.set(address.deviceId, secret);
    }
    const login = await fetch(`${stack.apiUrl}/api/v1/auth/login`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(stack.operator),
    });
    expect(login.status).toBe(200);
    token = ((await login.json()) as { token: string }).token;
    socket = io(stack.apiUrl, { path: SOCKET_IO_PATH, auth: { token }, transports: ['websocket'] });
    socket.on('frame', (frame) => frames.push(frame));
    socket.on('snapshot', (frame) => frames.push(frame));
    const ack = (await socket.timeout(10_000).emitWithAck('subscribe', { provinces: ['01'] })) as SubscribeAck;
    expect(ack.ok).toBe(true);
  });

  afterAll(async () => {
    socket?.close();
    for (const client of clients) client.end(true);
    await stack?.stop();
  });

  it('stores a reading and shows it in InfluxDB, the REST history and a live frame', async () => {
    const device = await connectDevice(alpha);
    const ts = Date.now();
    await device.publishAsync(deviceTopic(alpha, 'telemetry'), JSON.stringify({ ts, seq: 1, pm25: 37.5, pm10: 61.2, no2: 40, temperature: 24.5 }), { qos: 1 });

    // InfluxDB, queried directly.
    const row = await waitFor(async () => {
      const [series = []] = await stack.influxClient.query('SELECT "pm25", "vnAqi", "province", "kind" FROM "environment" WHERE "device" = $device', { device: alpha.deviceId });
      return series[0]?.values[0];
    }, 15_000, 'reading never reached InfluxDB');
    expect(row[0]).toBe(ts);
    expect(row[1]).toBe(37.5);
    expect(row[2]).toBe(75); // VN_AQI indicative: PM2.5 37.5 µg/m³ → 50 + (37.5 − 25) × 50/25 = 75
    expect(row[3]).toBe('01');

    // REST history over a range, aggregated into windows.
    const history = await waitFor(async () => {
      const res = await fetch(`${stack.apiUrl}/api/v1/devices/${alpha.deviceId}/history?from=${ts - 3_600_000}&to=${ts + 60_000}&fields=pm25,vnAqi`, { headers: { authorization: `Bearer ${token}` } });
      const body = (await res.json()) as HistoryResponse;
      return body.points.length > 0 ? body : undefined;
    }, 10_000, 'history never returned the reading');
    expect(history.windowMs).toBeGreaterThan(0);
    expect(history.points.length).toBeLessThanOrEqual(500);
    expect(history.points.at(-1)?.values.pm25).toBe(37.5);

    // socket.io live frame.
    const live = await waitFor(() => frames.flatMap((f) => f.readings).find((r) => r.deviceId === alpha.deviceId && r.seq === 1), 10_000, 'no live frame carried the reading');
    expect(live.values.pm25).toBe(37.5);
    expect(live.derived.vnAqi).toBe(75);
    expect(live.state.color).toBe('rgb(255,255,0)'); // VN_AQI 51–100: Trung bình, yellow
  });

  it('refuses a publish to another device\'s topic: nothing stored or forwarded', async () => {
    const observer = await mqtt.connectAsync(stack.mqttUrl, { clientId: 'e2e-observer', username: 'tools', password: await stack.registry.upsertService('tools', 'tools'), protocolVersion: 4 });
    clients.push(observer);
    const seen: string[] = [];
    observer.on('message', (topic, payload) => seen.push(`${topic} ${payload.toString()}`));
    await observer.subscribeAsync('city/#', { qos: 1 });

    const deniedBefore = stack.broker.counters.aclPublishDenied;
    const intruder = await connectDevice(alpha);
    const closed = new Promise<void>((resolve) => intruder.once('close', () => resolve()));
    intruder.publish(deviceTopic(beta, 'telemetry'), JSON.stringify({ ts: Date.now(), seq: 99, pm25: 999 }), { qos: 1 });
    await closed; // MQTT 3.1.1 has no negative PUBACK: the broker closes the connection
    expect(stack.broker.counters.aclPublishDenied).toBe(deniedBefore + 1);

    // Beta's own valid reading goes through; the forged one never does.
    const honest = await connectDevice(beta);
    await honest.publishAsync(deviceTopic(beta, 'telemetry'), JSON.stringify({ ts: Date.now(), seq: 1, pm25: 12 }), { qos: 1 });
    await waitFor(async () => (await countRows(beta.deviceId)) === 1, 15_000, 'beta\'s own reading was not stored');
    await stack.ingest.flush();
    expect(await countRows(beta.deviceId)).toBe(1);
    const [series = []] = await stack.influxClient.query('SELECT "pm25" FROM "environment" WHERE "pm25" = 999');
    expect(series).toHaveLength(0);
    expect(seen.some((m) => m.includes('"seq":99'))).toBe(false);
    expect(seen.some((m) => m.includes(`${beta.deviceId}/telemetry`))).toBe(true);
  });

  it('rejects a malformed payload with its code and stores the valid message after it', async () => {
    const device = await connectDevice(beta);
    const before = { ...stack.ingest.metrics.rejected };
    const rowsBefore = await countRows(beta.deviceId);
    await device.publishAsync(deviceTopic(beta, 'telemetry'), '{"ts": "yesterday", "seq": 2, "pm25": 5}', { qos: 1 });
    await device.publishAsync(deviceTopic(beta, 'telemetry'), '{not json', { qos: 1 });
    await device.publishAsync(deviceTopic(beta, 'telemetry'), JSON.stringify({ ts: Date.now() + 3_600_000, seq: 3, pm25: 5 }), { qos: 1 });
    await device.publishAsync(deviceTopic(beta, 'telemetry'), JSON.stringify({ ts: Date.now(), seq: 4, pm25: 14.2 }), { qos: 1 });
    await waitFor(async () => (await countRows(beta.deviceId)) === rowsBefore + 1, 15_000, 'the valid message after the bad ones was not stored');
    const rejected = stack.ingest.metrics.rejected;
    expect((rejected.E_PAYLOAD_SCHEMA ?? 0) - (before.E_PAYLOAD_SCHEMA ?? 0)).toBe(1);
    expect((rejected.E_PAYLOAD_JSON ?? 0) - (before.E_PAYLOAD_JSON ?? 0)).toBe(1);
    expect((rejected.E_CLOCK_SKEW ?? 0) - (before.E_CLOCK_SKEW ?? 0)).toBe(1);

    // Visible per device through the API: the dead-letter records, newest first, counted by code.
    const res = await fetch(`${stack.apiUrl}/api/v1/devices/${beta.deviceId}/rejected`, { headers: { authorization: `Bearer ${token}` } });
    expect(res.status).toBe(200);
    const list = (await res.json()) as RejectedList;
    expect(list.counts).toEqual({ E_PAYLOAD_SCHEMA: 1, E_PAYLOAD_JSON: 1, E_CLOCK_SKEW: 1 });
    expect(list.total).toBe(3);
    expect(list.records.map((r) => r.code).sort()).toEqual(['E_CLOCK_SKEW', 'E_PAYLOAD_JSON', 'E_PAYLOAD_SCHEMA']);
    expect(list.records.every((r, i) => i === 0 || (list.records[i - 1]?.ts ?? 0) >= r.ts)).toBe(true);
    expect(list.records.find((r) => r.code === 'E_PAYLOAD_JSON')).toMatchObject({ topic: deviceTopic(beta, 'telemetry'), payload: '{not json', bytes: 9 });
    expect(list.records.find((r) => r.code === 'E_PAYLOAD_SCHEMA')?.reason).toMatch(/ts/);
    const onlyJson = (await (await fetch(`${stack.apiUrl}/api/v1/devices/${beta.deviceId}/rejected?code=E_PAYLOAD_JSON&limit=1`, { headers: { authorization: `Bearer ${token}` } })).json()) as RejectedList;
    expect(onlyJson).toMatchObject({ total: 1, counts: { E_PAYLOAD_JSON: 1 } });
    expect(onlyJson.records).toHaveLength(1);
  });

  it('refuses wrong credentials and anonymous clients', async () => {
    await expect(mqtt.connectAsync(stack.mqttUrl, { clientId: alpha.deviceId, username: alpha.deviceId, password: 'wrong', protocolVersion: 4, reconnectPeriod: 0 })).rejects.toThrow();
    await expect(mqtt.connectAsync(stack.mqttUrl, { clientId: 'anon', protocolVersion: 4, reconnectPeriod: 0 })).rejects.toThrow();
    expect(stack.broker.counters.authFailures).toBeGreaterThanOrEqual(2);
  });

  it('stores what the README\'s mosquitto_pub line sends', async () => {
    // The same command a field engineer runs; mosquitto-clients is installed by npm test.
    expect(existsSync('/usr/bin/mosquitto_pub'), 'mosquitto_pub missing: apt-get install mosquitto-clients').toBe(true);
    const port = new URL(stack.mqttUrl).port;
    const address: DeviceAddress = { province: '79', domain: 'environment', deviceId: 'e2e-mosquitto' };
    const { secret } = await stack.provisionDevice({ id: address.deviceId, province: '79', domain: 'environment' });
    const ts = Date.now();
    await run('mosquitto_pub', ['-h', '127.0.0.1', '-p', port, '-V', 'mqttv311', '-q', '1', '-i', address.deviceId, '-u', address.deviceId, '-P', secret,
      '-t', deviceTopic(address, 'telemetry'), '-m', JSON.stringify({ ts, seq: 1, pm25: 21.3, pm10: 40 })]);
    await waitFor(async () => (await countRows(address.deviceId)) === 1, 15_000, 'the mosquitto_pub reading was not stored');
  });
});
