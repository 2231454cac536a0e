// First-order and total Sobol indices of a field, per cell, streamed one pick-freeze group at a
// time by Martinez's estimator (Martinez 2011; Baudin et al. 2016; as Melissa computes them).
//
// A group is p + 2 runs: A and B, two independent draws of the p inputs, and for each input k a
// run C_k that takes input k from B and every other input from A. Then
//   S_k  = corr(Y_B, Y_Ck)        (they share input k only)
//   ST_k = 1 − corr(Y_A, Y_Ck)    (they share every input but k)
// Each correlation is a streamed Pearson coefficient (Welford means, variances and
// co-moments), so a group updates the indices and is forgotten. Confidence intervals come from
// Fisher's transformation: atanh(r) is about normal with standard deviation 1/√(n − 3).

const Z95 = 1.959963984540054;

export interface SobolIndices {
  /** [input][cell] */
  first: Float64Array[];
  total: Float64Array[];
  /** 95% intervals, [input][cell]: lower and upper bounds of each index. */
  firstLow: Float64Array[];
  firstHigh: Float64Array[];
  totalLow: Float64Array[];
  totalHigh: Float64Array[];
}

export class Sobol {
  /** Groups seen. */
  count = 0;
  private readonly meanA: Float64Array;
  private readonly meanB: Float64Array;
  private readonly m2A: Float64Array;
  private readonly m2B: Float64Array;
  private readonly meanC: Float64Array[];
  private readonly m2C: Float64Array[];
  private readonly coBC: Float64Array[];
  private readonly coAC: Float64Array[];

  constructor(readonly inputs: number, readonly cells: number) {
    if (!(inputs >= 1)) throw new RangeError(`Sobol indices need at least one input, not ${inputs}`);
    const field = () => new Float64Array(cells);
    const perInput = () => Array.from({ length: inputs }, field);
    this.meanA = field();
    this.meanB = field();
    this.m2A = field();
    this.m2B = field();
    this.meanC = perInput();
    this.m2C = perInput();
    this.coBC = perInput();
    this.coAC = perInput();
  }

  /** One group's outputs: A's, B's, and C_k's for each input k, all of `cells` values. */
  add(a: ArrayLike<number>, b: ArrayLike<number>, c: readonly ArrayLike<number>[]): void {
    if (c.length !== this.inputs) throw new RangeError(`a pick-freeze group of ${c.length + 2} runs where ${this.inputs} inputs need ${this.inputs + 2}`);
    for (const run of [a, b, ...c]) if (run.length !== this.cells) throw new RangeError(`a run of ${run.length} values where the field has ${this.cells} cells`);
    const n = ++this.count;
    for (let i = 0; i < this.cells; i++) {
      const dA = a[i] - this.meanA[i];
      const dB = b[i] - this.meanB[i];
      const meanA = (this.meanA[i] += dA / n);
      const meanB = (this.meanB[i] += dB / n);
      this.m2A[i] += dA * (a[i] - meanA);
      this.m2B[i] += dB * (b[i] - meanB);
      for (let k = 0; k < this.inputs; k++) {
        const y = c[k][i];
        const dC = y - this.meanC[k][i];
        const meanC = (this.meanC[k][i] += dC / n);
        this.m2C[k][i] += dC * (y - meanC);
        // co-moments: the old deviation of one variable times the new deviation of the other
        this.coBC[k][i] += dC * (b[i] - meanB);
        this.coAC[k][i] += dC * (a[i] - meanA);
      }
    }
  }

  indices(): SobolIndices {
    const n = this.count;
    const half = n > 3 ? Z95 / Math.sqrt(n - 3) : Infinity;
    const result: SobolIndices = { first: [], total: [], firstLow: [], firstHigh: [], totalLow: [], totalHigh: [] };
    for (let k = 0; k < this.inputs; k++) {
      const first = new Float64Array(this.cells);
      const total = new Float64Array(this.cells);
      const firstLow = new Float64Array(this.cells);
      const firstHigh = new Float64Array(this.cells);
      const totalLow = new Float64Array(this.cells);
      const totalHigh = new Float64Array(this.cells);
      for (let i = 0; i < this.cells; i++) {
        const rB = this.coBC[k][i] / Math.sqrt(this.m2B[i] * this.m2C[k][i]);
        const rA = this.coAC[k][i] / Math.sqrt(this.m2A[i] * this.m2C[k][i]);
        first[i] = rB;
        total[i] = 1 - rA;
        firstLow[i] = Math.tanh(Math.atanh(rB) - half);
        firstHigh[i] = Math.tanh(Math.atanh(rB) + half);
        totalLow[i] = 1 - Math.tanh(Math.atanh(rA) + half);
        totalHigh[i] = 1 - Math.tanh(Math.atanh(rA) - half);
      }
      result.first.push(first);
      result.total.push(total);
      result.firstLow.push(firstLow);
      result.firstHigh.push(firstHigh);
      result.totalLow.push(totalLow);
      result.totalHigh.push(totalHigh);
    }
    return result;
  }
}
