// Sharded parameters (fsdp) end to end on threads: the same arithmetic as the all-reduce strategy
// element by element, so on shared memory (which sums the ranks in order) the two end bit-equal —
// momentum, Nesterov and Adam with weight decay, P = 2 and 3, the MLP and ResNet-20 (batch norm,
// residual blocks); its evaluation is the whole model's; a checkpoint resumes bit-equal.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeBatcher } from '../data/batches.js';
import { syntheticDataset } from '../data/dataset.js';
import { createModel } from '../models/index.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { trainOnThreads } from './threads.js';

const dir = mkdtempSync(join(tmpdir(), 'converge-fsdp-'));
const base: TrainConfig = { ...defaults, dataset: 'synthetic', model: 'mlp', hidden: [32, 16], batch: 16, epochs: 1, lr: 0.05, seed: 6, lrScaling: 'none' };

function firstDifference(a: Float32Array, b: Float32Array): string | null {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return `parameter ${i}: ${a[i]} vs ${b[i]}`;
  return null;
}

test('fsdp on threads ends bit-equal to all-reduce: P = 2, 3, momentum, Nesterov and Adam with weight decay', async () => {
  for (const workers of [2, 3]) {
    for (const [optimizer, weightDecay] of [['momentum', 0], ['nesterov', 1e-3], ['adam', 1e-3]] as const) {
      const config = { ...base, workers, optimizer, weightDecay, lr: optimizer === 'adam' ? 0.002 : 0.05, stopAfterSteps: 30 };
      const sharded = await trainOnThreads({ ...config, strategy: 'fsdp' });
      const reference = await trainOnThreads({ ...config, strategy: 'allreduce' });
      assert.equal(firstDifference(sharded.params, reference.params), null, `${workers} workers, ${optimizer}`);
    }
  }
});

test('fsdp on threads: ResNet-20 (batch norm, residual blocks) ends bit-equal to all-reduce, and the accuracy it reports is the whole model\'s', async () => {
  const config = { ...base, model: 'resnet20', workers: 2, stopAfterSteps: 4 };
  const sharded = await trainOnThreads({ ...config, strategy: 'fsdp' });
  const reference = await trainOnThreads({ ...config, strategy: 'allreduce' });
  assert.equal(firstDifference(sharded.params, reference.params), null);

  // 386 test samples on 3 ranks: shares of 128, 129 and 129, so one rank has no samples in the second round and must still take part in its gathers
  const dataset = syntheticDataset(base.seed, 2048, 386);
  const run = await trainOnThreads({ ...base, workers: 3, strategy: 'fsdp' }, { dataset });
  const model = createModel('mlp', { inputShape: [1, 8, 8], classes: 10, hidden: base.hidden, maxBatch: 128 });
  const batcher = makeBatcher(dataset, 'test', 128);
  let correct = 0;
  for (let start = 0; start < dataset.test.count; start += 128) correct += model.evaluate(run.params, batcher.range(start, Math.min(128, dataset.test.count - start))).correct;
  assert.equal(run.summary.testAccuracy, correct / dataset.test.count);
  assert.ok(run.summary.testAccuracy > 0.9, `accuracy ${run.summary.testAccuracy}`);
});

test('fsdp on threads: a checkpoint resumes bit-equal to the run never interrupted, on fsdp and on all-reduce', async () => {
  const config = { ...base, workers: 2, epochs: 2 };
  const whole = await trainOnThreads({ ...config, strategy: 'fsdp' });
  const checkpoint = join(dir, 'fsdp.ckpt');
  await trainOnThreads({ ...config, strategy: 'fsdp', save: checkpoint, stopAfterSteps: 70 });
  for (const strategy of ['fsdp', 'allreduce']) {
    const resumed = await trainOnThreads({ ...config, strategy, resume: checkpoint });
    assert.deepEqual(resumed.resumedFrom, { epoch: 1, step: 6 });
    assert.equal(firstDifference(resumed.params, whole.params), null, `resumed with ${strategy}`);
  }
});

test('fsdp: a model that is not a chain of layers is refused before training', async () => {
  await assert.rejects(trainOnThreads({ ...base, strategy: 'fsdp', dataset: 'rcv1-like', model: 'logreg' }), /--strategy fsdp runs a model of layers layer by layer .*logreg is not one/);
});

test('fsdp with --recompute: each unit\'s parameters are gathered again for its recomputed passes, and the run ends bit-equal to all-reduce, within the budget; its evaluation too', async () => {
  const config = { ...base, hidden: [32, 32, 32, 32, 32, 32], workers: 2, strategy: 'fsdp', stopAfterSteps: 20 };
  const reference = await trainOnThreads({ ...config, strategy: 'allreduce' });
  const stored = await trainOnThreads({ ...config, recompute: 'none' });
  assert.equal(firstDifference(stored.params, reference.params), null, 'none');
  const storeAll = stored.summary.activations!.peakActivationBytes;
  for (const [recompute, memoryBudget] of [['sqrt'], ['revolve:1'], [undefined, Math.floor(storeAll * 0.7)]] as const) {
    const run = await trainOnThreads({ ...config, recompute, memoryBudget });
    const label = recompute ?? `auto within ${memoryBudget}`;
    assert.equal(firstDifference(run.params, reference.params), null, label);
    assert.ok(run.summary.activations!.recomputed > 0, label);
    if (memoryBudget !== undefined) assert.ok(run.summary.activations!.peakActivationBytes <= memoryBudget, `${label}: ${run.summary.activations!.peakActivationBytes}`);
  }
  // an epoch: evaluation runs the recomputing chain's forward pass, gathering as it goes
  const epoch = { ...config, stopAfterSteps: undefined };
  assert.equal((await trainOnThreads({ ...epoch, recompute: 'revolve:2' })).summary.testAccuracy, (await trainOnThreads({ ...epoch, strategy: 'allreduce' })).summary.testAccuracy);
});
