// Low-precision parameter storage with stochastic rounding (BuckWild!, De Sa et al. 2017).
// The master copy of the parameters is held in 16 or 8 bits; computation reads a float32 copy
// decoded from it, and every update is written back rounded stochastically: up with probability
// equal to the fraction of the way to the next representable value, so the rounding is unbiased
// and small updates still move parameters on average instead of vanishing.
//
//   bf16: the top 16 bits of a float32 (8-bit exponent, 7-bit mantissa). Rounding adds 16 random
//         bits below the kept ones and truncates — a carry rounds the magnitude up.
//   int8: blocks of INT8_BLOCK values share one float32 scale; value = q · scale, q ∈ [−127, 127].
//         Blocks start at the first index of the range encoded (a rank's share, or 0).

import { kernel } from '../kernels/registry.js';
import { INT8_BLOCK } from '../kernels/reference-codecs.js';
import { Random } from './random.js';

export { INT8_BLOCK };

export const paramPrecisions = ['fp32', 'bf16', 'int8'] as const;
export type ParamPrecision = (typeof paramPrecisions)[number];

/** Bytes the encoding of `count` values takes. */
export function encodedBytes(precision: ParamPrecision, count: number): number {
  switch (precision) {
    case 'fp32':
      return 4 * count;
    case 'bf16':
      return 2 * count;
    case 'int8':
      return count + 4 * Math.ceil(count / INT8_BLOCK);
  }
}

const word = new Float32Array(1);
const wordBits = new Uint32Array(word.buffer);

/** The float32 with bits `bits` rounded stochastically to bfloat16 bits; `random16` uniform in [0, 65536). */
function bf16RoundBits(bits: number, random16: number): number {
  if ((bits & 0x7f800000) === 0x7f800000) return bits >>> 16; // inf and NaN are kept as they are
  // adding below the kept bits carries into them with probability (low bits) / 2^16; a carry out of
  // the mantissa correctly steps the exponent up
  return ((bits + random16) >>> 16) & 0xffff;
}

/** x rounded stochastically to a bfloat16 (returned as its 16 bits); `random16` uniform in [0, 65536). */
export function bf16Round(x: number, random16: number): number {
  word[0] = x;
  return bf16RoundBits(wordBits[0], random16);
}

/** The float32 value of bfloat16 bits. */
export function bf16Value(bits16: number): number {
  wordBits[0] = bits16 << 16;
  return word[0];
}

/** q rounded stochastically to an integer in [−127, 127]; `uniform` in [0, 1). Reference. */
export function int8Round(q: number, uniform: number): number {
  const rounded = Math.floor(q + uniform);
  return rounded > 127 ? 127 : rounded < -127 ? -127 : rounded;
}

/** The scale of an int8 block whose largest magnitude is `absMax`. */
function int8Scale(absMax: number): number {
  return Math.fround(absMax / 127);
}

/**
 * Encodes and decodes ranges of a parameter buffer. Each instance draws its own random stream:
 * ranks that must round the same values the same way use the same seed.
 */
export class PrecisionCodec {
  private readonly random: Random;

  constructor(readonly precision: ParamPrecision, seed: number) {
    this.random = new Random(seed);
  }

  /** Restarts the random stream at `seed` (a stream keyed by what it rounds, e.g. the step). */
  reseed(seed: number): void {
    this.random.setState(seed);
  }

  /** Writes values[start, end) to `out` (from byte 0) in the storage format; returns the bytes written. */
  encode(values: Float32Array, start: number, end: number, out: Uint8Array): number {
    const count = end - start;
    const bytes = encodedBytes(this.precision, count);
    if (out.length < bytes) throw new RangeError(`encode needs ${bytes} bytes, got ${out.length}`);
    const range = values.subarray(start, end);
    if (this.precision === 'fp32') new Uint8Array(out.buffer, out.byteOffset, bytes).set(new Uint8Array(range.buffer, range.byteOffset, bytes));
    else {
      // the kernels draw one random number a value from the stream's position
      if (this.precision === 'bf16') kernel('bf16Encode')(range, new Uint16Array(out.buffer, out.byteOffset, count), this.random.getState());
      else kernel('int8Encode')(range, out, this.random.getState());
      this.random.skip(count);
    }
    return bytes;
  }

  /** Decodes what encode wrote for values[start, end) back into values[start, end). */
  decode(bytes: Uint8Array, values: Float32Array, start: number, end: number): void {
    const count = end - start;
    const range = values.subarray(start, end);
    if (this.precision === 'fp32') new Uint8Array(range.buffer, range.byteOffset, 4 * count).set(bytes.subarray(0, 4 * count));
    else if (this.precision === 'bf16') kernel('bf16Decode')(new Uint16Array(bytes.buffer, bytes.byteOffset, count), range, false);
    else kernel('int8Decode')(bytes, range);
  }

  /** Rounds values[start, end) in place to what the storage format holds (encode, then decode). */
  round(values: Float32Array, start: number, end: number, scratch: Uint8Array): void {
    if (this.precision === 'fp32') return;
    this.encode(values, start, end, scratch);
    this.decode(scratch, values, start, end);
  }
}

/**
 * Hogwild's one shared parameter array, stored in low precision in a SharedArrayBuffer laid out as
 * PrecisionCodec encodes the whole array (encodedBytes(precision, size) bytes). Threads
 * read and write it without locks, element by element: `add` is a read-modify-write that another
 * thread may interleave with, as Hogwild! accepts for float32. An int8 block whose values outgrow
 * its scale doubles the scale (at least) and re-rounds the block's values.
 */
export class SharedLowPrecision {
  private readonly bf16: Uint16Array | null;
  private readonly q: Int8Array | null;
  private readonly scales: Float32Array | null;
  private readonly random: Random;
  private readonly bytes: Uint8Array; // the whole array, encoded
  private readonly decoder: PrecisionCodec;

  constructor(readonly precision: 'bf16' | 'int8', buffer: SharedArrayBuffer, readonly size: number, seed: number) {
    this.random = new Random(seed);
    this.bytes = new Uint8Array(buffer, 0, encodedBytes(precision, size));
    this.decoder = new PrecisionCodec(precision, 0); // decoding draws no random numbers
    if (precision === 'bf16') {
      this.bf16 = new Uint16Array(buffer, 0, size);
      this.q = this.scales = null;
    } else {
      const blocks = Math.ceil(size / INT8_BLOCK);
      this.scales = new Float32Array(buffer, 0, blocks);
      this.q = new Int8Array(buffer, 4 * blocks, size);
      this.bf16 = null;
    }
  }

  /** Replaces the whole array with `values` (rounded). */
  storeAll(values: Float32Array): void {
    new PrecisionCodec(this.precision, this.random.bits()).encode(values, 0, this.size, this.bytes);
  }

  /** Decodes the whole array into `out`. */
  loadAll(out: Float32Array): void {
    this.decoder.decode(this.bytes, out, 0, this.size);
  }

  /**
   * bf16 only: Hogwild!'s replica merge (strategies/replica.ts) in one pass of the kernel — each
   * value decoded, the replica's change added (whole or half), rounded stochastically, stored,
   * and handed back to the replica: local = base = the stored value.
   */
  mergeReplica(local: Float32Array, base: Float32Array): void {
    kernel('replicaMergeBf16')(this.bf16!, local, base, this.random.getState());
    this.random.skip(this.size);
  }

  /** The value of element i. */
  get(i: number): number {
    return this.bf16 ? bf16Value(this.bf16[i]) : Math.fround(this.q![i] * this.scales![Math.floor(i / INT8_BLOCK)]);
  }

  /** Element i += delta, rounded stochastically. */
  add(i: number, delta: number): void {
    if (delta === 0) return;
    if (this.bf16) {
      this.bf16[i] = bf16Round(bf16Value(this.bf16[i]) + delta, this.random.bits() >>> 16);
      return;
    }
    const q = this.q!;
    const scales = this.scales!;
    const block = Math.floor(i / INT8_BLOCK);
    const scale = scales[block];
    const value = q[i] * scale + delta;
    if (Math.abs(value) <= 127 * scale) {
      q[i] = int8Round(value / scale, this.random.next());
      return;
    }
    // outgrown: widen the block's range (at least doubling it, so this stays rare) and re-round
    const wider = Math.max(2 * scale, int8Scale(Math.abs(value)));
    const ratio = scale / wider;
    const last = Math.min(this.size, (block + 1) * INT8_BLOCK);
    for (let k = block * INT8_BLOCK; k < last; k++) if (k !== i) q[k] = int8Round(q[k] * ratio, this.random.next());
    q[i] = int8Round(value / wider, this.random.next());
    scales[block] = wider;
  }
}
