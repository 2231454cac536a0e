// What a strategy is: how one rank turns the gradients of a step into an update, and the roles
// beyond a gradient worker (a server). The training loop (train/loop.ts) owns everything else —
// epochs, data order, resume, stop, checkpoints, evaluation, reports — and asks a strategy's
// rank for one step at a time.

import type { RecomputeSpec } from '../models/checkpointing.js';
import type { ActivationReport } from '../models/recompute.js';

import type { Communicator } from '../comm/communicator.js';
import type { Hook } from '../compress/hook.js';
import type { Batcher } from '../data/batches.js';
import type { AnyBatch, Evaluation, Model } from '../models/model.js';
import type { Optimizer } from '../optim/optimizers.js';
import type { ParamPrecision } from '../tensor/precision.js';
import type { PipelineOptions, StageReport } from './pipeline.js';
import type { TensorParallelReport } from './tensor.js';

/** Test samples a pass evaluates at once (the loop's model is built for batches this large, and the strategies that evaluate through their own passes use it). */
export const EVAL_BATCH = 128;

/** Adds one evaluated batch of `count` samples to [Σ loss·count, correct, Σ squared error, count]. */
export function addEvaluation(totals: Float32Array | Float64Array, result: Evaluation, count: number): void {
  totals[0] += result.loss * count;
  totals[1] += result.correct;
  totals[2] += result.squaredError;
  totals[3] += count;
}

/** The test loss and accuracy (classification) or RMSE (regression) of totals summed over every rank. */
export function evaluationFigures(totals: ArrayLike<number>, task: 'classification' | 'regression'): { loss: number; accuracy: number; rmse: number } {
  const count = totals[3];
  return { loss: totals[0] / count, accuracy: task === 'classification' ? totals[1] / count : NaN, rmse: task === 'regression' ? Math.sqrt(totals[2] / count) : NaN };
}

/** The checkpoint's name for the model's buffers (batch norm's running statistics). */
export const MODEL_BUFFERS = 'model.buffers';

/** What the loop hands a strategy when it builds a rank. */
/** What a rank holds for its model, in bytes (train/memory.ts adds them up against --memory-limit). */
export interface MemoryParts {
  parameters: number;
  gradients: number;
  optimizer: number;
  activations: number;
}

export interface RankSetup {
  comm: Communicator;
  model: Model;
  /** Ranks that compute gradients (a parameter server is not one). */
  workers: number;
  batch: number; // per worker
  seed: number;
  /** The parameters to start from; rank 0's are the real ones (a strategy broadcasts them). */
  startParams: Float32Array;
  /** startParams are already in the storage format of --param-precision (a checkpoint saved so): rounding them again would move them (int8's block scales are recomputed), and a resumed run must continue exactly. */
  startRounded?: boolean;
  /** The model's buffers (running statistics) a checkpoint held, if any: for a strategy that keeps them itself (holdsBuffers). */
  startBuffers?: Float32Array;
  paramPrecision: ParamPrecision;
  syncEvery: number; // local-sgd
  staleness: number; // async-ps
  mergeEvery?: number; // hogwild: examples between a replica's merges (0: no replica; unset: chosen by the strategy)
  /** hogwild: the one parameter array every thread updates (only the thread launcher makes it). */
  sharedBuffer?: SharedArrayBuffer;
  /** This rank's compression hook (--compress), its saved state restored; null without one. */
  hook: Hook | null;
  /**
   * The optimiser of --optimizer (plain SGD when the hook applies momentum), its saved state
   * restored; over the parameters' [start, end) alone when a range is given (a pipeline stage's).
   */
  optimizer(range?: [number, number]): Optimizer;
  /** Another replica of the model (the same definition, seed and rank), sized for batches of up to maxBatch: a pipeline stage holds one per micro-batch in flight. */
  replica(maxBatch: number): Model;
  /** pipeline: the stages, micro-batches, schedule and cut. */
  pipeline?: PipelineOptions;
  /** tensor: the ranks each split layer is divided across. */
  tensorParallel?: number;
  /** pipeline with --recompute or --memory-budget: each stage's schedule, and the activation memory a rank may hold (its micro-batches' arenas together). */
  recompute?: { spec: RecomputeSpec; budget?: number };
  /** Reports of a strategy's own kind (async-ps: which updates had which staleness). */
  reportUpdates(workers: number[], versions: number[], staleness: number[]): void;
  /** pipeline, at rank 0: every stage's layers, parameters, peak stored micro-batches and time. */
  reportPipeline?(stages: StageReport[]): void;
  /**
   * What this rank holds for the model, in bytes, once its buffers exist (train/memory.ts): a
   * strategy that holds a share (pipeline, fsdp, tensor) says so; the others hold a whole replica.
   */
  holds?(parts: MemoryParts): void;
  /** A strategy that runs the chain itself with --recompute (fsdp), at rank 0: its arena and schedule. */
  reportActivations?(report: ActivationReport): void;
  /** tensor, at rank 0: the split blocks, the all-reduces a step made, the parameters a rank holds. */
  reportTensorParallel?(report: TensorParallelReport): void;
}

/** One step as the loop describes it to a rank. */
export interface StepInput {
  epoch: number;
  step: number;
  steps: number; // per epoch
  /** The learning rate of this step (schedule and scaling applied). */
  lr: number;
  /** The learning rate of another step of this epoch (async-ps applies steps out of order). */
  lrOf(step: number): number;
  /** The epoch's shuffled order of training samples, and where this rank's minibatch starts in it. */
  order: Uint32Array;
  first: number;
  /** The whole training split as one batch, read in place (sparse rows and ratings), for per-example steps. */
  whole: AnyBatch | undefined;
  /** This rank's minibatch of the step (or of another step, for async-ps's workers). */
  batch(step?: number): AnyBatch;
  /** The loss and gradient of the model on that minibatch; a loss that is not finite is an error. Awaited: batch norm with --sync-bn meets the other ranks inside it. */
  gradient(params: Float32Array, grad: Float32Array, step?: number): Promise<number>;
  /** Whether the user asked to stop; asked by the rank(s) that decide, where they decide. */
  stopRequested(): boolean;
  /** A checkpoint or an evaluation follows this step: the ranks' copies must agree after it (the loop asks only strategies whose ranks meet every step). */
  meetAfter: boolean;
}

export interface StepOutcome {
  /** The step's training loss as this rank knows it (the mean over the workers where there is one); undefined: not known at this step. */
  loss?: number;
  /** Steps that loss stands for (local-sgd: the steps since the last average); 1 when absent. */
  weight?: number;
  /** The ranks have agreed to stop after this step (or, hogwild, this rank stops). */
  stop: boolean;
  /** Where a resumed run starts, when not at the next step (async-ps: the slowest worker's step). */
  resumeAt?: number;
  /** Seconds of forward and backward passes the rank ran itself, outside input.gradient (a pipeline stage's). */
  computeSeconds?: number;
}

/** The optimiser state a checkpoint holds, whole, at rank 0. */
export interface OptimizerSnapshot {
  optimizerState: Record<string, Float32Array>;
  optimizerSteps: number;
}

export interface StrategyRank {
  /** The parameters as this rank holds them: current on every rank once endSteps has run; rank 0's are saved. */
  readonly params: Float32Array;
  /**
   * The model's buffers (batch norm's running statistics) live in the rank's own replicas, each
   * stage its part (a pipeline): its snapshot saves them, and the loop leaves its model's alone.
   */
  readonly holdsBuffers?: boolean;
  /** Bytes a worker sent in the steps' exchanges, as the log reports them. */
  bytesSent(): number;
  /** Before the first step of an epoch (async-ps's server hands out the first steps). */
  beginEpoch?(epoch: number, firstStep: number, steps: number): Promise<void>;
  step(input: StepInput): Promise<StepOutcome>;
  /**
   * A collective after an epoch's steps, or after a stop: agree whether to stop and on the mean
   * training loss (this rank's is given), and make the parameters current on every rank.
   */
  endSteps?(stopped: boolean, trainLoss: number): Promise<{ stop: boolean; trainLoss: number }>;
  /** A collective before a checkpoint: the optimiser state, whole at rank 0 (null elsewhere). */
  snapshot(): Promise<OptimizerSnapshot | null>;
  /**
   * A collective: the test split's loss and accuracy (or RMSE), where no rank holds the whole
   * model (a pipeline passes the batches through its stages). Absent: each rank evaluates its
   * share with `params`.
   */
  evaluate?(batcher: Batcher, count: number): Promise<{ loss: number; accuracy: number; rmse: number }>;
}

export type Strategy = (setup: RankSetup) => Promise<StrategyRank>;
