// Linear models on sparse rows: logistic regression (log loss) and a linear SVM (hinge loss),
// both with an L2 penalty. The minibatch gradient is dense (the whole weight vector, as the
// synchronous strategies exchange it); exampleStep touches only the row's features, as
// Hogwild! does (Niu et al. 2011), with the penalty applied lazily to those features alone.
//
// In a per-example step the bias moves at INTERCEPT_RATE × lr. It is in every example, so at
// the features' rate it takes a full step per example and its noise dominates the test loss
// (at lr 0.5 on the RCV1-like set it swung 0.48–0.54 from epoch to epoch); scikit-learn's SGD
// and Bottou's sgd do the same on sparse data (SPARSE_INTERCEPT_DECAY = 0.01). It is still SGD
// on the same objective, with the bias's coordinate scaled. The minibatch gradient is unchanged.

import { kernel } from '../kernels/registry.js';
import { Layout } from '../tensor/layout.js';
import type { Evaluation, Model, SparseBatch } from './model.js';

type Loss = 'logistic' | 'hinge';

/** The bias's learning rate in per-example steps, as a fraction of the features' (see above). */
export const INTERCEPT_RATE = 0.01;

/** log(1 + e^z), without overflow */
function softplus(z: number): number {
  return z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z));
}

export class SparseLinear implements Model<SparseBatch> {
  readonly layout: Layout;
  readonly task = 'classification' as const;
  private readonly dot = kernel('sparseDot');
  private readonly axpy = kernel('sparseAxpy');
  private readonly steps = kernel('sparseLinearSteps');
  private readonly bias: number; // offset of the bias in the flat buffer

  constructor(readonly name: string, private readonly loss: Loss, readonly features: number, readonly l2: number, readonly maxBatch: number) {
    this.layout = new Layout([{ name: 'weight', shape: [features] }, { name: 'bias', shape: [1] }]);
    this.bias = features;
  }

  init(params: Float32Array): void {
    params.fill(0); // a convex problem: zero is the usual start
  }

  /** Loss of margin z for label y ∈ {0, 1}, and its derivative in z. */
  private lossAt(z: number, y: number): [number, number] {
    if (this.loss === 'logistic') return [softplus(z) - y * z, 1 / (1 + Math.exp(-z)) - y];
    const s = 2 * y - 1;
    return s * z < 1 ? [1 - s * z, -s] : [0, 0];
  }

  lossAndGrad(params: Float32Array, batch: SparseBatch, grad: Float32Array): number {
    const { rowPtr, indices, values, y, size } = batch;
    const scale = 1 / size;
    for (let j = 0; j < this.features; j++) grad[j] = this.l2 * params[j];
    grad[this.bias] = 0;
    let total = 0;
    for (let i = 0; i < size; i++) {
      const z = this.dot(indices, values, rowPtr[i], rowPtr[i + 1], params, 0) + params[this.bias];
      const [loss, slope] = this.lossAt(z, y[i]);
      total += loss;
      if (slope !== 0) {
        this.axpy(indices, values, rowPtr[i], rowPtr[i + 1], slope * scale, grad, 0);
        grad[this.bias] += slope * scale;
      }
    }
    let penalty = 0;
    if (this.l2 > 0) for (let j = 0; j < this.features; j++) penalty += params[j] * params[j];
    return total * scale + 0.5 * this.l2 * penalty;
  }

  exampleStep(params: Float32Array, batch: SparseBatch, i: number, lr: number): number {
    const { rowPtr, indices, values, y } = batch;
    const start = rowPtr[i];
    const end = rowPtr[i + 1];
    const z = this.dot(indices, values, start, end, params, 0) + params[this.bias];
    const [loss, slope] = this.lossAt(z, y[i]);
    for (let k = start; k < end; k++) {
      const j = indices[k];
      params[j] -= lr * (slope * values[k] + this.l2 * params[j]);
    }
    params[this.bias] -= lr * INTERCEPT_RATE * slope;
    return loss;
  }

  exampleSteps(params: Float32Array, batch: SparseBatch, order: Uint32Array, first: number, count: number, lr: number): number {
    return this.steps(batch.rowPtr, batch.indices, batch.values, batch.y, order, first, count, params, this.bias, lr, this.l2, INTERCEPT_RATE, this.loss === 'hinge');
  }

  exampleCoordinates(batch: SparseBatch, i: number, out: Int32Array): number {
    const start = batch.rowPtr[i];
    const count = batch.rowPtr[i + 1] - start;
    out.set(batch.indices.subarray(start, start + count));
    out[count] = this.bias;
    return count + 1;
  }

  maxExampleCoordinates(batch: SparseBatch): number {
    let most = 0;
    for (let i = 0; i < batch.size; i++) most = Math.max(most, batch.rowPtr[i + 1] - batch.rowPtr[i]);
    return most + 1;
  }

  predictions(params: Float32Array, batch: SparseBatch, out: Float32Array): void {
    for (let i = 0; i < batch.size; i++) out[i] = this.dot(batch.indices, batch.values, batch.rowPtr[i], batch.rowPtr[i + 1], params, 0) + params[this.bias] > 0 ? 1 : 0;
  }

  evaluate(params: Float32Array, batch: SparseBatch): Evaluation {
    const { rowPtr, indices, values, y, size } = batch;
    let total = 0;
    let correct = 0;
    for (let i = 0; i < size; i++) {
      const z = this.dot(indices, values, rowPtr[i], rowPtr[i + 1], params, 0) + params[this.bias];
      total += this.lossAt(z, y[i])[0];
      if ((z > 0 ? 1 : 0) === y[i]) correct++;
    }
    return { loss: total / size, correct, squaredError: 0 };
  }
}
