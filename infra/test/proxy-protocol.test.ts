import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { connect, createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeProxyV2, parseProxyHeader, PROXY_HEADER_MAX_BYTES, ProxyHeaderError, readProxyHeader, startTcpFront, type ProxyHeader, type TcpFront } from '../src/index.js';

/**
 * The PROXY protocol reader and writer over real sockets on loopback: what a load balancer sends
 * (v2 over IPv4 and IPv6, LOCAL, v1), the bytes after the header passed on unchanged, and hostile
 * or broken input refused with E_PROXY_HEADER. 127.0.0.2 is a second client address (Linux routes
 * all of 127/8 on loopback).
 */
const SIGNATURE = Buffer.from('\r\n\r\n\0\r\nQUIT\n', 'latin1');
/** An MQTT 3.1.1 CONNECT (client id "d"): what follows the header. */
const CONNECT = Buffer.from([0x10, 0x0d, 0x00, 0x04, 0x4d, 0x51, 0x54, 0x54, 0x04, 0x02, 0x00, 0x3c, 0x00, 0x01, 0x64]);

/** A v2 header by hand: version/command byte, family/transport byte, then the address block. */
const v2 = (versionCommand: number, familyTransport: number, block: Buffer, length = block.length) => {
  const fixed = Buffer.alloc(4);
  fixed[0] = versionCommand;
  fixed[1] = familyTransport;
  fixed.writeUInt16BE(length, 2);
  return Buffer.concat([SIGNATURE, fixed, block]);
};
const inetBlock = Buffer.from([203, 0, 113, 7, 10, 0, 0, 5, 0xc3, 0x50, 0x07, 0x5b]); // 203.0.113.7:50000 → 10.0.0.5:1883

interface Outcome {
  header?: ProxyHeader;
  error?: Error;
  /** What the socket delivered after the header, to its end. */
  rest: Buffer;
  /** The socket the server got, as it reports its peer. */
  peer: string | undefined;
}

const servers: Server[] = [];
const sockets: Socket[] = [];
const fronts: TcpFront[] = [];
afterEach(async () => {
  for (const socket of sockets.splice(0)) socket.destroy();
  for (const front of fronts.splice(0)) await front.close();
  await Promise.all(servers.splice(0).map((server) => new Promise((resolve) => server.close(resolve))));
});

/** A server that reads a PROXY header off each connection, then the rest to the end. */
async function reader(timeoutMs = 2_000): Promise<{ port: number; next: () => Promise<Outcome> }> {
  const outcomes: Promise<Outcome>[] = [];
  let arrived: () => void = () => undefined;
  const server = createServer((socket) => {
    sockets.push(socket);
    outcomes.push(
      readProxyHeader(socket, timeoutMs).then(
        async (header) => {
          const chunks: Buffer[] = [];
          socket.on('data', (chunk: Buffer) => chunks.push(chunk));
          if (!socket.readableEnded) await once(socket, 'end');
          return { header, rest: Buffer.concat(chunks), peer: socket.remoteAddress };
        },
        (error: Error) => {
          socket.destroy();
          return { error, rest: Buffer.alloc(0), peer: socket.remoteAddress };
        },
      ),
    );
    arrived();
  });
  servers.push(server);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  let taken = 0;
  const next = async () => {
    while (outcomes.length <= taken) await new Promise<void>((resolve) => (arrived = resolve));
    return outcomes[taken++] as Promise<Outcome>;
  };
  return { port: (server.address() as AddressInfo).port, next };
}

/** Connects, writes `parts` one by one (a pause between them: separate TCP segments), then ends unless told not to. */
async function send(port: number, parts: readonly Buffer[], options: { end?: boolean; localAddress?: string; gapMs?: number } = {}): Promise<Socket> {
  const socket = connect({ port, host: '127.0.0.1', ...(options.localAddress ? { localAddress: options.localAddress } : {}) });
  sockets.push(socket);
  socket.setNoDelay(true);
  socket.on('error', () => undefined);
  await once(socket, 'connect');
  for (const part of parts) {
    socket.write(part);
    if (parts.length > 1) await sleep(options.gapMs ?? 2);
  }
  if (options.end ?? true) socket.end();
  return socket;
}

const bytewise = (data: Buffer) => [...data].map((byte) => Buffer.from([byte]));

describe('readProxyHeader: what a load balancer sends', () => {
  it('reads a v2 PROXY header over IPv4 and passes the MQTT bytes of the same segment on unchanged', async () => {
    const { port, next } = await reader();
    await send(port, [Buffer.concat([v2(0x21, 0x11, inetBlock), CONNECT])]);
    const outcome = await next();
    expect(outcome.header).toEqual({ version: 2, length: 28, source: { address: '203.0.113.7', port: 50000 }, destination: { address: '10.0.0.5', port: 1883 } });
    expect(outcome.rest).toEqual(CONNECT);
  });

  it('reads a v2 header over IPv6 (addresses in the form Node gives sockets), TLVs after the addresses skipped', async () => {
    const { port, next } = await reader();
    const source = Buffer.from('20010db8000000000000000000000001', 'hex');
    const destination = Buffer.from('00000000000000000000ffff0a000005', 'hex');
    const tlv = Buffer.from([0x05, 0x00, 0x03, 0x61, 0x62, 0x63]); // PP2_TYPE_UNIQUE_ID "abc"
    const block = Buffer.concat([source, destination, Buffer.from([0x1f, 0x90, 0x07, 0x5b]), tlv]);
    await send(port, [Buffer.concat([v2(0x21, 0x21, block), CONNECT])]);
    const outcome = await next();
    expect(outcome.header).toEqual({ version: 2, length: 16 + 36 + 6, source: { address: '2001:db8::1', port: 8080 }, destination: { address: '::ffff:10.0.0.5', port: 1883 } });
    expect(outcome.rest).toEqual(CONNECT);
  });

  it('takes a LOCAL header (the balancer\'s own health check) as the connection\'s own address, whatever its address block', async () => {
    const { port, next } = await reader();
    await send(port, [Buffer.concat([v2(0x20, 0x00, Buffer.alloc(0)), CONNECT])]);
    expect(await next()).toMatchObject({ header: { version: 2, length: 16 }, rest: CONNECT, peer: '127.0.0.1' });
    await send(port, [v2(0x20, 0x31, Buffer.alloc(216))]); // LOCAL with an AF_UNIX block: skipped, not refused
    expect((await next()).header).toEqual({ version: 2, length: 232 });
  });

  it('takes a PROXY header of family AF_UNSPEC as the connection\'s own address [spec 2.2]', async () => {
    const { port, next } = await reader();
    await send(port, [v2(0x21, 0x00, Buffer.alloc(0))]);
    expect((await next()).header).toEqual({ version: 2, length: 16 });
  });

  it('reads v1 text headers: TCP4, TCP6 and UNKNOWN', async () => {
    const { port, next } = await reader();
    await send(port, [Buffer.concat([Buffer.from('PROXY TCP4 198.51.100.22 10.0.0.5 35646 1883\r\n'), CONNECT])]);
    expect(await next()).toMatchObject({ header: { version: 1, length: 46, source: { address: '198.51.100.22', port: 35646 }, destination: { address: '10.0.0.5', port: 1883 } }, rest: CONNECT });
    await send(port, [Buffer.from('PROXY TCP6 2001:DB8:0:0:0:0:0:7 ::1 4000 1883\r\n')]);
    expect((await next()).header?.source).toEqual({ address: '2001:db8::7', port: 4000 });
    await send(port, [Buffer.from('PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n')]);
    expect((await next()).header).toEqual({ version: 1, length: 59 });
  });

  it('reads a header delivered a byte at a time, and what follows arrives complete and in order', async () => {
    const { port, next } = await reader();
    await send(port, [...bytewise(v2(0x21, 0x11, inetBlock)), ...bytewise(CONNECT)], { gapMs: 1 });
    expect(await next()).toMatchObject({ header: { source: { address: '203.0.113.7', port: 50000 } }, rest: CONNECT });
    await send(port, bytewise(Buffer.from('PROXY TCP4 198.51.100.22 10.0.0.5 35646 1883\r\n')), { gapMs: 1 });
    expect((await next()).header?.source).toEqual({ address: '198.51.100.22', port: 35646 });
  });

  it('leaves the socket a normal stream after the header: 4 MB behind it arrive intact, through backpressure', async () => {
    const { port, next } = await reader();
    const payload = Buffer.alloc(4 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4) payload.writeUInt32LE(i * 2654435761 >>> 0, i);
    const client = await send(port, [v2(0x21, 0x11, inetBlock)], { end: false });
    client.end(payload);
    const outcome = await next();
    const digest = (data: Buffer) => createHash('sha256').update(data).digest('hex');
    expect(outcome.rest.length).toBe(payload.length);
    expect(digest(outcome.rest)).toBe(digest(payload));
  });

  it('resolves undefined for a connection that closes without a byte (a TCP health check)', async () => {
    const { port, next } = await reader();
    await send(port, []);
    const outcome = await next();
    expect(outcome.header).toBeUndefined();
    expect(outcome.error).toBeUndefined();
  });
});

describe('readProxyHeader: hostile and broken input is refused with E_PROXY_HEADER', () => {
  const refusal = async (parts: readonly Buffer[], options: { end?: boolean; timeoutMs?: number } = {}) => {
    const { port, next } = await reader(options.timeoutMs ?? 2_000);
    const started = Date.now();
    await send(port, parts, options);
    const outcome = await next();
    expect(outcome.error).toBeInstanceOf(ProxyHeaderError);
    expect((outcome.error as ProxyHeaderError).code).toBe('E_PROXY_HEADER');
    return { message: outcome.error?.message, elapsedMs: Date.now() - started };
  };

  it('an MQTT client connecting directly: refused at its first byte, not after the timeout', async () => {
    const { message, elapsedMs } = await refusal([CONNECT], { end: false, timeoutMs: 10_000 });
    expect(message).toBe('the connection did not start with a PROXY protocol header');
    expect(elapsedMs).toBeLessThan(5_000);
  });

  it('a wrong signature, a wrong version, an undefined command', async () => {
    const wrongSignature = Buffer.from(SIGNATURE);
    wrongSignature[11] = 0x0d;
    expect((await refusal([Buffer.concat([wrongSignature, Buffer.alloc(20)])], { end: false })).message).toBe('the connection did not start with a PROXY protocol header');
    expect((await refusal([v2(0x11, 0x11, inetBlock)], { end: false })).message).toMatch(/version 1 after the v2 signature/);
    expect((await refusal([v2(0x22, 0x11, inetBlock)], { end: false })).message).toMatch(/command 2 is not defined/);
    expect((await refusal([Buffer.from('PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n')], { end: false })).message).toMatch(/"TCP5" is not TCP4, TCP6 or UNKNOWN/);
  });

  it('an oversized length, refused from the fixed header without waiting for the body', async () => {
    const { message } = await refusal([v2(0x21, 0x11, inetBlock, 0xffff)], { end: false });
    expect(message).toBe(`the PROXY v2 header announces ${16 + 0xffff} bytes, over the limit of ${PROXY_HEADER_MAX_BYTES}`);
  });

  it('unsupported families and transports: AF_UNIX, UDP, undefined values', async () => {
    expect((await refusal([v2(0x21, 0x31, Buffer.alloc(216))], { end: false })).message).toMatch(/family AF_UNIX is not supported/);
    expect((await refusal([v2(0x21, 0x12, inetBlock)], { end: false })).message).toMatch(/transport DGRAM \(UDP\) is not supported/);
    expect((await refusal([v2(0x21, 0x41, inetBlock)], { end: false })).message).toMatch(/family 4 is not supported/);
    expect((await refusal([v2(0x21, 0x13, inetBlock)], { end: false })).message).toMatch(/transport 3 is not supported/);
  });

  it('an address block too short for its family', async () => {
    expect((await refusal([v2(0x21, 0x11, inetBlock.subarray(0, 8))], { end: false })).message).toMatch(/24 bytes, too short for its IPv4 addresses/);
    expect((await refusal([v2(0x21, 0x21, inetBlock)], { end: false })).message).toMatch(/28 bytes, too short for its IPv6 addresses/);
  });

  it('malformed v1 lines, and one with no CRLF within 107 bytes', async () => {
    for (const line of ['PROXY TCP4 1.2.3.4 5.6.7.8 1 65536\r\n', 'PROXY TCP4 ::1 5.6.7.8 1 2\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n', 'PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n', 'PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n', 'PROXY TCP4 1.2.3.4\r\n']) {
      expect((await refusal([Buffer.from(line)], { end: false })).message, line).toMatch(/malformed PROXY v1 header/);
    }
    expect((await refusal([Buffer.from(`PROXY UNKNOWN ${'x'.repeat(200)}`)], { end: false })).message).toBe('the PROXY v1 header has no CRLF within 107 bytes');
  });

  it('a truncated header: the peer closes inside it', async () => {
    expect((await refusal([v2(0x21, 0x11, inetBlock).subarray(0, 20)])).message).toBe('the connection closed after 20 bytes, inside its PROXY protocol header');
    expect((await refusal([SIGNATURE.subarray(0, 5)])).message).toBe('the connection closed after 5 bytes, inside its PROXY protocol header');
  });

  it('a peer that stops mid-header is cut off at the timeout (a slow or hostile peer holds no socket)', async () => {
    const { message, elapsedMs } = await refusal([v2(0x21, 0x11, inetBlock).subarray(0, 20)], { end: false, timeoutMs: 300 });
    expect(message).toBe('no complete PROXY protocol header within 300 ms (20 bytes received)');
    expect(elapsedMs).toBeGreaterThanOrEqual(250);
  });

  it('a peer that sends nothing at all is cut off at the timeout too', async () => {
    const { message } = await refusal([], { end: false, timeoutMs: 200 });
    expect(message).toBe('no complete PROXY protocol header within 200 ms (0 bytes received)');
  });
});

describe('parseProxyHeader and encodeProxyV2', () => {
  it('waits for more on every prefix of a valid header, and finds the header in the whole', () => {
    for (const header of [v2(0x21, 0x11, inetBlock), encodeProxyV2({ address: '2001:db8::1', port: 1 }, { address: '2001:db8::2', port: 2 }), Buffer.from('PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n')]) {
      for (let n = 0; n < header.length; n++) expect(parseProxyHeader(header.subarray(0, n)), `${n} bytes`).toBeUndefined();
      expect(parseProxyHeader(Buffer.concat([header, CONNECT]))?.length).toBe(header.length);
    }
  });

  it('encodes what it parses: IPv4, IPv6 (compressed, with an IPv4 tail, with a zone), IPv4-mapped sent as IPv4, mixed families as IPv6', () => {
    const roundTrip = (source: string, destination: string) => parseProxyHeader(encodeProxyV2({ address: source, port: 40001 }, { address: destination, port: 1883 }));
    expect(roundTrip('127.0.0.2', '127.0.0.1')).toEqual({ version: 2, length: 28, source: { address: '127.0.0.2', port: 40001 }, destination: { address: '127.0.0.1', port: 1883 } });
    expect(roundTrip('2001:db8:0:0:1::7', 'fe80::1%eth0')).toMatchObject({ length: 52, source: { address: '2001:db8::1:0:0:7' }, destination: { address: 'fe80::1' } });
    expect(roundTrip('::ffff:192.0.2.1', '::ffff:10.0.0.5')).toMatchObject({ length: 28, source: { address: '192.0.2.1' }, destination: { address: '10.0.0.5' } });
    expect(roundTrip('192.0.2.1', '::1')).toMatchObject({ length: 52, source: { address: '::ffff:192.0.2.1' }, destination: { address: '::1' } });
    expect(roundTrip('::', '1::')).toMatchObject({ source: { address: '::' }, destination: { address: '1::' } });
  });
});

describe("startTcpFront({ proxyProtocol: 'v2' })", () => {
  it('tells the backend each client\'s own address and port, then forwards its bytes both ways', async () => {
    const { port, next } = await reader();
    const front = await startTcpFront({ backends: [{ host: '127.0.0.1', port }], proxyProtocol: 'v2' });
    fronts.push(front);
    for (const localAddress of ['127.0.0.1', '127.0.0.2']) {
      const client = await send(front.port, [CONNECT], { localAddress });
      const outcome = await next();
      expect(outcome.header).toEqual({ version: 2, length: 28, source: { address: localAddress, port: client.localPort }, destination: { address: '127.0.0.1', port: front.port } });
      expect(outcome.rest).toEqual(CONNECT);
      expect(outcome.peer).toBe('127.0.0.1'); // the socket itself only knows the front
    }
  });

  it('sends no header without the option (unchanged behaviour)', async () => {
    const { port, next } = await reader();
    const front = await startTcpFront({ backends: [{ host: '127.0.0.1', port }] });
    fronts.push(front);
    await send(front.port, [CONNECT]);
    expect((await next()).error?.message).toBe('the connection did not start with a PROXY protocol header');
  });
});
