// The update rules, end to end: a model whose gradient is a known constant per coordinate trains
// on 2 worker threads, and its final parameters are held to PyTorch's rules written out here in
// double precision — the learning-rate schedules (cosine, step, warm-up, linear scaling), weight
// decay, and SGD, momentum, Nesterov and Adam as torch.optim defines them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { trainOnThreads } from '../launch/threads.js';
import { defaults, type TrainConfig } from './config.js';

const slopes = [1, -2, 0.5, 3];
const dir = mkdtempSync(join(tmpdir(), 'converge-updates-'));
const modelPath = join(dir, 'constant-slope.mjs');
writeFileSync(modelPath, `import { lossAndGradModel } from ${JSON.stringify(new URL('../index.js', import.meta.url).href)};
const slopes = ${JSON.stringify(slopes)};
export default lossAndGradModel({
  name: 'constant-slope',
  parameters: () => [{ name: 'w', shape: [${slopes.length}] }],
  init: (params) => params.fill(1),
  lossAndGrad(params, batch, grad) {
    let loss = 0;
    for (let i = 0; i < slopes.length; i++) { grad[i] = slopes[i]; loss += slopes[i] * params[i]; }
    return loss;
  },
  predict: (params, batch, out) => out.fill(0),
});
`);

// synthetic data: 2,048 samples, 2 workers × 64: 16 steps an epoch
const STEPS = 16;
const base: TrainConfig = { ...defaults, dataset: 'synthetic', model: pathToFileURL(modelPath).href, workers: 2, batch: 64, epochs: 2, seed: 1, lr: 0.01, optimizer: 'sgd', lrScaling: 'none' };

/** The learning rate of step t (0-based over the run): the schedule at the end of the step, as written in the schedules' papers and torch.optim.lr_scheduler. */
function lrAt(config: TrainConfig, t: number): number {
  const progress = (t + 1) / STEPS; // epochs done at the end of step t
  const peak = config.lr * (config.lrScaling === 'linear' ? config.workers : 1);
  let lr = peak;
  if (config.schedule === 'step') lr = peak * config.gamma ** Math.floor(progress / config.stepEpochs);
  if (config.schedule === 'cosine') lr = (peak / 2) * (1 + Math.cos((Math.PI * progress) / config.epochs));
  if (progress < config.warmupEpochs) lr *= progress / config.warmupEpochs;
  return lr;
}

/** torch.optim's SGD (momentum, dampening 0, nesterov) and Adam, weight decay added to the gradient, in double. */
function expected(config: TrainConfig): number[] {
  return slopes.map((slope) => {
    let w = 1;
    let velocity = 0;
    let m = 0;
    let v = 0;
    for (let t = 0; t < config.epochs * STEPS; t++) {
      const lr = lrAt(config, t);
      const g = slope + config.weightDecay * w;
      if (config.optimizer === 'sgd') w -= lr * g;
      else if (config.optimizer === 'momentum' || config.optimizer === 'nesterov') {
        velocity = t === 0 ? g : config.momentum * velocity + g;
        w -= lr * (config.optimizer === 'nesterov' ? g + config.momentum * velocity : velocity);
      } else {
        const [beta1, beta2, epsilon] = [0.9, 0.999, 1e-8];
        m = beta1 * m + (1 - beta1) * g;
        v = beta2 * v + (1 - beta2) * g * g;
        const mHat = m / (1 - beta1 ** (t + 1));
        const vHat = v / (1 - beta2 ** (t + 1));
        w -= (lr * mHat) / (Math.sqrt(vHat) + epsilon);
      }
    }
    return w;
  });
}

async function check(what: string, changes: Partial<TrainConfig>): Promise<void> {
  const config = { ...base, ...changes };
  const { params } = await trainOnThreads(config);
  const want = expected(config);
  const moved = want.map((w) => Math.abs(w - 1));
  for (let i = 0; i < slopes.length; i++) {
    // float32 arithmetic over 32 steps against double: a part in 10⁵ of how far the parameter moved
    assert.ok(Math.abs(params[i] - want[i]) <= 1e-5 * (1 + moved[i]), `${what}: w[${i}] = ${params[i]}, expected ${want[i]}`);
  }
}

test('learning-rate schedules run end to end as their formulas say: constant, step, cosine, warm-up, linear scaling', async () => {
  await check('constant', {});
  await check('step', { schedule: 'step', stepEpochs: 0.5, gamma: 0.5 });
  await check('cosine', { schedule: 'cosine' });
  await check('cosine with warm-up and linear scaling', { schedule: 'cosine', warmupEpochs: 0.75, lrScaling: 'linear' });
});

test('weight decay and the optimisers follow torch.optim: SGD, momentum, Nesterov, Adam', async () => {
  await check('sgd + weight decay', { weightDecay: 0.5 });
  await check('momentum + weight decay', { optimizer: 'momentum', momentum: 0.9, weightDecay: 0.5 });
  await check('nesterov + weight decay', { optimizer: 'nesterov', momentum: 0.9, weightDecay: 0.5 });
  await check('adam + weight decay', { optimizer: 'adam', lr: 0.05, weightDecay: 0.5 });
  await check('adam + step schedule', { optimizer: 'adam', lr: 0.05, schedule: 'step', stepEpochs: 1, gamma: 0.1 });
});
