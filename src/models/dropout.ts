// Dropout: while training, each value is kept with probability 1 − p and scaled by 1/(1 − p)
// (inverted dropout, as PyTorch), else zeroed; in evaluation it passes values through. The mask
// is drawn from a stream seeded by (run seed, rank, layer, step), so a run — and a resumed run —
// draws the same masks again.

import type { Layer, Views } from './layers.js';
import { Held } from '../tensor/arena.js';
import type { TensorSpec } from '../tensor/layout.js';
import { Random, mixSeed } from '../tensor/random.js';

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export class Dropout implements Layer {
  readonly params: TensorSpec[] = [];
  readonly output: Held;
  private readonly maskHeld: Held; // 0 or 1/(1 − p) per value of the last training pass
  readonly held: Held[];
  private training = false;
  private readonly random = new Random(0);

  constructor(readonly p: number, readonly outputShape: readonly number[], maxBatch: number, private readonly seed: number) {
    this.output = new Held(maxBatch * sizeOf(outputShape), 'kept');
    this.maskHeld = new Held(this.output.floats, 'kept');
    this.held = [this.output, this.maskHeld];
  }

  setMode(training: boolean, step: number): void {
    this.training = training;
    this.random.setState(mixSeed(this.seed, step));
  }

  forward(_p: Views, x: Float32Array, batch: number): Float32Array {
    const n = batch * sizeOf(this.outputShape);
    const out = this.output.f32;
    if (!this.training || this.p === 0) {
      out.set(x.subarray(0, n));
      return out;
    }
    const random = this.random;
    const mask = this.maskHeld.f32;
    const keep = 1 / (1 - this.p);
    for (let i = 0; i < n; i++) {
      mask[i] = random.next() < this.p ? 0 : keep;
      out[i] = x[i] * mask[i];
    }
    return out;
  }

  backward(_p: Views, _g: Views, _x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): void {
    if (!gradX) return;
    const n = batch * sizeOf(this.outputShape);
    if (!this.training || this.p === 0) gradX.set(gradOut.subarray(0, n));
    else {
      const mask = this.maskHeld.f32;
      for (let i = 0; i < n; i++) gradX[i] = gradOut[i] * mask[i];
    }
  }

  init(): void {}
}
