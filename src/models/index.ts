// The built-in models, by name. Each is built from the kernels active when it is created.

import { kernelSet } from '../kernels/registry.js';
import { unknownName, shapeMismatch } from '../errors.js';
import { Conv2d, Dense, MaxPool2d, Relu, type Layer } from './layers.js';
import type { Model, ModelOptions } from './model.js';
import { Sequential } from './sequential.js';

export type { Batch, Model, ModelOptions } from './model.js';

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** Multinomial logistic regression: one dense layer into softmax. */
function softmax(o: ModelOptions): Model {
  const k = kernelSet();
  return new Sequential('softmax', k, [new Dense(k, 'fc', size(o.inputShape), o.classes, o.maxBatch)], o.inputShape, o.classes, o.maxBatch);
}

/** Dense layers with ReLU between them; `hidden` gives their widths (default 512, 256). */
function mlp(o: ModelOptions): Model {
  const k = kernelSet();
  const widths = [size(o.inputShape), ...(o.hidden ?? [512, 256]), o.classes];
  const layers: Layer[] = [];
  for (let i = 0; i + 1 < widths.length; i++) {
    layers.push(new Dense(k, `fc${i + 1}`, widths[i], widths[i + 1], o.maxBatch));
    if (i + 2 < widths.length) layers.push(new Relu(k, [widths[i + 1]]));
  }
  return new Sequential('mlp', k, layers, o.inputShape, o.classes, o.maxBatch);
}

/** conv3x3 32 'same' ReLU → maxpool 2 → conv3x3 64 'same' ReLU → maxpool 2 → dense 128 ReLU → dense 10 */
function cnn(o: ModelOptions): Model {
  const k = kernelSet();
  if (o.inputShape.length !== 3) throw shapeMismatch('model cnn', 'image input [channels, height, width]', `[${o.inputShape}]`);
  const [first, second, dense] = o.cnnWidths ?? [32, 64, 128];
  const conv1 = new Conv2d(k, 'conv1', o.inputShape, first, 3, 1, o.maxBatch);
  const pool1 = new MaxPool2d(k, conv1.outputShape, 2, o.maxBatch);
  const conv2 = new Conv2d(k, 'conv2', pool1.outputShape, second, 3, 1, o.maxBatch);
  const pool2 = new MaxPool2d(k, conv2.outputShape, 2, o.maxBatch);
  const fc1 = new Dense(k, 'fc1', size(pool2.outputShape), dense, o.maxBatch);
  const fc2 = new Dense(k, 'fc2', dense, o.classes, o.maxBatch);
  const layers: Layer[] = [
    conv1, new Relu(k, conv1.outputShape), pool1,
    conv2, new Relu(k, conv2.outputShape), pool2,
    fc1, new Relu(k, fc1.outputShape), fc2,
  ];
  return new Sequential('cnn', k, layers, o.inputShape, o.classes, o.maxBatch);
}

const builders: Record<string, (options: ModelOptions) => Model> = { softmax, mlp, cnn };

export const modelNames = Object.keys(builders);

export function createModel(name: string, options: ModelOptions): Model {
  const build = builders[name];
  if (!build) throw unknownName('model', name, modelNames);
  return build(options);
}
