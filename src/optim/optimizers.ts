// Optimisers are one loop over the flat parameter buffer (a kernel, so the native path can run
// it too). The update rules follow PyTorch's torch.optim (weight decay added to the gradient as
// L2), so runs can be compared with it.

import { unknownName } from '../errors.js';
import { kernel } from '../kernels/registry.js';
import type { KernelSet } from '../kernels/types.js';

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
  private readonly sgd: KernelSet['sgdUpdate'];
  private readonly momentum: KernelSet['momentumUpdate'];
  private readonly adam: KernelSet['adamUpdate'];

  constructor(readonly config: OptimizerConfig, readonly size: number) {
    if (!optimizerNames.includes(config.name)) throw unknownName('optimizer', config.name, optimizerNames);
    if (config.name === 'momentum' || config.name === 'nesterov') this.state.velocity = new Float32Array(size);
    if (config.name === 'adam') {
      this.state.m = new Float32Array(size);
      this.state.v = new Float32Array(size);
    }
    this.sgd = kernel('sgdUpdate');
    this.momentum = kernel('momentumUpdate');
    this.adam = kernel('adamUpdate');
  }

  step(params: Float32Array, grad: Float32Array, lr: number): void {
    const c = this.config;
    const n = this.size;
    this.steps++;
    switch (c.name) {
      case 'sgd':
        return this.sgd(params, grad, n, lr, c.weightDecay);
      case 'momentum':
      case 'nesterov':
        return this.momentum(params, grad, this.state.velocity, n, lr, c.momentum, c.weightDecay, c.name === 'nesterov');
      case 'adam':
        return this.adam(params, grad, this.state.m, this.state.v, n, lr / (1 - c.beta1 ** this.steps),
          Math.sqrt(1 - c.beta2 ** this.steps), c.beta1, c.beta2, c.epsilon, c.weightDecay);
    }
  }
}
