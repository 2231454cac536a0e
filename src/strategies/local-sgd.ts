// Local SGD (relaxed coherence): every worker keeps its own copy of the parameters and its own
// optimiser state and trains alone; every --sync-every k steps (and at each epoch's end) the
// copies are averaged with one all-reduce. k = 1 is synchronous SGD again: averaging the
// copies after one momentum step each gives what averaging the gradients would (the update is
// linear in the gradient), up to float rounding.
//
// With --param-precision bf16|int8 each copy is stored rounded (stochastically) after every local
// step, and the average is rounded alike on every rank; the average itself travels as float32.

import { epochOrder } from '../data/batches.js';
import type { Strategy, StrategyContext } from './context.js';
import { checkFinite, evaluate, gatherHookState, loopParts, restoreHookState, restoreOptimizer } from './common.js';
import { CompressedExchange } from './exchange.js';
import { ParameterStorage } from './precision.js';

export const localSgd: Strategy = async (context: StrategyContext) => {
  const { comm, model, batch, epochs, seed, workers, start, syncEvery } = context;
  const size = model.layout.size;
  const params = comm.allocate(size); // averaged in place
  params.set(start.params);
  await comm.broadcast(params, 0);
  const storage = context.paramPrecision === 'fp32' ? null : new ParameterStorage(context.paramPrecision, size, seed, comm);
  storage?.roundAll(params);
  const grad = new Float32Array(size);
  // compressed: the copies exchange their change since the last average (with error feedback), not themselves
  const hook = context.makeHook?.(size, { momentum: 0 });
  const exchange = hook ? new CompressedExchange(comm, hook, size) : null;
  restoreHookState(hook, start, comm.rank, comm.size);
  const anchor = exchange ? Float32Array.from(params) : null;
  const optimizer = context.makeOptimizer();
  restoreOptimizer(optimizer, start);
  const scalars = new Float32Array(2); // [mean loss since the last average, stop]
  const { order, trainMaker, testMaker, steps, reporter } = loopParts(context);

  /** Averages parameters (and, before a checkpoint, the optimiser state), and agrees on the loss and on stopping. */
  const average = async (lossSum: number, count: number, withState: boolean, epoch: number) => {
    scalars[0] = lossSum / Math.max(1, count);
    scalars[1] = comm.rank === 0 && context.stopRequested() ? 1 : 0;
    let result: { meanLoss: number; stop: boolean };
    if (exchange && anchor) {
      for (let i = 0; i < size; i++) params[i] -= anchor[i]; // the change since the last average
      const { loss, stop } = await exchange.allreduceMean(params, scalars[0], scalars[1] > 0, epoch);
      for (let i = 0; i < size; i++) params[i] += anchor[i];
      anchor.set(params);
      result = { meanLoss: loss, stop };
    } else {
      await comm.allreduce(params, 'mean');
      await comm.allreduce(scalars, 'mean');
      result = { meanLoss: scalars[0], stop: scalars[1] > 0 };
    }
    storage?.roundAll(params);
    if (withState) for (const values of Object.values(optimizer.state)) await comm.allreduce(values, 'mean');
    return result;
  };

  for (let epoch = start.epoch; epoch < epochs; epoch++) {
    epochOrder(order, seed, epoch);
    const epochStart = performance.now();
    const firstStep = epoch === start.epoch ? start.step : 0;
    let epochLoss = 0;
    let localLoss = 0;
    let localCount = 0;
    for (let step = firstStep; step < steps; step++) {
      const loss = model.lossAndGrad(params, trainMaker.fromOrder(order, (step * workers + comm.rank) * batch, batch), grad);
      const lr = context.learningRate(epoch + (step + 1) / steps);
      checkFinite(loss, epoch * steps + step, epoch, lr);
      optimizer.step(params, grad, lr);
      storage?.roundOwn(params);
      localLoss += loss;
      localCount++;
      const last = step + 1 === steps;
      const checkpoint = context.saveEvery > 0 && (step + 1) % context.saveEvery === 0 && !last;
      if ((step + 1) % syncEvery !== 0 && !last && !checkpoint) continue;
      const { meanLoss, stop } = await average(localLoss, localCount, checkpoint || last, epoch + (step + 1) / steps);
      epochLoss += meanLoss * localCount;
      localLoss = 0;
      localCount = 0;
      if (comm.rank === 0 && reporter.due(step, steps)) {
        context.report({ kind: 'step', epoch, step, stepsPerEpoch: steps, samples: (epoch * steps + step + 1) * workers * batch, loss: meanLoss, lr, bytesSent: exchange ? exchange.bytesSent : comm.bytesSent });
      }
      if (stop || checkpoint) {
        if (stop) for (const values of Object.values(optimizer.state)) await comm.allreduce(values, 'mean');
        const hookState = await gatherHookState(comm, hook);
        if (comm.rank === 0) context.save({ params, optimizerState: { ...optimizer.state, ...hookState }, optimizerSteps: optimizer.steps, epoch, step: step + 1 });
      }
      if (stop) return { params, stoppedEarly: true };
    }
    const trainSeconds = (performance.now() - epochStart) / 1000;
    const { loss, accuracy, rmse } = await evaluate(context, params, testMaker);
    const hookState = await gatherHookState(comm, hook);
    if (comm.rank === 0) {
      context.report({ kind: 'epoch', epoch, trainLoss: epochLoss / (steps - firstStep), testLoss: loss, testAccuracy: accuracy, testRmse: rmse, trainSeconds, samples: (steps - firstStep) * workers * batch, bytesSent: exchange ? exchange.bytesSent : comm.bytesSent });
      context.save({ params, optimizerState: { ...optimizer.state, ...hookState }, optimizerSteps: optimizer.steps, epoch: epoch + 1, step: 0 });
    }
  }
  return { params, stoppedEarly: false };
};
