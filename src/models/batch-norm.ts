// Batch normalisation (Ioffe & Szegedy 2015) per channel: over N×H×W for images [C, H, W], over N
// for vectors [C]. Training normalises by the batch's statistics and updates running estimates
// (momentum 0.1, the unbiased variance, as PyTorch); evaluation normalises by those estimates.
// γ and β are parameters; the running mean and variance are the model's buffers — kept per
// replica, made rank 0's (the first worker's) before evaluation and checkpoints, as DDP does.

import type { Layer, Views } from './layers.js';
import type { TensorSpec } from '../tensor/layout.js';

const EPSILON = 1e-5;
const MOMENTUM = 0.1;

export class BatchNorm implements Layer {
  readonly params: TensorSpec[];
  readonly buffers: TensorSpec[];
  private readonly channels: number;
  private readonly plane: number; // values per channel per sample
  private readonly out: Float32Array;
  private readonly normalised: Float32Array; // x̂ of the last training pass
  private readonly inverseStd: Float64Array; // per channel, of the last training pass
  private training = false;
  private buffered: Views | null = null;
  private readonly weight: string;
  private readonly bias: string;
  private readonly runningMean: string;
  private readonly runningVar: string;

  constructor(name: string, readonly outputShape: readonly number[], maxBatch: number) {
    this.channels = outputShape[0];
    this.plane = outputShape.slice(1).reduce((a, b) => a * b, 1);
    this.weight = `${name}.weight`;
    this.bias = `${name}.bias`;
    this.runningMean = `${name}.running_mean`;
    this.runningVar = `${name}.running_var`;
    this.params = [{ name: this.weight, shape: [this.channels] }, { name: this.bias, shape: [this.channels] }];
    this.buffers = [{ name: this.runningMean, shape: [this.channels] }, { name: this.runningVar, shape: [this.channels] }];
    const size = maxBatch * this.channels * this.plane;
    this.out = new Float32Array(size);
    this.normalised = new Float32Array(size);
    this.inverseStd = new Float64Array(this.channels);
  }

  setMode(training: boolean): void {
    this.training = training;
  }

  /** The model hands the layer the views of its running statistics. */
  useBuffers(views: Views): void {
    this.buffered = views;
    views[this.runningMean].fill(0);
    views[this.runningVar].fill(1);
  }

  forward(p: Views, x: Float32Array, batch: number): Float32Array {
    const { channels, plane } = this;
    const gamma = p[this.weight];
    const beta = p[this.bias];
    const mean = this.buffered![this.runningMean];
    const variance = this.buffered![this.runningVar];
    const count = batch * plane;
    for (let c = 0; c < channels; c++) {
      let m: number;
      let inverse: number;
      if (this.training) {
        let sum = 0;
        for (let n = 0; n < batch; n++) {
          const at = (n * channels + c) * plane;
          for (let i = 0; i < plane; i++) sum += x[at + i];
        }
        m = sum / count;
        let squares = 0;
        for (let n = 0; n < batch; n++) {
          const at = (n * channels + c) * plane;
          for (let i = 0; i < plane; i++) squares += (x[at + i] - m) ** 2;
        }
        const biased = squares / count;
        inverse = 1 / Math.sqrt(biased + EPSILON);
        this.inverseStd[c] = inverse;
        mean[c] = (1 - MOMENTUM) * mean[c] + MOMENTUM * m;
        variance[c] = (1 - MOMENTUM) * variance[c] + MOMENTUM * (count > 1 ? squares / (count - 1) : biased);
      } else {
        m = mean[c];
        inverse = 1 / Math.sqrt(variance[c] + EPSILON);
      }
      const g = gamma[c];
      const b = beta[c];
      for (let n = 0; n < batch; n++) {
        const at = (n * channels + c) * plane;
        for (let i = 0; i < plane; i++) {
          const normal = (x[at + i] - m) * inverse;
          this.normalised[at + i] = normal;
          this.out[at + i] = g * normal + b;
        }
      }
    }
    return this.out;
  }

  /** dγ = Σ dy·x̂, dβ = Σ dy, dx = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂)) per channel. */
  backward(p: Views, g: Views, _x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): void {
    const { channels, plane } = this;
    const gamma = p[this.weight];
    const gradGamma = g[this.weight];
    const gradBeta = g[this.bias];
    const count = batch * plane;
    for (let c = 0; c < channels; c++) {
      let sumDy = 0;
      let sumDyX = 0;
      for (let n = 0; n < batch; n++) {
        const at = (n * channels + c) * plane;
        for (let i = 0; i < plane; i++) {
          sumDy += gradOut[at + i];
          sumDyX += gradOut[at + i] * this.normalised[at + i];
        }
      }
      gradGamma[c] = sumDyX;
      gradBeta[c] = sumDy;
      if (!gradX) continue;
      const scale = gamma[c] * this.inverseStd[c];
      const meanDy = sumDy / count;
      const meanDyX = sumDyX / count;
      for (let n = 0; n < batch; n++) {
        const at = (n * channels + c) * plane;
        for (let i = 0; i < plane; i++) gradX[at + i] = scale * (gradOut[at + i] - meanDy - this.normalised[at + i] * meanDyX);
      }
    }
  }

  init(p: Views): void {
    p[this.weight].fill(1);
    p[this.bias].fill(0);
  }
}
