// Optimisers are one loop over the flat parameter buffer. The update rules follow PyTorch's
// torch.optim (weight decay added to the gradient as L2), so runs can be compared with it.

import { unknownName } from '../errors.js';

/** p −= lr·(g + wd·p) */
export function sgdStep(params: Float32Array, grad: Float32Array, lr: number, weightDecay: number): void {
  for (let i = 0; i < params.length; i++) params[i] -= lr * (grad[i] + weightDecay * params[i]);
}

/** v = μ·v + g′;  p −= lr·v  (Nesterov: p −= lr·(g′ + μ·v)), with g′ = g + wd·p */
export function momentumStep(params: Float32Array, grad: Float32Array, velocity: Float32Array, lr: number,
  momentum: number, weightDecay: number, nesterov: boolean): void {
  // the velocity starts at zero, so the first step sets it to g′, as PyTorch's buffer does
  for (let i = 0; i < params.length; i++) {
    const g = grad[i] + weightDecay * params[i];
    const v = (velocity[i] = momentum * velocity[i] + g);
    params[i] -= lr * (nesterov ? g + momentum * v : v);
  }
}

/** Adam (Kingma & Ba) with bias correction; t counts steps from 1. */
export function adamStep(params: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, t: number,
  lr: number, beta1: number, beta2: number, epsilon: number, weightDecay: number): void {
  const correction1 = 1 - beta1 ** t;
  const correction2 = 1 - beta2 ** t;
  const stepSize = lr / correction1;
  const sqrtCorrection2 = Math.sqrt(correction2);
  for (let i = 0; i < params.length; i++) {
    const g = grad[i] + weightDecay * params[i];
    const mi = (m[i] = beta1 * m[i] + (1 - beta1) * g);
    const vi = (v[i] = beta2 * v[i] + (1 - beta2) * g * g);
    params[i] -= (stepSize * mi) / (Math.sqrt(vi) / sqrtCorrection2 + epsilon);
  }
}

export const optimizerNames = ['sgd', 'momentum', 'nesterov', 'adam'] as const;
export type OptimizerName = (typeof optimizerNames)[number];

export interface OptimizerConfig {
  name: OptimizerName;
  momentum: number;
  weightDecay: number;
  beta1: number;
  beta2: number;
  epsilon: number;
}

export const defaultOptimizer: OptimizerConfig = { name: 'momentum', momentum: 0.9, weightDecay: 0, beta1: 0.9, beta2: 0.999, epsilon: 1e-8 };

/** An optimiser with its state: named flat buffers of the parameters' size, and a step count. */
export class Optimizer {
  readonly state: Record<string, Float32Array> = {};
  steps = 0;

  constructor(readonly config: OptimizerConfig, size: number) {
    if (!optimizerNames.includes(config.name)) throw unknownName('optimizer', config.name, optimizerNames);
    if (config.name === 'momentum' || config.name === 'nesterov') this.state.velocity = new Float32Array(size);
    if (config.name === 'adam') {
      this.state.m = new Float32Array(size);
      this.state.v = new Float32Array(size);
    }
  }

  step(params: Float32Array, grad: Float32Array, lr: number): void {
    const c = this.config;
    this.steps++;
    switch (c.name) {
      case 'sgd':
        return sgdStep(params, grad, lr, c.weightDecay);
      case 'momentum':
      case 'nesterov':
        return momentumStep(params, grad, this.state.velocity, lr, c.momentum, c.weightDecay, c.name === 'nesterov');
      case 'adam':
        return adamStep(params, grad, this.state.m, this.state.v, this.steps, lr, c.beta1, c.beta2, c.epsilon, c.weightDecay);
    }
  }
}
