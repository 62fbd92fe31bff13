/**
 * A lean MQTT 3.1.1 device connection for the ingest bench's generators: CONNECT with the
 * device's login, PUBLISH at QoS 1, PUBACK, PINGREQ; nothing else. MQTT.js spends about 50 µs of
 * CPU per QoS 1 publish, which on this 2-core machine is CPU taken from the broker, ingest and
 * influxd being measured; this speaks the same protocol over the same TCP socket for a few µs, the
 * way a device's C client would. Packets are as in the MQTT 3.1.1 specification, section 3.
 */
import { connect as connectTcp, type Socket } from 'node:net';

export interface RawLoginOptions {
  readonly host: string;
  readonly port: number;
  readonly clientId: string;
  readonly username: string;
  readonly password: string;
  readonly keepaliveS: number;
  readonly timeoutMs: number;
}

type Done = (err?: Error) => void;

const PUBLISH_QOS1 = 0x32;
const CONNACK = 0x20;
const PUBACK = 0x40;
const PINGRESP = 0xd0;
const PINGREQ = Buffer.from([0xc0, 0x00]);

function utf8Field(text: string): Buffer {
  const bytes = Buffer.from(text, 'utf8');
  const field = Buffer.allocUnsafe(2 + bytes.length);
  field.writeUInt16BE(bytes.length, 0);
  bytes.copy(field, 2);
  return field;
}

function remainingLength(length: number): Buffer {
  const bytes: number[] = [];
  do {
    let byte = length % 128;
    length = Math.floor(length / 128);
    if (length > 0) byte |= 0x80;
    bytes.push(byte);
  } while (length > 0);
  return Buffer.from(bytes);
}

function connectPacket(options: RawLoginOptions): Buffer {
  // Protocol name "MQTT", level 4, flags: user name, password, clean session.
  const header = Buffer.from([0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0xc2, options.keepaliveS >> 8, options.keepaliveS & 0xff]);
  const body = Buffer.concat([header, utf8Field(options.clientId), utf8Field(options.username), utf8Field(options.password)]);
  return Buffer.concat([Buffer.from([0x10]), remainingLength(body.length), body]);
}

export class RawLink {
  inflight = 0;
  private readonly pending = new Array<Done | undefined>(65_536);
  private nextId = 0;
  private buffered: Buffer = Buffer.alloc(0);
  private closed = false;
  private readonly pinger: NodeJS.Timeout;
  /** Topic bytes with their length prefix, per topic (a device publishes on one topic). */
  private readonly topics = new Map<string, Buffer>();

  private constructor(private readonly socket: Socket, keepaliveS: number) {
    this.pinger = setInterval(() => socket.write(PINGREQ), Math.max(1, keepaliveS / 2) * 1000);
    this.pinger.unref();
    socket.on('data', (chunk: Buffer) => this.read(chunk));
    socket.on('close', () => this.fail(new Error('connection closed')));
    socket.on('error', () => undefined); // followed by 'close'
  }

  /** Logs in; rejects with the CONNACK return code, a socket error or the timeout. */
  static open(options: RawLoginOptions): Promise<RawLink> {
    return new Promise((resolve, reject) => {
      const socket = connectTcp({ host: options.host, port: options.port, noDelay: true });
      const timer = setTimeout(() => {
        socket.destroy();
        reject(new Error(`no CONNACK within ${options.timeoutMs} ms`));
      }, options.timeoutMs);
      let received = Buffer.alloc(0);
      const onData = (chunk: Buffer) => {
        received = Buffer.concat([received, chunk]);
        if (received.length < 4) return;
        clearTimeout(timer);
        socket.off('data', onData);
        socket.off('error', onError);
        if (received[0] !== CONNACK || received[3] !== 0) {
          socket.destroy();
          reject(new Error(`login refused: CONNACK return code ${received[3]}`));
          return;
        }
        const link = new RawLink(socket, options.keepaliveS);
        if (received.length > 4) link.read(received.subarray(4));
        resolve(link);
      };
      const onError = (err: Error) => {
        clearTimeout(timer);
        reject(err);
      };
      socket.on('data', onData);
      socket.once('error', onError);
      socket.once('connect', () => socket.write(connectPacket(options)));
    });
  }

  /** PUBLISH at QoS 1; `done` runs on its PUBACK, or with an error if the connection ends first. */
  publish(topic: string, payload: string, done: Done): void {
    if (this.closed) {
      done(new Error('connection closed'));
      return;
    }
    let topicField = this.topics.get(topic);
    if (!topicField) this.topics.set(topic, (topicField = utf8Field(topic)));
    do this.nextId = (this.nextId % 65_535) + 1;
    while (this.pending[this.nextId] !== undefined);
    const id = this.nextId;
    const payloadLength = Buffer.byteLength(payload);
    const length = topicField.length + 2 + payloadLength;
    const lengthBytes = remainingLength(length);
    const packet = Buffer.allocUnsafe(1 + lengthBytes.length + length);
    let at = 0;
    packet[at++] = PUBLISH_QOS1;
    at += lengthBytes.copy(packet, at);
    at += topicField.copy(packet, at);
    packet[at++] = id >> 8;
    packet[at++] = id & 0xff;
    packet.write(payload, at, 'utf8');
    this.pending[id] = done;
    this.inflight++;
    this.socket.write(packet);
  }

  end(): void {
    this.socket.end();
    this.fail(new Error('connection closed'));
  }

  private read(chunk: Buffer): void {
    let data = this.buffered.length > 0 ? Buffer.concat([this.buffered, chunk]) : chunk;
    let at = 0;
    // The broker sends this client PUBACK (4 bytes) and PINGRESP (2 bytes) only.
    while (at + 2 <= data.length) {
      const type = data[at] as number;
      const length = data[at + 1] as number;
      if (at + 2 + length > data.length) break;
      if (type === PUBACK && length === 2) {
        const id = ((data[at + 2] as number) << 8) | (data[at + 3] as number);
        const done = this.pending[id];
        if (done) {
          this.pending[id] = undefined;
          this.inflight--;
          done();
        }
      } else if (type !== PINGRESP) {
        this.socket.destroy(new Error(`unexpected MQTT packet type 0x${type.toString(16)}`));
        return;
      }
      at += 2 + length;
    }
    data = data.subarray(at);
    this.buffered = data.length > 0 ? Buffer.from(data) : Buffer.alloc(0);
  }

  private fail(err: Error): void {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.pinger);
    for (let id = 1; id < this.pending.length; id++) {
      const done = this.pending[id];
      if (done) {
        this.pending[id] = undefined;
        this.inflight--;
        done(err);
      }
    }
  }
}
