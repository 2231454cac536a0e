// The quantising hooks: QSGD's stochastic levels, and EF-signSGD's scaled signs.

import { Random, mixSeed } from '../tensor/random.js';
import type { Hook } from './hook.js';
import { damaged, stateOf, view } from './payload.js';

/**
 * QSGD (Alistarh et al. 2017): per bucket, the L2 norm as float32, then each value as a sign
 * bit and a level ℓ ∈ 0..s (s = 2^(b−1) − 1) chosen stochastically so E[ℓ/s·norm] = |v|: unbiased.
 */
export function qsgd(bits: number, size: number, seed: number, bucket = 512): Hook {
  const levels = 2 ** (bits - 1) - 1;
  const random = new Random(mixSeed(0x95d, seed));
  const bucketBytes = (count: number) => 4 + Math.ceil((count * bits) / 8);
  // the exact encoded size: full buckets, then the last, shorter one
  const maxBytes = (n: number) => 4 + Math.floor(n / bucket) * bucketBytes(bucket) + (n % bucket ? bucketBytes(n % bucket) : 0);
  return {
    ...stateOf({}, random),
    name: `qsgd:${bits}`,
    appliesMomentum: false,
    maxBytes,
    encode(gradient, out) {
      const n = gradient.length;
      const v = view(out);
      v.setUint32(0, n, true);
      let offset = 4;
      for (let start = 0; start < n; start += bucket) {
        const end = Math.min(n, start + bucket);
        let squares = 0;
        for (let i = start; i < end; i++) squares += gradient[i] * gradient[i];
        const norm = Math.fround(Math.sqrt(squares));
        v.setFloat32(offset, norm, true);
        offset += 4;
        out.fill(0, offset, offset + Math.ceil(((end - start) * bits) / 8));
        let bit = offset * 8;
        for (let i = start; i < end; i++, bit += bits) {
          const x = gradient[i];
          const scaled = norm > 0 ? (Math.abs(x) / norm) * levels : 0;
          const low = Math.floor(scaled);
          const level = Math.min(levels, low + (random.next() < scaled - low ? 1 : 0));
          const code = ((x < 0 ? 1 : 0) << (bits - 1)) | level;
          for (let b = 0; b < bits; b++) if ((code >> b) & 1) out[(bit + b) >> 3] |= 1 << ((bit + b) & 7);
        }
        offset += Math.ceil(((end - start) * bits) / 8);
      }
      return offset;
    },
    decode(payload, length, target, accumulate) {
      const v = view(payload);
      const n = v.getUint32(0, true);
      if (n !== target.length || length !== maxBytes(n)) throw damaged(this.name, `${length} bytes for ${n} values`);
      let offset = 4;
      for (let start = 0; start < n; start += bucket) {
        const end = Math.min(n, start + bucket);
        const norm = v.getFloat32(offset, true);
        offset += 4;
        let bit = offset * 8;
        for (let i = start; i < end; i++, bit += bits) {
          let code = 0;
          for (let b = 0; b < bits; b++) if (payload[(bit + b) >> 3] & (1 << ((bit + b) & 7))) code |= 1 << b;
          const level = code & levels;
          const value = ((code >> (bits - 1)) & 1 ? -1 : 1) * (level / levels) * norm;
          target[i] = accumulate ? target[i] + value : value;
        }
        offset += Math.ceil(((end - start) * bits) / 8);
      }
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
    encode(gradient, out) {
      const n = gradient.length;
      let total = 0;
      for (let i = 0; i < n; i++) {
        residual[i] += gradient[i];
        total += Math.abs(residual[i]);
      }
      const scale = Math.fround(total / n);
      const v = view(out);
      v.setUint32(0, n, true);
      v.setFloat32(4, scale, true);
      out.fill(0, 8, 8 + Math.ceil(n / 8));
      for (let i = 0; i < n; i++) {
        const negative = residual[i] < 0;
        if (negative) out[8 + (i >> 3)] |= 1 << (i & 7);
        residual[i] -= negative ? -scale : scale; // what was not sent stays owed
      }
      return 8 + Math.ceil(n / 8);
    },
    decode(payload, length, target, accumulate) {
      const v = view(payload);
      const n = v.getUint32(0, true);
      if (n !== target.length || length !== 8 + Math.ceil(n / 8)) throw damaged(this.name, `${length} bytes for ${n} values`);
      const scale = v.getFloat32(4, true);
      for (let i = 0; i < n; i++) {
        const value = payload[8 + (i >> 3)] & (1 << (i & 7)) ? -scale : scale;
        target[i] = accumulate ? target[i] + value : value;
      }
    },
  };
}
