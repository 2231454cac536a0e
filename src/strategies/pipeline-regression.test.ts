// A pipeline driven step by step outside the training loop, every rank in this one process (tcp on
// loopback), on what the classifier of in-process.test does not have: regression targets (two a
// sample, sliced with each micro-batch), batch norm's running statistics (a set per stage, moved
// once per micro-batch, gathered at rank 0 in the model's buffer layout, resumed from a
// checkpoint) and dropout (its masks drawn from the step's micro-batch number and the rank).
// The oracle is the whole model run serially, one micro-batch after another, by hand.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Batcher } from '../data/batches.js';
import { batchNorm, dense, dropout, relu, sequential, tanh } from '../models/define.js';
import type { Batch, Model, ModelOptions } from '../models/model.js';
import { Optimizer } from '../optim/optimizers.js';
import { restoreOptimizer } from '../train/hook-state.js';
import { Random } from '../tensor/random.js';
import { tcpGroup } from '../comm/tcp-group.test.fixture.js';
import { pipeline } from './pipeline.js';
import { assertClose, momentum, sgdStep } from './sgd.test.fixture.js';
import { EVAL_BATCH, MODEL_BUFFERS, type OptimizerSnapshot, type StepInput, type StrategyRank } from './strategy.js';

// 4 inputs → dense 6, batch norm, ReLU, dropout | dense 5, batch norm, tanh, dense 2 (cut before layer 4: a batch norm on each side)
const definition = sequential([dense(6), batchNorm(), relu(), dropout(0.25), dense(5), batchNorm(), tanh(), dense(2)], { name: 'bn-regression' });
const CUT = 4;
const SEED = 3;
const options = (maxBatch: number, replica: number): ModelOptions => ({ inputShape: [4], classes: 2, task: 'regression', maxBatch, seed: SEED, replica });
const STAGES = 2;
const MICRO = 2;
const BATCH = 8; // per worker: micro-batches of 4
const STEPS_PER_EPOCH = 5;
const EPOCH = 1;
const start = (() => {
  const model = definition.build(options(BATCH, 0));
  const params = new Float32Array(model.layout.size);
  model.init(params, new Random(11));
  return params;
})();
const rate = (i: number) => 0.05 * (1 + i / 4);

/** A worker's minibatch of a step: 4 inputs and 2 targets a sample, from (step, worker) alone; labels unused (0). */
function batchOf(step: number, worker: number, size = BATCH): Batch {
  const random = new Random(100 * step + worker + 7);
  const x = Float32Array.from({ length: size * 4 }, () => random.next() * 2 - 1);
  const targets = new Float32Array(size * 2);
  for (let i = 0; i < size; i++) {
    targets[2 * i] = x[4 * i] - 0.5 * x[4 * i + 1] + 0.1 * random.next();
    targets[2 * i + 1] = x[4 * i + 2] * x[4 * i + 3];
  }
  return { x, y: new Int32Array(size), targets, size };
}

/** Micro-batch j of a batch, written out: samples j·m … (j + 1)·m − 1. */
function microOf(batch: Batch, j: number): Batch {
  const m = batch.size / MICRO;
  return { x: batch.x.slice(j * m * 4, (j + 1) * m * 4), y: batch.y.slice(j * m, (j + 1) * m), targets: batch.targets!.slice(j * m * 2, (j + 1) * m * 2), size: m };
}

interface Trained { params: Float32Array; velocity: Float32Array; losses: number[]; models: Model[] }

/**
 * Serial gradient accumulation by hand: each worker's whole model (its first stage's rank seeds its dropout) takes its micro-batches in order,
 * each the step's micro-batch number for its masks and moving its running statistics; the mean of every gradient, one momentum-SGD step.
 */
function byHand(workers: number, steps: number, from?: { trained: Trained; buffers: Float32Array }, firstStep = 0): Trained {
  const models = Array.from({ length: workers }, (_, w) => definition.build(options(BATCH, w * STAGES)));
  if (from) for (const model of models) model.buffers!.set(from.buffers);
  const params = Float32Array.from(from?.trained.params ?? start);
  const velocity = Float32Array.from(from?.trained.velocity ?? new Float32Array(params.length));
  const losses: number[] = [];
  const grad = new Float32Array(params.length);
  const one = new Float32Array(params.length);
  for (let i = 0; i < steps; i++) {
    const step = firstStep + i;
    grad.fill(0);
    let loss = 0;
    for (const [w, model] of models.entries()) {
      const batch = batchOf(i, w);
      for (let j = 0; j < MICRO; j++) {
        model.beginStep!((EPOCH * STEPS_PER_EPOCH + step) * MICRO + j);
        loss += model.lossAndGrad(params, microOf(batch, j), one);
        for (let k = 0; k < grad.length; k++) grad[k] += one[k] / (workers * MICRO);
      }
    }
    losses.push(loss / (workers * MICRO));
    sgdStep(params, grad, velocity, rate(i), momentum);
  }
  return { params, velocity, losses, models };
}

/** Every rank of `workers` pipelines of 2 stages on tcp communicators of this process, `steps` steps from `firstStep` of epoch 1; the ranks' snapshots and what `finish` returns. */
async function drive<T>(workers: number, steps: number, resume: { params: Float32Array; snapshot: OptimizerSnapshot } | null, each: (i: number, losses: number[]) => void,
  finish: (ranks: StrategyRank[]) => Promise<T>, firstStep = 0) {
  const comms = await tcpGroup(workers * STAGES, { timeoutMs: 2_000 }); // a rank that fails leaves the others waiting this long
  try {
    const ranks = await Promise.all(comms.map((comm) => {
      const build = (maxBatch: number) => definition.build(options(maxBatch, comm.rank));
      return pipeline({
        comm, model: build(EVAL_BATCH), workers, batch: BATCH, seed: SEED, startParams: comm.rank === 0 ? resume?.params ?? start : new Float32Array(start.length),
        startBuffers: resume?.snapshot.optimizerState[MODEL_BUFFERS], paramPrecision: 'fp32', syncEvery: 1, staleness: 0, hook: null,
        optimizer: ([a, b] = [0, start.length]) => {
          const optimizer = new Optimizer(momentum, b - a);
          if (resume) restoreOptimizer(optimizer, resume.snapshot.optimizerState, resume.snapshot.optimizerSteps, [a, b]);
          return optimizer;
        },
        replica: build, pipeline: { stages: STAGES, microbatches: MICRO, schedule: '1f1b', cuts: [CUT] }, reportUpdates: () => assert.fail('a pipeline reports no updates'),
      });
    }));
    for (let i = 0; i < steps; i++) {
      const outcomes = await Promise.all(ranks.map((rank, r) => {
        const worker = Math.floor(r / STAGES);
        const input: StepInput = {
          epoch: EPOCH, step: firstStep + i, steps: STEPS_PER_EPOCH, lr: rate(i), lrOf: () => assert.fail('a pipeline steps in order'),
          order: new Uint32Array(0), first: 0, whole: undefined, batch: () => batchOf(i, worker),
          gradient: () => assert.fail('a pipeline runs its stages itself'), stopRequested: () => false, meetAfter: false,
        };
        return rank.step(input);
      }));
      each(i, outcomes.map((outcome) => outcome.loss!));
    }
    const result = await finish(ranks);
    const before = comms.map((comm) => comm.bytesSent);
    const snapshots = await Promise.all(ranks.map((rank) => rank.snapshot()));
    return { ranks, snapshots, result, snapshotBytes: comms.map((comm, r) => comm.bytesSent - before[r]) };
  } finally {
    await Promise.all(comms.map((comm) => comm.close()));
  }
}

/** A test split of 13 samples (7 and 6 for 2 pipelines), as ranges. */
const TEST_COUNT = 13;
const testAll = batchOf(1000, 0, TEST_COUNT);
const testSet = {
  batch: testAll,
  fromOrder: () => assert.fail('the evaluation reads ranges'),
  range: (first: number, count: number): Batch => ({
    x: testAll.x.slice(4 * first, 4 * (first + count)), y: testAll.y.slice(first, first + count), targets: testAll.targets!.slice(2 * first, 2 * (first + count)), size: count,
  }),
} as unknown as Batcher;

/** The test split scored sample by sample by a whole model whose running statistics are `buffers`: its mean loss, and the RMSE over every target. */
function scoredByHand(params: Float32Array, buffers: Float32Array): { loss: number; rmse: number } {
  const model = definition.build(options(1, 0));
  model.buffers!.set(buffers);
  const predicted = new Float32Array(2);
  let loss = 0;
  let squares = 0;
  for (let i = 0; i < TEST_COUNT; i++) {
    const one = testSet.range(i, 1) as Batch;
    loss += model.evaluate(params, one).loss;
    model.predictions!(params, one, predicted);
    squares += (predicted[0] - one.targets![0]) ** 2 + (predicted[1] - one.targets![1]) ** 2;
  }
  return { loss: loss / TEST_COUNT, rmse: Math.sqrt(squares / (2 * TEST_COUNT)) };
}

test('a pipeline of a regression model with batch norm and dropout (2 pipelines of 2 stages, 1F1B) takes the serial steps of its micro-batches, its targets sliced with them; rank 0 gathers the first pipeline\'s running statistics, which every pipeline scores the test split with and a resume starts from', async () => {
  const expected = byHand(2, 5);
  const run = await drive(2, 5, null, (i, losses) => {
    for (const [r, loss] of losses.entries()) assert.ok(Math.abs(loss - expected.losses[i]) < 1e-6, `rank ${r}'s loss at step ${i}: ${loss}, by hand ${expected.losses[i]}`);
  }, (ranks) => Promise.all(ranks.map((rank) => rank.evaluate!(testSet, TEST_COUNT))));
  const [saved] = run.snapshots;
  assertClose(run.ranks[0].params, expected.params, 2e-6, 'the parameters rank 0 gathers');
  assertClose(saved!.optimizerState.velocity, expected.velocity, 2e-6, 'the velocity rank 0 gathers');
  // both stages' running statistics, each stage's where the model lays it out: the first pipeline's (its worker's)
  const buffers = saved!.optimizerState[MODEL_BUFFERS];
  assertClose(buffers, expected.models[0].buffers!, 1e-6, 'the running statistics rank 0 gathers');
  assert.ok(buffers.some((v, i) => Math.abs(v - expected.models[1].buffers![i]) > 1e-3), 'the second pipeline\'s running statistics differ (else the test could not tell them apart)');
  for (const other of run.snapshots.slice(1)) assert.equal(other, null, 'only rank 0 saves');
  // what a snapshot sends: the first pipeline's last stage its parameters, velocity and running statistics (6 + 2·5 + 5 + 2 + 2·5 floats), and
  // every rank but 0 its report (5 floats); the second pipeline, whose state is the first's, nothing more
  assert.deepEqual(run.snapshotBytes.slice(1), [4 * (2 * (6 * 5 + 5 + 2 * 5 + 5 * 2 + 2) + 2 * 5 + 5), 4 * 5, 4 * 5], 'bytes each rank sends in a snapshot');
  // the test split: every rank's figures those of the whole model with the first pipeline's statistics (as the loop makes every replica's before it evaluates)
  const scored = scoredByHand(expected.params, expected.models[0].buffers!);
  for (const [r, figures] of run.result.entries()) {
    assert.ok(Math.abs(figures.loss - scored.loss) < 1e-5 && Math.abs(figures.rmse - scored.rmse) < 1e-5, `rank ${r}'s test figures ${JSON.stringify(figures)}, by hand ${JSON.stringify(scored)}`);
    assert.ok(Number.isNaN(figures.accuracy), 'a regression has no accuracy');
  }
  // one pipeline: its statistics its own, nothing to agree on
  const alone = byHand(1, 3);
  const single = await drive(1, 3, null, (i, losses) => {
    for (const loss of losses) assert.ok(Math.abs(loss - alone.losses[i]) < 1e-6, `one pipeline's loss at step ${i}: ${loss}, by hand ${alone.losses[i]}`);
  }, (ranks) => Promise.all(ranks.map((rank) => rank.evaluate!(testSet, TEST_COUNT))));
  assertClose(single.snapshots[0]!.optimizerState[MODEL_BUFFERS], alone.models[0].buffers!, 1e-6, 'one pipeline\'s running statistics');
  const scoredAlone = scoredByHand(alone.params, alone.models[0].buffers!);
  for (const figures of single.result) assert.ok(Math.abs(figures.rmse - scoredAlone.rmse) < 1e-5, `one pipeline's test RMSE ${figures.rmse}, by hand ${scoredAlone.rmse}`);
  // resumed after 3 steps from rank 0's checkpoint (parameters, velocity, steps, running statistics), 2 more steps end where 5 did
  const first = await drive(2, 3, null, () => {}, async () => {});
  const checkpoint = { params: Float32Array.from(first.ranks[0].params), snapshot: first.snapshots[0]! };
  const resumed = await drive(2, 2, checkpoint, () => {}, async () => {}, 3);
  const continued = byHand(2, 2, { trained: byHand(2, 3), buffers: checkpoint.snapshot.optimizerState[MODEL_BUFFERS] }, 3);
  assertClose(resumed.ranks[0].params, continued.params, 2e-6, 'the parameters resumed');
  assertClose(resumed.snapshots[0]!.optimizerState[MODEL_BUFFERS], continued.models[0].buffers!, 1e-6, 'the running statistics resumed');
  assert.equal(resumed.snapshots[0]!.optimizerSteps, 5);
});
