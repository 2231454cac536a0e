// A stack of layers ending in softmax cross-entropy: the shape of every built-in dense model.
// (Its loops are LayerChain's, written out here: kept inline, the whole step is optimised by V8 within the
// first few hundred steps, which the allocation test measures after.)

import type { KernelSet } from '../kernels/types.js';
import { Layout } from '../tensor/layout.js';
import type { Random } from '../tensor/random.js';
import { shapeMismatch } from '../errors.js';
import type { Layer } from './layers.js';
import type { Batch, Evaluation, ImageModel } from './model.js';

export class Sequential implements ImageModel {
  readonly task = 'classification' as const;
  readonly layout: Layout;
  private readonly inputs: Float32Array[]; // the input each layer saw in the last forward pass
  private readonly inputGrads: (Float32Array | null)[]; // gradient w.r.t. each layer's input
  private readonly gradLogits: Float32Array;

  constructor(readonly name: string, private readonly kernels: KernelSet, private readonly layers: Layer[],
    readonly inputShape: readonly number[], readonly classes: number, readonly maxBatch: number) {
    this.layout = new Layout(layers.flatMap((layer) => layer.params));
    const last = layers[layers.length - 1].outputShape;
    if (last.length !== 1 || last[0] !== classes) throw shapeMismatch(`model ${name}`, `a final layer of ${classes} outputs`, `[${last}]`);
    this.inputs = new Array(layers.length);
    this.inputGrads = layers.map((_, i) => {
      if (i === 0) return null;
      const shape = layers[i - 1].outputShape;
      return new Float32Array(maxBatch * shape.reduce((a, b) => a * b, 1));
    });
    this.gradLogits = new Float32Array(maxBatch * classes);
  }

  init(params: Float32Array, random: Random): void {
    const p = this.layout.views(params);
    for (const layer of this.layers) layer.init(p, random);
  }

  private forward(params: Float32Array, x: Float32Array, batch: number): Float32Array {
    if (batch > this.maxBatch || batch < 1) throw shapeMismatch(`model ${this.name}`, `a batch of 1..${this.maxBatch}`, `${batch}`);
    const p = this.layout.views(params);
    let activation = x;
    for (let i = 0; i < this.layers.length; i++) {
      this.inputs[i] = activation;
      activation = this.layers[i].forward(p, activation, batch);
    }
    return activation;
  }

  lossAndGrad(params: Float32Array, batch: Batch, grad: Float32Array): number {
    const logits = this.forward(params, batch.x, batch.size);
    const loss = this.kernels.softmaxCrossEntropy(logits, batch.y, batch.size, this.classes, this.gradLogits);
    const p = this.layout.views(params);
    const g = this.layout.views(grad);
    let gradOut = this.gradLogits;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const gradX = this.inputGrads[i];
      this.layers[i].backward(p, g, this.inputs[i], gradOut, gradX, batch.size);
      if (gradX) gradOut = gradX;
    }
    return loss;
  }

  evaluate(params: Float32Array, batch: Batch): Evaluation {
    const logits = this.forward(params, batch.x, batch.size);
    const loss = this.kernels.softmaxCrossEntropy(logits, batch.y, batch.size, this.classes, this.gradLogits);
    let correct = 0;
    for (let i = 0; i < batch.size; i++) if (argmax(logits, i * this.classes, this.classes) === batch.y[i]) correct++;
    return { loss, correct, squaredError: 0 };
  }

  predict(params: Float32Array, x: Float32Array, count: number, out: Int32Array): void {
    const logits = this.forward(params, x, count);
    for (let i = 0; i < count; i++) out[i] = argmax(logits, i * this.classes, this.classes);
  }
}

function argmax(values: Float32Array, start: number, length: number): number {
  let best = 0;
  for (let j = 1; j < length; j++) if (values[start + j] > values[start + best]) best = j;
  return best;
}
