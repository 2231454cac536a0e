// bench/model-parallel: pipeline parallelism and sharded parameters (fsdp) against one worker
// and against data parallelism (all-reduce), on a
// deep MLP, the CNN and ResNet-20 (Fashion-MNIST, the first training images: enough for 15 steps of the deep MLP, 8 of the 16-layer one, 120 of the CNN, 60 of ResNet-20): samples/s per
// schedule and micro-batch count, the share of each stage's time not spent computing (the bubble,
// and its sends, receives and update) beside the formula (S − 1)/(m + S − 1), and each rank's memory against one
// worker's as the engine declares and checks it for --memory-limit (log record `memory`, every rank's): parameters,
// gradients and optimiser state, and activations (the arenas the rank's model or stage planned, and its messages).
// Configurations alternate within each repeat; medians.
//   npm run bench:model-parallel -- [--repeats 3] [--models deep-mlp,cnn] [--micro 8,16]

import { parseArgs } from 'node:util';
import type { Dataset, ImageDataset } from '../data/dataset.js';
import { loadAnyDataset } from '../data/load.js';
import { trainOnThreads } from '../launch/threads.js';
import { defaults, type TrainConfig } from '../train/config.js';
import type { Summary } from '../train/monitor.js';
import type { MemoryParts } from '../train/memory.js';
import { formatBytes } from '../models/checkpointing.js';
import { announceEnvironment, environment, median, writeJson } from './common.js';

const { values } = parseArgs({
  options: {
    repeats: { type: 'string', default: '3' },
    models: { type: 'string', default: 'deep-mlp,deep-mlp-16,cnn,resnet20' },
    micro: { type: 'string' },
    out: { type: 'string', default: 'bench/results/model-parallel.json' },
  },
});
const list = (s: string) => s.split(',').filter(Boolean);

// micro-batches of 128 rows and more: below that, each product's packing of the weights costs more than its arithmetic
// (tensor parallelism splits dense layers only: the CNN's convolutions would run whole on both ranks)
const workloads: Record<string, { config: Partial<TrainConfig>; batch: number; samples: number; micro: number[]; tensor: boolean }> = {
  'deep-mlp': { config: { model: 'mlp', hidden: [1024, 1024, 1024, 1024, 1024, 1024] }, batch: 2048, samples: 30720, micro: [8, 16], tensor: true },
  // deeper: with 16 layers a cut can balance the two stages (6 leave 7,712 against 9,246 units of work); a batch of 4,096
  // makes m = 8 micro-batches of 512 rows, where one core runs these products about as fast per sample as at 2,048
  // (at 256 rows, 19% slower: 1,086 against 1,334 samples/s, one worker on an Intel Xeon draw)
  'deep-mlp-16': { config: { model: 'mlp', hidden: Array.from({ length: 16 }, () => 1024) }, batch: 4096, samples: 32768, micro: [8], tensor: true },
  cnn: { config: { model: 'cnn' }, batch: 128, samples: 15360, micro: [4, 8], tensor: false },
  resnet20: { config: { model: 'resnet20' }, batch: 64, samples: 3840, micro: [4], tensor: false },
};

interface Configuration { label: string; config: Partial<TrainConfig> }
interface Figures { label: string; samplesPerSecond: number[]; idle: number[][]; summary?: Summary }

announceEnvironment();
const full = loadAnyDataset('fashion-mnist', { seed: 1 }) as ImageDataset;
const pixels = full.shape.reduce((a, b) => a * b, 1);
const firstImages = (samples: number): Dataset => ({ ...full, train: { images: full.train.images.subarray(0, samples * pixels), labels: full.train.labels.subarray(0, samples), count: samples } });
const results: Record<string, unknown>[] = [];

for (const name of list(values.models)) {
  const workload = workloads[name];
  if (!workload) throw new Error(`unknown model ${name}; known: ${Object.keys(workloads).join(', ')}`);
  const { batch, samples } = workload;
  const dataset = firstImages(samples);
  // --recompute none: every rank plans its activation arena for its training batch (a stage's for its micro-batch), so the memory columns are arenas, not upper bounds
  const base: TrainConfig = { ...defaults, ...workload.config, dataset: 'fashion-mnist', epochs: 1, batch, lr: 0.02, timeoutSeconds: 600, recompute: 'none' };
  const configurations: Configuration[] = [
    { label: 'one worker', config: { strategy: 'allreduce', workers: 1 } },
    { label: 'allreduce, 2 workers', config: { strategy: 'allreduce', workers: 2, batch: batch / 2 } },
    { label: 'fsdp, 2 workers', config: { strategy: 'fsdp', workers: 2, batch: batch / 2 } },
    ...(workload.tensor ? [{ label: 'tensor, T = 2', config: { strategy: 'tensor', workers: 1, tensorParallel: 2 } }] : []),
    ...(values.micro ? list(values.micro).map(Number) : workload.micro).flatMap((m) => (['gpipe', '1f1b'] as const).map((schedule) => ({
      label: `pipeline ${schedule}, m = ${m}`, config: { strategy: 'pipeline', workers: 1, stages: 2, microbatches: Number(m), pipelineSchedule: schedule },
    }))),
  ];
  const figures: Figures[] = configurations.map((c) => ({ label: c.label, samplesPerSecond: [], idle: [] }));
  for (let repeat = 0; repeat < Number(values.repeats); repeat++) {
    for (const [i, c] of configurations.entries()) {
      const { summary } = await trainOnThreads({ ...base, ...c.config }, { dataset });
      figures[i].samplesPerSecond.push(summary.samplesPerSecond);
      if (summary.pipeline) figures[i].idle.push(summary.pipeline.map((stage) => stage.idleSeconds / (stage.idleSeconds + stage.computeSeconds)));
      figures[i].summary = summary;
      const cut = summary.pipeline ? `, stages ${summary.pipeline.map((stage) => `${stage.layers[0]}–${stage.layers[1] - 1}`).join(' | ')}` : '';
      console.log(`${name} repeat ${repeat + 1}: ${c.label}: ${Math.round(summary.samplesPerSecond)} samples/s, ${(100 * summary.testAccuracy).toFixed(1)}%${cut}`);
    }
  }

  // memory per rank, as the engine declares it (each rank's): parameter-sized arrays (parameters, gradients, optimiser state) and activations
  const [oneWorker] = figures[0].summary!.memory!.ranks;
  const total = oneWorker.parameters / 4;
  const paramBytes = (rank: MemoryParts) => rank.parameters + rank.gradients + rank.optimizer;
  const one = median(figures[0].samplesPerSecond);
  console.log(`\n${name} (${total.toLocaleString('en-US')} parameters, batch ${batch}, ${samples} samples an epoch): medians of ${values.repeats}; one worker holds ${formatBytes(paramBytes(oneWorker))} parameter-sized and ${formatBytes(oneWorker.activations)} of activations`);
  console.log('| configuration | samples/s | ÷ one worker | stages not computing (measured) | bubble formula | parameters, gradients, optimiser state per rank ÷ one worker | activations per rank ÷ one worker |');
  console.log('|---|---|---|---|---|---|---|');
  const rows = figures.map((f) => {
    const speed = median(f.samplesPerSecond);
    const stages = f.summary?.pipeline;
    const ranks = f.summary!.memory!.ranks;
    const parameters = ranks.map((rank) => paramBytes(rank) / paramBytes(oneWorker));
    const activations = ranks.map((rank) => rank.activations / oneWorker.activations);
    let row: Record<string, unknown> = { configuration: f.label, samplesPerSecond: speed, ratio: speed / one, runs: f.samplesPerSecond, memory: ranks, parameters, activations };
    let bubble = '| | |';
    if (stages) {
      const m = Number(/m = (\d+)/.exec(f.label)![1]);
      const idle = stages.map((_, s) => median(f.idle.map((run) => run[s])));
      row = { ...row, idle, formulaBubble: (stages.length - 1) / (m + stages.length - 1), stages };
      bubble = `| ${idle.map((x) => `${(100 * x).toFixed(0)}%`).join(' / ')} | ${(100 * (row.formulaBubble as number)).toFixed(0)}% |`;
    }
    const each = (values: number[]) => values.map((x) => x.toFixed(2)).join(' / ');
    console.log(`| ${f.label} | ${Math.round(speed)} | ${(speed / one).toFixed(2)}× ${bubble} ${each(parameters)} | ${each(activations)} |`);
    return row;
  });
  results.push({ model: name, parameters: total, batch, samples, rows });
}
writeJson(values.out, { environment: environment(), repeats: Number(values.repeats), results });
