// bench/compress: what each gradient compression hook costs and saves — bytes each worker puts
// on the wire per step (the encoded payloads, as logged) and the final test accuracy, next to
// the uncompressed run — for the MLP and the CNN on Fashion-MNIST and sparse logistic
// regression on the RCV1-like set, 2 workers, all-reduce.
//   npm run bench:compress -- [--workloads fmnist-mlp,fmnist-cnn,sparse-logreg] [--hooks …] [--epochs 2]

import { parseArgs } from 'node:util';
import type { Dataset } from '../data/dataset.js';
import { loadAnyDataset } from '../data/load.js';
import { generateRcv1Like, rcv1LikeDefaults } from '../data/sparse.js';
import { trainOnThreads } from '../launch/threads.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { announceEnvironment, environment, writeJson } from './common.js';

const { values } = parseArgs({
  options: {
    workloads: { type: 'string', default: 'fmnist-mlp,fmnist-cnn,sparse-logreg' },
    hooks: { type: 'string', default: 'plain,none,fp16,bf16,qsgd:8,qsgd:4,sign,randomk:0.01,topk:0.1,topk:0.01,topk:0.001,topk:0.001,nodgc' },
    epochs: { type: 'string', default: '2' },
    workers: { type: 'string', default: '2' },
    out: { type: 'string', default: 'bench/results/compress.json' },
  },
});
// 'topk:0.001,nodgc' holds a comma: split the list on commas that start a new hook
const hooks = values.hooks!.split(/,(?=[a-z])(?!nodgc|clip|warmup)/);
const epochs = Number(values.epochs);
const workers = Number(values.workers);

const workloads: Record<string, { dataset: () => Dataset; config: Partial<TrainConfig> }> = {
  'fmnist-mlp': { dataset: () => loadAnyDataset('fashion-mnist', { seed: 1 }), config: { model: 'mlp' } },
  'fmnist-cnn': { dataset: () => loadAnyDataset('fashion-mnist', { seed: 1 }), config: { model: 'cnn' } },
  'sparse-logreg': { dataset: () => generateRcv1Like(rcv1LikeDefaults), config: { model: 'logreg', optimizer: 'momentum', lr: 0.5, batch: 32 } },
};

interface Row { workload: string; hook: string; bytesPerStep: number; lastEpochBytesPerStep: number; testAccuracy: number; samplesPerSecond: number; failure?: string }
const rows: Row[] = [];
announceEnvironment();
console.log(`${workers} workers, all-reduce, ${epochs} epochs, the defaults otherwise (SGD momentum 0.9); 'plain' is no hook at all, 'none' the identity hook; DGC's density warm-up spans the first epoch`);
for (const name of values.workloads!.split(',')) {
  const workload = workloads[name];
  const dataset = workload.dataset();
  console.log(`\n${name}`);
  console.log(`  ${'hook'.padEnd(18)} ${'bytes/step'.padStart(12)} ${'last epoch'.padStart(12)} ${'reduction'.padStart(10)} ${'accuracy'.padStart(9)} ${'Δ'.padStart(7)} ${'samples/s'.padStart(10)}`);
  let reference: Row | undefined;
  for (const hook of hooks) {
    const bytes: { epoch: number; bytes: number; steps: number }[] = [];
    let summary;
    try {
      ({ summary } = await trainOnThreads({ ...defaults, ...workload.config, dataset: dataset.name, workers, epochs, seed: 1, compress: hook === 'plain' ? undefined : hook }, {
        dataset,
        onStart: (monitor) => monitor.listen((event) => {
          if (event.kind === 'epoch') bytes.push({ epoch: event.epoch, bytes: event.bytesSent, steps: event.samples / (workers * (workload.config.batch ?? defaults.batch)) });
        }),
      }));
    } catch (error) {
      // a hook may make training diverge at these settings: that is a result too
      const failure = (error as Error).message.replace(/^rank \d+ failed during [^:]+: /, '');
      rows.push({ workload: name, hook, bytesPerStep: NaN, lastEpochBytesPerStep: NaN, testAccuracy: NaN, samplesPerSecond: NaN, failure });
      console.log(`  ${hook.padEnd(18)} failed: ${failure}`);
      continue;
    }
    const last = bytes[bytes.length - 1];
    const previous = bytes.length > 1 ? bytes[bytes.length - 2].bytes : 0;
    const row: Row = { workload: name, hook, bytesPerStep: summary.bytesPerWorkerPerStep, lastEpochBytesPerStep: (last.bytes - previous) / last.steps, testAccuracy: summary.testAccuracy, samplesPerSecond: summary.samplesPerSecond };
    rows.push(row);
    reference ??= row;
    console.log(`  ${hook.padEnd(18)} ${Math.round(row.bytesPerStep).toLocaleString('en-US').padStart(12)} ${Math.round(row.lastEpochBytesPerStep).toLocaleString('en-US').padStart(12)} ${`${(reference.lastEpochBytesPerStep / row.lastEpochBytesPerStep).toFixed(1)}×`.padStart(10)} ${`${(100 * row.testAccuracy).toFixed(2)}%`.padStart(9)} ${(100 * (row.testAccuracy - reference.testAccuracy)).toFixed(2).padStart(7)} ${Math.round(row.samplesPerSecond).toLocaleString('en-US').padStart(10)}`);
  }
}
writeJson(values.out!, { environment: environment(), workers, epochs, rows });
