// Data people have, end to end: a CSV regression fitted by mean squared error (checked against
// the closed-form least-squares fit of the same rows) and a multi-class CSV classification,
// from the CLI and from train(); NPY arrays and arrays in memory through train().
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Random } from '../tensor/random.js';
import { formatNpy } from '../data/npy.js';
import { arrays, train } from '../index.js';

const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const dir = mkdtempSync(join(tmpdir(), 'converge-data-'));
const random = new Random(11);

// y = 3a − 2b + 0.5c + 1 + noise (σ 0.1), 4,000 rows
const rows: number[][] = Array.from({ length: 4000 }, () => {
  const [a, b, c] = [random.next() * 2 - 1, random.next() * 2 - 1, random.next() * 2 - 1];
  return [a, b, c, 3 * a - 2 * b + 0.5 * c + 1 + 0.1 * random.normal()];
});
const regressionCsv = join(dir, 'prices.csv');
writeFileSync(regressionCsv, `a,b,c,price\n${rows.map((r) => r.map((v) => v.toFixed(6)).join(',')).join('\n')}\n`);

/** The least-squares fit's RMSE on the rows (normal equations, float64, Gaussian elimination): the floor any linear model can reach. */
function leastSquaresRmse(data: number[][]): number {
  const n = data[0].length; // 3 features + intercept
  const a = Array.from({ length: n }, () => new Array<number>(n + 1).fill(0));
  for (const r of data) {
    const x = [...r.slice(0, 3), 1];
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) a[i][j] += x[i] * x[j];
      a[i][n] += x[i] * r[3];
    }
  }
  for (let i = 0; i < n; i++) {
    for (let k = i + 1; k < n; k++) {
      const f = a[k][i] / a[i][i];
      for (let j = i; j <= n; j++) a[k][j] -= f * a[i][j];
    }
  }
  const w = new Array<number>(n).fill(0);
  for (let i = n - 1; i >= 0; i--) w[i] = (a[i][n] - a[i].slice(i + 1, n).reduce((s, v, j) => s + v * w[i + 1 + j], 0)) / a[i][i];
  const squares = data.reduce((s, r) => s + (r[0] * w[0] + r[1] * w[1] + r[2] * w[2] + w[3] - r[3]) ** 2, 0);
  return Math.sqrt(squares / data.length);
}

// three classes by name, in label order (a file sorted by class)
const classCsv = join(dir, 'flowers.csv');
const names = ['setosa', 'versicolor', 'virginica'];
writeFileSync(classCsv, `x1,x2,species\n${Array.from({ length: 1500 }, (_, i) => {
  const k = Math.floor((i * 3) / 1500);
  return `${(k + 0.3 * random.normal()).toFixed(4)},${(-k + 0.3 * random.normal()).toFixed(4)},${names[k]}`;
}).join('\n')}\n`);

test('a CSV regression trains by mean squared error to the least-squares floor, from the CLI and from train()', async () => {
  const floor = leastSquaresRmse(rows);
  assert.ok(floor > 0.08 && floor < 0.12, `the noise's σ is 0.1: ${floor}`);
  // softmax on regression data is one dense layer: linear regression
  const run = spawnSync(process.execPath, [cli, 'train', '--dataset', regressionCsv, '--model', 'softmax', '--workers', '2', '--epochs', '8', '--lr', '0.02', '--batch', '16'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stderr, /CSV, label column 'price': 3 features, 1 regression target; test set: a seeded 10% of/);
  const rmse = Number(/test RMSE ([\d.]+)/.exec(run.stdout)![1]);
  assert.ok(rmse < 1.25 * floor, `test RMSE ${rmse} against the least-squares fit's ${floor.toFixed(4)}`);
  const { summary } = await train({ model: 'mlp', hidden: [16], data: regressionCsv, workers: 2, epochs: 8, lr: 0.01, batch: 16, strategy: 'local-sgd' });
  assert.ok(summary.testRmse < 1.5 * floor, `mlp local-sgd: test RMSE ${summary.testRmse}`);
  assert.ok(Number.isNaN(summary.testAccuracy));
});

test('a multi-class CSV with class names trains from the CLI and from train()', async () => {
  const run = spawnSync(process.execPath, [cli, 'train', '--dataset', classCsv, '--model', 'mlp', '--hidden', '16', '--workers', '2', '--epochs', '3'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stderr, /CSV, label column 'species': 2 features, 3 classes; test set: a seeded, stratified 10%/);
  assert.ok(Number(/test accuracy ([\d.]+)%/.exec(run.stdout)![1]) > 90);
  const { summary } = await train({ model: 'mlp', hidden: [16], data: classCsv, workers: 2, epochs: 3, strategy: 'ps' });
  assert.ok(summary.testAccuracy > 0.9, `ps: ${summary.testAccuracy}`);
});

test('NPY arrays in a folder, and arrays in memory, train through train()', async () => {
  const npy = join(dir, 'npy');
  mkdirSync(npy);
  const count = 1200;
  const x = new Float32Array(count * 4);
  const y = new Float32Array(count);
  for (let i = 0; i < count; i++) {
    const label = i % 4;
    for (let j = 0; j < 4; j++) x[i * 4 + j] = (j === label ? 2 : 0) + 0.5 * random.normal();
    y[i] = label;
  }
  writeFileSync(join(npy, 'train_x.npy'), formatNpy(x, [count, 4]));
  writeFileSync(join(npy, 'train_y.npy'), formatNpy(y, [count]));
  const fromFiles = await train({ model: 'softmax', data: npy, workers: 2, epochs: 3 });
  assert.ok(fromFiles.summary.testAccuracy > 0.85, `NPY: ${fromFiles.summary.testAccuracy}`);
  const inMemory = await train({ model: 'softmax', data: arrays({ x, y, name: 'four blobs' }), workers: 2, epochs: 3 });
  assert.equal(inMemory.summary.dataset, 'four blobs');
  assert.ok(inMemory.summary.testAccuracy > 0.85, `arrays: ${inMemory.summary.testAccuracy}`);
});
