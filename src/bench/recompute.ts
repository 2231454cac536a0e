// bench/recompute: step time against activation memory for each recompute schedule, on ResNet-20
// (Fashion-MNIST images, batch 128) and a deep MLP (32 dense layers of 1024, batch 256). For each
// schedule: the arena's size (the bytes a step really holds: also checked against what building
// the model allocated), a training step's time (median over repeats, the schedules alternating
// within each), for auto the time its dynamic program predicted from the profile it measured at
// start-up, and for every schedule the time the same cost model gives on a profile measured just
// before its step is timed (this machine's speed drifts by several per cent within a minute, so a
// start-up prediction compared with a step timed minutes later measures the drift as much as the model).
//   npm run bench:recompute -- [--repeats 3] [--models resnet20,deep-mlp] [--seconds 2]

import { parseArgs } from 'node:util';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import type { ImageDataset } from '../data/dataset.js';
import { loadAnyDataset } from '../data/load.js';
import { BatchMaker, epochOrder } from '../data/batches.js';
import { selectKernels } from '../kernels/select.js';
import { formatBytes, recomputeName, type RecomputeSpec } from '../models/checkpointing.js';
import { createModel } from '../models/index.js';
import type { Batch } from '../models/model.js';
import { Sequential } from '../models/sequential.js';
import { Random } from '../tensor/random.js';
import { announceEnvironment, environment, median, writeJson } from './common.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const { values } = parseArgs({
  options: {
    repeats: { type: 'string', default: '3' },
    models: { type: 'string', default: 'resnet20,deep-mlp' },
    seconds: { type: 'string', default: '2' },
    out: { type: 'string', default: 'bench/results/recompute.json' },
  },
});
const list = (s: string) => s.split(',').filter(Boolean);

const workloads: Record<string, { model: string; hidden?: number[]; batch: number; fixed: RecomputeSpec[] }> = {
  resnet20: { model: 'resnet20', batch: 128, fixed: [{ kind: 'none' }, { kind: 'sqrt' }, { kind: 'revolve', snapshots: 2 }, { kind: 'revolve', snapshots: 4 }] },
  'deep-mlp': { model: 'mlp', hidden: Array.from({ length: 31 }, () => 1024), batch: 256, fixed: [{ kind: 'none' }, { kind: 'sqrt' }, { kind: 'revolve', snapshots: 2 }, { kind: 'revolve', snapshots: 4 }, { kind: 'revolve', snapshots: 8 }] },
};
// auto's budgets: these fractions of the way from the least any schedule needs to storing everything
const FRACTIONS = [0.05, 0.15, 0.3, 0.5, 0.75];

announceEnvironment();
selectKernels();
const data = loadAnyDataset('fashion-mnist', { seed: 1 }) as ImageDataset;
const settle = async () => {
  gc();
  await new Promise((resolve) => setTimeout(resolve, 100));
  gc();
};

interface Row {
  model: string;
  schedule: string;
  budget: number | null;
  arenaBytes: number;
  allocatedBytes: number;
  recomputed: number;
  stepMs: number[];
  predictedMs: number | null;
  /** Per repeat: the schedule priced on a profile measured just before its steps were timed. */
  pricedMs: number[];
}
const rows: Row[] = [];
// the median over repeats of step time ÷ the time priced just before it (each repeat its own ratio)
const pricedRatio = (row: Row) => median(row.stepMs.map((ms, k) => ms / row.pricedMs[k]));

for (const name of list(values.models)) {
  const workload = workloads[name];
  if (!workload) throw new Error(`unknown model ${name}; known: ${Object.keys(workloads).join(', ')}`);
  const { batch } = workload;
  const options = { inputShape: data.shape, classes: data.classes, maxBatch: batch, hidden: workload.hidden, seed: 1 };
  const build = (recompute: RecomputeSpec, memoryBudget?: number) => createModel(workload.model, { ...options, recompute, memoryBudget }) as Sequential;
  // the range auto is asked to fit: from the least the planner finds to storing all
  const all = build({ kind: 'none' }).activations.storeAllBytes;
  const least = build({ kind: 'auto' }, all - 1).activations.leastBytes!;
  // and at exactly sqrt's memory, to hold the two side by side
  const sqrtBytes = build({ kind: 'sqrt' }).activations.bytes;
  // measures the chain's units again before each timing (profile() rebinds its buffers: a model of its own)
  const probe = build({ kind: 'none' });
  const configurations: { spec: RecomputeSpec; budget?: number }[] = [
    ...workload.fixed.map((spec) => ({ spec })),
    ...[...FRACTIONS.map((f) => Math.floor(least + f * (all - least))), sqrtBytes].sort((a, b) => a - b).map((budget) => ({ spec: { kind: 'auto' } as RecomputeSpec, budget })),
  ];
  const runs = [];
  for (const { spec, budget } of configurations) {
    await settle();
    const before = process.memoryUsage().arrayBuffers;
    const model = build(spec, budget);
    await settle();
    const allocatedBytes = process.memoryUsage().arrayBuffers - before;
    const params = model.layout.allocate();
    model.init(params, new Random(1));
    const grad = model.layout.allocate();
    const made = new BatchMaker(data.train, data.shape, batch).fromOrder(epochOrder(new Uint32Array(data.train.count), 1, 0), 0, batch);
    const batchData: Batch = { ...made, x: made.x.slice(), y: made.y.slice() };
    const row: Row = { model: name, schedule: recomputeName(spec), budget: budget ?? null, arenaBytes: model.activations.bytes, allocatedBytes, recomputed: model.activations.recomputed, stepMs: [], pricedMs: [], predictedMs: model.activations.predictedSeconds === undefined ? null : 1e3 * model.activations.predictedSeconds };
    rows.push(row);
    runs.push({ model, params, grad, batch: batchData, row });
  }
  for (let repeat = 0; repeat < Number(values.repeats); repeat++) {
    for (const { model, params, grad, batch: b, row } of runs) {
      row.pricedMs.push(1e3 * model.predictSeconds(probe.profile().costs));
      for (let warm = 0; warm < 2; warm++) model.lossAndGrad(params, { ...b, x: b.x.slice() }, grad);
      let steps = 0;
      const start = performance.now();
      while (performance.now() - start < 1e3 * Number(values.seconds)) {
        model.lossAndGrad(params, b, grad);
        steps++;
      }
      row.stepMs.push((performance.now() - start) / steps);
    }
  }
  const storeAll = rows.find((r) => r.model === name && r.schedule === 'none')!;
  const base = median(storeAll.stepMs);
  console.log(`\n${name}, batch ${batch}: store all ${formatBytes(all)}, the least the planner finds ${formatBytes(least)}`);
  console.log(`${'schedule'.padEnd(12)} ${'budget'.padStart(10)} ${'arena'.padStart(10)} ${'× memory'.padStart(9)} ${'step ms'.padStart(9)} ${'× time'.padStart(7)} ${'predicted'.padStart(15)} ${'÷ priced'.padStart(9)} recomputed`);
  for (const row of rows.filter((r) => r.model === name)) {
    const ms = median(row.stepMs);
    const predicted = row.predictedMs === null ? '' : `${row.predictedMs.toFixed(1)} (${(ms / row.predictedMs).toFixed(2)}×)`;
    console.log(`${row.schedule.padEnd(12)} ${(row.budget === null ? '' : formatBytes(row.budget)).padStart(10)} ${formatBytes(row.arenaBytes).padStart(10)} ${(row.arenaBytes / storeAll.arenaBytes).toFixed(2).padStart(9)} ${ms.toFixed(1).padStart(9)} ${(ms / base).toFixed(2).padStart(7)} ${predicted.padStart(15)} ${pricedRatio(row).toFixed(2).padStart(9)} ${row.recomputed}`);
  }
  // the claims: within sqrt's memory auto is no slower than sqrt; auto's time is what it predicted; where memory halves, what it costs
  const sqrt = rows.find((r) => r.model === name && r.schedule === 'sqrt')!;
  const matched = rows.find((r) => r.model === name && r.schedule === 'auto' && r.budget === sqrt.arenaBytes)!;
  console.log(`auto within sqrt's ${formatBytes(sqrt.arenaBytes)} holds ${formatBytes(matched.arenaBytes)} at ${(median(matched.stepMs) / median(sqrt.stepMs)).toFixed(2)}× sqrt's step time`);
  const off = rows.filter((r) => r.model === name && r.predictedMs !== null).map((r) => median(r.stepMs) / r.predictedMs!);
  console.log(`auto's measured step time ÷ its start-up prediction: ${Math.min(...off).toFixed(2)}–${Math.max(...off).toFixed(2)}`);
  const priced = rows.filter((r) => r.model === name).map(pricedRatio);
  const pricedAuto = rows.filter((r) => r.model === name && r.schedule === 'auto').map(pricedRatio);
  console.log(`measured ÷ priced on a profile taken just before: auto ${Math.min(...pricedAuto).toFixed(2)}–${Math.max(...pricedAuto).toFixed(2)}, every schedule ${Math.min(...priced).toFixed(2)}–${Math.max(...priced).toFixed(2)}`);
  const half = rows.filter((r) => r.model === name && r.arenaBytes <= storeAll.arenaBytes / 2).sort((a, b) => median(a.stepMs) - median(b.stepMs))[0];
  if (half) console.log(`at half the memory or less (${half.schedule}, ${formatBytes(half.arenaBytes)}): ${(median(half.stepMs) / base).toFixed(2)}× the time of storing all`);
}

writeJson(values.out, { environment: environment(), repeats: Number(values.repeats), secondsPerMeasurement: Number(values.seconds), rows: rows.map((r) => ({ ...r, medianStepMs: median(r.stepMs), measuredOverPriced: pricedRatio(r) })) });
console.log(`\nwritten to ${values.out}`);
