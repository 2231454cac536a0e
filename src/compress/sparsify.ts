// The sparsifying hooks: top-k with error feedback and Deep Gradient Compression's refinements,
// and random-k. Both send (index, value) pairs.

import { kernel } from '../kernels/registry.js';
import { Random, mixSeed } from '../tensor/random.js';
import { float32 } from './codecs.js';
import type { Hook, StepInfo, ValueCodec } from './hook.js';
import { decodePairs, stateOf, writePairs } from './payload.js';

export interface TopkOptions {
  density: number;
  codec: ValueCodec;
  /** Deep Gradient Compression's refinements (Lin et al. 2018); off: plain error feedback. */
  dgc: boolean;
  momentum: number; // for DGC's momentum correction
  clipNorm: number; // local gradient clipping threshold (0: none)
  warmupEpochs: number; // density falls exponentially from 25% to `density` over these epochs
}

/**
 * Top-k with error feedback: what is not sent is kept and added next step. With DGC, momentum
 * correction accumulates the momentum-corrected gradient u = m·u + g instead of g, momentum
 * factor masking clears u where values were sent, gradients are clipped locally first, and the
 * density warms up from 25%.
 */
export function topk(o: TopkOptions, size: number): Hook {
  const residual = new Float32Array(size); // v: accumulated, not yet sent
  const momentum = o.dgc && o.momentum > 0 ? new Float32Array(size) : null; // u
  const chosen = new Uint32Array(size);
  const values = new Float32Array(size);
  const random = new Random(mixSeed(0x70b, size));
  const densityAt = (epoch: number) => {
    if (!(o.dgc && o.warmupEpochs > 0) || epoch >= o.warmupEpochs) return o.density;
    // 25% → density, exponentially, as DGC's warm-up does
    return Math.max(o.density, 0.25 * (o.density / 0.25) ** (epoch / o.warmupEpochs));
  };
  return {
    residual,
    ...stateOf({ residual, ...(momentum ? { momentum } : {}) }, random),
    name: `topk:${o.density}${o.dgc ? '' : ',nodgc'}${o.clipNorm ? `,clip=${o.clipNorm}` : ''}${o.codec === float32 ? '' : `+${o.codec.name}`}`,
    appliesMomentum: momentum !== null,
    maxBytes: (n) => 4 + n * (4 + o.codec.bytes),
    encode(gradient, out, step: StepInfo) {
      const n = gradient.length;
      let scale = 1;
      if (o.clipNorm > 0) {
        let squares = 0;
        for (let i = 0; i < n; i++) squares += gradient[i] * gradient[i];
        const norm = Math.sqrt(squares);
        if (norm > o.clipNorm) scale = o.clipNorm / norm;
      }
      kernel('dgcAccumulate')(gradient, scale, o.momentum, momentum, residual);
      const k = Math.max(1, Math.min(n, Math.ceil(densityAt(step.epoch) * n)));
      const taken = kernel('topkIndices')(residual, k, chosen);
      for (let j = 0; j < taken; j++) {
        const i = chosen[j];
        values[j] = residual[i];
        residual[i] -= o.codec.round(values[j]); // sent: no longer owed, but for the codec's rounding
        if (momentum) momentum[i] = 0; // momentum factor masking
      }
      return writePairs(out, chosen, values, taken, o.codec);
    },
    decode(payload, length, target, accumulate) {
      decodePairs(this.name, payload, length, target, accumulate, o.codec);
    },
  };
}

export function randomk(density: number, codec: ValueCodec, size: number, seed: number): Hook {
  const random = new Random(mixSeed(0x7a4d, seed));
  const chosen = new Uint32Array(size);
  const values = new Float32Array(size);
  const marks = new Uint8Array(size);
  return {
    ...stateOf({}, random),
    name: `randomk:${density}${codec === float32 ? '' : `+${codec.name}`}`,
    appliesMomentum: false,
    maxBytes: (n) => 4 + n * (4 + codec.bytes),
    encode(gradient, out) {
      const n = gradient.length;
      const k = Math.max(1, Math.min(n, Math.ceil(density * n)));
      // Floyd's sampling of k distinct indices
      let count = 0;
      for (let j = n - k; j < n; j++) {
        const t = random.below(j + 1);
        const pick = marks[t] ? j : t;
        marks[pick] = 1;
        chosen[count++] = pick;
      }
      chosen.subarray(0, count).sort();
      for (let j = 0; j < count; j++) {
        marks[chosen[j]] = 0;
        values[j] = (gradient[chosen[j]] * n) / k;
      }
      return writePairs(out, chosen, values, count, codec);
    },
    decode(payload, length, target, accumulate) {
      decodePairs(this.name, payload, length, target, accumulate, codec);
    },
  };
}
