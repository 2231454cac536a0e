// Batch normalisation (Ioffe & Szegedy 2015) per channel: over N×H×W for images [C, H, W], over N
// for vectors [C]. Training normalises by the batch's statistics and updates running estimates
// (momentum 0.1, the unbiased variance, as PyTorch); evaluation normalises by those estimates.
// γ and β are parameters; the running mean and variance are the model's buffers — kept per
// replica, made rank 0's (the first worker's) before evaluation and checkpoints, as DDP does.
//
// Synchronised (--sync-bn, PyTorch's SyncBatchNorm): training normalises by the statistics of
// every rank's batch together. The forward pass reduces each channel's sum, then its squared
// deviations from the global mean (two passes, as the local kernel computes them); the backward
// pass reduces Σ dy and Σ dy·x̂. The parameter gradients stay this rank's own sums (the strategy
// averages them with the rest), so P ranks of batch b compute what one rank of batch P·b does.

import { ConvergeError } from '../errors.js';
import type { KernelSet } from '../kernels/types.js';
import type { Layer, Views } from './layers.js';
import type { StatisticsGroup } from './model.js';
import { Held } from '../tensor/arena.js';
import type { TensorSpec } from '../tensor/layout.js';

const EPSILON = 1e-5;
const MOMENTUM = 0.1;

export class BatchNorm implements Layer {
  readonly params: TensorSpec[];
  readonly buffers: TensorSpec[];
  private readonly channels: number;
  private readonly plane: number; // values per channel per sample
  readonly output: Held;
  private readonly normalised: Held; // x̂ of the last training pass
  private readonly inverseStd: Held; // per channel, of the last training pass
  readonly held: Held[];
  private training = false;
  // a recomputed pass updates copies of the running statistics, not them (it ran once already)
  private replay = false;
  private readonly replayMean: Float32Array;
  private readonly replayVar: Float32Array;
  private buffered: Views | null = null;
  private readonly weight: string;
  private readonly bias: string;
  private readonly runningMean: string;
  private readonly runningVar: string;

  readonly synchronised: boolean;
  // synchronised: the statistics exchanged ([per channel…, count]), and the batch's global mean and variance
  private readonly exchange: Float32Array;
  private readonly mean: Float32Array;
  private readonly variance: Float32Array;
  private globalCount = 0;

  readonly outputBlock: number;

  /** Images in any channel block (`inputBlock`, kept for the output); vectors plain. */
  constructor(private readonly k: KernelSet, private readonly name: string, readonly outputShape: readonly number[], maxBatch: number,
    private readonly statistics?: StatisticsGroup, readonly inputBlock = 1) {
    this.outputBlock = inputBlock;
    this.channels = outputShape[0];
    this.plane = outputShape.slice(1).reduce((a, b) => a * b, 1);
    this.weight = `${name}.weight`;
    this.bias = `${name}.bias`;
    this.runningMean = `${name}.running_mean`;
    this.runningVar = `${name}.running_var`;
    this.params = [{ name: this.weight, shape: [this.channels] }, { name: this.bias, shape: [this.channels] }];
    this.buffers = [{ name: this.runningMean, shape: [this.channels] }, { name: this.runningVar, shape: [this.channels] }];
    const size = maxBatch * this.channels * this.plane;
    this.output = new Held(size, 'kept');
    this.normalised = new Held(size, 'kept');
    this.inverseStd = new Held(this.channels, 'kept');
    this.held = [this.output, this.normalised, this.inverseStd];
    this.replayMean = new Float32Array(this.channels);
    this.replayVar = new Float32Array(this.channels);
    this.synchronised = statistics !== undefined;
    this.exchange = new Float32Array(statistics ? 2 * this.channels + 1 : 0);
    this.mean = new Float32Array(statistics ? this.channels : 0);
    this.variance = new Float32Array(statistics ? this.channels : 0);
  }

  setMode(training: boolean, _step: number, replay = false): void {
    this.training = training;
    this.replay = replay;
  }

  /** The model hands the layer the views of its running statistics. */
  useBuffers(views: Views): void {
    this.buffered = views;
    views[this.runningMean].fill(0);
    views[this.runningVar].fill(1);
  }

  forward(p: Views, x: Float32Array, batch: number): Float32Array {
    if (this.training && this.statistics) throw new ConvergeError(`batch norm ${this.name} reduces its statistics across ranks (--sync-bn): train the model through lossAndGradAsync.`, 'BAD_MODEL');
    const buffers = this.buffered!;
    let runningMean = buffers[this.runningMean];
    let runningVar = buffers[this.runningVar];
    if (this.replay && this.training) {
      this.replayMean.set(runningMean);
      this.replayVar.set(runningVar);
      runningMean = this.replayMean;
      runningVar = this.replayVar;
    }
    const out = this.output.f32;
    this.k.batchNormForward(x, p[this.weight], p[this.bias], out, this.normalised.f32, this.inverseStd.f32, runningMean, runningVar,
      batch, this.channels, this.plane, this.inputBlock, this.training, MOMENTUM, EPSILON);
    return out;
  }

  backward(p: Views, g: Views, _x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): void {
    this.k.batchNormBackward(gradOut, this.normalised.f32, this.inverseStd.f32, p[this.weight], g[this.weight], g[this.bias], gradX, batch, this.channels, this.plane, this.inputBlock);
  }

  async forwardAsync(p: Views, x: Float32Array, batch: number): Promise<Float32Array> {
    if (!this.training) return this.forward(p, x, batch);
    const { channels, plane, inputBlock: block, exchange, mean, variance } = this;
    // Σ x per channel, and the samples' count, over every rank
    this.k.channelSums(x, null, exchange, batch, channels, plane, block);
    exchange[channels] = batch * plane;
    await this.statistics!.allreduceSum(exchange.subarray(0, channels + 1));
    const count = exchange[channels];
    for (let c = 0; c < channels; c++) mean[c] = exchange[c] / count;
    // Σ (x − mean)² per channel, over every rank
    this.k.channelSums(x, mean, exchange, batch, channels, plane, block);
    await this.statistics!.allreduceSum(exchange.subarray(0, channels));
    const buffers = this.buffered!;
    const runningMean = buffers[this.runningMean];
    const runningVar = buffers[this.runningVar];
    const inverseStd = this.inverseStd.f32;
    for (let c = 0; c < channels; c++) {
      variance[c] = exchange[c] / count;
      inverseStd[c] = 1 / Math.sqrt(variance[c] + EPSILON);
      runningMean[c] = (1 - MOMENTUM) * runningMean[c] + MOMENTUM * mean[c];
      runningVar[c] = (1 - MOMENTUM) * runningVar[c] + MOMENTUM * (count > 1 ? exchange[c] / (count - 1) : exchange[c]);
    }
    this.globalCount = count;
    // normalising by given statistics is the kernel's evaluation pass (it writes x̂ too)
    const out = this.output.f32;
    this.k.batchNormForward(x, p[this.weight], p[this.bias], out, this.normalised.f32, inverseStd, mean, variance,
      batch, channels, plane, block, false, MOMENTUM, EPSILON);
    return out;
  }

  async backwardAsync(p: Views, g: Views, _x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): Promise<void> {
    const { channels, plane, inputBlock: block, exchange } = this;
    const gradGamma = g[this.weight];
    const gradBeta = g[this.bias];
    // this rank's Σ dy·x̂ and Σ dy: its parameter gradients, and its share of the sums every rank needs
    this.k.batchNormBackward(gradOut, this.normalised.f32, this.inverseStd.f32, p[this.weight], gradGamma, gradBeta, null, batch, channels, plane, block);
    exchange.set(gradBeta, 0);
    exchange.set(gradGamma, channels);
    await this.statistics!.allreduceSum(exchange.subarray(0, 2 * channels));
    if (!gradX) return;
    this.k.batchNormInputGradient(gradOut, this.normalised.f32, this.inverseStd.f32, p[this.weight], exchange.subarray(0, channels), exchange.subarray(channels, 2 * channels),
      this.globalCount, gradX, batch, channels, plane, block);
  }

  init(p: Views): void {
    p[this.weight].fill(1);
    p[this.bias].fill(0);
  }
}
