// What --dataset names: a data set known by name (Debian's IDX packages, or one generated in
// memory), a folder of IDX files, a libsvm file, a ratings file, or a folder holding
// train/test files of either. Without a test file the last tenth of the file is held out.

import { existsSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { badOption, ConvergeError, missingData } from '../errors.js';
import { knownDatasets, loadIdxDataset, syntheticDataset, type Dataset } from './dataset.js';
import { generateNetflixLike, netflixLikeDefaults, readRatings, toRatingSplit, type RatingSplit, type RatingsDataset } from './ratings.js';
import { generateRcv1Like, rcv1LikeDefaults, readLibsvm, toSparseSplit, type SparseDataset, type SparseSplit } from './sparse.js';

export const generatedDatasets = ['rcv1-like', 'netflix-like'];
export const datasetNames = [...Object.keys(knownDatasets), ...generatedDatasets];

export interface LoadOptions {
  dataDir?: string;
  testDataset?: string;
  seed: number;
}

const cutOf = (count: number) => count - Math.max(1, Math.floor(count / 10));

function sliceSparse(split: SparseSplit, first: number, end: number): SparseSplit {
  const base = split.rowPtr[first];
  return toSparseSplit(Array.from(split.rowPtr.subarray(first, end + 1), (v) => v - base),
    split.indices.subarray(base, split.rowPtr[end]), split.values.subarray(base, split.rowPtr[end]), split.labels.subarray(first, end));
}

function sliceRatings(split: RatingSplit, first: number, end: number): RatingSplit {
  return toRatingSplit(split.users.subarray(first, end), split.items.subarray(first, end), split.ratings.subarray(first, end));
}

function libsvmDataset(path: string, testPath: string | undefined): SparseDataset {
  const train = readLibsvm(path);
  if (testPath) {
    const test = readLibsvm(testPath);
    return { kind: 'sparse', name: path, features: Math.max(train.features, test.features), train: train.split, test: test.split };
  }
  const cut = cutOf(train.split.count);
  return { kind: 'sparse', name: path, features: train.features, train: sliceSparse(train.split, 0, cut), test: sliceSparse(train.split, cut, train.split.count) };
}

function ratingsDataset(path: string, testPath: string | undefined): RatingsDataset {
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
    const cut = cutOf(train.count);
    test = sliceRatings(train, cut, train.count);
    train = sliceRatings(train, 0, cut);
  }
  let sum = 0;
  for (const r of train.ratings) sum += r;
  return { kind: 'ratings', name: path, users, items, mean: sum / train.count, train, test };
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
    for (const extension of ['svm', 'ratings']) {
      const train = join(name, `train.${extension}`);
      if (existsSync(train)) {
        const test = join(name, `test.${extension}`);
        return loadAnyDataset(train, { ...options, testDataset: options.testDataset ?? (existsSync(test) ? test : undefined) });
      }
    }
    return loadIdxDataset(name, name);
  }
  if (/\.(svm|libsvm|svmlight)$/.test(name)) return libsvmDataset(name, options.testDataset);
  if (/\.ratings$/.test(name)) return ratingsDataset(name, options.testDataset);
  throw badOption('--dataset', name, 'a known name, a folder, or a file ending in .svm/.libsvm/.svmlight (libsvm) or .ratings (user item rating lines)');
}
