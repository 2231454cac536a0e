// Deterministic shuffling and sharding. Each epoch has one permutation of the training set,
// made from (seed, epoch). Step s of the epoch takes the next P·b indices of it, and worker r
// takes its b-index slice, so the workers' shards are disjoint and P workers with batch b see
// exactly the samples one worker with batch P·b would see.

import { Random, mixSeed } from '../tensor/random.js';
import type { AnyBatch, Batch, RatingBatch, SparseBatch } from '../models/model.js';
import type { Dataset, Split } from './dataset.js';
import type { RatingSplit } from './ratings.js';
import type { SparseSplit } from './sparse.js';

/** Fills one reusable batch from a split, by shuffled order or by range, without allocating. */
export interface Batcher<B extends AnyBatch = AnyBatch> {
  readonly batch: B;
  fromOrder(order: Uint32Array, start: number, count: number): B;
  range(first: number, count: number): B;
  /** The whole split as one batch, without copying (sparse rows and ratings), for per-example loops. */
  whole?(): B;
}

/** Fills `order` with a permutation of 0..order.length−1 for this epoch (Fisher–Yates). */
export function epochOrder(order: Uint32Array, seed: number, epoch: number): Uint32Array {
  for (let i = 0; i < order.length; i++) order[i] = i;
  const random = new Random(mixSeed(seed, epoch, 0x5eed));
  for (let i = order.length - 1; i > 0; i--) {
    const j = random.below(i + 1);
    const t = order[i];
    order[i] = order[j];
    order[j] = t;
  }
  return order;
}

/** Whole global batches per epoch; the remainder (< P·b samples) is dropped. */
export function stepsPerEpoch(samples: number, workers: number, batch: number): number {
  return Math.floor(samples / (workers * batch));
}

/** One reusable batch buffer: fills itself from a split without allocating. */
export class BatchMaker implements Batcher<Batch> {
  readonly batch: Batch;
  private readonly sampleSize: number;
  private readonly outputs: number;
  // bytes are pixels, scaled to [0, 1]; float32 features are taken as they are
  private readonly scale: number;

  constructor(private readonly split: Split, sampleShape: readonly number[], capacity: number) {
    this.sampleSize = sampleShape.reduce((a, b) => a * b, 1);
    this.outputs = split.targets ? split.targets.length / Math.max(1, split.count) : 0;
    this.scale = split.images instanceof Float32Array ? 1 : 1 / 255;
    this.batch = { x: new Float32Array(capacity * this.sampleSize), y: new Int32Array(capacity), size: 0, ...(split.targets ? { targets: new Float32Array(capacity * this.outputs) } : {}) };
  }

  /** The batch of `order[start .. start + count)`. */
  fromOrder(order: Uint32Array, start: number, count: number): Batch {
    const { x, y, targets } = this.batch;
    const d = this.sampleSize;
    const images = this.split.images;
    const scale = this.scale;
    // a stream's split not yet full: the epoch's order over every slot, folded onto the slots held
    const held = this.split.filled ? this.split.filled[0] : this.split.count;
    for (let i = 0; i < count; i++) {
      const index = order[start + i] % held;
      const source = index * d;
      const target = i * d;
      for (let j = 0; j < d; j++) x[target + j] = images[source + j] * scale;
      y[i] = this.split.labels[index];
      if (targets) for (let k = 0; k < this.outputs; k++) targets[i * this.outputs + k] = this.split.targets![index * this.outputs + k];
    }
    this.batch.size = count;
    return this.batch;
  }

  /** The batch of samples first .. first + count − 1, in order (for evaluation). */
  range(first: number, count: number): Batch {
    const { x, y, targets } = this.batch;
    const d = this.sampleSize;
    const images = this.split.images;
    const scale = this.scale;
    const base = first * d;
    for (let i = 0; i < count * d; i++) x[i] = images[base + i] * scale;
    for (let i = 0; i < count; i++) y[i] = this.split.labels[first + i];
    if (targets) targets.set(this.split.targets!.subarray(first * this.outputs, (first + count) * this.outputs));
    this.batch.size = count;
    return this.batch;
  }
}

/** The contiguous share [start, end) of `count` items that rank `rank` of `size` takes. */
/** Where worker `worker` of P takes its minibatch of a step in the epoch's order: the w-th slice of the step's global batch. */
export function shardStart(step: number, workers: number, worker: number, batch: number): number {
  return (step * workers + worker) * batch;
}

export function shareOf(count: number, rank: number, size: number): [number, number] {
  return [Math.floor((count * rank) / size), Math.floor((count * (rank + 1)) / size)];
}

export class SparseBatchMaker implements Batcher<SparseBatch> {
  readonly batch: SparseBatch;

  whole(): SparseBatch {
    const s = this.split;
    return { rowPtr: s.rowPtr, indices: s.indices, values: s.values, y: s.labels, size: s.count };
  }

  constructor(private readonly split: SparseSplit, capacity: number) {
    const entries = capacity * Math.max(1, split.maxRowLength);
    this.batch = { rowPtr: new Int32Array(capacity + 1), indices: new Int32Array(entries), values: new Float32Array(entries), y: new Float32Array(capacity), size: 0 };
  }

  private add(row: number, i: number): void {
    const { rowPtr, indices, values, y } = this.batch;
    const s = this.split;
    let k = rowPtr[i];
    for (let source = s.rowPtr[row]; source < s.rowPtr[row + 1]; source++, k++) {
      indices[k] = s.indices[source];
      values[k] = s.values[source];
    }
    rowPtr[i + 1] = k;
    y[i] = s.labels[row];
  }

  fromOrder(order: Uint32Array, start: number, count: number): SparseBatch {
    this.batch.rowPtr[0] = 0;
    for (let i = 0; i < count; i++) this.add(order[start + i], i);
    this.batch.size = count;
    return this.batch;
  }

  range(first: number, count: number): SparseBatch {
    this.batch.rowPtr[0] = 0;
    for (let i = 0; i < count; i++) this.add(first + i, i);
    this.batch.size = count;
    return this.batch;
  }
}

export class RatingBatchMaker implements Batcher<RatingBatch> {
  readonly batch: RatingBatch;

  whole(): RatingBatch {
    return { users: this.split.users, items: this.split.items, ratings: this.split.ratings, size: this.split.count };
  }

  constructor(private readonly split: RatingSplit, capacity: number) {
    this.batch = { users: new Int32Array(capacity), items: new Int32Array(capacity), ratings: new Float32Array(capacity), size: 0 };
  }

  fromOrder(order: Uint32Array, start: number, count: number): RatingBatch {
    const { users, items, ratings } = this.batch;
    for (let i = 0; i < count; i++) {
      const j = order[start + i];
      users[i] = this.split.users[j];
      items[i] = this.split.items[j];
      ratings[i] = this.split.ratings[j];
    }
    this.batch.size = count;
    return this.batch;
  }

  range(first: number, count: number): RatingBatch {
    this.batch.users.set(this.split.users.subarray(first, first + count));
    this.batch.items.set(this.split.items.subarray(first, first + count));
    this.batch.ratings.set(this.split.ratings.subarray(first, first + count));
    this.batch.size = count;
    return this.batch;
  }
}

/** The batcher for a data set's kind. */
export function makeBatcher(dataset: Dataset, which: 'train' | 'test', capacity: number): Batcher {
  switch (dataset.kind) {
    case 'images':
      return new BatchMaker(dataset[which], dataset.shape, capacity);
    case 'sparse':
      return new SparseBatchMaker(dataset[which], capacity);
    case 'ratings':
      return new RatingBatchMaker(dataset[which], capacity);
  }
}
