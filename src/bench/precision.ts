// bench/precision: what storing parameters in bf16 or int8 (stochastic rounding on update) does
// to speed, to bytes on the wire and to accuracy, next to float32 — the MLP on Fashion-MNIST
// with all-reduce and with Hogwild!, and sparse logistic regression (RCV1-like) with Hogwild!.
// Each configuration runs --repeats times; samples/s is the median.
//   npm run bench:precision -- [--epochs 2] [--repeats 3]

import { parseArgs } from 'node:util';
import type { Dataset } from '../data/dataset.js';
import { loadAnyDataset } from '../data/load.js';
import { generateRcv1Like, rcv1LikeDefaults } from '../data/sparse.js';
import { trainOnThreads } from '../launch/threads.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { paramPrecisions } from '../tensor/precision.js';
import { announceEnvironment, environment, median, writeJson } from './common.js';

const { values } = parseArgs({
  options: {
    epochs: { type: 'string', default: '2' },
    repeats: { type: 'string', default: '3' },
    workers: { type: 'string', default: '2' },
    out: { type: 'string', default: 'bench/results/precision.json' },
  },
});
const epochs = Number(values.epochs);
const repeats = Number(values.repeats);
const workers = Number(values.workers);

let images: Dataset | undefined;
const fmnist = () => (images ??= loadAnyDataset('fashion-mnist', { seed: 1 }));
const cases: { name: string; dataset: () => Dataset; config: Partial<TrainConfig> }[] = [
  { name: 'fmnist-mlp allreduce', dataset: fmnist, config: { model: 'mlp', strategy: 'allreduce' } },
  { name: 'fmnist-mlp hogwild', dataset: fmnist, config: { model: 'mlp', strategy: 'hogwild', optimizer: 'sgd', lr: 0.1 } },
  { name: 'sparse-logreg hogwild', dataset: () => generateRcv1Like(rcv1LikeDefaults), config: { model: 'logreg', strategy: 'hogwild', lr: 0.5, batch: 32, optimizer: 'sgd' } },
];

interface Row { case: string; precision: string; samplesPerSecond: number; testAccuracy: number; testLoss: number; bytesPerStep: number }
const rows: Row[] = [];
announceEnvironment();
console.log(`${workers} workers, ${epochs} epochs, median samples/s of ${repeats} runs; accuracy and loss of the last run (seed 1)`);
for (const { name, dataset, config } of cases) {
  const data = dataset();
  console.log(`\n${name}`);
  console.log(`  ${'precision'.padEnd(10)} ${'samples/s'.padStart(11)} ${'speed'.padStart(7)} ${'bytes/step'.padStart(12)} ${'accuracy'.padStart(9)} ${'Δ'.padStart(7)} ${'test loss'.padStart(10)}`);
  let reference: Row | undefined;
  for (const precision of paramPrecisions) {
    const speeds: number[] = [];
    let summary;
    for (let repeat = 0; repeat < repeats; repeat++) {
      ({ summary } = await trainOnThreads({ ...defaults, ...config, dataset: data.name, workers, epochs, seed: 1, paramPrecision: precision }, { dataset: data }));
      speeds.push(summary.samplesPerSecond);
    }
    const row: Row = { case: name, precision, samplesPerSecond: median(speeds), testAccuracy: summary!.testAccuracy, testLoss: summary!.testLoss, bytesPerStep: summary!.bytesPerWorkerPerStep };
    rows.push(row);
    reference ??= row;
    console.log(`  ${precision.padEnd(10)} ${Math.round(row.samplesPerSecond).toLocaleString('en-US').padStart(11)} ${`${(row.samplesPerSecond / reference.samplesPerSecond).toFixed(2)}×`.padStart(7)} ${Math.round(row.bytesPerStep).toLocaleString('en-US').padStart(12)} ${`${(100 * row.testAccuracy).toFixed(2)}%`.padStart(9)} ${(100 * (row.testAccuracy - reference.testAccuracy)).toFixed(2).padStart(7)} ${row.testLoss.toFixed(4).padStart(10)}`);
  }
}
writeJson(values.out!, { environment: environment(), workers, epochs, repeats, rows });
