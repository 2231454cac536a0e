// The strategies, by name, and the one table of what each can do. Every check of a strategy's
// abilities (options, launchers, sweeps, the loop) reads this table; nothing else tests names.

import type { BackendName } from '../comm/backends.js';
import { unknownName } from '../errors.js';
import { allreduce } from './allreduce.js';
import type { Strategy } from './strategy.js';
import { parameterServer } from './ps.js';
import { asyncParameterServer } from './async-ps.js';
import { hogwild } from './hogwild.js';
import { localSgd } from './local-sgd.js';
import { pipeline } from './pipeline.js';
import { fsdp } from './fsdp.js';
import { tensorParallel } from './tensor.js';

export interface StrategyEntry {
  readonly run: Strategy;
  readonly description: string;
  /** Rank 0 serves the parameters and computes no gradient: P workers take P + 1 ranks. */
  readonly server: boolean;
  /** The backends it runs on (hogwild needs one array in this process's memory). */
  readonly backends: readonly BackendName[];
  /** Needs point-to-point send/recv (mailboxes in the shm backend). */
  readonly pointToPoint: boolean;
  /** Exchanges gradients (or changes), so --compress applies. */
  readonly compression: boolean;
  /** DGC's momentum correction may move into the compression hook (synchronous exchanges only). */
  readonly hookMomentum: boolean;
  /** --param-precision bf16|int8 is implemented. */
  readonly paramPrecision: boolean;
  /** Every thread updates one parameter array in shared memory. */
  readonly sharedArray: boolean;
  /** Its ranks meet at every step, so it can checkpoint in the middle of an epoch (--save-every). */
  readonly midEpochCheckpoints: boolean;
  /** Models with a per-example step (logreg, svm, mf) take one plain SGD step per example, not per minibatch. */
  readonly perExampleSteps: boolean;
  /** Every rank computes every step, together: batch norm can reduce its statistics across them inside the step (--sync-bn). */
  readonly syncBatchNorm: boolean;
  /**
   * The option that says across how many ranks one worker's model is split — its pipeline's
   * --stages, or its --tensor-parallel group — so a worker takes that many ranks; null: one.
   */
  readonly modelRanks: 'stages' | 'tensorParallel' | null;
  /** It runs the model layer by layer (a chain of layers: sequential([...]), mlp, cnn, resnet20), not through lossAndGrad. */
  readonly layerChain: boolean;
}

const everywhere: readonly BackendName[] = ['shm', 'tcp', 'mpi'];

export const strategies: Readonly<Record<string, StrategyEntry>> = {
  allreduce: {
    run: allreduce, description: 'synchronous; gradients averaged by all-reduce (reduce-scatter + all-gather), no server',
    server: false, backends: everywhere, pointToPoint: false, compression: true, hookMomentum: true, paramPrecision: true, sharedArray: false, midEpochCheckpoints: true, perExampleSteps: false, syncBatchNorm: true, modelRanks: null, layerChain: false,
  },
  ps: {
    run: parameterServer, description: 'synchronous parameter server: one extra thread holds the parameters and gathers every gradient',
    server: true, backends: everywhere, pointToPoint: false, compression: true, hookMomentum: true, paramPrecision: true, sharedArray: false, midEpochCheckpoints: true, perExampleSteps: false, syncBatchNorm: false, modelRanks: null, layerChain: false,
  },
  'async-ps': {
    run: asyncParameterServer, description: 'asynchronous parameter server: each push applied as it arrives, workers at most --staleness steps apart',
    server: true, backends: everywhere, pointToPoint: true, compression: true, hookMomentum: false, paramPrecision: false, sharedArray: false, midEpochCheckpoints: false, perExampleSteps: false, syncBatchNorm: false, modelRanks: null, layerChain: false,
  },
  hogwild: {
    run: hogwild, description: 'Hogwild!: lock-free updates of one shared parameter array (threads only)',
    server: false, backends: ['shm'], pointToPoint: false, compression: false, hookMomentum: false, paramPrecision: true, sharedArray: true, midEpochCheckpoints: false, perExampleSteps: true, syncBatchNorm: false, modelRanks: null, layerChain: false,
  },
  'local-sgd': {
    run: localSgd, description: 'local SGD: own copies, averaged every --sync-every steps',
    server: false, backends: everywhere, pointToPoint: false, compression: true, hookMomentum: false, paramPrecision: true, sharedArray: false, midEpochCheckpoints: true, perExampleSteps: false, syncBatchNorm: true, modelRanks: null, layerChain: false,
  },
  pipeline: {
    run: pipeline, description: 'pipeline parallelism: the layers cut into --stages stages, one rank each, --microbatches in flight (--pipeline-schedule gpipe|1f1b)',
    server: false, backends: everywhere, pointToPoint: true, compression: false, hookMomentum: false, paramPrecision: false, sharedArray: false, midEpochCheckpoints: true, perExampleSteps: false, syncBatchNorm: false, modelRanks: 'stages', layerChain: true,
  },
  fsdp: {
    run: fsdp, description: 'sharded parameters (ZeRO-3, FSDP): each rank stores 1/P of the parameters, gradients and optimiser state; a layer is all-gathered for its passes, its gradient reduce-scattered',
    server: false, backends: everywhere, pointToPoint: false, compression: false, hookMomentum: false, paramPrecision: false, sharedArray: false, midEpochCheckpoints: true, perExampleSteps: false, syncBatchNorm: false, modelRanks: null, layerChain: true,
  },
  tensor: {
    run: tensorParallel, description: 'tensor parallelism (Megatron): each pair of dense layers split across --tensor-parallel ranks, one all-reduce a pair forward and one backward',
    server: false, backends: everywhere, pointToPoint: true, compression: false, hookMomentum: false, paramPrecision: false, sharedArray: false, midEpochCheckpoints: true, perExampleSteps: false, syncBatchNorm: false, modelRanks: 'tensorParallel', layerChain: true,
  },
};

export const strategyNames = Object.keys(strategies);

export function strategy(name: string): StrategyEntry {
  const entry = strategies[name];
  if (!entry) throw unknownName('strategy', name, strategyNames);
  return entry;
}

/** Ranks one worker's model is split across (its modelRanks option's value; 1 where the strategy does not split it). */
export function ranksPerWorker(entry: StrategyEntry, options: { stages: number; tensorParallel: number }): number {
  return entry.modelRanks ? options[entry.modelRanks] : 1;
}

/** Ranks a job needs for `workers` gradient workers, each of `perWorker` ranks (ranksPerWorker). */
export function ranksFor(entry: StrategyEntry, workers: number, perWorker = 1): number {
  return (entry.server ? workers + 1 : workers) * perWorker;
}

/** The strategies with an ability, for messages ("allreduce, ps, local-sgd"). */
export function strategiesThat(ability: (entry: StrategyEntry) => boolean): string[] {
  return strategyNames.filter((name) => ability(strategies[name]));
}
