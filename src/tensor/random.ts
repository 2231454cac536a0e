// A small seeded generator (mulberry32): deterministic across runs and machines, and its whole
// state is one 32-bit integer, so a checkpoint can carry it.

export class Random {
  private state: number;

  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** A uniform float in [0, 1). */
  next(): number {
    return this.bits() / 4294967296;
  }

  /** 32 uniform random bits, as an unsigned integer. */
  bits(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** A uniform integer in [0, bound). */
  below(bound: number): number {
    return Math.floor(this.next() * bound);
  }

  /** A standard normal sample (Box–Muller). */
  normal(): number {
    const u = 1 - this.next();
    const v = this.next();
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
  }

  fillUniform(out: Float32Array, low = -1, high = 1): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = low + (high - low) * this.next();
    return out;
  }

  getState(): number {
    return this.state;
  }

  setState(state: number): void {
    this.state = state >>> 0;
  }

  /** Moves past `count` numbers at once: each draw steps the state by one constant (the generator is counter-based),
   *  so a kernel given getState() that drew `count` numbers leaves the stream here. */
  skip(count: number): void {
    this.state = (this.state + Math.imul(count, 0x6d2b79f5)) >>> 0;
  }
}

/** Mixes several integers into one seed, so (seed, epoch) pairs give unrelated streams. */
export function mixSeed(...parts: number[]): number {
  let h = 0x811c9dc5;
  for (const part of parts) {
    h = Math.imul(h ^ (part >>> 0), 0x01000193);
    h ^= h >>> 13;
    h = Math.imul(h, 0x5bd1e995);
    h ^= h >>> 15;
  }
  return h >>> 0;
}

/**
 * A sampler of positions 0..count−1 with P(position j) ∝ 1/(j + 1)^exponent (Zipf), by binary
 * search in the cumulative weights.
 */
export function zipfSampler(count: number, exponent: number, random: Random): () => number {
  const cumulative = new Float64Array(count);
  let total = 0;
  for (let j = 0; j < count; j++) cumulative[j] = total += 1 / (j + 1) ** exponent;
  return () => {
    const u = random.next() * total;
    let low = 0;
    let high = count - 1;
    while (low < high) {
      const middle = (low + high) >> 1;
      if (cumulative[middle] < u) low = middle + 1;
      else high = middle;
    }
    return low;
  };
}
