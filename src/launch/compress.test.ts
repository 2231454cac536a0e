// Gradient compression inside the strategies: the identity hook changes nothing, every hook
// trains with every strategy that exchanges gradients, and the bytes logged are the encoding's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaults, type TrainConfig } from '../train/config.js';
import { trainOnThreads } from './threads.js';

const base: TrainConfig = { ...defaults, dataset: 'synthetic', model: 'mlp', hidden: [32, 16], epochs: 2, batch: 16, lr: 0.05, seed: 5, workers: 2 };

test('--compress none is bit-identical to no hook (allreduce and ps; 2 and 3 workers; momentum and Adam)', async () => {
  for (const strategy of ['allreduce', 'ps']) {
    for (const [workers, optimizer] of [[2, 'momentum'], [3, 'adam']] as const) {
      const config = { ...base, strategy, workers, optimizer, lr: optimizer === 'adam' ? 0.002 : 0.05 };
      const plain = await trainOnThreads(config);
      const identity = await trainOnThreads({ ...config, compress: 'none' });
      assert.deepEqual(identity.params, plain.params, `${strategy} ×${workers} ${optimizer}`);
    }
  }
});

test('every hook trains with allreduce, ps, async-ps and local-sgd', async () => {
  for (const compress of ['fp16', 'bf16', 'topk:0.05', 'topk:0.05,nodgc+fp16', 'randomk:0.3', 'qsgd:4', 'sign']) {
    for (const strategy of ['allreduce', 'ps', 'async-ps', 'local-sgd']) {
      const optimizer = compress === 'sign' ? 'sgd' : 'momentum';
      const { summary } = await trainOnThreads({ ...base, strategy, compress, optimizer, lr: compress === 'sign' ? 0.1 : 0.05, syncEvery: 2 });
      // measured: every hook with every strategy 0.89–1.00 over seeds 1–4, sign with async-ps 0.80 at
      // this seed (chance is 0.1); a bug that halves accuracy still fails
      assert.ok(summary.testAccuracy > 0.6, `${compress} with ${strategy}: accuracy ${summary.testAccuracy}`);
    }
  }
});

test('the bytes logged are the encoded payloads: top-k 1% sends k (index, value) pairs a step', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-compress-'));
  const run = async (compress: string | undefined, log: string) => {
    await trainOnThreads({ ...base, epochs: 1, compress, log: join(dir, log) });
    const lines = readFileSync(join(dir, log), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    return lines[lines.length - 1].bytesPerWorkerPerStep as number;
  };
  const size = 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10; // the layout of mlp 64-32-16-10
  const k = Math.ceil(0.01 * size);
  // 2 workers: each payload goes to one peer, with its three-float header
  assert.equal(await run('topk:0.01,nodgc', 'topk.jsonl'), 4 + 8 * k + 12);
  assert.equal(await run('topk:0.01,nodgc+fp16', 'topk16.jsonl'), 4 + 6 * k + 12);
  // without a hook, the all-reduce's 2(P − 1)/P of the gradient, and of the [loss, stop] pair; the identity hook is that all-reduce
  assert.equal(await run(undefined, 'plain.jsonl'), 4 * size + 8);
  assert.equal(await run('none', 'none.jsonl'), 4 * size + 8);
  // the dense hooks by share: the peer's share encoded (a whole number of floats), then this rank's mean share encoded again
  const share = size / 2;
  const slot = (bytes: number) => 4 * Math.ceil(bytes / 4);
  assert.equal(await run('sign', 'sign.jsonl'), 2 * slot(8 + Math.ceil(share / 8)) + 8);
  assert.equal(await run('fp16', 'fp16.jsonl'), 2 * slot(4 + 2 * share) + 8);
  assert.equal(await run('qsgd:8', 'qsgd.jsonl'), 2 * slot(4 + 2 * (4 + 512) + (4 + share - 1024)) + 8);
});

test('--compress is refused where gradients are not exchanged, and when malformed', async () => {
  await assert.rejects(trainOnThreads({ ...base, strategy: 'hogwild', compress: 'topk:0.01' }), /--compress: got "topk:0\.01"; expected a strategy that exchanges gradients \(allreduce, ps, async-ps, local-sgd\), not hogwild/);
  await assert.rejects(trainOnThreads({ ...base, compress: 'topk:0' }), /--compress "topk:0": density '0' is not in \(0, 1\]; valid forms: none, fp16/);
});

test('a compressed run stopped and resumed ends bit-identical to an uninterrupted one: the hooks\' error feedback, momentum and random stream are in the checkpoint', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-compress-resume-'));
  // (local-sgd saves its hook state too, but its resume is not bit-identical even uncompressed: its copies are averaged at the checkpoint)
  for (const [strategy, compress, optimizer] of [['allreduce', 'topk:0.05', 'momentum'], ['allreduce', 'sign', 'sgd'], ['ps', 'topk:0.05,nodgc', 'momentum'], ['allreduce', 'qsgd:4', 'momentum'], ['allreduce', 'randomk:0.3', 'sgd']] as const) {
    const config = { ...base, strategy, compress, optimizer, lr: compress === 'sign' ? 0.1 : 0.05, syncEvery: 2 };
    const whole = await trainOnThreads(config);
    const checkpoint = join(dir, `${strategy}-${compress}.ckpt`);
    const first = await trainOnThreads({ ...config, save: checkpoint, stopAfterSteps: 7 });
    assert.equal(first.summary.stoppedEarly, true);
    const resumed = await trainOnThreads({ ...config, resume: checkpoint });
    assert.deepEqual(resumed.params, whole.params, `${strategy} ${compress}: resumed parameters differ`);
  }
  // a dense hook whose all-gather carries the mean gradient (fp16, float32 parameters): every rank holds the whole optimiser state
  {
    const config = { ...base, compress: 'fp16', optimizer: 'momentum' as const };
    const whole = await trainOnThreads(config);
    const checkpoint = join(dir, 'fp16.ckpt');
    await trainOnThreads({ ...config, save: checkpoint, stopAfterSteps: 7 });
    const resumed = await trainOnThreads({ ...config, resume: checkpoint });
    assert.deepEqual(resumed.params, whole.params, 'fp16: resumed parameters differ');
  }
  // on another number of workers the error feedback owed by every rank is carried over, and the run goes on
  const checkpoint = join(dir, 'topk-2.ckpt');
  await trainOnThreads({ ...base, compress: 'topk:0.05', save: checkpoint, stopAfterSteps: 7 });
  const other = await trainOnThreads({ ...base, workers: 3, compress: 'topk:0.05', resume: checkpoint });
  assert.ok(other.summary.testAccuracy > 0.3, `resumed on 3 workers: ${other.summary.testAccuracy}`);
});

test('async-ps resumes with its hooks\' state: one worker stopped and resumed ends bit-identical to an uninterrupted run', async () => {
  // one worker makes the server's order of updates deterministic; the worker's error feedback
  // (what top-k has not sent yet) must come back from the checkpoint, or the runs part ways
  const dir = mkdtempSync(join(tmpdir(), 'converge-async-resume-'));
  for (const compress of ['topk:0.05,nodgc', 'qsgd:4']) {
    const config = { ...base, strategy: 'async-ps', workers: 1, compress, optimizer: 'momentum' as const };
    const whole = await trainOnThreads(config);
    const checkpoint = join(dir, `async-${compress}.ckpt`);
    const first = await trainOnThreads({ ...config, save: checkpoint, stopAfterSteps: 9 });
    assert.equal(first.summary.stoppedEarly, true);
    const resumed = await trainOnThreads({ ...config, resume: checkpoint });
    assert.deepEqual(resumed.resumedFrom, { epoch: 0, step: 9 });
    assert.deepEqual(resumed.params, whole.params, `async-ps ${compress}: resumed parameters differ`);
  }
});
