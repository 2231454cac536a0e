// Hogwild! (Niu, Recht, Ré, Wright 2011): every worker thread reads and writes ONE shared
// parameter array with no locks and no barrier. A sparse model's example touches only its own
// features, so on sparse problems the writes rarely collide; a dense model's minibatch update
// writes the whole array (each worker keeps its own optimiser state). With one worker this is
// plain sequential SGD, bit for bit. Workers meet only at epoch ends, to evaluate and save; a
// worker that is asked to stop leaves its steps, and the others learn of it there.
//
// With --param-precision bf16|int8 the shared array is held in 16 or 8 bits (BuckWild!): a
// worker decodes the coordinates a step reads into its own float32 copy, steps, and adds each
// coordinate's change back with stochastic rounding.

import { CommunicationError } from '../errors.js';
import { SharedLowPrecision } from '../tensor/precision.js';
import { mixSeed } from '../tensor/random.js';
import type { Strategy } from './strategy.js';

export const hogwild: Strategy = async (setup) => {
  const { comm, model, seed, workers } = setup;
  const size = model.layout.size;
  const shared = setup.sharedBuffer;
  if (!shared) throw new CommunicationError('hogwild needs one parameter array shared by all workers: run it on worker threads (the shm backend).', 'NO_SHARED_MEMORY');
  const precision = setup.paramPrecision;
  const low = precision === 'fp32' ? null : new SharedLowPrecision(precision, shared, size, mixSeed(seed, comm.rank, 0x6277));
  // float32: the shared array itself; low precision: this worker's decoded copy of it
  const params = low ? new Float32Array(size) : new Float32Array(shared, 0, size);
  if (comm.rank === 0) {
    if (low) low.storeAll(setup.startParams);
    else params.set(setup.startParams);
  }
  await comm.barrier();
  if (low) low.loadAll(params);
  // (strategies/index.ts: hogwild takes per-example steps where the model has them)
  const sparse = typeof model.exampleStep === 'function';
  // per-example models read the examples where they lie: no copy into a batch
  const grad = sparse ? null : new Float32Array(size);
  const before = low ? new Float32Array(sparse ? 0 : size) : null;
  let coordinates = new Int32Array(0);
  let previous = new Float32Array(0);
  /** One example's step; with low precision, on its coordinates decoded, then added back rounded. */
  const exampleStep = <B>(examples: B, i: number, lr: number): number => {
    if (!low) return model.exampleStep!(params, examples as never, i, lr);
    const count = model.exampleCoordinates!(examples as never, i, coordinates);
    for (let k = 0; k < count; k++) previous[k] = params[coordinates[k]] = low.get(coordinates[k]);
    const loss = model.exampleStep!(params, examples as never, i, lr);
    for (let k = 0; k < count; k++) low.add(coordinates[k], params[coordinates[k]] - previous[k]);
    return loss;
  };
  const room = (examples: unknown) => {
    const most = model.maxExampleCoordinates!(examples as never);
    if (most > coordinates.length) {
      coordinates = new Int32Array(most);
      previous = new Float32Array(most);
    }
  };
  if (low && sparse && (!model.exampleCoordinates || !model.maxExampleCoordinates)) {
    throw new CommunicationError(`--param-precision ${precision} with hogwild needs the model '${model.name}' to list the coordinates an example touches; use --param-precision fp32.`, 'UNSUPPORTED');
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
      let loss = 0;
      if (sparse && whole) {
        if (low && !roomForAll) room(whole);
        roomForAll = true;
        for (let i = first; i < first + setup.batch; i++) loss += exampleStep(whole, order[i], lr);
        loss /= setup.batch;
      } else if (sparse) {
        const examples = input.batch();
        if (low) room(examples);
        for (let i = 0; i < examples.size; i++) loss += exampleStep(examples, i, lr);
        loss /= examples.size;
      } else if (low) {
        low.loadAll(params);
        before!.set(params);
        loss = await input.gradient(params, grad!);
        optimizer!.step(params, grad!, lr);
        for (let i = 0; i < size; i++) low.add(i, params[i] - before![i]);
      } else {
        loss = await input.gradient(params, grad!);
        optimizer!.step(params, grad!, lr);
      }
      // each worker asks for itself: there is no step at which they all meet
      return { loss, stop: input.stopRequested() };
    },
    async endSteps(stopped, trainLoss) {
      // meet: agree whether anyone stopped, and on the mean training loss
      flags[0] = trainLoss;
      flags[1] = stopped ? 1 : 0;
      await comm.allreduce(flags, 'sum');
      if (low) low.loadAll(params); // everyone's writes, for evaluating and saving
      return { stop: flags[1] > 0, trainLoss: flags[0] / workers };
    },
    async snapshot() {
      return { optimizerState: optimizer?.state ?? {}, optimizerSteps: optimizer?.steps ?? 0 };
    },
  };
};
