// Hogwild! (Niu, Recht, Ré, Wright 2011): every worker thread updates ONE shared parameter
// array with no barrier. A sparse model's example touches only its own features, so on sparse
// problems the updates rarely collide; a dense model's minibatch update writes the whole array
// (each worker keeps its own optimiser state). With one worker this is plain sequential SGD,
// bit for bit. Workers meet only at epoch ends, to evaluate and save; a worker that is asked to
// stop leaves its steps, and the others learn of it there.
//
// With 2 or more workers, a model of per-example steps (sparse rows, ratings) whose parameters
// fit in a core's cache is stepped on each worker's own replica, which adds its changes into the
// shared array every --merge-every examples (usesReplica says when; replica.ts why, and what a
// merge is); --merge-every 0 writes straight into the shared array, as the paper does. A dense model's step writes every coordinate, so summed
// changes of replicas many steps apart would overshoot: it always writes straight in.
//
// With --param-precision bf16|int8 the shared array is held in 16 or 8 bits (BuckWild!). With
// a replica a merge adds each coordinate's change with stochastic rounding; without one a
// worker decodes the coordinates a step reads into its own float32 copy, steps, and adds each
// coordinate's change back rounded.

import { CommunicationError } from '../errors.js';
import { encodedBytes, SharedLowPrecision } from '../tensor/precision.js';
import { mixSeed } from '../tensor/random.js';
import { Replica } from './replica.js';
import type { Strategy } from './strategy.js';

/**
 * The default merge interval's cap, in examples. bench:relaxed, RCV1-like set, 6 epochs, 3 seeds:
 * 512 / 1,024 / 2,048 / 4,096 examples ran 1.42 / 1.53 / 1.71 / 1.69× one worker over epochs 2–6,
 * with final test losses 0.4810 / 0.4806 / 0.4822 / 0.4837 against one worker's 0.4812; at 4,096
 * two of the three seeds never reached scikit-learn's final loss, at 1,024 all three did, in 0.40×
 * its time.
 */
const MERGE_EVERY_MOST = 1024;

/**
 * Unless --merge-every says otherwise, replicas for parameter arrays up to this size only: one
 * that fits in each core's private cache (1–2 MiB on current cores) is held whole by both, and
 * every write takes a line from the other; a larger one is mostly elsewhere, and a merge copies
 * all of it. bench:relaxed, 5 epochs, 3 seeds: RCV1-like logreg (400 KB) 1.16× one worker
 * without replicas, 1.52× with them; Netflix-like matrix factorisation (1.6 MB, two rows of 16
 * written an example) 1.71× without, 0.87× with.
 */
const REPLICATED_BYTES_MOST = 1 << 20;

/** The merge interval when --merge-every is not given: a sixteenth of a worker's epoch, at most MERGE_EVERY_MOST examples, at least 1. */
export function defaultMergeEvery(examplesPerEpoch: number): number {
  return Math.max(1, Math.min(MERGE_EVERY_MOST, Math.floor(examplesPerEpoch / 16)));
}

/** Whether a Hogwild! worker steps on its own replica (see above and replica.ts). */
export function usesReplica(o: { perExample: boolean; workers: number; lowPrecision: boolean; parameters: number; mergeEvery: number | undefined }): boolean {
  if (!o.perExample || (o.workers === 1 && !o.lowPrecision)) return false;
  return o.mergeEvery === undefined ? 4 * o.parameters <= REPLICATED_BYTES_MOST : o.mergeEvery > 0;
}

export const hogwild: Strategy = async (setup) => {
  const { comm, model, seed, workers } = setup;
  const size = model.layout.size;
  const shared = setup.sharedBuffer;
  if (!shared) throw new CommunicationError('hogwild needs one parameter array shared by all workers: run it on worker threads (the shm backend).', 'NO_SHARED_MEMORY');
  const precision = setup.paramPrecision;
  const low = precision === 'fp32' ? null : new SharedLowPrecision(precision, shared, size, mixSeed(seed, comm.rank, 0x6277));
  const sharedFloats = low ? null : new Float32Array(shared, 0, size);
  // (strategies/index.ts: hogwild takes per-example steps where the model has them)
  const sparse = typeof model.exampleStep === 'function';
  // a replica where another worker writes, or where the shared array is rounded (merges round
  // each change once instead of at every example); one float32 worker writes straight in
  const replicated = usesReplica({ perExample: sparse, workers, lowPrecision: low !== null, parameters: size, mergeEvery: setup.mergeEvery });
  // float32 without a replica: the shared array itself; else this worker's own float32 copy
  const params = sharedFloats && !replicated ? sharedFloats : new Float32Array(size);
  if (comm.rank === 0) {
    if (low) low.storeAll(setup.startParams);
    else sharedFloats!.set(setup.startParams);
  }
  await comm.barrier();
  const replica = replicated ? new Replica(params, low ?? sharedFloats!, shared, encodedBytes(precision, size)) : null;
  if (low && !replica) low.loadAll(params);
  // per-example models read the examples where they lie: no copy into a batch
  const grad = sparse ? null : new Float32Array(size);
  // low precision without a replica: what the step changed, coordinate by coordinate
  const direct = replica ? null : low;
  const before = direct && !sparse ? new Float32Array(size) : null;
  let coordinates = new Int32Array(0);
  let previous = new Float32Array(0);
  /** One example's step; rounded into a low-precision array without a replica, on its coordinates decoded, then added back rounded. */
  const exampleStep = <B>(examples: B, i: number, lr: number): number => {
    if (!direct) return model.exampleStep!(params, examples as never, i, lr);
    const count = model.exampleCoordinates!(examples as never, i, coordinates);
    for (let k = 0; k < count; k++) previous[k] = params[coordinates[k]] = direct.get(coordinates[k]);
    const loss = model.exampleStep!(params, examples as never, i, lr);
    for (let k = 0; k < count; k++) direct.add(coordinates[k], params[coordinates[k]] - previous[k]);
    return loss;
  };
  const room = (examples: unknown) => {
    const most = model.maxExampleCoordinates!(examples as never);
    if (most > coordinates.length) {
      coordinates = new Int32Array(most);
      previous = new Float32Array(most);
    }
  };
  if (direct && sparse && (!model.exampleCoordinates || !model.maxExampleCoordinates)) {
    throw new CommunicationError(`--param-precision ${precision} with hogwild and --merge-every 0 needs the model '${model.name}' to list the coordinates an example touches; use --param-precision fp32, or a replica (--merge-every N).`, 'UNSUPPORTED');
  }
  // sparse models take plain SGD steps per example: no optimiser, nothing of one to save
  const optimizer = sparse ? null : setup.optimizer();
  const flags = new Float32Array(2); // [loss, stopped], summed at epoch ends
  let roomForAll = false;

  return {
    params,
    bytesSent: () => comm.bytesSent,
    async step(input) {
      const { lr, order, first, whole } = input;
      // unset: a sixteenth of a worker's epoch, at most 1,024 examples: merges far apart cost the
      // least, but each worker then sees the others' changes later (replica.ts)
      if (replica && replica.mergeEvery === 0) replica.mergeEvery = setup.mergeEvery ?? defaultMergeEvery(input.steps * setup.batch);
      let loss = 0;
      let examples = setup.batch;
      if (sparse && whole) {
        if (direct && !roomForAll) room(whole);
        roomForAll = true;
        // a model's kernel for a minibatch of steps, where nothing is rounded example by example
        if (!direct && model.exampleSteps) loss = model.exampleSteps(params, whole as never, order, first, setup.batch, lr);
        else for (let i = first; i < first + setup.batch; i++) loss += exampleStep(whole, order[i], lr);
        loss /= setup.batch;
      } else if (sparse) {
        const batch = input.batch();
        if (direct) room(batch);
        for (let i = 0; i < batch.size; i++) loss += exampleStep(batch, i, lr);
        loss /= batch.size;
        examples = batch.size;
      } else if (direct) {
        direct.loadAll(params);
        before!.set(params);
        loss = await input.gradient(params, grad!);
        optimizer!.step(params, grad!, lr);
        for (let i = 0; i < size; i++) direct.add(i, params[i] - before![i]);
      } else {
        loss = await input.gradient(params, grad!);
        optimizer!.step(params, grad!, lr);
      }
      replica?.stepped(examples);
      // each worker asks for itself: there is no step at which they all meet
      return { loss, stop: input.stopRequested() };
    },
    async endSteps(stopped, trainLoss) {
      replica?.merge();
      // meet: agree whether anyone stopped, and on the mean training loss
      flags[0] = trainLoss;
      flags[1] = stopped ? 1 : 0;
      await comm.allreduce(flags, 'sum');
      // everyone's writes, for evaluating and saving
      if (replica) replica.refresh();
      else if (low) low.loadAll(params);
      return { stop: flags[1] > 0, trainLoss: flags[0] / workers };
    },
    async snapshot() {
      return { optimizerState: optimizer?.state ?? {}, optimizerSteps: optimizer?.steps ?? 0 };
    },
  };
};
