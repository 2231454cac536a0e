// What the driven strategy tests (in-process.test, pipeline-regression.test) hold each step to:
// SGD with momentum and weight decay as PyTorch writes it, and an element-wise comparison that
// names the first element out of tolerance.
import assert from 'node:assert/strict';
import { defaultOptimizer, type OptimizerConfig } from '../optim/optimizers.js';

export const momentum: OptimizerConfig = { ...defaultOptimizer, name: 'momentum', momentum: 0.9, weightDecay: 0.01 };

/** SGD with momentum and weight decay as PyTorch writes it: v ← μ·v + g + λ·p; p ← p − lr·v (plain SGD without μ). */
export function sgdStep(params: Float32Array, grad: Float32Array, velocity: Float32Array, lr: number, config: OptimizerConfig): void {
  const mu = config.name === 'momentum' ? config.momentum : 0;
  for (let i = 0; i < params.length; i++) {
    const g = grad[i] + config.weightDecay * params[i];
    velocity[i] = mu * velocity[i] + g;
    params[i] -= lr * (mu ? velocity[i] : g);
  }
}

export function assertClose(actual: ArrayLike<number>, expected: ArrayLike<number>, tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, what);
  for (let i = 0; i < expected.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= tolerance)) assert.fail(`${what}: element ${i} is ${actual[i]}, expected ${expected[i]}`);
  }
}
