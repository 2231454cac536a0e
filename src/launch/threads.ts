// Runs a training job on worker threads of this process (the embedded default): loads the data
// once into shared memory, prepares the starting state, starts one thread per rank, and turns
// any rank's failure into one error.

import { createShmHandle } from '../comm/shm.js';
import type { Dataset } from '../data/dataset.js';
import { loadAnyDataset } from '../data/load.js';
import { stepsPerEpoch } from '../data/batches.js';
import { badOption, shapeMismatch } from '../errors.js';
import { selectKernels } from '../kernels/select.js';
import { parseCompress } from '../compress/parse.js';
import { modelsFor, type Model } from '../models/index.js';
import { checkPipeline, activationMessageFloats } from '../strategies/pipeline.js';
import { layerChainOf, notALayerChain } from '../models/stage.js';
import { modelLabel, modelModuleUrl, isModelModule, resolveModel } from '../models/module.js';
import { Optimizer, defaultOptimizer } from '../optim/optimizers.js';
import { ranksFor, ranksPerWorker, strategy } from '../strategies/index.js';
import { splitBlocks } from '../models/tensor-parallel.js';
import { Random } from '../tensor/random.js';
import { readCheckpoint } from '../train/checkpoint.js';
import { validate, type TrainConfig } from '../train/config.js';
import { PARTS_FLOATS } from '../train/memory.js';
import type { TrainingState } from '../train/loop.js';
import { Monitor, type Summary } from '../train/monitor.js';
import { asksForMemory, modelOptions, type RankInput, type RankOutput } from '../train/run.js';
import { Sequential } from '../models/sequential.js';
import { sharedArrayBytes } from '../strategies/replica.js';
import { encodedBytes } from '../tensor/precision.js';
import { runThreadGroup } from './thread-group.js';
import { checkWritable } from './outputs.js';

export interface TrainResult {
  summary: Summary;
  params: Float32Array;
  resumedFrom?: { epoch: number; step: number };
}

export interface LaunchHooks {
  /** Called once everything is validated and loaded, before the threads start. */
  onStart?: (monitor: Monitor, info: { config: TrainConfig; dataset: Dataset; parameters: number; kernels: string; resumedFrom?: { epoch: number; step: number } }) => void;
  /** Set [0] to 1 to ask the run to stop at the next step (and save, with --save). */
  stopFlag?: SharedArrayBuffer;
  /** Receives one-line notices (e.g. that the native kernels are unavailable). */
  notice?: (line: string) => void;
  /** An already loaded data set (benchmarks run many configurations on one); else --dataset is loaded. */
  dataset?: Dataset;
}

const dataNames = { images: 'images', sparse: 'sparse rows (libsvm)', ratings: 'ratings' };

/** What every launcher does first: validate, pick kernels, load the data, check it fits the model, build the starting state. */
export async function prepareRun(requested: TrainConfig, hooks: LaunchHooks & { writes?: boolean } = {}) {
  const config = { ...requested };
  validate(config);
  if (config.globalBatch !== undefined) config.batch = config.globalBatch / config.workers;
  // the rank that writes checks its outputs before loading anything
  if (hooks.writes !== false) {
    if (config.save) checkWritable('--save', config.save);
    if (config.log) checkWritable('--log', config.log);
  }
  // a model module is named by its absolute URL, so every thread and process imports the same file
  if (isModelModule(config.model)) config.model = modelModuleUrl(config.model);
  const definition = await resolveModel(config.model);
  // a strategy that runs the model layer by layer needs a chain of layers, which only image models can be: say so before loading the data
  if (strategy(config.strategy).layerChain && definition.data !== 'images') throw notALayerChain(config.strategy, modelLabel(config.model));
  const kernels = selectKernels(undefined, hooks.notice);
  const dataset = hooks.dataset ?? loadAnyDataset(config.dataset, { dataDir: config.dataDir, testDataset: config.testDataset, zeroBased: config.zeroBased, labelColumn: config.labelColumn, task: config.task, seed: config.seed });
  if (definition.data !== dataset.kind) {
    const fits = modelsFor(dataset.kind).join('/');
    throw shapeMismatch(`--model ${modelLabel(config.model)}`, `${dataNames[definition.data]}`, `${dataset.name}, which holds ${dataNames[dataset.kind]}; use --model ${fits}`);
  }
  if (config.workers > dataset.train.count) throw badOption('--workers', config.workers, `at most the ${dataset.train.count} training samples of ${dataset.name}`);
  if (stepsPerEpoch(dataset.train.count, config.workers, config.batch) === 0) {
    throw badOption('--batch', config.batch, `a global batch (workers × batch = ${config.workers * config.batch}) no larger than the ${dataset.train.count} training samples`);
  }
  const model = definition.build({ ...modelOptions(dataset, config, 1), recompute: undefined, memoryBudget: undefined });
  // --recompute, --memory-budget: plan the step at its batch now, so that a budget too small is said before any rank starts
  if (asksForMemory(config)) {
    if (!(model instanceof Sequential)) throw badOption(config.recompute !== undefined ? '--recompute' : '--memory-budget', config.recompute ?? config.memoryBudget!, `a model of layers (sequential([...]), mlp, cnn, resnet20); ${modelLabel(config.model)} is not one`);
    // (a strategy that runs the layers itself plans each rank's share there)
    if (!strategy(config.strategy).layerChain) definition.build(modelOptions(dataset, config, config.batch));
  }
  // a pipeline cuts a chain of layers, fsdp shards it: say now if this model is not one, before any rank starts
  if (strategy(config.strategy).modelRanks === 'stages') checkPipeline(model, config.stages, config.stageCuts);
  else if (strategy(config.strategy).layerChain) layerChainOf(model, config.strategy);
  if (strategy(config.strategy).modelRanks === 'tensorParallel' && splitBlocks(layerChainOf(model, config.strategy).layers, config.tensorParallel).length === 0) {
    throw badOption('--tensor-parallel', config.tensorParallel, `a count that divides the outputs of a dense layer followed (after element-wise layers) by another dense layer; ${modelLabel(config.model)} has no such pair for ${config.tensorParallel}`);
  }

  let start: TrainingState;
  let resumedFrom: { epoch: number; step: number } | undefined;
  if (config.resume) {
    const { header, state } = readCheckpoint(config.resume, modelLabel(config.model), model.layout);
    if (state.epoch >= config.epochs) {
      throw badOption('--epochs', config.epochs, `more than the ${state.epoch} epoch${state.epoch === 1 ? '' : 's'} ${config.resume} has already trained (--epochs counts from the start of training)`);
    }
    // a resume with another global batch continues after the same number of samples
    const step = Math.floor((state.step * header.globalBatch) / (config.workers * config.batch));
    start = { ...state, step, paramsStoredAs: header.paramPrecision };
    config.seed = header.seed;
    resumedFrom = { epoch: state.epoch, step };
  } else {
    const params = model.layout.allocate();
    model.init(params, new Random(config.seed));
    const optimizer = new Optimizer({ ...defaultOptimizer, name: config.optimizer }, model.layout.size);
    start = { params, optimizerState: optimizer.state, optimizerSteps: 0, epoch: 0, step: 0 };
  }
  return { config, kernels, dataset, model, start, resumedFrom };
}

/** The largest message a rank of this run sends, in floats: parameter-sized, a compressed push (payload and header), or a pipeline's activations. */
export function largestMessage(config: TrainConfig, model: Model): number {
  const size = model.layout.size;
  const push = config.compress === undefined ? 0 : 5 + Math.ceil(parseCompress(config.compress)({ size, seed: 0, momentum: 0 }).maxBytes(size) / 4);
  const split = strategy(config.strategy).modelRanks;
  const activations = split === 'stages' ? activationMessageFloats(model, config.batch / config.microbatches) : split === 'tensorParallel' ? activationMessageFloats(model, config.batch) : 0;
  return Math.max(size + 4, push, activations);
}

/** The run's facts as the log and summary name them. */
export function runFacts(config: TrainConfig, dataset: Dataset, kernels: string) {
  return { dataset: dataset.name, model: modelLabel(config.model), strategy: config.strategy, workers: config.workers, kernels, batch: config.batch, target: config.target };
}

export async function trainOnThreads(requested: TrainConfig, hooks: LaunchHooks = {}): Promise<TrainResult> {
  const { config, kernels, dataset, model, start, resumedFrom } = await prepareRun(requested, hooks);
  const monitor = new Monitor(config.log, runFacts(config, dataset, kernels));
  hooks.onStart?.(monitor, { config, dataset, parameters: model.layout.size, kernels, resumedFrom });
  const entry = strategy(config.strategy);
  // room for one parameter-sized message per collective, for parameters + gradients in place (and,
  // low-precision ps, the encoded parameters it broadcasts), and (async-ps) the largest push per mailbox
  // (a model of fewer parameters than the memory report's floats still sends that report)
  const size = model.layout.size;
  const regionFloats = 2 * size + 4 + (config.paramPrecision === 'fp32' ? 0 : size + 4);
  const handle = createShmHandle(ranksFor(entry, config.workers, ranksPerWorker(entry, config)), Math.max(size, PARTS_FLOATS) + 4, config.timeoutSeconds * 1000, regionFloats, entry.pointToPoint ? largestMessage(config, model) : 0);
  const stopFlag = hooks.stopFlag ?? new SharedArrayBuffer(4);
  if (config.stopAtTarget) monitor.stopAtTarget(stopFlag);
  const input: RankInput = {
    config, dataset, start, kernels, stopFlag,
    shared: entry.sharedArray ? new SharedArrayBuffer(sharedArrayBytes(encodedBytes(config.paramPrecision, model.layout.size))) : undefined,
  };
  try {
    const outputs = (await runThreadGroup(handle, new URL('./train-worker.js', import.meta.url), { data: () => input, onEvent: monitor.onEvent })) as RankOutput[];
    const summary = monitor.summary(outputs[0].stoppedEarly);
    return { summary, params: outputs[0].params as Float32Array, resumedFrom };
  } catch (error) {
    monitor.fail((error as Error).message);
    throw error;
  } finally {
    monitor.close();
  }
}
