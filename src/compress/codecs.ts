// Value codecs: IEEE float32, IEEE half (fp16) and bfloat16, little-endian. The 16-bit ones
// round to nearest, ties to even; fp16 saturates to ±65504 rather than overflow to infinity.

import { kernel } from '../kernels/registry.js';
import { halfValue } from '../kernels/reference-codecs.js';
import type { ValueCodec } from './hook.js';

const scratch = new DataView(new ArrayBuffer(4));

// (typed arrays are little-endian on every platform Node runs on, as the payload format is)
const halvesOf = (bytes: Uint8Array, at: number, count: number) => {
  // a Uint16Array view needs 2-byte alignment; payload buffers are allocated so that it holds
  if ((bytes.byteOffset + at) % 2) throw new Error('unaligned 16-bit payload');
  return new Uint16Array(bytes.buffer, bytes.byteOffset + at, count);
};

export const float32: ValueCodec = {
  name: 'fp32',
  bytes: 4,
  code: 0,
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
  code: 2,
  round: (value) => fromBfloat16(toBfloat16(value)),
  writeAll(values, bytes, at) {
    kernel('bf16Encode')(values, halvesOf(bytes, at, values.length), null);
  },
  readAll(bytes, at, target, accumulate) {
    kernel('bf16Decode')(halvesOf(bytes, at, target.length), target, accumulate);
  },
};

export function toFloat16(value: number): number {
  if (Number.isNaN(value)) return 0x7e00;
  const sign = value < 0 || Object.is(value, -0) ? 0x8000 : 0;
  const magnitude = Math.abs(value);
  // saturate: from 65520 up, the rounding would carry into an exponent of 16 (infinity)
  if (magnitude >= 65520) return sign | 0x7bff;
  let exponent = Math.floor(Math.log2(magnitude));
  // subnormal, in units of 2^-24 (up to half of one: zero); the units run on into the first normal binade's bits
  if (exponent < -14) return sign | roundEven(magnitude / 2 ** -24);
  let mantissa = roundEven((magnitude / 2 ** exponent - 1) * 1024);
  if (mantissa === 1024) {
    mantissa = 0;
    exponent++;
  }
  return sign | ((exponent + 15) << 10) | mantissa;
}

/** IEEE half bits → their value */
export const fromFloat16 = halfValue;

function roundEven(x: number): number {
  const floor = Math.floor(x);
  const fraction = x - floor;
  if (fraction > 0.5) return floor + 1;
  if (fraction < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

export const float16: ValueCodec = {
  name: 'fp16',
  bytes: 2,
  code: 1,
  round: (value) => fromFloat16(toFloat16(value)),
  writeAll(values, bytes, at) {
    kernel('fp16Encode')(values, halvesOf(bytes, at, values.length));
  },
  readAll(bytes, at, target, accumulate) {
    kernel('fp16Decode')(halvesOf(bytes, at, target.length), target, accumulate);
  },
};
