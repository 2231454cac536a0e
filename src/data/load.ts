// What --dataset names: a data set known by name (Debian's IDX packages, or one generated in
// memory), a folder of IDX files, a libsvm file, a ratings file, or a folder holding
// train/test files of either. Without a test file a seeded (for classes, stratified) tenth of
// the file is held out.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { badOption, ConvergeError, missingData, shapeMismatch } from '../errors.js';
import { knownDatasets, loadIdxDataset, syntheticDataset, type Dataset, type ImageDataset } from './dataset.js';
import { readCsv } from './csv.js';
import { isCifarFolder, loadCifar10 } from './cifar.js';
import { denseDataset, type DenseArrays, type Task } from './dense.js';
import { readNpy } from './npy.js';
import { generateNetflixLike, netflixLikeDefaults, readRatings, toRatingSplit, type RatingSplit, type RatingsDataset } from './ratings.js';
import { generateRcv1Like, rcv1LikeDefaults, readLibsvm, toSparseSplit, type SparseDataset, type SparseSplit } from './sparse.js';
import { describeSplit, heldOut } from './split.js';

export const generatedDatasets = ['rcv1-like', 'netflix-like'];
export const datasetNames = [...Object.keys(knownDatasets), ...generatedDatasets];

export interface LoadOptions {
  dataDir?: string;
  testDataset?: string;
  /** libsvm files whose feature indices start at 0. */
  zeroBased?: boolean;
  /** CSV: the label column's name (or 0-based index). */
  labelColumn?: string;
  /** CSV and NPY: what the labels are; 'auto' reads names and few integers as classes, other numbers as targets. */
  task?: Task | 'auto';
  seed: number;
}

/** The rows `rows` of a sparse split, in that order. */
function pickSparse(split: SparseSplit, rows: Uint32Array): SparseSplit {
  let nonZeros = 0;
  for (const r of rows) nonZeros += split.rowPtr[r + 1] - split.rowPtr[r];
  const rowPtr = new Int32Array(rows.length + 1);
  const indices = new Int32Array(nonZeros);
  const values = new Float32Array(nonZeros);
  const labels = new Float32Array(rows.length);
  let at = 0;
  rows.forEach((r, i) => {
    const first = split.rowPtr[r];
    const end = split.rowPtr[r + 1];
    indices.set(split.indices.subarray(first, end), at);
    values.set(split.values.subarray(first, end), at);
    at += end - first;
    rowPtr[i + 1] = at;
    labels[i] = split.labels[r];
  });
  return toSparseSplit(rowPtr, indices, values, labels);
}

function pickRatings(split: RatingSplit, rows: Uint32Array): RatingSplit {
  const take = <T extends Int32Array | Float32Array>(values: T) => Array.from(rows, (r) => values[r]);
  return toRatingSplit(take(split.users), take(split.items), take(split.ratings));
}

function libsvmDataset(path: string, options: LoadOptions): SparseDataset {
  const read = { zeroBased: options.zeroBased, binary: false };
  const train = readLibsvm(path, read);
  if (options.testDataset) {
    const test = readLibsvm(options.testDataset, read);
    return { kind: 'sparse', name: path, features: Math.max(train.features, test.features), classes: Math.max(train.classes, test.classes), train: train.split, test: test.split, split: describeSplit(path, options.testDataset, options.seed, true) };
  }
  const rows = heldOut(train.split.count, options.seed, train.split.labels);
  return { kind: 'sparse', name: path, features: train.features, classes: train.classes, train: pickSparse(train.split, rows.train), test: pickSparse(train.split, rows.test), split: describeSplit(path, undefined, options.seed, true) };
}

function ratingsDataset(path: string, testPath: string | undefined, seed: number): RatingsDataset {
  const all = readRatings(path);
  let train = all.split;
  let test: RatingSplit;
  let users = all.users;
  let items = all.items;
  if (testPath) {
    const t = readRatings(testPath);
    test = t.split;
    users = Math.max(users, t.users);
    items = Math.max(items, t.items);
  } else {
    const rows = heldOut(train.count, seed);
    test = pickRatings(train, rows.test);
    train = pickRatings(train, rows.train);
  }
  let sum = 0;
  for (const r of train.ratings) sum += r;
  return { kind: 'ratings', name: path, users, items, mean: sum / train.count, train, test, split: describeSplit(path, testPath, seed, false) };
}

function csvDataset(path: string, options: LoadOptions): ImageDataset {
  const train = readCsv(path, { labelColumn: options.labelColumn });
  const test = options.testDataset ? readCsv(options.testDataset, { labelColumn: train.labelColumn }) : undefined;
  if (test && test.header.join() !== train.header.join()) throw shapeMismatch(options.testDataset!, `the columns of ${path} (${train.header.join(', ')})`, test.header.join(', '));
  return denseDataset(path, train, test, { task: options.task ?? 'auto', seed: options.seed, testName: options.testDataset, describe: `CSV, label column '${train.labelColumn}'` });
}

/** A folder of NPY arrays: train_x.npy [count, …shape] and train_y.npy [count] or [count, targets], optionally test_x/test_y. */
function npyDataset(dir: string, options: LoadOptions): ImageDataset {
  const arrays = (prefix: string): DenseArrays => {
    const x = readNpy(join(dir, `${prefix}_x.npy`));
    const y = readNpy(join(dir, `${prefix}_y.npy`));
    const count = x.shape[0];
    if (x.shape.length < 2) throw shapeMismatch(join(dir, `${prefix}_x.npy`), 'shape [samples, features…]', `(${x.shape.join(', ')})`);
    if (y.shape[0] !== count || y.shape.length > 2) throw shapeMismatch(join(dir, `${prefix}_y.npy`), `shape (${count},) or (${count}, targets) — one label per row of ${prefix}_x.npy`, `(${y.shape.join(', ')})`);
    return { features: Float32Array.from(x.values), shape: x.shape.slice(1), count, labels: { numbers: y.values, width: y.shape[1] ?? 1 } };
  };
  const hasTest = existsSync(join(dir, 'test_x.npy'));
  return denseDataset(dir, arrays('train'), hasTest ? arrays('test') : undefined, { task: options.task ?? 'auto', seed: options.seed, testName: hasTest ? join(dir, 'test_x.npy') : undefined, describe: 'NPY' });
}

export function loadAnyDataset(name: string, options: LoadOptions): Dataset {
  if (name === 'rcv1-like') return generateRcv1Like({ ...rcv1LikeDefaults, seed: options.seed });
  if (name === 'netflix-like') return generateNetflixLike({ ...netflixLikeDefaults, seed: options.seed });
  if (name === 'synthetic') return syntheticDataset(options.seed);
  if (options.dataDir) return loadIdxDataset(name, options.dataDir);
  if (name in knownDatasets) return loadIdxDataset(name, knownDatasets[name] as string);
  if (!existsSync(name)) {
    if (!/[/.]/.test(name)) throw new ConvergeError(`unknown dataset '${name}'; choose one of: ${datasetNames.join(', ')}, or give a .svm/.ratings file or a folder.`, 'UNKNOWN_NAME');
    throw missingData(`data set '${name}'`, name, `name one of ${datasetNames.join(', ')}, a .svm or .ratings file, or a folder of them.`);
  }
  if (statSync(name).isDirectory()) {
    if (existsSync(join(name, 'train_x.npy'))) return npyDataset(name, options);
    if (isCifarFolder(name)) return loadCifar10(name);
    for (const extension of ['svm', 'ratings', 'csv', 'tsv']) {
      const train = join(name, `train.${extension}`);
      if (existsSync(train)) {
        const test = join(name, `test.${extension}`);
        return loadAnyDataset(train, { ...options, testDataset: options.testDataset ?? (existsSync(test) ? test : undefined) });
      }
    }
    return loadIdxDataset(name, name);
  }
  if (/\.(svm|libsvm|svmlight)$/.test(name)) return libsvmDataset(name, options);
  if (/\.ratings$/.test(name)) return ratingsDataset(name, options.testDataset, options.seed);
  if (/\.(csv|tsv|tab)$/i.test(name)) return csvDataset(name, options);
  throw badOption('--dataset', name, 'a known name, a folder (IDX files, NPY arrays train_x.npy/train_y.npy, or train.svm/.ratings/.csv), or a file ending in .svm/.libsvm/.svmlight (libsvm), .ratings (user item rating lines) or .csv/.tsv (a header, then rows)');
}
