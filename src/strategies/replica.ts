// A Hogwild! worker's own replica of the shared parameter array (DimmWitted's per-core model
// replication; Hogwild++'s per-cluster replicas). Two cores writing one array share every cache
// line of it: on the RCV1-like set a power law puts a handful of features in almost every row,
// and the rest of the 400 KB vector is written often enough that each line keeps moving between
// the cores, so plain Hogwild! on 2 cores ran about as fast as on 1. With a replica a worker
// steps on memory no other core writes, and every `mergeEvery` examples adds what it changed
// since its last merge (local − base) into the shared array, then starts again from the shared
// array, which holds every worker's merged changes. A merge holds a lock in the shared buffer,
// so none is lost; a worker sees the others' changes up to `mergeEvery` examples late.
//
// Where no other worker changed a coordinate since this one last merged (shared = base), the
// change lands whole: a feature one worker saw keeps its whole step, as in Hogwild!. Where
// another did, half of it lands. Why: a coordinate that almost every example pulls back towards
// its optimum gets nearly the same correction from each worker over an interval, and adding
// both in full overshoots by that much again (the lateness is the cost of replicas). Measured on
// the RCV1-like set at lr 0.5, 2 workers, 4,096 examples between merges, 8 epochs, seeds 1–4
// (losses against one worker's):
//   - every change whole: tracked one worker epoch by epoch, but the test loss jumped (0.578, and
//     up to 3.5 while the bias still stepped at the features' rate) in 1 of 4 runs;
//   - the mean of the two changes where both changed: no jumps, but about an epoch behind;
//   - half where another changed (this): no jumps, 0.01 behind after epoch 1, level from epoch 5.
// Hogwild++ (Zhang, Hsieh, Akella 2016) damps the changes its replicas pass on for the same
// reason. A model whose coordinates move further in an interval (a larger lr, denser rows) may
// want a smaller --merge-every.

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

  /** shared += (local − base) × (1 where shared = base, else ½), rounded stochastically where the shared array is low precision; then local = base = shared. */
  merge(): void {
    this.sinceMerge = 0;
    const { local, base, shared } = this;
    this.lock.hold(() => {
      if (shared instanceof Float32Array) {
        this.mergeKernel(shared, local, base, local.length);
        return;
      }
      if (shared.precision === 'bf16') {
        // bf16 rounds each value on its own, so one pass over the whole array merges it (a value
        // no one changed is a bf16 value already, and stays as it was)
        shared.mergeReplica(local, base);
        return;
      }
      // int8 shares a scale among 64 values, which encoding the whole array again would move:
      // its changes are added one by one
      for (let i = 0; i < local.length; i++) {
        const change = local[i] - base[i];
        if (change !== 0) shared.add(i, shared.get(i) === base[i] ? change : 0.5 * change);
      }
      shared.loadAll(local);
      base.set(local);
    });
  }

  /** local = base = shared, dropping what this worker changed since its last merge (after every worker has merged, at an epoch's end). */
  refresh(): void {
    if (this.shared instanceof Float32Array) this.local.set(this.shared);
    else this.shared.loadAll(this.local);
    this.base.set(this.local);
    this.sinceMerge = 0;
  }
}
