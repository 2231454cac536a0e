// Value codecs: IEEE float32, IEEE half (fp16) and bfloat16, little-endian. The 16-bit ones
// round to nearest, ties to even; fp16 saturates to ±65504 rather than overflow to infinity.

import { kernel } from '../kernels/registry.js';
import type { ValueCodec } from './hook.js';

const scratch = new DataView(new ArrayBuffer(4));

// (typed arrays are little-endian on every platform Node runs on, as the payload format is)
const wordsOf = (values: Float32Array) => new Uint32Array(values.buffer, values.byteOffset, values.length);
const halvesOf = (bytes: Uint8Array, at: number, count: number) => {
  // a Uint16Array view needs 2-byte alignment; payload buffers are allocated so that it holds
  if ((bytes.byteOffset + at) % 2) throw new Error('unaligned 16-bit payload');
  return new Uint16Array(bytes.buffer, bytes.byteOffset + at, count);
};

export const float32: ValueCodec = {
  name: 'fp32',
  bytes: 4,
  write: (view, offset, value) => view.setFloat32(offset, value, true),
  read: (view, offset) => view.getFloat32(offset, true),
  round: Math.fround,
  writeAll(values, bytes, at) {
    bytes.set(new Uint8Array(values.buffer, values.byteOffset, values.byteLength), at);
  },
  readAll(bytes, at, target, accumulate) {
    const n = target.length;
    const values = (bytes.byteOffset + at) % 4 === 0 ? new Float32Array(bytes.buffer, bytes.byteOffset + at, n) : new Float32Array(bytes.slice(at, at + 4 * n).buffer);
    // float32 sums, in the kernels: the same bits as a loop here (each sum rounded once), at memory speed
    if (accumulate) kernel('addInto')(target, 0, values, 0, n);
    else kernel('copy')(target, 0, values, 0, n);
  },
};

/** float32 bits → bfloat16 bits (round to nearest even; NaN kept NaN) */
export function toBfloat16(value: number): number {
  scratch.setFloat32(0, value);
  const bits = scratch.getUint32(0);
  if ((bits & 0x7fffffff) > 0x7f800000) return (bits >>> 16) | 0x40; // quiet NaN
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function fromBfloat16(bits: number): number {
  scratch.setUint32(0, bits << 16);
  return scratch.getFloat32(0);
}

export const bfloat16: ValueCodec = {
  name: 'bf16',
  bytes: 2,
  write: (view, offset, value) => view.setUint16(offset, toBfloat16(value), true),
  read: (view, offset) => fromBfloat16(view.getUint16(offset, true)),
  round: (value) => fromBfloat16(toBfloat16(value)),
  writeAll(values, bytes, at) {
    const words = wordsOf(values);
    const out = halvesOf(bytes, at, values.length);
    for (let i = 0; i < words.length; i++) {
      const bits = words[i];
      out[i] = (bits & 0x7fffffff) > 0x7f800000 ? (bits >>> 16) | 0x40 : ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
    }
  },
  readAll(bytes, at, target, accumulate) {
    const halves = halvesOf(bytes, at, target.length);
    const scratch = new Float32Array(1);
    const word = new Uint32Array(scratch.buffer);
    for (let i = 0; i < halves.length; i++) {
      word[0] = halves[i] << 16;
      target[i] = accumulate ? target[i] + scratch[0] : scratch[0];
    }
  },
};

/** float → IEEE half bits (round to nearest even, saturating at ±65504, subnormals kept) */
export function toFloat16(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(value);
  if (magnitude >= 65520) return sign | 0x7bff; // saturate (65520 would round to infinity)
  if (magnitude < 2 ** -24 / 2) return sign; // rounds to zero
  let exponent = Math.floor(Math.log2(magnitude));
  if (exponent < -14) {
    // subnormal: units of 2^-24
    const units = roundEven(magnitude / 2 ** -24);
    return sign | units;
  }
  let mantissa = roundEven((magnitude / 2 ** exponent - 1) * 1024);
  if (mantissa === 1024) {
    mantissa = 0;
    exponent++;
  }
  if (exponent > 15) return sign | 0x7bff;
  return sign | ((exponent + 15) << 10) | mantissa;
}

export function fromFloat16(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const mantissa = bits & 0x3ff;
  if (exponent === 0) return sign * mantissa * 2 ** -24;
  if (exponent === 31) return mantissa ? NaN : sign * Infinity;
  return sign * (1 + mantissa / 1024) * 2 ** (exponent - 15);
}

function roundEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

// fp16 → float by table: 65,536 entries, made on first use
let halfTable: Float32Array | null = null;
function halves(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let bits = 0; bits < 65536; bits++) halfTable[bits] = fromFloat16(bits);
  }
  return halfTable;
}

/** float32 bits → fp16 bits, by integer arithmetic (round to nearest even; saturating; F. Giesen's method) */
const magic = new Float32Array([2 ** -14 * 2 ** -10 * 2 ** 23 * 0.5 * 2]); // 0.5 · 2^-1, the subnormal rounding constant
const magicWord = new Uint32Array(magic.buffer)[0];
const subnormal = new Float32Array(1);
const subnormalWord = new Uint32Array(subnormal.buffer);
function halfBits(word: number): number {
  const sign = (word >>> 16) & 0x8000;
  let u = word & 0x7fffffff;
  if (u > 0x7f800000) return 0x7e00; // NaN
  if (u >= 0x477ff000) return sign | 0x7bff; // ≥ 65520 (rounds past the largest half): saturate
  if (u < 0x38800000) {
    // subnormal half: let the float adder round, as the method does
    subnormalWord[0] = u;
    subnormal[0] += magic[0];
    return sign | ((subnormalWord[0] - magicWord) & 0xffff);
  }
  const odd = (u >>> 13) & 1;
  u += ((15 - 127) << 23) + 0xfff + odd;
  return sign | (u >>> 13);
}

export const float16: ValueCodec = {
  name: 'fp16',
  bytes: 2,
  write: (view, offset, value) => view.setUint16(offset, toFloat16(value), true),
  read: (view, offset) => halves()[view.getUint16(offset, true)],
  round: (value) => fromFloat16(toFloat16(value)),
  writeAll(values, bytes, at) {
    const words = wordsOf(values);
    const out = halvesOf(bytes, at, values.length);
    for (let i = 0; i < words.length; i++) out[i] = halfBits(words[i]);
  },
  readAll(bytes, at, target, accumulate) {
    const table = halves();
    const stored = halvesOf(bytes, at, target.length);
    if (accumulate) for (let i = 0; i < stored.length; i++) target[i] += table[stored[i]];
    else for (let i = 0; i < stored.length; i++) target[i] = table[stored[i]];
  },
};

export const codecs: Record<string, ValueCodec> = { fp32: float32, fp16: float16, bf16: bfloat16 };
