// A labelled image data set held as bytes in shared memory: loaded once by the main thread and
// read by every worker thread without copying. Images are scaled to [0, 1] as batches are made.

import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { missingData, shapeMismatch, corruptFile } from '../errors.js';
import { Random } from '../tensor/random.js';
import { readIdx } from './idx.js';
import type { SparseDataset } from './sparse.js';
import type { RatingsDataset } from './ratings.js';

/** Dense samples: images as bytes (scaled to [0, 1] as batches are made), or features as float32 (taken as they are). */
export interface Split {
  images: Uint8Array | Float32Array; // [count, ...shape], on a SharedArrayBuffer
  labels: Uint8Array | Int32Array; // [count] class labels (classification)
  /** Regression: the target of each sample, [count, targets]. */
  targets?: Float32Array;
  count: number;
  /** A stream's split (data/reservoir.ts): only the first filled[0] of the count slots hold samples yet, and batches draw from those. */
  filled?: Int32Array;
}

/** What a data set fed while the run trains gives the loop: a turn before every step, which waits while the buffer is short. */
export interface Stream {
  beforeStep(): Promise<void>;
}

/** Dense samples of one shape — images, or rows of features (CSV, NPY) — with class labels or regression targets. */
export interface ImageDataset {
  kind: 'images';
  name: string;
  shape: number[]; // one sample, [channels, height, width] or [features]
  /** Classification: the number of classes. Regression: the number of targets per sample. */
  classes: number;
  /** 'regression': the samples carry targets, and models fit them by mean squared error (default 'classification'). */
  task?: 'classification' | 'regression';
  train: Split;
  test: Split;
  /** How the test set was made, when it was drawn from the training file. */
  split?: string;
  /** What was read, for the first line (e.g. "CSV: 4 features, 3 classes from column 'species'"). */
  describe?: string;
  /** Fed while the run trains (online training from a study's simulations); runs on a process backend only, where it stays in this process. */
  stream?: Stream;
}

/** Every kind of data set converge trains on; plain objects of SharedArrayBuffers, so they cross to worker threads. */
export type Dataset = ImageDataset | SparseDataset | RatingsDataset;

/** Where Debian's packages put the data sets converge knows by name. */
export const knownDatasets: Record<string, string | null> = {
  'fashion-mnist': '/usr/share/datasets/fashion-mnist',
  mnist: '/usr/share/datasets/mnist',
  synthetic: null, // generated in memory; for tests and demos
};

function toShared(bytes: Uint8Array): Uint8Array {
  const shared = new Uint8Array(new SharedArrayBuffer(bytes.length));
  shared.set(bytes);
  return shared;
}

function findFile(dir: string, base: string): string {
  for (const candidate of [`${base}.gz`, base, base.replace('-idx', '.idx')]) {
    const path = join(dir, candidate);
    if (existsSync(path)) return path;
  }
  throw missingData(`${base}(.gz)`, dir, 'point --data-dir at a folder with the four MNIST-format IDX files (for Fashion-MNIST: apt-get install dataset-fashion-mnist).');
}

function readSplit(dir: string, prefix: 'train' | 't10k'): { split: Split; shape: number[] } {
  const imagesPath = findFile(dir, `${prefix}-images-idx3-ubyte`);
  const labelsPath = findFile(dir, `${prefix}-labels-idx1-ubyte`);
  const images = readIdx(imagesPath);
  const labels = readIdx(labelsPath);
  if (images.shape.length !== 3) throw corruptFile(imagesPath, `holds shape [${images.shape}], not [count, height, width]`, 'is this an image file?');
  if (labels.shape.length !== 1) throw corruptFile(labelsPath, `holds shape [${labels.shape}], not [count]`, 'is this a label file?');
  if (labels.shape[0] !== images.shape[0]) {
    throw shapeMismatch(`${labelsPath} against ${imagesPath}`, `one label per image (${images.shape[0]})`, `${labels.shape[0]} labels`);
  }
  return {
    split: { images: toShared(images.data), labels: toShared(labels.data), count: images.shape[0] },
    shape: [1, images.shape[1], images.shape[2]],
  };
}

export function loadIdxDataset(name: string, dir: string): ImageDataset {
  if (!existsSync(dir)) {
    throw missingData(`data set '${name}'`, dir, name === 'fashion-mnist'
      ? 'install it with apt-get install dataset-fashion-mnist, or give --data-dir.'
      : 'give --data-dir pointing at the folder with its IDX files.');
  }
  const train = readSplit(dir, 'train');
  const test = readSplit(dir, 't10k');
  if (train.shape.join() !== test.shape.join()) throw shapeMismatch(`${dir}`, `test images of shape [${train.shape}]`, `[${test.shape}]`);
  let maxLabel = 0;
  for (const labels of [train.split.labels, test.split.labels]) for (const l of labels) if (l > maxLabel) maxLabel = l;
  return { kind: 'images', name, shape: train.shape, classes: maxLabel + 1, train: train.split, test: test.split };
}

/**
 * A small, learnable image set: each class a random prototype, each sample its prototype plus
 * noise. Deterministic from the seed.
 */
export function syntheticDataset(seed = 1, trainCount = 2048, testCount = 512, side = 8, classes = 10): ImageDataset {
  const random = new Random(seed);
  const pixels = side * side;
  const prototypes = Array.from({ length: classes }, () => Float32Array.from({ length: pixels }, () => random.next() * 255));
  const make = (count: number): Split => {
    const images = new Uint8Array(new SharedArrayBuffer(count * pixels));
    const labels = new Uint8Array(new SharedArrayBuffer(count));
    for (let i = 0; i < count; i++) {
      const label = random.below(classes);
      labels[i] = label;
      for (let j = 0; j < pixels; j++) {
        images[i * pixels + j] = Math.max(0, Math.min(255, Math.round(prototypes[label][j] + 90 * random.normal())));
      }
    }
    return { images, labels, count };
  };
  return { kind: 'images', name: 'synthetic', shape: [1, side, side], classes, train: make(trainCount), test: make(testCount) };
}

