// In-transit statistics of one field: per cell, updated one sample (a whole field at one
// timestep of one run) at a time, in any order, never storing the samples. Float64
// accumulators. Mean and central moments up to the fourth by the one-pass updates of Welford
// (1962) and Pébay (2008), minimum and maximum, the probability of exceeding each threshold,
// and quantiles by Robbins–Monro stochastic approximation.

/** What to keep for a field, besides mean, variance, minimum and maximum (always). */
export interface MomentOptions {
  /** Third and fourth central moments (skewness, kurtosis). */
  higher?: boolean;
  /** Probabilities of exceeding each of these values. */
  thresholds?: readonly number[];
  /** Quantile levels in (0, 1), each estimated by stochastic approximation. */
  quantiles?: readonly number[];
}

/**
 * Streamed moments of `cells` values (one timestep of one field). `add` takes one sample of all
 * of them; the readers return arrays per cell.
 */
export class Moments {
  count = 0;
  readonly mean: Float64Array;
  /** Σ (x − mean)², and with `higher` the third and fourth powers. */
  readonly m2: Float64Array;
  readonly m3: Float64Array | null;
  readonly m4: Float64Array | null;
  readonly min: Float64Array;
  readonly max: Float64Array;
  /** Per threshold k, cells × (samples above it). */
  readonly above: Float64Array[];
  /** Per quantile level k, the current estimate per cell. */
  readonly quantile: Float64Array[];
  readonly thresholds: readonly number[];
  readonly levels: readonly number[];

  constructor(readonly cells: number, options: MomentOptions = {}) {
    this.mean = new Float64Array(cells);
    this.m2 = new Float64Array(cells);
    this.m3 = options.higher ? new Float64Array(cells) : null;
    this.m4 = options.higher ? new Float64Array(cells) : null;
    this.min = new Float64Array(cells).fill(Infinity);
    this.max = new Float64Array(cells).fill(-Infinity);
    this.thresholds = options.thresholds ?? [];
    this.levels = options.quantiles ?? [];
    for (const level of this.levels) if (!(level > 0 && level < 1)) throw new RangeError(`quantile level ${level}: give a level between 0 and 1`);
    this.above = this.thresholds.map(() => new Float64Array(cells));
    this.quantile = this.levels.map(() => new Float64Array(cells));
  }

  /** One sample of every cell. */
  add(x: ArrayLike<number>): void {
    if (x.length !== this.cells) throw new RangeError(`a sample of ${x.length} values where the field has ${this.cells} cells`);
    const n1 = this.count;
    const n = ++this.count;
    const { mean, m2, m3, m4, min, max } = this;
    for (let i = 0; i < this.cells; i++) {
      const v = x[i];
      const delta = v - mean[i];
      const deltaN = delta / n;
      const term = delta * deltaN * n1;
      if (m3 && m4) {
        const deltaN2 = deltaN * deltaN;
        m4[i] += term * deltaN2 * (n * n - 3 * n + 3) + 6 * deltaN2 * m2[i] - 4 * deltaN * m3[i];
        m3[i] += term * deltaN * (n - 2) - 3 * deltaN * m2[i];
      }
      m2[i] += term;
      mean[i] += deltaN;
      if (v < min[i]) min[i] = v;
      if (v > max[i]) max[i] = v;
    }
    for (let k = 0; k < this.thresholds.length; k++) {
      const t = this.thresholds[k];
      const above = this.above[k];
      for (let i = 0; i < this.cells; i++) if (x[i] > t) above[i]++;
    }
    this.updateQuantiles(x, n);
  }

  /**
   * Robbins–Monro: q ← q + γₙ (α − 1[x ≤ q]), started at the first sample. The step is scaled by
   * the cell's spread so far (its standard deviation, as the density at the quantile is unknown)
   * and decays as n^−0.75, with the iterates averaged (Polyak–Ruppert) — which converges at the
   * optimal rate whatever the scale guess.
   */
  private readonly raw: Float64Array[] = [];
  private updateQuantiles(x: ArrayLike<number>, n: number): void {
    if (this.levels.length === 0) return;
    if (this.raw.length === 0) for (const _ of this.levels) this.raw.push(new Float64Array(this.cells));
    const rate = Math.pow(n, -0.75);
    for (let k = 0; k < this.levels.length; k++) {
      const level = this.levels[k];
      const raw = this.raw[k];
      const averaged = this.quantile[k];
      for (let i = 0; i < this.cells; i++) {
        if (n === 1) {
          raw[i] = x[i];
          averaged[i] = x[i];
          continue;
        }
        const spread = Math.sqrt(this.m2[i] / (n - 1));
        raw[i] += spread * rate * (level - (x[i] <= raw[i] ? 1 : 0));
        averaged[i] += (raw[i] - averaged[i]) / n;
      }
    }
  }

  /** Unbiased (n − 1) variance per cell; NaN below two samples. */
  variance(): Float64Array {
    const n = this.count;
    return this.m2.map((m) => (n > 1 ? m / (n - 1) : NaN));
  }

  /** Sample skewness g₁ = √n M₃ / M₂^{3/2} per cell (needs `higher`). */
  skewness(): Float64Array {
    const { m3 } = this.requireHigher();
    return m3.map((m, i) => (Math.sqrt(this.count) * m) / Math.pow(this.m2[i], 1.5));
  }

  /** Sample excess kurtosis n M₄ / M₂² − 3 per cell (needs `higher`). */
  kurtosis(): Float64Array {
    const { m4 } = this.requireHigher();
    return m4.map((m, i) => (this.count * m) / (this.m2[i] * this.m2[i]) - 3);
  }

  /** The share of samples above threshold k, per cell. */
  exceedance(k: number): Float64Array {
    return this.above[k].map((c) => c / this.count);
  }

  private requireHigher(): { m3: Float64Array; m4: Float64Array } {
    if (!this.m3 || !this.m4) throw new Error('third and fourth moments were not asked for (MomentOptions.higher)');
    return { m3: this.m3, m4: this.m4 };
  }
}

/**
 * The streamed covariance of two fields, cell by cell: the co-moment Σ (x − x̄)(y − ȳ),
 * updated with each pair of samples (the same run and timestep of both).
 */
export class Covariance {
  count = 0;
  readonly meanX: Float64Array;
  readonly meanY: Float64Array;
  readonly comoment: Float64Array;

  constructor(readonly cells: number) {
    this.meanX = new Float64Array(cells);
    this.meanY = new Float64Array(cells);
    this.comoment = new Float64Array(cells);
  }

  add(x: ArrayLike<number>, y: ArrayLike<number>): void {
    if (x.length !== this.cells || y.length !== this.cells) throw new RangeError(`a pair of ${x.length} and ${y.length} values where the fields have ${this.cells} cells`);
    const n = ++this.count;
    for (let i = 0; i < this.cells; i++) {
      const dx = x[i] - this.meanX[i];
      this.meanX[i] += dx / n;
      this.meanY[i] += (y[i] - this.meanY[i]) / n;
      this.comoment[i] += dx * (y[i] - this.meanY[i]);
    }
  }

  /** Unbiased covariance per cell. */
  covariance(): Float64Array {
    return this.comoment.map((c) => (this.count > 1 ? c / (this.count - 1) : NaN));
  }
}
