// Local SGD (relaxed coherence): every worker keeps its own copy of the parameters and its own
// optimiser state and trains alone; every --sync-every k steps (and at each epoch's end, and
// before a checkpoint) the copies are averaged with one all-reduce. k = 1 is synchronous SGD
// again: averaging the copies after one momentum step each gives what averaging the gradients
// would (the update is linear in the gradient), up to float rounding.
//
// With --param-precision bf16|int8 each copy is stored rounded (stochastically) after every local
// step, and the average is rounded alike on every rank; the average itself travels as float32.

import type { Strategy } from './strategy.js';
import { CompressedExchange } from './exchange.js';
import { ParameterStorage } from './precision.js';

export const localSgd: Strategy = async (setup) => {
  const { comm, model, seed, syncEvery, hook } = setup;
  const size = model.layout.size;
  const params = comm.allocate(size); // averaged in place
  params.set(setup.startParams);
  await comm.broadcast(params, 0);
  const storage = setup.paramPrecision === 'fp32' ? null : new ParameterStorage(setup.paramPrecision, size, seed, comm);
  if (!setup.startRounded) storage?.roundAll(params);
  const grad = new Float32Array(size);
  // compressed: the copies exchange their change since the last average (with error feedback), not themselves
  const exchange = hook ? new CompressedExchange(comm, hook, size) : null;
  const anchor = exchange ? Float32Array.from(params) : null;
  const optimizer = setup.optimizer();
  const scalars = new Float32Array(2); // [mean loss since the last average, stop]
  let localLoss = 0;
  let localCount = 0;
  let exchanged = 0;
  // the optimiser states are averaged too before a checkpoint; this says they already are
  let stateAveraged = false;
  const averageState = async () => {
    for (const values of Object.values(optimizer.state)) await comm.allreduce(values, 'mean');
    stateAveraged = true;
  };

  /** Averages the copies, and agrees on the loss since the last average and on stopping. */
  const average = async (stopAsked: boolean, epoch: number) => {
    scalars[0] = localLoss / Math.max(1, localCount);
    scalars[1] = stopAsked ? 1 : 0;
    let result: { loss: number; stop: boolean };
    if (exchange && anchor) {
      for (let i = 0; i < size; i++) params[i] -= anchor[i]; // the change since the last average
      result = await exchange.allreduceMean(params, scalars[0], scalars[1] > 0, epoch);
      for (let i = 0; i < size; i++) params[i] += anchor[i];
      anchor.set(params);
    } else {
      await comm.allreduce(params, 'mean');
      await comm.allreduce(scalars, 'mean');
      result = { loss: scalars[0], stop: scalars[1] > 0 };
    }
    storage?.roundAll(params);
    return result;
  };

  return {
    params,
    // the bytes of the steps' averages (not the start-up broadcast or a checkpoint's state): the payloads' with a hook
    bytesSent: () => (exchange ? exchange.bytesSent : exchanged),
    async step(input) {
      storage?.atStep(input.epoch * input.steps + input.step);
      stateAveraged = false;
      const loss = await input.gradient(params, grad);
      optimizer.step(params, grad, input.lr);
      storage?.roundOwn(params);
      localLoss += loss;
      localCount++;
      const last = input.step + 1 === input.steps;
      if ((input.step + 1) % syncEvery !== 0 && !last && !input.meetAfter) return { stop: false };
      const before = comm.bytesSent;
      const result = await average(comm.rank === 0 && input.stopRequested(), input.epoch + (input.step + 1) / input.steps);
      if (input.meetAfter || last) await averageState();
      exchanged += comm.bytesSent - before;
      const weight = localCount;
      localLoss = 0;
      localCount = 0;
      return { loss: result.loss, weight, stop: result.stop };
    },
    async snapshot() {
      if (!stateAveraged) await averageState();
      return { optimizerState: optimizer.state, optimizerSteps: optimizer.steps };
    },
  };
};
