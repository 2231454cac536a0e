// --eval-every, --target and --global-batch: evaluations inside an epoch score the parameters of
// their step (a run stopped at that step, scored here directly, is the oracle) and change nothing
// in training; the summary's time to target is the first evaluation that reached it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { makeBatcher } from '../data/batches.js';
import type { ImageDataset } from '../data/dataset.js';
import { loadAnyDataset } from '../data/load.js';
import { trainOnThreads } from '../launch/threads.js';
import { createImageModel } from '../models/index.js';
import { defaults, evaluationInterval, validate, type TrainConfig } from './config.js';
import { logRecords } from './log.test.fixture.js';

// synthetic: 2,048 training samples, so 2 workers × 64 make 16 steps an epoch
const base: TrainConfig = { ...defaults, dataset: 'synthetic', model: 'mlp', hidden: [32, 16], epochs: 2, workers: 2, lr: 0.05, seed: 5 };

/** Test loss and accuracy of these parameters on the whole test split, as one batch. */
function score(params: Float32Array): { loss: number; accuracy: number } {
  const data = loadAnyDataset('synthetic', { seed: base.seed }) as ImageDataset;
  const model = createImageModel('mlp', { inputShape: data.shape, classes: data.classes, hidden: base.hidden, maxBatch: data.test.count });
  const { loss, correct } = model.evaluate(params, makeBatcher(data, 'test', data.test.count).range(0, data.test.count) as never);
  return { loss, accuracy: correct / data.test.count };
}


test('--eval-every 0.25: four evaluations an epoch, each scoring the parameters of its step; training unchanged', async () => {
  const log = join(mkdtempSync(join(tmpdir(), 'converge-eval-')), 'run.jsonl');
  const plain = await trainOnThreads(base);
  const evaluated = await trainOnThreads({ ...base, evalEvery: 0.25, log });
  assert.deepEqual(evaluated.params, plain.params, 'evaluating inside the epochs changes nothing in training');
  const evaluations = logRecords(log).filter((r) => r.type === 'evaluation');
  assert.deepEqual(evaluations.map((r) => r.epochs), [0.25, 0.5, 0.75, 1, 1.25, 1.5, 1.75, 2]);
  assert.deepEqual(evaluations.map((r) => r.samples), [1, 2, 3, 4, 5, 6, 7, 8].map((k) => k * 4 * 128));
  for (const [at, steps] of [[0, 4], [5, 24], [7, 32]]) {
    const stopped = await trainOnThreads({ ...base, stopAfterSteps: steps });
    const expected = score(steps === 32 ? plain.params : stopped.params);
    const reported = evaluations[at];
    assert.ok(Math.abs((reported.testAccuracy as number) - expected.accuracy) < 1e-6, `epoch ${reported.epochs}: accuracy ${reported.testAccuracy}, the step's parameters score ${expected.accuracy}`);
    assert.ok(Math.abs((reported.testLoss as number) - expected.loss) < 1e-4 * (1 + expected.loss), `epoch ${reported.epochs}: loss ${reported.testLoss}, the step's parameters give ${expected.loss}`);
  }
  // the training time of the run so far: it grows, and at the end it is the epochs' training times summed
  const times = evaluations.map((r) => r.trainSeconds as number);
  assert.ok(times.every((t, i) => i === 0 || t > times[i - 1]), `training seconds grow: ${times}`);
  const epochs = logRecords(log).filter((r) => r.type === 'epoch').map((r) => r.trainSeconds as number);
  assert.ok(Math.abs(times[times.length - 1] - (epochs[0] + epochs[1])) < 1e-6, `${times[times.length - 1]} s of training at the end; the epochs say ${epochs[0] + epochs[1]}`);
});

test('--target: the summary times the first evaluation that reached it, or says none did', async () => {
  const log = join(mkdtempSync(join(tmpdir(), 'converge-target-')), 'run.jsonl');
  const evaluations = () => logRecords(log).filter((r) => r.type === 'evaluation');
  await trainOnThreads({ ...base, evalEvery: '3 steps', log });
  const accuracies = evaluations().map((r) => r.testAccuracy as number);
  // a target the run first reaches exactly, in its middle: an accuracy above every one before it
  const k = accuracies.findIndex((a, i) => i >= 2 && a > Math.max(...accuracies.slice(0, i)));
  assert.ok(k > 0, `the accuracy improves after the first evaluations: ${accuracies}`);
  const target = accuracies[k];
  const { summary } = await trainOnThreads({ ...base, evalEvery: '3 steps', log, target });
  const first = evaluations().find((r) => (r.testAccuracy as number) >= target)!;
  assert.equal(summary.target, target);
  assert.equal(summary.samplesToTarget, first.samples);
  assert.equal(summary.trainSecondsToTarget, first.trainSeconds);
  const never = await trainOnThreads({ ...base, epochs: 1, target: 1.01 });
  assert.equal(never.summary.samplesToTarget, null);
  assert.equal(never.summary.trainSecondsToTarget, null);
});

test('--global-batch B: each of P workers takes B / P, so P workers end where one worker with batch B does', async () => {
  const one = await trainOnThreads({ ...base, workers: 1, globalBatch: 96 });
  for (const workers of [2, 3]) {
    const many = await trainOnThreads({ ...base, workers, globalBatch: 96 });
    let worst = 0;
    for (let i = 0; i < one.params.length; i++) worst = Math.max(worst, Math.abs(many.params[i] - one.params[i]) / (1e-3 + Math.abs(one.params[i])));
    assert.ok(worst < 1e-3, `${workers} workers: parameters differ by up to ${worst} (relative)`);
  }
});

test('--eval-every, --global-batch and --target: intervals, and bad values refused before any work', () => {
  assert.equal(evaluationInterval(0.25, 16), 4);
  assert.equal(evaluationInterval(1, 937), 937);
  assert.equal(evaluationInterval('0.3', 10), 3);
  assert.equal(evaluationInterval('100steps', 937), 100);
  assert.equal(evaluationInterval('7 steps', 937), 7);
  assert.equal(evaluationInterval(0.001, 100), 1, 'at least every step');
  for (const evalEvery of [0, -1, 'often', '0steps', Number.NaN]) assert.throws(() => validate({ ...base, evalEvery }), /--eval-every/, `${evalEvery}`);
  assert.throws(() => validate({ ...base, strategy: 'hogwild', evalEvery: 0.5 }), /--eval-every.*hogwild.*allreduce, ps, local-sgd/);
  assert.throws(() => validate({ ...base, strategy: 'async-ps', evalEvery: '10steps' }), /--eval-every.*async-ps/);
  validate({ ...base, strategy: 'hogwild', evalEvery: 2 });
  assert.throws(() => validate({ ...base, workers: 3, globalBatch: 64 }), /--global-batch.*multiple of the 3 workers/);
  assert.throws(() => validate({ ...base, globalBatch: 0 }), /--global-batch/);
  assert.throws(() => validate({ ...base, target: Number.NaN }), /--target/);
});

test('each epoch says where a step\'s time went: compute, communication, waiting (shm measures its waits; one worker never waits)', async () => {
  const log = join(mkdtempSync(join(tmpdir(), 'converge-breakdown-')), 'run.jsonl');
  for (const workers of [1, 2]) {
    await trainOnThreads({ ...base, workers, log });
    for (const epoch of logRecords(log).filter((r) => r.type === 'epoch') as unknown as { perStepMs: { compute: number; communication: number; waiting: number }; trainSeconds: number }[]) {
      const { compute, communication, waiting } = epoch.perStepMs;
      assert.ok(compute > 0 && communication >= 0, `${workers} workers: ${JSON.stringify(epoch.perStepMs)}`);
      if (workers === 1) assert.equal(waiting, 0, 'one worker has no peer to wait for');
      else assert.ok(waiting > 0, `two workers wait at their collectives' barriers: ${waiting} ms`);
      // 2,048 samples, 64 a worker: the steps' parts fit in the epoch's training time
      const steps = 2048 / (64 * workers);
      assert.ok((steps * (compute + communication + waiting)) / 1000 <= epoch.trainSeconds, `${JSON.stringify(epoch.perStepMs)} × ${steps} steps within ${epoch.trainSeconds} s`);
    }
  }
});
