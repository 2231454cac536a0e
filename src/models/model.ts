// A model is a layout plus lossAndGrad and predict. It knows nothing of parallelism: it is
// handed a flat parameter buffer and a flat gradient buffer of its layout and fills the latter.

import type { Layout } from '../tensor/layout.js';
import type { Random } from '../tensor/random.js';
import type { RecomputeSpec } from './checkpointing.js';

/** Images (or any dense samples) with class labels. */
export interface Batch {
  x: Float32Array; // [size, ...inputShape]
  y: Int32Array; // [size] class labels
  /** Regression: [size, outputs] targets (absent for classification). */
  targets?: Float32Array;
  size: number;
}

/** Sparse rows in CSR form with 0/1 labels. */
export interface SparseBatch {
  rowPtr: Int32Array; // [size + 1]
  indices: Int32Array;
  values: Float32Array;
  y: Float32Array; // [size], 0 or 1
  size: number;
}

/** (user, item, rating) triples. */
export interface RatingBatch {
  users: Int32Array;
  items: Int32Array;
  ratings: Float32Array;
  size: number;
}

export type AnyBatch = Batch | SparseBatch | RatingBatch;

export interface Evaluation {
  loss: number; // mean over the batch
  correct: number; // classification: right predictions; regression: 0
  squaredError: number; // regression: Σ over the batch of each sample's (prediction − target)², averaged over its targets (so RMSE is per value); classification: 0
}

export interface Model<B extends AnyBatch = AnyBatch> {
  readonly name: string;
  readonly layout: Layout;
  readonly maxBatch: number;
  /** 'classification' reports accuracy, 'regression' reports RMSE. */
  readonly task: 'classification' | 'regression';
  /** Fresh parameters (dense layers as PyTorch initialises them, U(±1/√fan_in)). */
  init(params: Float32Array, random: Random): void;
  /** Writes the gradient of the mean loss over the batch into `grad`; returns the mean loss. */
  lossAndGrad(params: Float32Array, batch: B, grad: Float32Array): number;
  /**
   * Models whose training step exchanges statistics with the other ranks (batch norm with
   * --sync-bn): the step, awaited. The loop calls it in place of lossAndGrad, which then throws.
   */
  lossAndGradAsync?(params: Float32Array, batch: B, grad: Float32Array): Promise<number>;
  /**
   * State besides the parameters that training changes but gradients do not (batch norm's running
   * statistics), in one flat buffer: each replica keeps its own; the loop makes them the first
   * worker's before evaluation and saves them in checkpoints.
   */
  readonly buffers?: Float32Array;
  /**
   * What the model predicts for each sample of a batch, written to out[i·width …]: the class
   * (classification) or the predicted value(s) (regression). `predictionWidth` values per sample (1 when absent).
   */
  predictions?(params: Float32Array, batch: B, out: Float32Array): void;
  readonly predictionWidth?: number;
  /** Before a training step's lossAndGrad: the run's step number, which seeds what is random in it (dropout). */
  beginStep?(step: number): void;
  /** Mean loss and the model's figure of merit on a labelled batch (no gradient). */
  evaluate(params: Float32Array, batch: B): Evaluation;
  /**
   * One SGD step on example `i` of the batch alone, touching only the coordinates it uses
   * (the update Hogwild! races on). Sparse models have it; dense ones do not.
   */
  exampleStep?(params: Float32Array, batch: B, i: number, lr: number): number;
  /** exampleStep on examples order[first], …, order[first + count − 1] in turn, in one call where the model has a kernel for it; the summed loss. */
  exampleSteps?(params: Float32Array, batch: B, order: Uint32Array, first: number, count: number, lr: number): number;
  /**
   * The coordinates exampleStep(…, i, …) reads and writes, written to `out`; returns how many.
   * Low-precision Hogwild! decodes these before the step and writes back their changes after.
   */
  exampleCoordinates?(batch: B, i: number, out: Int32Array): number;
  /** The most coordinates one example can touch (the length `out` needs). */
  maxExampleCoordinates?(batch: B): number;
}

export interface ImageModel extends Model<Batch> {
  readonly inputShape: readonly number[]; // per sample, e.g. [1, 28, 28]
  readonly classes: number;
  /** Writes the predicted class of each of the first `count` samples of x (count ≤ maxBatch). */
  predict(params: Float32Array, x: Float32Array, count: number, out: Int32Array): void;
}

export interface ModelOptions {
  maxBatch: number;
  /** The run's seed and the replica (rank) building the model: what is random in training (dropout) is drawn from both. */
  seed?: number;
  replica?: number;
  inputShape?: readonly number[]; // image models
  classes?: number; // image models: classes, or for regression the number of targets
  /** Regression: fit targets by mean squared error instead of classes by softmax cross-entropy. */
  task?: 'classification' | 'regression';
  hidden?: readonly number[]; // MLP hidden widths
  cnnWidths?: readonly [number, number, number]; // CNN: conv1 filters, conv2 filters, dense width
  features?: number; // sparse models
  users?: number; // matrix factorisation
  items?: number;
  factors?: number; // matrix factorisation: the rank of the factors
  l2?: number; // L2 penalty of the sparse models and matrix factorisation
  mean?: number; // matrix factorisation: the global mean rating
  /** Batch norm with --sync-bn: the ranks its statistics are reduced across (absent: each replica keeps its own). */
  statistics?: StatisticsGroup;
  /** Models of layers: which activations a step stores and which it recomputes (models/checkpointing.ts; default: store all). */
  recompute?: RecomputeSpec;
  /** Models of layers: the most bytes of activation memory a step may hold (its arena's size). */
  memoryBudget?: number;
}

/** The ranks that normalise by one batch's statistics: a sum of every rank's buffer, awaited inside the training step. */
export interface StatisticsGroup {
  allreduceSum(buffer: Float32Array): Promise<void>;
}
