// A training split that a stream fills while the run trains (online training from running
// simulations, as Melissa-DL does): a buffer of `capacity` samples that takes every sample as it
// arrives — appended while there is room, then in place of an evicted one (a random one, or the
// oldest) — and from which the loop draws its batches, so a sample may be seen several times.
// Training waits until the buffer holds `threshold` samples, and lets the producers in (turns
// the event loop) before every step.

import { ConvergeError } from '../errors.js';
import { Random } from '../tensor/random.js';
import type { ImageDataset, Split, Stream } from './dataset.js';

export type Eviction = 'random' | 'oldest';
export const evictions: readonly Eviction[] = ['random', 'oldest'];

export interface ReservoirOptions {
  capacity: number;
  /** Floats of one sample's input, and of its target. */
  inputs: number;
  targets: number;
  /** Samples held before the first step may run (1 ≤ threshold ≤ capacity). */
  threshold: number;
  evict: Eviction;
  seed: number;
}

export interface ReservoirSnapshot {
  images: Float32Array;
  targets: Float32Array;
  held: number;
  received: number;
  evicted: number;
  oldest: number;
  random: number;
}

export class Reservoir implements Stream {
  /** The split the loop reads: `capacity` slots, of which the first `filled[0]` hold samples. */
  readonly split: Split & { filled: Int32Array; targets: Float32Array; images: Float32Array };
  /** Samples put, and samples evicted to make room. */
  received = 0;
  evicted = 0;
  private readonly random: Random;
  /** The slot the oldest sample holds, once full (a ring). */
  private oldest = 0;
  private ended = false;
  private wake: (() => void) | null = null;

  constructor(readonly options: ReservoirOptions) {
    const { capacity, inputs, targets, threshold } = options;
    if (!(Number.isInteger(capacity) && capacity >= 1)) throw new ConvergeError(`reservoir: capacity ${capacity}; give a whole number of samples ≥ 1.`, 'BAD_OPTION');
    if (!(Number.isInteger(threshold) && threshold >= 1 && threshold <= capacity)) throw new ConvergeError(`reservoir: threshold ${threshold}; give a whole number of samples from 1 to the capacity (${capacity}).`, 'BAD_OPTION');
    this.split = {
      images: new Float32Array(capacity * inputs),
      labels: new Int32Array(capacity),
      targets: new Float32Array(capacity * targets),
      count: capacity,
      filled: new Int32Array(1),
    };
    this.random = new Random(options.seed);
  }

  /** Samples held now. */
  get held(): number {
    return this.split.filled[0];
  }

  /** Takes one sample (its values are copied); evicts one when full. */
  put(input: ArrayLike<number>, target: ArrayLike<number>): void {
    const { capacity, inputs, targets, evict } = this.options;
    if (input.length !== inputs || target.length !== targets) throw new ConvergeError(`reservoir: a sample of ${input.length} inputs and ${target.length} targets; this buffer holds ${inputs} and ${targets}.`, 'SHAPE_MISMATCH');
    let slot = this.held;
    if (slot < capacity) this.split.filled[0] = slot + 1;
    else {
      slot = evict === 'oldest' ? this.oldest : this.random.below(capacity);
      this.oldest = (this.oldest + 1) % capacity;
      this.evicted++;
    }
    this.split.images.set(input, slot * inputs);
    this.split.targets.set(target, slot * targets);
    this.received++;
    if (this.held >= this.options.threshold) this.wakeUp();
  }

  /** No more samples will come: a step no longer waits for the threshold. */
  end(): void {
    this.ended = true;
    this.wakeUp();
  }

  /** Resolves once the buffer holds its threshold (or the stream ended), after letting the producers in. */
  async beforeStep(): Promise<void> {
    // a step's compute is synchronous: without this turn, sockets would be read only inside collectives
    await new Promise<void>((resolve) => setImmediate(resolve));
    while (this.held < this.options.threshold && !this.ended) await new Promise<void>((resolve) => (this.wake = resolve));
    if (this.held === 0) throw new ConvergeError('reservoir: the stream ended before it gave a single sample; nothing to train on.', 'BAD_DATA');
  }

  private wakeUp(): void {
    const wake = this.wake;
    this.wake = null;
    wake?.();
  }

  /** What the buffer holds and where its eviction stands, as plain data for a checkpoint. */
  snapshot(): ReservoirSnapshot {
    const { images, targets, filled } = this.split;
    return { images, targets, held: filled[0], received: this.received, evicted: this.evicted, oldest: this.oldest, random: this.random.getState() };
  }

  restore(snapshot: ReservoirSnapshot): void {
    if (snapshot.images.length !== this.split.images.length || snapshot.targets.length !== this.split.targets.length) {
      throw new ConvergeError(`reservoir: a checkpoint of ${snapshot.images.length} input and ${snapshot.targets.length} target values does not fit this buffer (${this.split.images.length} and ${this.split.targets.length}); start afresh.`, 'BAD_CHECKPOINT');
    }
    this.split.images.set(snapshot.images);
    this.split.targets.set(snapshot.targets);
    this.split.filled[0] = snapshot.held;
    this.received = snapshot.received;
    this.evicted = snapshot.evicted;
    this.oldest = snapshot.oldest;
    this.random.setState(snapshot.random);
  }

  /** A regression data set whose training split is this buffer and whose test split is fixed. */
  dataset(name: string, test: { x: Float32Array; y: Float32Array }): ImageDataset {
    const { inputs, targets } = this.options;
    const count = test.x.length / inputs;
    if (!Number.isInteger(count) || count * targets !== test.y.length || count === 0) throw new ConvergeError(`reservoir: a test set of ${test.x.length} inputs and ${test.y.length} targets does not make whole samples of ${inputs} and ${targets}.`, 'SHAPE_MISMATCH');
    return {
      kind: 'images', name, shape: [inputs], classes: targets, task: 'regression', stream: this,
      train: this.split,
      test: { images: test.x, labels: new Int32Array(count), targets: test.y, count },
      describe: `${name}: a stream of ${inputs} inputs → ${targets} targets, in a buffer of ${this.options.capacity} samples (${this.options.evict} eviction)`,
    };
  }
}
