// Hogwild! (Niu, Recht, Ré, Wright 2011): every worker thread reads and writes ONE shared
// parameter array with no locks and no barrier. A sparse model's example touches only its own
// features, so on sparse problems the writes rarely collide; a dense model's minibatch update
// writes the whole array (each worker keeps its own optimiser state). With one worker this is
// plain sequential SGD, bit for bit. Workers meet only at epoch ends, to evaluate and save.
//
// With --param-precision bf16|int8 the shared array is held in 16 or 8 bits (BuckWild!): a
// worker decodes the coordinates a step reads into its own float32 copy, steps, and adds each
// coordinate's change back with stochastic rounding.

import { epochOrder } from '../data/batches.js';
import { CommunicationError } from '../errors.js';
import { SharedLowPrecision } from '../tensor/precision.js';
import { mixSeed } from '../tensor/random.js';
import type { Strategy, StrategyContext } from './context.js';
import { checkFinite, evaluate, loopParts, restoreOptimizer } from './common.js';

export const hogwild: Strategy = async (context: StrategyContext) => {
  const { comm, model, batch, epochs, seed, workers, start } = context;
  const size = model.layout.size;
  const shared = context.sharedBuffer;
  if (!shared) throw new CommunicationError('hogwild needs one parameter array shared by all workers: run it on worker threads (the shm backend).', 'NO_SHARED_MEMORY');
  const precision = context.paramPrecision;
  const low = precision === 'fp32' ? null : new SharedLowPrecision(precision, shared, size, mixSeed(seed, comm.rank, 0x6277));
  // float32: the shared array itself; low precision: this worker's decoded copy of it
  const params = low ? new Float32Array(size) : new Float32Array(shared, 0, size);
  if (comm.rank === 0) {
    if (low) low.storeAll(start.params);
    else params.set(start.params);
  }
  await comm.barrier();
  if (low) low.loadAll(params);
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
  const optimizer = sparse ? null : context.makeOptimizer();
  if (optimizer) {
    restoreOptimizer(optimizer, start);
  }
  const { order, trainMaker, testMaker, steps, reporter } = loopParts(context);
  const everything = sparse ? trainMaker.whole?.() : undefined;
  if (low && everything) room(everything);
  const flags = new Float32Array(2); // [loss sum, stopped], summed at epoch ends

  for (let epoch = start.epoch; epoch < epochs; epoch++) {
    epochOrder(order, seed, epoch);
    const epochStart = performance.now();
    const firstStep = epoch === start.epoch ? start.step : 0;
    let lossSum = 0;
    let stopped = false;
    let step = firstStep;
    for (; step < steps; step++) {
      const lr = context.learningRate(epoch + (step + 1) / steps);
      const first = (step * workers + comm.rank) * batch;
      let loss = 0;
      if (everything) {
        for (let i = first; i < first + batch; i++) loss += exampleStep(everything, order[i], lr);
        loss /= batch;
      } else if (sparse) {
        const examples = trainMaker.fromOrder(order, first, batch);
        if (low) room(examples);
        for (let i = 0; i < examples.size; i++) loss += exampleStep(examples, i, lr);
        loss /= examples.size;
      } else if (low) {
        low.loadAll(params);
        before!.set(params);
        loss = model.lossAndGrad(params, trainMaker.fromOrder(order, first, batch), grad!);
        optimizer!.step(params, grad!, lr);
        for (let i = 0; i < size; i++) low.add(i, params[i] - before![i]);
      } else {
        loss = model.lossAndGrad(params, trainMaker.fromOrder(order, first, batch), grad!);
        optimizer!.step(params, grad!, lr);
      }
      checkFinite(loss, epoch * steps + step, epoch, lr);
      lossSum += loss;
      if (comm.rank === 0 && reporter.due(step, steps)) {
        context.report({ kind: 'step', epoch, step, stepsPerEpoch: steps, samples: (epoch * steps + step + 1) * workers * batch, loss, lr, bytesSent: comm.bytesSent });
      }
      // each worker asks for itself: there is no step at which they all meet
      if (context.stopRequested()) {
        stopped = true;
        step++;
        break;
      }
    }
    // meet: agree whether anyone stopped, and on the mean training loss
    flags[0] = lossSum / Math.max(1, step - firstStep);
    flags[1] = stopped ? 1 : 0;
    await comm.allreduce(flags, 'sum');
    if (low) low.loadAll(params); // everyone's writes, for evaluating and saving
    if (flags[1] > 0) {
      if (comm.rank === 0) context.save({ params, optimizerState: optimizer?.state ?? {}, optimizerSteps: optimizer?.steps ?? 0, epoch, step });
      return { params, stoppedEarly: true };
    }
    const trainSeconds = (performance.now() - epochStart) / 1000;
    const { loss, accuracy, rmse } = await evaluate(context, params, testMaker);
    if (comm.rank === 0) {
      context.report({ kind: 'epoch', epoch, trainLoss: flags[0] / workers, testLoss: loss, testAccuracy: accuracy, testRmse: rmse, trainSeconds, samples: (steps - firstStep) * workers * batch, bytesSent: comm.bytesSent });
      context.save({ params, optimizerState: optimizer?.state ?? {}, optimizerSteps: optimizer?.steps ?? 0, epoch: epoch + 1, step: 0 });
    }
    // nobody writes the next epoch's updates until rank 0 has saved this one's parameters
    await comm.barrier();
  }
  return { params, stoppedEarly: false };
};
