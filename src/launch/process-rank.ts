// Runs this process as one rank of a multi-process job (--backend tcp or mpi): every rank loads
// the data and builds the starting state itself (deterministic from the seed; a resumed state is
// read by every rank, and rank 0's copy is what the strategies broadcast), joins the
// communicator, and runs the strategy. Rank 0 owns the log, the progress and the checkpoints.

import { ConvergeError, badOption, rankFailure } from '../errors.js';
import { ranksFor, strategy } from '../strategies/index.js';
import { validate, type TrainConfig } from '../train/config.js';
import { Monitor } from '../train/monitor.js';
import { trainRank, type RankInput } from '../train/run.js';
import { agreeOnConfiguration, IDENTITY_FLOATS, jobIdentity } from './agreement.js';
import { createProcessCommunicator } from './communicator.js';
import { placeFromEnvironment } from './environment.js';
import { largestMessage, prepareRun, runFacts, type LaunchHooks, type TrainResult } from './threads.js';

export interface ProcessTrainResult extends Omit<TrainResult, 'params'> {
  /** The trained parameters: rank 0's (the others have theirs in the strategy's buffers only). */
  params?: Float32Array;
  /** Every rank's summary; its figures are rank 0's to report (the others' are empty). */
  rank: number;
  size: number;
}

/** Gradient workers among `size` ranks (a parameter server takes one rank). */
export function workersOf(strategyName: string, size: number): number {
  const entry = strategy(strategyName);
  for (let workers = 1; workers <= size; workers++) if (ranksFor(entry, workers) === size) return workers;
  throw new ConvergeError(`--strategy ${strategyName} needs ${ranksFor(entry, 1)} or more ranks (a server and workers); this job has ${size}.`, 'BAD_OPTION');
}

/**
 * --workers (and, where the model is split across ranks, --stages or --tensor-parallel), when
 * given, must agree with the job's size; else they are taken from it.
 */
export async function trainOnProcess(requested: TrainConfig, hooks: LaunchHooks & { workersAsked?: number; modelRanksAsked?: number } = {}): Promise<ProcessTrainResult> {
  // the options' own checks first (a strategy this backend cannot run, say): before joining a job
  validate(requested);
  const place = placeFromEnvironment();
  // a split model: workers × ranks per worker — the ranks asked for (else every rank one part of one worker's model)
  const split = strategy(requested.strategy).modelRanks;
  const flag = split === 'stages' ? '--stages' : '--tensor-parallel';
  const perWorker = split ? hooks.modelRanksAsked ?? place.size / (hooks.workersAsked ?? 1) : 1;
  if (split && (!Number.isInteger(perWorker) || place.size % perWorker !== 0)) {
    throw badOption(hooks.modelRanksAsked !== undefined ? flag : '--workers', hooks.modelRanksAsked ?? hooks.workersAsked, `a divisor of the job's ${place.size} processes: each of the --workers workers takes ${flag} of them`);
  }
  const workers = split ? place.size / perWorker : workersOf(requested.strategy, place.size);
  if (hooks.workersAsked !== undefined && hooks.workersAsked !== workers) {
    throw badOption('--workers', hooks.workersAsked, `${workers}, what the job's ${place.size} processes give ${requested.strategy}${split ? ` with ${flag} ${perWorker}` : ''} (or leave --workers out)`);
  }
  const { config, kernels, dataset, model, start, resumedFrom } = await prepareRun({ ...requested, workers, ...(split ? { [split]: perWorker } : {}) }, place.rank === 0 ? hooks : { ...hooks, notice: undefined, writes: false });
  const size = model.layout.size;
  const comm = await createProcessCommunicator(config.backend, { capacity: Math.max(largestMessage(config, model), IDENTITY_FLOATS), timeoutMs: config.timeoutSeconds * 1000, security: config.transportSecurity, bind: config.bind });
  if (comm.rank !== place.rank || comm.size !== place.size) {
    comm.close();
    throw new ConvergeError(`the environment says rank ${place.rank} of ${place.size} (${place.source}) but ${config.backend} says ${comm.rank} of ${comm.size}; start every rank with the same launcher.`, 'BAD_ENVIRONMENT');
  }
  const isRoot = comm.rank === 0;
  // rank 0 writes the log and the checkpoints; the others only compute
  const monitor = new Monitor(isRoot ? config.log : undefined, runFacts(config, dataset, kernels));
  if (isRoot) hooks.onStart?.(monitor, { config, dataset, parameters: size, kernels, resumedFrom });
  const stopFlag = hooks.stopFlag ?? new SharedArrayBuffer(4);
  if (config.stopAtTarget) monitor.stopAtTarget(stopFlag);
  const input: RankInput = { config: isRoot ? config : { ...config, save: undefined }, dataset, start, kernels, stopFlag };
  try {
    await agreeOnConfiguration(comm, jobIdentity(config, size, dataset.name));
    const output = await trainRank(comm, input, (value) => monitor.onEvent(comm.rank, value));
    const summary = monitor.summary(output.stoppedEarly);
    return { rank: comm.rank, size: comm.size, summary, params: output.params ?? undefined, resumedFrom };
  } catch (error) {
    const text = (error as Error).message;
    comm.abort(rankFailure(comm.rank, text));
    monitor.fail(text);
    throw error;
  } finally {
    monitor.close();
    await comm.close();
  }
}
