// converge's public API: what `import … from 'converge'` gives. Everything else is internal.

// training
export { train, type TrainOptions, type TrainOutcome, type StepReport, type EpochReport } from './api/train.js';
export type { Summary } from './train/monitor.js';
export { defaults, type TrainConfig } from './train/config.js';
export { strategies, strategyNames, type StrategyEntry } from './strategies/index.js';
export { backends, backendNames, type BackendEntry, type BackendName } from './comm/backends.js';

// your own model
export { sequential, lossAndGradModel, dense, conv2d, maxPool2d, avgPool2d, globalAvgPool2d, relu, tanh, sigmoid, gelu, dropout, flatten, residual, type LayerSpec, type LayerContext, type FunctionModel, type DataShape } from './models/define.js';
export { modelNames, type ModelDefinition, type DataKind } from './models/index.js';
export type { LossName } from './models/losses.js';
export type { Model, ModelOptions, Batch, SparseBatch, RatingBatch, AnyBatch, Evaluation } from './models/model.js';
export type { Layer, Views } from './models/layers.js';
export { Layout, type TensorSpec, type TensorSlot } from './tensor/layout.js';
export { Random } from './tensor/random.js';
export { kernelSet as kernels } from './kernels/registry.js';
export type { KernelSet } from './kernels/types.js';

// your own data
export type { Dataset, ImageDataset, Split } from './data/dataset.js';
export { datasetFromArrays as arrays, type ArraysSpec } from './data/dense.js';
export { loadAnyDataset as loadDataset, type LoadOptions } from './data/load.js';
export type { SparseDataset } from './data/sparse.js';
export type { RatingsDataset } from './data/ratings.js';

// your own loop
export { init, runOnThreads, type CommunicatorOptions, type ThreadOptions, type Communicator, type ProcessCommunicator } from './api/communicator.js';
export type { ReduceOp } from './comm/communicator.js';
export type { TransportSecurity } from './comm/tcp-seal.js';
export { Optimizer, defaultOptimizer, optimizerNames, type OptimizerConfig, type OptimizerName } from './optim/optimizers.js';

// learning from running simulations (the simulations themselves import 'converge/client')
export { study, type StudyOptions, type StudySummary } from './api/study.js';
export { Moments, Covariance, type MomentOptions } from './study/moments.js';
export { Sobol, type SobolIndices } from './study/sobol.js';

// errors: every one a ConvergeError with a code (BAD_OPTION, UNKNOWN_NAME, SHAPE_MISMATCH, COMM_TIMEOUT, PEER_FAILED, DIVERGED, …)
export { ConvergeError, CommunicationError } from './errors.js';
