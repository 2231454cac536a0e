// Average pooling over size×size windows (stride = size), and global average pooling, which
// leaves one value per channel ([C, H, W] → [C]), as ResNet ends.

import { shapeMismatch } from '../errors.js';
import { blockedIndex } from '../kernels/types.js';
import type { Layer, Views } from './layers.js';
import { Held } from '../tensor/arena.js';
import type { TensorSpec } from '../tensor/layout.js';

export class AvgPool2d implements Layer {
  readonly params: TensorSpec[] = [];
  readonly outputShape: readonly number[];
  readonly output: Held;
  readonly held: Held[];
  private readonly channels: number;
  private readonly height: number;
  private readonly width: number;

  readonly inputBlock: number;
  // one value per channel (global), or plain windows
  readonly outputBlock = 1;

  /** size 0: the whole plane (global average pooling), of an image in any channel block; windows read plain images. */
  constructor(name: string, inputShape: readonly number[], private readonly size: number, maxBatch: number, inputBlock = 1) {
    if (inputShape.length !== 3) throw shapeMismatch(`pooling ${name}`, 'an input of shape [channels, height, width]', `[${inputShape}]`);
    this.inputBlock = size === 0 ? inputBlock : 1;
    [this.channels, this.height, this.width] = inputShape;
    if (size === 0) this.outputShape = [this.channels];
    else {
      if (size > this.height || size > this.width) throw shapeMismatch(`pooling ${name}`, `a plane of at least ${size}×${size}`, `${this.height}×${this.width}`);
      this.outputShape = [this.channels, Math.floor(this.height / size), Math.floor(this.width / size)];
    }
    this.output = new Held(maxBatch * this.outputShape.reduce((a, b) => a * b, 1), 'kept');
    this.held = [this.output];
  }

  /** Window height and width, and the output plane's. */
  private get geometry() {
    const kh = this.size || this.height;
    const kw = this.size || this.width;
    return { kh, kw, oh: Math.floor(this.height / kh), ow: Math.floor(this.width / kw) };
  }

  forward(_p: Views, x: Float32Array, batch: number): Float32Array {
    if (this.size === 0) return this.globalForward(x, batch);
    const { kh, kw, oh, ow } = this.geometry;
    const scale = 1 / (kh * kw);
    const plane = this.height * this.width;
    const out = this.output.f32;
    for (let nc = 0; nc < batch * this.channels; nc++) {
      const input = nc * plane;
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          let sum = 0;
          for (let a = 0; a < kh; a++) for (let b = 0; b < kw; b++) sum += x[input + (i * kh + a) * this.width + j * kw + b];
          out[(nc * oh + i) * ow + j] = sum * scale;
        }
      }
    }
    return out;
  }

  backward(_p: Views, _g: Views, _x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): void {
    if (!gradX) return;
    if (this.size === 0) return this.globalBackward(gradOut, gradX, batch);
    const { kh, kw, oh, ow } = this.geometry;
    const scale = 1 / (kh * kw);
    const plane = this.height * this.width;
    gradX.fill(0, 0, batch * this.channels * plane); // pixels no window covers get no gradient
    for (let nc = 0; nc < batch * this.channels; nc++) {
      const input = nc * plane;
      for (let i = 0; i < oh; i++) {
        for (let j = 0; j < ow; j++) {
          const g = gradOut[(nc * oh + i) * ow + j] * scale;
          for (let a = 0; a < kh; a++) for (let b = 0; b < kw; b++) gradX[input + (i * kh + a) * this.width + j * kw + b] = g;
        }
      }
    }
  }

  /** Sample n's values of channel c lie from blockedIndex(n, c, 0), `block` apart. */
  private globalForward(x: Float32Array, batch: number): Float32Array {
    const { channels, inputBlock: block } = this;
    const plane = this.height * this.width;
    const scale = 1 / plane;
    const out = this.output.f32;
    for (let n = 0; n < batch; n++) {
      for (let c = 0; c < channels; c++) {
        let sum = 0;
        for (let i = 0, j = blockedIndex(n, c, 0, channels, plane, block); i < plane; i++, j += block) sum += x[j];
        out[n * channels + c] = sum * scale;
      }
    }
    return out;
  }

  private globalBackward(gradOut: Float32Array, gradX: Float32Array, batch: number): void {
    const { channels, inputBlock: block } = this;
    const plane = this.height * this.width;
    const scale = 1 / plane;
    for (let n = 0; n < batch; n++) {
      for (let c = 0; c < channels; c++) {
        const g = gradOut[n * channels + c] * scale;
        for (let i = 0, j = blockedIndex(n, c, 0, channels, plane, block); i < plane; i++, j += block) gradX[j] = g;
      }
    }
  }

  init(): void {}
}
