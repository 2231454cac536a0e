// A contiguous run of a sequential model's layers: one stage of a pipeline. Its parameters are
// one contiguous range of the whole model's flat buffer (a layout lists the layers' tensors in
// order), so a stage holds that range alone, and a checkpoint of the whole model is the stages'
// ranges side by side — whatever the cut.

import { ConvergeError } from '../errors.js';
import { aligned, holdPrivately } from '../tensor/arena.js';
import { Layout } from '../tensor/layout.js';
import { Random } from '../tensor/random.js';
import { LayerChain } from './chain.js';
import type { RecomputeSpec } from './checkpointing.js';
import { heldBytesOf, measureUnits, planUnits, scratchOf, unitsOf, type ActivationReport, type Recompute } from './recompute.js';
import type { Layer } from './layers.js';
import type { Batch, Evaluation, Model } from './model.js';
import { Sequential } from './sequential.js';

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** What a strategy that runs a model layer by layer says of a model that is not a chain of layers. */
export function notALayerChain(strategy: string, model: string): ConvergeError {
  return new ConvergeError(`--strategy ${strategy} runs a model of layers layer by layer (sequential([...]) or the built-in mlp, cnn, resnet20); ${model} is not one.`, 'BAD_OPTION');
}

/** The model as a chain of layers a strategy can cut or shard, or a one-line reason why it cannot be. */
export function layerChainOf(model: Model, strategy = 'pipeline'): Sequential {
  if (!(model instanceof Sequential)) throw notALayerChain(strategy, model.name);
  if (model.layers.some((layer) => layer.synchronised)) throw new ConvergeError(`--strategy ${strategy} with --sync-bn: not supported; leave --sync-bn out.`, 'BAD_OPTION');
  return model;
}

/**
 * Where each layer's parameters (or, `buffers`, its running statistics) sit in the model's flat
 * buffer of them: layer i's are [offsets[i], offsets[i + 1]).
 */
export function layerOffsets(layers: readonly Layer[], of: 'params' | 'buffers' = 'params'): number[] {
  const offsets = [0];
  for (const layer of layers) offsets.push(offsets[offsets.length - 1] + (layer[of] ?? []).reduce((sum, spec) => sum + sizeOf(spec.shape), 0));
  return offsets;
}

export class ChainStage {
  /** This stage's parameters, named as in the whole model. */
  readonly layout: Layout;
  /** Where they sit in the whole model's flat buffer: [start, end). */
  readonly paramRange: [number, number];
  /** Where its layers' running statistics (batch norm) sit in the model's buffers: [start, end). */
  readonly bufferRange: [number, number];
  readonly inputWidth: number; // floats per sample in
  readonly outputWidth: number; // floats per sample out
  private readonly chain: LayerChain;
  private readonly layers: readonly Layer[];
  /** With --recompute: the stage's own step by a schedule, its buffers in an arena of its own. */
  private readonly recompute: Recompute | null = null;
  readonly activations: Omit<ActivationReport, 'storeAllBytes'> | null = null;

  constructor(private readonly model: Sequential, first: number, end: number, maxBatch: number, memory?: { recompute: RecomputeSpec; budget?: number; seed: number }) {
    this.layers = model.layers.slice(first, end);
    this.chain = new LayerChain(this.layers, maxBatch);
    holdPrivately(this.chain.gradients); // its layers' own buffers are the replica model's arena
    this.layout = new Layout(this.layers.flatMap((layer) => layer.params));
    const offsets = layerOffsets(model.layers);
    this.paramRange = [offsets[first], offsets[end]];
    const bufferOffsets = layerOffsets(model.layers, 'buffers');
    this.bufferRange = [bufferOffsets[first], bufferOffsets[end]];
    this.inputWidth = first === 0 ? sizeOf(model.inputShape) : sizeOf(model.layers[first - 1].outputShape);
    this.outputWidth = sizeOf(this.layers[this.layers.length - 1].outputShape);
    if (memory) {
      // the stage's layers move to an arena of their own, planned for the stage's schedule
      const units = unitsOf(this.layers, [this.inputWidth], maxBatch);
      const scratch = scratchOf(this.layers);
      const measure = () => measureUnits(units, scratch, maxBatch, this.layout, (params) => this.init(params, new Random(memory.seed)), memory.seed);
      const planned = planUnits(units, scratch, memory.recompute, memory.budget, maxBatch, `stage layers ${first}–${end - 1} at micro-batch ${maxBatch}`, measure);
      this.recompute = planned.recompute;
      this.activations = planned.report;
    }
  }

  /** The activation memory this replica of the stage holds: its arena with --recompute, else its layers' buffers and the gradients between them. */
  get activationBytes(): number {
    return this.activations?.bytes ?? heldBytesOf(this.layers) + this.chain.gradients.reduce((sum, held) => sum + aligned(held.bytes), 0);
  }

  /** The running statistics this stage's layers update: the model's buffers (the replicas of one stage share one copy, updated micro-batch after micro-batch as one model would). */
  get buffers(): Float32Array | undefined {
    return this.model.buffers;
  }

  /** Makes this replica's layers keep their running statistics in `other`'s buffers. */
  shareBuffers(other: ChainStage): void {
    if (!other.model.buffers) return;
    const views = new Layout(other.model.layers.flatMap((layer) => layer.buffers ?? [])).views(other.model.buffers);
    for (const layer of this.layers) layer.useBuffers?.(views);
  }

  init(params: Float32Array, random: Random): void {
    const p = this.layout.views(params);
    for (const layer of this.layers) layer.init(p, random);
  }

  /** `step` seeds what is random while training (dropout): one number per micro-batch. */
  forward(params: Float32Array, x: Float32Array, batch: number, training: boolean, step: number): Float32Array {
    for (const layer of this.layers) layer.setMode?.(training, step);
    if (this.recompute) {
      const p = this.layout.views(params);
      // training: the schedule's forward part (x must stay until the backward); evaluation: a pass that keeps nothing
      return training ? this.recompute.forwardPhase(p, x, batch, step) : this.recompute.forward(p, x, batch);
    }
    return this.chain.forward(this.layout.views(params), x, batch);
  }

  /** The last stage: the batch's mean loss of its outputs; the gradient with respect to them is in `outputGradient`. */
  loss(outputs: Float32Array, batch: Batch): number {
    return this.model.outputLoss(outputs, batch, true);
  }

  get outputGradient(): Float32Array {
    return this.model.gradLogits;
  }

  /** The last stage: loss and figure of merit of its outputs. */
  score(outputs: Float32Array, batch: Batch): Evaluation {
    return this.model.score(outputs, batch);
  }

  /** Parameter gradients into grad (overwritten, or with `accumulate` added) and, unless gradX is null, the gradient of the stage's input. */
  backward(params: Float32Array, grad: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number, accumulate = false): void {
    if (this.recompute) this.recompute.backwardPhase(this.layout.views(params), this.layout.views(grad), gradOut, gradX, batch, accumulate);
    else this.chain.backward(this.layout.views(params), this.layout.views(grad), gradOut, gradX, batch, accumulate);
  }
}
