// Sparse binary-classification data: rows in CSR form (row pointers, 0-based feature indices,
// values) and 0/1 labels, all on SharedArrayBuffers so worker threads read them in place.
// Read from libsvm/svmlight text, or generated (an RCV1-like set).

import { readFileSync, existsSync } from 'node:fs';
import { corruptFile, missingData } from '../errors.js';
import { Random, mixSeed, zipfSampler } from '../tensor/random.js';

export interface SparseSplit {
  rowPtr: Int32Array; // [count + 1]
  indices: Int32Array; // [nnz], 0-based, increasing within a row
  values: Float32Array; // [nnz]
  labels: Float32Array; // [count], 0 or 1
  count: number;
  maxRowLength: number;
}

export interface SparseDataset {
  kind: 'sparse';
  name: string;
  features: number;
  train: SparseSplit;
  test: SparseSplit;
}

function shared<T extends Int32Array | Float32Array>(make: new (buffer: SharedArrayBuffer) => T, source: ArrayLike<number>, bytes: number): T {
  const out = new make(new SharedArrayBuffer(bytes * source.length));
  out.set(source);
  return out;
}

export function toSparseSplit(rowPtr: ArrayLike<number>, indices: ArrayLike<number>, values: ArrayLike<number>, labels: ArrayLike<number>): SparseSplit {
  let maxRowLength = 0;
  for (let r = 0; r + 1 < rowPtr.length; r++) maxRowLength = Math.max(maxRowLength, rowPtr[r + 1] - rowPtr[r]);
  return {
    rowPtr: shared(Int32Array, rowPtr, 4), indices: shared(Int32Array, indices, 4), values: shared(Float32Array, values, 4),
    labels: shared(Float32Array, labels, 4), count: labels.length, maxRowLength,
  };
}

const HINT = 'fix that line (format: label index:value …, indices 1-based and increasing)';

/**
 * Parses libsvm/svmlight text: `label index:value …` per line, 1-based increasing indices,
 * `#` comments and `qid:` ignored, blank lines skipped. Labels −1/+1 or 0/1. Errors name
 * file, line and column.
 */
export function parseLibsvm(text: string, path: string): { split: SparseSplit; features: number } {
  const rowPtr: number[] = [0];
  const indices: number[] = [];
  const values: number[] = [];
  const labels: number[] = [];
  let features = 0;
  let lineNumber = 0;
  let lineStart = 0;
  while (lineStart <= text.length) {
    let lineEnd = text.indexOf('\n', lineStart);
    if (lineEnd === -1) lineEnd = text.length;
    lineNumber++;
    const hash = text.indexOf('#', lineStart);
    const contentEnd = hash !== -1 && hash < lineEnd ? hash : lineEnd;
    const where = (column: number) => `${path}:${lineNumber}:${column - lineStart + 1}`;
    let position = lineStart;
    let previous = 0;
    let first = true;
    while (position < contentEnd) {
      while (position < contentEnd && (text.charCodeAt(position) === 32 || text.charCodeAt(position) === 9 || text.charCodeAt(position) === 13)) position++;
      if (position >= contentEnd) break;
      let tokenEnd = position;
      while (tokenEnd < contentEnd && text.charCodeAt(tokenEnd) !== 32 && text.charCodeAt(tokenEnd) !== 9 && text.charCodeAt(tokenEnd) !== 13) tokenEnd++;
      const token = text.slice(position, tokenEnd);
      const colon = token.indexOf(':');
      if (first) {
        first = false;
        if (colon !== -1) throw corruptFile(where(position), `missing label (the line starts with '${token}')`, HINT);
        const label = Number(token);
        if (token === '' || !Number.isFinite(label)) throw corruptFile(where(position), `label '${token}' is not a number`, HINT);
        if (label !== 1 && label !== -1 && label !== 0) throw corruptFile(where(position), `label ${token} is not binary`, 'converge\'s sparse models take labels −1/+1 or 0/1');
        labels.push(label > 0 ? 1 : 0);
      } else {
        if (colon === -1) throw corruptFile(where(position), `'${token}' is not index:value`, HINT);
        const key = token.slice(0, colon);
        if (key === 'qid') {
          position = tokenEnd;
          continue;
        }
        const index = Number(key);
        if (!Number.isInteger(index)) throw corruptFile(where(position), `index '${key}' is not an integer`, HINT);
        if (index <= 0) throw corruptFile(where(position), `index ${index} is not ≥ 1 (libsvm indices are 1-based)`, HINT);
        if (index <= previous) throw corruptFile(where(position), `index ${index} ${index === previous ? 'repeats' : `comes after ${previous}`} (indices must increase)`, HINT);
        const valueText = token.slice(colon + 1);
        const value = Number(valueText);
        if (valueText === '' || !Number.isFinite(value)) throw corruptFile(where(position + colon + 1), `value '${valueText}' is not a number`, HINT);
        previous = index;
        indices.push(index - 1);
        values.push(value);
        if (index > features) features = index;
      }
      position = tokenEnd;
    }
    if (!first) rowPtr.push(indices.length);
    lineStart = lineEnd + 1;
  }
  if (labels.length === 0) throw corruptFile(path, 'holds no examples', HINT);
  return { split: toSparseSplit(rowPtr, indices, values, labels), features };
}

export function readLibsvm(path: string): { split: SparseSplit; features: number } {
  if (!existsSync(path)) throw missingData('libsvm file', path, 'check the --dataset / --test-dataset path.');
  return parseLibsvm(readFileSync(path, 'latin1'), path);
}

export function formatLibsvm(split: SparseSplit): string {
  const lines: string[] = [];
  for (let r = 0; r < split.count; r++) {
    const parts = [split.labels[r] > 0 ? '+1' : '-1'];
    for (let k = split.rowPtr[r]; k < split.rowPtr[r + 1]; k++) parts.push(`${split.indices[k] + 1}:${+split.values[k].toPrecision(6)}`);
    lines.push(parts.join(' '));
  }
  return `${lines.join('\n')}\n`;
}

export interface Rcv1LikeOptions {
  rows: number;
  testRows: number;
  features: number;
  nonZeros: number; // mean per row
  seed: number;
}

export const rcv1LikeDefaults: Rcv1LikeOptions = { rows: 200_000, testRows: 20_000, features: 100_000, nonZeros: 40, seed: 1 };

/**
 * An RCV1-like set: feature frequencies follow a power law (Zipf, exponent 1.1), each row has
 * about `nonZeros` distinct features with tf-idf-like values normalised to unit length, and
 * labels come from a hidden sparse weight vector plus noise, balanced by thresholding.
 */
export function generateRcv1Like(o: Rcv1LikeOptions): SparseDataset {
  const random = new Random(mixSeed(o.seed, 0x5c1));
  // a position in the frequency order (Zipf, exponent 1.1); the feature is rank[position]
  const sample = zipfSampler(o.features, 1.1, random);
  // a random feature ranking, so frequent features are not simply the first indices
  const rank = new Int32Array(o.features).map((_, i) => i);
  for (let i = o.features - 1; i > 0; i--) {
    const j = random.below(i + 1);
    [rank[i], rank[j]] = [rank[j], rank[i]];
  }
  // hidden weights: a tenth of the features matter
  const weights = new Float32Array(o.features);
  for (let j = 0; j < o.features; j++) if (random.next() < 0.1) weights[j] = random.normal();
  // rarer features weigh more, as inverse document frequency makes them
  const idf = (position: number) => 1 + Math.log(1 + position);

  const make = (count: number) => {
    const rowPtr = new Int32Array(count + 1);
    const indices: number[] = [];
    const values: number[] = [];
    const margins = new Float64Array(count);
    const row = new Set<number>();
    for (let r = 0; r < count; r++) {
      const length = Math.max(1, Math.round(o.nonZeros * (0.5 + random.next())));
      row.clear();
      for (let attempts = 0; row.size < length && attempts < 20 * length; attempts++) row.add(sample());
      const sorted = [...row].map((position) => [rank[position], position]).sort((a, b) => a[0] - b[0]);
      const start = values.length;
      let norm = 0;
      for (const [j, position] of sorted) {
        const v = (1 + random.below(3)) * idf(position);
        indices.push(j);
        values.push(v);
        norm += v * v;
      }
      const scale = 1 / Math.sqrt(norm);
      let margin = 0;
      for (let k = start; k < values.length; k++) {
        values[k] *= scale;
        margin += values[k] * weights[indices[k]];
      }
      margins[r] = margin;
      rowPtr[r + 1] = values.length;
    }
    return { rowPtr, indices, values, margins };
  };
  const train = make(o.rows);
  const test = make(o.testRows);
  // noise of half the margins' spread, then the median as threshold: balanced, learnable, not separable
  let sum = 0;
  let squares = 0;
  for (const m of train.margins) {
    sum += m;
    squares += m * m;
  }
  const spread = Math.sqrt(Math.max(1e-12, squares / o.rows - (sum / o.rows) ** 2));
  const noisy = (margins: Float64Array) => margins.map((m) => m + 0.5 * spread * random.normal());
  const trainNoisy = noisy(train.margins);
  const threshold = [...trainNoisy].sort((a, b) => a - b)[o.rows >> 1];
  const labelsOf = (m: Float64Array) => Float32Array.from(m, (v) => (v > threshold ? 1 : 0));
  return {
    kind: 'sparse', name: 'rcv1-like', features: o.features,
    train: toSparseSplit(train.rowPtr, train.indices, train.values, labelsOf(trainNoisy)),
    test: toSparseSplit(test.rowPtr, test.indices, test.values, labelsOf(noisy(test.margins))),
  };
}
