// bench/train: training samples/s per model for 1 and 2 workers on the reference and native
// kernels, each the median of --repeats runs, measured side by side in one run; with
// --compare-pytorch, the same models in PyTorch (Debian's python3-torch) in the same run.
//   npm run bench:train -- [--models mlp,cnn] [--workers 1,2] [--kernels reference,native] [--repeats 3] [--compare-pytorch]

import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { fileURLToPath } from 'node:url';
import { trainOnThreads } from '../launch/threads.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { announceEnvironment, debianPython, environment, median, pytorchConfigurations, pytorchEnvironment, writeJson } from './common.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'softmax,mlp,cnn' },
    workers: { type: 'string', default: '1,2' },
    kernels: { type: 'string', default: 'reference,native' },
    strategy: { type: 'string', default: 'allreduce' },
    repeats: { type: 'string', default: '3' },
    seconds: { type: 'string', default: '3', help: 'target length of each native run' },
    'compare-pytorch': { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/results/train.json' },
  },
});
const list = (s: string) => s.split(',').filter(Boolean);
const repeats = Number(values.repeats);

// rough single-worker speeds, only to size the runs (steps) so each lasts about --seconds
const guess: Record<string, Record<string, number>> = {
  reference: { softmax: 50000, mlp: 1100, cnn: 60 },
  native: { softmax: 300000, mlp: 50000, cnn: 3000 },
};

/**
 * Samples/s of one run. A run shorter than an epoch is timed from its step reports, leaving
 * out the first fifth (start-up, JIT); a fast configuration runs whole epochs instead and is
 * timed by its training seconds per epoch (evaluation excluded), leaving out the first epoch.
 */
async function measure(config: TrainConfig, kernels: string, seconds: number): Promise<number> {
  process.env.CONVERGE_KERNELS = kernels;
  const steps: { time: number; samples: number }[] = [];
  const epochs: number[] = [];
  const stepsPerEpoch = Math.floor(60000 / (config.workers * config.batch));
  const expected = guess[kernels][config.model] * config.workers;
  const epochSeconds = (stepsPerEpoch * config.workers * config.batch) / expected;
  const wholeEpochs = epochSeconds < seconds / 2;
  const run = wholeEpochs
    ? { ...config, epochs: 1 + Math.max(2, Math.ceil(seconds / epochSeconds)) }
    // stay inside the first epoch: no evaluation pass in the timed window
    : { ...config, epochs: 1, stopAfterSteps: Math.max(12, Math.min(stepsPerEpoch - 1, Math.round((expected * seconds) / (config.workers * config.batch)))) };
  await trainOnThreads(run, {
    onStart: (monitor) => monitor.listen((event, time) => {
      if (event.kind === 'step') steps.push({ time, samples: event.samples });
      else if (event.kind === 'epoch') epochs.push(event.samples / event.trainSeconds);
    }),
  });
  if (wholeEpochs) return median(epochs.slice(1));
  const first = steps[Math.floor(steps.length / 5)];
  const last = steps[steps.length - 1];
  return (last.samples - first.samples) / (last.time - first.time);
}

interface Row { model: string; workers: number; kernels: string; samplesPerSecond: number; runs: number[] }
const rows: Row[] = [];
announceEnvironment();
console.log(`strategy ${values.strategy}, batch ${defaults.batch} per worker, SGD momentum; median of ${repeats} runs each`);
for (const model of list(values.models!)) {
  for (const kernels of list(values.kernels!)) {
    for (const workers of list(values.workers!).map(Number)) {
      const seconds = kernels === 'reference' ? 4 : Number(values.seconds);
      const runs: number[] = [];
      for (let r = 0; r < repeats; r++) {
        runs.push(await measure({ ...defaults, model, workers, strategy: values.strategy!, seed: 1 + r }, kernels, seconds));
      }
      const row = { model, workers, kernels, samplesPerSecond: median(runs), runs };
      rows.push(row);
      console.log(`${model.padEnd(8)} ${kernels.padEnd(10)} ${workers} worker${workers > 1 ? 's' : ' '}  ${Math.round(row.samplesPerSecond).toLocaleString('en-US').padStart(9)} samples/s   (runs: ${runs.map((v) => Math.round(v)).join(', ')})`);
    }
  }
}

interface TorchRow { model: string; configuration: string; threads: number; openblasThreads: string; samplesPerSecond: number }
const torchRows: TorchRow[] = [];
if (values['compare-pytorch']) {
  const python = debianPython('torch');
  if (!python) console.log('--compare-pytorch: python3-torch is not installed (apt-get install python3-torch); skipped');
  else {
    const script = fileURLToPath(new URL('../../bench/pytorch_train.py', import.meta.url));
    console.log('\nPyTorch (Debian python3-torch, matrix products in OpenBLAS), same models, batch, optimiser and data:');
    for (const model of list(values.models!)) {
      for (const c of pytorchConfigurations) {
        const result = spawnSync(python, [script, '--model', model, '--threads', String(c.threads), '--windows', String(repeats)], { env: pytorchEnvironment(c), encoding: 'utf8' });
        if (result.status !== 0) {
          console.log(`pytorch ${model} failed: ${result.stderr.trim().split('\n').pop()}`);
          continue;
        }
        const out = JSON.parse(result.stdout.trim().split('\n').pop()!) as { samplesPerSecond: number; openblasThreads: string };
        torchRows.push({ model, configuration: c.configuration, threads: c.threads, openblasThreads: out.openblasThreads, samplesPerSecond: out.samplesPerSecond });
        console.log(`${model.padEnd(8)} torch threads ${c.threads}, OpenBLAS threads ${out.openblasThreads.padEnd(7)} ${Math.round(out.samplesPerSecond).toLocaleString('en-US').padStart(9)} samples/s`);
      }
    }
    console.log('\nratios (converge native ÷ PyTorch):');
    for (const model of list(values.models!)) {
      const one = rows.find((r) => r.model === model && r.kernels === 'native' && r.workers === 1);
      const two = rows.find((r) => r.model === model && r.kernels === 'native' && r.workers === 2);
      const perCore = torchRows.find((t) => t.model === model && t.configuration === 'per-core');
      const best = Math.max(...torchRows.filter((t) => t.model === model).map((t) => t.samplesPerSecond));
      if (one && perCore) console.log(`${model.padEnd(8)} 1 worker vs PyTorch 1 thread (OpenBLAS 1 thread): ${(one.samplesPerSecond / perCore.samplesPerSecond).toFixed(2)}×`);
      if (two && Number.isFinite(best)) console.log(`${model.padEnd(8)} 2 workers vs PyTorch's best configuration:         ${(two.samplesPerSecond / best).toFixed(2)}×`);
      if (one && two) console.log(`${model.padEnd(8)} 2 workers vs 1 worker (converge):                  ${(two.samplesPerSecond / one.samplesPerSecond).toFixed(2)}×`);
    }
  }
}
writeJson(values.out!, { environment: environment(), strategy: values.strategy, batch: defaults.batch, repeats, rows, pytorch: torchRows });
