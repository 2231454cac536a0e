// The all-reduce, the parameter server, local SGD and the asynchronous parameter server driven
// step by step, outside the training loop, with every rank in this one process: P tcp communicators on loopback (no transport
// security: the fabric is this process) whose collectives interleave on the event loop. Each
// step is held to its oracle written out here: SGD with momentum as PyTorch writes it, on the mean
// of the workers' minibatch gradients (local SGD: each worker's own steps, averaged by hand), the
// mean of their losses, a stop that rank 0 asks for reaching every rank, the optimiser state a
// checkpoint takes, stored values within one rounding step (bfloat16's spacing, an int8 block's
// scale) of the float32 update, the bytes a worker sends, and async-ps's staleness bound checked by
// brute force over its update log. The whole file runs in about a second.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bufferShare, type ProcessCommunicator } from '../comm/communicator.js';
import { tcpGroup } from '../comm/tcp-group.test.fixture.js';
import { parseCompress } from '../compress/parse.js';
import type { Batcher } from '../data/batches.js';
import { createModel, type Batch } from '../models/index.js';
import { layerChainOf } from '../models/stage.js';
import { defaultOptimizer, Optimizer, type OptimizerConfig } from '../optim/optimizers.js';
import { INT8_BLOCK, type ParamPrecision } from '../tensor/precision.js';
import { restoreOptimizer } from '../train/hook-state.js';
import { Random } from '../tensor/random.js';
import { allreduce } from './allreduce.js';
import { asyncParameterServer } from './async-ps.js';
import { fsdp } from './fsdp.js';
import { localSgd } from './local-sgd.js';
import { pipeline, type PipelineOptions, type StageReport } from './pipeline.js';
import { parameterServer } from './ps.js';
import type { RecomputeSpec } from '../models/checkpointing.js';
import type { ActivationReport } from '../models/recompute.js';
import { EVAL_BATCH, type MemoryParts, type StepInput, type StepOutcome, type Strategy, type StrategyRank } from './strategy.js';
import { tensorParallel, type TensorParallelReport } from './tensor.js';
import { assertClose, momentum, sgdStep } from './sgd.test.fixture.js';

const spec = { inputShape: [1, 4, 4], classes: 3, hidden: [5, 6, 4], maxBatch: 8 };
const model = createModel('mlp', spec);
const size = model.layout.size;
const start = new Float32Array(size);
model.init(start, new Random(11));
const BATCH = 4;

/** The minibatch of a worker at a step: inputs and labels drawn from (step, worker) alone. */
function batchOf(step: number, worker: number): Batch {
  const random = new Random(1000 * step + worker + 1);
  const x = Float32Array.from({ length: BATCH * 16 }, () => random.next() * 2 - 1);
  const y = Int32Array.from({ length: BATCH }, () => Math.floor(random.next() * 3));
  return { x, y, size: BATCH };
}

interface Run {
  strategy: Strategy;
  ranks: number;
  optimizer?: OptimizerConfig;
  paramPrecision?: ParamPrecision;
  syncEvery?: number;
  compress?: string;
  /** Steps driven (the run's steps i = 0, 1, …: step `firstStep + i` of epoch `epoch`, of `stepsPerEpoch`). */
  steps: number;
  epoch?: number;
  firstStep?: number;
  stepsPerEpoch?: number;
  /** From this step on, the ranks in `stopRanks` (default every rank) are asked to stop; a strategy asks rank 0. */
  stopAt?: number;
  stopRanks?: number[];
  /** Steps after which the loop says a checkpoint or an evaluation follows. */
  meetAfter?: number[];
  /** Rank 0's parameters to start from (default `start`), and whether they are in the storage format already. */
  from?: Float32Array;
  startRounded?: boolean;
  /** Sees the ranks once built, before the first step. */
  ready?: (ranks: StrategyRank[], comms: ProcessCommunicator[]) => void;
  /** A rank that returns stop takes no more steps (async-ps: the workers hear of a stop at their next step). */
  haltOnStop?: boolean;
  /** async-ps: the bound, and where the server's reports of its updates go. */
  staleness?: number;
  updates?: { workers: number[]; versions: number[]; staleness: number[] }[];
  /** Each rank steps on its own, not in lockstep with the others (`each` is not called). */
  independent?: boolean;
  /** Milliseconds a worker's gradient takes (on the event loop: the others go on meanwhile). */
  slowWorker?: { worker: number; ms: number };
  /** tensor: the ranks of one worker (they read the same minibatch). */
  tensorParallel?: number;
  /** pipeline: its stages are the ranks of one worker. */
  pipeline?: PipelineOptions;
  /** A checkpoint's optimiser to resume with (every rank is handed the whole of it, as the loop does). */
  resume?: { state: Record<string, Float32Array>; steps: number };
  /** Each rank its own instance of the model: strategies that run layer by layer (fsdp, tensor) await between layers, and one instance's activations would be overwritten by another rank's. */
  ownModels?: boolean;
  /** Where a pipeline's stages and tensor parallelism's rank 0 report what they did (at the snapshot). */
  reports?: { stages?: StageReport[]; tensor?: TensorParallelReport; activations?: ActivationReport; holds?: MemoryParts[] };
  /** --recompute: the schedule every rank runs its passes by. */
  recompute?: RecomputeSpec;
  /** The batch each rank's own model is built for (default 8): a pipeline's evaluations run the loop's model on EVAL_BATCH samples, as the loop builds it. */
  modelBatch?: number;
}

const sgd: OptimizerConfig = { ...defaultOptimizer, name: 'sgd' };
/** The learning rate of a run's i-th step: it changes every step, so that a rate applied to another step shows. */
const rate = (i: number) => 0.1 * (1 + i / 8);

/**
 * Builds every rank of a strategy and runs `steps` steps of one epoch on all of them at once.
 * Workers are numbered 0.. among the ranks that compute gradients (the parameter server's rank 0 does not).
 * `each(step, ranks)` sees the ranks after every step; `finish(ranks)`, the ranks after the last, their communicators still open.
 */
const hasServer = (run: Run) => run.strategy === parameterServer || run.strategy === asyncParameterServer;

/** The ranks that make one worker, reading the same minibatch: a tensor-parallel group, a pipeline's stages (ranks w·k … w·k + k − 1 are worker w). */
const ranksPerWorker = (run: Run) => run.tensorParallel ?? run.pipeline?.stages ?? 1;

/** Every rank of a run's strategy, on tcp communicators of this process (the caller closes them). */
async function build(run: Run): Promise<{ comms: ProcessCommunicator[]; ranks: StrategyRank[] }> {
  const comms = await tcpGroup(run.ranks);
  const workers = hasServer(run) ? run.ranks - 1 : run.ranks / ranksPerWorker(run);
  const config = run.optimizer ?? momentum;
  try {
    const ranks = await Promise.all(comms.map((comm) => run.strategy({
      comm, model: run.ownModels ? createModel('mlp', { ...spec, maxBatch: run.modelBatch ?? spec.maxBatch }) : model, workers, tensorParallel: run.tensorParallel, pipeline: run.pipeline, batch: BATCH, seed: 5, startParams: comm.rank === 0 ? run.from ?? start : new Float32Array(size), startRounded: run.startRounded,
      paramPrecision: run.paramPrecision ?? 'fp32', syncEvery: run.syncEvery ?? 1, staleness: run.staleness ?? 0,
      hook: run.compress ? parseCompress(run.compress)({ size, seed: comm.rank, momentum: 0 }) : null,
      optimizer: (range) => restored(config, run.resume, range), replica: (maxBatch) => (run.ownModels ? createModel('mlp', { ...spec, maxBatch }) : model),
      reportUpdates: (workers, versions, staleness) => void run.updates?.push({ workers, versions, staleness }),
      // what a group did is rank 0's to report
      reportPipeline: (stages) => void (assert.equal(comm.rank, 0, 'a pipeline report'), run.reports && (run.reports.stages = stages)),
      reportTensorParallel: (report) => void (assert.equal(comm.rank, 0, 'a tensor-parallel report'), run.reports && (run.reports.tensor = report)),
      recompute: run.recompute && { spec: run.recompute },
      reportActivations: (report) => void (assert.equal(comm.rank, 0, 'an activation report'), run.reports && (run.reports.activations = report)),
      holds: (parts) => void (run.reports && ((run.reports.holds ??= [])[comm.rank] = parts)),
    })));
    return { comms, ranks };
  } catch (error) {
    await Promise.all(comms.map((comm) => comm.close()));
    throw error;
  }
}

/** An optimiser over the parameters' [start, end) (a pipeline stage's; the whole model by default), its state and step count a checkpoint's where there is one. */
function restored(config: OptimizerConfig, resume: Run['resume'], [start, end]: [number, number] = [0, size]): Optimizer {
  const optimizer = new Optimizer(config, end - start);
  if (resume) restoreOptimizer(optimizer, resume.state, resume.steps, [start, end]);
  return optimizer;
}

async function drive<T = void>(run: Run, each?: (step: number, ranks: StrategyRank[], outcomes: StepOutcome[]) => void | Promise<void>, finish?: (ranks: StrategyRank[]) => Promise<T>) {
  const { comms, ranks } = await build(run);
  const inputOf = (i: number, r: number) => input(i, run, hasServer(run) ? r - 1 : Math.floor(r / ranksPerWorker(run)), r);
  try {
    run.ready?.(ranks, comms);
    await Promise.all(ranks.map((rank) => rank.beginEpoch?.(run.epoch ?? 0, run.firstStep ?? 0, run.stepsPerEpoch ?? run.steps)));
    const history: StepOutcome[][] = [];
    if (run.independent) {
      // every rank runs its own loop, as its own process would: none waits for another's step to end
      const outcomes = await Promise.all(ranks.map(async (rank, r) => {
        const own: StepOutcome[] = [];
        for (let i = 0; i < run.steps; i++) {
          own.push(await rank.step(inputOf(i, r)));
          if (run.haltOnStop && own[i].stop) break;
        }
        return own;
      }));
      for (let i = 0; i < run.steps; i++) history.push(outcomes.map((own) => own[i] ?? { stop: true }));
      return { ranks, history, comms, finished: await finish?.(ranks) };
    }
    const halted = ranks.map(() => false);
    for (let i = 0; i < run.steps; i++) {
      const outcomes = await Promise.all(ranks.map(async (rank, r) => {
        if (halted[r]) return { stop: true };
        const outcome = await rank.step(inputOf(i, r));
        halted[r] = (run.haltOnStop ?? false) && outcome.stop;
        return outcome;
      }));
      history.push(outcomes);
      await each?.(i, ranks, outcomes);
    }
    return { ranks, history, comms, finished: await finish?.(ranks) };
  } finally {
    await Promise.all(comms.map((comm) => comm.close()));
  }
}

/** The run's i-th step as the loop describes it to a rank; the minibatch and rate are the i-th whatever the step's number. */
function input(i: number, run: Run, worker: number, rank: number): StepInput {
  const first = run.firstStep ?? 0;
  return {
    epoch: run.epoch ?? 0, step: first + i, steps: run.stepsPerEpoch ?? run.steps, lr: rate(i), lrOf: (step) => rate(step - first),
    order: new Uint32Array(0), first: 0, whole: undefined,
    batch: (step = first + i) => batchOf(step - first, worker),
    gradient: async (params, grad, step = first + i) => {
      assert.ok(worker >= 0, 'the parameter server computed a gradient');
      if (run.slowWorker?.worker === worker) await new Promise((resolve) => setTimeout(resolve, run.slowWorker!.ms));
      return model.lossAndGrad(params, batchOf(step - first, worker), grad);
    },
    // once asked, a stop stays asked
    stopRequested: () => run.stopAt !== undefined && i >= run.stopAt && (run.stopRanks?.includes(rank) ?? true),
    meetAfter: run.meetAfter?.includes(i) ?? false,
  };
}

/** Each worker's gradient and loss at `params` on its minibatch of the step. */
function gradients(params: Float32Array, step: number, workers: number): { grads: Float32Array[]; losses: number[] } {
  const grads = Array.from({ length: workers }, () => new Float32Array(size));
  const losses = grads.map((grad, w) => model.lossAndGrad(params, batchOf(step, w), grad));
  return { grads, losses };
}

// a bfloat16 is a float32 whose low 16 bits are zero
const bits = new Uint32Array(1);
const float = new Float32Array(bits.buffer);
const isBf16 = (x: number) => ((float[0] = x), (bits[0] & 0xffff) === 0);
const truncatedToBf16 = (x: number) => ((float[0] = x), (bits[0] &= 0xffff0000), float[0]);

const mean = (arrays: Float32Array[]) => arrays[0].map((_, i) => arrays.reduce((sum, a) => sum + a[i], 0) / arrays.length);

/** Synchronous SGD by hand: the mean gradient of every worker's minibatch, one update a step; the losses' means. From `start`, or from where another run ended. */
function synchronousByHand(workers: number, steps: number, config: OptimizerConfig, from?: { params: Float32Array; velocity: Float32Array }) {
  const params = Float32Array.from(from?.params ?? start);
  const velocity = Float32Array.from(from?.velocity ?? new Float32Array(size));
  const losses: number[] = [];
  const trajectory: Float32Array[] = [];
  for (let step = 0; step < steps; step++) {
    const { grads, losses: l } = gradients(params, step, workers);
    losses.push(l.reduce((a, b) => a + b, 0) / workers);
    sgdStep(params, mean(grads), velocity, rate(step), config);
    trajectory.push(Float32Array.from(params));
  }
  return { params, velocity, losses, trajectory };
}

for (const [name, strategy] of [['all-reduce', allreduce], ['parameter server', parameterServer]] as const) {
  for (const workers of [2, 3]) {
    test(`${name} with ${workers} workers takes the momentum-SGD steps of the workers' mean gradient, reports their mean loss, and checkpoints the whole velocity`, async () => {
      const server = strategy === parameterServer;
      const expected = synchronousByHand(workers, 5, momentum);
      const { ranks, history, finished } = await drive({ strategy, ranks: server ? workers + 1 : workers, steps: 5 }, (step, ranks, outcomes) => {
        // the all-reduce's ranks (and the server) hold the new parameters after each step
        for (const [r, rank] of ranks.entries()) if (!server || r === 0) assertClose(rank.params, expected.trajectory[step], 2e-6, `rank ${r} after step ${step}`);
        for (const [r, outcome] of outcomes.entries()) {
          assert.equal(outcome.stop, false);
          if (server && r > 0) assert.equal(outcome.loss, undefined, 'a worker does not know the mean loss');
          else assert.ok(Math.abs(outcome.loss! - expected.losses[step]) < 1e-6, `rank ${r}'s loss at step ${step}: ${outcome.loss} for ${expected.losses[step]}`);
        }
      }, async (ranks) => {
        // the parameter server's workers get the last parameters at the epoch's end
        if (server) for (const end of await Promise.all(ranks.map((rank) => rank.endSteps!(false, 0.5)))) assert.deepEqual(end, { stop: false, trainLoss: 0.5 });
        return Promise.all(ranks.map((rank) => rank.snapshot()));
      });
      assert.equal(history.length, 5);
      const snapshots = finished!;
      if (server) for (const rank of ranks) assertClose(rank.params, expected.params, 2e-6, 'a worker after the epoch');
      assert.equal(snapshots[0]!.optimizerSteps, 5, 'steps counted');
      assertClose(snapshots[0]!.optimizerState.velocity, expected.velocity, 2e-6, 'the velocity rank 0 saves');
      if (server) for (const s of snapshots.slice(1)) assert.equal(s, null, 'a worker has no optimiser');
    });
  }
}

test('a stop asked of rank 0 reaches every rank at that step: all-reduce, parameter server; local SGD at its next average', async () => {
  const stops = (history: StepOutcome[][]) => history.map((outcomes) => outcomes.map((o) => o.stop));
  for (const strategy of [allreduce, parameterServer]) {
    const { history } = await drive({ strategy, ranks: 3, steps: 4, stopAt: 2 });
    assert.deepEqual(stops(history), Array.from({ length: 4 }, (_, step) => [step >= 2, step >= 2, step >= 2]));
  }
  // asked at step 4, between averages (every 3 steps): the copies meet at 5 and stop there, not at the average before (2)
  const { history } = await drive({ strategy: localSgd, ranks: 2, steps: 7, syncEvery: 3, stopAt: 4 });
  assert.deepEqual(stops(history), Array.from({ length: 7 }, (_, step) => [step === 5 || step === 6, step === 5 || step === 6]));
  // the decision is rank 0's: another rank asked to stop is not heard
  for (const strategy of [allreduce, parameterServer, localSgd]) {
    const { history: others } = await drive({ strategy, ranks: 3, steps: 3, stopAt: 0, stopRanks: [1, 2] });
    assert.deepEqual(stops(others), Array.from({ length: 3 }, () => [false, false, false]));
  }
  // through a sparsifying hook's exchange too: the flag travels in the payload's header
  for (const strategy of [allreduce, localSgd]) {
    const { history: hooked } = await drive({ strategy, ranks: 3, steps: 4, stopAt: 2, compress: 'randomk:1' });
    assert.deepEqual(stops(hooked), Array.from({ length: 4 }, (_, step) => [step >= 2, step >= 2, step >= 2]));
  }
});

test('local SGD: each worker steps alone on its own copy; every k steps, at the epoch\'s end and before a checkpoint the copies are averaged, with the mean loss since the last average and its weight', async () => {
  const workers = 2;
  const steps = 8;
  const meetAfter = [3]; // a checkpoint after step 3: an average there, off the period of 3
  const copies = Array.from({ length: workers }, () => Float32Array.from(start));
  const velocities = Array.from({ length: workers }, () => new Float32Array(size));
  const expected: { params: Float32Array; loss?: number; weight?: number; velocity?: Float32Array }[] = [];
  let sums = [0, 0];
  let count = 0;
  for (let step = 0; step < steps; step++) {
    for (let w = 0; w < workers; w++) {
      const grad = new Float32Array(size);
      sums[w] += model.lossAndGrad(copies[w], batchOf(step, w), grad);
      sgdStep(copies[w], grad, velocities[w], rate(step), momentum);
    }
    count++;
    const meets = (step + 1) % 3 === 0 || step === steps - 1 || meetAfter.includes(step);
    if (!meets) {
      expected.push({ params: Float32Array.from(copies[0]) });
      continue;
    }
    const average = mean(copies);
    for (const copy of copies) copy.set(average);
    let velocity: Float32Array | undefined;
    if (step === steps - 1 || meetAfter.includes(step)) {
      velocity = mean(velocities);
      for (const v of velocities) v.set(velocity);
    }
    expected.push({ params: average, loss: (sums[0] / count + sums[1] / count) / 2, weight: count, velocity });
    sums = [0, 0];
    count = 0;
  }
  const { history, finished: snapshots } = await drive({ strategy: localSgd, ranks: workers, steps, syncEvery: 3, meetAfter }, async (step, ranks, outcomes) => {
    const want = expected[step];
    assertClose(ranks[0].params, want.params, 3e-6, `worker 0 after step ${step}`);
    for (const outcome of outcomes) {
      assert.equal(outcome.weight, want.weight, `the weight at step ${step}`);
      if (want.loss === undefined) assert.equal(outcome.loss, undefined, `no loss between averages (step ${step})`);
      else assert.ok(Math.abs(outcome.loss! - want.loss) < 1e-6, `the loss at step ${step}: ${outcome.loss} for ${want.loss}`);
    }
    if (want.loss !== undefined) assert.deepEqual(ranks[1].params, ranks[0].params, 'after an average the copies are equal');
    else if (step > 0) assert.notDeepEqual(ranks[1].params, ranks[0].params, 'between averages the copies differ');
  }, (ranks) => Promise.all(ranks.map((rank) => rank.snapshot())));
  assert.equal(history.length, steps);
  // the state was averaged at the epoch's end: a checkpoint takes it as it is, on every rank alike
  assertClose(snapshots![0]!.optimizerState.velocity, expected[steps - 1].velocity!, 3e-6, 'the averaged velocity');
  assert.equal(snapshots![0]!.optimizerSteps, steps);
});

test('local SGD: a checkpoint between averages averages the optimiser state first (a collective), without touching the copies', async () => {
  const velocities: Float32Array[] = [];
  let paramsBefore: Float32Array[] = [];
  await drive({ strategy: localSgd, ranks: 2, steps: 2, syncEvery: 5 }, async (step, ranks) => {
    if (step !== 0) return;
    // each worker's velocity after one step is its own gradient plus the decay: their mean is what the checkpoint holds
    for (let w = 0; w < 2; w++) {
      const grad = new Float32Array(size);
      model.lossAndGrad(start, batchOf(0, w), grad);
      const v = new Float32Array(size);
      sgdStep(Float32Array.from(start), grad, v, rate(0), momentum);
      velocities.push(v);
    }
    paramsBefore = ranks.map((rank) => Float32Array.from(rank.params));
    const snapshots = await Promise.all(ranks.map((rank) => rank.snapshot()));
    for (const snapshot of snapshots) assertClose(snapshot!.optimizerState.velocity, mean(velocities), 1e-6, 'the velocity a checkpoint holds');
    ranks.forEach((rank, r) => assert.deepEqual(rank.params, paramsBefore[r], 'the copies are not averaged by a checkpoint'));
  });
});

test('sparsifying hooks exchange whole payloads: at density 1 every strategy steps exactly as without a hook, and a worker\'s bytes are the payload\'s', async () => {
  for (const compress of ['topk:1,nodgc', 'randomk:1']) {
    for (const strategy of [allreduce, parameterServer]) {
      const server = strategy === parameterServer;
      const expected = synchronousByHand(2, 3, sgd);
      const { ranks } = await drive({ strategy, ranks: server ? 3 : 2, steps: 3, optimizer: sgd, compress }, (step, ranks, outcomes) => {
        assertClose(ranks[0].params, expected.trajectory[step], 2e-6, `${compress} rank 0 after step ${step}`);
        assert.ok(Math.abs(outcomes[0].loss! - expected.losses[step]) < 1e-6, `${compress}: the loss at step ${step}`);
      });
      // the pairs' count, every value with its index (8 bytes a value), and the exchange's 12-byte header, to each other rank (all-reduce) or to the server
      const perStep = 4 + 8 * size + 12;
      // a worker counts its own payloads; the server, every worker's, per worker
      assert.equal(ranks[server ? 1 : 0].bytesSent(), 3 * perStep, `${compress}: bytes worker 0 sent`);
      if (server) assert.equal(ranks[0].bytesSent(), 3 * perStep, `${compress}: the server counts each worker's pushes`);
    }
    // local SGD exchanges the change since the last average: at density 1, the average itself
    const copies = [0, 1].map((w) => {
      const params = Float32Array.from(start);
      const grad = new Float32Array(size);
      model.lossAndGrad(params, batchOf(0, w), grad);
      sgdStep(params, grad, new Float32Array(size), rate(0), sgd);
      return params;
    });
    const { ranks } = await drive({ strategy: localSgd, ranks: 2, steps: 1, optimizer: sgd, compress });
    for (const rank of ranks) assertClose(rank.params, mean(copies), 2e-6, `${compress}: local SGD's average`);
  }
});

test('the parameter server: a worker pushes its gradient and loss, 4·(n + 1) bytes a step, and never computes on the server', async () => {
  const { ranks } = await drive({ strategy: parameterServer, ranks: 3, steps: 4 });
  for (const rank of ranks) assert.equal(rank.bytesSent(), 4 * 4 * (size + 1));
});

test('bfloat16 parameters: after every step each rank holds the same bf16 values, less than one bf16 step from the float32 update (all-reduce, parameter server; local SGD agrees and stays bf16)', async () => {
  /** bfloat16's spacing at x: 8 significant bits. */
  const ulp = (x: number) => 2 ** (Math.floor(Math.log2(Math.abs(x))) - 7);
  const from = start.map(truncatedToBf16); // bf16 values already: storing them changes nothing
  for (const [strategy, P] of [[allreduce, 2], [allreduce, 3], [parameterServer, 3], [localSgd, 2]] as const) {
    const server = strategy === parameterServer;
    const workers = server ? P - 1 : P;
    let before = Float32Array.from(from);
    let changed = 0;
    await drive({ strategy, ranks: P, steps: 3, optimizer: sgd, paramPrecision: 'bf16', from, ready: (ranks) => assert.deepEqual(ranks[0].params, from, `${P} ranks: the start, stored`) }, async (step, ranks) => {
      // the server stores its parameters rounded when it broadcasts them: here, as at an epoch's end
      if (server) await Promise.all(ranks.map((rank) => rank.endSteps!(false, 0)));
      // each worker's own float32 step (local SGD's copies), and their mean: the synchronous step
      const copies = gradients(before, step, workers).grads.map((grad) => {
        const copy = Float32Array.from(before);
        sgdStep(copy, grad, new Float32Array(size), rate(step), sgd);
        return copy;
      });
      const exact = mean(copies);
      for (const [r, rank] of ranks.entries()) {
        for (let i = 0; i < size; i++) {
          const value = rank.params[i];
          if (!isBf16(value)) assert.fail(`step ${step}, rank ${r}, parameter ${i}: ${value} is not a bf16 value`);
          // local SGD rounds each copy, then their average: the copies' mean rounding error, and one more
          const copiesError = strategy === localSgd ? copies.reduce((sum, copy) => sum + ulp(copy[i]), 0) / workers : 0;
          const bound = copiesError + ulp(exact[i]) + 1e-6 * Math.abs(exact[i]);
          if (!(Math.abs(value - exact[i]) <= bound)) assert.fail(`${strategy.name} on ${P}, step ${step}, rank ${r}, parameter ${i}: ${value} for the float32 update ${exact[i]}`);
        }
        assert.deepEqual(rank.params, ranks[0].params, `rank ${r} agrees with rank 0`);
      }
      for (let i = 0; i < size; i++) if (ranks[0].params[i] !== before[i]) changed++;
      before = Float32Array.from(ranks[0].params);
    });
    assert.ok(changed > size, `${changed} changes in 3 steps`);
  }
});

test('int8 parameters: after every step each rank holds the same q·scale values, block by block (the largest at ±127), each less than one scale from the float32 update', async () => {
  for (const [strategy, P] of [[allreduce, 2], [parameterServer, 3]] as const) {
    const server = strategy === parameterServer;
    // blocks of 64 from the start of what is rounded at once: the whole array, or (all-reduce) each rank's share
    const blocksOf = (pieces: [number, number][]) => pieces.flatMap(([from, to]) =>
      Array.from({ length: Math.ceil((to - from) / INT8_BLOCK) }, (_, b) => [from + b * INT8_BLOCK, Math.min(to, from + (b + 1) * INT8_BLOCK)]));
    const whole = blocksOf([[0, size]]); // the start is rounded whole, and the server's parameters
    const stepped = server ? whole : blocksOf(Array.from({ length: P }, (_, r) => bufferShare(size, r, P)));
    // a start of int8 values already (the nearest q·scale, by hand), which storing them keeps
    const from = Float32Array.from(start);
    for (const [first, end] of whole) {
      const scale = Math.fround(from.subarray(first, end).reduce((m, v) => Math.max(m, Math.abs(v)), 0) / 127);
      for (let i = first; i < end; i++) from[i] = Math.round(from[i] / scale) * scale;
    }
    let before = from;
    const check = (params: Float32Array, exact: Float32Array, what: string) => {
      for (const [first, end] of stepped) {
        const block = params.subarray(first, end);
        const scale = block.reduce((m, v) => Math.max(m, Math.abs(v)), 0) / 127;
        for (let i = 0; i < block.length; i++) {
          const q = block[i] / scale;
          if (!(Math.abs(q - Math.round(q)) < 1e-3)) assert.fail(`${what}, parameter ${first + i}: ${block[i]} is not a multiple of its block's scale ${scale}`);
          if (!(Math.abs(block[i] - exact[first + i]) <= scale * 1.0001)) assert.fail(`${what}, parameter ${first + i}: ${block[i]} for the float32 update ${exact[first + i]} (scale ${scale})`);
        }
      }
    };
    await drive({
      strategy, ranks: P, steps: 3, optimizer: sgd, paramPrecision: 'int8', from,
      ready: (ranks) => assert.deepEqual(ranks[0].params, from, 'the start, stored'),
    }, async (step, ranks) => {
      if (server) await Promise.all(ranks.map((rank) => rank.endSteps!(false, 0)));
      const exact = Float32Array.from(before);
      sgdStep(exact, mean(gradients(before, step, server ? P - 1 : P).grads), new Float32Array(size), rate(step), sgd);
      for (const [r, rank] of ranks.entries()) {
        check(rank.params, exact, `step ${step}, rank ${r}`);
        assert.deepEqual(rank.params, ranks[0].params, `rank ${r} agrees with rank 0`);
      }
      before = Float32Array.from(ranks[0].params);
    });
  }
});

test('async-ps with staleness 0: each round applies every worker\'s push at lr/P, as one synchronous SGD step; the log names each update\'s worker, version and staleness', async () => {
  for (const workers of [2, 3]) {
    const expected = synchronousByHand(workers, 4, sgd);
    const updates: NonNullable<Run['updates']> = [];
    const { ranks, finished } = await drive({ strategy: asyncParameterServer, ranks: workers + 1, steps: 4, optimizer: sgd, updates }, (step, ranks, outcomes) => {
      assertClose(ranks[0].params, expected.trajectory[step], 2e-6, `${workers} workers: the server after step ${step}`);
      assert.ok(Math.abs(outcomes[0].loss! - expected.losses[step]) < 1e-6, `the loss at step ${step}`);
      assert.equal(outcomes[0].weight, 1, 'a round of P pushes weighs one step');
      for (const outcome of outcomes.slice(1)) assert.deepEqual(outcome, { stop: false });
    }, async (ranks) => {
      for (const end of await Promise.all(ranks.map((rank) => rank.endSteps!(false, 0.25)))) assert.deepEqual(end, { stop: false, trainLoss: 0.25 });
      return Promise.all(ranks.map((rank) => rank.snapshot()));
    });
    // the epoch's end hands every worker the server's parameters
    for (const rank of ranks) assertClose(rank.params, expected.params, 2e-6, 'a worker after the epoch');
    assert.equal(finished![0]!.optimizerSteps, 4 * workers, 'the server counts pushes applied');
    for (const snapshot of finished!.slice(1)) assert.equal(snapshot, null);
    assert.equal(updates.length, 4);
    updates.forEach(({ workers: who, versions, staleness }, step) => {
      assert.deepEqual([...who].sort(), Array.from({ length: workers }, (_, w) => w + 1), `round ${step}: each worker once`);
      assert.deepEqual(versions, Array.from({ length: workers }, (_, k) => step * workers + k), 'versions count the updates');
      // every worker pulled the round's parameters: the k-th push of a round finds k updates applied since
      assert.deepEqual(staleness, Array.from({ length: workers }, (_, k) => k));
    });
    // each push is the gradient and three floats, from a worker's side and per worker at the server
    for (const rank of ranks) assert.equal(rank.bytesSent(), 4 * 4 * (size + 3));
  }
});

test('async-ps keeps every worker within --staleness steps of the slowest, and the bound binds (brute force over the update log, worker 1 slow)', async () => {
  for (const staleness of [1, 2]) {
    const updates: NonNullable<Run['updates']> = [];
    await drive({ strategy: asyncParameterServer, ranks: 4, steps: 8, optimizer: sgd, staleness, updates, slowWorker: { worker: 0, ms: 3 }, independent: true });
    // a worker computes its steps in order: its k-th push is its step k. Step c was handed out only
    // once every worker had pushed c − s steps, so when it arrives every other worker has too.
    const pushed = [0, 0, 0, 0];
    let closest = Infinity;
    let largest = 0;
    for (const { workers: who, staleness: stale } of updates) {
      for (const [k, worker] of who.entries()) {
        const step = pushed[worker];
        const slowest = Math.min(...[1, 2, 3].filter((w) => w !== worker).map((w) => pushed[w]));
        assert.ok(slowest >= step - staleness, `s=${staleness}: worker ${worker} pushed step ${step} while a peer had pushed only ${slowest} steps`);
        closest = Math.min(closest, slowest - (step - staleness));
        largest = Math.max(largest, stale[k]);
        pushed[worker]++;
      }
    }
    assert.deepEqual(pushed.slice(1), [8, 8, 8], 'each worker pushed each step once');
    assert.equal(closest, 0, `s=${staleness}: the fast workers reach the bound`);
    assert.ok(largest > 2 && largest <= (2 * staleness + 1) * 2, `s=${staleness}: the largest staleness ${largest} is within (2s + 1)(P − 1) and above a synchronous round's`);
  }
});

test('async-ps stopped: the server applies what is in flight, stops, and says where to resume; each worker hears of it at its next step', async () => {
  const { history } = await drive({ strategy: asyncParameterServer, ranks: 3, steps: 5, optimizer: sgd, stopAt: 1, haltOnStop: true });
  assert.deepEqual(history[0].map((o) => o.stop), [false, false, false]);
  // the server decides at step 1, after the round's first push; the second is in flight, and lands
  assert.deepEqual(history[1][0], { loss: history[1][0].loss, weight: 1, stop: true, resumeAt: 2 });
  assert.deepEqual(history[1].slice(1), [{ stop: false }, { stop: false }]);
  assert.deepEqual(history[2].slice(1), [{ stop: true }, { stop: true }]);
});

test('async-ps with a sparsifying hook: the server decodes each push; at density 1 it steps as without one, and a push costs its payload and four floats', async () => {
  const expected = synchronousByHand(2, 3, sgd);
  const { ranks } = await drive({ strategy: asyncParameterServer, ranks: 3, steps: 3, optimizer: sgd, compress: 'randomk:1' }, (step, ranks) => {
    assertClose(ranks[0].params, expected.trajectory[step], 2e-6, `the server after step ${step}`);
  });
  const perPush = 4 + 8 * size + 16;
  for (const rank of ranks) assert.equal(rank.bytesSent(), 3 * perPush);
});

test('a strategy\'s bytes are those of its steps\' exchanges: not the start-up broadcast (all-reduce, local SGD); with a hook, the payloads\' (P = 3)', async () => {
  for (const strategy of [allreduce, localSgd]) {
    let atStart: number[] = [];
    const { ranks, comms } = await drive({ strategy, ranks: 3, steps: 4, syncEvery: 2, ready: (_, comms) => (atStart = comms.map((c) => c.bytesSent)) });
    ranks.forEach((rank, r) => {
      assert.ok(atStart[r] > 0 || r > 0, 'rank 0 broadcast the start');
      assert.equal(rank.bytesSent(), comms[r].bytesSent - atStart[r], `${strategy.name} rank ${r}`);
    });
  }
  // the pairs' count, every value with its index, the 12-byte header; to each of the 2 others, at every average
  const payload = 4 + 8 * size + 12;
  for (const [strategy, averages] of [[allreduce, 4], [localSgd, 2]] as const) {
    const { ranks } = await drive({ strategy, ranks: 3, steps: 4, syncEvery: 2, compress: 'randomk:1' });
    for (const rank of ranks) assert.equal(rank.bytesSent(), averages * 2 * payload, strategy.name);
  }
});

test('DGC\'s warm-up reads the epoch a step lies at: epoch 1 + 2/4 (local SGD: the average after it, 1 + 3/4), on every strategy that carries a hook', async () => {
  // the density falls from 25% to 1% over 4 epochs, exponentially; the payload is k pairs
  const density = (epoch: number) => Math.max(0.01, 0.25 * (0.01 / 0.25) ** (epoch / 4));
  const payload = (epoch: number) => 4 + 8 * Math.ceil(density(epoch) * size);
  const at = { steps: 1, epoch: 1, firstStep: 2, stepsPerEpoch: 4, compress: 'topk:0.01,warmup=4', optimizer: sgd };
  const runs = [
    { strategy: allreduce, ranks: 2, epoch: 1.5, extra: 12 },
    { strategy: localSgd, ranks: 2, epoch: 1.75, extra: 12 },
    { strategy: parameterServer, ranks: 2, epoch: 1.5, extra: 12 },
    { strategy: asyncParameterServer, ranks: 2, epoch: 1.5, extra: 16 },
  ];
  for (const { strategy, ranks, epoch, extra } of runs) {
    const { ranks: built } = await drive({ ...at, strategy, ranks }, undefined, async (ranks) => {
      if (strategy === asyncParameterServer) await Promise.all(ranks.map((rank) => rank.endSteps!(false, 0)));
    });
    assert.equal(built[1].bytesSent(), payload(epoch) + extra, `${strategy.name}: density ${density(epoch)} at epoch ${epoch}`);
  }
  assert.notEqual(payload(1.5), payload(1.75));
});

test('the stochastic roundings of a step are keyed by the run\'s step count alone: step 1 of epoch 1 (4 a epoch) rounds as step 5 of epoch 0 (8 a epoch), not as step 6', async () => {
  const from = start.map(truncatedToBf16);
  for (const [strategy, P] of [[allreduce, 2], [parameterServer, 3], [localSgd, 2]] as const) {
    const oneStep = async (epoch: number, step: number, steps: number) => {
      const { ranks } = await drive({ strategy, ranks: P, steps: 1, epoch, firstStep: step, stepsPerEpoch: steps, optimizer: sgd, paramPrecision: 'bf16', from }, undefined, async (ranks) => {
        if (strategy === parameterServer) await Promise.all(ranks.map((rank) => rank.endSteps!(false, 0)));
      });
      return ranks[0].params;
    };
    const fifth = await oneStep(1, 1, 4);
    assert.deepEqual(await oneStep(0, 5, 8), fifth, `${strategy.name}: the run's 5th step, counted two ways`);
    assert.notDeepEqual(await oneStep(0, 6, 8), fifth, `${strategy.name}: another step rounds otherwise`);
  }
});

test('a start stored in the storage format already (a checkpoint\'s) is not rounded again; any other start is', async () => {
  for (const strategy of [allreduce, localSgd]) {
    let held = new Float32Array(0);
    await drive({ strategy, ranks: 2, steps: 0, paramPrecision: 'int8', startRounded: true, ready: (ranks) => (held = Float32Array.from(ranks[1].params)) });
    assert.deepEqual(held, start, `${strategy.name}: a start said to be stored is taken as it is`);
    await drive({ strategy, ranks: 2, steps: 0, paramPrecision: 'int8', ready: (ranks) => (held = Float32Array.from(ranks[1].params)) });
    assert.notDeepEqual(held, start, `${strategy.name}: a float32 start is rounded`);
    assert.ok(held.every((x, i) => Math.abs(x - start[i]) < 0.01), 'to nearby values');
  }
});

test('local SGD on bf16 copies: each copy is stored rounded after its own steps, before any average; a checkpoint after an average takes the state as it is', async () => {
  await drive({ strategy: localSgd, ranks: 2, steps: 2, stepsPerEpoch: 6, syncEvery: 3, optimizer: sgd, paramPrecision: 'bf16' }, (step, ranks) => {
    for (const [r, rank] of ranks.entries()) assert.ok(rank.params.every(isBf16), `step ${step}: copy ${r} holds bf16 values`);
    assert.notDeepEqual(ranks[0].params, ranks[1].params, `step ${step}: the copies went their own ways`);
  });
  // after the epoch's last step the state is averaged: a checkpoint takes it as it is, without a collective
  let comms: ProcessCommunicator[] = [];
  const { finished } = await drive({ strategy: localSgd, ranks: 3, steps: 3, syncEvery: 3, ready: (_, c) => (comms = c) }, undefined, async (ranks) => {
    const sent = comms.map((comm) => comm.bytesSent);
    const states = (await Promise.all(ranks.map((rank) => rank.snapshot()))).map((s) => Float32Array.from(s!.optimizerState.velocity));
    return { states, extra: comms.map((comm, r) => comm.bytesSent - sent[r]) };
  });
  assert.deepEqual(finished!.extra, [0, 0, 0], 'no bytes for a checkpoint of averaged state');
  for (const state of finished!.states.slice(1)) assert.deepEqual(state, finished!.states[0], 'every rank holds the same state');
});

test('async-ps over two epochs with staleness 0 is synchronous SGD throughout: the epoch\'s end hands out nothing beyond its steps', async () => {
  const steps = 3;
  const expected = synchronousByHand(2, 2 * steps, sgd);
  const { comms, ranks } = await build({ strategy: asyncParameterServer, ranks: 3, steps, optimizer: sgd });
  try {
    for (const epoch of [0, 1]) {
      await Promise.all(ranks.map((rank) => rank.beginEpoch?.(epoch, 0, steps)));
      for (let step = 0; step < steps; step++) {
        // the run's step epoch·3 + step: its minibatch and rate
        const run = { strategy: asyncParameterServer, ranks: 3, steps, epoch, stepsPerEpoch: steps };
        await Promise.all(ranks.map((rank, r) => {
          const described = input(epoch * steps + step, run, r - 1, r);
          return rank.step({ ...described, step, lrOf: (s) => rate(epoch * steps + s), gradient: (params, grad, s = step) => described.gradient(params, grad, epoch * steps + s) });
        }));
        assertClose(ranks[0].params, expected.trajectory[epoch * steps + step], 2e-6, `epoch ${epoch}, step ${step}`);
      }
      const ends = await Promise.all(ranks.map((rank) => rank.endSteps!(false, 1)));
      for (const end of ends) assert.deepEqual(end, { stop: false, trainLoss: 1 });
      for (const rank of ranks) assertClose(rank.params, expected.trajectory[epoch * steps + steps - 1], 2e-6, `every rank after epoch ${epoch}`);
    }
  } finally {
    await Promise.all(comms.map((comm) => comm.close()));
  }
});

test('async-ps stopped at an epoch\'s last step: the server ends the epoch stopped, and its workers, whose steps are done, hear the stop at the epoch\'s end', async () => {
  const { history, finished } = await drive({ strategy: asyncParameterServer, ranks: 3, steps: 3, optimizer: sgd, stopAt: 2 }, undefined, (ranks) =>
    Promise.all(ranks.map((rank, r) => rank.endSteps!(r === 0, 0.5))));
  assert.deepEqual(history[2].map((o) => o.stop), [true, false, false]);
  assert.deepEqual(history[2][0].resumeAt, 3);
  assert.deepEqual(finished, [{ stop: true, trainLoss: 0.5 }, { stop: true, trainLoss: 0.5 }, { stop: true, trainLoss: 0.5 }]);
});

test('async-ps stopped with workers at different steps: the server applies what is in flight and resumes from the slowest worker\'s next step (brute force over the log)', async () => {
  const updates: NonNullable<Run['updates']> = [];
  const { history, finished } = await drive({ strategy: asyncParameterServer, ranks: 4, steps: 8, optimizer: sgd, staleness: 2, updates, slowWorker: { worker: 0, ms: 3 }, independent: true, haltOnStop: true, stopAt: 3 },
    undefined, (ranks) => Promise.all(ranks.map((rank) => rank.endSteps!(true, 0.5)))); // the loop ends a stopped epoch on every rank: no more messages
  assert.deepEqual(finished, Array.from({ length: 4 }, () => ({ stop: true, trainLoss: 0.5 })));
  const pushed = [0, 0, 0, 0];
  for (const { workers } of updates) for (const w of workers) pushed[w]++;
  const stop = history.findIndex((outcomes) => outcomes[0].stop);
  assert.ok(stop >= 3, `the server stopped at step ${stop}`);
  assert.notEqual(Math.min(...pushed.slice(1)), Math.max(...pushed.slice(1)), `the workers stopped at different steps: ${pushed}`);
  assert.equal(history[stop][0].resumeAt, Math.min(...pushed.slice(1)), `pushes per worker ${pushed.slice(1)}`);
  // after the stop every worker hears of it, once, at its next step
  for (let w = 1; w <= 3; w++) assert.equal(history.filter((outcomes) => outcomes[w].stop).length >= 1, true);
});

test('an async-ps worker handed another step than its loop\'s refuses it, naming both: the ranks run different configurations', async () => {
  const run = { strategy: asyncParameterServer, ranks: 2, steps: 4, optimizer: sgd };
  const { comms, ranks } = await build(run);
  try {
    await ranks[0].beginEpoch!(0, 0, 4); // hands out step 0
    await assert.rejects(ranks[1].step({ ...input(0, run, 0, 1), step: 1 }), (error: Error & { code?: string }) =>
      error.code === 'PROTOCOL' && error.message === 'async-ps worker 1: the server sent command 0 for step 0 where step 1 was due; the ranks run different configurations.');
  } finally {
    await Promise.all(comms.map((comm) => comm.close()));
  }
  // a server that ends its epoch (no steps in it) where its worker expects step 0: the command is not to compute
  const second = await build(run);
  try {
    await second.ranks[0].beginEpoch!(0, 0, 0);
    const ending = second.ranks[0].endSteps!(false, 0).catch(() => null); // its broadcast fails once the worker has refused
    await assert.rejects(second.ranks[1].step(input(0, run, 0, 1)), /^ConvergeError: async-ps worker 1: the server sent command 1 for step 0 where step 0 was due/);
    second.comms[1].abort('the worker refused');
    await ending;
  } finally {
    await Promise.all(second.comms.map((comm) => comm.close()));
  }
});

test('dense hooks on the all-reduce (fp16, bf16): the ranks agree, each step within the codec\'s rounding of the exact one, and the all-gather carries the encoded mean, half the bytes of float32 parameters', async () => {
  let plainBytes = 0;
  await drive({ strategy: allreduce, ranks: 2, steps: 1, optimizer: sgd }, undefined, async (ranks) => void (plainBytes = ranks[0].bytesSent()));
  for (const [compress, bits] of [['fp16', 11], ['bf16', 8]] as const) {
    let before = Float32Array.from(start);
    const { ranks } = await drive({ strategy: allreduce, ranks: 2, steps: 3, optimizer: sgd, compress }, (step, ranks) => {
      const { grads } = gradients(before, step, 2);
      const exact = Float32Array.from(before);
      const g = mean(grads);
      sgdStep(exact, g, new Float32Array(size), rate(step), sgd);
      for (let i = 0; i < size; i++) {
        // each worker's gradient rounded, then their mean rounded: relative 2^-bits each, beside float32's own
        const bound = rate(step) * 2 ** -bits * (grads.reduce((sum, grad) => sum + Math.abs(grad[i]), 0) / 2 + Math.abs(g[i])) + 1e-6 * Math.abs(exact[i]) + 1e-9;
        if (!(Math.abs(ranks[0].params[i] - exact[i]) <= bound)) assert.fail(`${compress}, step ${step}, parameter ${i}: ${ranks[0].params[i]} for ${exact[i]}`);
      }
      assert.deepEqual(ranks[1].params, ranks[0].params, 'the ranks agree');
      before = Float32Array.from(ranks[0].params);
    });
    // a reduce-scatter and an all-gather of 2-byte values against plain's 4-byte ones (and a few scalars)
    const ratio = ranks[0].bytesSent() / 3 / plainBytes;
    assert.ok(ratio > 0.45 && ratio < 0.55, `${compress}: ${ratio} of plain's bytes`);
  }
});

/** Each layer's parameters, by hand: dense 16→5, ReLU, dense 5→6, ReLU, dense 6→4, ReLU, dense 4→3 (weights and biases). */
const LAYER_PARAMS = [16 * 5 + 5, 0, 5 * 6 + 6, 0, 6 * 4 + 4, 0, 4 * 3 + 3];

/** A test split of 23 samples: uneven over 2 and 3 ranks; fsdp's evaluation batch is the model's 8, so 2 ranks' shares take two batches each. */
const TEST_COUNT = 23;
const testSamples = Array.from({ length: TEST_COUNT }, (_, i) => batchOf(100 + i, 0));
const testSet = {
  batch: testSamples[0],
  fromOrder: () => assert.fail('the evaluation reads ranges'),
  range(first: number, count: number): Batch {
    const x = new Float32Array(count * 16);
    const y = new Int32Array(count);
    for (let k = 0; k < count; k++) {
      x.set(testSamples[first + k].x.subarray(0, 16), 16 * k);
      y[k] = (testSamples[first + k].y as Int32Array)[0];
    }
    return { x, y, size: count };
  },
} as unknown as Batcher;

/** The test loss and accuracy of the first `count` test samples at `params`, one sample at a time: the model's loss, and its prediction against the label. */
function scoredByHand(params: Float32Array, count: number): { loss: number; accuracy: number } {
  let loss = 0;
  let correct = 0;
  const scratch = new Float32Array(size);
  const predicted = new Float32Array(1);
  for (let i = 0; i < count; i++) {
    const one = testSet.range(i, 1) as Batch;
    loss += model.lossAndGrad(params, one, scratch);
    model.predictions!(params, one, predicted);
    if (predicted[0] === (one.y as Int32Array)[0]) correct++;
  }
  return { loss: loss / count, accuracy: correct / count };
}

test('the strategies that split the model (fsdp: 2 and 3 ranks; tensor: 1 and 2 workers of 2 ranks; pipelines of 2 and 3 stages, GPipe and 1F1B) take the momentum-SGD steps of the workers\' mean gradient, report their mean loss, score the test split as the whole model, gather the whole parameters and velocity at rank 0, resume and stop', async () => {
  const runs: [string, Run, number][] = [
    ['fsdp, 2 ranks', { strategy: fsdp, ranks: 2, steps: 5, ownModels: true }, 2],
    ['fsdp, 3 ranks', { strategy: fsdp, ranks: 3, steps: 5, ownModels: true }, 3],
    ['tensor, 1 worker of 2 ranks', { strategy: tensorParallel, ranks: 2, tensorParallel: 2, steps: 5, ownModels: true }, 1],
    ['tensor, 2 workers of 2 ranks', { strategy: tensorParallel, ranks: 4, tensorParallel: 2, steps: 5, ownModels: true }, 2],
    ['pipeline, 2 stages, GPipe', { strategy: pipeline, ranks: 2, pipeline: { stages: 2, microbatches: 2, schedule: 'gpipe', cuts: [2] }, steps: 5, ownModels: true, modelBatch: EVAL_BATCH }, 1],
    ['pipeline, 2 workers of 3 stages, 1F1B', { strategy: pipeline, ranks: 6, pipeline: { stages: 3, microbatches: 4, schedule: '1f1b', cuts: [1, 3] }, steps: 5, ownModels: true, modelBatch: EVAL_BATCH }, 2],
    // --recompute: the same steps, the passes run by a schedule that stores some activations and recomputes the rest (evaluations too)
    ['fsdp, 3 ranks, --recompute sqrt', { strategy: fsdp, ranks: 3, steps: 5, ownModels: true, recompute: { kind: 'sqrt' } }, 3],
    ['tensor, 2 workers of 2 ranks, --recompute sqrt', { strategy: tensorParallel, ranks: 4, tensorParallel: 2, steps: 5, ownModels: true, recompute: { kind: 'sqrt' } }, 2],
    ['pipeline, 2 stages, 1F1B, --recompute sqrt', { strategy: pipeline, ranks: 2, pipeline: { stages: 2, microbatches: 2, schedule: '1f1b', cuts: [4] }, steps: 5, ownModels: true, modelBatch: EVAL_BATCH, recompute: { kind: 'sqrt' } }, 1],
  ];
  for (const [what, run, workers] of runs) {
    const expected = synchronousByHand(workers, run.steps, momentum);
    run.reports = {};
    const started = performance.now();
    const { ranks, finished } = await drive(run, (step, _ranks, outcomes) => {
      for (const [r, outcome] of outcomes.entries()) {
        assert.equal(outcome.stop, false);
        assert.ok(Math.abs(outcome.loss! - expected.losses[step]) < 1e-6, `${what}: rank ${r}'s loss at step ${step}: ${outcome.loss} for ${expected.losses[step]}`);
        // the passes a rank timed itself: some time, within the run's
        assert.ok(outcome.computeSeconds! > 0 && outcome.computeSeconds! < (performance.now() - started) / 1000, `${what}: rank ${r} computed ${outcome.computeSeconds} s at step ${step}`);
      }
    }, async (ranks) => {
      // fsdp's exchanges a step: each layer gathered twice and its gradient reduce-scattered, (P − 1)·4n bytes each over the ring's ranks, and the two scalars all-reduced
      if (run.strategy === fsdp) {
        const sent = ranks.reduce((sum, rank) => sum + rank.bytesSent(), 0);
        // --recompute sqrt over the 4 units (a linear layer and its ReLU each): 2 segments, the first run again on the way back, its 2 layers gathered a third time
        const again = run.recompute ? LAYER_PARAMS[0] + LAYER_PARAMS[2] : 0;
        assert.equal(sent, run.steps * 4 * (run.ranks - 1) * (3 * size + again + 4), `${what}: bytes sent`);
      }
      // 2 stages cut after layer 2 (16 → 5, ReLU): stage 0 sends each micro-batch's activations forward, stage 1 its gradient back,
      // BATCH samples of 5 floats a step either way, and each all-reduces the step's 2 scalars (8 bytes a rank on a ring of 2)
      if (run.pipeline?.stages === 2 && run.ranks === 2 && run.pipeline.cuts?.[0] === 2) for (const [r, rank] of ranks.entries()) assert.equal(rank.bytesSent(), run.steps * (BATCH * 5 * 4 + 8), `${what}: rank ${r}'s bytes sent`);
      // each rank holds a part of the model between steps, not all of it
      for (const [r, rank] of ranks.entries()) assert.ok(rank.params.length < size, `${what}: rank ${r} holds ${rank.params.length} of ${size} parameters`);
      // and says so: its part (fsdp: its shards, and the largest layer whole while it computes), as much gradient, one velocity per parameter it updates
      assert.equal(run.reports!.holds!.length, run.ranks, `${what}: every rank says what it holds`);
      for (const [r, rank] of ranks.entries()) {
        const held = run.reports!.holds![r];
        const part = rank.params.length + (run.strategy === fsdp ? Math.max(...LAYER_PARAMS) : 0);
        assert.deepEqual([held.parameters, held.gradients, held.optimizer], [4 * part, 4 * part, 4 * rank.params.length], `${what}: rank ${r} holds ${JSON.stringify(held)}`);
        assert.ok(held.activations > 0, `${what}: rank ${r}'s activations`);
        // fsdp without a schedule: the model's stored activations, and two buffers for the gradient between layers, each as wide as the widest hidden layer (8 samples × 6 floats)
        if (run.strategy === fsdp && !run.recompute) assert.equal(held.activations, layerChainOf(model).activations.storeAllBytes + 2 * 8 * 6 * 4, `${what}: rank ${r}'s activations`);
      }
      // fsdp and tensor plan one schedule for every rank; rank 0 reports it, and holds its arena
      if (run.recompute && run.strategy !== pipeline) {
        const report = run.reports!.activations!;
        assert.equal(report.schedule, 'sqrt', what);
        assert.ok(report.recomputed > 0 && report.recomputed < report.units, `${what}: ${report.recomputed} of ${report.units} units recomputed`);
        assert.equal(run.reports!.holds![0].activations, report.bytes, `${what}: rank 0's activations are the arena`);
      } else assert.equal(run.reports!.activations, undefined, `${what}: no schedule reported`);
      // the test split scored by the whole model, every sample once, whichever rank scores it: as the model scores it, sample by sample
      // (17 samples: with 2 ranks, one share of 8 takes a second round with nothing left to score, and still gathers with the other)
      for (const count of [TEST_COUNT, 17]) {
        const figures = await Promise.all(ranks.map((rank) => rank.evaluate!(testSet, count)));
        const byHand = scoredByHand(expected.params, count);
        for (const [r, f] of figures.entries()) {
          assert.ok(Math.abs(f.loss - byHand.loss) < 1e-5, `${what}: rank ${r}'s test loss on ${count} samples ${f.loss}, by hand ${byHand.loss}`);
          assert.equal(f.accuracy, byHand.accuracy, `${what}: rank ${r}'s test accuracy on ${count} samples`);
        }
      }
      return Promise.all(ranks.map((rank) => rank.snapshot()));
    });
    assertClose(ranks[0].params, expected.params, 2e-6, `${what}: the parameters rank 0 gathers`);
    for (const [r, rank] of ranks.entries()) if (r > 0) assert.ok(rank.params.length < size, `${what}: rank ${r} holds ${rank.params.length} parameters after rank 0 gathered the whole`);
    assert.equal(finished![0]!.optimizerSteps, run.steps, `${what}: steps counted`);
    assertClose(finished![0]!.optimizerState.velocity, expected.velocity, 2e-6, `${what}: the velocity rank 0 saves`);
    for (const other of finished!.slice(1)) assert.equal(other, null, `${what}: only rank 0 saves`);
    // what the stages and the tensor-parallel group did, as they report it at the snapshot
    if (run.pipeline) {
      const { stages, microbatches, schedule, cuts } = run.pipeline;
      const bounds = [0, ...cuts!, LAYER_PARAMS.length];
      assert.deepEqual(run.reports.stages!.map((stage) => [stage.stage, stage.layers, stage.parameters, stage.peakStoredMicrobatches]),
        Array.from({ length: stages }, (_, s) => [s, [bounds[s], bounds[s + 1]], LAYER_PARAMS.slice(bounds[s], bounds[s + 1]).reduce((a, b) => a + b, 0),
          // GPipe holds every micro-batch before the first backward; 1F1B at most the stages from here to the last
          schedule === 'gpipe' ? microbatches : Math.min(microbatches, stages - s)]), what);
      // a stage's steps, computing and waiting, took some of the run's time (its start-up and snapshot besides)
      const elapsed = (performance.now() - started) / 1000;
      for (const stage of run.reports.stages!) assert.ok(stage.computeSeconds > 0 && stage.idleSeconds >= 0 && stage.computeSeconds + stage.idleSeconds < elapsed, `${what}: ${JSON.stringify(stage)} in ${elapsed} s`);
      // with --recompute each stage reports its micro-batches' arenas, which are among what its rank holds
      for (const stage of run.reports.stages!) {
        // (whole bytes, at least a float of each sample of a micro-batch in flight)
        if (run.recompute) assert.ok(Number.isInteger(stage.activationBytes) && stage.activationBytes! >= 4 * (BATCH / microbatches) && stage.activationBytes! <= run.reports.holds![stage.stage].activations, `${what}: ${JSON.stringify(stage)} and ${JSON.stringify(run.reports.holds![stage.stage])}`);
        else assert.equal(stage.activationBytes, undefined, what);
      }
    }
    if (run.tensorParallel) {
      // one split block (layers 2 and 4): an all-reduce of its partial outputs forward, and of its input's partial gradient backward;
      // a rank holds half the column layer (its weights' rows and their biases) and half the row layer's weight columns (its bias whole)
      assert.deepEqual(run.reports.tensor, { blocks: 1, forwardAllreduces: 1, backwardAllreduces: 1, parameters: size - (5 * 6 + 6) / 2 - (6 * 4) / 2, wholeParameters: size }, what);
    }
  }
  // resumed from a checkpoint after 3 steps (parameters, velocity, step count), 2 more steps go on from there (driven runs number their minibatches and rates from 0)
  const steps5 = synchronousByHand(2, 2, momentum, synchronousByHand(2, 3, momentum));
  const pipelined: Pick<Run, 'strategy' | 'ranks' | 'pipeline' | 'modelBatch'> = { strategy: pipeline, ranks: 4, pipeline: { stages: 2, microbatches: 2, schedule: '1f1b', cuts: [3] }, modelBatch: EVAL_BATCH };
  for (const run of [{ strategy: fsdp, ranks: 2 }, { strategy: tensorParallel, ranks: 4, tensorParallel: 2 }, pipelined]) {
    const first = await drive({ ...run, steps: 3, ownModels: true }, undefined, (ranks) => Promise.all(ranks.map((rank) => rank.snapshot())));
    const saved = first.finished![0]!;
    const resumed = await drive({ ...run, steps: 2, firstStep: 3, stepsPerEpoch: 5, from: Float32Array.from(first.ranks[0].params), resume: { state: saved.optimizerState, steps: saved.optimizerSteps }, ownModels: true },
      undefined, (ranks) => Promise.all(ranks.map((rank) => rank.snapshot())));
    assertClose(resumed.ranks[0].params, steps5.params, 2e-6, `${run.strategy.name} resumed`);
    assertClose(resumed.finished![0]!.optimizerState.velocity, steps5.velocity, 2e-6, 'the velocity resumed');
    assert.equal(resumed.finished![0]!.optimizerSteps, 5);
  }
  // fsdp's shards: together the whole model, once
  const { ranks } = await drive({ strategy: fsdp, ranks: 3, steps: 1, ownModels: true });
  assert.equal(ranks.reduce((n, rank) => n + rank.params.length, 0), size);
  // a stop asked of rank 0 reaches every rank at that step
  for (const run of [{ strategy: fsdp, ranks: 3 }, { strategy: tensorParallel, ranks: 4, tensorParallel: 2 }, pipelined]) {
    const { history } = await drive({ ...run, steps: 4, stopAt: 2, ownModels: true });
    assert.deepEqual(history.map((outcomes) => outcomes.map((o) => o.stop)), Array.from({ length: 4 }, (_, step) => Array(run.ranks).fill(step >= 2)));
    // the decision is rank 0's: the others asked are not heard
    const others = await drive({ ...run, steps: 2, stopAt: 0, stopRanks: [1, 2, 3], ownModels: true });
    assert.ok(others.history.every((outcomes) => outcomes.every((o) => !o.stop)), `${run.strategy.name}: a stop asked of ranks other than 0`);
  }
  // a pipeline without its cuts: rank 0 balances the layers' measured costs, every stage takes that cut, and the run is SGD still
  const balanced: Run = { strategy: pipeline, ranks: 3, pipeline: { stages: 3, microbatches: 2, schedule: '1f1b' }, steps: 3, ownModels: true, modelBatch: EVAL_BATCH, reports: {} };
  const measured = await drive(balanced, undefined, (ranks) => Promise.all(ranks.map((rank) => rank.snapshot())));
  assertClose(measured.ranks[0].params, synchronousByHand(1, 3, momentum).params, 2e-6, 'a pipeline cut by measured costs');
  const layersOf = balanced.reports!.stages!.map((stage) => stage.layers);
  assert.equal(layersOf[0][0], 0);
  assert.equal(layersOf[2][1], LAYER_PARAMS.length);
  for (let s = 1; s < 3; s++) assert.ok(layersOf[s][0] === layersOf[s - 1][1] && layersOf[s][1] > layersOf[s][0], `stages' layers ${JSON.stringify(layersOf)}`);
});
