// Fault injection for the failure-handling tests: CONVERGE_TEST_FAULT=RANK:STEP:MODE makes rank
// RANK misbehave at its STEP-th gradient computation — MODE throw (an exception), exit (the
// thread ends at once, as a crash would end it), kill (the process sends itself SIGKILL) or stall
// (stops calling collectives). Only the
// environment variable turns it on; a training run without it is untouched.

import type { Model } from '../models/model.js';
import { badOption } from '../errors.js';

export function withFault(model: Model, rank: number, spec = process.env.CONVERGE_TEST_FAULT): Model {
  if (!spec) return model;
  const [rankText, stepText, mode] = spec.split(':');
  if (!['throw', 'exit', 'kill', 'stall'].includes(mode) || !(Number(stepText) >= 1)) throw badOption('CONVERGE_TEST_FAULT', spec, 'RANK:STEP:throw|exit|kill|stall');
  if (Number(rankText) !== rank) return model;
  let calls = 0;
  const fault = () => {
    if (++calls !== Number(stepText)) return;
    if (mode === 'throw') throw new Error(`injected fault at step ${calls}`);
    if (mode === 'exit') process.exit(9);
    if (mode === 'kill') process.kill(process.pid, 'SIGKILL');
    // a minute: long past any test timeout, short enough that an orphan does not run on
    const until = Date.now() + 60_000;
    while (Date.now() < until); // alive but silent, until the launcher terminates the thread
  };
  type B = Parameters<Model['lossAndGrad']>[1];
  const lossAndGrad = model.lossAndGrad.bind(model);
  const lossAndGradAsync = model.lossAndGradAsync?.bind(model);
  return Object.assign(Object.create(model) as Model, {
    lossAndGrad(params: Float32Array, batch: B, grad: Float32Array): number {
      fault();
      return lossAndGrad(params, batch, grad);
    },
    ...(lossAndGradAsync ? {
      lossAndGradAsync(params: Float32Array, batch: B, grad: Float32Array): Promise<number> {
        fault();
        return lossAndGradAsync(params, batch, grad);
      },
    } : {}),
  });
}
