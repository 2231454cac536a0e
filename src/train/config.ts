// Everything a training run is configured by, its defaults, and the checks that turn bad
// values into one clear error before any work starts.

import { isIP } from 'node:net';
import { availableParallelism } from 'node:os';
import { ConvergeError, badOption, unknownName } from '../errors.js';
import { parseCompress } from '../compress/parse.js';
import { backendNames } from '../comm/backends.js';
import { transportSecurities, type TransportSecurity } from '../comm/tcp-seal.js';
import { builtInModel, modelNames } from '../models/index.js';
import { isModelModule } from '../models/module.js';
import { optimizerNames, type OptimizerName } from '../optim/optimizers.js';
import { scheduleNames, type ScheduleName } from '../optim/schedules.js';
import { strategiesThat, strategy, strategyNames } from '../strategies/index.js';
import { pipelineSchedules, type PipelineSchedule } from '../strategies/pipeline-schedule.js';
import { parseSlowRank } from './faults.js';
import { parseRecompute } from '../models/checkpointing.js';
import { paramPrecisions, type ParamPrecision } from '../tensor/precision.js';

export interface TrainConfig {
  dataset: string;
  dataDir?: string;
  testDataset?: string; // a separate test file (else a seeded, stratified tenth of the training file is held out)
  zeroBased: boolean; // libsvm files whose feature indices start at 0
  labelColumn?: string; // CSV: the label column's name or 0-based index
  task: 'auto' | 'classification' | 'regression'; // CSV/NPY: classes or regression targets (auto: names and few integers are classes)
  model: string;
  hidden: number[]; // MLP hidden widths
  l2: number | undefined; // sparse models and MF (model default when undefined)
  factors: number; // matrix factorisation: the rank r of the factors (--factors)
  syncEvery: number; // local-sgd: average the copies every k steps
  staleness: number; // async-ps: how many clocks a worker may run ahead of the slowest
  mergeEvery?: number; // hogwild: examples a worker steps on its own replica between merges into the shared array (0: no replica; unset: replicas for arrays up to 1 MiB, merging every sixteenth of its epoch, at most 1,024)
  compress?: string; // gradient compression hook (--compress); none given: no hook at all
  paramPrecision: ParamPrecision; // how the master copy of the parameters is stored
  syncBn: boolean; // batch norm normalises by every rank's batch together (else each replica by its own)
  workers: number;
  /** pipeline: ranks each worker's model is cut across (one stage each). */
  stages: number;
  /** pipeline: micro-batches each step's batch is split into (they fill the pipeline). */
  microbatches: number;
  /** pipeline: gpipe (every forward, then every backward) or 1f1b (at most S − s micro-batches stored on stage s). */
  pipelineSchedule: PipelineSchedule;
  /** pipeline: the layer indices where stages 2..S begin (else balanced over measured layer costs). */
  stageCuts?: number[];
  /** tensor: ranks each worker's split layers are divided across. */
  tensorParallel: number;
  /** Models of layers: which activations a step stores and which it computes again (none, sqrt, revolve:S, auto; unset: none, or auto with --memory-budget). */
  recompute?: string;
  /** Models of layers: the most bytes of activation memory a rank's step may hold (its arena). */
  memoryBudget?: number;
  /** The most bytes a rank may hold for the model — parameters, gradients, optimiser state, activations — checked before the first step. */
  memoryLimit?: number;
  /** shm: threads of this process; tcp, mpi: this process is one rank of a job (see launch/process-rank.ts) */
  backend: string;
  strategy: string;
  epochs: number;
  batch: number; // per worker
  /** Samples per step over all workers: each worker's batch is globalBatch / workers (in place of batch). */
  globalBatch?: number;
  /** Evaluate every this many epochs (0.25: four times an epoch), or every `N steps`; each epoch's end always. */
  evalEvery: number | string;
  /** Test accuracy (classification) or RMSE (regression) whose first crossing the summary times. */
  target?: number;
  /** Stop the run (every rank, at its next meeting) once an evaluation reaches --target. */
  stopAtTarget: boolean;
  lr: number; // for a global batch of one worker's batch; see lrScaling
  lrScaling: 'linear' | 'none';
  optimizer: OptimizerName;
  momentum: number;
  weightDecay: number;
  schedule: ScheduleName;
  warmupEpochs: number;
  stepEpochs: number;
  gamma: number;
  seed: number;
  save?: string;
  saveEvery: number;
  /** Write checkpoints at most this often (seconds); the run's last is always written. */
  saveEverySeconds?: number;
  resume?: string;
  log?: string;
  timeoutSeconds: number;
  /** Stop (and save, with --save) after this many steps of the run: an interruption on purpose. */
  stopAfterSteps?: number;
  /** 'R:F': rank R computes its gradients F times slower (a straggler on purpose). */
  slowRank?: string;
  /** tcp: what protects frames after the handshake (unset: CONVERGE_TRANSPORT_SECURITY, else encrypt). */
  transportSecurity?: TransportSecurity;
  /** tcp: the address this rank listens on (unset: CONVERGE_BIND, CONVERGE_IFNAME, else the address it reaches rank 0 from). */
  bind?: string;
}

export const defaults: TrainConfig = {
  dataset: 'fashion-mnist',
  model: 'mlp',
  hidden: [512, 256],
  l2: undefined,
  zeroBased: false,
  task: 'auto',
  factors: 16,
  syncEvery: 8,
  staleness: 2,
  paramPrecision: 'fp32',
  syncBn: false,
  workers: availableParallelism(), // one per core
  stages: 1,
  microbatches: 4,
  pipelineSchedule: '1f1b',
  tensorParallel: 1,
  strategy: 'allreduce',
  backend: 'shm',
  epochs: 2,
  batch: 64,
  evalEvery: 1,
  stopAtTarget: false,
  lr: 0.05,
  lrScaling: 'none',
  optimizer: 'momentum',
  momentum: 0.9,
  weightDecay: 0,
  schedule: 'constant',
  warmupEpochs: 0,
  stepEpochs: 1,
  gamma: 0.1,
  seed: 1,
  saveEvery: 0,
  timeoutSeconds: 120,
};

/** The options without a default, so that defaults and these together name every option. */
export const optionalOptions = ['dataDir', 'testDataset', 'labelColumn', 'compress', 'save', 'saveEverySeconds', 'resume', 'log', 'stopAfterSteps', 'globalBatch', 'target', 'slowRank', 'transportSecurity', 'bind', 'stageCuts', 'recompute', 'memoryBudget', 'memoryLimit', 'mergeEvery'] as const satisfies readonly (keyof TrainConfig)[];

/** Every option's name (the TrainConfig field; the CLI flag is it in kebab case). */
export const optionNames: readonly string[] = [...Object.keys(defaults), ...optionalOptions];

/**
 * The model's recommended options (a built-in's recipe, e.g. ResNet-20's schedule) in place of
 * the general defaults, for every option the user did not give; says which it took.
 */
export function withRecommended(config: TrainConfig, given: (option: keyof TrainConfig) => boolean): { config: TrainConfig; taken: string[] } {
  const recommended = modelNames.includes(config.model) ? builtInModel(config.model).recommended ?? {} : {};
  const out = { ...config } as Record<string, unknown>;
  const taken: string[] = [];
  for (const [option, value] of Object.entries(recommended)) {
    if (given(option as keyof TrainConfig)) continue;
    out[option] = value;
    taken.push(`${option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)} ${value}`);
  }
  // a model split across ranks (a pipeline's stages, a tensor-parallel group): one worker, as many ranks as cores, unless the user says
  const modelRanks = strategyNames.includes(config.strategy) ? strategy(config.strategy).modelRanks : null;
  if (modelRanks) {
    if (!given('workers')) out.workers = 1;
    if (!given(modelRanks)) out[modelRanks] = Math.max(2, Math.floor(availableParallelism() / (out.workers as number)));
  }
  return { config: out as unknown as TrainConfig, taken };
}

const STEPS = /^\s*([1-9]\d*)\s*steps?\s*$/;

/**
 * Steps between evaluations, from --eval-every (epochs, or `N steps`) and the steps of an epoch;
 * at least 1. An epoch's end evaluates whatever the interval.
 */
export function evaluationInterval(evalEvery: number | string, stepsPerEpoch: number): number {
  const steps = typeof evalEvery === 'string' ? STEPS.exec(evalEvery) : null;
  if (steps) return Number(steps[1]);
  return Math.max(1, Math.round(Number(evalEvery) * stepsPerEpoch));
}

/** Whether --eval-every asks for evaluations inside an epoch (a fraction of one, or a number of steps). */
function evaluatesMidEpoch(evalEvery: number | string): boolean {
  return (typeof evalEvery === 'string' && STEPS.test(evalEvery)) || Number(evalEvery) < 1;
}

const positiveInteger = (option: string, value: number) => {
  if (!Number.isInteger(value) || value <= 0) throw badOption(option, value, 'a positive integer');
};
const nonNegative = (option: string, value: number) => {
  if (!Number.isFinite(value) || value < 0) throw badOption(option, value, 'a number ≥ 0');
};

/** Checks what can be checked without the data; throws the first problem found. */
export function validate(config: TrainConfig): void {
  if (!modelNames.includes(config.model) && !isModelModule(config.model)) {
    const deep = modelNames.filter((name) => builtInModel(name).deep);
    const small = modelNames.filter((name) => !deep.includes(name));
    throw new ConvergeError(`${unknownName('model', config.model, small).message} Or a deep network: ${deep.join(', ')}; or your own model as the path of its module, e.g. --model ./my-model.js.`, 'UNKNOWN_NAME');
  }
  if (!strategyNames.includes(config.strategy)) throw unknownName('strategy', config.strategy, strategyNames);
  if (!(optimizerNames as readonly string[]).includes(config.optimizer)) throw unknownName('optimizer', config.optimizer, optimizerNames);
  if (!(scheduleNames as readonly string[]).includes(config.schedule)) throw unknownName('schedule', config.schedule, scheduleNames);
  if (!['auto', 'classification', 'regression'].includes(config.task)) throw unknownName('task', config.task, ['auto', 'classification', 'regression']);
  if (!['linear', 'none'].includes(config.lrScaling)) throw badOption('--lr-scaling', config.lrScaling, "'linear' or 'none'");
  positiveInteger('--workers', config.workers);
  positiveInteger('--stages', config.stages);
  positiveInteger('--tensor-parallel', config.tensorParallel);
  positiveInteger('--microbatches', config.microbatches);
  if (!(pipelineSchedules as readonly string[]).includes(config.pipelineSchedule)) throw unknownName('pipeline schedule', config.pipelineSchedule, pipelineSchedules);
  positiveInteger('--epochs', config.epochs);
  positiveInteger('--batch', config.batch);
  if (config.globalBatch !== undefined) {
    positiveInteger('--global-batch', config.globalBatch);
    if (config.globalBatch % config.workers !== 0) throw badOption('--global-batch', config.globalBatch, `a multiple of the ${config.workers} workers (each takes globalBatch / workers samples a step)`);
  }
  const evalEvery = config.evalEvery;
  if (!(typeof evalEvery === 'string' && STEPS.test(evalEvery)) && !(Number(evalEvery) > 0 && Number.isFinite(Number(evalEvery)))) {
    throw badOption('--eval-every', evalEvery, 'a number of epochs (0.25: four times an epoch) or of steps (e.g. 100steps)');
  }
  if (config.target !== undefined && !Number.isFinite(config.target)) throw badOption('--target', config.target, 'a test accuracy (e.g. 0.84) or RMSE');
  if (config.stopAtTarget && config.target === undefined) throw badOption('--stop-at-target', 'given', 'a --target to stop at (e.g. --target 0.84)');
  if (config.slowRank !== undefined) parseSlowRank(config.slowRank);
  if (config.transportSecurity !== undefined) {
    if (!transportSecurities.includes(config.transportSecurity)) throw unknownName('transport security', config.transportSecurity, transportSecurities);
    if (config.backend !== 'tcp') throw badOption('--transport-security', config.transportSecurity, `--backend tcp (shm never leaves this process; mpi's transport is Open MPI's), not ${config.backend}`);
  }
  if (config.bind !== undefined && (config.backend !== 'tcp' || isIP(config.bind) === 0)) {
    throw badOption('--bind', config.bind, config.backend !== 'tcp' ? `--backend tcp, not ${config.backend}` : 'an IP address of this host (e.g. 10.0.0.2; 0.0.0.0 for every interface)');
  }
  if (!Number.isFinite(config.lr) || config.lr <= 0) throw badOption('--lr', config.lr, 'a positive number');
  nonNegative('--momentum', config.momentum);
  nonNegative('--weight-decay', config.weightDecay);
  nonNegative('--warmup-epochs', config.warmupEpochs);
  if (!Number.isFinite(config.stepEpochs) || config.stepEpochs <= 0) throw badOption('--step-epochs', config.stepEpochs, 'a positive number');
  nonNegative('--gamma', config.gamma);
  if (!Number.isInteger(config.seed) || config.seed < 0) throw badOption('--seed', config.seed, 'a non-negative integer');
  if (!Number.isInteger(config.saveEvery) || config.saveEvery < 0) throw badOption('--save-every', config.saveEvery, 'a non-negative integer');
  if (config.saveEverySeconds !== undefined && !(config.saveEverySeconds > 0)) throw badOption('--save-every-seconds', config.saveEverySeconds, 'seconds > 0');
  if (!Number.isFinite(config.timeoutSeconds) || config.timeoutSeconds <= 0) throw badOption('--timeout', config.timeoutSeconds, 'a positive number of seconds');
  if (config.hidden.length === 0 || config.hidden.some((h) => !Number.isInteger(h) || h <= 0)) throw badOption('--hidden', config.hidden.join(','), 'comma-separated positive widths, e.g. 512,256');
  if (config.stopAfterSteps !== undefined) positiveInteger('--stop-after-steps', config.stopAfterSteps);
  if (config.l2 !== undefined) nonNegative('--l2', config.l2);
  positiveInteger('--factors', config.factors);
  positiveInteger('--sync-every', config.syncEvery);
  if (!Number.isInteger(config.staleness) || config.staleness < 0) throw badOption('--staleness', config.staleness, 'a non-negative integer');
  if (config.mergeEvery !== undefined && (!Number.isInteger(config.mergeEvery) || config.mergeEvery < 0)) throw badOption('--merge-every', config.mergeEvery, 'a non-negative integer (examples between merges; 0 writes straight into the shared array)');
  if (!(backendNames as readonly string[]).includes(config.backend)) throw unknownName('backend', config.backend, backendNames);
  if (!(paramPrecisions as readonly string[]).includes(config.paramPrecision)) throw unknownName('param-precision', config.paramPrecision, paramPrecisions);
  const abilities = strategy(config.strategy);
  if (config.paramPrecision !== 'fp32' && !abilities.paramPrecision) {
    throw badOption('--param-precision', config.paramPrecision, `fp32 with ${config.strategy} (low-precision storage works with ${strategiesThat((s) => s.paramPrecision).join(', ')})`);
  }
  if (evaluatesMidEpoch(config.evalEvery) && !abilities.midEpochCheckpoints) {
    throw badOption('--eval-every', config.evalEvery, `1 or more epochs with ${config.strategy}, whose ranks do not meet inside an epoch (mid-epoch evaluation works with ${strategiesThat((s) => s.midEpochCheckpoints).join(', ')})`);
  }
  if (config.mergeEvery !== undefined && !abilities.sharedArray) {
    throw badOption('--merge-every', config.mergeEvery, `a strategy whose workers update one shared array (${strategiesThat((s) => s.sharedArray).join(', ')}), not ${config.strategy}`);
  }
  if (config.tensorParallel !== 1 && abilities.modelRanks !== 'tensorParallel') {
    throw badOption('--tensor-parallel', config.tensorParallel, `a strategy that splits layers across ranks (${strategiesThat((s) => s.modelRanks === 'tensorParallel').join(', ')}), not ${config.strategy}`);
  }
  if (abilities.modelRanks === 'stages') {
    const batch = config.globalBatch ?? config.batch;
    if (batch % config.microbatches !== 0) throw badOption('--microbatches', config.microbatches, `a divisor of the batch (${batch}): each micro-batch takes batch / microbatches samples`);
    if (config.stageCuts !== undefined && (config.stageCuts.length !== config.stages - 1 || config.stageCuts.some((c, i) => !Number.isInteger(c) || c <= (i === 0 ? 0 : config.stageCuts![i - 1])))) {
      throw badOption('--stage-cuts', config.stageCuts.join(','), `${config.stages - 1} increasing layer indices ≥ 1, where stages 2..${config.stages} begin`);
    }
  } else if (config.stages !== 1 || config.stageCuts !== undefined) {
    throw badOption(config.stages !== 1 ? '--stages' : '--stage-cuts', config.stages !== 1 ? config.stages : config.stageCuts!.join(','), `a strategy that cuts the model into stages (${strategiesThat((s) => s.modelRanks === 'stages').join(', ')}), not ${config.strategy}`);
  }
  if (config.memoryBudget !== undefined && !(Number.isInteger(config.memoryBudget) && config.memoryBudget > 0)) throw badOption('--memory-budget', config.memoryBudget, 'a positive number of bytes (e.g. 512MiB)');
  if (config.memoryLimit !== undefined && !(Number.isInteger(config.memoryLimit) && config.memoryLimit > 0)) throw badOption('--memory-limit', config.memoryLimit, 'a positive number of bytes (e.g. 4GiB)');
  if (config.recompute !== undefined) {
    const recompute = parseRecompute(config.recompute);
    if (recompute.kind === 'auto' && config.memoryBudget === undefined) throw badOption('--recompute', 'auto', 'a --memory-budget to fit (e.g. --memory-budget 256MiB)');
  }
  if ((config.recompute !== undefined && config.recompute !== 'none') || config.memoryBudget !== undefined) {
    if (config.syncBn) throw badOption('--recompute', config.recompute ?? 'auto', 'no --sync-bn (a recomputed pass would reduce across ranks again)');
  }
  if (config.syncBn && !abilities.syncBatchNorm) {
    throw badOption('--sync-bn', 'given', `a strategy whose ranks all compute every step together (${strategiesThat((s) => s.syncBatchNorm).join(', ')}), not ${config.strategy}`);
  }
  if (config.compress !== undefined) {
    parseCompress(config.compress);
    if (!abilities.compression) throw badOption('--compress', config.compress, `a strategy that exchanges gradients (${strategiesThat((s) => s.compression).join(', ')}), not ${config.strategy}`);
  }
  if (!(abilities.backends as readonly string[]).includes(config.backend)) {
    const others = strategiesThat((s) => (s.backends as readonly string[]).includes(config.backend)).join(', ');
    throw badOption('--strategy', config.strategy, abilities.sharedArray
      ? `a strategy that does not need one shared parameter array: ${config.strategy} runs on threads (--backend shm), not across processes (--backend ${config.backend}); use ${others}`
      : `a strategy that runs on --backend ${config.backend} (${others})`);
  }
}
