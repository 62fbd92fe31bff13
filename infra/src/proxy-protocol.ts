import { isIPv4, isIPv6, SocketAddress, type Socket } from 'node:net';

/**
 * The PROXY protocol (https://www.haproxy.org/download/3.0/doc/proxy-protocol.txt): a TCP load
 * balancer puts a header before the client's bytes saying which address the client connected
 * from, so the server behind it sees the device rather than the balancer. The TCP front
 * (tcp-front.ts) writes version 2; the broker reads version 2 and version 1 (HAProxy's
 * `send-proxy-v2` and `send-proxy`, nginx's `proxy_protocol on`, cloud load balancers).
 */
export interface ProxyEndpoint {
  readonly address: string;
  readonly port: number;
}

export interface ProxyHeader {
  readonly version: 1 | 2;
  /** Bytes the header takes at the start of the stream. */
  readonly length: number;
  /**
   * The client, and the address it connected to. Absent for a LOCAL header (the balancer's own
   * connection, e.g. a health check) and for UNKNOWN / AF_UNSPEC: the socket's own addresses stand.
   */
  readonly source?: ProxyEndpoint;
  readonly destination?: ProxyEndpoint;
}

/** A connection that did not start with a valid PROXY header (or not in time). */
export class ProxyHeaderError extends Error {
  readonly code = 'E_PROXY_HEADER';
  constructor(message: string) {
    super(message);
    this.name = 'ProxyHeaderError';
  }
}

/**
 * Longest header accepted. v1 is at most 107 bytes and v2 without TLVs 232 (spec 2.1, 2.2); the
 * TLVs balancers add (AWS's endpoint id, HAProxy's unique id and TLS details) fit with room.
 */
export const PROXY_HEADER_MAX_BYTES = 4_096;

const V2_SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');
const V2_FIXED_BYTES = 16;
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V1_MAX_BYTES = 107;
// v2: byte 12 holds the version (high nibble) and command; byte 13 the address family and transport.
const LOCAL = 0x0;
const PROXY = 0x1;
const AF_UNSPEC = 0x0;
const AF_INET = 0x1;
const AF_INET6 = 0x2;
const AF_UNIX = 0x3;
const STREAM = 0x1;
const DGRAM = 0x2;

/**
 * Parses the PROXY header at the start of `data`: the header once complete, undefined while more
 * bytes are needed. Throws ProxyHeaderError as soon as the bytes cannot be one, so a client
 * speaking MQTT directly is told at its first byte rather than after a timeout.
 */
export function parseProxyHeader(data: Buffer): ProxyHeader | undefined {
  if (startsLike(data, V2_SIGNATURE)) return data.length < V2_FIXED_BYTES ? undefined : parseV2(data);
  if (startsLike(data, V1_PREFIX)) return parseV1(data);
  throw new ProxyHeaderError('the connection did not start with a PROXY protocol header');
}

/** Whether `data` and `prefix` agree on the bytes both have. */
function startsLike(data: Buffer, prefix: Buffer): boolean {
  const n = Math.min(data.length, prefix.length);
  return data.compare(prefix, 0, n, 0, n) === 0;
}

function parseV2(data: Buffer): ProxyHeader | undefined {
  const versionCommand = data[12] as number;
  const familyTransport = data[13] as number;
  const version = versionCommand >> 4;
  const command = versionCommand & 0x0f;
  const family = familyTransport >> 4;
  const transport = familyTransport & 0x0f;
  const length = V2_FIXED_BYTES + data.readUInt16BE(14);
  if (version !== 2) throw new ProxyHeaderError(`PROXY protocol version ${version} after the v2 signature: only 2 is defined`);
  if (command !== LOCAL && command !== PROXY) throw new ProxyHeaderError(`PROXY v2 command ${command} is not defined (0 LOCAL, 1 PROXY)`);
  if (length > PROXY_HEADER_MAX_BYTES) throw new ProxyHeaderError(`the PROXY v2 header announces ${length} bytes, over the limit of ${PROXY_HEADER_MAX_BYTES}`);
  // A LOCAL header's address block is skipped whatever it holds [spec 2.2].
  const forwarded = command === PROXY && family !== AF_UNSPEC;
  if (forwarded && family !== AF_INET && family !== AF_INET6) throw new ProxyHeaderError(`PROXY v2 address family ${family === AF_UNIX ? 'AF_UNIX' : family} is not supported: only TCP over IPv4 or IPv6`);
  if (forwarded && transport !== STREAM) throw new ProxyHeaderError(`PROXY v2 transport ${transport === DGRAM ? 'DGRAM (UDP)' : transport} is not supported: only STREAM (TCP)`);
  if (data.length < length) return undefined;
  if (!forwarded) return { version: 2, length };

  const size = family === AF_INET ? 4 : 16;
  if (length < V2_FIXED_BYTES + 2 * size + 4) throw new ProxyHeaderError(`the PROXY v2 header is ${length} bytes, too short for its ${size === 4 ? 'IPv4' : 'IPv6'} addresses`);
  const at = V2_FIXED_BYTES;
  const address = (offset: number) => (size === 4 ? data.subarray(offset, offset + 4).join('.') : ipv6Text(data, offset));
  return {
    version: 2,
    length,
    source: { address: address(at), port: data.readUInt16BE(at + 2 * size) },
    destination: { address: address(at + size), port: data.readUInt16BE(at + 2 * size + 2) },
  };
}

/** `PROXY TCP4|TCP6 <source> <destination> <source port> <destination port>\r\n`, or `PROXY UNKNOWN …\r\n`. */
function parseV1(data: Buffer): ProxyHeader | undefined {
  const end = data.indexOf('\r\n', 0, 'latin1');
  if (end < 0 || end + 2 > V1_MAX_BYTES) {
    if (data.length < V1_MAX_BYTES) return undefined;
    throw new ProxyHeaderError(`the PROXY v1 header has no CRLF within ${V1_MAX_BYTES} bytes`);
  }
  const length = end + 2;
  const [, protocol, source, destination, sourcePort, destinationPort, ...extra] = data.toString('latin1', 0, end).split(' ');
  if (protocol === 'UNKNOWN') return { version: 1, length };
  const isIp = protocol === 'TCP4' ? isIPv4 : protocol === 'TCP6' ? isIPv6 : undefined;
  if (!isIp) throw new ProxyHeaderError(`PROXY v1 protocol "${clip(protocol)}" is not TCP4, TCP6 or UNKNOWN`);
  if (extra.length > 0 || !isIp(source ?? '') || !isIp(destination ?? '') || !isPort(sourcePort) || !isPort(destinationPort)) {
    throw new ProxyHeaderError(`malformed PROXY v1 header "${clip(data.toString('latin1', 0, end))}"`);
  }
  const family = protocol === 'TCP4' ? 'ipv4' : 'ipv6';
  const endpoint = (address: string, port: string) => ({ address: new SocketAddress({ address, family }).address, port: Number(port) });
  return { version: 1, length, source: endpoint(source as string, sourcePort as string), destination: endpoint(destination as string, destinationPort as string) };
}

const isPort = (text: string | undefined) => text !== undefined && /^(0|[1-9]\d{0,4})$/.test(text) && Number(text) <= 65_535;
const clip = (text: string | undefined) => JSON.stringify(text ?? '').slice(1, -1).slice(0, 60);

/** The 16 bytes at `offset` in the form Node gives socket addresses (`2001:db8::1`, `::ffff:10.0.0.1`). */
function ipv6Text(data: Buffer, offset: number): string {
  const groups = Array.from({ length: 8 }, (_, i) => data.readUInt16BE(offset + 2 * i).toString(16));
  return new SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

/**
 * A PROXY v2 header for a TCP connection from `source` to `destination`. IPv4-mapped IPv6
 * addresses (a dual-stack listener's view of an IPv4 client) are sent as IPv4; when the two
 * endpoints still differ in family, both go as IPv6.
 */
export function encodeProxyV2(source: ProxyEndpoint, destination: ProxyEndpoint): Buffer {
  const [from, to] = [unmapped(source.address), unmapped(destination.address)];
  const inet = isIPv4(from) && isIPv4(to);
  const size = inet ? 4 : 16;
  const header = Buffer.alloc(V2_FIXED_BYTES + 2 * size + 4);
  V2_SIGNATURE.copy(header);
  header[12] = 0x20 | PROXY;
  header[13] = ((inet ? AF_INET : AF_INET6) << 4) | STREAM;
  header.writeUInt16BE(2 * size + 4, 14);
  (inet ? ipv4Bytes(from) : ipv6Bytes(from)).copy(header, V2_FIXED_BYTES);
  (inet ? ipv4Bytes(to) : ipv6Bytes(to)).copy(header, V2_FIXED_BYTES + size);
  header.writeUInt16BE(source.port, V2_FIXED_BYTES + 2 * size);
  header.writeUInt16BE(destination.port, V2_FIXED_BYTES + 2 * size + 2);
  return header;
}

const unmapped = (address: string) => (/^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(address) ? address.slice(7) : address);
const ipv4Bytes = (address: string) => Buffer.from(address.split('.').map(Number));

/** 16 bytes of an IPv6 address (or of an IPv4 one, mapped: `::ffff:a.b.c.d`). */
function ipv6Bytes(address: string): Buffer {
  if (isIPv4(address)) return ipv6Bytes(`::ffff:${address}`);
  let text = address.split('%')[0] as string; // no zone id on the wire
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const [a, b, c, d] = dotted.slice(1).map(Number) as [number, number, number, number];
    text = `${text.slice(0, dotted.index)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const groups = (part: string | undefined) => (part ? part.split(':') : []);
  const filled = tail === undefined ? groups(head) : [...groups(head), ...Array<string>(8 - groups(head).length - groups(tail).length).fill('0'), ...groups(tail)];
  const bytes = Buffer.alloc(16);
  filled.forEach((group, i) => bytes.writeUInt16BE(parseInt(group, 16), 2 * i));
  return bytes;
}

/**
 * Reads the PROXY header off the start of a fresh socket and leaves whatever came after it (the
 * MQTT CONNECT, when the balancer sent both in one segment) unread on the socket, in order, for
 * the next reader. Resolves undefined when the peer closed before sending a byte (a TCP health
 * check); rejects with ProxyHeaderError on a bad header, a connection closed mid-header, or no
 * complete header within `timeoutMs`. On rejection the caller closes the socket.
 */
export function readProxyHeader(socket: Socket, timeoutMs: number): Promise<ProxyHeader | undefined> {
  return new Promise((resolve, reject) => {
    let received: Buffer = Buffer.alloc(0);
    const settle = (outcome: () => void) => {
      clearTimeout(timer);
      socket.off('readable', onReadable).off('end', onGone).off('close', onGone).off('error', onGone);
      outcome();
    };
    const timer = setTimeout(() => settle(() => reject(new ProxyHeaderError(`no complete PROXY protocol header within ${timeoutMs} ms (${received.length} bytes received)`))), timeoutMs);
    const onGone = () => {
      if (received.length === 0) settle(() => resolve(undefined));
      else settle(() => reject(new ProxyHeaderError(`the connection closed after ${received.length} bytes, inside its PROXY protocol header`)));
    };
    const onReadable = () => {
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
        received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
        let header: ProxyHeader | undefined;
        try {
          header = parseProxyHeader(received);
        } catch (err) {
          settle(() => reject(err instanceof Error ? err : new ProxyHeaderError(String(err))));
          return;
        }
        if (header) {
          const rest = received.subarray(header.length);
          settle(() => {
            if (rest.length > 0) socket.unshift(rest);
            resolve(header);
          });
          return;
        }
      }
    };
    socket.on('readable', onReadable).once('end', onGone).once('close', onGone).once('error', onGone);
  });
}
