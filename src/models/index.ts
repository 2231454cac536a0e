// The built-in models, by name. Each is built from the kernels active when it is created.

import { kernelSet } from '../kernels/registry.js';
import { unknownName, shapeMismatch } from '../errors.js';
import { Conv2d, Dense, MaxPool2d, Relu, type Layer } from './layers.js';
import type { ImageModel, Model, ModelOptions } from './model.js';
import { Sequential } from './sequential.js';
import { lossFor, type DataKind, type ModelDefinition } from './definition.js';
import { resnet20 } from './resnet.js';

export { lossFor, type DataKind, type ModelDefinition } from './definition.js';
import { SparseLinear } from './sparse.js';
import { SparseSoftmax } from './sparse-softmax.js';
import { MatrixFactorization } from './mf.js';

export type { AnyBatch, Batch, ImageModel, Model, ModelOptions, RatingBatch, SparseBatch } from './model.js';

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function imageOptions(name: string, o: ModelOptions): { inputShape: readonly number[]; classes: number } {
  if (!o.inputShape || !o.classes) throw shapeMismatch(`model ${name}`, 'image data (a shape and classes)', 'data of another kind; use logreg/svm for libsvm data, mf for ratings');
  return { inputShape: o.inputShape, classes: o.classes };
}

/** Multinomial logistic regression: one dense layer into softmax (on regression data: linear regression). */
function softmax(options: ModelOptions): ImageModel {
  const o = { ...options, ...imageOptions('softmax', options) };
  const k = kernelSet();
  return new Sequential('softmax', k, [new Dense(k, 'fc', size(o.inputShape), o.classes, o.maxBatch)], o.inputShape, o.classes, o.maxBatch, lossFor(options), options);
}

/** Dense layers with ReLU between them; `hidden` gives their widths (default 512, 256). */
function mlp(options: ModelOptions): ImageModel {
  const o = { ...options, ...imageOptions('mlp', options) };
  const k = kernelSet();
  const widths = [size(o.inputShape), ...(o.hidden ?? [512, 256]), o.classes];
  const layers: Layer[] = [];
  for (let i = 0; i + 1 < widths.length; i++) {
    layers.push(new Dense(k, `fc${i + 1}`, widths[i], widths[i + 1], o.maxBatch));
    if (i + 2 < widths.length) layers.push(new Relu(k, [widths[i + 1]]));
  }
  return new Sequential('mlp', k, layers, o.inputShape, o.classes, o.maxBatch, lossFor(options), options);
}

/** conv3x3 32 'same' ReLU → maxpool 2 → conv3x3 64 'same' ReLU → maxpool 2 → dense 128 ReLU → dense 10 */
function cnn(options: ModelOptions): ImageModel {
  const o = { ...options, ...imageOptions('cnn', options) };
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
  return new Sequential('cnn', k, layers, o.inputShape, o.classes, o.maxBatch, lossFor(options), options);
}

function sparseOptions(name: string, o: ModelOptions, binary = true): number {
  if (!o.features) throw shapeMismatch(`model ${name}`, 'sparse (libsvm) data', 'data of another kind; use softmax/mlp/cnn for images, mf for ratings');
  if (binary && o.classes !== undefined && o.classes > 2) throw shapeMismatch(`model ${name}`, 'binary labels (two classes)', `${o.classes} classes; use --model logreg (multinomial for more than two)`);
  return o.features;
}

/** Sparse logistic regression with an L2 penalty: binary, or multinomial (softmax) for more than two classes. */
const logreg = (o: ModelOptions): Model => (o.classes !== undefined && o.classes > 2
  ? new SparseSoftmax('logreg', sparseOptions('logreg', o, false), o.classes, o.l2 ?? 1e-6, o.maxBatch)
  : new SparseLinear('logreg', 'logistic', sparseOptions('logreg', o), o.l2 ?? 1e-6, o.maxBatch));
/** A linear SVM: hinge loss with an L2 penalty. */
const svm = (o: ModelOptions) => new SparseLinear('svm', 'hinge', sparseOptions('svm', o), o.l2 ?? 1e-6, o.maxBatch);

/** Matrix factorisation of rank r with biases and an L2 penalty. */
function mf(o: ModelOptions): Model {
  if (!o.users || !o.items) throw shapeMismatch('model mf', 'ratings data (user item rating)', 'data of another kind; use softmax/mlp/cnn for images, logreg/svm for libsvm data');
  return new MatrixFactorization(o.users, o.items, o.factors ?? 16, o.l2 ?? 0.02, o.mean ?? 0, o.maxBatch);
}

const builtIn: Record<string, ModelDefinition> = {
  softmax: { data: 'images', build: softmax },
  mlp: { data: 'images', build: mlp },
  cnn: { data: 'images', build: cnn },
  logreg: { data: 'sparse', build: logreg },
  svm: { data: 'sparse', build: svm },
  mf: { data: 'ratings', build: mf },
  // its recipe: measured on Fashion-MNIST, 2 workers × 64, 3 epochs — constant lr 89.28%, cosine with weight decay 1e-4 ≥ 91%
  resnet20: { data: 'images', build: resnet20, deep: true, recommended: { schedule: 'cosine', weightDecay: 1e-4 } },
};

export const modelNames = Object.keys(builtIn);

/** The built-in model of that name. */
export function builtInModel(name: string): ModelDefinition {
  const definition = builtIn[name];
  if (!definition) throw unknownName('model', name, modelNames);
  return definition;
}

/** The built-in models that train on a kind of data, for messages. */
export function modelsFor(data: DataKind): string[] {
  return modelNames.filter((name) => builtIn[name].data === data);
}

export function createModel(name: string, options: ModelOptions): Model {
  return builtInModel(name).build(options);
}

/** An image model (softmax, mlp, cnn), typed as one. */
export function createImageModel(name: string, options: ModelOptions): ImageModel {
  const definition = builtInModel(name);
  if (definition.data !== 'images') throw unknownName('image model', name, modelsFor('images'));
  return definition.build(options) as ImageModel;
}
