// The workloads `converge bench` sweeps: a data set, a model, the training options that suit
// them, and the target that "time to accuracy" is measured against.

import { unknownName } from '../errors.js';

export interface Target {
  /** what the epoch records report */
  metric: 'testAccuracy' | 'testRmse';
  /** reached when the metric is ≥ (accuracy) or ≤ (RMSE) this */
  value: number;
}

export interface Workload {
  name: string;
  description: string;
  /** `converge train` options (dataset, model, optimiser, …) every configuration starts from */
  args: string[];
  target: Target;
}

export const workloads: Record<string, Workload> = {
  'fmnist-mlp': {
    name: 'fmnist-mlp',
    description: 'Fashion-MNIST, MLP 784-512-256-10, SGD momentum 0.9, lr 0.05, batch 64 per worker',
    args: ['--dataset', 'fashion-mnist', '--model', 'mlp'],
    target: { metric: 'testAccuracy', value: 0.84 },
  },
  'fmnist-cnn': {
    name: 'fmnist-cnn',
    description: 'Fashion-MNIST, CNN (conv32-pool-conv64-pool-128-10), SGD momentum 0.9, lr 0.05, batch 64 per worker',
    args: ['--dataset', 'fashion-mnist', '--model', 'cnn'],
    target: { metric: 'testAccuracy', value: 0.88 },
  },
  'sparse-logreg': {
    name: 'sparse-logreg',
    description: 'the generated RCV1-like set (200,000 × 100,000, ~40 non-zeros a row), L2 logistic regression, SGD lr 0.5, batch 32',
    args: ['--dataset', 'rcv1-like', '--model', 'logreg', '--optimizer', 'sgd', '--lr', '0.5', '--batch', '32'],
    target: { metric: 'testAccuracy', value: 0.72 },
  },
  mf: {
    name: 'mf',
    description: 'the generated Netflix-like ratings (20,000 users × 4,000 items), matrix factorisation rank 16, SGD lr 0.5, batch 32',
    args: ['--dataset', 'netflix-like', '--model', 'mf', '--optimizer', 'sgd', '--lr', '0.5', '--batch', '32'],
    target: { metric: 'testRmse', value: 0.65 },
  },
  // small and quick: for tests and demos
  'synthetic-mlp': {
    name: 'synthetic-mlp',
    description: 'the synthetic 8×8 images (2,048 train), MLP 64-32-16-10 — for tests and demos',
    args: ['--dataset', 'synthetic', '--model', 'mlp', '--hidden', '32,16', '--batch', '16'],
    target: { metric: 'testAccuracy', value: 0.9 },
  },
};

export function workload(name: string): Workload {
  const found = workloads[name];
  if (!found) throw unknownName('workload', name, Object.keys(workloads));
  return found;
}

export function reached(target: Target, value: number | undefined): boolean {
  if (value === undefined || Number.isNaN(value)) return false;
  return target.metric === 'testAccuracy' ? value >= target.value : value <= target.value;
}
