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

import type { Strategy } from './strategy.js';
import { CompressedExchange } from './exchange.js';
import { ParameterStorage } from './precision.js';

export const allreduce: Strategy = async (setup) => {
  const { comm, model, seed, hook } = setup;
  const size = model.layout.size;
  // parameters and gradients live where the communicator reads them in place: nothing is copied in
  const params = comm.allocate(size);
  const grad = comm.allocate(size);
  params.set(setup.startParams);
  await comm.broadcast(params, 0); // rank 0's initial (or resumed) parameters everywhere
  const storage = setup.paramPrecision === 'fp32' ? null : new ParameterStorage(setup.paramPrecision, size, seed, comm);
  storage?.roundAll(params);
  // with a compression hook every rank exchanges payloads and applies the whole update itself
  const exchange = hook ? new CompressedExchange(comm, hook, size) : null;
  const optimizer = setup.optimizer();
  const scalars = new Float32Array(2); // [loss, stop], averaged across ranks
  // the bytes of the steps' exchanges only (not the start-up broadcast or the evaluations)
  let exchanged = 0;

  return {
    params,
    bytesSent: () => (exchange ? exchange.bytesSent : exchanged),
    async step(input) {
      const localLoss = await input.gradient(params, grad);
      const stopAsked = comm.rank === 0 && input.stopRequested();
      if (exchange) {
        const { loss, stop } = await exchange.allreduceMean(grad, localLoss, stopAsked, input.epoch + input.step / input.steps);
        optimizer.step(params, grad, input.lr);
        storage?.roundAll(params); // every rank applied the same update: round it alike
        return { loss, stop };
      }
      scalars[0] = localLoss;
      scalars[1] = stopAsked ? 1 : 0;
      const before = comm.bytesSent;
      const [first, end] = await comm.reduceScatter(grad, 'mean');
      await comm.allreduce(scalars, 'mean');
      optimizer.step(params, grad, input.lr, first, end);
      if (storage) await storage.allgatherShares(params, first, end);
      else await comm.allgatherShares(params);
      exchanged += comm.bytesSent - before;
      return { loss: scalars[0], stop: scalars[1] > 0 };
    },
    async snapshot() {
      // sharded: gather the state's shares; compressed: every rank holds the whole state already
      if (!exchange) for (const values of Object.values(optimizer.state)) await comm.allgatherShares(values);
      return { optimizerState: optimizer.state, optimizerSteps: optimizer.steps };
    },
  };
};
