// Pieces every strategy's loop shares.

import { makeBatcher, shareOf, stepsPerEpoch, type Batcher } from '../data/batches.js';
import { divergence } from '../errors.js';
import type { StrategyContext, TrainingState } from './context.js';
import type { Optimizer } from '../optim/optimizers.js';
import type { Communicator } from '../comm/communicator.js';
import type { Hook } from '../compress/hook.js';

/**
 * Every rank's compression-hook state (error feedback, momentum, random stream), gathered at
 * rank 0 as `hook.NAME.RANK` arrays for its checkpoint. A collective: every rank calls it.
 */
export async function gatherHookState(comm: Communicator, hook: Hook | null | undefined): Promise<Record<string, Float32Array>> {
  const state = hook?.saveState?.();
  const out: Record<string, Float32Array> = {};
  if (!state) return out;
  for (const [name, values] of Object.entries(state)) {
    const n = values.length;
    const recv = comm.rank === 0 ? new Float32Array(n * comm.size) : null;
    await comm.gather(values, recv, 0);
    if (recv) for (let r = 0; r < comm.size; r++) out[`hook.${name}.${r}`] = recv.subarray(r * n, (r + 1) * n);
  }
  return out;
}

/**
 * Restores this rank's hook state from a checkpoint. On the same number of ranks each takes its
 * own; on another number, rank 0 takes the sum of every rank's error feedback and momentum (what
 * was owed is still owed: nothing is lost) and the others start empty.
 */
export function restoreHookState(hook: Hook | null | undefined, start: TrainingState, rank: number, size: number): void {
  if (!hook?.loadState) return;
  const saved = new Map<string, Float32Array[]>();
  for (const [key, values] of Object.entries(start.optimizerState)) {
    const match = /^hook\.(.+)\.(\d+)$/.exec(key);
    if (!match) continue;
    if (!saved.has(match[1])) saved.set(match[1], []);
    saved.get(match[1])![Number(match[2])] = values;
  }
  if (saved.size === 0) return;
  const ranks = Math.max(...[...saved.values()].map((list) => list.length));
  const state: Record<string, Float32Array> = {};
  for (const [name, list] of saved) {
    if (ranks === size) state[name] = list[rank];
    else if (rank === 0 && name !== 'random') {
      const sum = new Float32Array(list[0].length);
      for (const values of list) for (let i = 0; i < sum.length; i++) sum[i] += values[i];
      state[name] = sum;
    }
  }
  hook.loadState(state);
}

/** How often a step is reported (the last step of an epoch always is). */
const REPORT_INTERVAL_MS = 200;

/** Loads a saved optimiser state; a state the optimiser does not keep (momentum, when a hook applies it) is skipped. */
export function restoreOptimizer(optimizer: Optimizer, start: TrainingState): void {
  for (const [name, values] of Object.entries(start.optimizerState)) optimizer.state[name]?.set(values);
  optimizer.steps = start.optimizerSteps;
}

export class StepReporter {
  private last = 0;
  due(step: number, stepsPerEpoch: number): boolean {
    const now = performance.now();
    if (step + 1 === stepsPerEpoch || now - this.last >= REPORT_INTERVAL_MS) {
      this.last = now;
      return true;
    }
    return false;
  }
}

export function checkFinite(loss: number, globalStep: number, epoch: number, lr: number): void {
  if (!Number.isFinite(loss)) throw divergence(globalStep, epoch, loss, lr);
}

/**
 * Test loss and accuracy with the work shared by every rank of the communicator: each takes
 * a contiguous share of the test split, then one all-reduce sums [loss·count, correct, count].
 */
export async function evaluate(context: StrategyContext, params: Float32Array, batcher: Batcher): Promise<{ loss: number; accuracy: number; rmse: number }> {
  const { comm, model } = context;
  const [first, end] = shareOf(context.dataset.test.count, comm.rank, comm.size);
  const totals = new Float64Array(4);
  for (let start = first; start < end; start += model.maxBatch) {
    const count = Math.min(model.maxBatch, end - start);
    const result = model.evaluate(params, batcher.range(start, count));
    totals[0] += result.loss * count;
    totals[1] += result.correct;
    totals[2] += result.squaredError;
  }
  totals[3] = end - first;
  // float32 sums of counts up to 2²⁴ stay exact; the sums of losses lose only float32 rounding
  const shared = Float32Array.from(totals);
  await comm.allreduce(shared, 'sum');
  const count = shared[3];
  return { loss: shared[0] / count, accuracy: model.task === 'classification' ? shared[1] / count : NaN, rmse: model.task === 'regression' ? Math.sqrt(shared[2] / count) : NaN };
}

/** The samples of the training split, for steps-per-epoch arithmetic. */
export function trainCount(context: StrategyContext): number {
  return context.dataset.train.count;
}

/** What every step loop starts with: the epoch order's buffer, the batchers, the steps per epoch, a reporter. */
export function loopParts(context: StrategyContext) {
  const { dataset, model, batch, workers } = context;
  return {
    order: new Uint32Array(dataset.train.count),
    trainMaker: makeBatcher(dataset, 'train', batch),
    testMaker: makeBatcher(dataset, 'test', model.maxBatch),
    steps: stepsPerEpoch(dataset.train.count, workers, batch),
    reporter: new StepReporter(),
  };
}
