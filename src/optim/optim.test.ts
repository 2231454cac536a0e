import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Optimizer, defaultOptimizer, type OptimizerConfig } from './optimizers.js';
import { learningRate, scaledLearningRate, type ScheduleConfig } from './schedules.js';

// Minimising f(p) = ½‖p − target‖² from 0: every optimiser must get close.
function converges(config: OptimizerConfig, lr: number, steps: number): number {
  const target = Float32Array.from([1, -2, 3]);
  const params = new Float32Array(3);
  const grad = new Float32Array(3);
  const optimizer = new Optimizer(config, 3);
  for (let s = 0; s < steps; s++) {
    for (let i = 0; i < 3; i++) grad[i] = params[i] - target[i];
    optimizer.step(params, grad, lr);
  }
  return Math.max(...params.map((p, i) => Math.abs(p - target[i])));
}

test('every optimiser minimises a quadratic', () => {
  for (const name of ['sgd', 'momentum', 'nesterov', 'adam'] as const) {
    const error = converges({ ...defaultOptimizer, name }, name === 'adam' ? 0.1 : 0.1, 300);
    assert.ok(error < 1e-2, `${name} ended ${error} away`);
  }
});

test('momentum and Adam follow PyTorch’s update rules step by step', () => {
  // hand-computed: p0 = 1, g = p (f = p²/2), lr 0.1, μ 0.9
  const p = Float32Array.from([1]);
  const g = new Float32Array(1);
  const momentum = new Optimizer({ ...defaultOptimizer, name: 'momentum' }, 1);
  g[0] = p[0]; momentum.step(p, g, 0.1); // v = 1, p = 0.9
  assert.ok(Math.abs(p[0] - 0.9) < 1e-7);
  g[0] = p[0]; momentum.step(p, g, 0.1); // v = 0.9 + 0.9 = 1.8, p = 0.72
  assert.ok(Math.abs(p[0] - 0.72) < 1e-6);
  const q = Float32Array.from([1]);
  const adam = new Optimizer({ ...defaultOptimizer, name: 'adam' }, 1);
  g[0] = 0.5; adam.step(q, g, 0.01); // first Adam step moves by lr·sign(g)
  assert.ok(Math.abs(q[0] - 0.99) < 1e-6, `${q[0]}`);
});

test('weight decay pulls parameters toward zero', () => {
  const p = Float32Array.from([2]);
  new Optimizer({ ...defaultOptimizer, name: 'sgd', weightDecay: 0.5 }, 1).step(p, new Float32Array(1), 0.1);
  assert.ok(Math.abs(p[0] - 1.9) < 1e-6);
});

test('unknown optimiser names are refused with the list of valid ones', () => {
  assert.throws(() => new Optimizer({ ...defaultOptimizer, name: 'lion' as never }, 1), /unknown optimizer 'lion'; choose one of: sgd, momentum, nesterov, adam/);
});

test('schedules: constant, step, cosine, linear warm-up, linear scaling rule', () => {
  const base: ScheduleConfig = { name: 'constant', baseLr: 0.1, epochs: 10, warmupEpochs: 0, stepEpochs: 3, gamma: 0.1 };
  assert.equal(learningRate(base, 7), 0.1);
  assert.ok(Math.abs(learningRate({ ...base, name: 'step' }, 3.5) - 0.01) < 1e-12);
  assert.ok(Math.abs(learningRate({ ...base, name: 'step' }, 6) - 0.001) < 1e-12);
  assert.equal(learningRate({ ...base, name: 'cosine' }, 0), 0.1);
  assert.ok(Math.abs(learningRate({ ...base, name: 'cosine' }, 5) - 0.05) < 1e-12);
  assert.ok(learningRate({ ...base, name: 'cosine' }, 10) < 1e-12);
  assert.ok(Math.abs(learningRate({ ...base, warmupEpochs: 2 }, 0.5) - 0.025) < 1e-12);
  assert.equal(learningRate({ ...base, warmupEpochs: 2 }, 2), 0.1);
  assert.equal(scaledLearningRate(0.05, 4, 'linear'), 0.2);
  assert.equal(scaledLearningRate(0.05, 4, 'none'), 0.05);
});

test('a step on a range [start, end) moves exactly that range, whichever ranges and arrays came before', () => {
  // what a sharded update does (allreduce's ZeRO-1 share): momentum written out per element
  const optimizer = new Optimizer({ ...defaultOptimizer, name: 'momentum', momentum: 0.5 }, 8);
  const velocity = new Float64Array(8);
  const arrays = [new Float32Array(8), new Float32Array(8)];
  const expected = [new Float64Array(8), new Float64Array(8)];
  const grad = Float32Array.from([1, 2, 3, 4, 5, 6, 7, 8]);
  // ranges that change in start, in end and in both, the whole array, and the same range on another array
  const plan: [number, number, number][] = [[0, 2, 3], [0, 2, 6], [0, 4, 6], [0, 3, 8], [0, 2, 5], [1, 2, 5], [0, 0, 8], [1, 0, 8], [0, 5, 8], [1, 5, 8], [0, 1, 5], [0, 0, 5]];
  for (const [which, start, end] of plan) {
    optimizer.step(arrays[which], grad, 0.1, start, end);
    for (let i = start; i < end; i++) {
      velocity[i] = 0.5 * velocity[i] + grad[i];
      expected[which][i] -= 0.1 * velocity[i];
    }
    for (const k of [0, 1]) for (let i = 0; i < 8; i++) assert.ok(Math.abs(arrays[k][i] - expected[k][i]) < 1e-6, `after [${start}, ${end}) on array ${which}: array ${k}[${i}] = ${arrays[k][i]}, expected ${expected[k][i]}`);
  }
});

test('each optimiser keeps only the state it uses (what a checkpoint saves)', () => {
  const stateOf = (name: OptimizerConfig['name']) => Object.keys(new Optimizer({ ...defaultOptimizer, name }, 4).state).sort();
  assert.deepEqual([stateOf('sgd'), stateOf('momentum'), stateOf('nesterov'), stateOf('adam')], [[], ['velocity'], ['velocity'], ['m', 'v']]);
  assert.deepEqual(stateOf(defaultOptimizer.name), ['velocity'], 'the default is SGD with momentum');
  // and counts it for --memory-limit: 4 bytes a float, per parameter of its range (7 here)
  const bytesOf = (name: OptimizerConfig['name']) => new Optimizer({ ...defaultOptimizer, name }, 7).stateBytes;
  assert.deepEqual([bytesOf('sgd'), bytesOf('momentum'), bytesOf('nesterov'), bytesOf('adam')], [0, 28, 28, 56]);
});

test('an unknown schedule is refused by name', () => {
  const config = { name: 'linear', baseLr: 1, epochs: 1, warmupEpochs: 0, stepEpochs: 1, gamma: 0.1 } as unknown as ScheduleConfig;
  assert.throws(() => learningRate(config, 0), /schedule.*linear.*constant, step, cosine/);
});
