// The codecs' reference kernels: what gradient compression (src/compress) and low-precision
// parameters (src/tensor/precision.ts) encode and decode, element by element, written plainly.
// native/codecs.cc gives the same bits. A stochastic codec takes the state of the caller's
// Random stream and draws one number per value, in order, as `new Random(state)` would; the
// caller then advances its own stream by the count (Random.skip), so native and reference runs,
// and resumed ones, round alike.

import { Random } from '../tensor/random.js';
import type { KernelSet } from './types.js';

/** Values per int8 block: each block shares one float32 scale. */
export const INT8_BLOCK = 64;

const word = new Float32Array(1);
const wordBits = new Uint32Array(word.buffer);

/** float32 bits → IEEE half bits: nearest, ties to even, saturating at ±65504, subnormals kept (F. Giesen's integer method). */
function halfBits(bits: number): number {
  const sign = (bits >>> 16) & 0x8000;
  let u = bits & 0x7fffffff;
  if (u > 0x7f800000) return 0x7e00; // NaN
  if (u >= 0x477ff000) return sign | 0x7bff; // ≥ 65520 (rounds past the largest half): saturate
  if (u < 0x38800000) {
    // a subnormal half: adding 0.5 lets the float adder round the value into the low bits
    wordBits[0] = u;
    word[0] += 0.5;
    return sign | ((wordBits[0] - 0x3f000000) & 0xffff);
  }
  u += ((15 - 127) << 23) + 0xfff + ((u >>> 13) & 1);
  return sign | (u >>> 13);
}

/** IEEE half bits → their value. */
export function halfValue(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

const wordsOf = (values: Float32Array) => new Uint32Array(values.buffer, values.byteOffset, values.length);

/** target = (accumulate ? target + : ) value(i), for i < target.length */
function store(target: Float32Array, accumulate: boolean, value: (i: number) => number): void {
  if (accumulate) for (let i = 0; i < target.length; i++) target[i] += value(i);
  else for (let i = 0; i < target.length; i++) target[i] = value(i);
}

export const referenceCodecs: Pick<KernelSet, 'fp16Encode' | 'fp16Decode' | 'bf16Encode' | 'bf16Decode' | 'replicaMergeBf16' | 'int8Encode' | 'int8Decode' | 'qsgdEncode' | 'qsgdDecode' | 'dgcAccumulate' | 'pairsEncode' | 'pairsAccumulate' | 'signEncode' | 'signDecode'> = {
  fp16Encode(values, out) {
    const words = wordsOf(values);
    for (let i = 0; i < words.length; i++) out[i] = halfBits(words[i]);
  },

  fp16Decode(stored, target, accumulate) {
    store(target, accumulate, (i) => halfValue(stored[i]));
  },

  bf16Encode(values, out, random) {
    const words = wordsOf(values);
    if (random === null) {
      // nearest, ties to even; a NaN stays a (quiet) NaN
      for (let i = 0; i < words.length; i++) {
        const bits = words[i];
        out[i] = (bits & 0x7fffffff) > 0x7f800000 ? (bits >>> 16) | 0x40 : ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
      }
      return;
    }
    // stochastic: 16 random bits added below the kept ones carry into them with probability (dropped bits) / 2^16;
    // a carry out of the mantissa steps the exponent up, as it should; inf and NaN are kept
    const stream = new Random(random);
    for (let i = 0; i < words.length; i++) {
      const bits = words[i];
      const noise = stream.bits() >>> 16;
      out[i] = (bits & 0x7f800000) === 0x7f800000 ? bits >>> 16 : ((bits + noise) >>> 16) & 0xffff;
    }
  },

  replicaMergeBf16(shared, local, base, random) {
    // replicaMerge's arithmetic in float32 on the decoded value, rounded stochastically as bf16Encode rounds
    const stream = new Random(random);
    for (let i = 0; i < local.length; i++) {
      const noise = stream.bits() >>> 16;
      wordBits[0] = shared[i] << 16;
      const now = word[0];
      const change = Math.fround(local[i] - base[i]);
      word[0] = now + (now === base[i] ? change : Math.fround(change * 0.5));
      const bits = wordBits[0];
      const rounded = (bits & 0x7f800000) === 0x7f800000 ? bits >>> 16 : ((bits + noise) >>> 16) & 0xffff;
      shared[i] = rounded;
      wordBits[0] = rounded << 16;
      local[i] = word[0];
      base[i] = word[0];
    }
  },

  bf16Decode(stored, target, accumulate) {
    store(target, accumulate, (i) => {
      wordBits[0] = stored[i] << 16;
      return word[0];
    });
  },

  int8Encode(values, out, random) {
    const n = values.length;
    const blocks = Math.ceil(n / INT8_BLOCK);
    const scales = new DataView(out.buffer, out.byteOffset, 4 * blocks);
    const q = new Int8Array(out.buffer, out.byteOffset + 4 * blocks, n);
    const stream = new Random(random);
    for (let b = 0; b < blocks; b++) {
      const first = b * INT8_BLOCK;
      const last = Math.min(n, first + INT8_BLOCK);
      let absMax = 0;
      for (let i = first; i < last; i++) absMax = Math.max(absMax, Math.abs(values[i]));
      const scale = Math.fround(absMax / 127);
      scales.setFloat32(4 * b, scale, true);
      const inverse = scale > 0 ? 1 / scale : 0;
      for (let i = first; i < last; i++) {
        // up with probability the fraction: unbiased
        const rounded = Math.floor(values[i] * inverse + stream.next());
        q[i] = rounded > 127 ? 127 : rounded < -127 ? -127 : rounded;
      }
    }
  },

  int8Decode(bytes, values) {
    const n = values.length;
    const blocks = Math.ceil(n / INT8_BLOCK);
    const scales = new DataView(bytes.buffer, bytes.byteOffset, 4 * blocks);
    const q = new Int8Array(bytes.buffer, bytes.byteOffset + 4 * blocks, n);
    for (let i = 0; i < n; i++) values[i] = q[i] * scales.getFloat32(4 * Math.floor(i / INT8_BLOCK), true);
  },

  qsgdEncode(gradient, bits, bucket, out, random) {
    const n = gradient.length;
    const levels = 2 ** (bits - 1) - 1;
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    const stream = new Random(random);
    let offset = 0;
    for (let start = 0; start < n; start += bucket) {
      const end = Math.min(n, start + bucket);
      // the squares in 4 lanes (value i of the bucket into lane i mod 4), as vector code sums them
      const lanes = [0, 0, 0, 0];
      for (let i = start; i < end; i++) lanes[(i - start) & 3] += gradient[i] * gradient[i];
      const norm = Math.fround(Math.sqrt(lanes[0] + lanes[1] + (lanes[2] + lanes[3])));
      view.setFloat32(offset, norm, true);
      offset += 4;
      const packed = Math.ceil(((end - start) * bits) / 8);
      out.fill(0, offset, offset + packed);
      // float32 arithmetic throughout (so vector code computes 8 values at once, to the same bits)
      const ratio = norm > 0 ? Math.fround(levels / norm) : 0;
      let bit = offset * 8;
      for (let i = start; i < end; i++, bit += bits) {
        const x = gradient[i];
        const scaled = Math.fround(Math.abs(x) * ratio);
        const low = Math.floor(scaled);
        // a uniform number from the draw's top 24 bits (exact in float32); up with probability the fraction: unbiased
        const level = Math.min(levels, low + ((stream.bits() >>> 8) * 2 ** -24 < scaled - low ? 1 : 0));
        const code = ((x < 0 ? 1 : 0) << (bits - 1)) | level;
        for (let b = 0; b < bits; b++) if ((code >> b) & 1) out[(bit + b) >> 3] |= 1 << ((bit + b) & 7);
      }
      offset += packed;
    }
  },

  qsgdDecode(payload, bits, bucket, target, accumulate) {
    const n = target.length;
    const levels = 2 ** (bits - 1) - 1;
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    let offset = 0;
    for (let start = 0; start < n; start += bucket) {
      const end = Math.min(n, start + bucket);
      const norm = view.getFloat32(offset, true);
      offset += 4;
      const unit = Math.fround(norm / levels);
      let bit = offset * 8;
      for (let i = start; i < end; i++, bit += bits) {
        let code = 0;
        for (let b = 0; b < bits; b++) if (payload[(bit + b) >> 3] & (1 << ((bit + b) & 7))) code |= 1 << b;
        const magnitude = Math.fround((code & levels) * unit);
        const value = (code >> (bits - 1)) & 1 ? -magnitude : magnitude;
        target[i] = accumulate ? target[i] + value : value;
      }
      offset += Math.ceil(((end - start) * bits) / 8);
    }
  },

  pairsEncode(indices, values, count, codec, out) {
    const view = new DataView(out.buffer, out.byteOffset, out.byteLength);
    const stride = codec === 0 ? 8 : 6;
    const one = new Float32Array(1);
    const half = new Uint16Array(1);
    for (let j = 0; j < count; j++) {
      view.setUint32(j * stride, indices[j], true);
      if (codec === 0) view.setFloat32(j * stride + 4, values[j], true);
      else {
        one[0] = values[j];
        if (codec === 1) referenceCodecs.fp16Encode(one, half);
        else referenceCodecs.bf16Encode(one, half, null);
        view.setUint16(j * stride + 4, half[0], true);
      }
    }
  },

  pairsAccumulate(payload, count, codec, target) {
    const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    const stride = codec === 0 ? 8 : 6;
    for (let j = 0; j < count; j++) {
      const index = view.getUint32(j * stride, true);
      if (index >= target.length) return index;
      const stored = codec === 0 ? view.getFloat32(j * stride + 4, true) : view.getUint16(j * stride + 4, true);
      if (codec === 0) target[index] += stored;
      else if (codec === 1) target[index] += halfValue(stored);
      else {
        wordBits[0] = stored << 16;
        target[index] += word[0];
      }
    }
    return -1;
  },

  dgcAccumulate(gradient, scale, momentumFactor, momentum, residual) {
    if (!momentum) {
      for (let i = 0; i < gradient.length; i++) residual[i] += scale * gradient[i];
      return;
    }
    for (let i = 0; i < gradient.length; i++) {
      const corrected = momentumFactor * momentum[i] + scale * gradient[i];
      momentum[i] = corrected;
      residual[i] += corrected; // unrounded: the float32 rounding happens once, in the store
    }
  },

  signEncode(gradient, residual, out) {
    const n = gradient.length;
    // the magnitudes summed in 4 lanes (value i into lane i mod 4), as vector code sums them
    const lanes = [0, 0, 0, 0];
    for (let i = 0; i < n; i++) {
      residual[i] += gradient[i];
      lanes[i & 3] += Math.abs(residual[i]);
    }
    const scale = Math.fround((lanes[0] + lanes[1] + (lanes[2] + lanes[3])) / n);
    out.fill(0, 0, Math.ceil(n / 8));
    for (let i = 0; i < n; i++) {
      const negative = residual[i] < 0;
      if (negative) out[i >> 3] |= 1 << (i & 7);
      residual[i] -= negative ? -scale : scale; // what was not sent stays owed
    }
    return scale;
  },

  signDecode(bits, scale, target, accumulate) {
    store(target, accumulate, (i) => (bits[i >> 3] & (1 << (i & 7)) ? -scale : scale));
  },
};
