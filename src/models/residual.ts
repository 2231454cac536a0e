// A residual block: two branches from one input joined by addition, out = body(x) + shortcut(x),
// where the shortcut is x itself or a projection (He et al. 2016). The backward pass sends the
// output's gradient down both branches and adds what they return for the input. The additions
// run in the kernels (copy, addInto): as JavaScript loops they cost an eighth of a ResNet step.

import { shapeMismatch } from '../errors.js';
import { LayerChain } from './chain.js';
import type { KernelSet } from '../kernels/types.js';
import type { Layer, Views } from './layers.js';
import { Held } from '../tensor/arena.js';
import type { TensorSpec } from '../tensor/layout.js';
import type { Random } from '../tensor/random.js';

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export class Residual implements Layer {
  readonly params: TensorSpec[];
  readonly outputShape: readonly number[];
  private readonly body: LayerChain;
  private readonly shortcut: LayerChain | null;
  private readonly inputSize: number;
  // a branch whose first layer works in place (ReLU) reads its own copy of the input
  private readonly bodyInput: Held | null;
  private readonly shortcutInput: Held | null;
  readonly output: Held;
  private readonly shortcutGrad: Held | null;
  readonly synchronised: boolean;
  /** Its own buffers, its branches' layers' and the gradients between them. */
  readonly held: Held[];

  /** The branches read the input in `inputBlock` and both write `outputBlock` (define.ts's residual() sees to it). */
  constructor(private readonly k: KernelSet, name: string, inputShape: readonly number[], body: Layer[], shortcut: Layer[] | null, maxBatch: number,
    readonly inputBlock = 1, readonly outputBlock = 1) {
    if (body.length === 0) throw shapeMismatch(`residual block ${name}`, 'at least one layer in its body', 'none');
    const bodyShape = body[body.length - 1].outputShape;
    const shortcutShape = shortcut && shortcut.length > 0 ? shortcut[shortcut.length - 1].outputShape : inputShape;
    if (sizeOf(bodyShape) !== sizeOf(shortcutShape) || bodyShape.join() !== shortcutShape.join()) {
      throw shapeMismatch(`residual block ${name}`, `a body whose output has the shortcut's shape [${shortcutShape}]`, `[${bodyShape}]; give the block a projection shortcut`);
    }
    this.params = [...body.flatMap((layer) => layer.params), ...(shortcut ?? []).flatMap((layer) => layer.params)];
    this.outputShape = bodyShape;
    this.inputSize = sizeOf(inputShape);
    this.body = new LayerChain(body, maxBatch);
    this.shortcut = shortcut && shortcut.length > 0 ? new LayerChain(shortcut, maxBatch) : null;
    this.bodyInput = body[0].inPlace ? new Held(maxBatch * this.inputSize, 'kept') : null;
    this.shortcutInput = shortcut && shortcut.length > 0 && shortcut[0].inPlace ? new Held(maxBatch * this.inputSize, 'kept') : null;
    this.output = new Held(maxBatch * sizeOf(bodyShape), 'kept');
    this.shortcutGrad = this.shortcut ? new Held(maxBatch * this.inputSize, 'gradient') : null;
    this.held = [this.output, ...[this.bodyInput, this.shortcutInput, this.shortcutGrad].filter((held) => held !== null), ...this.body.held, ...(this.shortcut?.held ?? [])];
    this.synchronised = this.body.synchronised || (this.shortcut?.synchronised ?? false);
  }

  forward(p: Views, x: Float32Array, batch: number): Float32Array {
    const y = this.body.forward(p, this.branchInput(this.bodyInput, x, batch), batch);
    const skip = this.shortcut ? this.shortcut.forward(p, this.branchInput(this.shortcutInput, x, batch), batch) : x;
    return this.join(y, skip, batch);
  }

  /** Its branches are chains, which accumulate whatever their layers. */
  readonly accumulates = true;

  backward(p: Views, g: Views, _x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number, accumulate = false): void {
    // the body writes the input's gradient, and the shortcut's (or the output's own) is added to it
    this.body.backward(p, g, gradOut, gradX, batch, accumulate);
    if (this.shortcut) this.shortcut.backward(p, g, gradOut, gradX ? this.shortcutGrad!.f32 : null, batch, accumulate);
    if (gradX) this.joinGradient(gradX, gradOut, batch);
  }

  /** The same passes with layers that reduce across ranks (batch norm with --sync-bn) awaited. */
  async forwardAsync(p: Views, x: Float32Array, batch: number): Promise<Float32Array> {
    const y = await this.body.forwardAsync(p, this.branchInput(this.bodyInput, x, batch), batch);
    const skip = this.shortcut ? await this.shortcut.forwardAsync(p, this.branchInput(this.shortcutInput, x, batch), batch) : x;
    return this.join(y, skip, batch);
  }

  async backwardAsync(p: Views, g: Views, _x: Float32Array, gradOut: Float32Array, gradX: Float32Array | null, batch: number): Promise<void> {
    await this.body.backwardAsync(p, g, gradOut, gradX, batch);
    if (this.shortcut) await this.shortcut.backwardAsync(p, g, gradOut, gradX ? this.shortcutGrad!.f32 : null, batch);
    if (gradX) this.joinGradient(gradX, gradOut, batch);
  }

  /** What a branch reads: the input itself, or its own copy when the branch's first layer works in place. */
  private branchInput(copy: Held | null, x: Float32Array, batch: number): Float32Array {
    if (!copy) return x;
    this.k.copy(copy.f32, 0, x, 0, batch * this.inputSize);
    return copy.f32;
  }

  /** out = body(x) + shortcut(x). */
  private join(y: Float32Array, skip: Float32Array, batch: number): Float32Array {
    const m = batch * sizeOf(this.outputShape);
    const out = this.output.f32;
    this.k.copy(out, 0, y, 0, m);
    this.k.addInto(out, 0, skip, 0, m);
    return out;
  }

  /** The input's gradient (the body's, already in gradX) plus the shortcut's, or the output's own through an identity. */
  private joinGradient(gradX: Float32Array, gradOut: Float32Array, batch: number): void {
    this.k.addInto(gradX, 0, this.shortcutGrad?.f32 ?? gradOut, 0, batch * this.inputSize);
  }

  get buffers(): TensorSpec[] {
    return [...this.body.layers, ...(this.shortcut?.layers ?? [])].flatMap((layer) => layer.buffers ?? []);
  }

  useBuffers(views: Views): void {
    for (const layer of [...this.body.layers, ...(this.shortcut?.layers ?? [])]) layer.useBuffers?.(views);
  }

  setMode(training: boolean, step: number, replay = false): void {
    for (const layer of this.body.layers) layer.setMode?.(training, step, replay);
    if (this.shortcut) for (const layer of this.shortcut.layers) layer.setMode?.(training, step, replay);
  }

  init(p: Views, random: Random): void {
    for (const layer of this.body.layers) layer.init(p, random);
    if (this.shortcut) for (const layer of this.shortcut.layers) layer.init(p, random);
  }
}
