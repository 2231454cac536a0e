// A model is a layout plus lossAndGrad and predict. It knows nothing of parallelism: it is
// handed a flat parameter buffer and a flat gradient buffer of its layout and fills the latter.

import type { Layout } from '../tensor/layout.js';
import type { Random } from '../tensor/random.js';

export interface Batch {
  x: Float32Array; // [size, ...inputShape]
  y: Int32Array; // [size] class labels
  size: number;
}

export interface Model {
  readonly name: string;
  readonly layout: Layout;
  readonly inputShape: readonly number[]; // per sample, e.g. [1, 28, 28]
  readonly classes: number;
  readonly maxBatch: number;
  /** Fresh parameters, as PyTorch initialises the same layers (U(±1/√fan_in)). */
  init(params: Float32Array, random: Random): void;
  /** Writes the gradient of the mean loss over the batch into `grad`; returns the mean loss. */
  lossAndGrad(params: Float32Array, batch: Batch, grad: Float32Array): number;
  /** Mean loss and number of correct predictions on a labelled batch (no gradient). */
  evaluate(params: Float32Array, batch: Batch): { loss: number; correct: number };
  /** Writes the predicted class of each of the first `count` samples of x (count ≤ maxBatch). */
  predict(params: Float32Array, x: Float32Array, count: number, out: Int32Array): void;
}

export interface ModelOptions {
  inputShape: readonly number[];
  classes: number;
  maxBatch: number;
  hidden?: readonly number[]; // MLP hidden widths
  cnnWidths?: readonly [number, number, number]; // CNN: conv1 filters, conv2 filters, dense width
}
