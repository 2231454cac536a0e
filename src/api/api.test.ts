// The library as a user meets it: models defined outside converge (examples/) trained
// data-parallel through train() and the CLI, on threads and over tcp; typed errors; stopping by
// AbortSignal; and the communicator in a loop of one's own.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConvergeError, init, runOnThreads, train, type EpochReport } from '../index.js';
import { launchProcesses } from '../launch/local-job.js';
import { readCheckpoint } from '../train/checkpoint.js';
import { resolveModel } from '../models/module.js';

const layered = new URL('../../examples/dist/my-model.js', import.meta.url);
const plain = new URL('../../examples/dist/linear-model.js', import.meta.url);
const quick = { data: 'synthetic', epochs: 1, seed: 3 } as const;

function maxRelativeDifference(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1e-3 + Math.abs(b[i])));
  return worst;
}

test('a model of your own (layers with a residual block; a plain lossAndGrad function) trains data-parallel: 2 workers end where 1 worker with twice the batch does', async () => {
  for (const model of [layered, plain]) {
    const reference = await train({ ...quick, model, workers: 1, batch: 64, strategy: 'allreduce' });
    for (const strategy of ['allreduce', 'ps']) {
      const parallel = await train({ ...quick, model, workers: 2, batch: 32, strategy });
      const difference = maxRelativeDifference(parallel.params!, reference.params!);
      assert.ok(difference < 1e-3, `${model.pathname} ${strategy}: parameters differ by up to ${difference} (relative)`);
    }
  }
});

test('a model of your own trains with every strategy through train(), reporting each epoch', async () => {
  for (const model of [layered, plain]) {
    for (const strategy of ['allreduce', 'ps', 'async-ps', 'local-sgd', 'hogwild']) {
      const epochs: EpochReport[] = [];
      const { summary } = await train({ ...quick, model, epochs: 2, workers: 2, strategy, onEpoch: (e) => epochs.push(e) });
      assert.equal(epochs.length, 2, `${strategy}: one report per epoch`);
      assert.equal(summary.model, model === layered ? 'my-model' : 'linear-model');
      assert.ok(summary.testAccuracy > 0.8, `${model.pathname} ${strategy}: accuracy ${summary.testAccuracy} (chance is 0.1)`);
    }
  }
});

test('converge train --model ./my-model.js: on threads, and over tcp to the same parameters as on threads', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-user-model-'));
  const path = fileURLToPath(layered);
  const args = ['--dataset', 'synthetic', '--model', path, '--epochs', '1', '--batch', '32', '--seed', '3'];
  const threads = await train({ ...quick, model: path, workers: 2, batch: 32 });
  const saved = join(dir, 'tcp.ckpt');
  const lines: string[][] = [[], []];
  const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  const job = await launchProcesses({ processes: 2, command: [process.execPath, cli, 'train', '--backend', 'tcp', ...args, '--save', saved], onLine: (rank, line) => lines[rank].push(line) });
  assert.equal(job.exitCode, 0, lines.flat().join('\n'));
  assert.match(lines[0].join('\n'), /test accuracy [\d.]+% after 1 epoch \(my-model, allreduce, 2 processes over tcp/);
  const definition = await resolveModel(layered.href);
  const layout = definition.build({ inputShape: [1, 8, 8], classes: 10, maxBatch: 1 }).layout;
  const overTcp = readCheckpoint(saved, 'my-model', layout).state.params;
  const difference = maxRelativeDifference(overTcp, threads.params!);
  assert.ok(difference < 1e-3, `tcp against threads: parameters differ by up to ${difference}`);
});

test('train() refuses what it cannot run with a typed, one-line error', async () => {
  const refused = async (options: Parameters<typeof train>[0], code: string, pattern: RegExp) => {
    const error = await train(options).then(() => null, (e: unknown) => e);
    assert.ok(error instanceof ConvergeError, `a ConvergeError, got ${error}`);
    assert.equal(error.code, code);
    assert.match(error.message, pattern);
    assert.ok(!error.message.includes('\n'), 'one line');
  };
  await refused({ ...quick, model: layered, epoch: 3 } as never, 'BAD_OPTION', /^epoch: got 3; expected one of the options of train\(\): .*epochs/);
  await refused({ ...quick, model: new URL('./no-such-model.js', layered) }, 'BAD_MODEL', /no such module/);
  await refused({ ...quick, model: new URL('./custom-loop-rank.js', layered) }, 'BAD_MODEL', /default export is not a model definition/);
  await refused({ ...quick, data: 'rcv1-like', model: layered }, 'SHAPE_MISMATCH', /--model my-model: expected images, got rcv1-like/);
  await refused({ ...quick, model: layered, strategy: 'hogwild', backend: 'tcp' }, 'BAD_OPTION', /hogwild runs on threads/);
});

test('an AbortSignal stops the run after the current step, with the state saved', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-abort-'));
  const controller = new AbortController();
  const save = join(dir, 'stopped.ckpt');
  const result = await train({ ...quick, model: layered, epochs: 50, workers: 2, save, signal: controller.signal, onStep: () => controller.abort() });
  assert.equal(result.summary.stoppedEarly, true);
  assert.ok(result.summary.epochs < 50);
  const resumed = await train({ ...quick, model: layered, epochs: 1 + result.summary.epochs, workers: 2, resume: save });
  assert.ok(resumed.resumedFrom !== undefined);
});

test('your own loop: runOnThreads gives every thread a communicator; init() alone is a group of one', async () => {
  const results = await runOnThreads<number[]>(2, new URL('../../examples/dist/custom-loop-rank.js', import.meta.url), { capacity: 2, data: { steps: 200 } });
  // least squares to y = 3x − 1: every rank ends with the same parameters, the truth
  assert.deepEqual(results[0], results[1]);
  assert.ok(Math.abs(results[0][0] - 3) < 0.01 && Math.abs(results[0][1] + 1) < 0.01, `${results[0]}`);
  const comm = await init({ capacity: 4 });
  assert.equal(comm.size, 1);
  const values = comm.allocate(4);
  values.set([1, 2, 3, 4]);
  await comm.allreduce(values, 'sum');
  assert.deepEqual(Array.from(values), [1, 2, 3, 4]);
  await comm.close();
  await assert.rejects(runOnThreads(2, new URL('../../examples/dist/my-model.js', import.meta.url), { capacity: 2 }), /default export is not a function/);
});
