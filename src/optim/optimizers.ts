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

  /** The bytes its state holds (velocity; Adam's two moments). */
  get stateBytes(): number {
    return Object.values(this.state).reduce((sum, values) => sum + 4 * values.length, 0);
  }

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

  /**
   * One update of params[start, end) from grad[start, end) (the whole buffer by default). A
   * sharded run updates only its share each step; the state outside that share is then stale
   * until gathered (see strategies/allreduce.ts).
   */
  step(params: Float32Array, grad: Float32Array, lr: number, start = 0, end = this.size): void {
    const c = this.config;
    this.steps++;
    const p = this.range(params, start, end, 0);
    const g = this.range(grad, start, end, 1);
    const n = end - start;
    switch (c.name) {
      case 'sgd':
        return this.sgd(p, g, n, lr, c.weightDecay);
      case 'momentum':
      case 'nesterov':
        return this.momentum(p, g, this.range(this.state.velocity, start, end, 2), n, lr, c.momentum, c.weightDecay, c.name === 'nesterov');
      case 'adam':
        return this.adam(p, g, this.range(this.state.m, start, end, 2), this.range(this.state.v, start, end, 3), n,
          lr / (1 - c.beta1 ** this.steps), Math.sqrt(1 - c.beta2 ** this.steps), c.beta1, c.beta2, c.epsilon, c.weightDecay);
    }
  }

  // views of the last range used, per argument position, so a step allocates nothing
  private readonly views: { array: Float32Array | null; start: number; end: number; view: Float32Array | null }[] =
    [0, 1, 2, 3].map(() => ({ array: null, start: 0, end: 0, view: null }));

  private range(array: Float32Array, start: number, end: number, position: number): Float32Array {
    if (start === 0 && end === array.length) return array;
    const cached = this.views[position];
    if (cached.array !== array || cached.start !== start || cached.end !== end) {
      cached.array = array;
      cached.start = start;
      cached.end = end;
      cached.view = array.subarray(start, end);
    }
    return cached.view as Float32Array;
  }
}
