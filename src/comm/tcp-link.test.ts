// A Link's frame parser fed by hand, without sockets: a stream of frames built with header() and
// random payloads, cut into chunks of every size (1 byte, less than a header, a header, odd
// sizes, the whole stream), each chunk's memory overwritten once it was fed (as the reused read
// buffer is), must come out frame for frame, byte for byte; a payload a receive waits for is
// copied or summed in, in pieces as it arrives, to the place the receive names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { operations } from './communicator.js';
import { transportSecurities } from './tcp-seal.js';
import { Link, Source, type Receive } from './tcp-link.js';
import { header, type Frame, Type } from './tcp-wire.js';

interface Sent { frame: Frame; payload: Buffer }

/** A deterministic generator (xorshift32) for payloads and chunk sizes. */
function generator(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    return x / 2 ** 32;
  };
}

function randomBytes(n: number, random: () => number): Buffer {
  const bytes = Buffer.alloc(n);
  for (let i = 0; i < n; i++) bytes[i] = Math.floor(random() * 256);
  return bytes;
}

const frameOf = (type: number, operation: number, part: number, seq: number, count: number, root: number, bytes: number): Frame => ({ type, operation, part, seq, count, root, bytes });
const wire = (sent: Sent[]) => Buffer.concat(sent.flatMap(({ frame: f, payload }) => [header(f.type, f.operation, f.part, f.seq, f.count, f.root, f.bytes), payload]));

/** A link whose frames (those no receive takes) are collected, and whose garbage fails the test. */
function linkCollecting(limit = 1 << 24): { link: Link; reader: Source; got: Sent[] } {
  const reader = new Source();
  const got: Sent[] = [];
  const link = new Link(1, reader, new Source(), () => limit, (_, frame, payload) => void got.push({ frame, payload: Buffer.from(payload!) }), (_, what) => assert.fail(`garbage: ${what}`), (_, what) => assert.fail(`tampered: ${what}`));
  return { link, reader, got };
}

/** Feeds `bytes` in chunks of the sizes `size()` gives, each a transient copy overwritten after the call. */
function feed(reader: Source, bytes: Buffer, size: () => number): void {
  for (let at = 0; at < bytes.length;) {
    const n = Math.min(bytes.length - at, Math.max(1, size()));
    const chunk = Buffer.from(bytes.subarray(at, at + n));
    reader.feed(chunk, true);
    chunk.fill(0xee);
    at += n;
  }
}

const allreduce = operations.indexOf('allreduce');
const send = operations.indexOf('send');

test('a link parses a stream of frames cut anywhere: every frame and payload comes out whole, in order, though each chunk\'s memory is reused after it is read', () => {
  const random = generator(7);
  const sent: Sent[] = [
    [Type.Data, allreduce, 0, 1, 3, -1, 12],
    [Type.Bye, 0, 0, 9, 0, 0, 0],
    [Type.Data, allreduce, 3, 2, 100_000, -2, 300_001],
    [Type.Status, 0, 0, 4, 0, 0, 27],
    [Type.Data, send, 0, 5, 2, -1, 8],
    [Type.Data, operations.indexOf('broadcast'), 65535, 0xfffffffe, 7, 2, 28],
    [Type.StatusRequest, 0, 0, 3, 0, 0, 0],
  ].map(([type, operation, part, seq, count, root, bytes]) => ({ frame: frameOf(type, operation, part, seq, count, root, bytes), payload: randomBytes(bytes, random) }));
  const bytes = wire(sent);
  const chunkings: Record<string, () => number> = {
    'one byte': () => 1, 'less than a header': () => 23, 'a header': () => 24, 'a header and one': () => 25, 'odd sizes': () => 4093,
    'random sizes': () => Math.floor(random() * 70_000), 'the whole stream': () => bytes.length,
  };
  for (const [name, size] of Object.entries(chunkings)) {
    const { reader, got } = linkCollecting();
    feed(reader, bytes, size);
    assert.equal(got.length, sent.length, name);
    for (const [i, { frame, payload }] of sent.entries()) {
      assert.deepEqual(got[i].frame, frame, `${name}: frame ${i}`);
      assert.ok(got[i].payload.equals(payload), `${name}: payload ${i}`);
    }
  }
});

/** A receive as tcp.ts posts one: `sum` adds the payload into data[at …], else copies it there. */
function receiveInto(data: Float32Array, at: number, expect: Frame, sum: boolean, done: (frame: Frame) => void): Receive {
  const target = sum ? new Uint8Array(expect.bytes) : new Uint8Array(data.buffer, data.byteOffset + 4 * at, expect.bytes);
  return { expect, target, sumInto: sum ? data : null, sumAt: at, received: 0, summed: 0, done };
}

test('a link puts the payload a receive waits for where it says, as it arrives: copied, or summed in pieces while the rest is on the wire; frames it does not wait for pass by', () => {
  const random = generator(11);
  const n = 200_003; // summed in pieces of 64 Ki floats, the last one short
  const values = Float32Array.from({ length: n }, () => Math.round((random() - 0.5) * 2000) / 8);
  const expect = frameOf(Type.Data, allreduce, 1, 6, 2 * n, -1, 4 * n);
  const payload = Buffer.from(values.buffer);
  const chunkings: Record<string, () => number> = { 'odd chunks': () => 4093, 'the whole frame': () => 1 << 30, 'random chunks': () => Math.floor(random() * 300_000) };
  for (const sum of [true, false]) {
    for (const [name, size] of Object.entries(chunkings)) {
      const { link, reader, got } = linkCollecting();
      const data = Float32Array.from({ length: n + 20 }, (_, i) => i % 13);
      const before = data.slice();
      const done: Frame[] = [];
      link.receive = receiveInto(data, 10, expect, sum, (frame) => void done.push(frame));
      // a frame of another collective first (the receive is not for it), then the one awaited, then one more
      const other = { frame: frameOf(Type.Data, allreduce, 0, 6, 2 * n, -1, 8), payload: randomBytes(8, random) };
      const later = { frame: frameOf(Type.Bye, 0, 0, 7, 0, 0, 0), payload: Buffer.alloc(0) };
      feed(reader, wire([other, { frame: expect, payload }, later]), size);
      assert.deepEqual(done, [expect], `${sum ? 'sum' : 'copy'}, ${name}: done once, with its frame`);
      assert.equal(link.receive, null);
      assert.deepEqual(got.map((g) => g.frame), [other.frame, later.frame], 'the others are handed on');
      for (let i = 0; i < data.length; i++) {
        const inside = i >= 10 && i < 10 + n;
        const wanted = inside ? (sum ? before[i] + values[i - 10] : values[i - 10]) : before[i];
        if (data[i] !== wanted) assert.fail(`${sum ? 'sum' : 'copy'}, ${name}: data[${i}] = ${data[i]}, expected ${wanted}`);
      }
    }
  }
});

test('a frame that came before its receive completes it whole (summed or copied); a receive for another frame, or for any point-to-point message, is not completed by it', () => {
  const values = Float32Array.from({ length: 5 }, (_, i) => i + 0.5);
  const payload = Buffer.from(values.buffer.slice(0));
  const frame = frameOf(Type.Data, allreduce, 0, 3, 10, -1, 20);
  for (const sum of [true, false]) {
    const { link } = linkCollecting();
    const data = Float32Array.from({ length: 8 }, (_, i) => 10 * i);
    const done: Frame[] = [];
    link.receive = receiveInto(data, 2, frame, sum, (f) => void done.push(f));
    assert.equal(link.completeFrom(frame, Buffer.from(payload)), true);
    assert.deepEqual(done, [frame]);
    assert.equal(link.receive, null);
    assert.deepEqual(Array.from(data), [0, 10, ...Array.from(values, (v, i) => (sum ? 10 * (i + 2) : 0) + v), 70]);
  }
  const { link } = linkCollecting();
  const data = new Float32Array(8);
  // one field off, each in turn
  for (const field of ['seq', 'operation', 'count', 'root', 'part', 'bytes'] as const) {
    link.receive = receiveInto(data, 0, { ...frame, [field]: frame[field] + 1 }, false, () => assert.fail(`completed with a frame whose ${field} differs`));
    assert.equal(link.completeFrom(frame, Buffer.from(payload)), false, field);
  }
  link.receive = { ...receiveInto(data, 0, frame, false, () => assert.fail('an any-source receive completed by a collective frame')), expect: null };
  assert.equal(link.completeFrom(frame, Buffer.from(payload)), false, 'any-source');
  const message = frameOf(Type.Data, send, 0, 3, 10, -1, 20);
  link.receive = receiveInto(data, 0, frame, false, () => assert.fail('a collective receive completed by a point-to-point message'));
  assert.equal(link.completeFrom(message, Buffer.from(payload)), false, 'point-to-point');
  assert.ok(data.every((v) => v === 0), 'nothing was written');
});

test('a link refuses a frame over its limit, of no known type, or without the magic, at once, whatever the chunking, and parses nothing after it', () => {
  for (const [what, bytes, expected] of [
    ['over the limit', header(Type.Data, allreduce, 0, 1, 2, -1, 1001), 'a frame of 1001 bytes, more than the 1000 allowed'],
    ['of type 0', header(0 as Type, 0, 0, 1, 0, 0, 0), 'a frame of unknown type 0'],
    ['of type 12', header(12 as Type, 0, 0, 1, 0, 0, 0), 'a frame of unknown type 12'],
    ['without the magic', Buffer.concat([Buffer.from('GET / HTTP/1.1\r\n'), Buffer.alloc(8)]), 'a frame with magic 0x20544547 (expected 0x31475643)'],
  ] as const) {
    for (const size of [1, 7, 1 << 20]) {
      const reader = new Source();
      const garbage: string[] = [];
      const got: Frame[] = [];
      new Link(1, reader, new Source(), () => 1000, (_, frame) => void got.push(frame), (_, w) => void garbage.push(w), () => assert.fail('tampered'));
      // a good frame of the limit's length first, then the bad one, then a good one the parser must not reach
      const good = Buffer.concat([header(Type.Data, allreduce, 0, 1, 250, -1, 1000), Buffer.alloc(1000)]);
      feed(reader, Buffer.concat([good, bytes, header(Type.Bye, 0, 0, 2, 0, 0, 0)]), () => size);
      assert.equal(got.length, 1, `${what}, chunks of ${size}: the frame before is parsed`);
      assert.deepEqual(garbage, [expected], `${what}, chunks of ${size}`);
    }
  }
});

/** Two ends of a loopback connection: the dialed socket, and the accepted one, paused (nothing is read until the test resumes it). */
async function connectionPair(): Promise<{ dialer: Socket; acceptor: Socket; close: () => void }> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const dialer = connect({ host: '127.0.0.1', port: (server.address() as { port: number }).port });
  await new Promise<void>((resolve) => dialer.once('connect', () => resolve()));
  const acceptor = await accepted;
  acceptor.pause();
  return { dialer, acceptor, close: () => { dialer.destroy(); acceptor.destroy(); server.close(); } };
}

for (const security of transportSecurities) {
  test(`a link writer (${security}) delivers every write whole and in order through backpressure, each done once after the socket took it; a write after the connection closed fails, named`, { timeout: 30_000 }, async () => {
    const { dialer, acceptor, close } = await connectionPair();
    try {
      const keys = { read: Buffer.alloc(32, 1), write: Buffer.alloc(32, 2) };
      const writer = new Source();
      writer.socket = dialer;
      const reader = Source.accepted(acceptor);
      if (security !== 'none') {
        writer.secure(keys, security === 'encrypt');
        reader.secure({ read: keys.write, write: keys.read }, security === 'encrypt');
      }
      const received: Buffer[] = [];
      reader.listen((chunk) => void received.push(Buffer.from(chunk)));
      // more than the kernel holds while nobody reads (so writes wait for it to drain), and more than IN_FLIGHT sealed records;
      // a write whose first piece alone passes the socket's high-water mark (once, that hung the writer: it waited for a drain with the socket corked)
      const random = generator(5);
      const writes = [0, 1, 24, (1 << 20) + 7, 5 << 20, 3, 1 << 18, 0, 2 << 20].map((n) => [randomBytes(n, random), randomBytes(n % 5, random)]);
      const done: number[] = [];
      const errors: (Error | null | undefined)[] = [];
      for (const [i, pieces] of writes.entries()) writer.write(pieces, (error) => { done.push(i); errors.push(error); });
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok(done.length < writes.length, `the socket took all ${writes.length} writes while nothing was read`);
      acceptor.resume();
      const total = writes.flat().reduce((sum, piece) => sum + piece.length, 0);
      while (received.reduce((sum, chunk) => sum + chunk.length, 0) < total || done.length < writes.length) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(done, writes.map((_, i) => i), 'each done once, in order');
      assert.ok(errors.every((error) => !error), String(errors.find((error) => error)));
      assert.ok(Buffer.concat(received).equals(Buffer.concat(writes.flat())), 'the bytes, whole and in order');
      dialer.destroy();
      const failed = await new Promise<Error | null | undefined>((resolve) => writer.write([Buffer.alloc(10)], resolve));
      assert.match(String(failed?.message), security === 'none' ? /destroyed/ : /^the connection is closed$/);
    } finally {
      close();
    }
  });
}
