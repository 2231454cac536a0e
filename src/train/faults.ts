// Fault injection for the failure-handling tests: CONVERGE_TEST_FAULT=RANK:STEP:MODE makes rank
// RANK misbehave at its STEP-th gradient computation — MODE throw (an exception), exit (the
// thread ends at once, as a crash would end it), kill (the process sends itself SIGKILL) or stall
// (stops calling collectives). Only the
// environment variable turns it on; a training run without it is untouched. And --slow-rank,
// a straggler on purpose (a run's option, for measuring what asynchrony buys).

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
  return aroundGradients(model, fault, () => {});
}

const sleeper = new Int32Array(new SharedArrayBuffer(4));
/** Blocks this thread for `ms` without using its core. */
const sleepFor = (ms: number) => void Atomics.wait(sleeper, 0, 0, ms);

/** --slow-rank R:F: rank R's gradient computations take F times as long. */
export function parseSlowRank(spec: string): { rank: number; factor: number } {
  const match = /^(\d+):(\d+(?:\.\d+)?)$/.exec(spec.trim());
  const factor = match ? Number(match[2]) : NaN;
  if (!match || !(factor >= 1)) throw badOption('--slow-rank', spec, 'RANK:FACTOR with a factor ≥ 1, e.g. 1:2 (rank 1 computes at half speed)');
  return { rank: Number(match[1]), factor };
}

/**
 * A straggler on purpose: on rank `rank`, every gradient computation is followed by a pause of
 * (factor − 1) × its own duration, slept (Atomics.wait), so the core stays free for the other
 * ranks as a slow machine would leave theirs. Other ranks' models are returned as they are.
 */
export function withSlowdown(model: Model, rank: number, slow: { rank: number; factor: number } | undefined,
  clock: () => number = () => performance.now(), sleep: (ms: number) => void = sleepFor): Model {
  if (!slow || slow.rank !== rank || slow.factor === 1) return model;
  return aroundGradients(model, clock, (started) => sleep((slow.factor - 1) * (clock() - started)));
}

/**
 * The model with `before` called ahead of each gradient computation (lossAndGrad, or its awaited
 * form) and `after` given what `before` returned, once the computation is done.
 */
function aroundGradients<T>(model: Model, before: () => T, after: (token: T) => void): Model {
  type B = Parameters<Model['lossAndGrad']>[1];
  const lossAndGrad = model.lossAndGrad.bind(model);
  const lossAndGradAsync = model.lossAndGradAsync?.bind(model);
  return Object.assign(Object.create(model) as Model, {
    lossAndGrad(params: Float32Array, batch: B, grad: Float32Array): number {
      const token = before();
      const loss = lossAndGrad(params, batch, grad);
      after(token);
      return loss;
    },
    ...(lossAndGradAsync ? {
      async lossAndGradAsync(params: Float32Array, batch: B, grad: Float32Array): Promise<number> {
        const token = before();
        const loss = await lossAndGradAsync(params, batch, grad);
        after(token);
        return loss;
      },
    } : {}),
  });
}
