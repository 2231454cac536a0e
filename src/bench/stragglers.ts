// bench/stragglers: where asynchrony is supposed to pay. One worker made F times slower
// (--slow-rank 1:F, F = 1, 2, 4); the training seconds to a test accuracy of 84% (MLP, Fashion-MNIST,
// evaluated every quarter epoch) for synchronous all-reduce, the asynchronous parameter server at
// staleness 0, 2 and 8, and local SGD (k = 8); 2 workers, medians over seeds.
//   npm run bench:stragglers -- [--seeds 1,2,3] [--factors 1,2,4] [--target 0.84]

import { parseArgs } from 'node:util';
import { loadAnyDataset } from '../data/load.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { announceEnvironment, environment, median, writeJson } from './common.js';
import { timeToTarget } from './to-target.js';

const { values } = parseArgs({
  options: {
    seeds: { type: 'string', default: '1,2,3' },
    factors: { type: 'string', default: '1,2,4' },
    target: { type: 'string', default: '0.84' },
    out: { type: 'string', default: 'bench/results/stragglers.json' },
  },
});
const seeds = values.seeds!.split(',').map(Number);
const factors = values.factors!.split(',').map(Number);
const target = Number(values.target);
announceEnvironment();
const data = loadAnyDataset('fashion-mnist', { seed: 1 });
const base: TrainConfig = { ...defaults, model: 'mlp', dataset: 'fashion-mnist', workers: 2, epochs: 5, evalEvery: 0.25, target };
const strategies: { label: string; config: Partial<TrainConfig> }[] = [
  { label: 'allreduce', config: { strategy: 'allreduce' } },
  { label: 'async-ps, staleness 0', config: { strategy: 'async-ps', staleness: 0 } },
  { label: 'async-ps, staleness 2', config: { strategy: 'async-ps', staleness: 2 } },
  { label: 'async-ps, staleness 8', config: { strategy: 'async-ps', staleness: 8 } },
  { label: 'local-sgd, k = 8', config: { strategy: 'local-sgd', syncEvery: 8 } },
];
// async-ps evaluates only at epoch ends (its ranks do not meet inside an epoch): its times are coarser
const results: { strategy: string; factor: number; seconds: (number | null)[]; samples: (number | null)[] }[] = [];
for (const factor of factors) {
  for (const { label, config } of strategies) {
    const run: (typeof results)[number] = { strategy: label, factor, seconds: [], samples: [] };
    for (const seed of seeds) {
      const evalEvery = config.strategy === 'async-ps' ? 1 : base.evalEvery;
      const r = await timeToTarget({ ...base, ...config, evalEvery, seed, ...(factor > 1 ? { slowRank: `1:${factor}` } : {}) }, data);
      run.seconds.push(r.seconds);
      run.samples.push(r.samples);
    }
    results.push(run);
    const done = run.seconds.filter((s): s is number => s !== null);
    console.log(`worker 1 ×${factor} slower, ${label.padEnd(22)} ${done.length === seeds.length ? `${median(done).toFixed(2)} s` : 'not reached by every seed'}  (${run.seconds.map((s) => (s === null ? '–' : s.toFixed(2))).join(' / ')})`);
  }
}
writeJson(values.out!, { environment: environment(), target, seeds, results });
