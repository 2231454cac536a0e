// The strategies, by name. A strategy may need ranks beyond the workers (a server).

import { unknownName } from '../errors.js';
import { allreduce } from './allreduce.js';
import type { Strategy } from './context.js';
import { parameterServer } from './ps.js';

export interface StrategyEntry {
  run: Strategy;
  /** Ranks the communicator needs for `workers` gradient workers. */
  ranks(workers: number): number;
  description: string;
}

export const strategies: Record<string, StrategyEntry> = {
  allreduce: { run: allreduce, ranks: (w) => w, description: 'synchronous; gradients averaged by all-reduce (reduce-scatter + all-gather), no server' },
  ps: { run: parameterServer, ranks: (w) => w + 1, description: 'synchronous parameter server: one extra thread holds the parameters and gathers every gradient' },
};

export const strategyNames = Object.keys(strategies);

export function strategy(name: string): StrategyEntry {
  const entry = strategies[name];
  if (!entry) throw unknownName('strategy', name, strategyNames);
  return entry;
}
