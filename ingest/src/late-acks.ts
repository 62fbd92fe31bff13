import type { IPublishPacket, MqttClient } from 'mqtt';

/** Identifies one received QoS 1 message on one connection of one client. */
export interface AckToken {
  readonly messageId: number;
  readonly connection: number;
  /** The client it came on: ingest's own session, or a removed worker's being drained (drain.ts). */
  readonly from: LateAcks;
}

const RELEASED = Symbol('released');
type PubackPacket = { cmd: 'puback'; messageId?: number; [RELEASED]?: true };
type SendPacket = (packet: { cmd: string }, cb?: (err?: Error) => void, ...rest: unknown[]) => void;

/**
 * PUBACK only once a message is stored. MQTT.js sends the PUBACK of a QoS 1 message as soon as
 * its 'message' handler returns, and takes incoming packets one at a time, so holding the handler
 * back (`customHandleAcks`, `handleMessage`) would let one message through per InfluxDB write.
 * Instead every message goes through at once and only its PUBACK waits: the one MQTT.js sends is
 * dropped here, and `ack()` sends it when the batch holding the message is written.
 *
 * A PUBACK for a connection that has since closed is never sent (MQTT.js would queue it for the
 * next connection, where the message id means another message): the broker redelivers the
 * message on the next connection of the persistent session, and writing it again overwrites the
 * same point. `mqtt` is pinned in the catalogue; test/late-acks.test.ts checks this against it.
 */
export class LateAcks {
  readonly #client: MqttClient;
  readonly #send: SendPacket;
  #connection = 0;
  #outstanding = 0;

  constructor(client: MqttClient) {
    this.#client = client;
    const internals = client as unknown as { _sendPacket: SendPacket };
    if (typeof internals._sendPacket !== 'function') throw new Error('this mqtt version has no _sendPacket: LateAcks needs updating');
    const send = internals._sendPacket.bind(client);
    this.#send = send;
    internals._sendPacket = (packet, cb, ...rest) => {
      if (packet.cmd === 'puback' && !(packet as PubackPacket)[RELEASED]) {
        cb?.();
        return;
      }
      send(packet, cb, ...rest);
    };
    client.on('close', () => {
      this.#connection++;
      this.#outstanding = 0;
    });
  }

  /** QoS 1 messages of the current connection not acknowledged yet. */
  get outstanding(): number {
    return this.#outstanding;
  }

  /** The token of a message just received (call from the 'message' handler). */
  token(packet: IPublishPacket): AckToken | undefined {
    if (packet.qos !== 1 || packet.messageId === undefined) return undefined;
    this.#outstanding++;
    return { messageId: packet.messageId, connection: this.#connection, from: this };
  }

  /** Sends the PUBACK; false when the message's connection is gone (the broker will redeliver it). */
  ack(token: AckToken): boolean {
    if (token.from !== this || token.connection !== this.#connection || !this.#client.connected) return false;
    const puback: PubackPacket = { cmd: 'puback', messageId: token.messageId, [RELEASED]: true };
    this.#send(puback);
    this.#outstanding--;
    return true;
  }
}
