// bench/relaxed: the relaxed strategies against the synchronous one on the workloads Hogwild!
// was made for — sparse logistic regression on the RCV1-like set and matrix factorisation on
// the Netflix-like set — for 1 and 2 workers: seconds and samples/s per epoch, test loss and
// accuracy (or RMSE) after each. With --compare-sklearn, scikit-learn's SGDClassifier on the
// same data in the same run, and the ratio of the times to the same test loss.
//   npm run bench:relaxed -- [--epochs 6] [--workers 1,2] [--strategies hogwild,async-ps,allreduce,local-sgd] [--compare-sklearn]

import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import type { Dataset } from '../data/dataset.js';
import { generateNetflixLike, netflixLikeDefaults } from '../data/ratings.js';
import { formatLibsvm, generateRcv1Like, rcv1LikeDefaults } from '../data/sparse.js';
import { trainOnThreads } from '../launch/threads.js';
import { strategy as strategyEntry } from '../strategies/index.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { announceEnvironment, debianPython, environment, median, writeJson } from './common.js';

const { values } = parseArgs({
  options: {
    epochs: { type: 'string', default: '5' },
    workers: { type: 'string', default: '1,2' },
    strategies: { type: 'string', default: 'hogwild,async-ps,allreduce,local-sgd' },
    rows: { type: 'string', default: String(rcv1LikeDefaults.rows) },
    features: { type: 'string', default: String(rcv1LikeDefaults.features) },
    'skip-mf': { type: 'boolean', default: false },
    'compare-sklearn': { type: 'boolean', default: false },
    out: { type: 'string', default: 'bench/results/relaxed.json' },
  },
});
const epochs = Number(values.epochs);
const list = (s: string) => s.split(',').filter(Boolean);

interface EpochFigures { epoch: number; seconds: number; samplesPerSecond: number; testLoss: number; testAccuracy: number; testRmse: number }
interface Run { workload: string; strategy: string; workers: number; epochs: EpochFigures[]; samplesPerSecond: number; meanStaleness?: number }

/** Learning rates per workload: per-example SGD (hogwild) steps once per example; the minibatch strategies once per batch. */
const workloads: { name: string; make: () => Dataset; config: Partial<TrainConfig>; perExampleLr: number; minibatchLr: number }[] = [
  {
    name: 'sparse-logreg',
    make: () => generateRcv1Like({ ...rcv1LikeDefaults, rows: Number(values.rows), features: Number(values.features) }),
    config: { model: 'logreg', batch: 32, optimizer: 'sgd', l2: 1e-6 },
    perExampleLr: 0.5,
    minibatchLr: 2,
  },
  {
    name: 'mf',
    make: () => generateNetflixLike(netflixLikeDefaults),
    config: { model: 'mf', batch: 32, optimizer: 'sgd', factors: 16, l2: 0.02 },
    perExampleLr: 0.02,
    minibatchLr: 0.5,
  },
];

announceEnvironment();
const runs: Run[] = [];
let sklearnFiles: { train: string; test: string; features: number } | null = null;
for (const workload of workloads) {
  if (workload.name === 'mf' && values['skip-mf']) continue;
  const started = performance.now();
  const dataset = workload.make();
  console.log(`\n${workload.name}: ${dataset.name}, ${dataset.train.count} train / ${dataset.test.count} test (generated in ${((performance.now() - started) / 1000).toFixed(1)} s); ${epochs} epochs, batch ${workload.config.batch} per worker, plain SGD`);
  if (workload.name === 'sparse-logreg' && values['compare-sklearn'] && dataset.kind === 'sparse') {
    const dir = mkdtempSync(join(tmpdir(), 'converge-relaxed-'));
    sklearnFiles = { train: join(dir, 'train.svm'), test: join(dir, 'test.svm'), features: dataset.features };
    writeFileSync(sklearnFiles.train, formatLibsvm(dataset.train));
    writeFileSync(sklearnFiles.test, formatLibsvm(dataset.test));
  }
  for (const strategy of list(values.strategies!)) {
    for (const workers of list(values.workers!).map(Number)) {
      const lr = strategyEntry(strategy).perExampleSteps ? workload.perExampleLr : workload.minibatchLr;
      const figures: EpochFigures[] = [];
      const { summary } = await trainOnThreads({ ...defaults, ...workload.config, dataset: dataset.name, strategy, workers, epochs, lr, seed: 1 }, {
        dataset,
        onStart: (monitor) => monitor.listen((event) => {
          if (event.kind !== 'epoch') return;
          figures.push({ epoch: event.epoch + 1, seconds: event.trainSeconds, samplesPerSecond: event.samples / event.trainSeconds, testLoss: event.testLoss, testAccuracy: event.testAccuracy, testRmse: event.testRmse });
        }),
      });
      // the first epoch carries the JIT's warm-up: the rate is the median of the others
      const run: Run = { workload: workload.name, strategy, workers, epochs: figures, samplesPerSecond: median(figures.slice(1).map((f) => f.samplesPerSecond)), meanStaleness: summary.meanStaleness };
      runs.push(run);
      const merit = (f: EpochFigures) => (Number.isNaN(f.testAccuracy) ? `RMSE ${f.testRmse.toFixed(4)}` : `acc ${(100 * f.testAccuracy).toFixed(2)}%`);
      console.log(`  ${strategy.padEnd(10)} ×${workers} lr ${String(lr).padEnd(5)} ${Math.round(run.samplesPerSecond).toLocaleString('en-US').padStart(10)} samples/s${run.meanStaleness !== undefined ? `  (mean staleness ${run.meanStaleness.toFixed(2)})` : ''}`);
      console.log(`      ${figures.map((f) => `e${f.epoch} ${f.seconds.toFixed(2)}s loss ${f.testLoss.toFixed(4)} ${merit(f)}`).join(' | ')}`);
    }
  }
}

console.log('\nsummary (samples/s, median of epochs 2…; loss = test loss after the last epoch):');
for (const workload of [...new Set(runs.map((r) => r.workload))]) {
  for (const strategy of [...new Set(runs.map((r) => r.strategy))]) {
    const one = runs.find((r) => r.workload === workload && r.strategy === strategy && r.workers === 1);
    const two = runs.find((r) => r.workload === workload && r.strategy === strategy && r.workers === 2);
    if (!one || !two) continue;
    const last = (r: Run) => r.epochs[r.epochs.length - 1].testLoss;
    console.log(`  ${workload.padEnd(14)} ${strategy.padEnd(10)} 2 workers ÷ 1: ${(two.samplesPerSecond / one.samplesPerSecond).toFixed(2)}×   loss ×1 ${last(one).toFixed(4)}, ×2 ${last(two).toFixed(4)}`);
  }
}

let sklearn: { epochs: { seconds: number; testLoss: number; testAccuracy: number }[] } | null = null;
if (values['compare-sklearn'] && sklearnFiles) {
  const python = debianPython('sklearn');
  if (!python) console.log('\n--compare-sklearn: python3-sklearn is not installed (apt-get install python3-sklearn); skipped');
  else {
    const script = fileURLToPath(new URL('../../bench/sklearn_logreg.py', import.meta.url));
    const result = spawnSync(python, [script, sklearnFiles.train, sklearnFiles.test, '--features', String(sklearnFiles.features), '--epochs', String(epochs), '--lr', String(workloads[0].perExampleLr), '--l2', '1e-6'], { encoding: 'utf8' });
    if (result.status !== 0) console.log(`sklearn failed: ${result.stderr.trim().split('\n').pop()}`);
    else {
      sklearn = JSON.parse(result.stdout.trim().split('\n').pop()!);
      console.log(`\nscikit-learn SGDClassifier(loss='log_loss'), same files, eta0 ${workloads[0].perExampleLr}, alpha 1e-6, one partial_fit per epoch:`);
      console.log(`      ${sklearn!.epochs.map((f, i) => `e${i + 1} ${f.seconds.toFixed(2)}s loss ${f.testLoss.toFixed(4)} acc ${(100 * f.testAccuracy).toFixed(2)}%`).join(' | ')}`);
      // time to the same test loss: the worse of the two final losses, so both reach it
      const hog = runs.find((r) => r.workload === 'sparse-logreg' && r.strategy === 'hogwild' && r.workers === Math.max(...list(values.workers!).map(Number)));
      if (hog) {
        const target = Math.max(hog.epochs[hog.epochs.length - 1].testLoss, sklearn!.epochs[sklearn!.epochs.length - 1].testLoss);
        const timeTo = (figures: { seconds: number; testLoss: number }[]) => {
          let elapsed = 0;
          for (const f of figures) {
            elapsed += f.seconds;
            if (f.testLoss <= target) return elapsed;
          }
          return NaN;
        };
        const ours = timeTo(hog.epochs);
        const theirs = timeTo(sklearn!.epochs);
        console.log(`time to test loss ${target.toFixed(4)}: converge hogwild ×${hog.workers} ${ours.toFixed(2)} s, scikit-learn ${theirs.toFixed(2)} s: converge is ${(theirs / ours).toFixed(1)}× faster (training time only; both exclude loading and evaluation)`);
      }
    }
  }
}
writeJson(values.out!, { environment: environment(), epochs, runs, sklearn });
