// The layers the built-in models are made of. Each owns the buffers it writes, sized once for
// the largest batch, so a training step allocates nothing.

import type { KernelSet, ConvGeometry, PoolGeometry } from '../kernels/types.js';
import { convGeometry, poolGeometry } from '../kernels/types.js';
import { Held } from '../tensor/arena.js';
import type { TensorSpec } from '../tensor/layout.js';
import type { Random } from '../tensor/random.js';

export type Views = Record<string, Float32Array>;

export interface Layer {
  readonly params: TensorSpec[];
  readonly outputShape: readonly number[]; // per sample
  /**
   * The channel blocks of the image this layer reads and writes (kernels/types.ts: 1, plain
   * [C, H, W], when absent). A layer that can read a blocked image says so by taking the block
   * it is built with (LayerContext.inputBlock); the model reorders the image for one that cannot.
   */
  readonly inputBlock?: number;
  readonly outputBlock?: number;
  forward(p: Views, x: Float32Array, batch: number): Float32Array;
  /** Its output is its input's memory (ReLU writes over it; Flatten passes it on): whoever else reads that input needs a copy. */
  readonly inPlace?: boolean;
  /** Running it twice on its own output changes nothing (ReLU, Flatten): a recomputed pass may run it again on the batch it wrote over. */
  readonly idempotent?: boolean;
  /**
   * Layers that act differently when training (dropout) are told before each pass; `step` seeds
   * what is random in it. `replay`: the pass repeats one already run this step (recomputed for the
   * backward pass), so it must change no state (batch norm's running statistics).
   */
  setMode?(training: boolean, step: number, replay?: boolean): void;
  /** State that is not trained by gradients (batch norm's running statistics): named shapes, and where the model keeps them. */
  readonly buffers?: TensorSpec[];
  useBuffers?(views: Views): void;
  /**
   * Writes this layer's parameter gradients into g and, unless gradX is null, the input gradient.
   * A layer that says it `accumulates` adds them to g instead when `accumulate` is set (a pipeline
   * stage summing its micro-batches' gradients in one array); a chain runs any other layer with
   * parameters into a scratch copy and adds that (LayerChain.backward).
   */
  backward(p: Views, g: Views, x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number, accumulate?: boolean): void;
  readonly accumulates?: boolean;
  /**
   * Layers that reduce across ranks while training (batch norm with --sync-bn, and blocks holding
   * one): the passes, awaited. A model with such a layer trains through lossAndGradAsync.
   */
  readonly synchronised?: boolean;
  /**
   * The activation memory it writes (tensor/arena.ts): its output, what it keeps for its backward
   * pass, its scratch, the gradients it passes on inside it. The model binds them from its arena;
   * a layer without them keeps memory of its own, which the arena neither counts nor saves.
   */
  readonly held?: readonly Held[];
  /** The Held its forward pass returns (absent when it works in place). */
  readonly output?: Held;
  forwardAsync?(p: Views, x: Float32Array, batch: number): Promise<Float32Array>;
  backwardAsync?(p: Views, g: Views, x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): Promise<void>;
  init(p: Views, random: Random): void;
}

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

function initUniform(w: Float32Array, b: Float32Array, fanIn: number, random: Random): void {
  const bound = 1 / Math.sqrt(fanIn);
  random.fillUniform(w, -bound, bound);
  random.fillUniform(b, -bound, bound);
}

export class Dense implements Layer {
  readonly params: TensorSpec[];
  readonly outputShape: number[];
  readonly output: Held;
  readonly held: Held[];
  private readonly weight: string;
  private readonly bias: string;

  constructor(private readonly k: KernelSet, readonly name: string, readonly inputs: number,
    readonly outputs: number, maxBatch: number) {
    this.weight = `${name}.weight`;
    this.bias = `${name}.bias`;
    this.params = [
      { name: this.weight, shape: [outputs, inputs] }, // [out, in]
      { name: this.bias, shape: [outputs] },
    ];
    this.outputShape = [outputs];
    this.output = new Held(maxBatch * outputs, 'kept');
    this.held = [this.output];
  }

  forward(p: Views, x: Float32Array, batch: number): Float32Array {
    const out = this.output.f32;
    this.k.denseForward(x, p[this.weight], p[this.bias], out, batch, this.inputs, this.outputs);
    return out;
  }

  readonly accumulates = true;

  backward(p: Views, g: Views, x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number, accumulate = false): void {
    this.k.denseBackward(x, p[this.weight], gradOut, g[this.weight], g[this.bias], gradX,
      batch, this.inputs, this.outputs, accumulate);
  }

  init(p: Views, random: Random): void {
    initUniform(p[this.weight], p[this.bias], this.inputs, random);
  }
}

/** ReLU in place: its output overwrites its input, and the backward pass masks in place too. */
export class Relu implements Layer {
  readonly params: TensorSpec[] = [];
  readonly inPlace = true;
  readonly idempotent = true;
  readonly outputBlock: number;
  // element by element: any layout
  constructor(private readonly k: KernelSet, readonly outputShape: readonly number[], readonly inputBlock = 1) {
    this.outputBlock = inputBlock;
  }

  forward(_p: Views, x: Float32Array, batch: number): Float32Array {
    this.k.reluForward(x, x, batch * sizeOf(this.outputShape));
    return x;
  }

  backward(_p: Views, _g: Views, y: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): void {
    if (gradX) this.k.reluBackward(y, gradOut, gradX, batch * sizeOf(this.outputShape));
  }

  init(): void {}
}

export class Conv2d implements Layer {
  readonly params: TensorSpec[];
  readonly outputShape: number[];
  readonly geometry: ConvGeometry;
  readonly output: Held;
  private readonly columns: Held;
  readonly held: Held[];
  private readonly weight: string;
  private readonly bias: string;
  // without a bias (before batch norm, which has its own): zeros, and a gradient nobody reads
  private readonly zeroBias: Float32Array | null;
  private readonly unusedGrad: Float32Array | null;

  /** Reads its input in `inputBlock` and writes its output in `outputBlock` (kernels/types.ts; 1: plain). */
  constructor(private readonly k: KernelSet, name: string, inputShape: readonly number[],
    filters: number, kernelSize: number, pad: number, maxBatch: number, stride = 1, withBias = true, readonly inputBlock = 1, readonly outputBlock = 1) {
    this.weight = `${name}.weight`;
    this.bias = `${name}.bias`;
    const [channels, height, width] = inputShape;
    this.geometry = convGeometry(channels, height, width, filters, kernelSize, pad, stride, inputBlock, this.outputBlock);
    const { outHeight, outWidth } = this.geometry;
    this.params = [
      { name: this.weight, shape: [filters, channels, kernelSize, kernelSize] }, // [F, C, K, K]
      ...(withBias ? [{ name: this.bias, shape: [filters] }] : []),
    ];
    this.zeroBias = withBias ? null : new Float32Array(filters);
    this.unusedGrad = withBias ? null : new Float32Array(filters);
    this.outputShape = [filters, outHeight, outWidth];
    this.output = new Held(maxBatch * sizeOf(this.outputShape), 'kept');
    this.columns = new Held(channels * kernelSize * kernelSize * outHeight * outWidth, 'scratch');
    this.held = [this.output, this.columns];
  }

  forward(p: Views, x: Float32Array, batch: number): Float32Array {
    const out = this.output.f32;
    this.k.convForward(x, p[this.weight], this.zeroBias ?? p[this.bias], out, batch, this.geometry, this.columns.f32);
    return out;
  }

  backward(p: Views, g: Views, x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): void {
    this.k.convBackward(x, p[this.weight], gradOut, g[this.weight], this.unusedGrad ?? g[this.bias], gradX,
      batch, this.geometry, this.columns.f32);
  }

  init(p: Views, random: Random): void {
    const { channels, kernelSize } = this.geometry;
    initUniform(p[this.weight], p[this.bias] ?? new Float32Array(0), channels * kernelSize * kernelSize, random);
  }
}

export class MaxPool2d implements Layer {
  readonly params: TensorSpec[] = [];
  readonly outputShape: number[];
  private readonly geometry: PoolGeometry;
  readonly output: Held;
  private readonly argmax: Held; // the input index each output came from, as 32-bit integers
  readonly held: Held[];
  private readonly inputSize: number;

  constructor(private readonly k: KernelSet, inputShape: readonly number[], size: number, maxBatch: number) {
    const [channels, height, width] = inputShape;
    this.geometry = poolGeometry(channels, height, width, size);
    this.outputShape = [channels, this.geometry.outHeight, this.geometry.outWidth];
    this.inputSize = sizeOf(inputShape);
    this.output = new Held(maxBatch * sizeOf(this.outputShape), 'kept');
    this.argmax = new Held(this.output.floats, 'kept');
    this.held = [this.output, this.argmax];
  }

  forward(_p: Views, x: Float32Array, batch: number): Float32Array {
    const out = this.output.f32;
    this.k.maxPoolForward(x, out, this.argmax.i32, batch, this.geometry);
    return out;
  }

  backward(_p: Views, _g: Views, _x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): void {
    if (gradX) this.k.maxPoolBackward(gradOut, this.argmax.i32, gradX, batch * sizeOf(this.outputShape), batch * this.inputSize);
  }

  init(): void {}
}

/** Flattens each sample to one vector: the data stays where it is; the gradient is copied through. */
export class Flatten implements Layer {
  readonly params: TensorSpec[] = [];
  // its output is its input: a ReLU after it would write over that input
  readonly inPlace = true;
  readonly idempotent = true;
  readonly outputShape: readonly number[];
  constructor(inputShape: readonly number[]) {
    this.outputShape = [sizeOf(inputShape)];
  }

  forward(_p: Views, x: Float32Array): Float32Array {
    return x;
  }

  backward(_p: Views, _g: Views, _x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): void {
    if (gradX) gradX.set(gradOut.subarray(0, batch * this.outputShape[0]));
  }

  init(): void {}
}

/** An image reblocked for the next layer (kernels/types.ts): inserted by the model where one layer writes a layout the next cannot read. */
export class Reorder implements Layer {
  readonly params: TensorSpec[] = [];
  readonly output: Held;
  readonly held: Held[];
  private readonly channels: number;
  private readonly plane: number;

  constructor(private readonly k: KernelSet, readonly outputShape: readonly number[], readonly inputBlock: number, readonly outputBlock: number, maxBatch: number) {
    this.channels = outputShape[0];
    this.plane = sizeOf(outputShape.slice(1));
    this.output = new Held(maxBatch * sizeOf(outputShape), 'kept');
    this.held = [this.output];
  }

  forward(_p: Views, x: Float32Array, batch: number): Float32Array {
    const out = this.output.f32;
    this.k.reorderChannels(x, out, batch, this.channels, this.plane, this.inputBlock, this.outputBlock);
    return out;
  }

  backward(_p: Views, _g: Views, _x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): void {
    if (gradX) this.k.reorderChannels(gradOut, gradX, batch, this.channels, this.plane, this.outputBlock, this.inputBlock);
  }

  init(): void {}
}
