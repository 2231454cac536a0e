// The record layer alone: what it delivers is what was sealed, in any chunking of the stream;
// a record replayed, reordered, dropped, cut short or sealed with the other direction's key
// does not open; integrity-only records carry the bytes in the clear.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { IN_FLIGHT, Opener, RECORD, Sealer, sessionKeys } from './tcp-seal.js';

/** The records `bytes` becomes, each as one buffer. */
function records(sealer: Sealer, bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let current: Buffer[] = [];
  sealer.seal(bytes, (piece, release) => {
    current.push(Buffer.from(piece));
    release?.();
    // an encrypted record is one piece; an integrity-only one is length, bytes, tag
    if (release || current.length === 3) {
      out.push(Buffer.concat(current));
      current = [];
    }
  });
  return out;
}

function opener(key: Buffer, encrypt: boolean): { opener: Opener; delivered: () => Buffer; broken: () => string | null } {
  const parts: Buffer[] = [];
  let why: string | null = null;
  const o = new Opener(key, encrypt, (plain) => parts.push(Buffer.from(plain)), (what) => (why = what));
  return { opener: o, delivered: () => Buffer.concat(parts), broken: () => why };
}

for (const encrypt of [true, false]) {
  const mode = encrypt ? 'encrypted' : 'integrity-only';
  const keys = sessionKeys('a-job-secret-123', randomBytes(16), randomBytes(16), encrypt ? 'encrypt' : 'integrity');

  test(`${mode} records: three frames through the stream cut at random places come out whole and in order`, () => {
    const sealer = new Sealer(keys.dialerToAcceptor, encrypt);
    const frames = [randomBytes(24), randomBytes(RECORD * 2 + 1000), randomBytes(7)];
    const stream = Buffer.concat(frames.flatMap((f) => records(sealer, f)));
    assert.equal(stream.length, frames.reduce((n, f) => n + f.length, 0) + 20 * (1 + 3 + 1), 'a 4-byte length and a 16-byte tag per record of at most RECORD bytes');
    const plain = Buffer.concat(frames);
    if (encrypt) assert.equal(stream.indexOf(frames[1].subarray(0, 64)), -1, 'the bytes do not appear on the wire');
    else assert.ok(stream.indexOf(frames[1].subarray(0, 64)) > 0, 'integrity only: the bytes are on the wire as they are');
    for (const cut of [1, 3, 4096, 65536 + 17, stream.length]) {
      const { opener: o, delivered, broken } = opener(keys.dialerToAcceptor, encrypt);
      for (let at = 0; at < stream.length; at += cut) o.push(stream.subarray(at, Math.min(stream.length, at + cut)));
      assert.equal(broken(), null, `chunks of ${cut}`);
      assert.ok(delivered().equals(plain), `chunks of ${cut}`);
    }
  });

  test(`${mode} records: a replayed, reordered or dropped record, the other direction's key, or a changed length does not open`, () => {
    const sealer = new Sealer(keys.dialerToAcceptor, encrypt);
    const [r0, r1, r2] = [randomBytes(100), randomBytes(100), randomBytes(100)].map((b) => records(sealer, b)[0]);
    const cases: [string, Buffer[], Buffer, RegExp][] = [
      ['replayed', [r0, r0], keys.dialerToAcceptor, /^record #1 does not authenticate$/],
      ['reordered', [r1, r0], keys.dialerToAcceptor, /^record #0 does not authenticate$/],
      ['dropped', [r0, r2], keys.dialerToAcceptor, /^record #1 does not authenticate$/],
      ['the other direction\'s key', [r0], keys.acceptorToDialer, /^record #0 does not authenticate$/],
    ];
    const longer = Buffer.from(r0);
    longer.writeUInt32LE(99, 0); // the length is authenticated: a shorter claim with the same bytes fails
    cases.push(['a changed length', [longer], keys.dialerToAcceptor, /^record #0 does not authenticate$/]);
    for (const [what, stream, key, expected] of cases) {
      const { opener: o, delivered, broken } = opener(key, encrypt);
      for (const record of stream) o.push(record);
      assert.match(broken() ?? 'opened', expected, what);
      // nothing of a record that fails is delivered, nor anything after it
      o.push(r2);
      assert.equal(delivered().length, what === 'the other direction\'s key' || what === 'a changed length' || what === 'reordered' ? 0 : 100, what);
    }
  });
}

test('session keys: each connection\'s nonces give it keys of its own, one per direction and security mode; the same handshake gives the same keys', () => {
  const [challenge, answer] = [randomBytes(16), randomBytes(16)];
  const keys = sessionKeys('a-job-secret-123', challenge, answer, 'encrypt');
  assert.deepEqual(sessionKeys('a-job-secret-123', Buffer.from(challenge), Buffer.from(answer), 'encrypt'), keys, 'deterministic: both ends derive them');
  const others = [
    sessionKeys('a-job-secret-123', randomBytes(16), answer, 'encrypt'), sessionKeys('a-job-secret-123', challenge, randomBytes(16), 'encrypt'),
    sessionKeys('a-job-secret-124', challenge, answer, 'encrypt'), sessionKeys('a-job-secret-123', challenge, answer, 'integrity'),
  ];
  const all = [keys, ...others].flatMap((k) => [k.acceptorToDialer, k.dialerToAcceptor]).map((key) => key.toString('hex'));
  assert.equal(new Set(all).size, all.length, 'no two keys alike: a record cannot be replayed into another connection, direction or mode');
  assert.ok(all.every((hex) => hex.length === 64), 'AES-256 keys');
});

test('a record that claims more than a record holds breaks the connection at once, whether its length arrives whole or in pieces; an empty frame is one record that delivers nothing, a full one one record', () => {
  for (const cut of [1, 64]) {
    const keys = sessionKeys('a-job-secret-123', randomBytes(16), randomBytes(16), 'encrypt');
    const { opener: o, delivered, broken } = opener(keys.dialerToAcceptor, true);
    const forged = Buffer.alloc(64);
    forged.writeUInt32LE(RECORD + 1, 0);
    for (let at = 0; at < forged.length; at += cut) o.push(forged.subarray(at, at + cut));
    assert.equal(broken(), `record #0 claims ${RECORD + 1} bytes, more than the ${RECORD} a record holds`, `chunks of ${cut}`);
    assert.equal(delivered().length, 0);
  }
  const keys = sessionKeys('a-job-secret-123', randomBytes(16), randomBytes(16), 'encrypt');
  assert.equal(records(new Sealer(keys.dialerToAcceptor, true), Buffer.alloc(RECORD)).length, 1, 'a frame of exactly one record\'s bytes is one record');
  const sealed = records(new Sealer(keys.dialerToAcceptor, true), Buffer.alloc(0));
  assert.equal(sealed.length, 1);
  assert.equal(sealed[0].length, 4 + 16);
  const { opener: o, delivered, broken } = opener(keys.dialerToAcceptor, true);
  o.push(sealed[0]);
  assert.equal(broken(), null);
  assert.equal(delivered().length, 0);
});

test('sealed records reuse their buffers: a record the socket has released lends its buffer to the next, each buffer holds a whole record, and at most IN_FLIGHT wait to be reused', () => {
  const keys = sessionKeys('a-job-secret-123', randomBytes(16), randomBytes(16), 'encrypt');
  const sealer = new Sealer(keys.dialerToAcceptor, true);
  const sealOne = (bytes: number) => {
    let record: { piece: Uint8Array; release: () => void } | null = null;
    sealer.seal(randomBytes(bytes), (piece, release) => (record = { piece, release: release! }));
    return record!;
  };
  const first = sealOne(100);
  assert.equal(first.piece.length, 4 + 100 + 16);
  assert.equal(first.piece.buffer.byteLength, 4 + RECORD + 16, 'room for a whole record, so any later one can reuse it');
  const held = sealOne(100);
  assert.notEqual(held.piece.buffer, first.piece.buffer, 'not yet released: a buffer of its own');
  first.release();
  const full = sealOne(RECORD);
  assert.equal(full.piece.buffer, first.piece.buffer, 'released: the next record, even a full one, is sealed into it');
  // release more than IN_FLIGHT: only IN_FLIGHT are kept
  const many = Array.from({ length: IN_FLIGHT + 2 }, () => sealOne(10));
  const buffers = new Set(many.map((record) => record.piece.buffer));
  for (const record of many) record.release();
  const again = Array.from({ length: IN_FLIGHT + 2 }, () => sealOne(10));
  assert.equal(again.filter((record) => buffers.has(record.piece.buffer)).length, IN_FLIGHT);
});

test('an integrity-only record whole in one chunk is delivered where it lies, without a copy; one in pieces is put together first', () => {
  const keys = sessionKeys('a-job-secret-123', randomBytes(16), randomBytes(16), 'integrity');
  const frame = randomBytes(1000);
  const stream = Buffer.concat(records(new Sealer(keys.dialerToAcceptor, false), frame));
  for (const [cut, inPlace] of [[stream.length, true], [100, false]] as const) {
    const delivered: Buffer[] = [];
    const o = new Opener(keys.dialerToAcceptor, false, (plain) => delivered.push(plain), (what) => assert.fail(what));
    for (let at = 0; at < stream.length; at += cut) o.push(stream.subarray(at, at + cut));
    assert.equal(delivered.length, 1);
    assert.ok(delivered[0].equals(frame));
    assert.equal(delivered[0].buffer === stream.buffer, inPlace, `chunks of ${cut}`);
  }
});

test('a stream cut at every byte of its records, the tag included, opens whole: encrypted and integrity-only', () => {
  for (const encrypt of [true, false]) {
    const keys = sessionKeys('a-job-secret-123', randomBytes(16), randomBytes(16), encrypt ? 'encrypt' : 'integrity');
    const frames = [randomBytes(100), randomBytes(5)];
    const sealer = new Sealer(keys.dialerToAcceptor, encrypt);
    const stream = Buffer.concat(frames.flatMap((f) => records(sealer, f)));
    for (let cut = 1; cut < stream.length; cut++) {
      const { opener: o, delivered, broken } = opener(keys.dialerToAcceptor, encrypt);
      o.push(stream.subarray(0, cut));
      o.push(stream.subarray(cut));
      assert.equal(broken(), null, `cut at ${cut}`);
      assert.ok(delivered().equals(Buffer.concat(frames)), `cut at ${cut}`);
    }
  }
});
