// The relaxed strategies: what each must equal in its limiting case, and that each trains
// every model it applies to.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaults, type TrainConfig } from '../train/config.js';
import { trainOnThreads } from './threads.js';
import { generateRcv1Like } from '../data/sparse.js';
import { SparseBatchMaker, epochOrder, stepsPerEpoch } from '../data/batches.js';
import { createModel } from '../models/index.js';
import { writeFileSync } from 'node:fs';
import { formatLibsvm, readLibsvm } from '../data/sparse.js';
import { generateNetflixLike, formatRatings } from '../data/ratings.js';

const images: TrainConfig = { ...defaults, dataset: 'synthetic', model: 'mlp', hidden: [32, 16], epochs: 2, batch: 16, lr: 0.05, seed: 5, workers: 2 };

function maxRelativeDifference(a: Float32Array, b: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < a.length; i++) worst = Math.max(worst, Math.abs(a[i] - b[i]) / (1e-3 + Math.abs(b[i])));
  return worst;
}

// small libsvm and ratings files, as a user would bring them
const dir = mkdtempSync(join(tmpdir(), 'converge-relaxed-'));
const sparseData = generateRcv1Like({ rows: 3000, testRows: 300, features: 2000, nonZeros: 15, seed: 2 });
writeFileSync(join(dir, 'train.svm'), formatLibsvm(sparseData.train));
writeFileSync(join(dir, 'test.svm'), formatLibsvm(sparseData.test));
const ratingData = generateNetflixLike({ users: 400, items: 150, ratingsPerUser: 20, rank: 4, testFraction: 0.1, seed: 2 });
writeFileSync(join(dir, 'train.ratings'), formatRatings(ratingData.train));
writeFileSync(join(dir, 'test.ratings'), formatRatings(ratingData.test));

test('async-ps with staleness 0 is synchronous SGD (P = 2 and 3)', async () => {
  for (const workers of [2, 3]) {
    const config = { ...images, workers, optimizer: 'sgd' as const };
    const sync = await trainOnThreads({ ...config, strategy: 'allreduce' });
    const asynchronous = await trainOnThreads({ ...config, strategy: 'async-ps', staleness: 0 });
    const difference = maxRelativeDifference(asynchronous.params, sync.params);
    assert.ok(difference < 1e-3, `async-ps s=0 ×${workers} differs from allreduce by ${difference}`);
  }
});

test('async-ps logs the staleness of every update, within what the bound allows', async () => {
  const log = join(dir, 'async.jsonl');
  const staleness = 1;
  await trainOnThreads({ ...images, workers: 2, strategy: 'async-ps', staleness, epochs: 1, log });
  const updates = readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line)).filter((r) => r.type === 'update');
  const steps = 2048 / (2 * 16); // whole steps: the epoch's 2,048 samples, 2 workers of 16
  assert.equal(updates.length, 2 * steps, 'one record per push');
  assert.ok(updates.every((u) => u.worker >= 1 && u.worker <= 2 && Number.isInteger(u.staleness) && u.staleness >= 0));
  // while a worker computes step c, a peer may complete its steps from c − s up to c + s: at most (2s + 1)·(P − 1) updates in between
  assert.ok(Math.max(...updates.map((u) => u.staleness)) <= (2 * staleness + 1) * (2 - 1), `max staleness ${Math.max(...updates.map((u) => u.staleness))}`);
  const summary = JSON.parse(readFileSync(log, 'utf8').trim().split('\n').pop()!);
  assert.ok(summary.meanStaleness >= 0 && summary.maxStaleness >= 0);
});

test('async-ps keeps every worker within --staleness steps of the slowest, and the bound binds (brute force over the update log)', async () => {
  // a model whose first worker (replica 1; the server is 0) takes 4 ms a step, the others none: the fast run ahead to the bound
  const modelPath = join(dir, 'slow-first-worker.mjs');
  writeFileSync(modelPath, `import { Layout } from ${JSON.stringify(new URL('../tensor/layout.js', import.meta.url).href)};
export default { data: 'images', build(options) {
  const layout = new Layout([{ name: 'w', shape: [4] }]);
  return { name: 'slow-first-worker', layout, maxBatch: options.maxBatch, task: 'classification',
    init: (params) => params.fill(0),
    lossAndGrad(params, batch, grad) {
      if (options.replica === 1) { const until = performance.now() + 4; while (performance.now() < until); }
      grad.fill(0.01);
      return 1;
    },
    evaluate: () => ({ loss: 1, correct: 0, squaredError: 0 }) };
} };
`);
  for (const staleness of [1, 2]) {
    const log = join(dir, `bound-${staleness}.jsonl`);
    await trainOnThreads({ ...images, model: modelPath, workers: 3, strategy: 'async-ps', staleness, epochs: 1, log });
    const updates = readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line)).filter((r) => r.type === 'update');
    // a worker computes its steps in order: its k-th push is its step k. Step c was handed out only
    // once every worker had pushed c − s steps, so when it arrives every other worker has too.
    const pushed = [0, 0, 0, 0];
    let closest = Infinity;
    for (const { worker } of updates) {
      const step = pushed[worker];
      const slowest = Math.min(...[1, 2, 3].filter((w) => w !== worker).map((w) => pushed[w]));
      assert.ok(slowest >= step - staleness, `s=${staleness}: worker ${worker} pushed step ${step} while a peer had pushed only ${slowest} steps`);
      closest = Math.min(closest, slowest - (step - staleness));
      pushed[worker]++;
    }
    assert.deepEqual(pushed.slice(1), [42, 42, 42], 'each worker pushed each of the epoch\'s ⌊2,048 / (3 × 16)⌋ = 42 steps');
    assert.equal(closest, 0, `s=${staleness}: the fast workers should reach the bound`);
  }
});

test('hogwild with one worker is plain sequential SGD, bit for bit (dense and sparse models)', async () => {
  const dense = { ...images, workers: 1, optimizer: 'sgd' as const };
  const sequential = await trainOnThreads({ ...dense, strategy: 'allreduce' });
  const hog = await trainOnThreads({ ...dense, strategy: 'hogwild' });
  assert.deepEqual(hog.params, sequential.params);

  // sparse: the per-example updates, in the epoch's order, by hand
  const config: TrainConfig = { ...defaults, dataset: join(dir, 'train.svm'), testDataset: join(dir, 'test.svm'), model: 'logreg', workers: 1, batch: 10, epochs: 2, lr: 0.5, seed: 3, strategy: 'hogwild' };
  const result = await trainOnThreads(config);
  const fromFile = readLibsvm(join(dir, 'train.svm')).split;
  const model = createModel('logreg', { features: 2000, maxBatch: 10 });
  const params = model.layout.allocate();
  const maker = new SparseBatchMaker(fromFile, 10);
  const order = new Uint32Array(fromFile.count);
  const steps = stepsPerEpoch(fromFile.count, 1, 10);
  for (let epoch = 0; epoch < 2; epoch++) {
    epochOrder(order, 3, epoch);
    for (let step = 0; step < steps; step++) {
      const batch = maker.fromOrder(order, step * 10, 10);
      for (let i = 0; i < 10; i++) model.exampleStep!(params, batch, i, 0.5);
    }
  }
  assert.deepEqual(result.params, params);
});

test('hogwild with replicas: each worker steps on its own copy; a merge adds its change whole where no other worker changed a coordinate, half where one did (P = 2 and 3)', async () => {
  const train = readLibsvm(join(dir, 'train.svm')).split;
  for (const workers of [2, 3]) {
    // --merge-every above a worker's share of the epoch: each merges only at the epoch's end
    const config: TrainConfig = { ...defaults, dataset: join(dir, 'train.svm'), testDataset: join(dir, 'test.svm'), model: 'logreg', workers, batch: 10, epochs: 1, lr: 0.5, seed: 3, strategy: 'hogwild', mergeEvery: 100_000 };
    const result = await trainOnThreads(config);
    // by hand: each worker's sequential SGD on its own examples, from the same start (zero)
    const model = createModel('logreg', { features: 2000, maxBatch: 10 });
    const maker = new SparseBatchMaker(train, 10);
    const order = new Uint32Array(train.count);
    epochOrder(order, 3, 0);
    const copies = Array.from({ length: workers }, (_, worker) => {
      const params = model.layout.allocate();
      for (let step = 0; step < stepsPerEpoch(train.count, workers, 10); step++) {
        const batch = maker.fromOrder(order, (step * workers + worker) * 10, 10);
        for (let i = 0; i < 10; i++) model.exampleStep!(params, batch, i, 0.5);
      }
      return params;
    });
    // the workers merge in the order they finish; each change is from zero, so a coordinate still
    // zero was changed by no one before: the change lands whole, else half of it
    const merged = (sequence: number[]) => {
      const shared = new Float32Array(model.layout.size);
      for (const w of sequence) for (let j = 0; j < shared.length; j++) shared[j] += shared[j] === 0 ? copies[w][j] : copies[w][j] / 2;
      return shared;
    };
    const sequences = workers === 2 ? [[0, 1], [1, 0]] : [[0, 1, 2], [0, 2, 1], [1, 0, 2], [1, 2, 0], [2, 0, 1], [2, 1, 0]];
    const nearest = Math.min(...sequences.map((q) => maxRelativeDifference(result.params, merged(q))));
    assert.ok(sequences.some((q) => merged(q).every((v, j) => v === result.params[j])), `×${workers}: the result is no merge order's (nearest: ${nearest})`);
    // and not the plain sum of the changes, nor their mean
    const sum = copies[0].map((_, j) => copies.reduce((total, copy) => total + copy[j], 0));
    assert.ok(maxRelativeDifference(result.params, Float32Array.from(sum)) > 0.1);
    assert.ok(maxRelativeDifference(result.params, Float32Array.from(sum, (v) => v / workers)) > 0.1);
  }
});

test('local-sgd with --sync-every 1 is synchronous SGD; with a longer period it is not', async () => {
  const sync = await trainOnThreads({ ...images, strategy: 'allreduce' });
  const local1 = await trainOnThreads({ ...images, strategy: 'local-sgd', syncEvery: 1 });
  const difference = maxRelativeDifference(local1.params, sync.params);
  assert.ok(difference < 1e-3, `local-sgd k=1 differs from allreduce by ${difference}`);
  const local8 = await trainOnThreads({ ...images, strategy: 'local-sgd', syncEvery: 8 });
  assert.ok(maxRelativeDifference(local8.params, sync.params) > 1e-3, 'k = 8 averages less often, so it ends elsewhere');
  assert.ok(local8.summary.testAccuracy > 0.9, `and still learns (0.98–1.00 over seeds 1–4): ${local8.summary.testAccuracy}`);
});

test('every strategy trains every model it applies to: logreg, svm (libsvm files), mf (ratings files)', async () => {
  const cases: [string, Partial<TrainConfig>, (s: { testAccuracy: number; testRmse: number }) => boolean][] = [
    ['logreg', { dataset: join(dir, 'train.svm'), testDataset: join(dir, 'test.svm'), lr: 0.5 }, (s) => s.testAccuracy > 0.6],
    ['svm', { dataset: join(dir, 'train.svm'), testDataset: join(dir, 'test.svm'), lr: 0.1 }, (s) => s.testAccuracy > 0.6],
    ['mf', { dataset: join(dir, 'train.ratings'), testDataset: join(dir, 'test.ratings'), lr: 0.05, optimizer: 'sgd' }, (s) => s.testRmse < 0.78], // predicting the mean scores 0.800; runs reach 0.66–0.74 over seeds 1–4
  ];
  for (const [model, extra, good] of cases) {
    for (const strategy of ['allreduce', 'ps', 'async-ps', 'hogwild', 'local-sgd']) {
      const { summary } = await trainOnThreads({ ...defaults, model, workers: 2, batch: 8, epochs: 3, seed: 1, strategy, ...extra });
      assert.ok(good(summary), `${model} with ${strategy}: accuracy ${summary.testAccuracy}, RMSE ${summary.testRmse}`);
    }
  }
});
