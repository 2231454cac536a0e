// Batch normalisation (Ioffe & Szegedy 2015) per channel: over N×H×W for images [C, H, W], over N
// for vectors [C]. Training normalises by the batch's statistics and updates running estimates
// (momentum 0.1, the unbiased variance, as PyTorch); evaluation normalises by those estimates.
// γ and β are parameters; the running mean and variance are the model's buffers — kept per
// replica, made rank 0's (the first worker's) before evaluation and checkpoints, as DDP does.

import type { KernelSet } from '../kernels/types.js';
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
  private readonly inverseStd: Float32Array; // per channel, of the last training pass
  private training = false;
  private buffered: Views | null = null;
  private readonly weight: string;
  private readonly bias: string;
  private readonly runningMean: string;
  private readonly runningVar: string;

  constructor(private readonly k: KernelSet, name: string, readonly outputShape: readonly number[], maxBatch: number) {
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
    this.inverseStd = new Float32Array(this.channels);
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
    const buffers = this.buffered!;
    this.k.batchNormForward(x, p[this.weight], p[this.bias], this.out, this.normalised, this.inverseStd, buffers[this.runningMean], buffers[this.runningVar],
      batch, this.channels, this.plane, this.training, MOMENTUM, EPSILON);
    return this.out;
  }

  backward(p: Views, g: Views, _x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): void {
    this.k.batchNormBackward(gradOut, this.normalised, this.inverseStd, p[this.weight], g[this.weight], g[this.bias], gradX, batch, this.channels, this.plane);
  }

  init(p: Views): void {
    p[this.weight].fill(1);
    p[this.bias].fill(0);
  }
}
