// The in-transit statistics against independent oracles: two-pass sums over the stored samples
// (which the streamed estimators never keep), the Ishigami function's closed-form Sobol
// indices, and the known quantiles of uniform and normal streams.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../tensor/random.js';
import { Design } from './design.js';
import { Covariance, Moments } from './moments.js';
import { Sobol } from './sobol.js';

const shuffled = <T>(items: T[], random: Random): T[] => {
  const out = [...items];
  for (let i = out.length - 1; i > 0; i--) {
    const j = random.below(i + 1);
    [out[i], out[j]] = [out[j], out[i]];
  }
  return out;
};

const relative = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-300);

// samples of 5 cells far from zero (a large mean over a small spread is where one-pass sums lose digits)
function samples(count: number, random: Random): Float64Array[] {
  return Array.from({ length: count }, () => Float64Array.from({ length: 5 }, (_, i) => 1e4 * (i + 1) + Math.pow(random.normal(), 3) + (i === 4 ? random.next() : 0)));
}

// the oracle: two passes over stored samples, in the order given
function twoPass(xs: Float64Array[], cell: number) {
  const n = xs.length;
  const mean = xs.reduce((s, x) => s + x[cell], 0) / n;
  const central = (p: number) => xs.reduce((s, x) => s + Math.pow(x[cell] - mean, p), 0);
  return { mean, variance: central(2) / (n - 1), m2: central(2), m3: central(3), m4: central(4) };
}

test('streamed mean, variance and higher moments equal a two-pass computation over the stored samples, in any arrival order', () => {
  const random = new Random(7);
  const xs = samples(2000, random);
  for (let order = 0; order < 3; order++) {
    const stream = order === 0 ? xs : shuffled(xs, random);
    const moments = new Moments(5, { higher: true });
    for (const x of stream) moments.add(x);
    const variance = moments.variance();
    for (let cell = 0; cell < 5; cell++) {
      const oracle = twoPass(xs, cell);
      assert.ok(relative(moments.mean[cell], oracle.mean) < 1e-12, `mean of cell ${cell}: ${moments.mean[cell]} vs ${oracle.mean}`);
      assert.ok(relative(variance[cell], oracle.variance) < 1e-12, `variance of cell ${cell}: ${variance[cell]} vs ${oracle.variance}`);
      assert.ok(relative(moments.m3![cell], oracle.m3) < 1e-9, `third moment of cell ${cell}: ${moments.m3![cell]} vs ${oracle.m3}`);
      assert.ok(relative(moments.m4![cell], oracle.m4) < 1e-10, `fourth moment of cell ${cell}: ${moments.m4![cell]} vs ${oracle.m4}`);
      const n = xs.length;
      assert.ok(relative(moments.skewness()[cell], (Math.sqrt(n) * oracle.m3) / Math.pow(oracle.m2, 1.5)) < 1e-9);
      assert.ok(relative(moments.kurtosis()[cell], (n * oracle.m4) / (oracle.m2 * oracle.m2) - 3) < 1e-10);
    }
  }
});

test('streamed covariance between two fields equals a two-pass computation, in any arrival order', () => {
  const random = new Random(8);
  const xs = samples(1500, random);
  // y depends on x (a covariance to find) plus its own noise
  const ys = xs.map((x) => x.map((v, i) => -3 * v + 5e3 * i + random.normal()));
  const pairs = xs.map((x, k) => [x, ys[k]] as const);
  for (let order = 0; order < 3; order++) {
    const covariance = new Covariance(5);
    for (const [x, y] of order === 0 ? pairs : shuffled(pairs, random)) covariance.add(x, y);
    const streamed = covariance.covariance();
    for (let cell = 0; cell < 5; cell++) {
      const mx = xs.reduce((s, x) => s + x[cell], 0) / xs.length;
      const my = ys.reduce((s, y) => s + y[cell], 0) / ys.length;
      const oracle = xs.reduce((s, x, k) => s + (x[cell] - mx) * (ys[k][cell] - my), 0) / (xs.length - 1);
      assert.ok(relative(streamed[cell], oracle) < 1e-12, `cell ${cell}: ${streamed[cell]} vs ${oracle}`);
    }
  }
});

test('minimum, maximum and exceedance probabilities are those of the stored samples', () => {
  const random = new Random(9);
  const xs = samples(500, random);
  const thresholds = [2e4, 3e4 + 1, 5e4 + 0.5];
  const moments = new Moments(5, { thresholds });
  for (const x of xs) moments.add(x);
  for (let cell = 0; cell < 5; cell++) {
    const column = xs.map((x) => x[cell]);
    assert.equal(moments.min[cell], Math.min(...column));
    assert.equal(moments.max[cell], Math.max(...column));
    thresholds.forEach((t, k) => assert.equal(moments.exceedance(k)[cell], column.filter((v) => v > t).length / column.length, `cell ${cell}, threshold ${t}`));
  }
  // a threshold inside the spread of cell 2, so that the count is neither 0 nor all
  assert.ok(moments.exceedance(1)[2] > 0.05 && moments.exceedance(1)[2] < 0.95);
  // exceeding is strictly above: a value equal to the threshold does not count
  const exact = new Moments(1, { thresholds: [2] });
  for (const v of [1, 2, 2, 3]) exact.add([v]);
  assert.deepEqual([...exact.exceedance(0)], [0.25]);
  // what cannot be, said
  assert.throws(() => moments.add(new Float64Array(4)), /a sample of 4 values where the field has 5 cells/);
  assert.throws(() => moments.skewness(), /third and fourth moments were not asked for/);
  assert.throws(() => new Covariance(2).add([1, 2], [1]), /a pair of 2 and 1 values where the fields have 2 cells/);
});

test('quantiles by stochastic approximation: the 0.9 quantile of a U(0, 1) stream within 0.01 after 10⁵ samples, and of a normal one at its own scale', () => {
  const random = new Random(10);
  const moments = new Moments(2, { quantiles: [0.9, 0.5] });
  const x = new Float64Array(2);
  for (let i = 0; i < 1e5; i++) {
    x[0] = random.next();
    x[1] = 1000 + 50 * random.normal();
    moments.add(x);
  }
  assert.ok(Math.abs(moments.quantile[0][0] - 0.9) < 0.01, `U(0, 1): ${moments.quantile[0][0]}`);
  assert.ok(Math.abs(moments.quantile[1][0] - 0.5) < 0.01, `U(0, 1) median: ${moments.quantile[1][0]}`);
  // N(1000, 50²): the 0.9 quantile is 1000 + 50 · 1.2816
  assert.ok(Math.abs(moments.quantile[0][1] - (1000 + 50 * 1.2815515655)) < 0.5, `normal: ${moments.quantile[0][1]}`);
  assert.ok(Math.abs(moments.quantile[1][1] - 1000) < 0.5, `normal median: ${moments.quantile[1][1]}`);
  assert.throws(() => new Moments(1, { quantiles: [1] }), /quantile level 1: give a level between 0 and 1/);
  assert.throws(() => new Moments(1, { quantiles: [0] }), /quantile level 0: give a level between 0 and 1/);
});

test('pick-freeze design: C_k takes input k from B and every other input from A; runs are the same whenever asked', () => {
  const design = new Design([
    { name: 'a', distribution: { kind: 'uniform', low: 0, high: 1 } },
    { name: 'b', distribution: { kind: 'uniform', low: 10, high: 20 } },
    { name: 'c', distribution: { kind: 'normal', mean: 5, sd: 2 } },
  ], 'pick-freeze', 3);
  assert.equal(design.groupSize, 5);
  const group = 4;
  const [a, b, ...c] = Array.from({ length: 5 }, (_, m) => design.inputs(group * 5 + m));
  for (let k = 0; k < 3; k++) for (let j = 0; j < 3; j++) assert.equal(c[k][j], j === k ? b[j] : a[j], `C_${k} input ${j}`);
  assert.notEqual(a[0], b[0]);
  assert.deepEqual(design.inputs(group * 5 + 2), c[0]);
  assert.deepEqual(design.role(23), { group: 4, member: 3 });
  // a normal input has its mean and standard deviation
  const normal = new Design([{ name: 'n', distribution: { kind: 'normal', mean: 5, sd: 2 } }], 'monte-carlo', 8);
  const values = Array.from({ length: 4000 }, (_, r) => normal.inputs(r)[0]);
  const mean = values.reduce((a, b) => a + b, 0) / values.length;
  const sd = Math.sqrt(values.reduce((a, v) => a + (v - mean) ** 2, 0) / (values.length - 1));
  assert.ok(Math.abs(mean - 5) < 0.1 && Math.abs(sd - 2) < 0.1, `mean ${mean}, sd ${sd}`);
  assert.throws(() => new Design([], 'monte-carlo', 1), /a study needs at least one uncertain parameter/);
  // Monte-Carlo: independent draws within their ranges
  const mc = new Design([{ name: 'a', distribution: { kind: 'uniform', low: 2, high: 3 } }], 'monte-carlo', 3);
  const draws = Array.from({ length: 200 }, (_, r) => mc.inputs(r)[0]);
  assert.ok(draws.every((v) => v >= 2 && v < 3) && new Set(draws).size === 200);
});

test('Sobol indices of the Ishigami function (a = 7, b = 0.1) from 10⁴ pick-freeze groups: S1 0.3139, S2 0.4424, S3 0, ST3 0.2437 within 0.02, inside their intervals', () => {
  const uniform = { kind: 'uniform', low: -Math.PI, high: Math.PI } as const;
  const design = new Design(['x1', 'x2', 'x3'].map((name) => ({ name, distribution: uniform })), 'pick-freeze', 11);
  const ishigami = ([x1, x2, x3]: number[]) => Math.sin(x1) + 7 * Math.sin(x2) ** 2 + 0.1 * x3 ** 4 * Math.sin(x1);
  // two cells: the function, and an affine map of it (indices do not change under one)
  const sobol = new Sobol(3, 2);
  const groups = 10000;
  const out = (run: number) => {
    const y = ishigami(design.inputs(run));
    return [y, 3 * y - 2];
  };
  // groups arrive in a shuffled order
  for (const g of shuffled(Array.from({ length: groups }, (_, g) => g), new Random(1))) {
    const runs = Array.from({ length: 5 }, (_, m) => out(g * 5 + m));
    sobol.add(runs[0], runs[1], runs.slice(2));
  }
  const indices = sobol.indices();
  // closed forms: V = a²/8 + b π⁴/5 + b² π⁸/18 + 1/2, V1 = (1 + b π⁴/5)²/2, V2 = a²/8, VT3 = 8 b² π⁸/225
  const a = 7, b = 0.1, pi4 = Math.PI ** 4;
  const V = (a * a) / 8 + (b * pi4) / 5 + (b * b * pi4 * pi4) / 18 + 0.5;
  const exact = { first: [(1 + (b * pi4) / 5) ** 2 / 2 / V, (a * a) / 8 / V, 0], total: [((1 + (b * pi4) / 5) ** 2 / 2 + (8 * b * b * pi4 * pi4) / 225) / V, (a * a) / 8 / V, (8 * b * b * pi4 * pi4) / 225 / V] };
  assert.ok(Math.abs(exact.first[0] - 0.3139) < 1e-4 && Math.abs(exact.first[1] - 0.4424) < 1e-4 && Math.abs(exact.total[2] - 0.2437) < 1e-4);
  for (let cell = 0; cell < 2; cell++) {
    for (let k = 0; k < 3; k++) {
      assert.ok(Math.abs(indices.first[k][cell] - exact.first[k]) < 0.02, `S${k + 1}: ${indices.first[k][cell]} vs ${exact.first[k]}`);
      assert.ok(Math.abs(indices.total[k][cell] - exact.total[k]) < 0.02, `ST${k + 1}: ${indices.total[k][cell]} vs ${exact.total[k]}`);
      assert.ok(indices.firstLow[k][cell] < indices.first[k][cell] && indices.first[k][cell] < indices.firstHigh[k][cell]);
      assert.ok(indices.totalLow[k][cell] < indices.total[k][cell] && indices.total[k][cell] < indices.totalHigh[k][cell]);
      // a 95% interval of 10⁴ groups is about ±0.02 wide at most
      assert.ok(indices.firstHigh[k][cell] - indices.firstLow[k][cell] < 0.05);
    }
    assert.ok(Math.abs(indices.first[0][cell] - indices.first[0][0]) < 1e-9, 'an affine map of the output leaves the indices as they are');
  }
  assert.equal(sobol.count, groups);
  assert.throws(() => sobol.add([0, 0], [0, 0], [[0, 0]]), /a pick-freeze group of 3 runs where 3 inputs need 5/);
  assert.throws(() => sobol.add([0, 0], [0], [[0, 0], [0, 0], [0, 0]]), /a run of 1 values where the field has 2 cells/);
  assert.throws(() => new Sobol(0, 2), /Sobol indices need at least one input, not 0/);
});

test("Sobol intervals cover: over 300 independent studies of 200 groups each, each 95% interval holds the Ishigami function's true index 88–99% of the time", () => {
  const uniform = { kind: 'uniform', low: -Math.PI, high: Math.PI } as const;
  const ishigami = ([x1, x2, x3]: number[]) => Math.sin(x1) + 7 * Math.sin(x2) ** 2 + 0.1 * x3 ** 4 * Math.sin(x1);
  const pi4 = Math.PI ** 4;
  const V = 49 / 8 + (0.1 * pi4) / 5 + (0.01 * pi4 * pi4) / 18 + 0.5;
  const s2 = 49 / 8 / V; // S2 = ST2: input 2 interacts with no other
  const st3 = (8 * 0.01 * pi4 * pi4) / 225 / V;
  let first = 0;
  let total = 0;
  const studies = 300;
  for (let study = 0; study < studies; study++) {
    const design = new Design(['x1', 'x2', 'x3'].map((name) => ({ name, distribution: uniform })), 'pick-freeze', 1000 + study);
    const sobol = new Sobol(3, 1);
    for (let g = 0; g < 200; g++) {
      const runs = Array.from({ length: 5 }, (_, m) => [ishigami(design.inputs(g * 5 + m))]);
      sobol.add(runs[0], runs[1], runs.slice(2));
    }
    const indices = sobol.indices();
    if (indices.firstLow[1][0] <= s2 && s2 <= indices.firstHigh[1][0]) first++;
    if (indices.totalLow[2][0] <= st3 && st3 <= indices.totalHigh[2][0]) total++;
  }
  assert.ok(first / studies >= 0.88 && first / studies <= 0.99, `S2's interval covered ${first} of ${studies}`);
  assert.ok(total / studies >= 0.88 && total / studies <= 0.99, `ST3's interval covered ${total} of ${studies}`);
});
