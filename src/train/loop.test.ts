// The training loop's own judgements, with a probe model whose losses the test chooses and whose
// buffers record what the loop did: when a run has diverged (a loss that is not finite, or a
// million times the run's first, or than 1 where the first was smaller) and at which step, where
// inside an epoch it evaluates and checkpoints, what an epoch reports, what a resume restores, and
// how evaluation and buffers are shared among ranks.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Communicator } from '../comm/communicator.js';
import { createShmHandle, ShmCommunicator } from '../comm/shm.js';
import { connectTcp } from '../comm/tcp-rendezvous.js';
import type { ImageDataset } from '../data/dataset.js';
import { loadAnyDataset } from '../data/load.js';
import { trainOnThreads } from '../launch/threads.js';
import { readCheckpointLayout } from './checkpoint.js';
import type { StepBreakdown } from './loop.js';
import { trainRank } from './run.js';
import { defaults, type TrainConfig } from './config.js';
import { logRecords } from './log.test.fixture.js';

const dir = mkdtempSync(join(tmpdir(), 'converge-loop-'));

/**
 * A probe: its losses cycle through `losses`; buffers hold [gradients computed, the last step
 * begun, the replica that computed last]; it scores a sample correct when its label is 0.
 */
function probeModel(name: string, losses: number[]): string {
  const path = join(dir, `${name}.mjs`);
  writeFileSync(path, `import { Layout } from ${JSON.stringify(new URL('../tensor/layout.js', import.meta.url).href)};
const losses = ${JSON.stringify(losses.map(String))}.map(Number);
export default { data: 'images', build(options) {
  const layout = new Layout([{ name: 'w', shape: [4] }]);
  const buffers = Float32Array.of(0, -1, -1);
  let calls = 0;
  return { name: ${JSON.stringify(name)}, layout, maxBatch: options.maxBatch, task: 'classification', buffers,
    init: (params) => params.fill(0),
    beginStep(step) { buffers[1] = step; },
    lossAndGrad(params, batch, grad) { buffers[0] += 1; buffers[2] = options.replica; grad.fill(0.01); return losses[calls++ % losses.length]; },
    evaluate(params, batch) { let zeros = 0; for (let i = 0; i < batch.size; i++) if (batch.y[i] === 0) zeros++; return { loss: 1, correct: zeros, squaredError: 0 }; } };
} };
`);
  return path;
}


// synthetic: 2,048 training samples; one worker of 16 takes 128 steps an epoch
const base: TrainConfig = { ...defaults, dataset: 'synthetic', workers: 1, batch: 16, epochs: 2, lr: 0.05, seed: 5, strategy: 'allreduce' };

async function divergesAt(losses: number[]): Promise<string | null> {
  try {
    await trainOnThreads({ ...base, model: probeModel(`m${Math.random().toString(36).slice(2)}`, losses) });
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
  const model = probeModel('flat', [1]);
  const evaluatedAfter = async (evalEvery: string) => {
    // batches of 24: ⌊2,048 / 24⌋ = 85 steps an epoch
    await trainOnThreads({ ...base, model, epochs: 1, batch: 24, evalEvery, log });
    return logRecords<{ type: string; samples: number }>(log).filter((r) => r.type === 'evaluation').map((r) => r.samples / 24);
  };
  assert.deepEqual(await evaluatedAfter('40 steps'), [40, 85], 'after 80, 5 steps are left: fewer than 20');
  assert.deepEqual(await evaluatedAfter('28 steps'), [28, 56, 85], 'after 84, 1 step is left');
  assert.deepEqual(await evaluatedAfter('34 steps'), [34, 68, 85], 'after 68, 17 steps are left: exactly half of 34, and it evaluates');
  assert.deepEqual(await evaluatedAfter('85 steps'), [85], 'the epoch\'s end evaluates once');
  // after 84, 1 step is left, under half of 4 (a bound two steps looser would evaluate there)
  assert.deepEqual(await evaluatedAfter('4 steps'), [...Array.from({ length: 20 }, (_, k) => 4 * (k + 1)), 85]);
});

test('a model\'s buffers (running statistics) are saved with it and restored on resume: a run stopped and resumed ends with the buffers of one that ran through', async () => {
  // the probe's buffers count its gradients and hold the last step begun
  const path = probeModel('counting', [1]);
  const config: TrainConfig = { ...base, model: path, epochs: 2, batch: 64 };
  const whole = join(dir, 'whole.ckpt');
  await trainOnThreads({ ...config, save: whole });
  const stopped = join(dir, 'stopped.ckpt');
  await trainOnThreads({ ...config, save: stopped, stopAfterSteps: 21 });
  assert.deepEqual(readCheckpointLayout(stopped).state.optimizerState['model.buffers'].slice(0, 1), Float32Array.of(21), 'the stopped run saved its 21 steps\' count');
  await trainOnThreads({ ...config, resume: stopped, save: stopped });
  const expected = readCheckpointLayout(whole).state.optimizerState['model.buffers'];
  assert.equal(expected[0], 64, '2 epochs of 32 steps');
  assert.deepEqual(readCheckpointLayout(stopped).state.optimizerState['model.buffers'], expected);
});

test('an epoch reports the mean of its steps\' losses, the samples it trained, its training time within the run\'s, its first and last steps, and a run that ends whole says so', async () => {
  const log = join(dir, 'probe.jsonl');
  const model = probeModel('probe', [1, 2, 3, 6]);
  const started = performance.now();
  // 2,048 samples, one worker of 64: 32 steps an epoch, whose losses cycle with mean 3
  const { summary } = await trainOnThreads({ ...base, model, batch: 64, log });
  const wall = (performance.now() - started) / 1000;
  assert.equal(summary.stoppedEarly, false);
  const epochs = logRecords(log).filter((r) => r.type === 'epoch') as { trainLoss: number; samplesPerSecond: number; trainSeconds: number; perStepMs: { communication: number } }[];
  assert.deepEqual(epochs.map((e) => e.trainLoss), [3, 3]);
  // (the log gives the epoch's samples as a rate over its training time)
  assert.deepEqual(epochs.map((e) => Math.round(e.samplesPerSecond * e.trainSeconds)), [2048, 2048]);
  assert.ok(epochs.every((e) => e.trainSeconds > 0) && epochs[0].trainSeconds + epochs[1].trainSeconds <= wall, `${epochs.map((e) => e.trainSeconds)} s of training in a run of ${wall} s`);
  // a step is reported at most every 200 ms, and the last of each epoch always: here the first and last of each
  const steps = logRecords(log).filter((r) => r.type === 'step') as { epoch: number; step: number; loss: number; samples: number }[];
  for (const epoch of [0, 1]) {
    const mine = steps.filter((s) => s.epoch === epoch);
    assert.deepEqual(mine[mine.length - 1], { ...mine[mine.length - 1], step: 31, loss: 6, samples: (epoch + 1) * 2048 });
    assert.ok(mine.length <= 2 + Math.ceil(epochs[epoch].trainSeconds / 0.2), `${mine.length} step records in an epoch of ${epochs[epoch].trainSeconds} s`);
  }
  assert.deepEqual(steps[0], { ...steps[0], epoch: 0, step: 0, loss: 1, samples: 64 }, 'the first step is reported');
  // local SGD reports a loss only where the copies meet, the mean of the steps since the last meeting: weighted by
  // those steps, the epoch's mean is the steps' (windows of 3 over a cycle of 4 have other means: 2, 11/3, 3, 3 …)
  await trainOnThreads({ ...base, model, batch: 64, strategy: 'local-sgd', syncEvery: 3, log });
  assert.deepEqual(logRecords(log).filter((r) => r.type === 'epoch').map((r) => r.trainLoss), [3, 3]);
  // a strategy that meets only at the epoch's end (hogwild) is handed the epoch's mean to agree on
  await trainOnThreads({ ...base, model, batch: 64, strategy: 'hogwild', log });
  assert.deepEqual(logRecords(log).filter((r) => r.type === 'epoch').map((r) => r.trainLoss), [3, 3]);
  // two workers: their mean losses, and time in the exchange beside the computing
  await trainOnThreads({ ...base, model, batch: 32, workers: 2, log });
  const two = logRecords(log).filter((r) => r.type === 'epoch') as typeof epochs;
  assert.deepEqual(two.map((e) => e.trainLoss), [3, 3]);
  assert.deepEqual(two.map((e) => Math.round(e.samplesPerSecond * e.trainSeconds)), [2048, 2048], 'the samples of both workers');
  assert.ok(two.every((e) => e.perStepMs.communication > 0), JSON.stringify(two.map((e) => e.perStepMs)));
});

test('a stopped run resumed reports only the samples it trained; mid-epoch checkpoints land every --save-every steps; steps begin numbered through the run', async () => {
  const model = probeModel('probe-resume', [1]);
  const log = join(dir, 'resume.jsonl');
  const checkpoint = join(dir, 'probe.ckpt');
  await trainOnThreads({ ...base, model, batch: 64, save: checkpoint, stopAfterSteps: 21 });
  await trainOnThreads({ ...base, model, batch: 64, resume: checkpoint, save: checkpoint, log });
  assert.deepEqual(logRecords(log).filter((r) => r.type === 'epoch').map((r) => Math.round((r.samplesPerSecond as number) * (r.trainSeconds as number))), [(32 - 21) * 64, 2048]);
  // the last step begun is the run's 64th (numbered from 0): epoch · steps + step
  assert.equal(readCheckpointLayout(checkpoint).state.optimizerState['model.buffers'][1], 63);
  // a run that fails at its 22nd gradient (step 21) keeps the checkpoint --save-every 8 wrote after step 16
  const failing = probeModel('probe-fails', [...Array(21).fill(1), NaN]);
  const saved = join(dir, 'failing.ckpt');
  await assert.rejects(trainOnThreads({ ...base, model: failing, batch: 64, save: saved, saveEvery: 8 }), /loss became NaN at step 21 \(epoch 1\)/);
  const { state } = readCheckpointLayout(saved);
  assert.deepEqual([state.epoch, state.step], [0, 16]);
  // in the second epoch the step is counted through the run
  const late = probeModel('probe-fails-late', [...Array(32 + 2).fill(1), NaN]);
  await assert.rejects(trainOnThreads({ ...base, model: late, batch: 64 }), /loss became NaN at step 34 \(epoch 2\)/);
});

test('with --save-every-seconds only the first checkpoint and the run\'s last are sure to be written: mid-epoch and epoch-end checkpoints wait for the clock', async () => {
  // 32 steps an epoch; the probe's loss becomes NaN at step 32 + 21 (epoch 2): what is on disk is the last checkpoint written
  const failing = probeModel('probe-clock', [...Array(32 + 21).fill(1), NaN]);
  const onDisk = async (saveEvery: number, strategy = 'allreduce') => {
    const path = join(dir, `clock-${saveEvery}-${strategy}.ckpt`);
    await assert.rejects(trainOnThreads({ ...base, model: failing, batch: 64, epochs: 3, strategy, save: path, saveEvery, saveEverySeconds: 3600 }), /loss became NaN at step 53 \(epoch 2\)/);
    if (!existsSync(path)) return null;
    const { state } = readCheckpointLayout(path);
    return [state.epoch, state.step];
  };
  // the first, after step 8; none since (not after 16, 24, the epoch's end, 40 or 48)
  assert.deepEqual(await onDisk(8), [0, 8]);
  // every 32 steps is every epoch's end, which is no mid-epoch checkpoint: the first written is the first epoch's end
  assert.deepEqual(await onDisk(32), [1, 0]);
  // Hogwild! has no mid-epoch checkpoints: only epoch ends
  assert.deepEqual(await onDisk(8, 'hogwild'), [1, 0]);
});

test('the per-step breakdown gives the time spent waiting where the backend can tell it (shm), and null where it cannot (tcp)', async () => {
  const dataset = loadAnyDataset('synthetic', { seed: base.seed });
  const config: TrainConfig = { ...base, model: probeModel('probe-waits', [1]), batch: 64, epochs: 1 };
  const perStep = async (comm: Communicator) => {
    const events: { kind: string; perStep?: StepBreakdown }[] = [];
    const start = { params: new Float32Array(4), optimizerState: {}, optimizerSteps: 0, epoch: 0, step: 0 };
    await trainRank(comm, { config, dataset, start, stopFlag: new SharedArrayBuffer(4), kernels: 'reference' }, (event) => events.push(event as (typeof events)[number]));
    return events.find((event) => event.kind === 'epoch')!.perStep!;
  };
  const shm = await perStep(new ShmCommunicator(createShmHandle(1, 64, 10_000), 0));
  assert.equal(typeof shm.waiting, 'number');
  assert.ok(shm.waiting! >= 0 && shm.compute > 0, JSON.stringify(shm));
  const tcp = await connectTcp({ rank: 0, size: 1, masterAddr: '127.0.0.1', masterPort: 1, secret: 'one-rank-secret', timeoutMs: 10_000, capacity: 64 });
  const blind = await perStep(tcp);
  await tcp.close();
  assert.equal(blind.waiting, null, JSON.stringify(blind));
  assert.ok(blind.compute > 0 && blind.communication >= 0, JSON.stringify(blind));
});

test('evaluation shares the test split among the ranks, each sample scored once (3 workers: uneven shares); buffers saved are the first worker\'s (a parameter server holds none of its own)', async () => {
  const data = loadAnyDataset('synthetic', { seed: base.seed }) as ImageDataset;
  let zeros = 0;
  for (let i = 0; i < data.test.count; i++) if (data.test.labels[i] === 0) zeros++;
  const model = probeModel('probe-eval', [1]);
  for (const workers of [1, 3]) {
    const { summary } = await trainOnThreads({ ...base, model, batch: 32, workers, epochs: 1 });
    assert.equal(summary.testAccuracy, zeros / data.test.count, `${workers} workers: the share of label 0 in the test split`);
  }
  const checkpoint = join(dir, 'ps.ckpt');
  await trainOnThreads({ ...base, model, batch: 32, workers: 2, strategy: 'ps', epochs: 1, save: checkpoint });
  const buffers = readCheckpointLayout(checkpoint).state.optimizerState['model.buffers'];
  assert.equal(buffers[2], 1, 'the first worker (rank 1) computed them; the server (rank 0) never did');
  assert.equal(buffers[0], 2048 / 64, 'the first worker\'s count: one gradient a step');
});
