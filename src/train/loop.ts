// The one training loop. Every rank of every strategy runs it: epochs in a seeded order, the
// steps of each (resumed mid-epoch where a checkpoint left off), the user's stop, checkpoints,
// evaluation and reports. A strategy's rank supplies only what differs — how a step's gradient
// becomes an update — through the StrategyRank interface.

import type { ActivationReport } from '../models/sequential.js';
import type { MemoryParts } from './memory.js';
import type { Communicator } from '../comm/communicator.js';
import type { Hook } from '../compress/hook.js';
import type { ParamPrecision } from '../tensor/precision.js';
import { epochOrder, makeBatcher, shardStart, shareOf, stepsPerEpoch, type Batcher } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import { divergence } from '../errors.js';
import type { Model } from '../models/model.js';
import type { StrategyEntry } from '../strategies/index.js';
import type { StageReport } from '../strategies/pipeline.js';
import type { TensorParallelReport } from '../strategies/tensor.js';
import { MODEL_BUFFERS as BUFFERS, addEvaluation, evaluationFigures, type StepInput, type StrategyRank } from '../strategies/strategy.js';
import { gatherHookState } from './hook-state.js';

export interface TrainingState {
  params: Float32Array;
  optimizerState: Record<string, Float32Array>;
  optimizerSteps: number;
  epoch: number; // the epoch to run next
  step: number; // the step within it to run next
  /** The precision `params` are already stored in (a checkpoint's --param-precision): a strategy that stores them so need not round them again. */
  paramsStoredAs?: ParamPrecision;
}

export type TrainingEvent =
  | { kind: 'step'; epoch: number; step: number; stepsPerEpoch: number; samples: number; loss: number; lr: number; bytesSent: number }
  | { kind: 'epoch'; epoch: number; trainLoss: number; testLoss: number; testAccuracy: number; testRmse: number; trainSeconds: number; samples: number; bytesSent: number; perStep: StepBreakdown }
  /**
   * Every evaluation (--eval-every, and each epoch's end): at `epochs` (fractional: 1.25 is a
   * quarter into the second), after `samples` in all, `trainSeconds` of training in this run
   * (evaluation excluded).
   */
  | { kind: 'evaluation'; epochs: number; samples: number; testLoss: number; testAccuracy: number; testRmse: number; trainSeconds: number }
  /** async-ps: the updates applied since the last report — worker, server version after it, staleness */
  | { kind: 'updates'; workers: number[]; versions: number[]; staleness: number[] }
  /** pipeline: every stage's cut, parameters, peak stored micro-batches and time, so far */
  | { kind: 'pipeline'; stages: StageReport[] }
  /** tensor: the split blocks, the all-reduces of a step, the parameters a rank holds */
  | ({ kind: 'tensor' } & TensorParallelReport)
  /** models of layers: the activation arena and the schedule it is planned for */
  | ({ kind: 'activations' } & ActivationReport)
  /** rank 0: what it holds for the model, in bytes (train/memory.ts) */
  | ({ kind: 'memory'; ranks: MemoryParts[] } & MemoryParts);

/**
 * Where a step's time went on the reporting rank, in seconds per step over an epoch: computing
 * the gradient (the model's forward and backward passes), waiting for peers inside collectives
 * (where the backend can tell; else it is part of communication), and the rest of the step —
 * exchanges, reductions and the update.
 */
export interface StepBreakdown {
  compute: number;
  communication: number;
  waiting: number | null;
}

export interface LoopInput {
  comm: Communicator;
  model: Model;
  dataset: Dataset;
  capabilities: StrategyEntry;
  workers: number;
  /** Ranks per worker (a pipeline's stages, a tensor-parallel group; 1 elsewhere): they all read the worker's minibatch. */
  ranksPerWorker: number;
  batch: number; // per worker
  epochs: number;
  seed: number;
  start: TrainingState;
  /** Steps between mid-epoch checkpoints (0: only at epoch ends). */
  saveEvery: number;
  /** Steps between evaluations (each epoch's end evaluates too). */
  evalEvery: number;
  /** This rank's hook, whose state (every rank's) goes into checkpoints. */
  hook: Hook | null;
  /** Learning rate at a fractional epoch, scaling rule and schedule applied. */
  learningRate(epoch: number): number;
  stopRequested(): boolean;
  report(event: TrainingEvent): void;
  /** Persists a state (called on rank 0 only); `last` when the run ends with it. */
  save(state: TrainingState, last: boolean): void;
}

export interface LoopResult {
  params: Float32Array;
  stoppedEarly: boolean;
}


/**
 * A loss this many times the run's first (or 1, if that was smaller) has diverged as surely as
 * NaN: a finite 1e25 trained on to a chance-level model and exit 0 before this bound.
 */
const DIVERGED_FACTOR = 1e6;

/** How often a step is reported (the last step of an epoch always is). */
const REPORT_INTERVAL_MS = 200;

export async function trainingLoop(input: LoopInput, rank: StrategyRank): Promise<LoopResult> {
  const { comm, model, dataset, workers, batch, epochs, seed, start, capabilities } = input;
  const reporting = comm.rank === 0;
  const order = new Uint32Array(dataset.train.count);
  const trainBatcher = makeBatcher(dataset, 'train', batch);
  const testBatcher = makeBatcher(dataset, 'test', model.maxBatch);
  const steps = stepsPerEpoch(dataset.train.count, workers, batch);
  // a server computes no gradient; worker w of P takes the w-th slice of each global batch (with every stage of its pipeline)
  const workerIndex = Math.floor((capabilities.server ? comm.rank - 1 : comm.rank) / input.ranksPerWorker);
  let lastReport = 0;
  const whole = trainBatcher.whole?.();
  const stream = dataset.kind === 'images' ? dataset.stream : undefined;

  // the model's buffers (batch norm's running statistics): every replica keeps its own while
  // training; before evaluating and saving, every rank takes the first worker's (as DDP does)
  const buffers = rank.holdsBuffers ? undefined : model.buffers;
  const firstWorker = capabilities.server ? 1 : 0;
  const savedBuffers = start.optimizerState[BUFFERS];
  if (buffers && savedBuffers?.length === buffers.length) buffers.set(savedBuffers);
  const syncBuffers = async () => {
    if (buffers) await comm.broadcast(buffers, firstWorker);
  };

  const save = async (epoch: number, step: number, last = false) => {
    await syncBuffers();
    const snapshot = await rank.snapshot();
    const hookState = await gatherHookState(comm, input.hook);
    if (comm.rank === 0 && snapshot) {
      input.save({ params: rank.params, optimizerState: { ...snapshot.optimizerState, ...hookState, ...(buffers ? { [BUFFERS]: buffers } : {}) }, optimizerSteps: snapshot.optimizerSteps, epoch, step }, last);
    }
  };

  // one description of the step, updated in place: a step allocates nothing
  let epoch = start.epoch;
  let computeMs = 0; // this epoch's gradient computations
  let firstLoss = NaN; // this run's first step's (mean) loss: the scale divergence is judged against
  const diverged = (loss: number) => !Number.isFinite(loss) || loss > DIVERGED_FACTOR * Math.max(1, firstLoss);
  const lrOf = (step: number) => input.learningRate(epoch + (step + 1) / steps);
  const firstOf = (step: number) => shardStart(step, workers, workerIndex, batch);
  const batchOf = (step: number) => trainBatcher.fromOrder(order, firstOf(step), batch);
  const current: StepInput = {
    epoch, step: 0, steps, lr: 0, lrOf, order, first: 0, whole, meetAfter: false,
    batch: (at = current.step) => batchOf(at),
    gradient: async (params, grad, at = current.step) => {
      model.beginStep?.(epoch * steps + at);
      const started = performance.now();
      const loss = model.lossAndGradAsync ? await model.lossAndGradAsync(params, batchOf(at), grad) : model.lossAndGrad(params, batchOf(at), grad);
      computeMs += performance.now() - started;
      if (!Number.isFinite(loss)) throw divergence(epoch * steps + at, epoch, loss, lrOf(at));
      return loss;
    },
    stopRequested: input.stopRequested,
  };

  // training time of this run, evaluation excluded, for the evaluations' reports
  let trainedSeconds = 0;
  const test = async (epochs: number, samples: number) => {
    await syncBuffers();
    const { loss, accuracy, rmse } = rank.evaluate ? await rank.evaluate(testBatcher, dataset.test.count) : await evaluate(comm, model, dataset, rank.params, testBatcher);
    if (reporting) input.report({ kind: 'evaluation', epochs, samples, testLoss: loss, testAccuracy: accuracy, testRmse: rmse, trainSeconds: trainedSeconds });
    return { loss, accuracy, rmse };
  };

  for (; epoch < epochs; epoch++) {
    epochOrder(order, seed, epoch);
    // the epoch's training time, its evaluations excluded: summed over the stretches between them
    let stretchStart = performance.now();
    let epochSeconds = 0;
    const endStretch = () => {
      const seconds = (performance.now() - stretchStart) / 1000;
      epochSeconds += seconds;
      trainedSeconds += seconds;
    };
    const firstStep = epoch === start.epoch ? start.step : 0;
    await rank.beginEpoch?.(epoch, firstStep, steps);
    let lossSum = 0;
    let lossWeight = 0;
    let stepsTimed = 0;
    let stepMs = 0;
    computeMs = 0;
    const waitedAtStart = comm.waitedSeconds;
    let stopped = false;
    let resumeAt = steps;
    for (let step = firstStep; step < steps; step++) {
      const lr = lrOf(step);
      const midEpoch = capabilities.midEpochCheckpoints && step + 1 < steps;
      const checkpointAfter = midEpoch && input.saveEvery > 0 && (step + 1) % input.saveEvery === 0;
      // (not within half an interval of the epoch's end, which evaluates anyway)
      const evaluateAfter = midEpoch && (step + 1) % input.evalEvery === 0 && steps - (step + 1) >= input.evalEvery / 2;
      current.epoch = epoch;
      current.step = step;
      current.lr = lr;
      current.first = firstOf(step);
      current.meetAfter = checkpointAfter || evaluateAfter;
      await stream?.beforeStep();
      const stepStarted = performance.now();
      const outcome = await rank.step(current);
      stepMs += performance.now() - stepStarted;
      computeMs += 1000 * (outcome.computeSeconds ?? 0);
      stepsTimed++;
      if (outcome.loss !== undefined) {
        if (Number.isNaN(firstLoss)) firstLoss = outcome.loss;
        if (diverged(outcome.loss)) throw divergence(epoch * steps + step, epoch, outcome.loss, lr);
        const weight = outcome.weight ?? 1;
        lossSum += outcome.loss * weight;
        lossWeight += weight;
        const now = performance.now();
        if (reporting && (step + 1 === steps || now - lastReport >= REPORT_INTERVAL_MS)) {
          lastReport = now;
          input.report({ kind: 'step', epoch, step, stepsPerEpoch: steps, samples: (epoch * steps + step + 1) * workers * batch, loss: outcome.loss, lr, bytesSent: rank.bytesSent() });
        }
      }
      if (outcome.stop) {
        stopped = true;
        resumeAt = outcome.resumeAt ?? step + 1;
        break;
      }
      if (checkpointAfter) await save(epoch, step + 1);
      if (evaluateAfter) {
        endStretch();
        await test(epoch + (step + 1) / steps, (epoch * steps + step + 1) * workers * batch);
        stretchStart = performance.now();
      }
    }
    endStretch();
    const ended = rank.endSteps ? await rank.endSteps(stopped, lossSum / Math.max(1, lossWeight)) : { stop: stopped, trainLoss: lossSum / lossWeight };
    if (ended.stop) {
      await save(epoch, resumeAt, true);
      return { params: rank.params, stoppedEarly: true };
    }
    // (a backend that cannot tell its waits says so at the start as at the end)
    const waited = waitedAtStart === undefined ? null : comm.waitedSeconds! - waitedAtStart;
    const perStep: StepBreakdown = {
      compute: computeMs / 1000 / stepsTimed,
      // (a step that meets its peers inside the gradient, --sync-bn, counts that wait in both)
      communication: Math.max(0, stepMs - computeMs - 1000 * (waited ?? 0)) / 1000 / stepsTimed,
      waiting: waited === null ? null : waited / stepsTimed,
    };
    const { loss, accuracy, rmse } = await test(epoch + 1, (epoch + 1) * steps * workers * batch);
    if (reporting) {
      input.report({ kind: 'epoch', epoch, trainLoss: ended.trainLoss, testLoss: loss, testAccuracy: accuracy, testRmse: rmse, trainSeconds: epochSeconds, samples: (steps - firstStep) * workers * batch, bytesSent: rank.bytesSent(), perStep });
    }
    await save(epoch + 1, 0, epoch + 1 === epochs);
    // one shared array: nobody writes the next epoch's updates until rank 0 has saved this one's
    if (capabilities.sharedArray) await comm.barrier();
  }
  return { params: rank.params, stoppedEarly: false };
}

/**
 * Test loss and accuracy with the work shared by every rank of the communicator: each takes
 * a contiguous share of the test split, then one all-reduce sums [loss·count, correct, count].
 */
export async function evaluate(comm: Communicator, model: Model, dataset: Dataset, params: Float32Array, batcher: Batcher): Promise<{ loss: number; accuracy: number; rmse: number }> {
  const [first, end] = shareOf(dataset.test.count, comm.rank, comm.size);
  const totals = new Float64Array(4);
  for (let start = first; start < end; start += model.maxBatch) {
    const count = Math.min(model.maxBatch, end - start);
    addEvaluation(totals, model.evaluate(params, batcher.range(start, count)), count);
  }
  // float32 sums of counts up to 2²⁴ stay exact; the sums of losses lose only float32 rounding
  const shared = Float32Array.from(totals);
  await comm.allreduce(shared, 'sum');
  return evaluationFigures(shared, model.task);
}
