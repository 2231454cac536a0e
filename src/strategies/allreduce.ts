// Synchronous data parallelism without a server. Every rank computes the gradient of its share
// of the global batch; a reduce-scatter leaves rank r with the mean gradient of its 1/P share
// of the parameters; rank r updates only that share (the optimiser's work and memory traffic
// are split P ways, as ZeRO stage 1 does), and an all-gather of the shares gives every rank the
// same new parameters. Together the two collectives move what one all-reduce would: exact
// minibatch SGD with batch P·b, and the same arithmetic, element by element, as one worker.
//
// The optimiser state of a rank is current only in its own share; before a checkpoint every
// rank gathers the state shares, so rank 0 can save the whole of it.
//
// With --param-precision bf16|int8 the updated shares are rounded stochastically into the storage
// format and all-gathered encoded (2 or ~1 bytes a parameter instead of 4).

import { epochOrder } from '../data/batches.js';
import type { Strategy, StrategyContext, TrainingState } from './context.js';
import { checkFinite, evaluate, gatherHookState, loopParts, restoreHookState, restoreOptimizer } from './common.js';
import { CompressedExchange } from './exchange.js';
import { ParameterStorage } from './precision.js';

export const allreduce: Strategy = async (context: StrategyContext) => {
  const { comm, model, batch, epochs, seed, workers, start } = context;
  const size = model.layout.size;
  // parameters and gradients live where the communicator reads them in place: nothing is copied in
  const params = comm.allocate(size);
  const grad = comm.allocate(size);
  params.set(start.params);
  await comm.broadcast(params, 0); // rank 0's initial (or resumed) parameters everywhere
  const storage = context.paramPrecision === 'fp32' ? null : new ParameterStorage(context.paramPrecision, size, seed, comm);
  storage?.roundAll(params);
  // with a compression hook every rank exchanges payloads and applies the whole update itself
  const hook = context.makeHook?.(size);
  const exchange = hook ? new CompressedExchange(comm, hook, size) : null;
  restoreHookState(hook, start, comm.rank, comm.size);
  const optimizer = context.makeOptimizer(hook?.appliesMomentum);
  restoreOptimizer(optimizer, start);
  const scalars = new Float32Array(2); // [loss, stop], averaged across ranks

  const { order, trainMaker, testMaker, steps, reporter } = loopParts(context);
  // the bytes of the steps' exchanges only (not the start-up broadcast or the evaluations)
  let exchanged = 0;

  const save = async (epoch: number, step: number) => {
    // sharded: gather the state's shares; compressed: every rank holds the whole state already
    if (!exchange) for (const values of Object.values(optimizer.state)) await comm.allgatherShares(values);
    const hookState = await gatherHookState(comm, hook);
    if (comm.rank === 0) {
      const state: TrainingState = { params, optimizerState: { ...optimizer.state, ...hookState }, optimizerSteps: optimizer.steps, epoch, step };
      context.save(state);
    }
  };

  for (let epoch = start.epoch; epoch < epochs; epoch++) {
    epochOrder(order, seed, epoch);
    const epochStart = performance.now();
    const firstStep = epoch === start.epoch ? start.step : 0;
    let lossSum = 0;
    for (let step = firstStep; step < steps; step++) {
      scalars[0] = model.lossAndGrad(params, trainMaker.fromOrder(order, (step * workers + comm.rank) * batch, batch), grad);
      scalars[1] = comm.rank === 0 && context.stopRequested() ? 1 : 0;
      const lr = context.learningRate(epoch + (step + 1) / steps);
      let meanLoss: number;
      let stop: boolean;
      if (exchange) {
        ({ loss: meanLoss, stop } = await exchange.allreduceMean(grad, scalars[0], scalars[1] > 0, epoch + step / steps));
        checkFinite(meanLoss, epoch * steps + step, epoch, lr);
        optimizer.step(params, grad, lr);
        storage?.roundAll(params); // every rank applied the same update: round it alike
      } else {
        const before = comm.bytesSent;
        const [first, end] = await comm.reduceScatter(grad, 'mean');
        await comm.allreduce(scalars, 'mean');
        meanLoss = scalars[0];
        stop = scalars[1] > 0;
        checkFinite(meanLoss, epoch * steps + step, epoch, lr);
        optimizer.step(params, grad, lr, first, end);
        if (storage) await storage.allgatherShares(params, first, end);
        else await comm.allgatherShares(params);
        exchanged += comm.bytesSent - before;
      }
      lossSum += meanLoss;
      if (comm.rank === 0 && reporter.due(step, steps)) {
        context.report({ kind: 'step', epoch, step, stepsPerEpoch: steps, samples: (epoch * steps + step + 1) * workers * batch, loss: meanLoss, lr, bytesSent: exchange ? exchange.bytesSent : exchanged });
      }
      if (stop || (context.saveEvery > 0 && (step + 1) % context.saveEvery === 0 && step + 1 < steps)) await save(epoch, step + 1);
      if (stop) return { params, stoppedEarly: true };
    }
    const trainSeconds = (performance.now() - epochStart) / 1000;
    const { loss, accuracy, rmse } = await evaluate(context, params, testMaker);
    if (comm.rank === 0) {
      context.report({ kind: 'epoch', epoch, trainLoss: lossSum / (steps - firstStep), testLoss: loss, testAccuracy: accuracy, testRmse: rmse, trainSeconds, samples: (steps - firstStep) * workers * batch, bytesSent: exchange ? exchange.bytesSent : exchanged });
    }
    await save(epoch + 1, 0);
  }
  return { params, stoppedEarly: false };
};
