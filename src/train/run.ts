// One rank of a training run: builds the model (a built-in, or a user's module imported here),
// the compression hook and the optimiser (their saved state restored), the strategy's rank, and
// runs the one training loop.

import type { Communicator } from '../comm/communicator.js';
import { stepsPerEpoch } from '../data/batches.js';
import type { Dataset } from '../data/dataset.js';
import { selectKernels } from '../kernels/select.js';
import type { ModelOptions } from '../models/index.js';
import { modelLabel, resolveModel } from '../models/module.js';
import { Optimizer, defaultOptimizer } from '../optim/optimizers.js';
import { learningRate, scaledLearningRate } from '../optim/schedules.js';
import { ranksPerWorker, strategiesThat, strategy } from '../strategies/index.js';
import { gatherParts, MemoryLedger } from './memory.js';
import { EVAL_BATCH, MODEL_BUFFERS } from '../strategies/strategy.js';
import { writeCheckpoint } from './checkpoint.js';
import { parseCompress } from '../compress/parse.js';
import { mixSeed } from '../tensor/random.js';
import { parseSlowRank, withFault, withSlowdown } from './faults.js';
import { badOption } from '../errors.js';
import { evaluationInterval, type TrainConfig } from './config.js';
import { restoreHookState, restoreOptimizer } from './hook-state.js';
import { trainingLoop, type TrainingState } from './loop.js';
import { parseRecompute } from '../models/checkpointing.js';
import type { Sequential } from '../models/sequential.js';

/** Whether the run asks a model of layers for its activation memory to be managed (--recompute, --memory-budget). */
export function asksForMemory(config: TrainConfig): boolean {
  return config.recompute !== undefined || config.memoryBudget !== undefined;
}

export interface RankInput {
  config: TrainConfig;
  dataset: Dataset;
  start: TrainingState;
  stopFlag: SharedArrayBuffer; // [0] = 1 when the user asked to stop
  kernels: string; // the backend the launcher chose; every rank uses the same
  shared?: SharedArrayBuffer; // hogwild: the one parameter array every thread updates
}

/** What a model needs to know of the data: the shape of an image, the number of features, users and items. */
export function modelOptions(dataset: Dataset, config: TrainConfig, maxBatch: number): ModelOptions {
  const memory = { recompute: config.recompute === undefined ? undefined : parseRecompute(config.recompute), memoryBudget: config.memoryBudget };
  const base = { maxBatch, hidden: config.hidden, l2: config.l2, factors: config.factors, ...memory };
  switch (dataset.kind) {
    case 'images':
      return { ...base, inputShape: dataset.shape, classes: dataset.classes, task: dataset.task };
    case 'sparse':
      return { ...base, features: dataset.features, classes: dataset.classes };
    case 'ratings':
      return { ...base, users: dataset.users, items: dataset.items, mean: dataset.mean };
  }
}


export interface RankOutput {
  params: Float32Array | null; // from rank 0, which owns the final parameters in every strategy
  stoppedEarly: boolean;
}

export async function trainRank(comm: Communicator, input: RankInput, emit: (value: unknown) => void): Promise<RankOutput> {
  const { config, dataset, start } = input;
  selectKernels(input.kernels);
  const definition = await resolveModel(config.model);
  // --sync-bn: batch norm sums its statistics over every rank inside the step
  const statistics = config.syncBn ? { allreduceSum: (buffer: Float32Array) => comm.allreduce(buffer, 'sum') } : undefined;
  const capabilities = strategy(config.strategy);
  // a strategy that runs the layers itself (a pipeline's stages) plans their memory itself: its model stores all
  const memory = asksForMemory(config) && capabilities.layerChain ? { recompute: undefined, memoryBudget: undefined } : {};
  const build = (maxBatch: number) => definition.build({ ...modelOptions(dataset, config, maxBatch), ...memory, seed: config.seed, replica: comm.rank, statistics });
  // with a memory budget the arena is sized for the training batch — a pipeline's for its micro-batch — and evaluation runs in batches of that size
  const trainingBatch = capabilities.modelRanks === 'stages' ? config.batch / config.microbatches : config.batch;
  const built = build(asksForMemory(config) ? trainingBatch : Math.max(config.batch, EVAL_BATCH));
  if (comm.rank === 0 && 'activations' in built && !capabilities.layerChain) emit({ kind: 'activations', ...(built as Sequential).activations });
  const model = withSlowdown(withFault(built, comm.rank), comm.rank, config.slowRank === undefined ? undefined : parseSlowRank(config.slowRank));
  if (config.syncBn && !model.lossAndGradAsync) throw badOption('--sync-bn', 'given', `a model with batch norm layers (${model.name} has none)`);
  const size = model.layout.size;
  const baseLr = scaledLearningRate(config.lr, config.workers, config.lrScaling);
  const schedule = { name: config.schedule, baseLr, epochs: config.epochs, warmupEpochs: config.warmupEpochs, stepEpochs: config.stepEpochs, gamma: config.gamma };
  const stopFlag = new Int32Array(input.stopFlag);
  // DGC's momentum correction takes over the optimiser's momentum where the strategy allows it
  const momentum = capabilities.hookMomentum && (config.optimizer === 'momentum' || config.optimizer === 'nesterov') ? config.momentum : 0;
  const hook = config.compress !== undefined ? parseCompress(config.compress)({ size, seed: mixSeed(config.seed, comm.rank), momentum }) : null;
  restoreHookState(hook, start.optimizerState, comm.rank, comm.size);
  let stepsAsked = 0;
  const ledger = new MemoryLedger(comm.rank, config.memoryLimit);
  const rank = await capabilities.run({
    comm, model, workers: config.workers, batch: config.batch, seed: config.seed, startParams: start.params, startRounded: start.paramsStoredAs === config.paramPrecision, startBuffers: start.optimizerState[MODEL_BUFFERS],
    paramPrecision: config.paramPrecision, syncEvery: config.syncEvery, staleness: config.staleness, mergeEvery: config.mergeEvery, sharedBuffer: input.shared, hook,
    optimizer: (range = [0, size]) => {
      const optimizer = new Optimizer({ ...defaultOptimizer, name: hook?.appliesMomentum ? 'sgd' : config.optimizer, momentum: config.momentum, weightDecay: config.weightDecay }, range[1] - range[0]);
      restoreOptimizer(optimizer, start.optimizerState, start.optimizerSteps, range);
      ledger.optimizerBytes += optimizer.stateBytes;
      return optimizer;
    },
    holds: (parts) => ledger.holds(parts),
    replica: build,
    pipeline: capabilities.modelRanks === 'stages' ? { stages: config.stages, microbatches: config.microbatches, schedule: config.pipelineSchedule, cuts: config.stageCuts } : undefined,
    tensorParallel: config.tensorParallel,
    recompute: asksForMemory(config) ? { spec: parseRecompute(config.recompute ?? 'auto'), budget: config.memoryBudget } : undefined,
    reportUpdates: (workers, versions, staleness) => emit({ kind: 'updates', workers, versions, staleness }),
    reportPipeline: (stages) => emit({ kind: 'pipeline', stages }),
    reportActivations: (report) => emit({ kind: 'activations', ...report }),
    reportTensorParallel: (report) => emit({ kind: 'tensor', ...report }),
  });
  // what this rank holds for the model, now that the strategy has made its buffers: refused here, before any step, when over --memory-limit
  const held = ledger.parts({ parameters: size, activations: 'activations' in built ? (built as Sequential).activations.bytes : 0 });
  ledger.check(held, config.strategy, strategiesThat((s) => s.layerChain));
  const ranks = await gatherParts(comm, held);
  if (ranks) emit({ kind: 'memory', ...held, ranks });
  const writeNow = checkpointClock(config.saveEverySeconds);
  const result = await trainingLoop({
    comm, model, dataset, capabilities, hook, start, ranksPerWorker: ranksPerWorker(capabilities, config),
    workers: config.workers, batch: config.batch, epochs: config.epochs, seed: config.seed, saveEvery: config.saveEvery,
    evalEvery: evaluationInterval(config.evalEvery, stepsPerEpoch(dataset.train.count, config.workers, config.batch)),
    learningRate: (epoch) => learningRate(schedule, epoch),
    stopRequested: () => {
      stepsAsked++;
      return Atomics.load(stopFlag, 0) === 1 || (config.stopAfterSteps !== undefined && stepsAsked >= config.stopAfterSteps);
    },
    report: emit,
    save: (state, last) => {
      if (config.save && (last || writeNow())) {
        writeCheckpoint(config.save, state, { model: modelLabel(config.model), layout: model.layout, optimizer: config.optimizer, globalBatch: config.workers * config.batch, seed: config.seed, paramPrecision: config.paramPrecision });
      }
    },
  }, rank);
  return { params: comm.rank === 0 ? result.params : null, stoppedEarly: result.stoppedEarly };
}

/** Whether a checkpoint is written now: always without a period; else when `seconds` have passed since the last written (the first is). */
export function checkpointClock(seconds: number | undefined, now: () => number = () => performance.now()): () => boolean {
  let last = -Infinity;
  return () => {
    if (seconds !== undefined && now() - last < 1000 * seconds) return false;
    last = now();
    return true;
  };
}
