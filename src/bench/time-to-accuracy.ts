// bench/time-to-accuracy: what a user waits for — the training seconds until the test accuracy
// first reaches a target — converge against PyTorch on one machine, in one run. Both evaluate on
// the whole test split every quarter epoch (evaluation time excluded from both) and stop at the
// target; 3 seeds each, medians and ratios. PyTorch runs in its best configuration, measured
// first in the same run (bench:train's: torch threads × OpenBLAS threads, fastest samples/s).
// converge runs 2 workers, at PyTorch's global batch of 64 (--global-batch 64) and at its
// default 2 × 64.
//   npm run bench:time-to-accuracy -- [--models mlp,cnn] [--seeds 1,2,3] [--eval-every 0.25] [--study-lr]

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { loadAnyDataset } from '../data/load.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { timeToTarget } from './to-target.js';
import { announceEnvironment, debianPython, environment, median, pytorchConfigurations, pytorchEnvironment, writeJson } from './common.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'mlp,cnn' },
    seeds: { type: 'string', default: '1,2,3' },
    'eval-every': { type: 'string', default: '0.25' },
    // also the learning-rate rules for the larger global batch of 2 × 64: linear scaling, with and without warm-up, and √P
    'study-lr': { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/results/time-to-accuracy.json' },
  },
});
const seeds = values.seeds!.split(',').map(Number);
const evalEvery = Number(values['eval-every']);
// the targets, and enough epochs to reach them
const workloads: Record<string, { target: number; epochs: number }> = { mlp: { target: 0.84, epochs: 5 }, cnn: { target: 0.89, epochs: 5 } };
announceEnvironment();
const python = debianPython('torch');
if (!python) console.log('note: no PyTorch (apt-get install python3-torch): converge alone');
const data = loadAnyDataset('fashion-mnist', { seed: 1 });

function pytorch(script: string, args: string[], env: NodeJS.ProcessEnv): Record<string, unknown> {
  const run = spawnSync(python!, [fileURLToPath(new URL(`../../bench/${script}`, import.meta.url)), ...args], { encoding: 'utf8', env });
  if (run.status !== 0) throw new Error(`PyTorch ${script} failed: ${run.stderr.trim().split('\n').pop()}`);
  return JSON.parse(run.stdout.trim().split('\n').pop()!);
}

const fmt = (seconds: number | null) => (seconds === null ? 'not reached' : `${seconds.toFixed(2)} s`);
const middle = (values: (number | null)[]) => (values.some((v) => v === null) ? null : median(values as number[]));
const results: Record<string, unknown>[] = [];
for (const model of values.models!.split(',')) {
  const { target, epochs } = workloads[model];
  const base: TrainConfig = { ...defaults, model, dataset: 'fashion-mnist', workers: 2, epochs, evalEvery, target };
  const configurations: { label: string; config: TrainConfig }[] = [
    { label: 'converge 2 workers, global batch 64', config: { ...base, globalBatch: 64 } },
    { label: 'converge 2 workers × 64', config: base },
    ...(values['study-lr'] ? [
      { label: 'converge 2 × 64, lr × 2 (linear)', config: { ...base, lrScaling: 'linear' as const } },
      { label: 'converge 2 × 64, lr × 2, warm-up ¼ epoch', config: { ...base, lrScaling: 'linear' as const, warmupEpochs: 0.25 } },
      { label: 'converge 2 × 64, lr × √2', config: { ...base, lr: base.lr * Math.SQRT2 } },
    ] : []),
  ];
  const seconds: Record<string, (number | null)[]> = {};
  const samples: Record<string, (number | null)[]> = {};
  let best: { threads: number; openblas: string; samplesPerSecond: number } | null = null;
  const probes: { threads: number; openblas: string; samplesPerSecond: number }[] = [];
  if (python) {
    // PyTorch's best configuration on this machine, by samples per second (median of three 3-second windows), measured now
    for (const c of pytorchConfigurations) {
      const out = pytorch('pytorch_train.py', ['--model', model, '--threads', String(c.threads), '--seconds', '3', '--windows', '3'], pytorchEnvironment(c));
      probes.push({ threads: c.threads, openblas: c.openblas, samplesPerSecond: out.samplesPerSecond as number });
      if (!best || probes[probes.length - 1].samplesPerSecond > best.samplesPerSecond) best = probes[probes.length - 1];
    }
    console.log(`${model}: PyTorch's best configuration here: ${best!.threads} torch thread(s), OpenBLAS ${best!.openblas || 'default'} (${Math.round(best!.samplesPerSecond).toLocaleString('en-US')} samples/s)`);
  }
  const pytorchLabel = 'PyTorch, its best configuration, batch 64';
  // seeds alternate between the systems, so drift in the machine's speed falls on all alike
  for (const seed of seeds) {
    const line: string[] = [];
    for (const { label, config } of configurations) {
      const r = await timeToTarget({ ...config, seed }, data);
      (seconds[label] ??= []).push(r.seconds);
      (samples[label] ??= []).push(r.samples);
      line.push(`${label} ${fmt(r.seconds)}`);
    }
    if (best) {
      const out = pytorch('pytorch_time_to_accuracy.py', ['--model', model, '--threads', String(best.threads), '--seed', String(seed), '--target', String(target), '--epochs', String(epochs), '--eval-every', String(evalEvery)], pytorchEnvironment(best));
      (seconds[pytorchLabel] ??= []).push(out.trainSecondsToTarget as number | null);
      (samples[pytorchLabel] ??= []).push(out.samplesToTarget as number | null);
      line.push(`PyTorch ${fmt(out.trainSecondsToTarget as number | null)}`);
    }
    console.log(`${model} seed ${seed}, to ${(100 * target).toFixed(0)}%: ${line.join(', ')}`);
  }
  const medians = Object.fromEntries(Object.entries(seconds).map(([label, v]) => [label, middle(v)]));
  const reference = medians[pytorchLabel] ?? null;
  console.log(`${model}, seconds of training to ${(100 * target).toFixed(0)}% test accuracy, medians of ${seeds.length} seeds:`);
  for (const [label, value] of Object.entries(medians)) {
    const ratio = value !== null && reference ? ` (${(value / reference).toFixed(2)}× PyTorch's)` : '';
    console.log(`  ${label.padEnd(40)} ${fmt(value)}${ratio}`);
  }
  results.push({ model, target, evalEvery, seeds, pytorchProbes: probes, pytorchBest: best, seconds, samples, medians });
}
writeJson(values.out!, { environment: environment(), results });
