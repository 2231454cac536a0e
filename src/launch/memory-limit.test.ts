// --memory-limit: what a rank holds for its model — parameters, gradients, optimiser state and
// activations, as each strategy declares it — against a limit, before the first step. A model
// whose whole replica does not fit trains when sharded (fsdp) or cut into stages (pipeline), and
// all-reduce is refused, saying what to shard. The figures are held to the model's own sizes.
// (A pipeline of 2 stages would not fit this limit either: a stage holds its gradient twice, the
// step's and a micro-batch's; 3 stages do.)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createModel } from '../models/index.js';
import type { Sequential } from '../models/sequential.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { trainOnThreads } from './threads.js';

const hidden = Array.from({ length: 8 }, () => 512);
const base: TrainConfig = { ...defaults, dataset: 'synthetic', model: 'mlp', hidden, workers: 2, batch: 16, epochs: 1, lr: 0.05, seed: 3, stopAfterSteps: 3 };

test('--memory-limit: a model whose whole replica does not fit a rank trains with fsdp and with a pipeline; all-reduce is refused before its first step, saying what to shard', async () => {
  const model = createModel('mlp', { inputShape: [1, 8, 8], classes: 10, hidden, maxBatch: 128 }) as Sequential;
  const n = model.layout.size;
  const largest = 512 * 512 + 512;
  // a whole replica: parameters, gradient and momentum's velocity, and the model's activation arena
  const whole = await trainOnThreads(base);
  const replica = { parameters: 4 * n, gradients: 4 * n, optimizer: 4 * n, activations: model.activations.bytes, total: 12 * n + model.activations.bytes };
  assert.deepEqual(whole.summary.memory, { ...replica, ranks: [replica, replica] });
  const limit = Math.floor(0.85 * 12 * n);
  await assert.rejects(trainOnThreads({ ...base, memoryLimit: limit }), (error: Error) =>
    /--memory-limit [\d.]+ MiB: rank \d of --strategy allreduce would hold [\d.]+ MiB \(parameters [\d.]+ MiB, gradients [\d.]+ MiB, optimiser state [\d.]+ MiB, activations [\d.]+ [KM]iB\); shard the model across ranks \(--strategy pipeline or fsdp or tensor\)/.test(error.message));
  // fsdp: each rank a half share of the parameters, gradients and velocity, and one layer whole twice
  const sharded = await trainOnThreads({ ...base, strategy: 'fsdp', memoryLimit: limit });
  const memory = sharded.summary.memory!;
  assert.ok(memory.parameters >= 4 * (n / 2 + largest) && memory.parameters <= 4 * (n / 2 + largest + 20), `${memory.parameters}`);
  assert.equal(memory.optimizer, memory.parameters - 4 * largest);
  assert.ok(memory.total <= limit, `${memory.total} > ${limit}`);
  // each rank's own figures, gathered: the two shares of every layer make the whole model
  assert.equal(memory.ranks.length, 2);
  assert.equal(memory.ranks[0].parameters + memory.ranks[1].parameters, 4 * (n + 2 * largest));
  assert.ok(memory.ranks.every((rank) => rank.total <= limit));
  // a pipeline of 3 stages (every rank checked; the summary has rank 0's): its stage's parameters, one gradient (the micro-batches' add to it) and their velocity
  const pipeline = await trainOnThreads({ ...base, strategy: 'pipeline', workers: 1, stages: 3, microbatches: 2, memoryLimit: limit });
  const stage = pipeline.summary.memory!;
  const first = pipeline.summary.pipeline![0].parameters;
  assert.deepEqual([stage.parameters, stage.gradients, stage.optimizer], [4 * first, 4 * first, 4 * first]);
  assert.ok(stage.total <= limit && first < n, `${stage.total} > ${limit}`);
  // every stage's own figures: its parameters (as its report says), which together are the model's once
  const stages = pipeline.summary.pipeline!;
  assert.deepEqual(stage.ranks.map((rank) => rank.parameters), stages.map((s) => 4 * s.parameters));
  assert.equal(stage.ranks.reduce((sum, rank) => sum + rank.parameters, 0), 4 * n);
  assert.deepEqual(stage.ranks.map((rank) => rank.gradients), stages.map((s) => 4 * s.parameters));
  assert.ok(stage.ranks.every((rank) => rank.total <= limit && rank.activations > 0));
});
