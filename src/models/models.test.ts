import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../tensor/random.js';
import { createImageModel as createModel, type ImageModel as Model } from './index.js';
import { activeBackend, kernelSet, registerBackend, useBackend } from '../kernels/registry.js';
import { referenceKernels } from '../kernels/reference.js';
import { avgPool2d, batchNorm, conv2d, dense, dropout, flatten, gelu, globalAvgPool2d, lossAndGradModel, maxPool2d, relu, residual, sequential, sigmoid, tanh } from './define.js';
import { erf } from './activations.js';
import { holdPrivately } from '../tensor/arena.js';
import type { Layer } from './layers.js';

// Finite differences in float32 need a coarse step; the loss is accumulated in float64.
function checkGradient(model: Model, seed: number, batchSize: number): void {
  const random = new Random(seed);
  const params = model.layout.allocate();
  model.init(params, random);
  const inputSize = model.inputShape.reduce((a, b) => a * b, 1);
  const batch = {
    x: random.fillUniform(new Float32Array(batchSize * inputSize), 0, 1),
    y: Int32Array.from({ length: batchSize }, () => random.below(model.classes)),
    size: batchSize,
  };
  const grad = model.layout.allocate();
  grad.fill(NaN); // every element must be written
  model.lossAndGrad(params, batch, grad);
  const scratch = model.layout.allocate();
  const eps = 1e-2;
  for (const slot of model.layout.slots) {
    // every tensor, a spread of its coordinates (all of them when small)
    const stride = Math.max(1, Math.floor(slot.size / 40));
    for (let i = slot.offset; i < slot.offset + slot.size; i += stride) {
      const saved = params[i];
      params[i] = saved + eps;
      const up = model.lossAndGrad(params, batch, scratch);
      params[i] = saved - eps;
      const down = model.lossAndGrad(params, batch, scratch);
      params[i] = saved;
      const numeric = (up - down) / (2 * eps);
      assert.ok(Math.abs(numeric - grad[i]) <= 2e-3 + 2e-2 * Math.abs(numeric),
        `${model.name} ${slot.name}[${i - slot.offset}]: analytic ${grad[i]} vs numeric ${numeric}`);
    }
  }
}

/** The analytic gradient `grad` at these coordinates against central differences of the loss (±0.01). */
function matchesDifferences(model: { lossAndGrad(params: Float32Array, batch: never, grad: Float32Array): number; layout: { allocate(): Float32Array } }, params: Float32Array, batch: unknown, grad: Float32Array, coordinates: Iterable<number>, label: (i: number) => string, slack = 1): void {
  const scratch = model.layout.allocate();
  for (const i of coordinates) {
    const saved = params[i];
    params[i] = saved + 1e-2;
    const up = model.lossAndGrad(params, batch as never, scratch);
    params[i] = saved - 1e-2;
    const down = model.lossAndGrad(params, batch as never, scratch);
    params[i] = saved;
    const numeric = (up - down) / 2e-2;
    assert.ok(Math.abs(numeric - grad[i]) <= slack * (2e-3 + 2e-2 * Math.abs(numeric)), `${label(i)}: analytic ${grad[i]} vs numeric ${numeric}`);
  }
}

/** A layer used alone, outside a model: its buffers get memory of their own (a model binds them from its arena). */
function standalone<L extends Layer>(layer: L): L {
  holdPrivately(layer.held ?? []);
  return layer;
}

test('softmax regression gradient matches finite differences (odd shapes)', () => {
  checkGradient(createModel('softmax', { inputShape: [1, 3, 5], classes: 7, maxBatch: 5 }), 1, 5);
});

test('MLP gradient matches finite differences for every layer (odd widths, batch 1 and 3)', () => {
  const model = createModel('mlp', { inputShape: [11], classes: 3, maxBatch: 3, hidden: [9, 5] });
  checkGradient(model, 2, 3);
  checkGradient(model, 3, 1);
});

test('CNN gradient matches finite differences for every layer (odd image sizes)', () => {
  const model = createModel('cnn', { inputShape: [2, 9, 6], classes: 4, maxBatch: 2, cnnWidths: [3, 5, 6] });
  assert.deepEqual(model.layout.slots.map((s) => `${s.name}[${s.shape}]`), [
    'conv1.weight[3,2,3,3]', 'conv1.bias[3]', 'conv2.weight[5,3,3,3]', 'conv2.bias[5]',
    'fc1.weight[6,10]', 'fc1.bias[6]', 'fc2.weight[4,6]', 'fc2.bias[4]',
  ]);
  checkGradient(model, 4, 2);
});

test('the default models have the layouts the issue names', () => {
  const mlp = createModel('mlp', { inputShape: [1, 28, 28], classes: 10, maxBatch: 1 });
  assert.equal(mlp.layout.size, 784 * 512 + 512 + 512 * 256 + 256 + 256 * 10 + 10);
  const cnn = createModel('cnn', { inputShape: [1, 28, 28], classes: 10, maxBatch: 1 });
  assert.equal(cnn.layout.slot('fc1.weight').shape.join('x'), '128x3136');
  assert.throws(() => createModel('resnet', { inputShape: [1], classes: 2, maxBatch: 1 }), /unknown model 'resnet'; choose one of: softmax, mlp, cnn, logreg, svm, mf/);
});

test('predict returns the arg-max class and refuses batches beyond its buffers', () => {
  const model = createModel('softmax', { inputShape: [2], classes: 2, maxBatch: 2 });
  const params = model.layout.allocate();
  const { 'fc.weight': w } = model.layout.views(params);
  w.set([1, 0, 0, 1]); // logits = x
  const out = new Int32Array(2);
  model.predict(params, new Float32Array([3, 1, 0, 2]), 2, out);
  assert.deepEqual([...out], [0, 1]);
  assert.throws(() => model.predict(params, new Float32Array(6), 3, new Int32Array(3)), /batch of 1\.\.2/);
});

import { nativeKernelInfo } from '../kernels/select.js';
import { Optimizer, defaultOptimizer } from '../optim/optimizers.js';

test('training steps give the same loss trajectory on the reference and native kernels', { skip: nativeKernelInfo() ? false : 'native kernels not built' }, () => {
  const before = activeBackend();
  try {
    for (const [name, inputShape, extra] of [['softmax', [1, 12, 12], {}], ['mlp', [1, 12, 12], { hidden: [40, 20] }], ['cnn', [1, 12, 12], { cnnWidths: [4, 8, 16] }]] as const) {
      const trajectories: number[][] = [];
      for (const backend of ['reference', 'native']) {
        useBackend(backend);
        const model = createModel(name, { inputShape, classes: 10, maxBatch: 16, ...extra });
        const random = new Random(11);
        const params = model.layout.allocate();
        model.init(params, random);
        const grad = model.layout.allocate();
        const optimizer = new Optimizer({ ...defaultOptimizer }, model.layout.size);
        const losses: number[] = [];
        for (let step = 0; step < 30; step++) {
          const batch = { x: random.fillUniform(new Float32Array(16 * 144), 0, 1), y: Int32Array.from({ length: 16 }, (_, i) => (i * 7 + step) % 10), size: 16 };
          losses.push(model.lossAndGrad(params, batch, grad));
          optimizer.step(params, grad, 0.05);
        }
        trajectories.push(losses);
      }
      const [reference, native] = trajectories;
      reference.forEach((loss, step) => assert.ok(Math.abs(loss - native[step]) < 1e-3 * (1 + loss), `${name} step ${step}: reference ${loss}, native ${native[step]}`));
      assert.ok(reference[29] < reference[0], `${name} learned something`);
    }
  } finally {
    useBackend(before);
  }
});

test('layers of your own: residual blocks (identity and projection shortcuts) and flatten match finite differences', () => {
  // a dense layer before the block: its gradient is right only if the block passes the input's gradient down both branches
  const identity = sequential(({ classes }) => [flatten(), dense(6), residual([relu(), dense(6), relu(), dense(6)]), relu(), dense(classes)], { name: 'residual-identity' });
  checkGradient(identity.build({ inputShape: [1, 3, 4], classes: 5, maxBatch: 4 }) as Model, 3, 4);
  // (no ReLU or max-pooling here: with convolutions, finite differences of ±0.01 cross their kinks)
  const projected = sequential(({ classes }) => [conv2d(3), residual([conv2d(4), conv2d(4)], [conv2d(4, 1)]), flatten(), dense(classes)], { name: 'residual-projection' });
  checkGradient(projected.build({ inputShape: [2, 6, 4], classes: 3, maxBatch: 3 }) as Model, 4, 3);
  // out = body(x) + x, with x as it came in, even when the body's first layer works in place
  const block = standalone(residual([relu()])({ kernels: kernelSet(), inputShape: [4], maxBatch: 1, name: 'r', seed: 0 }));
  const input = Float32Array.of(-2, -1, 1, 2);
  assert.deepEqual(Array.from(block.forward({}, input, 1)), [-2, -1, 2, 4]);
  assert.deepEqual(Array.from(input), [-2, -1, 1, 2], 'the block leaves its input alone');
  assert.throws(() => sequential([dense(4), residual([dense(3)]), dense(2)]).build({ inputShape: [5], classes: 2, maxBatch: 1 }), /residual block 1: expected a body whose output has the shortcut's shape \[4\], got \[3\]; give the block a projection shortcut/);
});

test('a model from a plain lossAndGrad function: its gradient is checked the same way, and it must say how to measure it', () => {
  // least squares to the one-hot label, written by hand: loss = mean over the batch of ½‖W x + b − onehot‖²
  const definition = lossAndGradModel({
    name: 'least-squares',
    parameters: ({ inputShape, classes }) => [{ name: 'w', shape: [classes!, inputShape!.reduce((a, b) => a * b, 1)] }, { name: 'b', shape: [classes!] }],
    lossAndGrad(params, batch, grad, layout) {
      const { w, b } = layout.views(params);
      const g = layout.views(grad);
      const [classes, inputs] = layout.slot('w').shape;
      grad.fill(0);
      let loss = 0;
      for (let n = 0; n < batch.size; n++) {
        for (let c = 0; c < classes; c++) {
          let z = b[c];
          for (let i = 0; i < inputs; i++) z += w[c * inputs + i] * batch.x[n * inputs + i];
          const r = z - (batch.y[n] === c ? 1 : 0);
          loss += (0.5 * r * r) / batch.size;
          g.b[c] += r / batch.size;
          for (let i = 0; i < inputs; i++) g.w[c * inputs + i] += (r * batch.x[n * inputs + i]) / batch.size;
        }
      }
      return loss;
    },
    predict(params, batch, out, layout) {
      out.fill(0, 0, batch.size);
      void params;
      void layout;
    },
  });
  const model = definition.build({ inputShape: [2, 3], classes: 4, maxBatch: 5 });
  checkGradient(Object.assign(model, { inputShape: [2, 3], classes: 4 }) as unknown as Model, 7, 5);
  assert.throws(() => lossAndGradModel({ parameters: () => [], lossAndGrad: () => 0 }), /a classifier needs predict\(params, batch, out\) or evaluate\(params, batch\)/);
});

test('mean squared error and binary cross-entropy: the loss against closed forms, the gradient against finite differences', () => {
  for (const loss of ['mse', 'bce'] as const) {
    // (no ReLU: finite differences of ±0.01 would cross its kink)
    const model = sequential(() => [dense(5), dense(2)], { loss }).build({ inputShape: [3], classes: 2, maxBatch: 4, task: loss === 'mse' ? 'regression' : 'classification' });
    const random = new Random(9);
    const params = model.layout.allocate();
    model.init(params, random);
    const batch = { x: random.fillUniform(new Float32Array(12), -1, 1), y: new Int32Array(4), targets: Float32Array.from({ length: 8 }, () => (loss === 'bce' ? random.below(2) : random.normal())), size: 4 };
    const grad = model.layout.allocate();
    grad.fill(NaN);
    const value = model.lossAndGrad(params, batch, grad);
    // the closed form, from the parameters: the two dense layers written out
    const { '0.weight': w1, '0.bias': b1, '1.weight': w2, '1.bias': b2 } = model.layout.views(params);
    let expected = 0;
    for (let n = 0; n < 4; n++) {
      const h = [0, 1, 2, 3, 4].map((j) => b1[j] + [0, 1, 2].reduce((s, i) => s + w1[j * 3 + i] * batch.x[n * 3 + i], 0));
      for (let k = 0; k < 2; k++) {
        const z = b2[k] + h.reduce((s, v, j) => s + w2[k * 5 + j] * v, 0);
        const t = batch.targets[n * 2 + k];
        expected += loss === 'mse' ? (z - t) ** 2 : Math.log(1 + Math.exp(z)) - z * t;
      }
    }
    assert.ok(Math.abs(value - expected / 8) < 1e-5, `${loss}: ${value} against ${expected / 8}`);
    // regression's RMSE is per value: a batch's squared error sums each sample's mean over its 2 targets
    if (loss === 'mse') assert.ok(Math.abs(model.evaluate(params, batch).squaredError - expected / 2) < 1e-5, `squared error ${model.evaluate(params, batch).squaredError} against ${expected / 2}`);
    matchesDifferences(model, params, batch, grad, model.layout.slots.flatMap((slot) => Array.from({ length: slot.size }, (_, k) => slot.offset + k)), (i) => `${loss} [${i}]`);
  }
});

test('more layers: tanh, sigmoid, GELU, average and global average pooling, strided convolution, dropout — gradients against finite differences', () => {
  const smooth = sequential(({ classes }) => [conv2d(3, 3, { stride: 2 }), tanh(), conv2d(4, 1, { stride: 2, pad: 0 }), sigmoid(), avgPool2d(2), flatten(), dense(6), gelu(), dense(classes)], { name: 'smooth' });
  checkGradient(smooth.build({ inputShape: [2, 9, 8], classes: 3, maxBatch: 3 }) as Model, 5, 3);
  const global = sequential(({ classes }) => [conv2d(4), globalAvgPool2d(), dense(classes)], { name: 'global' });
  checkGradient(global.build({ inputShape: [1, 5, 6], classes: 3, maxBatch: 2 }) as Model, 6, 2);
  // dropout: the mask is fixed for a step, so the step's loss is a smooth function of the parameters
  const dropped = sequential(({ classes }) => [flatten(), dense(8), tanh(), dropout(0.5), dense(classes)], { name: 'dropout' });
  const model = dropped.build({ inputShape: [6], classes: 3, maxBatch: 4, seed: 1, replica: 0 }) as Model;
  model.beginStep!(17);
  checkGradient(model, 7, 4);
});

test('GELU, erf and the strided convolution\'s shape against closed forms', () => {
  // erf from tables (Abramowitz & Stegun 7.1): to float32 accuracy
  for (const [x, value] of [[0.5, 0.5204998778], [1, 0.8427007929], [2, 0.995322265], [-0.3, -0.3286267595]]) assert.ok(Math.abs(erf(x) - value) < 2e-7, `erf(${x})`);
  const layer = standalone(gelu()({ kernels: kernelSet(), inputShape: [3], maxBatch: 1, name: 'g', seed: 0 }));
  // x·Φ(x): Φ(1) = 0.8413447461, Φ(−0.5) = 0.3085375387
  assert.deepEqual(Array.from(layer.forward({}, Float32Array.of(1, -0.5, 0), 1)).map((v) => +v.toFixed(6)), [0.841345, -0.154269, 0]);
  // ResNet's downsampling: 3×3, pad 1, stride 2 halves 28 → 14 and 7 → 4
  assert.deepEqual(conv2d(8, 3, { stride: 2 })({ kernels: kernelSet(), inputShape: [4, 28, 28], maxBatch: 1, name: 'c', seed: 0 }).outputShape, [8, 14, 14]);
  assert.deepEqual(conv2d(8, 1, { stride: 2, pad: 0 })({ kernels: kernelSet(), inputShape: [4, 7, 7], maxBatch: 1, name: 'c', seed: 0 }).outputShape, [8, 4, 4]);
});

test('dropout: inverted scaling, the identity in evaluation, the same mask for the same (seed, replica, step) and another for another', () => {
  const make = (replica: number) => standalone(dropout(0.25)({ kernels: kernelSet(), inputShape: [4000], maxBatch: 1, name: '3', seed: replica * 7919 + 1 }));
  const input = new Float32Array(4000).fill(1);
  const layer = make(0);
  layer.setMode!(true, 5);
  const first = Float32Array.from(layer.forward({}, input, 1));
  const kept = first.filter((v) => v !== 0);
  assert.ok(kept.every((v) => Math.abs(v - 4 / 3) < 1e-6), 'kept values scaled by 1/(1 − p)');
  assert.ok(Math.abs(kept.length / 4000 - 0.75) < 0.03, `kept ${kept.length} of 4000`);
  layer.setMode!(true, 5);
  assert.deepEqual(Float32Array.from(layer.forward({}, input, 1)), first, 'the same step draws the same mask');
  layer.setMode!(true, 6);
  assert.notDeepEqual(Float32Array.from(layer.forward({}, input, 1)), first, 'the next step another');
  const other = make(1);
  other.setMode!(true, 5);
  assert.notDeepEqual(Float32Array.from(other.forward({}, input, 1)), first, 'another replica another');
  layer.setMode!(false, 5);
  assert.deepEqual(Float32Array.from(layer.forward({}, input, 1)), input, 'evaluation passes values through');
});

test('batch norm: the gradient (images and vectors) against finite differences; running statistics and evaluation against their definitions', () => {
  const images = sequential(({ classes }) => [conv2d(3, 3, { bias: false }), batchNorm(), tanh(), flatten(), dense(4), batchNorm(), dense(classes)], { name: 'bn' });
  checkGradient(images.build({ inputShape: [2, 4, 5], classes: 3, maxBatch: 4 }) as Model, 8, 4);
  // one layer alone: y = γ·(x − μ)/√(σ² + ε) + β with the batch's μ and σ² while training
  const layer = standalone(batchNorm()({ kernels: kernelSet(), inputShape: [2, 1, 2], maxBatch: 2, name: 'b', seed: 0 }));
  const buffers = { 'b.running_mean': new Float32Array(2), 'b.running_var': new Float32Array(2) };
  layer.useBuffers!(buffers);
  const p = { 'b.weight': Float32Array.of(2, 1), 'b.bias': Float32Array.of(0.5, 0) };
  layer.setMode!(true, 0);
  // channel 0 sees 1, 3 (sample 0) and 5, 7 (sample 1): mean 4, variance 5 (unbiased 20/3)
  const y = layer.forward(p, Float32Array.of(1, 3, 2, 2, 5, 7, 2, 2), 2);
  const expected = [1, 3, 5, 7].map((v) => 2 * ((v - 4) / Math.sqrt(5 + 1e-5)) + 0.5);
  assert.deepEqual([y[0], y[1], y[4], y[5]].map((v) => +v.toFixed(5)), expected.map((v) => +v.toFixed(5)));
  assert.deepEqual([y[2], y[3]].map((v) => +v.toFixed(5)), [0, 0], 'a constant channel normalises to β');
  assert.ok(Math.abs(buffers['b.running_mean'][0] - 0.4) < 1e-6 && Math.abs(buffers['b.running_var'][0] - (0.9 + 0.1 * (20 / 3))) < 1e-6, 'running statistics: momentum 0.1, unbiased variance');
  layer.setMode!(false, 0);
  const evaluated = layer.forward(p, Float32Array.of(1, 3, 2, 2), 1);
  assert.ok(Math.abs(evaluated[0] - (2 * (1 - 0.4) / Math.sqrt(buffers['b.running_var'][0] + 1e-5) + 0.5)) < 1e-5, 'evaluation uses the running statistics');
});

/** An in-process group of two: each allreduceSum waits for the other's, then both hold the sum. */
function pairGroup() {
  const waiting: { buffer: Float32Array; resolve: () => void }[] = [];
  return {
    allreduceSum: (buffer: Float32Array) => new Promise<void>((resolve) => {
      waiting.push({ buffer, resolve });
      if (waiting.length < 2) return;
      const [a, b] = waiting.splice(0);
      for (let i = 0; i < a.buffer.length; i++) a.buffer[i] = b.buffer[i] = a.buffer[i] + b.buffer[i];
      a.resolve();
      b.resolve();
    }),
  };
}

const maxDifference = (a: Float32Array, b: Float32Array) => a.reduce((worst, v, i) => Math.max(worst, Math.abs(v - b[i])), 0);

test('synchronised batch norm: two replicas whose sums meet compute the gradient of one replica on both halves; lossAndGrad refuses', async () => {
  const group = pairGroup();
  const spec = sequential(({ classes }) => [conv2d(3, 3, { bias: false }), batchNorm(), relu(), residual([conv2d(3, 3), batchNorm(), tanh()]), flatten(), dense(4), batchNorm(), dense(classes)], { name: 'bn' });
  const options = { inputShape: [2, 4, 5], classes: 3, maxBatch: 8 };
  const whole = spec.build(options) as Model;
  const halves = [0, 1].map((replica) => spec.build({ ...options, replica, statistics: group }) as Model);
  const random = new Random(4);
  const params = whole.layout.allocate();
  whole.init(params, random);
  const x = new Float32Array(8 * 40);
  random.fillUniform(x, -1, 1);
  const y = Int32Array.from({ length: 8 }, (_, i) => i % 3);
  const expected = whole.layout.allocate();
  const loss = whole.lossAndGrad(params, { x, y, size: 8 }, expected);
  const grads = [whole.layout.allocate(), whole.layout.allocate()];
  const losses = await Promise.all(halves.map((model, r) => model.lossAndGradAsync!(params, { x: x.subarray(r * 160, (r + 1) * 160), y: y.subarray(r * 4, (r + 1) * 4), size: 4 }, grads[r])));
  assert.ok(Math.abs((losses[0] + losses[1]) / 2 - loss) < 1e-6, 'the mean of the halves\' losses is the whole batch\'s');
  let worst = 0;
  for (let i = 0; i < expected.length; i++) worst = Math.max(worst, Math.abs((grads[0][i] + grads[1][i]) / 2 - expected[i]));
  assert.ok(worst < 1e-5, `the mean of the replicas' gradients is the whole batch's: differs by ${worst}`);
  for (const model of halves) {
    const apart = Math.max(...model.buffers!.map((v, i) => Math.abs(v - whole.buffers![i])));
    assert.ok(apart < 1e-6, `every replica keeps the whole batch's running statistics: ${apart} apart`);
  }
  assert.throws(() => halves[0].lossAndGrad(params, { x, y, size: 4 }, grads[0]), /reduces its statistics across ranks.*lossAndGradAsync/);
});

test('ResNet-20 has PyTorch\'s 272,186 parameters on one channel and 10 classes, and its gradient is right where finite differences can tell', () => {
  const model = createModel('resnet20', { inputShape: [1, 28, 28], classes: 10, maxBatch: 2 });
  assert.equal(model.layout.size, 272_186);
  assert.ok(model.buffers && model.buffers.length === 2 * (16 + 6 * 16 + 6 * 32 + 32 + 6 * 64 + 64), 'a running mean and variance for each of its 19 + 2 batch norms');
  // small images, and the last layers' coordinates (the ReLUs' kinks blur those further down)
  const small = createModel('resnet20', { inputShape: [3, 8, 8], classes: 4, maxBatch: 4 }) as Model;
  const random = new Random(2);
  const params = small.layout.allocate();
  small.init(params, random);
  const batch = { x: random.fillUniform(new Float32Array(4 * 192), 0, 1), y: Int32Array.of(0, 1, 2, 3), size: 4 };
  const grad = small.layout.allocate();
  small.lossAndGrad(params, batch, grad);
  for (const name of ['22.weight', '22.bias', '19.body.4.weight', '19.body.4.bias']) {
    const slot = small.layout.slot(name);
    const step = Math.max(1, Math.floor(slot.size / 12));
    const coordinates = Array.from({ length: Math.ceil(slot.size / step) }, (_, k) => slot.offset + k * step);
    matchesDifferences(small, params, batch, grad, coordinates, (i) => `${name}[${i - slot.offset}]`, 1.5);
  }
});

test('channel-blocked activations (what oneDNN computes in) give the plain layout\'s loss, gradient, statistics and evaluation; reorders go where a layer reads plain images only', async () => {
  // the reference kernels, told to prefer blocks of 8 channels: the convolutions then write
  // blocked images, and every other layer reads them as they are or through a reorder
  registerBackend('reference, blocks of 8', { ...referenceKernels, channelBlock: 8 });
  const spec = sequential(({ classes }) => [
    conv2d(16, 3, { bias: false }), batchNorm(), relu(),
    residual([conv2d(16), batchNorm(), relu(), conv2d(16), batchNorm()]), relu(),
    residual([conv2d(8), gelu(), conv2d(16), dropout(0.25)]), // a body that ends plain beside a blocked identity
    residual([conv2d(24, 3, { stride: 2 }), batchNorm(), sigmoid()], [conv2d(24, 1, { stride: 2, pad: 0 }), batchNorm()]),
    conv2d(16), tanh(), globalAvgPool2d(), dense(classes),
  ], { name: 'blocked' });
  const pooled = sequential(({ classes }) => [conv2d(16), relu(), maxPool2d(2), conv2d(8), avgPool2d(2), flatten(), dense(classes)], { name: 'pooled' });
  const options = { inputShape: [3, 8, 8], classes: 5, maxBatch: 6, seed: 3 };
  const random = new Random(5);
  const x = random.fillUniform(new Float32Array(6 * 192), -1, 1);
  const y = Int32Array.from({ length: 6 }, (_, i) => i % 5);
  const batch = { x, y, size: 6 };
  const saved = activeBackend();
  for (const definition of [spec, pooled]) {
    useBackend('reference');
    const plain = definition.build(options) as Model;
    useBackend('reference, blocks of 8');
    const blocked = definition.build(options) as Model;
    useBackend(saved);
    const params = plain.layout.allocate();
    plain.init(params, random);
    const [expected, actual] = [plain.layout.allocate(), plain.layout.allocate()];
    plain.beginStep?.(7);
    blocked.beginStep?.(7);
    const loss = plain.lossAndGrad(params, batch, expected);
    assert.ok(Math.abs(blocked.lossAndGrad(params, batch, actual) - loss) < 1e-6, `${plain.name}: the same loss`);
    assert.ok(maxDifference(actual, expected) < 1e-5, `${plain.name}: the same gradient (differs by ${maxDifference(actual, expected)})`);
    if (plain.buffers) assert.ok(maxDifference(blocked.buffers!, plain.buffers) < 1e-6, `${plain.name}: the same running statistics`);
    const [a, b] = [plain.evaluate(params, batch), blocked.evaluate(params, batch)];
    assert.ok(Math.abs(a.loss - b.loss) < 1e-6 && a.correct === b.correct, `${plain.name}: the same evaluation`);
  }
  // synchronised batch norm reads blocked images too: two blocked halves against the plain whole
  const synchronised = sequential(({ classes }) => [conv2d(16, 3, { bias: false }), batchNorm(), relu(), residual([conv2d(16), batchNorm()]), globalAvgPool2d(), dense(classes)]);
  const group = pairGroup();
  useBackend('reference');
  const whole = synchronised.build(options) as Model;
  useBackend('reference, blocks of 8');
  const halves = [0, 1].map((replica) => synchronised.build({ ...options, replica, statistics: group }) as Model);
  useBackend(saved);
  const params = whole.layout.allocate();
  whole.init(params, random);
  const expected = whole.layout.allocate();
  const even = { x, y, size: 6 };
  whole.lossAndGrad(params, even, expected);
  const grads = [whole.layout.allocate(), whole.layout.allocate()];
  await Promise.all(halves.map((model, r) => model.lossAndGradAsync!(params, { x: x.subarray(r * 576, (r + 1) * 576), y: y.subarray(r * 3, (r + 1) * 3), size: 3 }, grads[r])));
  const mean = grads[0].map((v, i) => (v + grads[1][i]) / 2);
  assert.ok(maxDifference(mean, expected) < 1e-5, `synchronised and blocked: the whole batch's gradient (differs by ${maxDifference(mean, expected)})`);
});
