// A Hogwild! worker's own replica of the shared parameter array (DimmWitted's per-core model
// replication; Hogwild++'s per-cluster replicas). Two cores writing one array share every cache
// line of it: on the RCV1-like set a power law puts a handful of features in almost every row,
// and the rest of the 400 KB vector is written often enough that each line keeps moving between
// the cores, so plain Hogwild! on 2 cores ran about as fast as on 1. With a replica a worker
// steps on memory no other core writes, and every `mergeEvery` examples merges, coordinate by
// coordinate, against `base` (what the shared array held at its last merge):
//   - one it left alone takes the shared value (with whatever the others merged meanwhile);
//   - one only it changed takes its own value: a feature one worker saw keeps its whole step;
//   - one changed on both sides takes the mean of the two.
// Then it starts again from the shared array. Why the mean: a hot coordinate (the bias, a
// feature in most rows) is pulled back towards its optimum by every example, so over a merge
// interval each worker's change is nearly the same correction; adding both overshoots by that
// much again. On the RCV1-like set at lr 0.5, with sums, the test loss jumped above 0.9 (up to
// 3.5) in 4 of 6 runs of 10 epochs (3 seeds; 1,024 and 4,096 examples between merges), where one
// worker's and plain Hogwild!'s stayed below 0.6; with means, below 0.6 too. The mean is model
// averaging (local SGD) on the coordinates both touched. With more than 2 workers the mean is
// taken pairwise as each merges, so the last to merge weighs most. A merge holds a lock in the
// shared buffer, so no merge is lost; a worker sees the others' changes up to `mergeEvery`
// examples late.

import { kernel } from '../kernels/registry.js';
import type { SharedLowPrecision } from '../tensor/precision.js';

/** Bytes of the lock word after the parameters, on its own cache line. */
const LOCK_BYTES = 64;

/** Where the lock sits in a shared buffer whose parameters take `parameterBytes`. */
function lockOffset(parameterBytes: number): number {
  return Math.ceil(parameterBytes / LOCK_BYTES) * LOCK_BYTES;
}

/** The shared buffer's size for `parameterBytes` of (possibly encoded) parameters and the merge lock. */
export function sharedArrayBytes(parameterBytes: number): number {
  return lockOffset(parameterBytes) + LOCK_BYTES;
}

/** A lock in shared memory; merges are rare (every few thousand examples), so waiting is short. */
class SharedLock {
  private readonly word: Int32Array;
  constructor(buffer: SharedArrayBuffer, parameterBytes: number) {
    this.word = new Int32Array(buffer, lockOffset(parameterBytes), 1);
  }
  hold<T>(work: () => T): T {
    while (Atomics.compareExchange(this.word, 0, 0, 1) !== 0) Atomics.wait(this.word, 0, 1, 1);
    try {
      return work();
    } finally {
      Atomics.store(this.word, 0, 0);
      Atomics.notify(this.word, 0, 1);
    }
  }
}

export class Replica {
  /** What the shared array held at this worker's last merge, as this worker read it. */
  private readonly base: Float32Array;
  private readonly lock: SharedLock;
  private sinceMerge = 0;
  private readonly mergeKernel = kernel('replicaMerge');

  /**
   * @param local the worker's float32 replica (the array it steps on)
   * @param shared float32: the shared array itself; low precision: its encoded form
   */
  constructor(
    readonly local: Float32Array,
    private readonly shared: Float32Array | SharedLowPrecision,
    buffer: SharedArrayBuffer,
    parameterBytes: number,
    /** Examples between merges (the owner sets it before the first step). */
    public mergeEvery = 0,
  ) {
    this.base = new Float32Array(local.length);
    this.lock = new SharedLock(buffer, parameterBytes);
    this.refresh();
  }

  /** Counts `examples` stepped on the replica; merges once `mergeEvery` have been. */
  stepped(examples: number): void {
    this.sinceMerge += examples;
    if (this.sinceMerge >= this.mergeEvery) this.merge();
  }

  /** Merges (above), rounding stochastically where the shared array is low precision; then local = base = shared. */
  merge(): void {
    this.sinceMerge = 0;
    const { local, base, shared } = this;
    this.lock.hold(() => {
      if (shared instanceof Float32Array) {
        this.mergeKernel(shared, local, base, local.length);
        return;
      }
      for (let i = 0; i < local.length; i++) {
        if (local[i] === base[i]) continue;
        const now = shared.get(i);
        shared.add(i, (now === base[i] ? local[i] : 0.5 * (now + local[i])) - now);
      }
      shared.loadAll(local);
    });
    if (!(shared instanceof Float32Array)) base.set(local);
  }

  /** local = base = shared, dropping what this worker changed since its last merge (after every worker has merged, at an epoch's end). */
  refresh(): void {
    if (this.shared instanceof Float32Array) this.local.set(this.shared);
    else this.shared.loadAll(this.local);
    this.base.set(this.local);
    this.sinceMerge = 0;
  }
}
