// Synchronous data parallelism without a server: every rank computes the gradient of its
// share of the global batch, one all-reduce averages the gradients (and the loss, and the
// stop decision, carried in two extra floats), and every rank applies the same update to its
// own identical copy of the parameters. Exact minibatch SGD with batch P·b.

import { BatchMaker, epochOrder, stepsPerEpoch } from '../data/batches.js';
import type { Strategy, StrategyContext } from './context.js';
import { StepReporter, checkFinite, evaluate } from './common.js';

export const allreduce: Strategy = async (context: StrategyContext) => {
  const { comm, model, train, batch, epochs, seed, workers, start } = context;
  const size = model.layout.size;
  const params = start.params;
  await comm.broadcast(params, 0); // rank 0's initial (or resumed) parameters everywhere
  const optimizer = context.makeOptimizer();
  for (const [name, values] of Object.entries(start.optimizerState)) optimizer.state[name].set(values);
  optimizer.steps = start.optimizerSteps;

  // [gradient | loss | stop]: one all-reduce per step carries all three
  const message = new Float32Array(size + 2);
  const grad = message.subarray(0, size);
  const order = new Uint32Array(train.count);
  const trainMaker = new BatchMaker(train, context.sampleShape, batch);
  const testMaker = new BatchMaker(context.test, context.sampleShape, model.maxBatch);
  const steps = stepsPerEpoch(train.count, workers, batch);
  const reporter = new StepReporter();

  for (let epoch = start.epoch; epoch < epochs; epoch++) {
    epochOrder(order, seed, epoch);
    const epochStart = performance.now();
    const firstStep = epoch === start.epoch ? start.step : 0;
    let lossSum = 0;
    for (let step = firstStep; step < steps; step++) {
      const loss = model.lossAndGrad(params, trainMaker.fromOrder(order, (step * workers + comm.rank) * batch, batch), grad);
      message[size] = loss;
      message[size + 1] = comm.rank === 0 && context.stopRequested() ? 1 : 0;
      await comm.allreduce(message, 'mean');
      const lr = context.learningRate(epoch + (step + 1) / steps);
      const meanLoss = message[size];
      checkFinite(meanLoss, epoch * steps + step, epoch, lr);
      optimizer.step(params, grad, lr);
      lossSum += meanLoss;
      const stop = message[size + 1] > 0;
      const next = { params, optimizerState: optimizer.state, optimizerSteps: optimizer.steps, epoch, step: step + 1 };
      if (comm.rank === 0) {
        if (reporter.due(step, steps)) {
          context.report({ kind: 'step', epoch, step, stepsPerEpoch: steps, samples: (epoch * steps + step + 1) * workers * batch, loss: meanLoss, lr, bytesSent: comm.bytesSent });
        }
        if (stop || (context.saveEvery > 0 && (step + 1) % context.saveEvery === 0 && step + 1 < steps)) context.save(next);
      }
      if (stop) return { params, stoppedEarly: true };
    }
    const trainSeconds = (performance.now() - epochStart) / 1000;
    const { loss, accuracy } = await evaluate(context, params, testMaker);
    if (comm.rank === 0) {
      context.report({ kind: 'epoch', epoch, trainLoss: lossSum / (steps - firstStep), testLoss: loss, testAccuracy: accuracy, trainSeconds, samples: (steps - firstStep) * workers * batch, bytesSent: comm.bytesSent });
      context.save({ params, optimizerState: optimizer.state, optimizerSteps: optimizer.steps, epoch: epoch + 1, step: 0 });
    }
  }
  return { params, stoppedEarly: false };
};
