// A Link's frame parser fed by hand, without sockets: a stream of frames built with header() and
// random payloads, cut into chunks of every size (1 byte, less than a header, a header, odd
// sizes, the whole stream), each chunk's memory overwritten once it was fed (as the reused read
// buffer is), must come out frame for frame, byte for byte; a payload a receive waits for is
// copied or summed in, in pieces as it arrives, to the place the receive names.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { operations } from './communicator.js';
import { Sealer, transportSecurities } from './tcp-seal.js';
import { Link, Source, type Receive } from './tcp-link.js';
import { header, SEGMENT, type Frame, Type } from './tcp-wire.js';
import { listenOnLoopback } from './tcp-group.test.fixture.js';

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
    [Type.Refused, 0, 0, 0, 0, 0, 5], // the highest type there is
    [Type.Data, send, 0, 6, 1, -1, 4],
  ].map(([type, operation, part, seq, count, root, bytes]) => ({ frame: frameOf(type, operation, part, seq, count, root, bytes), payload: randomBytes(bytes, random) }));
  const bytes = wire(sent);
  const chunkings: Record<string, () => number> = {
    'one byte': () => 1, 'less than a header': () => 23, 'a header': () => 24, 'a header and one': () => 25, 'odd sizes': () => 4093,
    'random sizes': () => Math.floor(random() * 70_000), 'the whole stream': () => bytes.length,
  };
  for (const [name, size] of Object.entries(chunkings)) {
    const { link, reader, got } = linkCollecting();
    feed(reader, bytes, size);
    assert.equal(got.length, sent.length, name);
    for (const [i, { frame, payload }] of sent.entries()) {
      assert.deepEqual(got[i].frame, frame, `${name}: frame ${i}`);
      assert.ok(got[i].payload.equals(payload), `${name}: payload ${i}`);
    }
    // what a failure message names as the peer's last collective: the last data frame of one (not a point-to-point message, not a status)
    assert.equal(link.lastSeen, 'broadcast #4294967294', name);
  }
  assert.equal(linkCollecting().link.lastSeen, 'the rendezvous', 'before any frame');
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
  link.receive = receiveInto(data, 0, frame, false, () => assert.fail('completed by a frame that is not data'));
  assert.equal(link.completeFrom({ ...frame, type: Type.Status }, Buffer.from(payload)), false, 'a status frame with the fields awaited');
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

test('a link is told of a connection already broken when it takes it over, and refuses any byte on the connection it only writes to, parsing nothing after', () => {
  const keys = { read: Buffer.alloc(32, 1), write: Buffer.alloc(32, 2) };
  const broken = new Source();
  broken.secure(keys, true);
  broken.feed(Buffer.alloc(40, 0x01), false); // no record: its length field claims far more than a record holds
  assert.ok(broken.broken, 'the source is broken');
  const tampered: string[] = [];
  new Link(1, broken, new Source(), () => 1000, () => assert.fail('a frame'), () => assert.fail('garbage'), (_, what) => void tampered.push(what));
  assert.deepEqual(tampered, [broken.broken]);

  const reader = new Source();
  const writer = new Source();
  const garbage: string[] = [];
  const got: Frame[] = [];
  new Link(1, reader, writer, () => 1000, (_, frame) => void got.push(frame), (_, what) => void garbage.push(what), () => assert.fail('tampered'));
  writer.feed(Buffer.from('x'), false);
  assert.deepEqual(garbage, ['bytes on the connection it only reads from']);
  reader.feed(header(Type.Bye, 0, 0, 1, 0, 0, 0), false);
  assert.deepEqual(got, [], 'nothing is parsed after it');
});

test('a source keeps what arrives while nobody listens (a copy where the memory is reused: the read buffer, or the opened plaintext), hands it over in order to the next listener, first whatever the last one gave back, and keeps the rest for the next when a listener leaves mid-way', () => {
  const got: string[] = [];
  const source = new Source();
  const reused = Buffer.from('ab');
  source.feed(reused, true);
  reused.fill(0x7a);
  source.feed(Buffer.from('cd'), false);
  source.listen((chunk) => void got.push(chunk.toString()));
  assert.deepEqual(got, ['ab', 'cd']);
  source.feed(Buffer.from('ef'), false);
  assert.deepEqual(got, ['ab', 'cd', 'ef'], 'delivered at once to a listener');
  source.unlisten();
  source.feed(Buffer.from('gh'), true);
  source.giveBack(Buffer.from('GB'));
  source.giveBack(Buffer.alloc(0));
  assert.equal(got.length, 3, 'nothing while nobody listens');
  // a listener that leaves after its first chunk (as the handshake does) leaves the rest for the next
  const first: string[] = [];
  source.listen((chunk) => {
    first.push(chunk.toString());
    source.unlisten();
  });
  assert.deepEqual(first, ['GB']);
  const second: string[] = [];
  source.listen((chunk) => void second.push(chunk.toString()));
  assert.deepEqual(second, ['gh']);

  // sealed records that arrive before anyone listens: each record's plaintext kept whole, though the next is opened into the same memory
  const keys = { read: Buffer.alloc(32, 3), write: Buffer.alloc(32, 4) };
  const sealer = new Sealer(keys.write, true);
  const records: Buffer[] = [];
  for (const text of ['first record', 'second']) sealer.seal(Buffer.from(text), (piece) => void records.push(Buffer.from(piece)));
  const opened = new Source();
  opened.secure({ read: keys.write, write: keys.read }, true);
  for (const record of records) opened.feed(record, false);
  const plain: string[] = [];
  opened.listen((chunk) => void plain.push(chunk.toString()));
  assert.deepEqual(plain, ['first record', 'second']);
});

test('a link reuses the memory of the early payloads it was given back for the next ones (a fresh buffer a frame costs page faults), and keeps at most 4', () => {
  const reader = new Source();
  const payloads: Buffer[] = [];
  const link = new Link(1, reader, new Source(), () => 1 << 20, (_, __, payload) => void payloads.push(payload!), () => assert.fail('garbage'), () => assert.fail('tampered'));
  const frames = (n: number, bytes: number) => Buffer.concat(Array.from({ length: n }, (_, i) => Buffer.concat([header(Type.Data, allreduce, 0, i, bytes / 4, -1, bytes), Buffer.alloc(bytes, i + 1)])));
  // one at a time, each given back before the next: one buffer for them all, though the second asks for no less than the first had
  for (let i = 0; i < 3; i++) {
    reader.feed(frames(1, 100), false);
    assert.ok(payloads[i].equals(Buffer.alloc(100, 1)), 'the payload itself');
    link.release(payloads[i]);
  }
  assert.equal(new Set(payloads.map((p) => p.buffer)).size, 1, 'one buffer, reused');
  // six held at once, then all given back: the next six get four of them again, and two new ones
  payloads.length = 0;
  reader.feed(frames(6, 100), false);
  const held = new Set(payloads.map((p) => p.buffer));
  assert.equal(held.size, 6);
  for (const payload of payloads) link.release(payload);
  payloads.length = 0;
  reader.feed(frames(6, 100), false);
  assert.equal(payloads.filter((p) => held.has(p.buffer)).length, 4, 'four kept');
  // a smaller payload fits a kept buffer; a larger one does not
  for (const payload of payloads) link.release(payload);
  payloads.length = 0;
  reader.feed(frames(1, 40), false);
  reader.feed(frames(1, 400), false);
  assert.ok(held.has(payloads[0].buffer) && !held.has(payloads[1].buffer));
  assert.ok(payloads[1].equals(Buffer.alloc(400, 1)));
});

test('a link keeps the largest early-payload buffers, and lends the smallest that fits: small payloads first do not cost every large one after them a fresh buffer', () => {
  const reader = new Source();
  const payloads: Buffer[] = [];
  const link = new Link(1, reader, new Source(), () => 1 << 20, (_, __, payload) => void payloads.push(payload!), () => assert.fail('garbage'), () => assert.fail('tampered'));
  let seq = 0;
  const frame = (bytes: number) => Buffer.concat([header(Type.Data, allreduce, 0, seq++, bytes / 4, -1, bytes), Buffer.alloc(bytes, 7)]);
  const early = (bytes: number) => {
    reader.feed(frame(bytes), false);
    return payloads.at(-1)!;
  };
  // four small payloads held at once and given back fill the pool; then a large one comes early, is given back, and the next large one gets its memory
  const small = [early(64), early(64), early(64), early(64)];
  for (const payload of small) link.release(payload);
  const large = early(1 << 16);
  link.release(large);
  assert.equal(early(1 << 16).buffer, large.buffer, 'the large buffer was kept (in place of a small one)');
  // a small payload takes a small buffer, not the large one
  link.release(payloads.at(-1)!);
  const next = early(64);
  assert.ok(small.some((payload) => payload.buffer === next.buffer), 'a small buffer for a small payload');
  assert.equal(early(1 << 16).buffer, large.buffer, 'and the large one is still there for the next large payload');
});

/** Two ends of a loopback connection: the dialed socket, and the accepted one, paused (nothing is read until the test resumes it). */
async function connectionPair(): Promise<{ dialer: Socket; acceptor: Socket; close: () => void }> {
  const server = createServer();
  const port = await listenOnLoopback(server);
  const accepted = new Promise<Socket>((resolve) => server.once('connection', resolve));
  const dialer = connect({ host: '127.0.0.1', port });
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
      const listeners = () => [dialer.listenerCount('drain'), dialer.listenerCount('close')];
      const before = listeners();
      for (const [i, pieces] of writes.entries()) writer.write(pieces, (error) => { done.push(i); errors.push(error); });
      await new Promise((resolve) => setTimeout(resolve, 100));
      assert.ok(done.length < writes.length, `the socket took all ${writes.length} writes while nothing was read`);
      if (security !== 'none') {
        // sealed copies wait for the socket: beyond its high-water mark, at most the segment sealed last
        assert.ok(dialer.writableLength <= dialer.writableHighWaterMark + SEGMENT + 1024, `${dialer.writableLength} bytes sealed ahead of a peer that reads nothing`);
        assert.ok(dialer.listenerCount('drain') <= before[0] + 1, 'one wait for the drain, however many writes came meanwhile');
      }
      acceptor.resume();
      const total = writes.flat().reduce((sum, piece) => sum + piece.length, 0);
      while (received.reduce((sum, chunk) => sum + chunk.length, 0) < total || done.length < writes.length) await new Promise((resolve) => setTimeout(resolve, 10));
      assert.deepEqual(done, writes.map((_, i) => i), 'each done once, in order');
      assert.ok(errors.every((error) => !error), String(errors.find((error) => error)));
      assert.ok(Buffer.concat(received).equals(Buffer.concat(writes.flat())), 'the bytes, whole and in order');
      assert.deepEqual(listeners(), before, 'no listener left behind');
      // writes waiting for a peer that reads nothing when the connection closes: each is done (what the
      // kernel took, without error), and the last, more than the kernel's buffers hold, fails. (Unsealed, the
      // writes are Node's, and Node 20 sometimes completes one that was handed to the socket but not sent
      // without an error when the socket is destroyed — one run in five here — so there only the write after is judged.)
      acceptor.pause();
      const pending: Promise<Error | null | undefined>[] = [];
      for (let i = 0; i < 3; i++) pending.push(new Promise((resolve) => writer.write([Buffer.alloc(16 << 20)], resolve)));
      await new Promise((resolve) => setTimeout(resolve, 100));
      dialer.destroy();
      const outcomes = await Promise.all(pending);
      if (security !== 'none') assert.match(String(outcomes[2]?.message), /^the connection is closed$/);
      const failed = await new Promise<Error | null | undefined>((resolve) => writer.write([Buffer.alloc(10)], resolve));
      assert.match(String(failed?.message), security === 'none' ? /destroyed/ : /^the connection is closed$/);
    } finally {
      close();
    }
  });
}
