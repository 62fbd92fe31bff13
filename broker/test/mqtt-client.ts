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

type SendPacket = (packet: { cmd: string; messageId?: number }, cb?: (err?: Error) => void, ...rest: unknown[]) => void;

/** The PUBACKs a client holds back (holdAcks). */
export interface HeldAcks {
  /** PUBACKs held now. */
  readonly count: number;
  /** Sends the oldest `count` held PUBACKs (all without). */
  release(count?: number): void;
  /** From now on PUBACKs go out as messages arrive (and the held ones at once). */
  stopHolding(): void;
}

/**
 * Holds back the PUBACKs mqtt.js sends for received QoS 1 messages, while it goes on reading: a
 * subscriber that is slow to store what it receives, as ingest waiting for InfluxDB (ingest's
 * LateAcks does the same).
 */
export function holdAcks(client: MqttClient): HeldAcks {
  const internals = client as unknown as { _sendPacket: SendPacket };
  const send = internals._sendPacket.bind(client);
  const held: number[] = [];
  let holding = true;
  internals._sendPacket = (packet, cb, ...rest) => {
    if (holding && packet.cmd === 'puback' && packet.messageId !== undefined) {
      held.push(packet.messageId);
      cb?.();
      return;
    }
    send(packet, cb, ...rest);
  };
  const release = (count = held.length) => {
    for (const messageId of held.splice(0, count)) send({ cmd: 'puback', messageId });
  };
  return {
    get count() {
      return held.length;
    },
    release,
    stopHolding() {
      holding = false;
      release();
    },
  };
}
