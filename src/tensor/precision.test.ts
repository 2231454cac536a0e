// Low-precision storage: encodings hold what they claim, stochastic rounding is unbiased, and
// many updates far below the format's resolution still add up (where rounding to nearest loses
// every one of them).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { INT8_BLOCK, PrecisionCodec, SharedLowPrecision, bf16Round, bf16Value, encodedBytes } from './precision.js';
import { Random } from './random.js';

const bitsOf = (x: number) => new Uint32Array(Float32Array.of(x).buffer)[0];

test('bf16 rounding keeps representable values, moves others to a neighbour, and is unbiased', () => {
  for (const x of [0, 1, -2.5, 3.140625, 2 ** -100, -65280]) assert.equal(bf16Value(bf16Round(x, 12345)), Math.fround(x));
  const x = Math.fround(1 + 0.3 * 2 ** -7); // 30% of the way from 1 to the next bf16, 1 + 2⁻⁷
  const random = new Random(1);
  let sum = 0;
  const draws = 200000;
  for (let i = 0; i < draws; i++) {
    const value = bf16Value(bf16Round(x, random.bits() >>> 16));
    assert.ok(value === 1 || value === 1 + 2 ** -7, `${value}`);
    sum += value;
  }
  // the standard error of the mean is 2⁻⁷·√(0.21/200000) ≈ 8e−6
  assert.ok(Math.abs(sum / draws - x) < 4e-5, `mean ${sum / draws} vs ${x}`);
  assert.equal(bf16Round(Infinity, 65535), 0x7f80); // no carry out of infinity
});

test('each codec writes the bytes it says, and decodes to values the format holds', () => {
  const random = new Random(3);
  const values = new Float32Array(1000).map(() => random.normal());
  for (const precision of ['fp32', 'bf16', 'int8'] as const) {
    const codec = new PrecisionCodec(precision, 7);
    const bytes = new Uint8Array(encodedBytes(precision, 900));
    assert.equal(codec.encode(values, 100, 1000, bytes), bytes.length);
    const decoded = new Float32Array(1000);
    codec.decode(bytes, decoded, 100, 1000);
    if (precision === 'fp32') assert.deepEqual(decoded.subarray(100), values.subarray(100));
    for (let i = 100; i < 1000; i++) {
      if (precision === 'bf16') {
        assert.equal(bitsOf(decoded[i]) & 0xffff, 0, `bf16 value ${decoded[i]} has low bits`);
        assert.ok(Math.abs(decoded[i] - values[i]) <= Math.abs(values[i]) * 2 ** -7, `bf16 ${values[i]} → ${decoded[i]}`);
      }
    }
    if (precision === 'int8') {
      // each block (from index 100) is q · scale with |q| ≤ 127 and the block's largest at ±127
      for (let first = 100; first < 1000; first += INT8_BLOCK) {
        const block = values.subarray(first, Math.min(1000, first + INT8_BLOCK));
        const scale = Math.fround(Math.max(...block.map(Math.abs)) / 127);
        for (let i = 0; i < block.length; i++) {
          const q = decoded[first + i] / scale;
          assert.ok(Math.abs(q - Math.round(q)) < 1e-3 && Math.abs(q) <= 127.001, `int8 block at ${first}: ${q}`);
          assert.ok(Math.abs(decoded[first + i] - block[i]) <= scale * 1.0001, 'within one step');
        }
      }
    }
  }
});

test('int8 encoding is unbiased: the mean of many roundings is the value', () => {
  const values = Float32Array.of(1, 0.337, -0.5001, 0.0123);
  const sums = new Float64Array(values.length);
  const bytes = new Uint8Array(encodedBytes('int8', values.length));
  const decoded = new Float32Array(values.length);
  const draws = 20000;
  for (let seed = 0; seed < draws; seed++) {
    const codec = new PrecisionCodec('int8', seed);
    codec.encode(values, 0, values.length, bytes);
    codec.decode(bytes, decoded, 0, values.length);
    for (let i = 0; i < values.length; i++) sums[i] += decoded[i];
  }
  // one step is 1/127 ≈ 0.008; the standard error of the mean is below 0.008·0.5/√20000 ≈ 3e−5
  for (let i = 0; i < values.length; i++) assert.ok(Math.abs(sums[i] / draws - values[i]) < 2e-4, `${values[i]}: mean ${sums[i] / draws}`);
});

test('shared low-precision parameters: updates far below the resolution add up, and int8 blocks widen when outgrown', () => {
  for (const precision of ['bf16', 'int8'] as const) {
    const size = 130;
    const store = new SharedLowPrecision(precision, new SharedArrayBuffer(encodedBytes(precision, size)), size, 11);
    const start = new Float32Array(size).fill(1);
    start[129] = 0;
    store.storeAll(start);
    // 10,000 steps of 1e−4, a 78th of bf16's spacing at 1 and a 79th of int8's: rounding to nearest keeps 1
    for (let i = 0; i < 10000; i++) store.add(5, 1e-4);
    const value = store.get(5);
    assert.ok(Math.abs(value - 2) < 0.1, `${precision}: 1 + 10,000 × 1e−4 gave ${value}`);
    // element 129 sits alone in a block of zeros (int8 scale 0): the first update must widen it
    store.add(129, -0.75);
    assert.ok(Math.abs(store.get(129) + 0.75) < 0.01, `${precision}: ${store.get(129)}`);
    const out = new Float32Array(size);
    store.loadAll(out);
    assert.equal(out[5], value);
    assert.equal(out[129], store.get(129));
    assert.ok(Math.abs(out[0] - 1) < 0.02, `${precision}: untouched values stay (${out[0]})`);
  }
});
