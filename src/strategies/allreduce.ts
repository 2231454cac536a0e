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
//
// With a dense compression hook (fp16, bf16, qsgd, sign) the reduce-scatter carries encoded
// shares, and the all-gather the parameters or the encoded mean gradient, whichever is smaller
// (shard-exchange.ts); the sparsifiers' payloads are all-gathered whole (exchange.ts).

import type { Strategy } from './strategy.js';
import { CompressedExchange } from './exchange.js';
import { ShardExchange } from './shard-exchange.js';
import { ParameterStorage } from './precision.js';
import { encodedBytes } from '../tensor/precision.js';

export const allreduce: Strategy = async (setup) => {
  const { comm, model, seed, hook } = setup;
  const size = model.layout.size;
  // parameters and gradients live where the communicator reads them in place: nothing is copied in
  const params = comm.allocate(size);
  const grad = comm.allocate(size);
  params.set(setup.startParams);
  await comm.broadcast(params, 0); // rank 0's initial (or resumed) parameters everywhere
  const storage = setup.paramPrecision === 'fp32' ? null : new ParameterStorage(setup.paramPrecision, size, seed, comm);
  if (!setup.startRounded) storage?.roundAll(params);
  // no hook and the dense hooks: by share (reduce-scatter, all-gather); the sparsifiers: every rank gathers every payload
  const whole = hook && !hook.encodeShare ? new CompressedExchange(comm, hook, size) : null;
  const shares = whole ? null : new ShardExchange(comm, hook, size, encodedBytes(setup.paramPrecision, size) / size);
  const optimizer = setup.optimizer();
  // the optimiser state is current only in this rank's share when each rank updates its own share
  const stateSharded = shares?.gathersParameters ?? false;
  // the bytes of the steps' exchanges only (not the start-up broadcast or the evaluations)
  let exchanged = 0;

  return {
    params,
    bytesSent: () => (whole ? whole.bytesSent : exchanged),
    async step(input) {
      storage?.atStep(input.epoch * input.steps + input.step);
      const localLoss = await input.gradient(params, grad);
      const stopAsked = comm.rank === 0 && input.stopRequested();
      const step = { epoch: input.epoch + input.step / input.steps };
      if (whole) {
        const { loss, stop } = await whole.allreduceMean(grad, localLoss, stopAsked, step.epoch);
        optimizer.step(params, grad, input.lr);
        storage?.roundAll(params); // every rank applied the same update: round it alike
        return { loss, stop };
      }
      const before = comm.bytesSent;
      const { loss, stop } = await shares!.reduceScatterMean(grad, localLoss, stopAsked, step);
      if (shares!.gathersParameters) {
        const [first, end] = shares!.share;
        optimizer.step(params, grad, input.lr, first, end);
        if (storage) await storage.allgatherShares(params, first, end);
        else await comm.allgatherShares(params);
      } else {
        await shares!.allgatherMean(grad, step);
        optimizer.step(params, grad, input.lr);
        storage?.roundAll(params);
      }
      exchanged += comm.bytesSent - before;
      return { loss, stop };
    },
    async snapshot() {
      if (stateSharded) for (const values of Object.values(optimizer.state)) await comm.allgatherShares(values);
      return { optimizerState: optimizer.state, optimizerSteps: optimizer.steps };
    },
  };
};
