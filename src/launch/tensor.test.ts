// Tensor parallelism end to end on threads: T ranks splitting each pair of dense layers train the
// model one worker trains, within float32 rounding (a row-parallel layer sums its products in
// T parts; the issue allows 1e-6 relative where the order of a sum changes); a split block costs
// exactly one all-reduce forward and one backward (none where the block starts the model),
// counted by the engine; evaluation is the whole model's; checkpoints hold the whole model and
// resume bit-equal; W groups side by side average their gradients.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeBatcher } from '../data/batches.js';
import { syntheticDataset } from '../data/dataset.js';
import { createModel } from '../models/index.js';
import { Dense, Relu } from '../models/layers.js';
import { splitBlocks } from '../models/tensor-parallel.js';
import { kernelSet } from '../kernels/registry.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { trainOnThreads } from './threads.js';

const dir = mkdtempSync(join(tmpdir(), 'converge-tensor-'));
const base: TrainConfig = { ...defaults, dataset: 'synthetic', model: 'mlp', hidden: [32, 16, 16], strategy: 'tensor', workers: 1, batch: 32, epochs: 1, lr: 0.05, seed: 8, lrScaling: 'none' };

function relativeDifference(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1e-3 + Math.abs(b[i])));
  return worst;
}

test('tensor parallelism: the split pairs are dense, element-wise layers between, the first\'s outputs divisible by T', () => {
  const k = kernelSet();
  const layers = [new Dense(k, 'a', 8, 6, 1), new Relu(k, [6]), new Dense(k, 'b', 6, 4, 1), new Dense(k, 'c', 4, 3, 1), new Relu(k, [3]), new Dense(k, 'd', 3, 2, 1)];
  assert.deepEqual(splitBlocks(layers, 2), [{ column: 0, row: 2 }]); // c has 3 outputs: not split in two
  assert.deepEqual(splitBlocks(layers, 3), [{ column: 0, row: 2 }, { column: 3, row: 5 }]);
  assert.deepEqual(splitBlocks(layers, 4), [{ column: 2, row: 3 }]); // a's 6 outputs do not split in four; b, c are a pair with nothing between
  assert.deepEqual(splitBlocks(layers, 5), []);
});

test('tensor parallelism on threads: T = 2, 4 ends where one worker does (momentum, then Adam with weight decay), one all-reduce per block forward and one backward', async () => {
  for (const [optimizer, weightDecay, lr] of [['momentum', 0, 0.05], ['adam', 1e-3, 0.002]] as const) {
    // after one step within 1e-6 (measured ≈1e-7); after 40 the rounding has compounded (measured ≈4e-6)
    for (const [steps, bound] of [[1, 1e-6], [40, 2e-5]] as const) {
      const config = { ...base, optimizer, weightDecay, lr, stopAfterSteps: steps };
      const reference = await trainOnThreads({ ...config, strategy: 'allreduce', workers: 1 });
      for (const ranks of [2, 4]) {
        const run = await trainOnThreads({ ...config, tensorParallel: ranks });
        const difference = relativeDifference(run.params, reference.params);
        assert.ok(difference < bound, `T = ${ranks}, ${optimizer}, ${steps} steps: ${difference}`);
        // 64→32 relu 32→16 relu 16→16 relu 16→10: T = 2 and 4 split (fc1, fc2) and (fc3, fc4); the first block starts the model, so no backward all-reduce
        assert.deepEqual(run.summary.tensorParallel, { blocks: 2, forwardAllreduces: 2, backwardAllreduces: 1, parameters: run.summary.tensorParallel!.parameters, wholeParameters: run.params.length });
        assert.ok(run.summary.tensorParallel!.parameters < run.params.length / ranks + 200, `a rank holds ${run.summary.tensorParallel!.parameters} of ${run.params.length}`);
      }
    }
  }
});

test('tensor parallelism on threads: the accuracy it reports is the whole model\'s; a checkpoint resumes bit-equal; 2 groups of 2 average their gradients', async () => {
  const run = await trainOnThreads({ ...base, tensorParallel: 2 });
  const dataset = syntheticDataset(base.seed);
  const model = createModel('mlp', { inputShape: [1, 8, 8], classes: 10, hidden: base.hidden, maxBatch: 128 });
  const batcher = makeBatcher(dataset, 'test', 128);
  let correct = 0;
  for (let start = 0; start < dataset.test.count; start += 128) correct += model.evaluate(run.params, batcher.range(start, Math.min(128, dataset.test.count - start))).correct;
  assert.equal(run.summary.testAccuracy, correct / dataset.test.count);
  const one = await trainOnThreads({ ...base, strategy: 'allreduce', workers: 1 });
  assert.ok(Math.abs(run.summary.testAccuracy - one.summary.testAccuracy) <= 2 / dataset.test.count, `${run.summary.testAccuracy} against one worker's ${one.summary.testAccuracy}`);

  const whole = await trainOnThreads({ ...base, epochs: 2, tensorParallel: 2 });
  const checkpoint = join(dir, 'tensor.ckpt');
  await trainOnThreads({ ...base, epochs: 2, tensorParallel: 2, save: checkpoint, stopAfterSteps: 70 });
  const resumed = await trainOnThreads({ ...base, epochs: 2, tensorParallel: 2, resume: checkpoint });
  assert.equal(resumed.params.findIndex((value, i) => value !== whole.params[i]), -1, 'resumed on 2 ranks');

  // 2 groups of 2 against 2 data-parallel workers at the same global batch
  const hybrid = await trainOnThreads({ ...base, workers: 2, batch: 16, tensorParallel: 2, stopAfterSteps: 40 });
  const data = await trainOnThreads({ ...base, strategy: 'allreduce', workers: 2, batch: 16, stopAfterSteps: 40 });
  assert.ok(relativeDifference(hybrid.params, data.params) < 2e-5, `2 × 2: ${relativeDifference(hybrid.params, data.params)}`);
});

test('tensor parallelism: what it cannot split is refused before training', async () => {
  await assert.rejects(trainOnThreads({ ...base, tensorParallel: 3 }), /--tensor-parallel: got 3; expected a count that divides the outputs of a dense layer followed .* mlp has no such pair for 3/);
  await assert.rejects(trainOnThreads({ ...base, strategy: 'allreduce', tensorParallel: 2 }), /--tensor-parallel: got 2; expected a strategy that splits layers across ranks \(tensor\), not allreduce/);
  await assert.rejects(trainOnThreads({ ...base, tensorParallel: 2, dataset: 'rcv1-like', model: 'logreg' }), /--strategy tensor runs a model of layers layer by layer/);
});

test('tensor parallelism with --recompute: a row unit\'s outputs are summed again after each recomputed pass, and the run ends bit-equal to storing everything, within the budget; its evaluation too', async () => {
  const config = { ...base, hidden: [32, 32, 32, 32, 16], tensorParallel: 2, stopAfterSteps: 20 };
  const reference = await trainOnThreads(config);
  const stored = await trainOnThreads({ ...config, recompute: 'none' });
  assert.equal(relativeDifference(stored.params, reference.params), 0, 'none');
  const storeAll = stored.summary.activations!.peakActivationBytes;
  for (const [recompute, memoryBudget] of [['sqrt'], ['revolve:1'], [undefined, Math.floor(storeAll * 0.7)]] as const) {
    const run = await trainOnThreads({ ...config, recompute, memoryBudget });
    const label = recompute ?? `auto within ${memoryBudget}`;
    assert.equal(relativeDifference(run.params, reference.params), 0, label);
    assert.ok(run.summary.activations!.recomputed > 0, label);
    if (memoryBudget !== undefined) assert.ok(run.summary.activations!.peakActivationBytes <= memoryBudget, `${label}: ${run.summary.activations!.peakActivationBytes}`);
    // a recomputed row unit sums its outputs again: more forward all-reduces than blocks
    assert.ok(run.summary.tensorParallel!.forwardAllreduces >= run.summary.tensorParallel!.blocks, label);
  }
  const epoch = { ...config, stopAfterSteps: undefined };
  assert.equal((await trainOnThreads({ ...epoch, recompute: 'revolve:2' })).summary.testAccuracy, (await trainOnThreads(epoch)).summary.testAccuracy);
});
