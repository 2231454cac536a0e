// Dense data from a file of rows (CSV, TSV) or arrays (NPY): float32 features kept as floats, and
// either class labels or regression targets. What the label column holds decides which, unless
// --task says: names or few integers are classes; anything else is a regression target.

import { corruptFile } from '../errors.js';
import type { ImageDataset, Split } from './dataset.js';
import { describeSplit, heldOut } from './split.js';

export type Task = 'classification' | 'regression';

/** The most distinct integer values a label column may hold and still be read as classes by default. */
const MAX_AUTO_CLASSES = 100;

/** Labels as read: numbers, or names (strings) when the column is not numeric. */
export type RawLabels = { numbers: Float64Array; names?: undefined; width: number } | { names: string[]; numbers?: undefined; width: 1 };

export interface DenseArrays {
  features: Float32Array; // [count, ...shape]
  shape: number[];
  labels: RawLabels;
  count: number;
}

/** Classes or targets from raw labels: the task, the classes (or targets per sample), and how each class was named. */
export function encodeLabels(labels: RawLabels, path: string, task: Task | 'auto'): { task: Task; classes: number; codes: Int32Array; targets?: Float32Array; names: (string | number)[] } {
  if (labels.names) {
    if (task === 'regression') throw corruptFile(path, 'its label column holds names, not numbers', 'a regression target must be numeric; leave --task out to train a classifier');
    const names = [...new Set(labels.names)].sort();
    const code = new Map(names.map((name, i) => [name, i]));
    return { task: 'classification', classes: names.length, codes: Int32Array.from(labels.names, (name) => code.get(name)!), names };
  }
  const values = labels.numbers;
  const integers = values.every(Number.isInteger);
  const distinct = [...new Set(values)].sort((a, b) => a - b);
  const chosen: Task = task !== 'auto' ? task : labels.width === 1 && integers && distinct.length <= MAX_AUTO_CLASSES ? 'classification' : 'regression';
  if (chosen === 'regression') return { task: 'regression', classes: labels.width, codes: new Int32Array(values.length / labels.width), targets: Float32Array.from(values), names: [] };
  if (labels.width !== 1) throw corruptFile(path, `its labels have ${labels.width} columns`, 'a classifier takes one class label per sample; use --task regression for several targets');
  if (!integers) throw corruptFile(path, `label ${values.find((v) => !Number.isInteger(v))} is not a class (an integer)`, 'leave --task out (or give --task regression) to fit it as a number');
  const code = new Map(distinct.map((value, i) => [value, i]));
  return { task: 'classification', classes: distinct.length, codes: Int32Array.from(values, (v) => code.get(v)!), names: distinct };
}

function shared<T extends Float32Array | Int32Array>(values: T): T {
  const out = new (values.constructor as new (buffer: SharedArrayBuffer) => T)(new SharedArrayBuffer(values.byteLength));
  out.set(values as never);
  return out;
}

/** The split of the rows `rows` (all, when absent), on shared memory. */
function splitOf(arrays: DenseArrays, encoded: ReturnType<typeof encodeLabels>, rows?: Uint32Array): Split {
  const d = arrays.shape.reduce((a, b) => a * b, 1);
  const width = encoded.task === 'regression' ? encoded.classes : 0;
  if (!rows) {
    return { images: shared(arrays.features), labels: shared(encoded.codes), count: arrays.count, ...(encoded.targets ? { targets: shared(encoded.targets) } : {}) };
  }
  const features = new Float32Array(new SharedArrayBuffer(4 * rows.length * d));
  const labels = new Int32Array(new SharedArrayBuffer(4 * rows.length));
  const targets = encoded.targets ? new Float32Array(new SharedArrayBuffer(4 * rows.length * width)) : undefined;
  rows.forEach((r, i) => {
    features.set(arrays.features.subarray(r * d, (r + 1) * d), i * d);
    labels[i] = encoded.codes[r];
    if (targets) targets.set(encoded.targets!.subarray(r * width, (r + 1) * width), i * width);
  });
  return { images: features, labels, count: rows.length, ...(targets ? { targets } : {}) };
}

/** A data set of dense rows: the test set from its own arrays, or a seeded (stratified) tenth of the training arrays. */
export function denseDataset(name: string, train: DenseArrays, test: DenseArrays | undefined, options: { task: Task | 'auto'; seed: number; testName?: string; describe: string }): ImageDataset {
  const trainLabels = encodeLabels(train.labels, name, options.task);
  let testLabels: ReturnType<typeof encodeLabels> | undefined;
  if (test) {
    if (test.shape.join() !== train.shape.join()) throw corruptFile(options.testName ?? 'the test set', `has samples of shape [${test.shape}]`, `the training set's are [${train.shape}]`);
    // the test set's classes are named as the training set's are
    testLabels = encodeLabels(test.labels, options.testName ?? name, trainLabels.task);
    if (trainLabels.task === 'classification') {
      const code = new Map(trainLabels.names.map((n, i) => [n, i]));
      const unseen = testLabels.names.find((n) => !code.has(n));
      if (unseen !== undefined) throw corruptFile(options.testName ?? name, `holds class '${unseen}', which the training set does not`, 'the test set\'s classes must be among the training set\'s');
      testLabels.codes = Int32Array.from(testLabels.codes, (c) => code.get(testLabels!.names[c])!);
    }
  }
  const base = { kind: 'images' as const, name, shape: train.shape, classes: trainLabels.classes, task: trainLabels.task };
  const what = trainLabels.task === 'regression' ? `${trainLabels.classes} regression target${trainLabels.classes > 1 ? 's' : ''}` : `${trainLabels.classes} classes`;
  const describe = `${options.describe}: ${train.shape.reduce((a, b) => a * b, 1)} features, ${what}`;
  if (test && testLabels) return { ...base, train: splitOf(train, trainLabels), test: splitOf(test, testLabels), describe, split: describeSplit(name, options.testName, options.seed, false) };
  const rows = heldOut(train.count, options.seed, trainLabels.task === 'classification' ? trainLabels.codes : undefined);
  return { ...base, train: splitOf(train, trainLabels, rows.train), test: splitOf(train, trainLabels, rows.test), describe, split: describeSplit(name, undefined, options.seed, trainLabels.task === 'classification') };
}

/** Arrays already in memory, as a data set: `x` [count, …shape] features, `y` one class label or target(s) per sample. */
export interface ArraysSpec {
  x: Float32Array | ArrayLike<number>;
  y: ArrayLike<number>;
  /** One sample's shape (default: [features], from x's length / y's). */
  shape?: number[];
  test?: { x: Float32Array | ArrayLike<number>; y: ArrayLike<number> };
  /** Default 'auto': few integers are classes, other numbers regression targets. */
  task?: Task | 'auto';
  /** Targets per sample, for regression with several (default 1). */
  targets?: number;
  name?: string;
  /** Seeds the held-out split when there is no `test` (default 1). */
  seed?: number;
}

export function datasetFromArrays(spec: ArraysSpec): ImageDataset {
  const width = spec.targets ?? 1;
  const name = spec.name ?? 'arrays';
  const toArrays = (x: ArrayLike<number>, y: ArrayLike<number>, what: string): DenseArrays => {
    const count = y.length / width;
    if (!Number.isInteger(count) || count === 0) throw corruptFile(`${name} (${what})`, `has ${y.length} labels`, `give ${width} per sample`);
    const shape = spec.shape ?? [x.length / count];
    const size = shape.reduce((a, b) => a * b, 1);
    if (!Number.isInteger(size) || size * count !== x.length) throw corruptFile(`${name} (${what})`, `has ${x.length} feature values for ${count} samples`, `give ${count} × [${shape}] values, or the right shape`);
    return { features: Float32Array.from(x), shape, count, labels: { numbers: Float64Array.from(y), width } };
  };
  const train = toArrays(spec.x, spec.y, 'train');
  const test = spec.test ? toArrays(spec.test.x, spec.test.y, 'test') : undefined;
  return denseDataset(name, train, test, { task: spec.task ?? 'auto', seed: spec.seed ?? 1, testName: test ? `${name} (test)` : undefined, describe: 'arrays' });
}
