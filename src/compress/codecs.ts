// Value codecs: IEEE float32, IEEE half (fp16) and bfloat16, little-endian. The 16-bit ones
// round to nearest, ties to even; fp16 saturates to ±65504 rather than overflow to infinity.

import type { ValueCodec } from './hook.js';

const scratch = new DataView(new ArrayBuffer(4));

export const float32: ValueCodec = {
  name: 'fp32',
  bytes: 4,
  write: (view, offset, value) => view.setFloat32(offset, value, true),
  read: (view, offset) => view.getFloat32(offset, true),
  round: Math.fround,
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

export const float16: ValueCodec = {
  name: 'fp16',
  bytes: 2,
  write: (view, offset, value) => view.setUint16(offset, toFloat16(value), true),
  read: (view, offset) => fromFloat16(view.getUint16(offset, true)),
  round: (value) => fromFloat16(toFloat16(value)),
};

export const codecs: Record<string, ValueCodec> = { fp32: float32, fp16: float16, bf16: bfloat16 };
