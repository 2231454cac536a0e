// Pieces every strategy's loop shares.

import { BatchMaker, shareOf } from '../data/batches.js';
import { divergence } from '../errors.js';
import type { StrategyContext } from './context.js';

/** How often a step is reported (the last step of an epoch always is). */
const REPORT_INTERVAL_MS = 200;

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
export async function evaluate(context: StrategyContext, params: Float32Array, maker: BatchMaker): Promise<{ loss: number; accuracy: number }> {
  const { comm, model, test } = context;
  const [first, end] = shareOf(test.count, comm.rank, comm.size);
  const totals = new Float32Array(3);
  // float32 sums of up to 10⁴–10⁵ integers stay exact; the loss sum is accumulated in float64 first
  let lossSum = 0;
  let correct = 0;
  for (let start = first; start < end; start += model.maxBatch) {
    const count = Math.min(model.maxBatch, end - start);
    const result = model.evaluate(params, maker.range(start, count));
    lossSum += result.loss * count;
    correct += result.correct;
  }
  totals[0] = lossSum;
  totals[1] = correct;
  totals[2] = end - first;
  await comm.allreduce(totals, 'sum');
  return { loss: totals[0] / totals[2], accuracy: totals[1] / totals[2] };
}
