// The codec kernels (fp16, bf16, int8 blocks, QSGD, signs): the native ones give the reference's
// bits exactly, random draws included, and the reference agrees with oracles written apart from
// it — per-value arithmetic conversions and a brute-force nearest bfloat16.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../tensor/random.js';
import { toFloat16 } from '../compress/codecs.js';
import { referenceKernels as R } from './reference.js';
import { loadNativeKernels } from './native.js';
import type { KernelSet } from './types.js';

let N: KernelSet | null = null;
try {
  N = loadNativeKernels().kernels;
} catch {
  // reported by native.test.ts, which fails when CONVERGE_REQUIRE_NATIVE=1
}
const skip = !N && process.env.CONVERGE_REQUIRE_NATIVE !== '1' ? 'native kernels not built' : false;

const random = new Random(11);
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);
const fromBits = (bits: number) => {
  u32[0] = bits;
  return f32[0];
};

/** Values a codec must handle: every binade from subnormal to huge, both signs, zeros, exact halves and ties, infinities, NaN. */
function awkward(n: number): Float32Array {
  const values = new Float32Array(n);
  const specials = [0, -0, 1, -1, 65504, 65519.99, 65520, -70000, 2 ** -24, 2 ** -25, 3 * 2 ** -26, 2 ** -14, 1 + 2 ** -11, 1 + 3 * 2 ** -11, 1 + 2 ** -8, Infinity, -Infinity, NaN, fromBits(1), 1e-40, 3.4e38];
  for (let i = 0; i < n; i++) {
    if (i < specials.length) values[i] = specials[i];
    else if (i % 3 === 0) values[i] = fromBits(random.bits()); // any bit pattern at all
    else values[i] = (random.next() - 0.5) * 2 ** (Math.floor(random.next() * 60) - 30);
  }
  return values;
}
const uniform = (n: number, scale = 1) => random.fillUniform(new Float32Array(n), -scale, scale);

/** Bytes equal, or both the same kind of NaN-free float (what `deepEqual` on bit views says). */
const bitsOf = (a: Float32Array) => new Uint32Array(a.buffer, a.byteOffset, a.length);

test('native fp16 and bf16 encodings give the reference\'s bits, and their decodings its values, added or written', { skip }, () => {
  for (const n of [1, 7, 1000, 100_003]) {
    const values = awkward(n);
    for (const encode of ['fp16', 'bf16-nearest', 'bf16-stochastic'] as const) {
      const [a, b] = [new Uint16Array(n), new Uint16Array(n)];
      const state = random.bits();
      if (encode === 'fp16') {
        R.fp16Encode(values, a);
        N!.fp16Encode(values, b);
      } else {
        R.bf16Encode(values, a, encode === 'bf16-nearest' ? null : state);
        N!.bf16Encode(values, b, encode === 'bf16-nearest' ? null : state);
      }
      assert.deepEqual(b, a, `${encode}, ${n} values`);
      for (const accumulate of [false, true]) {
        const start = uniform(n);
        const [x, y] = [start.slice(), start.slice()];
        const decode = encode === 'fp16' ? 'fp16Decode' : 'bf16Decode';
        R[decode](a, x, accumulate);
        N![decode](a, y, accumulate);
        // NaN payloads aside (JavaScript keeps one NaN), the same floats
        for (let i = 0; i < n; i++) if (!(Number.isNaN(x[i]) && Number.isNaN(y[i]))) assert.equal(bitsOf(y)[i], bitsOf(x)[i], `${decode} ${accumulate ? '+=' : '='} [${i}]`);
      }
    }
  }
});

test('native replicaMergeBf16 gives the reference\'s bits and values; the reference is replicaMerge\'s float32 arithmetic rounded as bf16Encode rounds', { skip }, () => {
  for (const n of [1, 7, 1000, 100_003]) {
    const base = uniform(n, 4);
    const local = base.map((v, i) => (i % 3 === 0 ? v : v + uniform(1, 2 ** -(i % 12))[0]));
    // bf16 values: every other one as this replica last saw it (base rounded to bf16 is not base: set base to it there)
    const shared = new Uint16Array(n);
    R.bf16Encode(uniform(n, 4), shared, null);
    const decoded = new Float32Array(n);
    R.bf16Decode(shared, decoded, false);
    for (let i = 0; i < n; i += 2) {
      base[i] = decoded[i];
      if (i % 3 === 0) local[i] = base[i];
    }
    const state = random.bits();
    const run = (k: KernelSet) => {
      const [s, l, b] = [shared.slice(), local.slice(), base.slice()];
      k.replicaMergeBf16(s, l, b, state);
      return { s, l, b };
    };
    const [r, fast] = [run(R), run(N!)];
    assert.deepEqual(fast.s, r.s, `${n} values: bits`);
    assert.deepEqual(fast.l, r.l);
    assert.deepEqual(fast.b, r.b);
    // the oracle: replicaMerge into the decoded array, then bf16Encode with the same stream
    const merged = decoded.slice();
    const [l2, b2] = [local.slice(), base.slice()];
    R.replicaMerge(merged, l2, b2, n);
    const encoded = new Uint16Array(n);
    R.bf16Encode(merged, encoded, state);
    assert.deepEqual(r.s, encoded);
    const back = new Float32Array(n);
    R.bf16Decode(encoded, back, false);
    assert.deepEqual(r.l, back);
    assert.deepEqual(r.b, back);
  }
});

test('native int8 blocks, QSGD and sign give the reference\'s bytes and values, every width and a ragged end', { skip }, () => {
  for (const n of [1, 63, 65, 1000, 100_003]) {
    const values = uniform(n, 3);
    values[0] = 0; // a zero block start, and a block of zeros below
    if (n > 130) values.fill(0, 64, 128);
    if (n > 400) [values[200], values[390]] = [Infinity, -Infinity]; // blocks the vector path leaves to the scalar one; buckets whose norm is infinite
    const state = random.bits();
    const bytes = 4 * Math.ceil(n / 64) + n;
    const [a, b] = [new Uint8Array(bytes), new Uint8Array(bytes)];
    R.int8Encode(values, a, state);
    N!.int8Encode(values, b, state);
    assert.deepEqual(b, a, `int8 encode, ${n}`);
    const [x, y] = [new Float32Array(n), new Float32Array(n)];
    R.int8Decode(a, x);
    N!.int8Decode(a, y);
    assert.deepEqual(y, x, `int8 decode, ${n}`);

    for (const bits of [2, 3, 5, 8]) {
      for (const bucket of [512, 37]) {
        const size = Math.floor(n / bucket) * (4 + Math.ceil((bucket * bits) / 8)) + (n % bucket ? 4 + Math.ceil(((n % bucket) * bits) / 8) : 0);
        const [p, q] = [new Uint8Array(size).fill(0xa5), new Uint8Array(size).fill(0x5a)]; // every byte must be written
        R.qsgdEncode(values, bits, bucket, p, state);
        N!.qsgdEncode(values, bits, bucket, q, state);
        assert.deepEqual(q, p, `qsgd:${bits} bucket ${bucket} encode, ${n}`);
        for (const accumulate of [false, true]) {
          const start = uniform(n);
          const [s, t] = [start.slice(), start.slice()];
          R.qsgdDecode(p, bits, bucket, s, accumulate);
          N!.qsgdDecode(p, bits, bucket, t, accumulate);
          assert.deepEqual(t, s, `qsgd:${bits} decode ${accumulate ? '+=' : '='}, ${n}`);
        }
      }
    }

    const residual = uniform(n, 0.1);
    const [r1, r2] = [residual.slice(), residual.slice()];
    const [s1, s2] = [new Uint8Array(Math.ceil(n / 8)).fill(0xff), new Uint8Array(Math.ceil(n / 8))];
    assert.equal(N!.signEncode(values, r2, s2), R.signEncode(values, r1, s1), `sign scale, ${n}`);
    assert.deepEqual(s2, s1, `sign bits, ${n}`);
    assert.deepEqual(r2, r1, `sign residual, ${n}`);
    for (const accumulate of [false, true]) {
      const start = uniform(n);
      const [s, t] = [start.slice(), start.slice()];
      R.signDecode(s1, 0.375, s, accumulate);
      N!.signDecode(s1, 0.375, t, accumulate);
      assert.deepEqual(t, s, `sign decode, ${n}`);
    }
  }
});

test('native top-k error feedback accumulates as the reference does, with and without DGC\'s momentum correction', { skip }, () => {
  for (const n of [1, 9, 100_003]) {
    const gradient = uniform(n);
    for (const [scale, withMomentum] of [[1, true], [0.37, true], [1, false], [0.5, false]] as const) {
      const residual = uniform(n, 0.1);
      const momentum = uniform(n, 0.1);
      const [r1, r2, m1, m2] = [residual.slice(), residual.slice(), momentum.slice(), momentum.slice()];
      R.dgcAccumulate(gradient, scale, 0.9, withMomentum ? m1 : null, r1);
      N!.dgcAccumulate(gradient, scale, 0.9, withMomentum ? m2 : null, r2);
      assert.deepEqual(r2, r1, `residual, n ${n}, scale ${scale}, momentum ${withMomentum}`);
      assert.deepEqual(m2, m1, `momentum, n ${n}, scale ${scale}`);
    }
  }
});

test('native sparse pairs are written and added as the reference writes and adds them, each value codec, a bad index stopping both alike', { skip }, () => {
  const n = 5000;
  for (const codec of [0, 1, 2]) {
    const count = 700;
    const indices = Uint32Array.from({ length: count }, (_, j) => (j * 7 + 3) % n); // some indices repeat: they add up
    const values = awkward(count);
    const stride = codec === 0 ? 8 : 6;
    const [a, b] = [new Uint8Array(count * stride).fill(1), new Uint8Array(count * stride).fill(2)];
    R.pairsEncode(indices, values, count, codec, a);
    N!.pairsEncode(indices, values, count, codec, b);
    assert.deepEqual(b, a, `encode, codec ${codec}`);
    const start = uniform(n);
    const [x, y] = [start.slice(), start.slice()];
    assert.equal(N!.pairsAccumulate(a, count, codec, y), R.pairsAccumulate(a, count, codec, x));
    for (let i = 0; i < n; i++) if (!(Number.isNaN(x[i]) && Number.isNaN(y[i]))) assert.equal(bitsOf(y)[i], bitsOf(x)[i], `accumulate, codec ${codec}, [${i}]`);
    // a pair pointing past the target: both return its index, having added the pairs before it
    new DataView(a.buffer).setUint32(stride * 10, n, true); // one past the last
    const [p, q] = [start.slice(), start.slice()];
    assert.equal(R.pairsAccumulate(a, count, codec, p), n);
    assert.equal(N!.pairsAccumulate(a, count, codec, q), n);
    assert.deepEqual(bitsOf(q), bitsOf(p));
  }
});

test('a stochastic kernel draws one number a value from the stream it is given: Random.skip lands where drawing would', () => {
  const stream = new Random(99);
  const drawn = new Random(99);
  for (const count of [0, 1, 5, 1000, 2 ** 31 + 3]) {
    stream.skip(count);
    if (count < 1e6) for (let i = 0; i < count; i++) drawn.bits();
    else drawn.setState(Number((BigInt(drawn.getState()) + BigInt(count) * 0x6d2b79f5n) % 2n ** 32n)); // the counter, in exact arithmetic
    assert.equal(stream.getState(), drawn.getState(), `after ${count}`);
  }
  // two encodings from one state agree; from the next state they differ: the state is what is drawn from
  const values = uniform(1000);
  const [a, b, c] = [new Uint16Array(1000), new Uint16Array(1000), new Uint16Array(1000)];
  R.bf16Encode(values, a, 5);
  R.bf16Encode(values, b, 5);
  R.bf16Encode(values, c, 6);
  assert.deepEqual(a, b);
  assert.notDeepEqual(a, c);
});

test('reference fp16 encoding equals the per-value arithmetic conversion, and decodes every half exactly', () => {
  const values = awkward(200_000);
  const out = new Uint16Array(values.length);
  R.fp16Encode(values, out);
  for (let i = 0; i < values.length; i++) assert.equal(out[i], toFloat16(values[i]), `fp16 of ${values[i]} (bits ${bitsOf(values)[i].toString(16)})`);
  // every half pattern: decodes to a float that encodes back to it (NaNs aside), and in order
  const all = new Uint16Array(65536).map((_, i) => i);
  const decoded = new Float32Array(65536);
  R.fp16Decode(all, decoded, false);
  const back = new Uint16Array(65536);
  R.fp16Encode(decoded, back);
  for (let h = 0; h < 65536; h++) {
    const exponent = (h >> 10) & 0x1f;
    if (exponent === 31) {
      assert.ok(h & 0x3ff ? Number.isNaN(decoded[h]) : Math.abs(decoded[h]) === Infinity, `special ${h.toString(16)}`);
      continue;
    }
    assert.equal(back[h], h, `half ${h.toString(16)} → ${decoded[h]} → ${back[h].toString(16)}`);
    if (h > 0 && h < 0x7c00) assert.ok(decoded[h] > decoded[h - 1], `order at ${h.toString(16)}`);
  }
  assert.equal(decoded[0x3c00], 1);
  assert.equal(decoded[0x0001], 2 ** -24);
  assert.equal(decoded[0x7bff], 65504);
  assert.equal(decoded[0xc000], -2);
});

test('reference bf16 nearest rounding picks the closer neighbour by brute force, ties to the even one', () => {
  const values = awkward(100_000);
  const out = new Uint16Array(values.length);
  R.bf16Encode(values, out, null);
  const words = bitsOf(values);
  for (let i = 0; i < values.length; i++) {
    const x = values[i];
    if (Number.isNaN(x)) {
      assert.ok(Number.isNaN(fromBits(out[i] << 16)), 'NaN stays NaN');
      continue;
    }
    if (!Number.isFinite(x)) {
      assert.equal(out[i], words[i] >>> 16);
      continue;
    }
    const down = words[i] >>> 16; // truncation: toward zero
    const up = down + 1;
    const low = fromBits(down << 16);
    // past the largest finite bf16 the next step up is 2^128 (where IEEE rounding puts infinity)
    const high = Number.isFinite(fromBits((up << 16) >>> 0)) ? fromBits((up << 16) >>> 0) : Math.sign(x) * 2 ** 128;
    const dLow = Math.abs(x - low);
    const dHigh = Math.abs(high - x);
    const expected = dLow < dHigh ? down : dHigh < dLow ? up : down % 2 === 0 ? down : up;
    assert.equal(out[i], expected & 0xffff, `bf16 of ${x}`);
  }
});
