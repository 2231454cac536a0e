// Element-wise activations besides ReLU: tanh, the logistic sigmoid and GELU (the exact form,
// x·Φ(x), as PyTorch's default). Each keeps its input for the backward pass (they do not work in
// place) and writes its own output buffer.

import type { Layer, Views } from './layers.js';
import { Held } from '../tensor/arena.js';
import type { TensorSpec } from '../tensor/layout.js';

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** erf(x) to float32 accuracy: Numerical Recipes' Chebyshev fit of erfc (fractional error < 1.2e-7 everywhere). */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const r = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return x >= 0 ? 1 - r : r - 1;
}

type Activation = { forward(x: number): number; derivative(x: number): number };

const activations: Record<'tanh' | 'sigmoid' | 'gelu' | 'relu', Activation> = {
  // out of place (the Relu layer works in place): where a pass must read its input after it (a tensor-parallel row's all-reduce)
  relu: { forward: (x) => (x > 0 ? x : 0), derivative: (x) => (x > 0 ? 1 : 0) },
  tanh: { forward: Math.tanh, derivative: (x) => 1 - Math.tanh(x) ** 2 },
  sigmoid: {
    forward: (x) => 1 / (1 + Math.exp(-x)),
    derivative: (x) => {
      const s = 1 / (1 + Math.exp(-x));
      return s * (1 - s);
    },
  },
  // x·Φ(x), Φ the standard normal's distribution function; d/dx = Φ(x) + x·φ(x)
  gelu: {
    forward: (x) => 0.5 * x * (1 + erf(x / Math.SQRT2)),
    derivative: (x) => 0.5 * (1 + erf(x / Math.SQRT2)) + (x * Math.exp(-0.5 * x * x)) / Math.sqrt(2 * Math.PI),
  },
};

export type ActivationName = keyof typeof activations;

export class ElementWise implements Layer {
  readonly params: TensorSpec[] = [];
  readonly output: Held;
  readonly held: Held[];
  private readonly f: Activation;

  readonly outputBlock: number;

  // element by element: any layout
  constructor(readonly kind: ActivationName, readonly outputShape: readonly number[], maxBatch: number, readonly inputBlock = 1) {
    this.outputBlock = inputBlock;
    this.f = activations[kind];
    this.output = new Held(maxBatch * sizeOf(outputShape), 'kept');
    this.held = [this.output];
  }

  forward(_p: Views, x: Float32Array, batch: number): Float32Array {
    const n = batch * sizeOf(this.outputShape);
    const f = this.f.forward;
    const out = this.output.f32;
    for (let i = 0; i < n; i++) out[i] = f(x[i]);
    return out;
  }

  backward(_p: Views, _g: Views, x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): void {
    if (!gradX) return;
    const n = batch * sizeOf(this.outputShape);
    const d = this.f.derivative;
    for (let i = 0; i < n; i++) gradX[i] = gradOut[i] * d(x[i]);
  }

  init(): void {}
}
