// train(): the library's way into a run. The options are TrainConfig's, named as in the CLI
// without the dashes (--sync-every is syncEvery); `model` and `data` take what --model and
// --dataset take, plus a model module's URL and a data set already in memory.

import type { Dataset } from '../data/dataset.js';
import { badOption, ConvergeError } from '../errors.js';
import { isProcessBackend } from '../comm/backends.js';
import { trainOnProcess } from '../launch/process-rank.js';
import { trainOnThreads } from '../launch/threads.js';
import { defaults, optionNames, withRecommended, type TrainConfig } from '../train/config.js';
import type { TrainingEvent } from '../train/loop.js';
import type { Summary } from '../train/monitor.js';

export type StepReport = Extract<TrainingEvent, { kind: 'step' }>;
export type EpochReport = Extract<TrainingEvent, { kind: 'epoch' }>;
export type EvaluationReport = Extract<TrainingEvent, { kind: 'evaluation' }>;

export interface TrainOptions extends Partial<Omit<TrainConfig, 'model' | 'dataset' | 'stopAfterSteps'>> {
  /** A built-in model's name ('mlp'), or a model module: a URL (new URL('./my-model.js', import.meta.url)) or a path. */
  model: string | URL;
  /** A data set's name or path (as --dataset), or one already in memory; default 'fashion-mnist'. */
  data?: string | Dataset;
  /** After every epoch, on this thread, with the test figures. */
  onEpoch?: (report: EpochReport) => void;
  /** A few times a second while training. */
  onStep?: (report: StepReport) => void;
  /** At every evaluation (evalEvery; each epoch's end included), with the test figures and the training time so far. */
  onEvaluation?: (report: EvaluationReport) => void;
  /** Aborting it stops the run after the current step (and saves, with `save`); the result then says stoppedEarly. */
  signal?: AbortSignal;
  /** Stop (and save) after this many steps: an interruption on purpose. */
  stopAfterSteps?: number;
}

export interface TrainOutcome {
  /** The run's figures (in a process job, rank 0 has them; the other ranks' are empty). */
  summary: Summary;
  /** The trained parameters, in the model's layout (undefined on ranks other than 0 of a process job). */
  params?: Float32Array;
  /** Where a resumed run started. */
  resumedFrom?: { epoch: number; step: number };
}

// the dataset option is `data` here; the callbacks and the signal are train()'s own
const known = new Set<string>([...optionNames.filter((name) => name !== 'dataset'), 'data', 'onEpoch', 'onStep', 'onEvaluation', 'signal']);

/**
 * Trains a model data-parallel and resolves with the summary and the parameters. With backend
 * 'shm' (the default) the ranks are worker threads of this process; with 'tcp' or 'mpi' this
 * process is one rank of a job (started by `converge launch`, mpirun or srun).
 */
export async function train(options: TrainOptions): Promise<TrainOutcome> {
  for (const key of Object.keys(options)) {
    if (!known.has(key)) throw badOption(key, (options as unknown as Record<string, unknown>)[key], `one of the options of train(): ${[...known].sort().join(', ')}`);
  }
  if (options.model === undefined) throw new ConvergeError('train(): give a model: a built-in name (mlp) or your model module\'s URL.', 'BAD_OPTION');
  const { model, data, onEpoch, onStep, onEvaluation, signal, ...rest } = options;
  if (rest.batch !== undefined && rest.globalBatch !== undefined) throw badOption('globalBatch', rest.globalBatch, 'no batch beside it (each worker\'s batch is globalBatch / workers): give one of the two');
  const given: TrainConfig = { ...defaults, ...rest, model: model instanceof URL ? model.href : model, dataset: typeof data === 'object' ? data.name : data ?? defaults.dataset };
  // a built-in model's recipe (ResNet-20's schedule and weight decay) where the options leave it open
  const { config } = withRecommended(given, (option) => option in rest);
  if (typeof data === 'object' && data.kind === 'images' && data.stream && !isProcessBackend(config.backend)) {
    throw badOption('backend', config.backend, 'tcp or mpi for a data set fed while it trains (a stream): its buffer is filled in this process, which worker threads do not share');
  }
  const stopFlag = new SharedArrayBuffer(4);
  const stop = () => Atomics.store(new Int32Array(stopFlag), 0, 1);
  if (signal?.aborted) stop();
  signal?.addEventListener('abort', stop, { once: true });
  const hooks = {
    stopFlag,
    dataset: typeof data === 'object' ? data : undefined,
    onStart: (monitor: { listen(listener: (event: TrainingEvent) => void): void }) => {
      monitor.listen((event) => {
        if (event.kind === 'epoch') onEpoch?.(event);
        else if (event.kind === 'step') onStep?.(event);
        else if (event.kind === 'evaluation') onEvaluation?.(event);
      });
    },
  };
  try {
    if (isProcessBackend(config.backend)) {
      const result = await trainOnProcess(config, { ...hooks, workersAsked: options.workers, modelRanksAsked: options.stages ?? options.tensorParallel });
      return { summary: result.summary, params: result.params, resumedFrom: result.resumedFrom };
    }
    return await trainOnThreads(config, hooks);
  } finally {
    signal?.removeEventListener('abort', stop);
  }
}
