// The synchronous parameter server. Rank 0 is the server and holds the parameters and the
// optimiser; ranks 1..P are workers. Each step the server broadcasts the parameters (with the
// stop decision in one extra float), every worker computes the gradient of its minibatch and
// the server gathers all P of them (with their losses), averages them and updates. The server
// receives P gradients per step: the bottleneck this strategy is known for.
//
// With --param-precision bf16|int8 the server's parameters are rounded stochastically into the
// storage format after each update and broadcast encoded.

import { kernel } from '../kernels/registry.js';
import type { Strategy } from './strategy.js';
import { CompressedExchange } from './exchange.js';
import { ParameterStorage } from './precision.js';

export const parameterServer: Strategy = async (setup) => {
  const { comm, model, seed, workers, hook } = setup;
  const isServer = comm.rank === 0;
  const size = model.layout.size;
  // [parameters | stop], broadcast by the server; in the communicator's memory, read in place
  const outgoing = comm.allocate(size + 1);
  const params = outgoing.subarray(0, size);
  params.set(setup.startParams);
  const storage = setup.paramPrecision === 'fp32' ? null : new ParameterStorage(setup.paramPrecision, size, seed, comm);
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
  const exchange = hook ? new CompressedExchange(comm, hook, size) : null;
  const gathered = isServer && !exchange ? new Float32Array((workers + 1) * (size + 1)) : null;
  const optimizer = isServer ? setup.optimizer() : null;
  // bytes per worker: what each pushed to the server (the server's broadcasts are its own traffic); the server counts
  // every worker's pushes and gives their mean, a worker its own
  let uncompressedPushes = 0;

  return {
    params,
    bytesSent: () => (exchange ? (isServer ? exchange.bytesReceived / workers : exchange.bytesSent) : (4 * (size + 1) * uncompressedPushes) / workers),
    async step(input) {
      storage?.atStep(input.epoch * input.steps + input.step);
      await broadcastParameters(isServer && input.stopRequested() ? 1 : 0);
      if (!isServer) update[size] = await input.gradient(params, grad);
      let meanLoss = 0;
      if (exchange) meanLoss = await exchange.gatherMean(grad, update[size], 0, input.epoch + input.step / input.steps);
      else {
        await comm.gather(update, gathered, 0);
        // the mean of the workers' [gradient | loss] (ranks 1..P of the gathered rows)
        if (gathered) kernel('reduceStrided')(gathered, size + 1, size + 1, workers, 0, size + 1, update, 0, 1 / workers);
        meanLoss = update[size];
        uncompressedPushes += workers;
      }
      const stop = outgoing[size] > 0;
      if (!optimizer) return { stop };
      optimizer.step(params, grad, input.lr);
      return { loss: meanLoss, stop };
    },
    async endSteps(stopped, trainLoss) {
      // the epoch's final parameters, so every rank can evaluate a share
      if (!stopped) {
        if (storage) await broadcastParameters(0);
        else await comm.broadcast(params, 0);
      }
      return { stop: stopped, trainLoss };
    },
    async snapshot() {
      return optimizer ? { optimizerState: optimizer.state, optimizerSteps: optimizer.steps } : null;
    },
  };
};
