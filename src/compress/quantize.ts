// The quantising hooks: QSGD's stochastic levels, and EF-signSGD's scaled signs.

import { kernel } from '../kernels/registry.js';
import { Random, mixSeed } from '../tensor/random.js';
import type { Hook } from './hook.js';
import { damaged, stateOf, view } from './payload.js';

/**
 * QSGD (Alistarh et al. 2017): per bucket, the L2 norm as float32, then each value as a sign
 * bit and a level ℓ ∈ 0..s (s = 2^(b−1) − 1) chosen stochastically so E[ℓ/s·norm] = |v|: unbiased.
 */
export function qsgd(bits: number, size: number, seed: number, bucket = 512): Hook {
  const random = new Random(mixSeed(0x95d, seed));
  const bucketBytes = (count: number) => 4 + Math.ceil((count * bits) / 8);
  // the exact encoded size: full buckets, then the last, shorter one
  const maxBytes = (n: number) => 4 + Math.floor(n / bucket) * bucketBytes(bucket) + (n % bucket ? bucketBytes(n % bucket) : 0);
  return {
    ...stateOf({}, random),
    name: `qsgd:${bits}`,
    appliesMomentum: false,
    maxBytes,
    encodeShare(values, start, end, out, step) {
      return this.encode(values.subarray(start, end), out, step);
    },
    encode(gradient, out) {
      view(out).setUint32(0, gradient.length, true);
      // one random number a value, drawn by the kernel from the stream's position
      kernel('qsgdEncode')(gradient, bits, bucket, out.subarray(4), random.getState());
      random.skip(gradient.length);
      return maxBytes(gradient.length);
    },
    decode(payload, length, target, accumulate) {
      const n = view(payload).getUint32(0, true);
      if (n !== target.length || length !== maxBytes(n)) throw damaged(this.name, `${length} bytes for ${n} values`);
      kernel('qsgdDecode')(payload.subarray(4, length), bits, bucket, target, accumulate);
    },
  };
}

/** EF-signSGD (Karimireddy et al. 2019): signs scaled by the mean magnitude, with error feedback. */
export function sign(size: number): Hook {
  const residual = new Float32Array(size);
  return {
    residual,
    ...stateOf({ residual }, null),
    name: 'sign',
    appliesMomentum: false,
    maxBytes: (n) => 8 + Math.ceil(n / 8),
    // a share owes its own range of the residual
    encodeShare: (values, start, end, out) => encodeSigns(values.subarray(start, end), residual.subarray(start, end), out),
    encode: (gradient, out) => encodeSigns(gradient, residual, out),
    decode(payload, length, target, accumulate) {
      const v = view(payload);
      const n = v.getUint32(0, true);
      if (n !== target.length || length !== 8 + Math.ceil(n / 8)) throw damaged(this.name, `${length} bytes for ${n} values`);
      kernel('signDecode')(payload.subarray(8, length), v.getFloat32(4, true), target, accumulate);
    },
  };
}

function encodeSigns(gradient: Float32Array, residual: Float32Array, out: Uint8Array): number {
  const n = gradient.length;
  const v = view(out);
  v.setUint32(0, n, true);
  v.setFloat32(4, kernel('signEncode')(gradient, residual, out.subarray(8)), true);
  return 8 + Math.ceil(n / 8);
}
