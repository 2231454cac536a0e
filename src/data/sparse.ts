// Sparse binary-classification data: rows in CSR form (row pointers, 0-based feature indices,
// values) and 0/1 labels, all on SharedArrayBuffers so worker threads read them in place.
// Read from libsvm/svmlight text, or generated (an RCV1-like set).

import { readFileSync, existsSync } from 'node:fs';
import { corruptFile, missingData } from '../errors.js';
import { Random, mixSeed, zipfSampler } from '../tensor/random.js';
import { CHAR, Growing, Scanner } from './text-scan.js';

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
  /** Classes of the labels: 2 for binary sets (labels 0/1), K for multi-class (labels 0 … K−1). */
  classes: number;
  /** How the test set was made, when it was drawn from the training file. */
  split?: string;
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

const HINT = 'fix that line (format: label index:value …, indices increasing)';

export interface LibsvmOptions {
  /** Feature indices start at 0 (default: at 1, as libsvm writes them). */
  zeroBased?: boolean;
  /** Refuse labels other than −1/+1 and 0/1, at their line, as the binary models need (parseLibsvm's default). */
  binary?: boolean;
}

export interface ParsedLibsvm {
  rowPtr: Int32Array;
  indices: Int32Array;
  values: Float32Array;
  /** Each row's label as written. */
  labels: Float64Array;
  features: number;
  /** Bytes the parse examined: each once, so this grows as the file does. */
  scanned: number;
}

/**
 * Parses libsvm/svmlight text, one pass over its bytes: `label index:value …` per line, indices
 * increasing, `#` comments and `qid:` ignored, blank lines skipped. Errors name file, line and
 * column.
 */
export function scanLibsvm(bytes: Uint8Array, path: string, options: LibsvmOptions = {}): ParsedLibsvm {
  const scan = new Scanner(bytes);
  const rowPtr = new Growing(new Int32Array(1024));
  const indices = new Growing(new Int32Array(1 << 16));
  const values = new Growing(new Float32Array(1 << 16));
  const labels = new Growing(new Float64Array(1024));
  const base = options.zeroBased ? 0 : 1;
  rowPtr.push(0);
  let features = 0;
  let lineNumber = 0;
  const end = bytes.length;
  while (scan.position < end) {
    lineNumber++;
    const lineStart = scan.position;
    const where = (at: number) => `${path}:${lineNumber}:${at - lineStart + 1}`;
    scan.skipBlanks();
    const first = bytes[scan.position];
    if (scan.position >= end || first === CHAR.newline || first === CHAR.hash) {
      scan.nextLine();
      continue;
    }
    const labelAt = scan.position;
    if (!scan.number() || !endsToken(bytes, scan.position)) {
      const token = scan.tokenAt(labelAt);
      throw corruptFile(where(labelAt), token.includes(':') ? `missing label (the line starts with '${token}')` : `label '${token}' is not a number`, HINT);
    }
    if (options.binary && scan.value !== 1 && scan.value !== -1 && scan.value !== 0) {
      throw corruptFile(where(labelAt), `label ${scan.tokenAt(labelAt)} is not binary`, 'converge\'s sparse models take labels −1/+1 or 0/1');
    }
    labels.push(scan.value);
    let previous = base - 1;
    for (;;) {
      scan.skipBlanks();
      const at = scan.position;
      if (at >= end || bytes[at] === CHAR.newline || bytes[at] === CHAR.hash) break;
      if (bytes[at] === 113 /* q */ && scan.tokenAt(at, CHAR.colon) === 'qid' && bytes[at + 3] === CHAR.colon) {
        scan.position = at + 4;
        scan.number();
        continue;
      }
      if (!scan.integer() || bytes[scan.position] !== CHAR.colon) {
        const token = scan.tokenAt(at);
        const colon = token.indexOf(':');
        if (colon === -1) throw corruptFile(where(at), `'${token}' is not index:value`, HINT);
        throw corruptFile(where(at), `index '${token.slice(0, colon)}' is not an integer`, HINT);
      }
      const index = scan.value;
      if (index < base) throw corruptFile(where(at), `index ${index} is not ≥ 1 (libsvm indices are 1-based)`, 'fix that line, or read the file with --zero-based if its indices start at 0');
      if (index <= previous) throw corruptFile(where(at), `index ${index} ${index === previous ? 'repeats' : `comes after ${previous}`} (indices must increase)`, HINT);
      scan.position++; // the colon
      const valueAt = scan.position;
      if (!scan.number() || !endsToken(bytes, scan.position)) throw corruptFile(where(valueAt), `value '${scan.tokenAt(valueAt)}' is not a number`, HINT);
      if (!Number.isFinite(scan.value)) throw corruptFile(where(valueAt), `value '${scan.tokenAt(valueAt)}' is not a finite number`, HINT);
      previous = index;
      indices.push(index - base);
      values.push(scan.value);
      if (index - base + 1 > features) features = index - base + 1;
    }
    rowPtr.push(indices.length);
    scan.nextLine();
  }
  if (labels.length === 0) throw corruptFile(path, 'holds no examples', HINT);
  return { rowPtr: rowPtr.values(), indices: indices.values(), values: values.values(), labels: labels.values(), features, scanned: scan.scanned };
}

/** A number's text ends at a blank, a newline, a comment or the end. */
function endsToken(bytes: Uint8Array, at: number): boolean {
  const b = bytes[at];
  return at >= bytes.length || b === CHAR.space || b === CHAR.tab || b === CHAR.cr || b === CHAR.newline || b === CHAR.hash;
}

/**
 * The classes of a file's labels: binary files (−1/+1 or 0/1) as 0 and 1; others (1, 2, 3, …)
 * as 0 … K−1 in the order of their values. Labels must be integers.
 */
export function labelClasses(labels: Float64Array, path: string): { classes: number; names: number[]; codes: Float32Array } {
  const distinct: number[] = [...new Set(labels)].sort((a, b) => a - b);
  const bad = distinct.find((l) => !Number.isInteger(l));
  if (bad !== undefined) throw corruptFile(path, `the label of example ${labels.indexOf(bad) + 1} is ${bad}, not a class (an integer)`, 'converge\'s classifiers take integer class labels; for a regression target use a CSV file with --label-column');
  // −1, 0 and +1 are the two classes of binary files (−1 and 0 both negative); anything else names classes
  if (!distinct.some((l) => l !== -1 && l !== 0 && l !== 1)) return { classes: 2, names: [0, 1], codes: Float32Array.from(labels, (l) => (l > 0 ? 1 : 0)) };
  const names = distinct;
  const code = new Map(names.map((name, i) => [name, i]));
  return { classes: names.length, names, codes: Float32Array.from(labels, (l) => code.get(l)!) };
}

/** libsvm text (or its bytes) as a split: binary labels as 0/1 (only those, unless `binary: false`), others as classes 0 … K−1. */
export function parseLibsvm(text: string | Uint8Array, path: string, options: LibsvmOptions = {}): { split: SparseSplit; features: number; classes: number; scanned: number } {
  const parsed = scanLibsvm(typeof text === 'string' ? Buffer.from(text, 'latin1') : text, path, { binary: true, ...options });
  const { classes, codes } = labelClasses(parsed.labels, path);
  return { split: toSparseSplit(parsed.rowPtr, parsed.indices, parsed.values, codes), features: parsed.features, classes, scanned: parsed.scanned };
}

export function readLibsvm(path: string, options: LibsvmOptions = {}): { split: SparseSplit; features: number; classes: number } {
  if (!existsSync(path)) throw missingData('libsvm file', path, 'check the --dataset / --test-dataset path.');
  return parseLibsvm(readFileSync(path), path, options);
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
    kind: 'sparse', name: 'rcv1-like', features: o.features, classes: 2,
    train: toSparseSplit(train.rowPtr, train.indices, train.values, labelsOf(trainNoisy)),
    test: toSparseSplit(test.rowPtr, test.indices, test.values, labelsOf(noisy(test.margins))),
  };
}
