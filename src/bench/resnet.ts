// bench/resnet: ResNet-20 on Fashion-MNIST, converge against PyTorch in the same run. Speed:
// `--steps` steps of batch 64 per worker (converge on 2 worker threads, with and without --sync-bn;
// PyTorch with 2 threads, NCHW and channels_last, the better of the two its best), alternating,
// median of --repeats. Accuracy: with --epochs,
// one full run of each, test accuracy per epoch.
//   npm run bench:resnet -- [--steps 60] [--repeats 3] [--epochs 0]

import { spawnSync } from 'node:child_process';
import { parseArgs } from 'node:util';
import { loadAnyDataset } from '../data/load.js';
import { trainOnThreads } from '../launch/threads.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { announceEnvironment, debianPython, environment, median, writeJson } from './common.js';

const { values } = parseArgs({
  options: {
    steps: { type: 'string', default: '60' },
    repeats: { type: 'string', default: '3' },
    epochs: { type: 'string', default: '0' },
    threads: { type: 'string', default: '2' },
    out: { type: 'string', default: 'bench/results/resnet.json' },
  },
});
const steps = Number(values.steps);
const repeats = Number(values.repeats);
const epochs = Number(values.epochs);
const threads = Number(values.threads);
announceEnvironment();
const python = debianPython('torch');
if (!python) console.log('note: no PyTorch (apt-get install python3-torch): converge alone');
const data = loadAnyDataset('fashion-mnist', { seed: 1 });
// the recipe of the issue's PyTorch figures: batch 64, SGD momentum 0.9, lr 0.05, weight decay 1e-4
const recipe: TrainConfig = { ...defaults, model: 'resnet20', dataset: 'fashion-mnist', workers: threads, batch: 64, lr: 0.05, optimizer: 'momentum', momentum: 0.9, weightDecay: 1e-4 };

function pytorch(args: string[]): { epoch?: number; imagesPerSecond?: number; testAccuracy?: number }[] {
  const run = spawnSync(python!, [new URL('../../bench/pytorch_resnet.py', import.meta.url).pathname, '--threads', String(threads), ...args], { encoding: 'utf8', env: { ...process.env, OPENBLAS_NUM_THREADS: String(threads) } });
  if (run.status !== 0) throw new Error(`PyTorch failed: ${run.stderr}`);
  return run.stdout.trim().split('\n').map((line) => JSON.parse(line));
}

/** converge's rate over a first epoch cut short after `steps` steps: between the first and the last step report (start-up, thread spawning and the first report's steps excluded, as PyTorch's count starts at its loop). */
async function converge(config: TrainConfig): Promise<number> {
  const reports: { samples: number; time: number }[] = [];
  await trainOnThreads({ ...config, epochs: 1, stopAfterSteps: steps }, {
    dataset: data,
    onStart: (monitor) => monitor.listen((event, time) => { if (event.kind === 'step') reports.push({ samples: event.samples, time }); }),
  });
  const [first, last] = [reports[0], reports[reports.length - 1]];
  return (last.samples - first.samples) / (last.time - first.time);
}

// PyTorch's best configuration is whichever memory format runs faster here: NCHW, or channels_last
// (oneDNN's preferred layout, which spares it reordering activations around every convolution)
const rates: Record<string, number[]> = { converge: [], 'converge --sync-bn': [], 'PyTorch NCHW': [], 'PyTorch channels_last': [] };
for (let r = 0; r < repeats; r++) {
  rates.converge.push(await converge(recipe));
  rates['converge --sync-bn'].push(await converge({ ...recipe, syncBn: true }));
  if (python) {
    rates['PyTorch NCHW'].push(pytorch(['--steps', String(steps), '--epochs', '1'])[0].imagesPerSecond!);
    rates['PyTorch channels_last'].push(pytorch(['--steps', String(steps), '--epochs', '1', '--channels-last'])[0].imagesPerSecond!);
  }
  console.log(`repeat ${r + 1}: ${Object.entries(rates).filter(([, v]) => v.length > r).map(([name, v]) => `${name} ${v[r].toFixed(0)}`).join(', ')} images/s`);
}
const medians = Object.fromEntries(Object.entries(rates).filter(([, v]) => v.length > 0).map(([name, v]) => [name, median(v)]));
const pytorchBest = python ? Math.max(medians['PyTorch NCHW'], medians['PyTorch channels_last']) : null;
const result: Record<string, unknown> = {
  environment: environment(), threads, steps, repeats, rates, medians,
  convergeImagesPerSecond: medians.converge, syncBnImagesPerSecond: medians['converge --sync-bn'], pytorchImagesPerSecond: pytorchBest,
};
console.log(`ResNet-20, ${threads} workers/threads × batch 64, medians of ${repeats} (images/s): ${Object.entries(medians).map(([name, v]) => `${name} ${v.toFixed(0)}`).join(', ')}`);
if (pytorchBest) console.log(`converge ÷ PyTorch's best: ${(medians.converge / pytorchBest).toFixed(2)}×; with --sync-bn ${(medians['converge --sync-bn'] / pytorchBest).toFixed(2)}×`);
if (epochs > 0) {
  const accuracy: number[] = [];
  await trainOnThreads({ ...recipe, epochs }, { dataset: data, onStart: (monitor) => monitor.listen((event) => { if (event.kind === 'epoch') accuracy.push(event.testAccuracy); }) });
  result.convergeAccuracy = accuracy;
  if (python) result.pytorchAccuracy = pytorch(['--epochs', String(epochs)]).filter((e) => e.epoch).map((e) => e.testAccuracy);
  console.log(`test accuracy by epoch: converge ${accuracy.map((a) => `${(100 * a).toFixed(2)}%`).join(', ')}${python ? `; PyTorch ${(result.pytorchAccuracy as number[]).map((a) => `${(100 * a).toFixed(2)}%`).join(', ')}` : ''}`);
}
writeJson(values.out!, result);
