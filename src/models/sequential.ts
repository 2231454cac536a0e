// A stack of layers ending in softmax cross-entropy: the shape of every built-in dense model.
// (Its loops are LayerChain's, written out here: kept inline, the whole step is optimised by V8 within the
// first few hundred steps, which the allocation test measures after.)

import type { KernelSet } from '../kernels/types.js';
import { Layout } from '../tensor/layout.js';
import { Random } from '../tensor/random.js';
import { Held } from '../tensor/arena.js';
import { ConvergeError, shapeMismatch } from '../errors.js';
import { formatBytes, price, recomputeName, storeAll, type UnitCost } from './checkpointing.js';
import type { Layer } from './layers.js';
import { measureUnits, planUnits, Recompute, scratchBytesOf, scratchOf, storeAllArena, unitsOf, type ActivationReport, type Unit } from './recompute.js';
import { binaryCrossEntropy, meanSquaredError, squaredError, type LossName } from './losses.js';
import type { Batch, Evaluation, ImageModel, ModelOptions } from './model.js';

export type { ActivationReport } from './recompute.js';

export class Sequential implements ImageModel {
  readonly task: 'classification' | 'regression';
  readonly layout: Layout;
  readonly buffers?: Float32Array;
  private readonly inputs: Float32Array[]; // the input each layer saw in the last forward pass
  private readonly inputGrads: (Held | null)[]; // gradient w.r.t. each layer's input
  /** A schedule that recomputes (or any with a budget): the step runs through it. */
  private readonly recompute: Recompute | null = null;
  readonly activations: ActivationReport;
  /** The gradient of the loss with respect to the outputs, written by outputLoss. */
  readonly gradLogits: Float32Array;
  private readonly labelTargets: Float32Array;

  constructor(readonly name: string, private readonly kernels: KernelSet, readonly layers: readonly Layer[],
    readonly inputShape: readonly number[], readonly classes: number, readonly maxBatch: number,
    /** What the outputs are fitted by: classes by softmax cross-entropy; targets by mean squared error or binary cross-entropy. */
    readonly loss: LossName = 'softmax-cross-entropy', memory: Pick<ModelOptions, 'recompute' | 'memoryBudget' | 'seed'> = {}) {
    this.task = loss === 'mse' ? 'regression' : 'classification';
    this.layout = new Layout(layers.flatMap((layer) => layer.params));
    const last = layers[layers.length - 1].outputShape;
    if (last.length !== 1 || last[0] !== classes) throw shapeMismatch(`model ${name}`, `a final layer of ${classes} outputs`, `[${last}]`);
    this.inputs = new Array(layers.length);
    this.inputGrads = layers.map((_, i) => {
      if (i === 0) return null;
      const shape = layers[i - 1].outputShape;
      return new Held(maxBatch * shape.reduce((a, b) => a * b, 1), 'gradient');
    });
    this.gradLogits = new Float32Array(maxBatch * classes);
    this.labelTargets = new Float32Array(loss === 'bce' ? maxBatch : 0);
    this.modal = layers.filter((layer) => layer.setMode);
    if (layers.some((layer) => layer.synchronised)) this.lossAndGradAsync = (params, batch, grad) => this.synchronisedStep(params, batch, grad);
    const buffers = layers.flatMap((layer) => layer.buffers ?? []);
    if (buffers.length > 0) {
      const bufferLayout = new Layout(buffers);
      this.buffers = bufferLayout.allocate();
      const views = bufferLayout.views(this.buffers);
      for (const layer of layers) layer.useBuffers?.(views);
    }
    const schedule = memory.recompute ?? { kind: memory.memoryBudget === undefined ? 'none' : 'auto' };
    const unitCount = layers.filter((layer, i) => i === 0 || !layer.inPlace).length;
    const whole = storeAllArena(layers, this.inputGrads);
    // auto within a budget that holds everything stores everything, as none does
    if (schedule.kind === 'none' || (schedule.kind === 'auto' && memory.memoryBudget !== undefined && whole.bytes <= memory.memoryBudget)) {
      if (memory.memoryBudget !== undefined && whole.bytes > memory.memoryBudget) {
        throw new ConvergeError(`--memory-budget ${formatBytes(memory.memoryBudget)}: model ${name} at batch ${maxBatch} holds ${formatBytes(whole.bytes)} of activations when it stores them all; give --recompute auto (or sqrt, revolve:S) to recompute some, or a smaller --batch.`, 'BAD_OPTION');
      }
      this.activations = { bytes: whole.allocate().byteLength, schedule: recomputeName(schedule), recomputed: 0, units: unitCount, storeAllBytes: whole.bytes };
    } else {
      const units = unitsOf(layers, inputShape, maxBatch);
      const planned = planUnits(units, scratchOf(layers), schedule, memory.memoryBudget, maxBatch, `model ${name} at batch ${maxBatch}`, () => this.measure(units, memory.seed ?? 1));
      this.recompute = planned.recompute;
      this.activations = { ...planned.report, storeAllBytes: whole.bytes };
    }
  }

  /**
   * The chain as the schedules see it: its units, and each one's bytes and forward and backward
   * seconds measured at the largest batch. The units' buffers are left where the measurement put
   * them: call it on a model that is planned next, or thrown away.
   */
  profile(seed = 1): { units: Unit[]; costs: UnitCost[]; scratchBytes: number } {
    const units = unitsOf(this.layers, this.inputShape, this.maxBatch);
    return { units, costs: this.measure(units, seed), scratchBytes: scratchBytesOf(scratchOf(this.layers)) };
  }

  /**
   * The seconds this model's schedule (storing all, or the one it runs) takes by the cost model the
   * planner uses: the sum of its units' passes, each priced at `costs` (a profile of the same chain).
   */
  predictSeconds(costs: readonly UnitCost[]): number {
    if (costs.length !== this.activations.units) throw shapeMismatch(`model ${this.name}'s profile`, `${this.activations.units} units`, `${costs.length}`);
    return price(this.recompute?.ops ?? storeAll(costs.length), costs).seconds;
  }

  private measure(units: readonly Unit[], seed: number): UnitCost[] {
    return measureUnits(units, scratchOf(this.layers), this.maxBatch, this.layout, (params) => this.init(params, new Random(seed)), seed);
  }

  private step = 0;
  private readonly modal: Layer[];
  /** Set when a layer reduces across ranks (batch norm with --sync-bn): the step, awaited. */
  readonly lossAndGradAsync?: (params: Float32Array, batch: Batch, grad: Float32Array) => Promise<number>;

  beginStep(step: number): void {
    this.step = step;
  }

  /** Tells the layers that act differently in training (dropout) which pass comes. */
  private setMode(training: boolean): void {
    for (const layer of this.modal) layer.setMode!(training, this.step);
  }

  init(params: Float32Array, random: Random): void {
    const p = this.layout.views(params);
    for (const layer of this.layers) layer.init(p, random);
  }

  private forward(params: Float32Array, x: Float32Array, batch: number): Float32Array {
    if (batch > this.maxBatch || batch < 1) throw shapeMismatch(`model ${this.name}`, `a batch of 1..${this.maxBatch}`, `${batch}`);
    const p = this.layout.views(params);
    if (this.recompute) return this.recompute.forward(p, x, batch);
    let activation = x;
    for (let i = 0; i < this.layers.length; i++) {
      this.inputs[i] = activation;
      activation = this.layers[i].forward(p, activation, batch);
    }
    return activation;
  }

  /** The batch's mean loss, and its gradient with respect to the outputs in gradLogits when `withGradient` (a pipeline's last stage calls it on the outputs it computed). */
  outputLoss(outputs: Float32Array, batch: Batch, withGradient: boolean): number {
    if (this.loss === 'softmax-cross-entropy') return this.kernels.softmaxCrossEntropy(outputs, batch.y, batch.size, this.classes, this.gradLogits);
    const gradient = withGradient ? this.gradLogits : null;
    if (this.loss === 'bce') return binaryCrossEntropy(outputs, this.targetsOf(batch), batch.size, this.classes, gradient);
    if (!batch.targets) throw shapeMismatch(`model ${this.name}`, 'regression targets for its mean squared error', 'a batch of class labels; train it on regression data');
    return meanSquaredError(outputs, batch.targets, batch.size, this.classes, gradient);
  }

  /** Binary cross-entropy fits targets in [0, 1]: the batch's own, or its 0/1 labels. */
  private targetsOf(batch: Batch): Float32Array {
    if (batch.targets) return batch.targets;
    if (this.classes !== 1) throw shapeMismatch(`model ${this.name}`, 'one output per sample for binary cross-entropy on 0/1 labels', `${this.classes} outputs`);
    for (let i = 0; i < batch.size; i++) this.labelTargets[i] = batch.y[i];
    return this.labelTargets;
  }

  lossAndGrad(params: Float32Array, batch: Batch, grad: Float32Array): number {
    if (this.recompute) return this.scheduledStep(params, batch, grad);
    if (this.modal.length > 0) this.setMode(true);
    const logits = this.forward(params, batch.x, batch.size);
    // the classifiers' loss called straight: the hot path stays what V8 optimised before the other losses came
    const loss = this.loss === 'softmax-cross-entropy' ? this.kernels.softmaxCrossEntropy(logits, batch.y, batch.size, this.classes, this.gradLogits) : this.outputLoss(logits, batch, true);
    const p = this.layout.views(params);
    const g = this.layout.views(grad);
    let gradOut = this.gradLogits;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const gradX = this.inputGrads[i]?.f32 ?? null;
      this.layers[i].backward(p, g, this.inputs[i], gradOut, gradX, batch.size);
      if (gradX) gradOut = gradX;
    }
    return loss;
  }

  /** lossAndGrad by a recompute schedule: the same arithmetic, some forward passes run twice. */
  private scheduledStep(params: Float32Array, batch: Batch, grad: Float32Array): number {
    if (batch.size > this.maxBatch || batch.size < 1) throw shapeMismatch(`model ${this.name}`, `a batch of 1..${this.maxBatch}`, `${batch.size}`);
    return this.recompute!.step(this.layout.views(params), this.layout.views(grad), batch.x, batch.size, this.step, this.gradLogits, (logits) => this.outputLoss(logits, batch, true));
  }

  /** lossAndGrad with layers that reduce across ranks: their passes awaited, the others run as lossAndGrad runs them. */
  private async synchronisedStep(params: Float32Array, batch: Batch, grad: Float32Array): Promise<number> {
    if (this.modal.length > 0) this.setMode(true);
    if (batch.size > this.maxBatch || batch.size < 1) throw shapeMismatch(`model ${this.name}`, `a batch of 1..${this.maxBatch}`, `${batch.size}`);
    const p = this.layout.views(params);
    const g = this.layout.views(grad);
    let activation = batch.x;
    for (let i = 0; i < this.layers.length; i++) {
      const layer = this.layers[i];
      this.inputs[i] = activation;
      activation = layer.synchronised ? await layer.forwardAsync!(p, activation, batch.size) : layer.forward(p, activation, batch.size);
    }
    const loss = this.outputLoss(activation, batch, true);
    let gradOut = this.gradLogits;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const layer = this.layers[i];
      const gradX = this.inputGrads[i]?.f32 ?? null;
      if (layer.synchronised) await layer.backwardAsync!(p, g, this.inputs[i], gradOut, gradX, batch.size);
      else layer.backward(p, g, this.inputs[i], gradOut, gradX, batch.size);
      if (gradX) gradOut = gradX;
    }
    return loss;
  }

  evaluate(params: Float32Array, batch: Batch): Evaluation {
    if (this.modal.length > 0) this.setMode(false);
    return this.score(this.forward(params, batch.x, batch.size), batch);
  }

  /** The loss and figure of merit of outputs the model computed for the batch. */
  score(logits: Float32Array, batch: Batch): Evaluation {
    const loss = this.outputLoss(logits, batch, false);
    if (this.loss === 'mse') return { loss, correct: 0, squaredError: squaredError(logits, batch.targets!, batch.size, this.classes) / this.classes };
    let correct = 0;
    if (this.loss === 'bce') {
      // one output per sample: the class is whether its logit is positive
      const targets = this.targetsOf(batch);
      for (let i = 0; i < batch.size * this.classes; i++) if ((logits[i] > 0 ? 1 : 0) === targets[i]) correct++;
      return { loss, correct: correct / this.classes, squaredError: 0 };
    }
    for (let i = 0; i < batch.size; i++) if (argmax(logits, i * this.classes, this.classes) === batch.y[i]) correct++;
    return { loss, correct, squaredError: 0 };
  }

  get predictionWidth(): number {
    return this.loss === 'mse' ? this.classes : 1;
  }

  predictions(params: Float32Array, batch: Batch, out: Float32Array): void {
    if (this.modal.length > 0) this.setMode(false);
    const logits = this.forward(params, batch.x, batch.size);
    if (this.loss === 'mse') out.set(logits.subarray(0, batch.size * this.classes));
    else if (this.loss === 'bce') for (let i = 0; i < batch.size * this.classes; i++) out[i] = logits[i] > 0 ? 1 : 0;
    else for (let i = 0; i < batch.size; i++) out[i] = argmax(logits, i * this.classes, this.classes);
  }

  predict(params: Float32Array, x: Float32Array, count: number, out: Int32Array): void {
    if (this.modal.length > 0) this.setMode(false);
    const logits = this.forward(params, x, count);
    for (let i = 0; i < count; i++) out[i] = argmax(logits, i * this.classes, this.classes);
  }
}

function argmax(values: Float32Array, start: number, length: number): number {
  let best = 0;
  for (let j = 1; j < length; j++) if (values[start + j] > values[start + best]) best = j;
  return best;
}
