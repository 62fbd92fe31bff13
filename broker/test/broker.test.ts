import { mkdtemp, rm } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildBroker, DeviceRegistry, listenMqttTcp, listenMqttWebSocket, type PlatformBroker } from '../src/index.js';

/** The broker over real MQTT on a loopback port. */
describe('broker', () => {
  let dir: string;
  let registry: DeviceRegistry;
  let broker: PlatformBroker;
  let server: Server;
  let url: string;
  let secret: string;
  let toolsSecret: string;
  const clients: MqttClient[] = [];
  const device = { id: 'hn-air-07', province: '01', domain: 'environment' as const, location: [105.8525, 21.0287] as const };
  const statusTopic = 'city/01/environment/hn-air-07/status';

  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'citypulse-broker-'));
    registry = await DeviceRegistry.open(dir, { watch: true });
    [{ secret }] = (await registry.upsertDevices([device])) as [{ id: string; secret: string }];
    toolsSecret = await registry.upsertService('tools', 'tools');
    broker = await buildBroker({ registry, logger: pino({ level: 'silent' }) });
    server = await listenMqttTcp(broker, 0, '127.0.0.1');
    url = `mqtt://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });

  afterAll(async () => {
    for (const c of clients) c.end(true);
    await broker.close();
    await new Promise((resolve) => server.close(resolve));
    registry.close();
    await rm(dir, { recursive: true, force: true });
  });

  const connect = async (options: mqtt.IClientOptions) => {
    const client = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, ...options });
    clients.push(client);
    return client;
  };

  it('publishes the last will as the retained offline status when a device drops', async () => {
    const dev = await connect({
      clientId: device.id,
      username: device.id,
      password: secret,
      will: { topic: statusTopic, payload: Buffer.from('{"state":"offline"}'), qos: 1, retain: true },
    });
    await dev.publishAsync(statusTopic, '{"state":"online"}', { qos: 1, retain: true });
    (dev.stream as unknown as { destroy(): void }).destroy(); // an ungraceful drop, as on a lost 4G link

    const observer = await connect({ clientId: 'tools-observer', username: 'tools', password: toolsSecret });
    const status = await new Promise<string>((resolve) => {
      observer.on('message', (topic, payload, packet) => {
        if (topic === statusTopic && packet.retain && payload.toString().includes('offline')) resolve(payload.toString());
      });
      const poll = setInterval(() => void observer.unsubscribeAsync(statusTopic).then(() => observer.subscribeAsync(statusTopic, { qos: 1 })), 100);
      void observer.subscribeAsync(statusTopic, { qos: 1 });
      observer.once('message', () => clearInterval(poll));
    });
    expect(JSON.parse(status)).toEqual({ state: 'offline' });
  });

  it('speaks MQTT over WebSocket with the same login and rights', async () => {
    const http = await listenMqttWebSocket(broker, 0, '127.0.0.1');
    try {
      const wsUrl = `ws://127.0.0.1:${(http.address() as AddressInfo).port}`;
      const observer = await mqtt.connectAsync(wsUrl, { clientId: 'tools-ws', username: 'tools', password: toolsSecret, protocolVersion: 4 });
      clients.push(observer);
      await observer.subscribeAsync('city/01/environment/+/telemetry', { qos: 1 });
      const received = new Promise<string>((resolve) => observer.once('message', (_topic, payload) => resolve(payload.toString())));
      const dev = await mqtt.connectAsync(wsUrl, { clientId: device.id, username: device.id, password: secret, protocolVersion: 4 });
      clients.push(dev);
      await dev.publishAsync('city/01/environment/hn-air-07/telemetry', '{"ts":1,"seq":1}', { qos: 1 });
      expect(await received).toBe('{"ts":1,"seq":1}');
      await expect(mqtt.connectAsync(wsUrl, { clientId: 'anon', protocolVersion: 4, reconnectPeriod: 0 })).rejects.toThrow();
      dev.end(true);
      observer.end(true);
    } finally {
      await new Promise((resolve) => http.close(resolve));
    }
  });

  it('refuses a client id that is not the device id', async () => {
    await expect(connect({ clientId: 'someone-else', username: device.id, password: secret })).rejects.toThrow(/Identifier rejected|client id/i);
  });

  it('negates a subscription outside the device\'s rights and keeps the connection', async () => {
    const dev = await connect({ clientId: device.id, username: device.id, password: secret });
    // SUBACK 0x80 for the filter; MQTT.js reports it as a failed subscribe.
    await expect(dev.subscribeAsync('city/#', { qos: 1 })).rejects.toThrow(/Subscribe error/);
    const own = await dev.subscribeAsync('city/01/environment/hn-air-07/commands', { qos: 1 });
    expect(own[0]?.qos).toBe(1);
    expect(dev.connected).toBe(true);
  });

  it('disconnects a device at once when it is disabled', async () => {
    const dev = await connect({ clientId: device.id, username: device.id, password: secret });
    const closed = new Promise<void>((resolve) => dev.once('close', () => resolve()));
    await registry.setEnabled(device.id, false);
    await closed;
    await expect(connect({ clientId: device.id, username: device.id, password: secret })).rejects.toThrow();
    await registry.setEnabled(device.id, true);
  });
});
