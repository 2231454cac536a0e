// How a user defines a model of their own, in a module every rank imports by URL:
//
//   export default sequential([conv2d(16), relu(), maxPool2d(2), flatten(), dense(10)]);
//   export default sequential(({ classes }) => [flatten(), dense(64), relu(), residual([dense(64), relu(), dense(64)]), relu(), dense(classes)]);
//   export default lossAndGradModel({ parameters: …, lossAndGrad(params, batch, grad) { …; return loss; }, … });
//
// A layer spec is a recipe: it is sized when the model is built for the data's shapes.

import { shapeMismatch, ConvergeError } from '../errors.js';
import { kernelSet } from '../kernels/registry.js';
import type { KernelSet } from '../kernels/types.js';
import { Layout, type TensorSpec } from '../tensor/layout.js';
import { Random, mixSeed } from '../tensor/random.js';
import { ElementWise } from './activations.js';
import { BatchNorm } from './batch-norm.js';
import { Dropout } from './dropout.js';
import { AvgPool2d } from './pooling.js';
import { lossFor, type DataKind, type ModelDefinition } from './definition.js';
import type { LossName } from './losses.js';
import { Conv2d, Dense, Flatten, MaxPool2d, Relu, Reorder, type Layer } from './layers.js';
import type { AnyBatch, Batch, Evaluation, Model, ModelOptions, StatisticsGroup } from './model.js';
import { Residual } from './residual.js';
import { Sequential } from './sequential.js';

/** Where a layer is built: the kernels, its input's shape per sample, the largest batch, its parameters' name prefix. */
export interface LayerContext {
  kernels: KernelSet;
  inputShape: readonly number[];
  maxBatch: number;
  name: string;
  /** Seeds what is random in the layer while training (dropout's masks): the run's seed, the replica and the layer's name mixed. */
  seed: number;
  /** With --sync-bn: the ranks batch norm reduces its statistics across. */
  statistics?: StatisticsGroup;
  /** The channel block of the input image (kernels/types.ts; 1, plain, when absent): a layer that reads it as it is takes it. */
  inputBlock?: number;
}

/** A layer not yet sized: built once the shape of its input is known. */
export type LayerSpec = (context: LayerContext) => Layer;

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function positive(what: string, value: number): void {
  if (!Number.isInteger(value) || value <= 0) throw new ConvergeError(`${what}: got ${value}; expected a positive integer.`, 'BAD_MODEL');
}

function imageInput(layer: string, shape: readonly number[]): void {
  if (shape.length !== 3) throw shapeMismatch(layer, 'an input of shape [channels, height, width]', `[${shape}]; put it before flatten() and dense()`);
}

/** A fully connected layer of `units` outputs (its input is flattened). Parameters NAME.weight [units, in], NAME.bias [units]. */
export function dense(units: number): LayerSpec {
  positive('dense(units)', units);
  return ({ kernels, inputShape, maxBatch, name }) => new Dense(kernels, name, sizeOf(inputShape), units, maxBatch);
}

/**
 * A 2-D convolution with zero padding `pad` (default: keeps height and width at stride 1, for odd
 * sizes) and `stride` (default 1). It writes its output in the kernels' preferred channel block
 * where its filters fill whole blocks: the layers after it read that as it is, or reorder it.
 */
export function conv2d(filters: number, kernelSize = 3, options: { pad?: number; stride?: number; bias?: boolean } = {}): LayerSpec {
  positive('conv2d(filters)', filters);
  positive('conv2d(kernelSize)', kernelSize);
  const stride = options.stride ?? 1;
  positive('conv2d stride', stride);
  const pad = options.pad ?? (kernelSize - 1) >> 1;
  return ({ kernels, inputShape, maxBatch, name, inputBlock }) => {
    imageInput(`conv2d ${name}`, inputShape);
    const outputBlock = kernels.channelBlock > 1 && filters % kernels.channelBlock === 0 ? kernels.channelBlock : 1;
    return new Conv2d(kernels, name, inputShape, filters, kernelSize, pad, maxBatch, stride, options.bias ?? true, inputBlock, outputBlock);
  };
}

/**
 * Batch normalisation per channel (of [C, H, W] images, or of [C] vectors), with running
 * statistics for evaluation. Each replica normalises by its own batch, unless the run says
 * --sync-bn: then by the statistics of every rank's batch together.
 */
export function batchNorm(): LayerSpec {
  return ({ kernels, inputShape, maxBatch, name, statistics, inputBlock }) => new BatchNorm(kernels, name, inputShape, maxBatch, statistics, inputShape.length === 3 ? inputBlock : 1);
}

/** Average pooling over size×size windows with stride size. */
export function avgPool2d(size = 2): LayerSpec {
  positive('avgPool2d(size)', size);
  return ({ inputShape, maxBatch, name }) => new AvgPool2d(name, inputShape, size, maxBatch);
}

/** The mean of each channel's plane: [C, H, W] → [C]. */
export function globalAvgPool2d(): LayerSpec {
  return ({ inputShape, maxBatch, name, inputBlock }) => new AvgPool2d(name, inputShape, 0, maxBatch, inputBlock);
}

export function tanh(): LayerSpec {
  return ({ inputShape, maxBatch, inputBlock }) => new ElementWise('tanh', inputShape, maxBatch, inputBlock);
}

export function sigmoid(): LayerSpec {
  return ({ inputShape, maxBatch, inputBlock }) => new ElementWise('sigmoid', inputShape, maxBatch, inputBlock);
}

/** GELU, x·Φ(x) (the exact form). */
export function gelu(): LayerSpec {
  return ({ inputShape, maxBatch, inputBlock }) => new ElementWise('gelu', inputShape, maxBatch, inputBlock);
}

/** Dropout of probability p while training (inverted: kept values scaled by 1/(1 − p)); the identity in evaluation. */
export function dropout(p: number): LayerSpec {
  if (!(p >= 0 && p < 1)) throw new ConvergeError(`dropout(p): got ${p}; expected a probability in [0, 1).`, 'BAD_MODEL');
  return ({ inputShape, maxBatch, seed }) => new Dropout(p, inputShape, maxBatch, seed);
}

/** Max pooling over size×size windows with stride size. */
export function maxPool2d(size = 2): LayerSpec {
  positive('maxPool2d(size)', size);
  return ({ kernels, inputShape, maxBatch, name }) => {
    imageInput(`maxPool2d ${name}`, inputShape);
    return new MaxPool2d(kernels, inputShape, size, maxBatch);
  };
}

export function relu(): LayerSpec {
  return ({ kernels, inputShape, inputBlock }) => new Relu(kernels, inputShape, inputBlock);
}

export function flatten(): LayerSpec {
  return ({ inputShape }) => new Flatten(inputShape);
}

/**
 * out = body(x) + shortcut(x): a residual connection. Without a shortcut the input is added as
 * it is (the body must keep its shape); a shortcut of layers is a projection (e.g. [dense(n)]).
 */
export function residual(body: LayerSpec[], shortcut?: LayerSpec[]): LayerSpec {
  return (context) => {
    const { kernels, inputShape, maxBatch, name } = context;
    const block = context.inputBlock ?? 1;
    const bodyLayers = buildLayers(body, context, `${name}.body.`);
    let shortcutLayers = shortcut ? buildLayers(shortcut, context, `${name}.shortcut.`) : null;
    // the branches are added element by element: in one layout, plain where they differ
    if (outputBlockOf(bodyLayers, block) !== outputBlockOf(shortcutLayers ?? [], block)) {
      toPlain(bodyLayers, block, context);
      toPlain(shortcutLayers ??= [], block, context);
    }
    return new Residual(kernels, name, inputShape, bodyLayers, shortcutLayers, maxBatch, block, outputBlockOf(bodyLayers, block));
  };
}

/** The channel block layers leave their output in, given their input's. */
function outputBlockOf(layers: readonly Layer[], inputBlock: number): number {
  return layers.length === 0 ? inputBlock : layers[layers.length - 1].outputBlock ?? 1;
}

/** Ends the layers (reading an input in `inputBlock`) with a reorder to plain, unless their output is already plain. */
function toPlain(layers: Layer[], inputBlock: number, context: Omit<LayerContext, 'name'>): void {
  const block = outputBlockOf(layers, inputBlock);
  if (block !== 1) layers.push(new Reorder(context.kernels, layers.length > 0 ? layers[layers.length - 1].outputShape : context.inputShape, block, 1, context.maxBatch));
}

/**
 * Builds specs one after another, each sized by its predecessor's output; parameters are named
 * PREFIX0, PREFIX1, … as PyTorch's nn.Sequential names them. Where a layer cannot read the
 * channel block its predecessor writes, a reorder goes between them (it has no parameters).
 */
export function buildLayers(specs: readonly LayerSpec[], context: Omit<LayerContext, 'name'>, prefix = ''): Layer[] {
  const layers: Layer[] = [];
  let shape = context.inputShape;
  let block = context.inputBlock ?? 1;
  specs.forEach((spec, i) => {
    if (typeof spec !== 'function') throw new ConvergeError(`layer ${prefix}${i} is not a layer spec; build layers with dense(), conv2d(), relu(), … from 'converge'.`, 'BAD_MODEL');
    const name = `${prefix}${i}`;
    const layer = spec({ ...context, inputShape: shape, inputBlock: block, name, seed: mixSeed(context.seed, ...Buffer.from(name)) });
    const wanted = layer.inputBlock ?? 1;
    if (wanted !== block) layers.push(new Reorder(context.kernels, shape, block, wanted, context.maxBatch));
    layers.push(layer);
    shape = layer.outputShape;
    block = layer.outputBlock ?? 1;
  });
  return layers;
}

/** The data a model is built for, as a user's recipe sees it. */
export interface DataShape {
  inputShape: readonly number[];
  classes: number;
}

/**
 * A model of images (or any dense samples) from layers. Classes are fitted by softmax
 * cross-entropy (the last layer gives one output per class), regression targets by mean squared
 * error (one output per target); `loss: 'bce'` fits 0/1 labels or targets in [0, 1] by binary
 * cross-entropy on logits.
 */
export function sequential(layers: LayerSpec[] | ((data: DataShape) => LayerSpec[]), options: { name?: string; loss?: LossName } = {}): ModelDefinition {
  return {
    data: 'images',
    build(o: ModelOptions) {
      if (!o.inputShape || !o.classes) throw shapeMismatch(`model ${options.name ?? 'sequential'}`, 'image data (a shape and classes)', 'data of another kind');
      const kernels = kernelSet();
      const specs = typeof layers === 'function' ? layers({ inputShape: o.inputShape, classes: o.classes }) : layers;
      const context = { kernels, inputShape: o.inputShape, maxBatch: o.maxBatch, seed: mixSeed(o.seed ?? 1, o.replica ?? 0), statistics: o.statistics };
      const built = buildLayers(specs, context);
      toPlain(built, 1, context); // the loss reads plain outputs
      return new Sequential(options.name ?? 'sequential', kernels, built, o.inputShape, o.classes, o.maxBatch, options.loss ?? lossFor(o), o);
    },
  };
}

/** A model written as functions over the flat parameter buffer (and a gradient buffer of the same layout). */
export interface FunctionModel<B extends AnyBatch = Batch> {
  name?: string;
  /** The data it trains on (default 'images'). */
  data?: DataKind;
  /** 'classification' reports accuracy, 'regression' RMSE (default 'classification'). */
  task?: 'classification' | 'regression';
  /** Its parameters as named shapes, for the data's shapes; they are laid out in this order in one flat buffer. */
  parameters(data: ModelOptions): TensorSpec[];
  /** Fresh parameters; default: 1-D tensors zero, others U(±1/√fan_in) with fan_in the product of all but the first dimension. */
  init?(params: Float32Array, random: Random, layout: Layout): void;
  /** Writes the gradient of the batch's mean loss into grad (every element); returns the mean loss. */
  lossAndGrad(params: Float32Array, batch: B, grad: Float32Array, layout: Layout): number;
  /** Mean loss and the figure of merit on a batch; default: the loss of lossAndGrad, and correct answers from predict. */
  evaluate?(params: Float32Array, batch: B, layout: Layout): Evaluation;
  /** Classification: writes the predicted class of each sample of the batch into out. */
  predict?(params: Float32Array, batch: B, out: Int32Array, layout: Layout): void;
}

/** A model from a plain lossAndGrad function. */
export function lossAndGradModel<B extends AnyBatch = Batch>(spec: FunctionModel<B>): ModelDefinition {
  if (typeof spec.lossAndGrad !== 'function' || typeof spec.parameters !== 'function') {
    throw new ConvergeError('lossAndGradModel: give parameters(data) → [{ name, shape }] and lossAndGrad(params, batch, grad) → loss.', 'BAD_MODEL');
  }
  const task = spec.task ?? 'classification';
  if (!spec.evaluate && task === 'regression') throw new ConvergeError(`lossAndGradModel ${spec.name ?? ''}: a regression model needs evaluate(params, batch) → { loss, correct: 0, squaredError }.`, 'BAD_MODEL');
  if (!spec.evaluate && !spec.predict) throw new ConvergeError(`lossAndGradModel ${spec.name ?? ''}: a classifier needs predict(params, batch, out) or evaluate(params, batch), or its accuracy cannot be measured.`, 'BAD_MODEL');
  return {
    data: spec.data ?? 'images',
    build(options: ModelOptions): Model<B> {
      const layout = new Layout(spec.parameters(options));
      const scratch = new Float32Array(layout.size);
      const predicted = new Int32Array(options.maxBatch);
      return {
        name: spec.name ?? 'custom',
        layout,
        maxBatch: options.maxBatch,
        task,
        init(params, random) {
          if (spec.init) return spec.init(params, random, layout);
          const views = layout.views(params);
          for (const slot of layout.slots) {
            if (slot.shape.length === 1) views[slot.name].fill(0);
            else {
              const bound = 1 / Math.sqrt(slot.size / slot.shape[0]);
              random.fillUniform(views[slot.name], -bound, bound);
            }
          }
        },
        lossAndGrad: (params, batch, grad) => spec.lossAndGrad(params, batch, grad, layout),
        evaluate(params, batch) {
          if (spec.evaluate) return spec.evaluate(params, batch, layout);
          const loss = spec.lossAndGrad(params, batch, scratch, layout);
          spec.predict!(params, batch, predicted, layout);
          const labels = (batch as unknown as { y: ArrayLike<number> }).y;
          let correct = 0;
          for (let i = 0; i < batch.size; i++) if (predicted[i] === labels[i]) correct++;
          return { loss, correct, squaredError: 0 };
        },
      };
    },
  };
}

