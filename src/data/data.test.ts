import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { encodeIdx, parseIdx, readIdx } from './idx.js';
import { loadIdxDataset, knownDatasets } from './dataset.js';
import { loadAnyDataset } from './load.js';
import { BatchMaker, RatingBatchMaker, SparseBatchMaker, epochOrder, shardStart, shareOf, stepsPerEpoch } from './batches.js';

function writeSet(dir: string, trainImages: number, trainLabels: number, options: { gzip?: boolean } = {}): void {
  const write = (name: string, shape: number[]) => {
    const data = Uint8Array.from({ length: shape.reduce((a, b) => a * b, 1) }, (_, i) => i % 7);
    const bytes = encodeIdx(shape, data);
    writeFileSync(join(dir, options.gzip ? `${name}.gz` : name), options.gzip ? gzipSync(bytes) : bytes);
  };
  write('train-images-idx3-ubyte', [trainImages, 4, 3]);
  write('train-labels-idx1-ubyte', [trainLabels]);
  write('t10k-images-idx3-ubyte', [5, 4, 3]);
  write('t10k-labels-idx1-ubyte', [5]);
}

test('IDX files load raw and gzipped', () => {
  for (const gzip of [false, true]) {
    const dir = mkdtempSync(join(tmpdir(), 'converge-idx-'));
    writeSet(dir, 9, 9, { gzip });
    const data = loadIdxDataset('tiny', dir);
    assert.deepEqual(data.shape, [1, 4, 3]);
    assert.equal(data.train.count, 9);
    assert.equal(data.test.count, 5);
    assert.equal(data.classes, 7);
    assert.ok(data.train.images.buffer instanceof SharedArrayBuffer);
  }
});

test('bad IDX input gives one clear error each', () => {
  assert.throws(() => parseIdx(new Uint8Array([1, 2, 3, 4, 5]), 'x.idx'), /x\.idx: not an IDX file \(magic bytes 01 02 03 04/);
  const good = encodeIdx([10, 2, 2], new Uint8Array(40));
  assert.throws(() => parseIdx(good.subarray(0, good.length - 3), 'cut.idx'), /cut\.idx: truncated: header promises 40 bytes.*holds 37/);
  assert.throws(() => parseIdx(good.subarray(0, 9), 'head.idx'), /truncated in its header/);
  const gz = gzipSync(good);
  assert.throws(() => parseIdx(gz.subarray(0, gz.length - 10), 'bad.gz'), /bad\.gz: gzip data is damaged/);
  assert.throws(() => readIdx('/nonexistent/file.idx'), /^ConvergeError: IDX file not found at \/nonexistent\/file\.idx; check --data-dir \(for Fashion-MNIST: apt-get install dataset-fashion-mnist\)\.$/);
  const dir = mkdtempSync(join(tmpdir(), 'converge-idx-'));
  writeSet(dir, 9, 8);
  assert.throws(() => loadIdxDataset('tiny', dir), /train-labels-idx1-ubyte against .*train-images-idx3-ubyte: expected one label per image \(9\), got 8 labels/);
  assert.throws(() => loadIdxDataset('tiny', join(dir, 'missing')), /data set 'tiny' not found at .*missing; give --data-dir/);
  const empty = mkdtempSync(join(tmpdir(), 'converge-idx-'));
  assert.throws(() => loadIdxDataset('tiny', empty), /train-images-idx3-ubyte\(\.gz\) not found/);
  assert.throws(() => loadAnyDataset('cifar', { seed: 1 }), /unknown dataset 'cifar'; choose one of: fashion-mnist, mnist, synthetic, rcv1-like, netflix-like/);
  assert.throws(() => loadAnyDataset('/no/such.svm', { seed: 1 }), /data set '\/no\/such\.svm' not found at \/no\/such\.svm/);
});

test('Fashion-MNIST from the Debian package, when installed', { skip: !existsSync(knownDatasets['fashion-mnist'] as string) }, () => {
  const data = loadIdxDataset('fashion-mnist', knownDatasets['fashion-mnist'] as string);
  assert.equal(data.train.count, 60000);
  assert.equal(data.test.count, 10000);
  assert.deepEqual(data.shape, [1, 28, 28]);
  assert.equal(data.classes, 10);
  // the first labels of each split, as Fashion-MNIST publishes them (9 is an ankle boot)
  assert.deepEqual([...data.train.labels.subarray(0, 10)], [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
  assert.deepEqual([...data.test.labels.subarray(0, 10)], [9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
});

test('IDX bytes as the format lays them out, written by hand: a big-endian shape after 00 00 08 dims, then the data; every other header refused', () => {
  const file = Uint8Array.of(0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 1, 0, 0, 0, 0, 1, ...Array.from({ length: 512 }, (_, i) => i % 251), 77);
  const { shape, data } = parseIdx(file, 'h.idx');
  assert.deepEqual(shape, [2, 256, 1]);
  assert.deepEqual([...data], Array.from({ length: 512 }, (_, i) => i % 251), 'the data, without the byte past it');
  assert.deepEqual([...encodeIdx([2, 256, 1], data)], [...file.subarray(0, file.length - 1)]);
  assert.throws(() => parseIdx(Uint8Array.of(0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0), 'f.idx'), /^ConvergeError: f\.idx: IDX element type 0xd is not unsigned byte \(0x08\); converge reads 8-bit IDX files$/);
  for (const dims of [0, 5]) assert.throws(() => parseIdx(Uint8Array.of(0, 0, 8, dims, 0, 0, 0, 1, 0), 'd.idx'), new RegExp(`d\\.idx: IDX header claims ${dims} dimensions`));
  assert.throws(() => parseIdx(new Uint8Array(0), 'e.idx'), /e\.idx: not an IDX file \(magic bytes missing, expected 00 00 08 0N\)/);
  assert.throws(() => parseIdx(Uint8Array.of(0, 1, 8, 1), 'm.idx'), /m\.idx: not an IDX file \(magic bytes 00 01 08 01/);
  assert.throws(() => parseIdx(Uint8Array.of(0, 0, 8), 's.idx'), /s\.idx: not an IDX file \(magic bytes 00 00 08,/);
  assert.deepEqual(parseIdx(Uint8Array.of(0, 0, 8, 4, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 42), 'four.idx'), { shape: [1, 1, 1, 1], data: Uint8Array.of(42) }, 'four dimensions are read');
});

test('IDX at its edges: a 1f byte alone is no gzip, a header of exactly its size holds an empty array, four bytes are a header cut short', () => {
  assert.throws(() => parseIdx(Uint8Array.of(0x1f, 0, 8, 1, 0, 0, 0, 0), 'g.idx'), /^ConvergeError: g\.idx: not an IDX file \(magic bytes 1f 00 08 01, expected 00 00 08 0N\)/);
  assert.deepEqual(parseIdx(Uint8Array.of(0, 0, 8, 1, 0, 0, 0, 0), 'z.idx'), { shape: [0], data: new Uint8Array(0) });
  assert.throws(() => parseIdx(Uint8Array.of(0, 0, 8, 1), 'h.idx'), /^ConvergeError: h\.idx: truncated in its header \(4 bytes\); download it again or point --data-dir at an intact copy$/);
  assert.throws(() => parseIdx(Uint8Array.of(0, 0, 8, 2, 0, 0, 0, 1, 0, 0, 0), 'h.idx'), /h\.idx: truncated in its header \(11 bytes\)/);
});

test('epoch order is a permutation, deterministic from (seed, epoch), and differs between epochs', () => {
  const a = epochOrder(new Uint32Array(1000), 7, 0);
  assert.deepEqual([...a].sort((x, y) => x - y), Array.from({ length: 1000 }, (_, i) => i));
  assert.deepEqual(epochOrder(new Uint32Array(1000), 7, 0), a);
  assert.notDeepEqual(epochOrder(new Uint32Array(1000), 7, 1), a);
  assert.notDeepEqual(epochOrder(new Uint32Array(1000), 8, 0), a);
});

test('worker shards of one step are disjoint and together make the global batch', () => {
  const order = epochOrder(new Uint32Array(100), 3, 0);
  const workers = 3;
  const batch = 4;
  assert.equal(stepsPerEpoch(100, workers, batch), 8);
  // a global batch that divides the samples leaves none out; one that does not drops the remainder
  assert.deepEqual([stepsPerEpoch(96, 3, 4), stepsPerEpoch(95, 3, 4), stepsPerEpoch(12, 3, 4), stepsPerEpoch(11, 3, 4)], [8, 7, 1, 0]);
  // the offsets the training loop uses: 8 steps × 3 workers × 4 samples, no sample twice
  const seen = new Set<number>();
  for (let step = 0; step < 8; step++) {
    for (let rank = 0; rank < workers; rank++) {
      const start = shardStart(step, workers, rank, batch);
      for (let i = 0; i < batch; i++) seen.add(order[start + i]);
    }
  }
  assert.equal(seen.size, 96);
  assert.deepEqual(shareOf(10, 0, 3), [0, 3]);
  assert.deepEqual(shareOf(10, 2, 3), [6, 10]);
});

test('batch maker scales pixels to [0, 1] and copies labels without allocating', () => {
  const images = Uint8Array.from([0, 255, 51, 102]);
  const split = { images, labels: Uint8Array.from([3, 4]), count: 2 };
  const maker = new BatchMaker(split, [2], 2);
  const batch = maker.fromOrder(Uint32Array.from([1, 0]), 0, 2);
  assert.deepEqual([...batch.x].map((v) => +v.toFixed(2)), [0.2, 0.4, 0, 1]);
  assert.deepEqual([...batch.y], [4, 3]);
  assert.equal(maker.range(1, 1).x, batch.x, 'same buffer reused');
});

test('an epoch order is a uniform permutation: every sample lands in every position equally often', () => {
  // 4 samples, 40,000 epochs: each (sample, position) pair 10,000 times ± ~90 (binomial); a
  // Fisher–Yates off by one (Sattolo's cycles, or a fixed last element) leaves cells at 0 or 2×
  const n = 4;
  const epochs = 40_000;
  const counts = Array.from({ length: n }, () => new Array<number>(n).fill(0));
  const order = new Uint32Array(n);
  for (let epoch = 0; epoch < epochs; epoch++) {
    epochOrder(order, 3, epoch);
    assert.deepEqual([...order].sort(), [0, 1, 2, 3]);
    for (let position = 0; position < n; position++) counts[order[position]][position]++;
  }
  for (const row of counts) for (const count of row) assert.ok(Math.abs(count - epochs / n) < 600, `a sample landed in a position ${count} times of ${epochs}`);
});

test('the batch makers copy exactly the rows the order names: images with regression targets, sparse rows, ratings', () => {
  const order = Uint32Array.from([2, 0, 1, 3]);
  // dense float rows (not rescaled) with two targets each
  const dense = new BatchMaker({ images: Float32Array.from([0, 1, 10, 11, 20, 21, 30, 31]), labels: Int32Array.from([5, 6, 7, 8]), targets: Float32Array.from([0.5, -0.5, 1.5, -1.5, 2.5, -2.5, 3.5, -3.5]), count: 4 }, [2], 3);
  const batch = dense.fromOrder(order, 1, 3); // rows 0, 1, 3
  assert.deepEqual([...batch.x.subarray(0, 6)], [0, 1, 10, 11, 30, 31]);
  assert.deepEqual([...batch.y.subarray(0, 3)], [5, 6, 8]);
  assert.deepEqual([...batch.targets!.subarray(0, 6)], [0.5, -0.5, 1.5, -1.5, 3.5, -3.5]);
  assert.equal(batch.size, 3);
  // CSR rows of lengths 2, 0, 3, 1
  const sparse = { rowPtr: Int32Array.from([0, 2, 2, 5, 6]), indices: Int32Array.from([1, 4, 0, 2, 3, 7]), values: Float32Array.from([1, 2, 3, 4, 5, 6]), labels: Float32Array.from([1, 0, 1, 0]), count: 4, maxRowLength: 3 };
  const rows = new SparseBatchMaker(sparse, 3);
  const picked = rows.fromOrder(order, 0, 3); // rows 2, 0, 1
  assert.deepEqual([...picked.rowPtr.subarray(0, 4)], [0, 3, 5, 5]);
  assert.deepEqual([...picked.indices.subarray(0, 5)], [0, 2, 3, 1, 4]);
  assert.deepEqual([...picked.values.subarray(0, 5)], [3, 4, 5, 1, 2]);
  assert.deepEqual([...picked.y.subarray(0, 3)], [1, 1, 0]);
  const ranged = rows.range(2, 2); // rows 2, 3
  assert.deepEqual([...ranged.rowPtr.subarray(0, 3)], [0, 3, 4]);
  assert.deepEqual([...ranged.indices.subarray(0, 4)], [0, 2, 3, 7]);
  assert.deepEqual([ranged.size, rows.whole().size, rows.whole().indices.length], [2, 4, 6]);
  const ratings = { users: Int32Array.from([10, 11, 12, 13]), items: Int32Array.from([20, 21, 22, 23]), ratings: Float32Array.from([1, 2, 3, 4]), count: 4 };
  const rated = new RatingBatchMaker(ratings, 3);
  const b = rated.fromOrder(order, 1, 3); // rows 0, 1, 3
  assert.deepEqual([[...b.users.subarray(0, 3)], [...b.items.subarray(0, 3)], [...b.ratings.subarray(0, 3)], b.size], [[10, 11, 13], [20, 21, 23], [1, 2, 4], 3]);
  const r = rated.range(1, 2);
  assert.deepEqual([[...r.users.subarray(0, 2)], [...r.ratings.subarray(0, 2)], r.size, rated.whole().size], [[11, 12], [2, 3], 2, 4]);
});
