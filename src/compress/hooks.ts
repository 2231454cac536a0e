// The hooks. Payloads are little-endian; every one starts with a uint32: the element count
// (dense hooks) or the number of (index, value) pairs (sparse hooks), checked on decode.

import { Random, mixSeed } from '../tensor/random.js';
import { badOption } from '../errors.js';
import { float32, codecs } from './codecs.js';
import type { Hook, StepInfo, ValueCodec } from './hook.js';

function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function damaged(hook: string, problem: string): Error {
  return badOption('payload', problem, `a payload the ${hook} hook wrote (a peer sent garbage, or the ranks use different --compress)`);
}

/** Every value, in `codec` (fp32: the identity). */
export function dense(codec: ValueCodec): Hook {
  return {
    name: codec === float32 ? 'none' : codec.name,
    appliesMomentum: false,
    maxBytes: (n) => 4 + n * codec.bytes,
    encode(gradient, out) {
      view(out).setUint32(0, gradient.length, true);
      codec.writeAll(gradient, out, 4);
      return 4 + gradient.length * codec.bytes;
    },
    decode(payload, length, target, accumulate) {
      const n = view(payload).getUint32(0, true);
      if (n !== target.length || length !== 4 + n * codec.bytes) throw damaged(this.name, `${length} bytes for ${n} values of ${target.length}`);
      codec.readAll(payload, 4, target, accumulate);
    },
  };
}

/** saveState/loadState over a hook's arrays and its random stream (whose 32-bit state travels as a float's bits). */
function stateOf(arrays: Record<string, Float32Array>, random: Random | null): Pick<Hook, 'saveState' | 'loadState'> {
  const position = new Uint32Array(1);
  return {
    saveState() {
      if (!random) return { ...arrays };
      position[0] = random.getState();
      return { ...arrays, random: new Float32Array(position.buffer) };
    },
    loadState(state) {
      for (const [name, values] of Object.entries(arrays)) if (state[name]) values.set(state[name]);
      if (random && state.random) random.setState(new Uint32Array(state.random.buffer, state.random.byteOffset, 1)[0]);
    },
  };
}

/** Writes (index, value) pairs; shared by top-k and random-k. */
function writePairs(out: Uint8Array, indices: Uint32Array, values: Float32Array, count: number, codec: ValueCodec): number {
  const v = view(out);
  v.setUint32(0, count, true);
  const stride = 4 + codec.bytes;
  for (let j = 0; j < count; j++) {
    v.setUint32(4 + j * stride, indices[j], true);
    codec.write(v, 8 + j * stride, values[j]);
  }
  return 4 + count * stride;
}

function decodePairs(name: string, payload: Uint8Array, length: number, target: Float32Array, accumulate: boolean, codec: ValueCodec): void {
  const v = view(payload);
  const count = v.getUint32(0, true);
  const stride = 4 + codec.bytes;
  if (length !== 4 + count * stride) throw damaged(name, `${length} bytes for ${count} pairs`);
  if (!accumulate) target.fill(0);
  for (let j = 0; j < count; j++) {
    const index = v.getUint32(4 + j * stride, true);
    if (index >= target.length) throw damaged(name, `index ${index} beyond ${target.length} values`);
    target[index] += codec.read(v, 8 + j * stride);
  }
}

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
  const magnitudes = new Float32Array(Math.min(size, 4096));
  const chosen = new Uint32Array(size);
  const values = new Float32Array(size);
  const random = new Random(mixSeed(0x70b, size));
  const densityAt = (epoch: number) => {
    if (!(o.dgc && o.warmupEpochs > 0) || epoch >= o.warmupEpochs) return o.density;
    // 25% → density, exponentially, as DGC's warm-up does
    return Math.max(o.density, 0.25 * (o.density / 0.25) ** (epoch / o.warmupEpochs));
  };
  let candidates = new Uint32Array(1024);
  let scratch = new Float32Array(1024);
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
      if (momentum) {
        for (let i = 0; i < n; i++) {
          const u = (momentum[i] = o.momentum * momentum[i] + scale * gradient[i]);
          residual[i] += u;
        }
      } else for (let i = 0; i < n; i++) residual[i] += scale * gradient[i];
      const k = Math.max(1, Math.min(n, Math.ceil(densityAt(step.epoch) * n)));
      // the threshold from a sample, a little below the k-th largest so the candidates cover k
      const samples = magnitudes.length;
      for (let s = 0; s < samples; s++) magnitudes[s] = Math.abs(residual[random.below(n)]);
      magnitudes.sort();
      const rank = Math.min(samples - 1, Math.floor(samples * (1 - (2 * k) / n)));
      let threshold = k >= n / 2 ? 0 : magnitudes[Math.max(0, rank)];
      let count = 0;
      for (;;) {
        count = 0;
        for (let i = 0; i < n; i++) {
          if (Math.abs(residual[i]) >= threshold) {
            if (count === candidates.length) {
              const grown = new Uint32Array(candidates.length * 2);
              grown.set(candidates);
              candidates = grown;
            }
            candidates[count++] = i;
          }
        }
        if (count >= k || threshold === 0) break;
        threshold /= 4; // the sample misjudged: widen
      }
      // the k largest candidates, exactly: the k-th largest magnitude by quickselect, then a scan
      // in index order (so the pairs come out sorted) taking values above it, then ties
      const taken = Math.min(k, count);
      if (scratch.length < count) scratch = new Float32Array(count * 2);
      for (let j = 0; j < count; j++) scratch[j] = -Math.abs(residual[candidates[j]]);
      const kth = -selectSmallest(scratch, count, taken - 1);
      let above = 0;
      for (let j = 0; j < count; j++) if (Math.abs(residual[candidates[j]]) > kth) above++;
      let ties = taken - above;
      let written = 0;
      for (let j = 0; j < count && written < taken; j++) {
        const magnitude = Math.abs(residual[candidates[j]]);
        if (magnitude > kth || (magnitude === kth && ties-- > 0)) chosen[written++] = candidates[j];
      }
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

/** The (rank)-th smallest of values[0, count) (0-based), by quickselect; reorders values. */
function selectSmallest(values: Float32Array, count: number, rank: number): number {
  let low = 0;
  let high = count - 1;
  while (low < high) {
    const pivot = values[(low + high) >> 1];
    let i = low;
    let j = high;
    while (i <= j) {
      while (values[i] < pivot) i++;
      while (values[j] > pivot) j--;
      if (i <= j) {
        const t = values[i];
        values[i] = values[j];
        values[j] = t;
        i++;
        j--;
      }
    }
    if (rank <= j) high = j;
    else if (rank >= i) low = i;
    else return values[rank];
  }
  return values[rank];
}

/** Random-k: k coordinates chosen uniformly, scaled by n/k so the estimate is unbiased. No error feedback. */
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

export { codecs };
