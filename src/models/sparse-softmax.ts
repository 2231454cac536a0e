// Multinomial logistic regression on sparse rows (multi-class libsvm data), with an L2 penalty:
// logits z = W x + b, softmax cross-entropy. The weights are [classes, features]; a row touches
// its own features' columns in every class.

import { kernel } from '../kernels/registry.js';
import { Layout } from '../tensor/layout.js';
import type { Evaluation, Model, SparseBatch } from './model.js';

export class SparseSoftmax implements Model<SparseBatch> {
  readonly layout: Layout;
  readonly task = 'classification' as const;
  private readonly dot = kernel('sparseDot');
  private readonly axpy = kernel('sparseAxpy');
  private readonly bias: number; // offset of the biases in the flat buffer
  private readonly logits: Float64Array;

  constructor(readonly name: string, readonly features: number, readonly classes: number, readonly l2: number, readonly maxBatch: number) {
    this.layout = new Layout([{ name: 'weight', shape: [classes, features] }, { name: 'bias', shape: [classes] }]);
    this.bias = classes * features;
    this.logits = new Float64Array(classes);
  }

  init(params: Float32Array): void {
    params.fill(0); // a convex problem: zero is the usual start
  }

  /** Writes the row's softmax probabilities into this.logits. */
  private probabilities(params: Float32Array, batch: SparseBatch, i: number): void {
    const { rowPtr, indices, values } = batch;
    let max = -Infinity;
    for (let c = 0; c < this.classes; c++) {
      const z = this.dot(indices, values, rowPtr[i], rowPtr[i + 1], params, c * this.features) + params[this.bias + c];
      this.logits[c] = z;
      if (z > max) max = z;
    }
    let sum = 0;
    for (let c = 0; c < this.classes; c++) sum += Math.exp(this.logits[c] - max);
    const logSum = max + Math.log(sum);
    for (let c = 0; c < this.classes; c++) this.logits[c] = Math.exp(this.logits[c] - logSum);
  }

  lossAndGrad(params: Float32Array, batch: SparseBatch, grad: Float32Array): number {
    const { rowPtr, indices, values, y, size } = batch;
    const scale = 1 / size;
    for (let j = 0; j < this.bias; j++) grad[j] = this.l2 * params[j];
    grad.fill(0, this.bias);
    let total = 0;
    for (let i = 0; i < size; i++) {
      const label = y[i];
      this.probabilities(params, batch, i);
      total -= Math.log(Math.max(this.logits[label], 1e-300));
      for (let c = 0; c < this.classes; c++) {
        const slope = (this.logits[c] - (c === label ? 1 : 0)) * scale;
        if (slope !== 0) this.axpy(indices, values, rowPtr[i], rowPtr[i + 1], slope, grad, c * this.features);
        grad[this.bias + c] += slope;
      }
    }
    let penalty = 0;
    if (this.l2 > 0) for (let j = 0; j < this.bias; j++) penalty += params[j] * params[j];
    return total * scale + 0.5 * this.l2 * penalty;
  }

  predictions(params: Float32Array, batch: SparseBatch, out: Float32Array): void {
    for (let i = 0; i < batch.size; i++) {
      this.probabilities(params, batch, i);
      let best = 0;
      for (let c = 1; c < this.classes; c++) if (this.logits[c] > this.logits[best]) best = c;
      out[i] = best;
    }
  }

  evaluate(params: Float32Array, batch: SparseBatch): Evaluation {
    let total = 0;
    let correct = 0;
    for (let i = 0; i < batch.size; i++) {
      this.probabilities(params, batch, i);
      const label = batch.y[i];
      total -= Math.log(Math.max(this.logits[label], 1e-300));
      let best = 0;
      for (let c = 1; c < this.classes; c++) if (this.logits[c] > this.logits[best]) best = c;
      if (best === label) correct++;
    }
    return { loss: total / batch.size, correct, squaredError: 0 };
  }
}
