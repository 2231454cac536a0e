// One Hogwild! worker driven step by step, outside the training loop: what each kind of step
// writes (per-example steps on the examples where they lie or on a batch copied out, a dense
// minibatch step into a bf16 array, a replica that writes only at its merges), the loss and stop
// flag it reports, what a checkpoint takes from it, and its refusals. Its communicator has one
// rank, whose all-reduce plays the other workers' part at the epoch's meeting. The oracles are
// written out here: logistic regression's per-example SGD step, SGD on the minibatch gradient, bfloat16's two
// neighbours of a float32, and the default merge interval's closed form.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createShmHandle, ShmCommunicator } from '../comm/shm.js';
import { SparseBatchMaker } from '../data/batches.js';
import { formatLibsvm, generateRcv1Like } from '../data/sparse.js';
import { createModel, type Batch, type Model, type SparseBatch } from '../models/index.js';
import { INTERCEPT_RATE } from '../models/sparse.js';
import { defaultOptimizer, Optimizer, type OptimizerConfig } from '../optim/optimizers.js';
import { bf16Value, encodedBytes, type ParamPrecision } from '../tensor/precision.js';
import { Random } from '../tensor/random.js';
import { trainOnThreads } from '../launch/threads.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { hogwild } from './hogwild.js';
import { sharedArrayBytes } from './replica.js';
import type { RankSetup, StepInput, StrategyRank } from './strategy.js';

const data = generateRcv1Like({ rows: 320, testRows: 10, features: 300, nonZeros: 8, seed: 4 });
const train = data.train;

interface Options {
  model: Model;
  paramPrecision?: ParamPrecision;
  mergeEvery?: number;
  batch?: number;
  optimizer?: OptimizerConfig;
  startParams?: Float32Array;
  shared?: SharedArrayBuffer | null;
  /** Workers in the run (this one is the only rank here; `others` stands for the rest at each meeting). */
  workers?: number;
  /** What the other workers bring to an epoch's meeting: their losses and stop flags added in, and their merges into the shared array. */
  others?: (flags: Float32Array, shared: SharedArrayBuffer) => void;
}

/** One rank's communicator, where the other workers' part of each all-reduce is played by `others`. */
class Meeting extends ShmCommunicator {
  others?: (buffer: Float32Array) => void;
  override async allreduce(buffer: Float32Array, op?: Parameters<ShmCommunicator['allreduce']>[1]): Promise<void> {
    await super.allreduce(buffer, op);
    this.others?.(buffer);
  }
}

async function worker(o: Options): Promise<{ rank: StrategyRank; comm: ShmCommunicator; shared: SharedArrayBuffer }> {
  const precision = o.paramPrecision ?? 'fp32';
  const size = o.model.layout.size;
  const shared = o.shared === null ? undefined : o.shared ?? new SharedArrayBuffer(sharedArrayBytes(encodedBytes(precision, size)));
  const comm = new Meeting(createShmHandle(1, 16, 10_000), 0);
  const setup = {
    comm, model: o.model, workers: o.workers ?? 1, batch: o.batch ?? 10, seed: 7, startParams: o.startParams ?? new Float32Array(size),
    paramPrecision: precision, syncEvery: 1, staleness: 0, mergeEvery: o.mergeEvery, sharedBuffer: shared, hook: null,
    optimizer: () => new Optimizer(o.optimizer ?? { ...defaultOptimizer, name: 'sgd' }, size),
    replica: () => o.model, reportUpdates: () => {},
  } satisfies RankSetup;
  const rank = await hogwild(setup);
  comm.others = o.others && ((flags) => o.others!(flags, shared!));
  return { rank, comm, shared: shared! };
}

/** A step as the loop describes it: the epoch's order is the identity, this worker's minibatch starts at `first`. */
function input(o: { first: number; batch: number; steps: number; lr: number; whole?: SparseBatch; dense?: { model: Model; batch: Batch } }): StepInput {
  const maker = new SparseBatchMaker(train, o.batch);
  const order = Uint32Array.from({ length: train.count }, (_, i) => i);
  return {
    epoch: 0, step: o.first / o.batch, steps: o.steps, lr: o.lr, lrOf: () => o.lr, order, first: o.first, whole: o.whole,
    batch: () => (o.dense ? o.dense.batch : maker.fromOrder(order, o.first, o.batch)),
    gradient: async (params, grad) => o.dense!.model.lossAndGrad(params, o.dense!.batch, grad),
    stopRequested: () => false, meetAfter: false,
  };
}

/** Logistic regression's per-example SGD on rows [first, first + count) of the training split, written out: the lazy L2 penalty on the row's features, the bias at INTERCEPT_RATE. Returns the mean loss. */
function byHand(params: Float32Array, first: number, count: number, lr: number, l2: number): number {
  const bias = params.length - 1;
  let total = 0;
  for (let row = first; row < first + count; row++) {
    let z = params[bias];
    for (let k = train.rowPtr[row]; k < train.rowPtr[row + 1]; k++) z += params[train.indices[k]] * train.values[k];
    const y = train.labels[row];
    total += Math.log1p(Math.exp(-Math.abs(z))) + Math.max(z, 0) - y * z;
    const slope = 1 / (1 + Math.exp(-z)) - y;
    for (let k = train.rowPtr[row]; k < train.rowPtr[row + 1]; k++) {
      const j = train.indices[k];
      params[j] = Math.fround(params[j] - lr * (slope * train.values[k] + l2 * params[j]));
    }
    params[bias] = Math.fround(params[bias] - lr * INTERCEPT_RATE * slope);
  }
  return total / count;
}

function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    assert.ok(Math.abs(actual[i] - expected[i]) <= tolerance * (1 + Math.abs(expected[i])), `${what}: [${i}] is ${actual[i]}, expected ${expected[i]}`);
  }
}

const logreg = () => createModel('logreg', { features: data.features, maxBatch: 10 });

test('a sparse Hogwild! step takes each example of its minibatch in turn, read in place or from a batch copied out, and reports their mean loss', async () => {
  const model = logreg() as Model & { l2: number };
  const whole = new SparseBatchMaker(train, 10).whole();
  for (const held of [whole, undefined]) {
    const { rank, shared } = await worker({ model, mergeEvery: 0 });
    const expected = new Float32Array(model.layout.size);
    for (const first of [0, 10, 20]) {
      const { loss } = await rank.step(input({ first, batch: 10, steps: 32, lr: 0.5, whole: held }));
      const lossByHand = byHand(expected, first, 10, 0.5, model.l2);
      assert.ok(Math.abs(loss! - lossByHand) < 1e-6, `step at ${first} (${held ? 'in place' : 'copied'}): loss ${loss} against ${lossByHand}`);
    }
    assertClose(rank.params, expected, 1e-6, held ? 'examples read in place' : 'examples copied into a batch');
    // one float32 worker without a replica writes straight into the shared array
    assert.deepEqual(new Float32Array(shared, 0, model.layout.size), rank.params);
  }
});

test('dense Hogwild! on bfloat16 parameters: the minibatch step lands on one of the two bf16 values beside the float32 step, and is stored in the shared array', async () => {
  const model = createModel('softmax', { inputShape: [1, 4, 4], classes: 3, maxBatch: 8, seed: 3 });
  const size = model.layout.size;
  // a start that bf16 holds exactly (the low 16 bits cleared), so both sides take the gradient at the same point
  const start = new Float32Array(size);
  model.init(start, new Random(3));
  const bits = new Uint32Array(start.buffer);
  for (let i = 0; i < size; i++) bits[i] &= 0xffff0000;
  const batch: Batch = { x: Float32Array.from({ length: 8 * 16 }, (_, i) => Math.sin(i * 0.7)), y: Int32Array.from({ length: 8 }, (_, i) => i % 3), size: 8 };
  const { rank, shared } = await worker({ model, paramPrecision: 'bf16', startParams: start, batch: 8 });
  const { loss } = await rank.step(input({ first: 0, batch: 8, steps: 4, lr: 0.3, dense: { model, batch } }));
  // the float32 step, written out
  const grad = new Float32Array(size);
  const lossAtStart = model.lossAndGrad(Float32Array.from(start), batch, grad);
  assert.equal(loss, lossAtStart, 'the loss at the (exactly stored) start');
  const stored = new Uint16Array(shared, 0, size);
  let up = 0;
  let down = 0;
  for (let i = 0; i < size; i++) {
    const step = Math.fround(start[i] - 0.3 * grad[i]);
    const value = bf16Value(stored[i]);
    // bf16 truncation of the step, and the bf16 value one above it in magnitude
    const below = new Float32Array(new Uint32Array([(new Uint32Array(new Float32Array([step]).buffer)[0] & 0xffff0000) >>> 0]).buffer)[0];
    const above = new Float32Array(new Uint32Array([((new Uint32Array(new Float32Array([below]).buffer)[0] + 0x10000) & 0xffffffff) >>> 0]).buffer)[0];
    assert.ok(value === below || (value === above && step !== below), `[${i}]: stored ${value}, the float32 step ${step} lies between ${below} and ${above}`);
    if (value !== step) value === below ? down++ : up++;
  }
  assert.ok(up > 0 && down > 0, `stochastic rounding goes both ways (${up} up, ${down} down)`);
  // at the epoch's end the worker's copy is what the shared array holds
  const { trainLoss, stop } = await rank.endSteps!(false, 0.75);
  assert.equal(trainLoss, 0.75, 'one worker\'s training loss, as the loop counted it');
  assert.equal(stop, false);
  for (let i = 0; i < size; i++) assert.equal(rank.params[i], bf16Value(stored[i]), `params[${i}] after the epoch`);
});

test('a bfloat16 replica writes the shared array only at its merges, by default every sixteenth of the worker\'s epoch', async () => {
  const model = logreg();
  const size = model.layout.size;
  // 32 steps of 10 examples: the default merges every ⌊320 / 16⌋ = 20 examples, i.e. every second step
  const { rank, shared } = await worker({ model, paramPrecision: 'bf16' });
  const stored = new Uint16Array(shared, 0, size);
  const whole = new SparseBatchMaker(train, 10).whole();
  await rank.step(input({ first: 0, batch: 10, steps: 32, lr: 0.5, whole }));
  assert.ok(stored.every((v) => v === 0), 'after 10 examples nothing is merged yet');
  assert.ok(rank.params.some((v) => v !== 0), 'the replica itself has stepped');
  await rank.step(input({ first: 10, batch: 10, steps: 32, lr: 0.5, whole }));
  assert.ok(stored.some((v) => v !== 0), 'after 20 examples the replica has merged');
  // without a replica (--merge-every 0) every example is rounded into the shared array at once
  const direct = await worker({ model, paramPrecision: 'bf16', mergeEvery: 0 });
  await direct.rank.step(input({ first: 0, batch: 10, steps: 32, lr: 0.5, whole }));
  assert.ok(new Uint16Array(direct.shared, 0, size).some((v) => v !== 0), 'merge-every 0 writes at each example');
});

test('a Hogwild! worker reports its stop, its bytes and, for a checkpoint, its optimiser\'s state (none for per-example steps)', async () => {
  const sparse = await worker({ model: logreg(), mergeEvery: 0 });
  assert.deepEqual(await sparse.rank.snapshot(), { optimizerState: {}, optimizerSteps: 0 });
  const { stop, trainLoss } = await sparse.rank.endSteps!(true, 0.5);
  assert.equal(stop, true, 'a worker that stopped stops the run');
  assert.equal(trainLoss, 0.5);
  assert.equal(sparse.rank.bytesSent(), sparse.comm.bytesSent);

  const model = createModel('softmax', { inputShape: [1, 4, 4], classes: 3, maxBatch: 8, seed: 3 });
  const batch: Batch = { x: Float32Array.from({ length: 8 * 16 }, (_, i) => Math.cos(i)), y: Int32Array.from({ length: 8 }, (_, i) => (i * 2) % 3), size: 8 };
  const start = new Float32Array(model.layout.size);
  model.init(start, new Random(3));
  const dense = await worker({ model, optimizer: { ...defaultOptimizer, name: 'momentum', momentum: 0.9 }, startParams: start, batch: 8 });
  await dense.rank.step(input({ first: 0, batch: 8, steps: 4, lr: 0.1, dense: { model, batch } }));
  const grad = new Float32Array(model.layout.size);
  model.lossAndGrad(Float32Array.from(start), batch, grad);
  const { optimizerState, optimizerSteps } = (await dense.rank.snapshot())!;
  assert.equal(optimizerSteps, 1);
  // PyTorch's momentum: the first step's velocity is the gradient itself
  assert.deepEqual(optimizerState.velocity, grad);
  assertClose(dense.rank.params, start.map((p, i) => p - 0.1 * grad[i]), 1e-6, 'the first momentum step is an SGD step');
});

test('Hogwild! refuses to run without a shared array, and low precision without a replica on a model that cannot list an example\'s coordinates', async () => {
  await assert.rejects(worker({ model: logreg(), shared: null }), (e: Error & { code?: string }) => e.code === 'NO_SHARED_MEMORY' && /shared by all workers: run it on worker threads \(the shm backend\)/.test(e.message));
  const model = logreg();
  // the same model, less the coordinates an example touches
  const unlisted: Model = {
    name: 'unlisted', layout: model.layout, task: model.task, maxBatch: model.maxBatch, init: (p, r) => model.init(p, r),
    lossAndGrad: (p, b, g) => model.lossAndGrad(p, b, g), evaluate: (p, b) => model.evaluate(p, b),
    exampleStep: (p, b, i, lr) => model.exampleStep!(p, b, i, lr),
  } as Model;
  await assert.rejects(worker({ model: unlisted, paramPrecision: 'bf16', mergeEvery: 0 }), (e: Error & { code?: string }) =>
    e.code === 'UNSUPPORTED' && /--param-precision bf16 with hogwild and --merge-every 0 needs the model 'unlisted' to list the coordinates an example touches; use --param-precision fp32, or a replica/.test(e.message));
  // with a replica it runs
  await worker({ model: unlisted, paramPrecision: 'bf16', mergeEvery: 20 });
});

test('two Hogwild! workers report the mean of their training losses, as one worker does its own', async () => {
  // dense steps from the same start over the same epoch: two workers' mean loss is near one worker's (their sum is twice it)
  const config: TrainConfig = { ...defaults, dataset: 'synthetic', model: 'mlp', hidden: [32, 16], epochs: 1, batch: 16, lr: 0.05, seed: 5, strategy: 'hogwild', optimizer: 'sgd' };
  const one = (await trainOnThreads({ ...config, workers: 1 })).summary.trainLoss;
  const two = (await trainOnThreads({ ...config, workers: 2 })).summary.trainLoss;
  assert.ok(Math.abs(two / one - 1) < 0.2, `2 workers' training loss ${two} against one worker's ${one}`);
});

test('at an epoch\'s end a worker with a replica merges, meets the others, and takes what they merged after it: their changes, their stop, the mean loss', async () => {
  const model = logreg();
  const size = model.layout.size;
  const whole = new SparseBatchMaker(train, 10).whole();
  const other = Float32Array.from({ length: size }, (_, j) => (j % 7 === 0 ? 0.25 : 0));
  // a float32 replica on 2 workers, merging only at the epoch's end; the other worker merges while this one waits at the meeting
  const { rank, shared } = await worker({
    model, workers: 2, mergeEvery: 100_000,
    others: (flags, buffer) => {
      flags[0] += 0.5; // its mean training loss
      flags[1] += 1; // it was asked to stop
      const array = new Float32Array(buffer, 0, size);
      for (let j = 0; j < size; j++) array[j] += other[j];
    },
  });
  const expected = new Float32Array(size);
  byHand(expected, 0, 10, 0.5, (model as Model & { l2: number }).l2);
  await rank.step(input({ first: 0, batch: 10, steps: 32, lr: 0.5, whole }));
  assert.ok(new Float32Array(shared, 0, size).every((v) => v === 0), 'a replica merges nothing before its interval or the epoch\'s end');
  const { trainLoss, stop } = await rank.endSteps!(false, 0.7);
  assert.ok(Math.abs(trainLoss - (0.7 + 0.5) / 2) < 1e-6, `the mean of the two workers' losses: ${trainLoss}`);
  assert.equal(stop, true, 'the other worker stopped, so the run stops');
  // this worker's change landed whole (no one had changed the array before it), then the other's was added
  assertClose(rank.params, expected.map((v, j) => v + other[j]), 1e-6, 'the parameters after the meeting');
});

test('low precision without a replica steps the same on a batch copied out as on the examples in place, and refuses a model that lists no coordinates or no bound on them', async () => {
  const model = logreg();
  const size = model.layout.size;
  const results = [];
  for (const held of [new SparseBatchMaker(train, 10).whole(), undefined]) {
    const { rank, shared } = await worker({ model, paramPrecision: 'bf16', mergeEvery: 0 });
    for (const first of [0, 10, 20]) await rank.step(input({ first, batch: 10, steps: 32, lr: 0.5, whole: held }));
    results.push(Uint16Array.from(new Uint16Array(shared, 0, size)));
  }
  assert.deepEqual(results[1], results[0], 'the same roundings, in the same order');
  // and close to the float32 steps by hand (bf16 holds 8 bits of mantissa)
  const expected = new Float32Array(size);
  for (const first of [0, 10, 20]) byHand(expected, first, 10, 0.5, (model as Model & { l2: number }).l2);
  assertClose(Array.from(results[0], bf16Value), expected, 0.02, 'bf16 steps against float32 ones');
  for (const missing of ['exampleCoordinates', 'maxExampleCoordinates']) {
    const partial: Model = {
      name: 'partial', layout: model.layout, task: model.task, maxBatch: model.maxBatch, init: (p, r) => model.init(p, r),
      lossAndGrad: (p, b, g) => model.lossAndGrad(p, b, g), evaluate: (p, b) => model.evaluate(p, b),
      exampleStep: (p, b, i, lr) => model.exampleStep!(p, b, i, lr),
      exampleCoordinates: (b, i, out) => model.exampleCoordinates!(b, i, out), maxExampleCoordinates: (b) => model.maxExampleCoordinates!(b),
    } as Model;
    delete (partial as unknown as Record<string, unknown>)[missing];
    await assert.rejects(worker({ model: partial, paramPrecision: 'bf16', mergeEvery: 0 }), /needs the model 'partial' to list the coordinates/, `without ${missing}`);
  }
});

test('one Hogwild! worker stopped mid-epoch and resumed ends bit-identical to a run never interrupted (dense with momentum, sparse per-example steps)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-hogwild-resume-'));
  writeFileSync(join(dir, 'train.svm'), formatLibsvm(data.train));
  writeFileSync(join(dir, 'test.svm'), formatLibsvm(data.test));
  const configs: TrainConfig[] = [
    { ...defaults, dataset: 'synthetic', model: 'mlp', hidden: [16], epochs: 2, batch: 32, lr: 0.05, seed: 3, strategy: 'hogwild', optimizer: 'momentum', workers: 1 },
    { ...defaults, dataset: join(dir, 'train.svm'), testDataset: join(dir, 'test.svm'), model: 'logreg', epochs: 2, batch: 10, lr: 0.5, seed: 3, strategy: 'hogwild', workers: 1 },
  ];
  for (const config of configs) {
    const whole = await trainOnThreads(config);
    const checkpoint = join(dir, `${config.model}.ckpt`);
    const stopped = await trainOnThreads({ ...config, save: checkpoint, stopAfterSteps: 11 });
    assert.equal(stopped.summary.stoppedEarly, true);
    const resumed = await trainOnThreads({ ...config, resume: checkpoint });
    assert.deepEqual(resumed.resumedFrom, { epoch: 0, step: 11 });
    assert.deepEqual(resumed.params, whole.params, `${config.model}: resumed parameters differ`);
  }
});
