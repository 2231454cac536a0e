// Where to cut a chain of layers into pipeline stages: contiguous, none empty, the slowest
// stage as fast as it can be (a step runs at the pace of the slowest stage). Dynamic
// programming over (layers so far, stages so far), as PipeDream's and torchgpipe's balancers do.

import { badOption } from '../errors.js';

/**
 * The first layer of each stage after the first (S − 1 increasing indices in 1..n−1): a cut
 * that minimises the largest stage cost.
 */
export function balancedCuts(costs: readonly number[], stages: number): number[] {
  const n = costs.length;
  if (!Number.isInteger(stages) || stages < 1 || stages > n) throw badOption('--stages', stages, `1 to ${n} (the model has ${n} layers; every stage needs one)`);
  const prefix = [0];
  for (const cost of costs) prefix.push(prefix[prefix.length - 1] + cost);
  const span = (from: number, to: number) => prefix[to] - prefix[from];
  // best[s][j]: the smallest possible largest cost of the first j layers in s stages; from[s][j]: where the last of them starts
  const best = Array.from({ length: stages + 1 }, () => new Array<number>(n + 1).fill(Infinity));
  const from = Array.from({ length: stages + 1 }, () => new Array<number>(n + 1).fill(-1));
  best[0][0] = 0;
  for (let s = 1; s <= stages; s++) {
    for (let j = s; j <= n - (stages - s); j++) {
      for (let i = s - 1; i < j; i++) {
        const worst = Math.max(best[s - 1][i], span(i, j));
        if (worst < best[s][j]) {
          best[s][j] = worst;
          from[s][j] = i;
        }
      }
    }
  }
  const cuts: number[] = [];
  for (let s = stages, j = n; s > 1; s--) {
    j = from[s][j];
    cuts.unshift(j);
  }
  return cuts;
}

/** --stage-cuts "3,7": checked against the chain's length and the stage count. */
export function checkCuts(cuts: readonly number[], layers: number, stages: number): number[] {
  const ok = cuts.length === stages - 1 && cuts.every((c, i) => Number.isInteger(c) && c > (i === 0 ? 0 : cuts[i - 1]) && c < layers);
  if (!ok) throw badOption('--stage-cuts', cuts.join(','), `${stages - 1} increasing layer indices between 1 and ${layers - 1}, where ${stages === 2 ? 'stage 2 begins' : `stages 2..${stages} begin`} (the model has ${layers} layers)`);
  return [...cuts];
}

/** Stage s's layers as [first, end) given the cuts. */
export function stageRange(cuts: readonly number[], layers: number, stage: number): [number, number] {
  return [stage === 0 ? 0 : cuts[stage - 1], stage === cuts.length ? layers : cuts[stage]];
}
