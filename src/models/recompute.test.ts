// Recompute versus store. The schedules are held to outside oracles: Revolve's advances to
// Griewank and Walther's closed form, the rotor dynamic program to an exhaustive search over
// every schedule of small chains, and every schedule's gradients to the store-all step's, bit for
// bit. The arena's size is checked against the budget and against the memory really allocated.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Random } from '../tensor/random.js';
import { batchNorm, conv2d, dense, dropout, flatten, globalAvgPool2d, maxPool2d, relu, residual, sequential, tanh, type LayerSpec } from './define.js';
import { formatBytes, inSlots, leastMemory, parseBytes, parseRecompute, price, recomputeName, revolve, revolveAdvances, rotor, rotorTable, sqrtSegments, storeAll, type Op, type RecomputeSpec, type UnitCost } from './checkpointing.js';
import type { Batch } from './model.js';
import type { Sequential } from './sequential.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const equalCosts = (n: number, bytes = 100): UnitCost[] => Array.from({ length: n }, (_, i) => ({ forward: 1, backward: 2, input: i === 0 ? 0 : bytes, output: bytes, kept: bytes, gradients: 0 }));

test('revolve: its advances equal Griewank and Walther\'s closed form r·n − C(s + r, s)·r/(s + 1), and it never holds more than S snapshots', () => {
  assert.equal(revolveAdvances(10, 3), 15);
  assert.equal(revolveAdvances(100, 5), 316);
  for (let n = 1; n <= 40; n++) {
    for (let s = 1; s <= 6; s++) {
      const ops = revolve(n, s);
      const priced = price(ops, equalCosts(n));
      assert.equal(priced.recomputed, revolveAdvances(n, s), `n = ${n}, S = ${s}`);
      // snapshots: the stored inputs (x_0's among them) besides the working state, when a unit is taped
      let held = 1;
      let most = 1;
      for (const op of ops) {
        if (op.kind === 'forward' && !op.record) held++;
        if (op.kind === 'drop') held--;
        if (op.kind === 'forward' && op.record) most = Math.max(most, held - (op.unit > 0 ? 1 : 0));
      }
      assert.ok(most <= Math.max(s, 1), `n = ${n}, S = ${s}: ${most} snapshots held at once`);
    }
  }
  assert.equal(price(revolve(10, 3), equalCosts(10)).recomputed, 15);
  assert.equal(price(revolve(100, 5), equalCosts(100)).recomputed, 316);
});

test('store-all recomputes nothing; √n segments recompute all but the last segment and hold far less', () => {
  const costs = equalCosts(36);
  const all = price(storeAll(36), costs);
  assert.equal(all.recomputed, 0);
  assert.equal(all.peakBytes, 36 * 100 + 100); // every unit's record, and one gradient beside them at the last backward
  const sqrt = price(sqrtSegments(36), costs);
  assert.equal(sqrt.recomputed, 30); // 6 segments of 6: the first five run twice
  assert.ok(sqrt.peakBytes <= 14 * 100, `${sqrt.peakBytes}`); // 6 checkpoints (x_0 not among them), a segment's 6 records, its gradients
});

/**
 * Every persistent schedule, searched exhaustively (Dijkstra over which inputs are stored, which
 * units are recorded and how far the backward pass has come), with the sizes in slots as the
 * dynamic program sees them: the least time within m slots, or Infinity. Moves: record a unit;
 * advance unrecorded from a stored input to a new one (what lies between freed as it goes); a
 * backward; drop a stored input once the backward pass has passed it. (Persistent: a stored input
 * stays until then. Without that rule a search finds faster schedules on some chains — one that
 * drops a checkpoint and recomputes it later — which the rotor program, by design, does not.)
 */
function exhaustive(c: ReturnType<typeof inSlots>, m: number): number {
  const n = c.forward.length;
  const gradient = (j: number) => (j > 0 && j < n ? c.input[j] : 0);
  type State = { checkpoints: number; recorded: number; frontier: number };
  const key = (s: State) => `${s.checkpoints},${s.recorded},${s.frontier}`;
  const memory = (s: State) => {
    let bytes = gradient(s.frontier);
    for (let j = 1; j <= n; j++) if (s.checkpoints & (1 << j)) bytes += c.output[j - 1];
    for (let i = 0; i < n; i++) if (s.recorded & (1 << i)) bytes += c.kept[i];
    return bytes;
  };
  const best = new Map<string, number>();
  const queue: [number, State][] = [[0, { checkpoints: 0, recorded: 0, frontier: n }]];
  best.set(key(queue[0][1]), 0);
  while (queue.length > 0) {
    queue.sort((a, b) => a[0] - b[0]);
    const [time, state] = queue.shift()!;
    if (time > best.get(key(state))!) continue;
    if (state.frontier === 0) return time;
    const live = memory(state);
    const has = (j: number) => j === 0 || (state.checkpoints & (1 << j)) !== 0 || (state.recorded & (1 << (j - 1))) !== 0;
    const next: [number, State, number][] = []; // time, state, peak during the move
    for (let s = 0; s < state.frontier; s++) {
      if (!has(s) || state.recorded & (1 << s)) continue;
      if (!(state.checkpoints & (1 << (s + 1)))) next.push([time + c.forward[s], { ...state, recorded: state.recorded | (1 << s) }, live + c.kept[s]]);
      let elapsed = 0;
      let peak = 0;
      for (let j = s + 1; j <= state.frontier - 1; j++) {
        const i = j - 1;
        if (state.recorded & (1 << i)) break;
        elapsed += c.forward[i];
        peak = Math.max(peak, live + (i > s ? c.output[i - 1] : 0) + c.kept[i]);
        if (!has(j)) next.push([time + elapsed, { ...state, checkpoints: state.checkpoints | (1 << j) }, peak]);
      }
    }
    for (let j = state.frontier; j <= n; j++) if (state.checkpoints & (1 << j)) next.push([time, { ...state, checkpoints: state.checkpoints & ~(1 << j) }, live]);
    const b = state.frontier - 1;
    if (state.recorded & (1 << b) && has(b)) {
      next.push([time + c.backward[b], { ...state, recorded: state.recorded & ~(1 << b), frontier: b }, live + c.gradients[b] + gradient(b)]);
    }
    for (const [t, s, peak] of next) {
      if (peak > m || memory(s) > m) continue;
      const k = key(s);
      if (t < (best.get(k) ?? Infinity)) {
        best.set(k, t);
        queue.push([t, s]);
      }
    }
  }
  return Infinity;
}

test('the rotor dynamic program finds the least time an exhaustive search over every persistent schedule finds, on random chains of up to 6 units and 12 slots', () => {
  const random = new Random(11);
  const int = (lo: number, hi: number) => lo + Math.floor(random.next() * (hi - lo + 1));
  let compared = 0;
  for (let trial = 0; trial < 300; trial++) {
    const n = int(1, 6);
    const costs: UnitCost[] = Array.from({ length: n }, () => ({ forward: int(1, 9), backward: int(1, 9), input: 0, output: 0, kept: 0, gradients: int(0, 1) }));
    costs.forEach((cost, i) => {
      cost.output = int(1, 4);
      cost.kept = cost.output + int(0, 4);
    });
    costs.forEach((cost, i) => (cost.input = i === 0 ? 0 : costs[i - 1].output));
    const c = inSlots(costs, 1);
    const table = rotorTable(c, 12);
    for (let m = 0; m <= 12; m++) {
      const dp = table.time[table.index(0, n - 1, m)];
      assert.equal(dp, exhaustive(c, m), `trial ${trial}, chain ${JSON.stringify(costs)}, ${m} slots`);
      if (Number.isFinite(dp)) {
        // the schedule it builds costs what it says and fits
        const plan = rotor(costs, m, m);
        const priced = price(plan.ops, costs);
        assert.equal(priced.seconds, dp);
        assert.ok(priced.peakBytes <= m, `peak ${priced.peakBytes} > ${m}`);
        compared++;
      }
    }
  }
  assert.ok(compared > 400, `${compared} feasible cases compared`);
});

test('auto with a budget that holds everything recomputes nothing; below the least any schedule needs it says that least', () => {
  const random = new Random(5);
  const costs: UnitCost[] = Array.from({ length: 12 }, (_, i) => ({ forward: 1 + random.next(), backward: 2 + random.next(), input: i === 0 ? 0 : 1000, output: 1000, kept: 1000 + 64 * i, gradients: 64 }));
  const all = price(storeAll(12), costs);
  const plan = rotor(costs, all.peakBytes);
  assert.equal(price(plan.ops, costs).recomputed, 0);
  assert.deepEqual(plan.ops, storeAll(12));
  const least = leastMemory(costs);
  assert.ok(least < all.peakBytes / 2);
  assert.throws(() => rotor(costs, least * 0.8), (error: Error & { code?: string }) => error.code === 'BAD_OPTION' && error.message.includes(`the smallest schedule found holds ${formatBytes(least)}. Give at least that, or a smaller --batch.`) && !error.message.includes('\n'));
  // between the two, time falls as memory grows
  let previous = Infinity;
  for (const budget of [least * 1.01, least * 1.5, least * 2.5, all.peakBytes]) {
    const seconds = rotor(costs, budget).seconds;
    assert.ok(seconds <= previous, `${seconds} at ${budget}`);
    previous = seconds;
  }
});

test('price() refuses a schedule that runs a pass without what it needs, or ends with work left', () => {
  const costs = equalCosts(3);
  const f = (unit: number, record = true): Op => ({ kind: 'forward', unit, record });
  const b = (unit: number): Op => ({ kind: 'backward', unit });
  const d = (boundary: number): Op => ({ kind: 'drop', boundary });
  const invalid: [string, Op[]][] = [
    ['forward 1', [f(1)]], // its input x_1 was never computed
    ['forward 0', [f(0), f(0)]], // recorded twice
    ['forward 0', [f(0, false), f(0)]], // its output is already held
    ['backward 1', [f(0), f(1), f(2), b(1)]], // out of order
    ['backward 2', [f(0), f(1), f(2, false), b(2)]], // not recorded
    ['drop 2', [f(0), f(1), d(2)]], // x_2 is unit 1's record, not a checkpoint
    ['drop 1', [f(0, false), f(1), d(1)]], // unit 1 still needs its input
    ['it ends', [f(0), f(1), f(2), b(2), b(1)]],
  ];
  for (const [what, ops] of invalid) assert.throws(() => price(ops, costs), new RegExp(`invalid schedule: ${what}`), JSON.stringify(ops));
  assert.deepEqual(price(storeAll(3), costs), { seconds: 9, peakBytes: 3 * 100 + 100, recomputed: 0 }); // every record, and the gradient coming back to the last
});

test('sizes said and read: bytes, KiB, MiB, GiB; the schedules\' names', () => {
  assert.deepEqual([512, 1023, 1024, 2048, 3 * 2 ** 20, 2 ** 31].map(formatBytes), ['512 B', '1023 B', '1.0 KiB', '2.0 KiB', '3.0 MiB', '2.00 GiB']);
  assert.deepEqual(['1KB', '2KiB', '3MB', '1GiB', '7b', ' 12 '].map((v) => parseBytes(v, '--x')), [1000, 2048, 3e6, 2 ** 30, 7, 12]);
  for (const bad of ['0', '0.1', '-5', '5 TB', '1e6']) assert.throws(() => parseBytes(bad, '--x'), new RegExp(`--x ${bad.trim().replace('.', '\\.')}: expected a`), bad);
  assert.deepEqual(['none', 'auto', 'sqrt', 'revolve:12'].map((v) => recomputeName(parseRecompute(v))), ['none', 'auto', 'sqrt', 'revolve:12']);
  for (const bad of ['revolve:', 'revolve:3x', 'xrevolve:3', 'Sqrt']) assert.throws(() => parseRecompute(bad), /--recompute .*: expected none \(store every activation\), sqrt/, bad);
});

test('the options parse: schedules, sizes with units, and one-line refusals', () => {
  assert.deepEqual(parseRecompute('revolve:4'), { kind: 'revolve', snapshots: 4 });
  assert.deepEqual(parseRecompute('sqrt'), { kind: 'sqrt' });
  assert.throws(() => parseRecompute('revolve:0'), /--recompute revolve:0: expected none/);
  assert.throws(() => parseRecompute('half'), /--recompute half: expected/);
  assert.equal(parseBytes('64MiB', '--memory-budget'), 64 * 2 ** 20);
  assert.equal(parseBytes('1.5GB', '--memory-budget'), 1.5e9);
  assert.equal(parseBytes('4096', '--memory-budget'), 4096);
  assert.throws(() => parseBytes('lots', '--memory-budget'), /--memory-budget lots: expected a size in bytes/);
  // each refusal is a bad option, in one line that says what was expected
  const badOption = (message: RegExp) => (error: Error & { code?: string }) => error.code === 'BAD_OPTION' && message.test(error.message) && !error.message.includes('\n');
  assert.throws(() => parseBytes('0', '--x'), badOption(/^--x 0: expected a positive size\.$/));
  assert.throws(() => parseBytes('x12', '--x'), badOption(/^--x x12: expected a size in bytes, e\.g\. 512M/));
  assert.throws(() => parseBytes('12 x', '--x'), badOption(/^--x 12 x: expected a size in bytes/));
  assert.equal(parseBytes('1.25MB', '--x'), 1.25e6);
  assert.throws(() => parseRecompute('none:1'), badOption(/^--recompute none:1: expected none \(store every activation\)/));
  for (const snapshots of [0, -1, Number.NaN]) assert.throws(() => revolve(5, snapshots), badOption(new RegExp(`^--recompute revolve:${snapshots}: needs at least 1 snapshot\\.$`)));
  // sizes at each unit's first value, and just below it
  assert.deepEqual([2 ** 10 - 1, 2 ** 10, 2 ** 20 - 1, 2 ** 20, 2 ** 30 - 1, 2 ** 30].map(formatBytes), ['1023 B', '1.0 KiB', '1024.0 KiB', '1.0 MiB', '1024.0 MiB', '1.00 GiB']);
});

// --- on real models: the same arithmetic, less memory ---

const SHAPES = { mlp: [1, 6, 6], cnn: [2, 8, 8] } as const;

/** A deep MLP (a flatten first, dropout in it), a CNN with max pooling, and a small ResNet with batch norm and a projection. */
const models: Record<string, { spec: LayerSpec[]; shape: readonly number[] }> = {
  deepMlp: { shape: SHAPES.mlp, spec: [flatten(), ...Array.from({ length: 9 }, () => [dense(24), relu()]).flat(), dropout(0.2), dense(16), tanh(), dense(5)] },
  cnn: { shape: SHAPES.cnn, spec: [conv2d(4), relu(), maxPool2d(2), conv2d(6), relu(), maxPool2d(2), flatten(), dense(12), relu(), dense(5)] },
  resnet: {
    shape: SHAPES.cnn,
    spec: [
      conv2d(8, 3, { bias: false }), batchNorm(), relu(),
      residual([conv2d(8, 3, { bias: false }), batchNorm(), relu(), conv2d(8, 3, { bias: false }), batchNorm()]), relu(),
      residual([conv2d(16, 3, { stride: 2, bias: false }), batchNorm(), relu(), conv2d(16, 3, { bias: false }), batchNorm()], [conv2d(16, 1, { stride: 2, pad: 0, bias: false }), batchNorm()]), relu(),
      residual([conv2d(16, 3, { bias: false }), batchNorm()]), relu(),
      globalAvgPool2d(), dense(5),
    ],
  },
};

const BATCH = 6;

function build(name: string, recompute?: RecomputeSpec, memoryBudget?: number): Sequential {
  const { spec, shape } = models[name];
  return sequential(spec, { name }).build({ inputShape: shape, classes: 5, maxBatch: BATCH, seed: 3, replica: 0, recompute, memoryBudget }) as Sequential;
}

function batchOf(shape: readonly number[], seed: number): Batch {
  const random = new Random(seed);
  const x = new Float32Array(BATCH * shape.reduce((a, b) => a * b, 1));
  random.fillUniform(x, -1, 1);
  const y = Int32Array.from({ length: BATCH }, (_, i) => (i * 3 + seed) % 5);
  return { x, y, size: BATCH };
}

/** Three SGD steps (dropout drawn per step): each step's loss and gradient, and the running statistics after. */
function run(model: Sequential): { losses: number[]; grads: Float32Array[]; params: Float32Array; buffers: Float32Array | null; predictions: Float32Array } {
  const params = model.layout.allocate();
  model.init(params, new Random(9));
  const shape = models[model.name].shape;
  const losses: number[] = [];
  const grads: Float32Array[] = [];
  for (let step = 0; step < 3; step++) {
    const grad = model.layout.allocate();
    model.beginStep(step);
    const batch = batchOf(shape, step + 1);
    const copy = { ...batch, x: batch.x.slice() }; // in-place layers may write over a batch
    losses.push(model.lossAndGrad(params, copy, grad));
    grads.push(grad);
    for (let i = 0; i < params.length; i++) params[i] -= 0.1 * grad[i];
  }
  const predictions = new Float32Array(BATCH);
  model.predictions(params, batchOf(shape, 7), predictions);
  return { losses, grads, params, buffers: model.buffers ? model.buffers.slice() : null, predictions };
}

for (const name of Object.keys(models)) {
  test(`${name}: every schedule's losses, gradients, running statistics and predictions equal storing everything, bit for bit`, () => {
    const reference = run(build(name));
    const storeAllBytes = build(name).activations.bytes;
    const least = build(name, { kind: 'auto' }, storeAllBytes).activations.storeAllBytes; // store-all fits: auto reports no least
    const smallest = build(name, { kind: 'revolve', snapshots: 1 }).activations.bytes;
    const between = Math.floor((Math.max(smallest, least * 0.5) + storeAllBytes) / 2);
    const schedules: [RecomputeSpec, number?][] = [
      [{ kind: 'none' }],
      [{ kind: 'sqrt' }],
      [{ kind: 'revolve', snapshots: 1 }],
      [{ kind: 'revolve', snapshots: 2 }],
      [{ kind: 'revolve', snapshots: 4 }],
      [{ kind: 'auto' }, storeAllBytes],
      [{ kind: 'auto' }, between],
    ];
    for (const [spec, budget] of schedules) {
      const model = build(name, spec, budget);
      const label = `${name} ${spec.kind}${spec.kind === 'revolve' ? spec.snapshots : ''} budget ${budget}`;
      const got = run(model);
      assert.deepEqual(got.losses, reference.losses, label);
      got.grads.forEach((grad, step) => assert.deepEqual(grad, reference.grads[step], `${label}: gradient of step ${step}`));
      assert.deepEqual(got.params, reference.params, label);
      assert.deepEqual(got.buffers, reference.buffers, `${label}: running statistics updated once per step`);
      assert.deepEqual(got.predictions, reference.predictions, `${label}: predictions`);
      if (budget !== undefined) assert.ok(model.activations.bytes <= budget, `${label}: arena ${model.activations.bytes} > budget ${budget}`);
      if (spec.kind !== 'none' && !(spec.kind === 'auto' && budget === storeAllBytes)) assert.ok(model.activations.recomputed > 0, label);
    }
    // with the whole store-all size, auto recomputes nothing
    assert.equal(build(name, { kind: 'auto' }, storeAllBytes).activations.recomputed, 0);
  });
}

test('the arena is the memory: a recomputing model allocates less, by what its arena saves; budgets are met; too small a budget is refused with the least that fits', async () => {
  const deep = (recompute?: RecomputeSpec, memoryBudget?: number) => sequential([flatten(), ...Array.from({ length: 16 }, () => [dense(256), relu()]).flat(), dense(5)], { name: 'deep' })
    .build({ inputShape: [1, 16, 16], classes: 5, maxBatch: 64, seed: 3, recompute, memoryBudget }) as Sequential;
  // V8 gives buffers' memory back on a background thread after a collection: let it finish
  const settle = async () => {
    gc();
    await new Promise((resolve) => setTimeout(resolve, 100));
    gc();
  };
  const allocated = async (make: () => Sequential) => {
    await settle();
    const before = process.memoryUsage().arrayBuffers;
    const model = make();
    await settle();
    return { model, bytes: process.memoryUsage().arrayBuffers - before };
  };
  const all = await allocated(() => deep());
  const sqrt = await allocated(() => deep({ kind: 'sqrt' }));
  // what the model allocates is its arena, give or take its small fixed buffers (the gradient of its outputs)
  for (const { model, bytes } of [all, sqrt]) assert.ok(Math.abs(bytes - model.activations.bytes) < 64 * 1024, `${bytes} allocated, arena ${model.activations.bytes}`);
  const saved = all.model.activations.bytes - sqrt.model.activations.bytes;
  assert.ok(saved > all.model.activations.bytes * 0.4, `sqrt saves ${saved} of ${all.model.activations.bytes}`);
  const least = deep({ kind: 'auto' }, all.model.activations.bytes - 1).activations.leastBytes!;
  assert.ok(least < all.model.activations.bytes * 0.4, `the least any schedule needs: ${least}`);
  let previous = Infinity;
  for (const fraction of [0, 0.2, 0.5, 1]) {
    const budget = Math.floor(least + fraction * (all.model.activations.bytes - least));
    const model = deep({ kind: 'auto' }, budget);
    assert.ok(model.activations.bytes <= budget, `${model.activations.bytes} > ${budget}`);
    assert.ok(model.activations.recomputed <= previous, `more memory, fewer recomputed passes: ${model.activations.recomputed} after ${previous}`);
    previous = model.activations.recomputed;
  }
  assert.equal(previous, 0);
  assert.throws(() => deep({ kind: 'auto' }, 100_000), (error: Error) => /--memory-budget 97\.7 KiB of activations: too small for model deep at batch 64; the smallest schedule found holds [\d.]+ [KM]iB/.test(error.message) && !error.message.includes('\n'));
  assert.throws(() => deep({ kind: 'none' }, 1_000_000), /holds [\d.]+ MiB of activations when it stores them all; give --recompute auto/);
  assert.throws(() => deep({ kind: 'auto' }), /--recompute auto: give --memory-budget/);
});
