// The strategies, by name. A strategy may need ranks beyond the workers (a server).

import { unknownName } from '../errors.js';
import { allreduce } from './allreduce.js';
import type { Strategy } from './context.js';
import { parameterServer } from './ps.js';
import { asyncParameterServer } from './async-ps.js';
import { hogwild } from './hogwild.js';
import { localSgd } from './local-sgd.js';

export interface StrategyEntry {
  run: Strategy;
  /** Needs point-to-point messages (mailboxes in the shm backend). */
  pointToPoint?: boolean;
  /** Ranks the communicator needs for `workers` gradient workers. */
  ranks(workers: number): number;
  description: string;
}

export const strategies: Record<string, StrategyEntry> = {
  allreduce: { run: allreduce, ranks: (w) => w, description: 'synchronous; gradients averaged by all-reduce (reduce-scatter + all-gather), no server' },
  ps: { run: parameterServer, ranks: (w) => w + 1, description: 'synchronous parameter server: one extra thread holds the parameters and gathers every gradient' },
  'async-ps': { run: asyncParameterServer, ranks: (w) => w + 1, pointToPoint: true, description: 'asynchronous parameter server: each push applied as it arrives, workers at most --staleness steps apart' },
  hogwild: { run: hogwild, ranks: (w) => w, description: 'Hogwild!: lock-free updates of one shared parameter array (threads only)' },
  'local-sgd': { run: localSgd, ranks: (w) => w, description: 'local SGD: own copies, averaged every --sync-every steps' },
};

export const strategyNames = Object.keys(strategies);

export function strategy(name: string): StrategyEntry {
  const entry = strategies[name];
  if (!entry) throw unknownName('strategy', name, strategyNames);
  return entry;
}
