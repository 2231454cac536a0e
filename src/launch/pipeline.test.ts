// Pipeline parallelism end to end on threads: S stages with m micro-batches end bit-equal to one
// model trained serially with gradient accumulation over the same micro-batches (written out
// here: the mean of the micro-batches' gradients, summed in micro-batch order, then the
// optimiser's step), for both schedules, S ∈ {2, 3}, m ∈ {1, 2, 4, 8}; the engine's own count of
// stored micro-batches is the schedule's; evaluation through the stages equals evaluating the
// whole model; a checkpoint resumes on another stage count.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { epochOrder, makeBatcher } from '../data/batches.js';
import { selectKernels } from '../kernels/select.js';
import { syntheticDataset } from '../data/dataset.js';
import { createModel } from '../models/index.js';
import type { Batch } from '../models/model.js';
import { Optimizer, defaultOptimizer } from '../optim/optimizers.js';
import { Random } from '../tensor/random.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { readCheckpoint } from '../train/checkpoint.js';
import { logRecords } from '../train/log.test.fixture.js';
import { trainOnThreads } from './threads.js';

// the serial oracle computes with the kernels the launcher picks for the ranks (native where they load), chosen here as the
// launcher chooses them: a test run alone must not depend on an earlier test's launch having chosen them
selectKernels();
const dir = mkdtempSync(join(tmpdir(), 'converge-pipeline-'));
const base: TrainConfig = { ...defaults, dataset: 'synthetic', model: 'mlp', hidden: [32, 16], strategy: 'pipeline', workers: 1, batch: 32, epochs: 2, lr: 0.05, seed: 4, lrScaling: 'none' };
const dataset = syntheticDataset(base.seed);
const shape = { inputShape: [1, 8, 8], classes: 10, hidden: base.hidden };

/** One model, serially: each step's batch split into m micro-batches, their gradients summed in order, then the mean, then momentum SGD. */
function serialAccumulation(batch: number, micro: number, steps: number, name = 'mlp', workers = 1): { params: Float32Array; losses: number[]; buffers?: Float32Array } {
  const size = batch / micro;
  const model = createModel(name, { ...shape, maxBatch: size });
  const params = model.layout.allocate();
  model.init(params, new Random(base.seed));
  const optimizer = new Optimizer({ ...defaultOptimizer, name: 'momentum', momentum: base.momentum }, model.layout.size);
  const sums = Array.from({ length: workers }, () => new Float32Array(model.layout.size));
  const grad = new Float32Array(model.layout.size);
  const order = new Uint32Array(dataset.train.count);
  const batcher = makeBatcher(dataset, 'train', batch);
  const perEpoch = Math.floor(dataset.train.count / (workers * batch));
  const losses: number[] = [];
  for (let t = 0; t < steps; t++) {
    if (t % perEpoch === 0) epochOrder(order, base.seed, t / perEpoch);
    let loss = 0;
    // worker w takes the w-th slice of the step's global batch
    for (const [w, sum] of sums.entries()) {
      const whole = batcher.fromOrder(order, ((t % perEpoch) * workers + w) * batch, batch) as Batch;
      for (let i = 0; i < micro; i++) {
        const part: Batch = { x: whole.x.subarray(i * size * 64, (i + 1) * size * 64), y: whole.y.subarray(i * size, (i + 1) * size), size };
        loss += model.lossAndGrad(params, part, i === 0 ? sum : grad);
        if (i > 0) for (let j = 0; j < sum.length; j++) sum[j] = Math.fround(sum[j] + grad[j]);
      }
      if (micro > 1) for (let j = 0; j < sum.length; j++) sum[j] = Math.fround(sum[j] * (1 / micro));
    }
    // the mean over the workers
    const sum = sums[0];
    if (workers > 1) for (let j = 0; j < sum.length; j++) sum[j] = Math.fround(sums.reduce((total, s) => Math.fround(total + s[j]), 0) * (1 / workers));
    optimizer.step(params, sum, base.lr);
    losses.push(loss / micro / workers);
  }
  return { params, losses, buffers: model.buffers };
}

/** The whole MLP's test accuracy and mean loss, computed directly. */
function scoreOf(params: Float32Array): { accuracy: number; loss: number } {
  const model = createModel('mlp', { ...shape, maxBatch: 128 });
  const batcher = makeBatcher(dataset, 'test', 128);
  let correct = 0;
  let lossSum = 0;
  for (let start = 0; start < dataset.test.count; start += 128) {
    const count = Math.min(128, dataset.test.count - start);
    const result = model.evaluate(params, batcher.range(start, count));
    correct += result.correct;
    lossSum += result.loss * count;
  }
  return { accuracy: correct / dataset.test.count, loss: lossSum / dataset.test.count };
}
const accuracyOf = (params: Float32Array) => scoreOf(params).accuracy;

function firstDifference(a: Float32Array, b: Float32Array): string | null {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i] && !(Number.isNaN(a[i]) && Number.isNaN(b[i]))) return `parameter ${i}: ${a[i]} vs ${b[i]}`;
  return null;
}

test('pipeline on threads: GPipe and 1F1B with S = 2, 3 stages and m = 1, 2, 4, 8 micro-batches end bit-equal to serial gradient accumulation, storing what each schedule promises', async () => {
  const steps = 70; // into the second epoch: an epoch's end (evaluation, checkpoint gather) lies between
  const oracles = new Map<number, Float32Array>();
  for (const schedule of ['gpipe', '1f1b'] as const) {
    for (const stages of [2, 3]) {
      for (const micro of [1, 2, 4, 8]) {
        // the partitioner's cut (measured) for 2 stages; given cuts for 3, one of them starting a stage at a ReLU
        const stageCuts = stages === 3 ? (micro % 2 === 0 ? [1, 3] : [2, 4]) : undefined;
        const run = await trainOnThreads({ ...base, stages, microbatches: micro, pipelineSchedule: schedule, stageCuts, stopAfterSteps: steps });
        if (!oracles.has(micro)) oracles.set(micro, serialAccumulation(base.batch, micro, steps).params);
        const difference = firstDifference(run.params, oracles.get(micro)!);
        assert.equal(difference, null, `${schedule} S=${stages} m=${micro}: ${difference}`);
        const stored = run.summary.pipeline!.map((stage) => stage.peakStoredMicrobatches);
        assert.deepEqual(stored, Array.from({ length: stages }, (_, s) => (schedule === 'gpipe' ? micro : Math.min(micro, stages - s))), `${schedule} S=${stages} m=${micro}`);
        const layers = run.summary.pipeline!.map((stage) => stage.layers);
        assert.equal(layers[0][0], 0);
        assert.equal(layers[stages - 1][1], 5, 'fc1 relu fc2 relu fc3');
        for (let s = 1; s < stages; s++) assert.ok(layers[s][0] === layers[s - 1][1] && layers[s][1] > layers[s][0]);
        assert.equal(run.summary.pipeline!.reduce((sum, stage) => sum + stage.parameters, 0), run.params.length, 'the stages hold the model between them, once');
      }
    }
  }
});

test('pipelines side by side on threads: 2 workers × 2 stages (4 ranks) end bit-equal to 2 workers accumulating serially, their gradients averaged', async () => {
  const steps = 40;
  const oracle = serialAccumulation(base.batch, 4, steps, 'mlp', 2);
  for (const schedule of ['gpipe', '1f1b'] as const) {
    const run = await trainOnThreads({ ...base, workers: 2, stages: 2, microbatches: 4, pipelineSchedule: schedule, stopAfterSteps: steps });
    assert.equal(firstDifference(run.params, oracle.params), null, schedule);
    assert.equal(run.summary.workers, 2);
  }
  // an epoch: the loss averaged over both pipelines, and the test split shared between them and scored whole
  const log = join(dir, 'side-by-side.jsonl');
  const whole = await trainOnThreads({ ...base, epochs: 1, workers: 2, stages: 2, microbatches: 4, log });
  const epoch = serialAccumulation(base.batch, 4, 32, 'mlp', 2);
  const mean = epoch.losses.reduce((a, b) => a + b, 0) / epoch.losses.length;
  assert.ok(Math.abs(whole.summary.trainLoss - mean) < 1e-5 * mean, `train loss ${whole.summary.trainLoss} vs ${mean}`);
  assert.equal(whole.summary.testAccuracy, accuracyOf(epoch.params));
  // the stages' own passes are the epoch's compute time: above 0, and with the rest of a step within the epoch
  const [record] = logRecords<{ type: string; perStepMs: { compute: number; communication: number; waiting: number }; trainSeconds: number }>(log).filter((r) => r.type === 'epoch');
  const { compute, communication, waiting } = record.perStepMs;
  assert.ok(compute > 0 && (32 * (compute + communication + (waiting ?? 0))) / 1000 <= record.trainSeconds, JSON.stringify(record));
});

test('pipeline on threads: ResNet-20, cut between its residual blocks, ends bit-equal to serial accumulation, batch norm\'s running statistics included', async () => {
  const steps = 6;
  const save = join(dir, 'resnet.ckpt');
  const run = await trainOnThreads({ ...base, model: 'resnet20', stages: 3, microbatches: 2, save, stopAfterSteps: steps });
  const oracle = serialAccumulation(base.batch, 2, steps, 'resnet20');
  assert.equal(firstDifference(run.params, oracle.params), null);
  const layout = createModel('resnet20', { ...shape, maxBatch: 1 }).layout;
  const saved = readCheckpoint(save, 'resnet20', layout).state.optimizerState['model.buffers'];
  assert.ok(oracle.buffers && saved, 'running statistics saved');
  assert.equal(firstDifference(saved, oracle.buffers), null, 'running statistics');
  assert.ok(oracle.buffers.some((value) => value !== 0 && value !== 1), 'the statistics moved from their start (means 0, variances 1)');
  // stopped halfway and resumed on 2 stages: the statistics come back from the checkpoint
  const half = join(dir, 'resnet-half.ckpt');
  await trainOnThreads({ ...base, model: 'resnet20', stages: 3, microbatches: 2, save: half, stopAfterSteps: steps / 2 });
  const resumed = join(dir, 'resnet-resumed.ckpt');
  const second = await trainOnThreads({ ...base, model: 'resnet20', stages: 2, microbatches: 2, resume: half, save: resumed, stopAfterSteps: steps / 2 });
  assert.equal(firstDifference(second.params, oracle.params), null, 'resumed: parameters');
  assert.equal(firstDifference(readCheckpoint(resumed, 'resnet20', layout).state.optimizerState['model.buffers'], oracle.buffers), null, 'resumed: running statistics');
});

test('pipeline on threads: the test accuracy it reports is the whole model\'s on the test split, and the training loss the serial one', async () => {
  const run = await trainOnThreads({ ...base, epochs: 1, stages: 3, microbatches: 4, log: join(dir, 'log.jsonl') });
  const { accuracy, loss } = scoreOf(run.params);
  assert.equal(run.summary.testAccuracy, accuracy);
  assert.ok(Math.abs(run.summary.testLoss - loss) < 1e-5 * Math.abs(run.summary.testLoss));
  assert.ok(run.summary.testAccuracy > 0.9, `accuracy ${run.summary.testAccuracy}`);
  const { losses } = serialAccumulation(base.batch, 4, 64);
  const mean = losses.reduce((a, b) => a + b, 0) / losses.length;
  assert.ok(Math.abs(run.summary.trainLoss - mean) < 1e-5 * mean, `train loss ${run.summary.trainLoss} vs ${mean}`);
});

test('pipeline on threads: a checkpoint of 2 stages resumes on 3 (and on 1) and ends bit-equal to the run never interrupted; all-reduce resumes it too', async () => {
  const whole = await trainOnThreads({ ...base, stages: 2, microbatches: 4 });
  const checkpoint = join(dir, 'two-stages.ckpt');
  const first = await trainOnThreads({ ...base, stages: 2, microbatches: 4, save: checkpoint, stopAfterSteps: 10 });
  assert.equal(first.summary.stoppedEarly, true);
  for (const stages of [3, 1]) {
    const resumed = await trainOnThreads({ ...base, stages, microbatches: 4, pipelineSchedule: 'gpipe', resume: checkpoint });
    assert.deepEqual(resumed.resumedFrom, { epoch: 0, step: 10 });
    assert.equal(firstDifference(resumed.params, whole.params), null, `resumed on ${stages} stages`);
  }
  // one worker's whole batch: the same mean gradient, summed in another order
  const allreduce = await trainOnThreads({ ...base, strategy: 'allreduce', resume: checkpoint });
  let worst = 0;
  for (let i = 0; i < whole.params.length; i++) worst = Math.max(worst, Math.abs(allreduce.params[i] - whole.params[i]) / (1e-3 + Math.abs(whole.params[i])));
  assert.ok(worst < 1e-3, `all-reduce resumed a pipeline's checkpoint ${worst} (relative) away`);
});

test('pipeline: what it cannot run is refused before training, in one line that says what to do', async () => {
  const refusals: [Partial<TrainConfig>, RegExp][] = [
    [{ stages: 2, microbatches: 5 }, /--microbatches: got 5; expected a divisor of the batch \(32\)/],
    [{ strategy: 'allreduce', workers: 2, stages: 2 }, /--stages: got 2; expected a strategy that cuts the model into stages \(pipeline\), not allreduce/],
    [{ stages: 3, stageCuts: [2] }, /--stage-cuts: got "2"; expected 2 increasing layer indices/],
    [{ stages: 2, stageCuts: [5] }, /--stage-cuts: got "5"; expected 1 increasing layer indices between 1 and 4, where stage 2 begins \(the model has 5 layers/],
    [{ stages: 6 }, /--stages: got 6; expected 1 to 5 \(the model has 5 layers/],
    [{ stages: 2, pipelineSchedule: 'zigzag' as never }, /unknown pipeline schedule 'zigzag'/],
    [{ stages: 2, dataset: 'rcv1-like', model: 'logreg' }, /--strategy pipeline runs a model of layers layer by layer .*logreg is not one/],
  ];
  for (const [change, message] of refusals) await assert.rejects(trainOnThreads({ ...base, ...change }), message, JSON.stringify(change));
});

test('pipeline with --recompute: each stage runs its own schedule in an arena of its own, and the run ends bit-equal to the pipeline that stores everything, within the budget', async () => {
  // (the oracle is a pipeline run on the same kernels: the serial oracle above runs on this thread's kernels, which need not be the ranks')
  const hidden = [32, 32, 32, 32, 32, 32, 32, 32];
  const steps = 12;
  const configuration = { ...base, hidden, stages: 2, microbatches: 4, stageCuts: [9], stopAfterSteps: steps };
  const oracle = (await trainOnThreads(configuration)).params;
  const stored = await trainOnThreads({ ...configuration, recompute: 'none' });
  assert.equal(firstDifference(stored.params, oracle), null, 'none');
  const storeAll = stored.summary.pipeline!.map((stage) => stage.activationBytes!);
  assert.ok(storeAll.every((bytes) => bytes > 0), `${storeAll}`);
  // the rank's budget covers its micro-batches in flight: 1F1B stores 2 on stage 0, so each gets half
  const budget = Math.floor(0.75 * Math.max(...storeAll));
  for (const [recompute, memoryBudget, schedule] of [['sqrt', undefined, '1f1b'], ['revolve:1', undefined, 'gpipe'], [undefined, budget, '1f1b']] as const) {
    const run = await trainOnThreads({ ...configuration, pipelineSchedule: schedule, recompute, memoryBudget });
    const label = `${recompute ?? `auto within ${budget}`} ${schedule}`;
    assert.equal(firstDifference(run.params, oracle), null, label);
    const bytes = run.summary.pipeline!.map((stage) => stage.activationBytes!);
    assert.ok(bytes.every((b) => b > 0 && (memoryBudget === undefined || b <= memoryBudget)), `${label}: ${bytes}`);
  }
  // batch norm inside a stage's recomputed passes: its running statistics move once per micro-batch, as serially
  const resnetRun = (recompute: string | undefined, save: string) => trainOnThreads({ ...base, model: 'resnet20', stages: 2, microbatches: 2, recompute, stopAfterSteps: 3, save: join(dir, save) });
  const resnetStored = await resnetRun(undefined, 'resnet-stored.ckpt');
  const resnet = await resnetRun('revolve:1', 'resnet-recompute.ckpt');
  assert.equal(firstDifference(resnet.params, resnetStored.params), null, 'resnet20 revolve:1');
  const layout = createModel('resnet20', { ...shape, maxBatch: 1 }).layout;
  const buffersOf = (file: string) => readCheckpoint(join(dir, file), 'resnet20', layout).state.optimizerState['model.buffers'];
  assert.equal(firstDifference(buffersOf('resnet-recompute.ckpt'), buffersOf('resnet-stored.ckpt')), null, 'resnet20 revolve:1: running statistics');
});
