// What the training layer hands a strategy: the model, this rank's communicator, the data,
// the optimiser and schedule, the state to start from, and callbacks to report and save.
// A strategy owns the step loop; it knows nothing of files, threads or terminals.

import type { Communicator } from '../comm/communicator.js';
import type { Dataset } from '../data/dataset.js';
import type { Model } from '../models/model.js';
import type { Optimizer } from '../optim/optimizers.js';
import type { Hook } from '../compress/hook.js';
import type { ParamPrecision } from '../tensor/precision.js';

export interface TrainingState {
  params: Float32Array;
  optimizerState: Record<string, Float32Array>;
  optimizerSteps: number;
  epoch: number; // the epoch to run next
  step: number; // the step within it to run next
}

export type StrategyEvent =
  | { kind: 'step'; epoch: number; step: number; stepsPerEpoch: number; samples: number; loss: number; lr: number; bytesSent: number }
  | { kind: 'epoch'; epoch: number; trainLoss: number; testLoss: number; testAccuracy: number; testRmse: number; trainSeconds: number; samples: number; bytesSent: number }
  /** async-ps: the updates applied since the last report — worker, server version after it, staleness */
  | { kind: 'updates'; workers: number[]; versions: number[]; staleness: number[] };

export interface StrategyContext {
  comm: Communicator;
  model: Model;
  dataset: Dataset;
  /** hogwild: the memory of the one parameter array all threads share (only the shared-memory launcher makes it) */
  sharedBuffer?: SharedArrayBuffer;
  /** How the master copy of the parameters is stored (--param-precision). */
  paramPrecision: ParamPrecision;
  syncEvery: number; // local-sgd
  staleness: number; // async-ps
  workers: number; // ranks that compute gradients (excludes a parameter server)
  batch: number; // per worker
  epochs: number;
  seed: number;
  /** Learning rate at a fractional epoch, scaling rule and schedule applied. */
  learningRate(epoch: number): number;
  /** The optimiser of --optimizer; plain SGD (same weight decay) when a hook applies momentum itself. */
  makeOptimizer(plainSgd?: boolean): Optimizer;
  /** The gradient compression hook of this rank (--compress), if any: a fresh one per call. */
  makeHook?: (size: number, options?: { momentum?: number }) => Hook;
  /** The state to start from; only the rank that owns the parameters needs the real values. */
  start: TrainingState;
  report(event: StrategyEvent): void;
  /** Persists a state (called by the rank that owns the parameters). */
  save(state: TrainingState): void;
  /** Steps between mid-epoch checkpoints (0: only at epoch ends). */
  saveEvery: number;
  /** True once the user asked to stop (checked by the deciding rank only). */
  stopRequested(): boolean;
}

export interface StrategyResult {
  params: Float32Array;
  stoppedEarly: boolean;
}

export type Strategy = (context: StrategyContext) => Promise<StrategyResult>;
