// The synchronous parameter server. Rank 0 is the server and holds the parameters and the
// optimiser; ranks 1..P are workers. Each step the server broadcasts the parameters (with the
// stop decision in one extra float), every worker computes the gradient of its minibatch and
// the server gathers all P of them (with their losses), averages them and updates. The server
// receives P gradients per step: the bottleneck this strategy is known for.
//
// With --param-precision bf16|int8 the server's parameters are rounded stochastically into the
// storage format after each update and broadcast encoded.

import { epochOrder } from '../data/batches.js';
import { kernel } from '../kernels/registry.js';
import type { Strategy, StrategyContext } from './context.js';
import { checkFinite, evaluate, gatherHookState, loopParts, restoreHookState, restoreOptimizer } from './common.js';
import { CompressedExchange } from './exchange.js';
import { ParameterStorage } from './precision.js';

export const parameterServer: Strategy = async (context: StrategyContext) => {
  const { comm, model, batch, epochs, seed, workers, start } = context;
  const isServer = comm.rank === 0;
  const size = model.layout.size;
  // [parameters | stop], broadcast by the server; in the communicator's memory, read in place
  const outgoing = comm.allocate(size + 1);
  const params = outgoing.subarray(0, size);
  params.set(start.params);
  const storage = context.paramPrecision === 'fp32' ? null : new ParameterStorage(context.paramPrecision, size, seed, comm);
  // low precision: [encoded parameters | stop] is what the server broadcasts
  const encoded = storage ? comm.allocate(storage.broadcastWords + 1) : null;
  const broadcastParameters = async (stopFlag: number) => {
    if (!storage || !encoded) {
      outgoing[size] = stopFlag;
      await comm.broadcast(outgoing, 0);
      return;
    }
    if (isServer) {
      storage.encodeInto(params, encoded);
      encoded[storage.broadcastWords] = stopFlag;
    }
    await comm.broadcast(encoded, 0);
    if (!isServer) storage.decodeFrom(encoded, params);
    outgoing[size] = encoded[storage.broadcastWords];
  };
  // [gradient | loss], gathered at the server
  const update = comm.allocate(size + 1);
  const grad = update.subarray(0, size);
  const hook = context.makeHook?.(size);
  const exchange = hook ? new CompressedExchange(comm, hook, size) : null;
  restoreHookState(hook, start, comm.rank, comm.size);
  const gathered = isServer && !exchange ? new Float32Array((workers + 1) * (size + 1)) : null;
  const optimizer = isServer ? context.makeOptimizer(hook?.appliesMomentum) : null;
  if (optimizer) {
    restoreOptimizer(optimizer, start);
  }
  const worker = comm.rank - 1;
  const { order, trainMaker, testMaker, steps, reporter } = loopParts(context);
  // bytes per worker: what each pushed to the server (the server's broadcasts are its own traffic)
  let uncompressedPushes = 0;
  const pushed = () => (exchange ? exchange.bytesReceived : 4 * (size + 1) * uncompressedPushes) / workers;

  for (let epoch = start.epoch; epoch < epochs; epoch++) {
    if (!isServer) epochOrder(order, seed, epoch);
    const epochStart = performance.now();
    const firstStep = epoch === start.epoch ? start.step : 0;
    let lossSum = 0;
    for (let step = firstStep; step < steps; step++) {
      await broadcastParameters(isServer && context.stopRequested() ? 1 : 0);
      if (!isServer) update[size] = model.lossAndGrad(params, trainMaker.fromOrder(order, (step * workers + worker) * batch, batch), grad);
      let meanLoss = 0;
      if (exchange) meanLoss = await exchange.gatherMean(grad, update[size], 0, epoch + step / steps);
      else {
        await comm.gather(update, gathered, 0);
        // the mean of the workers' [gradient | loss] (ranks 1..P of the gathered rows)
        if (gathered) kernel('reduceStrided')(gathered, size + 1, size + 1, workers, 0, size + 1, update, 0, 1 / workers);
        meanLoss = update[size];
        uncompressedPushes += workers;
      }
      const stop = outgoing[size] > 0;
      const checkpoint = stop || (context.saveEvery > 0 && (step + 1) % context.saveEvery === 0 && step + 1 < steps);
      // the workers' error feedback goes into the server's checkpoint
      const hookState = checkpoint ? await gatherHookState(comm, hook) : {};
      if (isServer && optimizer) {
        const lr = context.learningRate(epoch + (step + 1) / steps);
        checkFinite(meanLoss, epoch * steps + step, epoch, lr);
        optimizer.step(params, grad, lr);
        lossSum += meanLoss;
        if (reporter.due(step, steps)) {
          context.report({ kind: 'step', epoch, step, stepsPerEpoch: steps, samples: (epoch * steps + step + 1) * workers * batch, loss: meanLoss, lr, bytesSent: pushed() });
        }
        if (checkpoint) {
          context.save({ params, optimizerState: { ...optimizer.state, ...hookState }, optimizerSteps: optimizer.steps, epoch, step: step + 1 });
        }
      }
      if (stop) return { params, stoppedEarly: true };
    }
    const trainSeconds = (performance.now() - epochStart) / 1000;
    // the epoch's final parameters, so every rank can evaluate a share
    if (storage) await broadcastParameters(0);
    else await comm.broadcast(params, 0);
    const { loss, accuracy, rmse } = await evaluate(context, params, testMaker);
    const hookState = await gatherHookState(comm, hook);
    if (isServer && optimizer) {
      context.report({ kind: 'epoch', epoch, trainLoss: lossSum / (steps - firstStep), testLoss: loss, testAccuracy: accuracy, testRmse: rmse, trainSeconds, samples: (steps - firstStep) * workers * batch, bytesSent: pushed() });
      context.save({ params, optimizerState: { ...optimizer.state, ...hookState }, optimizerSteps: optimizer.steps, epoch: epoch + 1, step: 0 });
    }
  }
  return { params, stoppedEarly: false };
};
