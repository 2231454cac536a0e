// The training loop's own judgements, with a model whose losses the test chooses: when a run
// has diverged (a loss that is not finite, or a million times the run's first, or than 1 where the
// first was smaller), at which step the loop says so, and where inside an epoch it evaluates.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { trainOnThreads } from '../launch/threads.js';
import { defaults, type TrainConfig } from './config.js';

const dir = mkdtempSync(join(tmpdir(), 'converge-loop-'));

/** A model file whose k-th gradient computation (counted from 0) reports losses[k], or the last one given; it learns nothing. */
function scriptedModel(name: string, losses: number[]): string {
  const path = join(dir, `${name}.mjs`);
  writeFileSync(path, `import { Layout } from ${JSON.stringify(new URL('../tensor/layout.js', import.meta.url).href)};
const losses = ${JSON.stringify(losses.map(String))}.map(Number);
export default { data: 'images', build(options) {
  const layout = new Layout([{ name: 'w', shape: [4] }]);
  let calls = 0;
  return { name: ${JSON.stringify(name)}, layout, maxBatch: options.maxBatch, task: 'classification',
    init: (params) => params.fill(0),
    lossAndGrad(params, batch, grad) { grad.fill(0); const loss = losses[Math.min(calls, losses.length - 1)]; calls++; return loss; },
    evaluate: () => ({ loss: 1, correct: 0, squaredError: 0 }) };
} };
`);
  return path;
}

// synthetic: 2,048 training samples; one worker of 16 takes 128 steps an epoch
const base: TrainConfig = { ...defaults, dataset: 'synthetic', workers: 1, batch: 16, epochs: 2, lr: 0.05, seed: 5, strategy: 'allreduce' };

async function divergesAt(losses: number[]): Promise<string | null> {
  try {
    await trainOnThreads({ ...base, model: scriptedModel(`m${Math.random().toString(36).slice(2)}`, losses) });
    return null;
  } catch (error) {
    // the thread launcher names the rank that failed and where
    const divergence = /^rank 0 failed during [^:]*: (loss became .*)$/.exec((error as Error).message);
    assert.ok(divergence, (error as Error).message);
    return divergence[1];
  }
}

test('a loss that is not finite, or over a million times the first (or than 1, where the first was smaller), stops the run at its step with a one-line remedy', async () => {
  assert.equal(await divergesAt([0.5, 0.5, 0.5, NaN]), 'loss became NaN at step 3 (epoch 1) with learning rate 0.05; training stopped — try a lower --lr (e.g. 0.013) or a warm-up (--warmup-epochs 1).');
  assert.match((await divergesAt([2, 2, Infinity]))!, /^loss became Infinity at step 2 \(epoch 1\)/);
  // first loss 2: the bound is 2e6; exactly at it is not yet diverged, just above it is
  assert.match((await divergesAt([2, 3, 2e6, 2, 2000000.5]))!, /^loss became 2000000\.5 at step 4 \(epoch 1\)/);
  // first loss 0.25: the bound is 1e6, not 2.5e5
  assert.equal(await divergesAt([0.25, 9e5, 0.25]), null);
  assert.match((await divergesAt([0.25, 9e5, 1.5e6]))!, /^loss became 1500000 at step 2 \(epoch 1\)/);
  // in the second epoch: step 128 + 5 of the run, the first loss still the scale
  const second = [3, ...Array(132).fill(3), 3.1e6];
  assert.match((await divergesAt(second))!, /^loss became 3100000 at step 133 \(epoch 2\)/);
  assert.equal(await divergesAt([3, ...Array(132).fill(3), 2.9e6, 3]), null, 'under the bound, twice over');
});

test('--eval-every N steps evaluates after every N-th step, not within half an interval of the epoch\'s end (which evaluates anyway)', async () => {
  const log = join(dir, 'eval.jsonl');
  const model = scriptedModel('flat', [1]);
  const evaluatedAfter = async (evalEvery: string) => {
    // batches of 24: ⌊2,048 / 24⌋ = 85 steps an epoch
    await trainOnThreads({ ...base, model, epochs: 1, batch: 24, evalEvery, log });
    return readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line)).filter((r) => r.type === 'evaluation').map((r) => r.samples / 24);
  };
  assert.deepEqual(await evaluatedAfter('40 steps'), [40, 85], 'after 80, 5 steps are left: fewer than 20');
  assert.deepEqual(await evaluatedAfter('28 steps'), [28, 56, 85], 'after 84, 1 step is left');
  assert.deepEqual(await evaluatedAfter('34 steps'), [34, 68, 85], 'after 68, 17 steps are left: exactly half of 34, and it evaluates');
  assert.deepEqual(await evaluatedAfter('85 steps'), [85], 'the epoch\'s end evaluates once');
});

test('a model\'s buffers (running statistics) are saved with it and restored on resume: a run stopped and resumed ends with the buffers of one that ran through', async () => {
  // buffers[0] counts the gradient computations of this replica, buffers[1] sums the first label of each batch
  const path = join(dir, 'counting.mjs');
  writeFileSync(path, `import { Layout } from ${JSON.stringify(new URL('../tensor/layout.js', import.meta.url).href)};
export default { data: 'images', build(options) {
  const layout = new Layout([{ name: 'w', shape: [2] }]);
  const buffers = new Float32Array(2);
  return { name: 'counting', layout, maxBatch: options.maxBatch, task: 'classification', buffers,
    init: (params) => params.fill(1),
    lossAndGrad(params, batch, grad) { buffers[0] += 1; buffers[1] += batch.y[0]; grad[0] = params[0]; grad[1] = 0; return 1; },
    evaluate: () => ({ loss: 1, correct: 0, squaredError: 0 }) };
} };
`);
  const config: TrainConfig = { ...base, model: path, epochs: 2, batch: 64 };
  const whole = join(dir, 'whole.ckpt');
  await trainOnThreads({ ...config, save: whole });
  const stopped = join(dir, 'stopped.ckpt');
  await trainOnThreads({ ...config, save: stopped, stopAfterSteps: 21 });
  const { readCheckpointLayout } = await import('./checkpoint.js');
  assert.deepEqual(readCheckpointLayout(stopped).state.optimizerState['model.buffers'].slice(0, 1), Float32Array.of(21), 'the stopped run saved its 21 steps\' count');
  await trainOnThreads({ ...config, resume: stopped, save: stopped });
  const expected = readCheckpointLayout(whole).state.optimizerState['model.buffers'];
  assert.equal(expected[0], 64, '2 epochs of 32 steps');
  assert.deepEqual(readCheckpointLayout(stopped).state.optimizerState['model.buffers'], expected);
});
