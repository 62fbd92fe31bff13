import mqtt, { type MqttClient } from 'mqtt';

/**
 * Connects an MQTT 3.1.1 client (5 s connect timeout) and resolves once CONNACK is in; it rejects
 * on the first error. The client goes into `clients`, for the test file's afterAll to end.
 */
export function connectTracked(clients: MqttClient[], url: string, options: mqtt.IClientOptions): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const client = mqtt.connect(url, { protocolVersion: 4, connectTimeout: 5_000, ...options });
    clients.push(client);
    client.once('connect', () => resolve(client));
    client.once('error', reject);
  });
}
