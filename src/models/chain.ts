// Layers run one after another: the forward pass keeps the input each layer saw, the backward
// pass runs them in reverse, each writing its parameter gradients and the gradient of its
// input. Sequential models and the branches of a residual block are chains.

import { kernel } from '../kernels/registry.js';
import { Held } from '../tensor/arena.js';
import { Layout } from '../tensor/layout.js';
import type { Layer, Views } from './layers.js';

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export class LayerChain {
  private readonly inputs: Float32Array[]; // the input each layer saw in the last forward pass
  private readonly inputGrads: (Held | null)[]; // gradient w.r.t. each layer's input (the first's is the caller's)
  /** The activation memory of its layers and of the gradients between them. */
  readonly held: readonly Held[];

  constructor(readonly layers: readonly Layer[], maxBatch: number) {
    this.inputs = new Array(layers.length);
    this.inputGrads = layers.map((_, i) => (i === 0 ? null : new Held(maxBatch * sizeOf(layers[i - 1].outputShape), 'gradient')));
    this.held = [...layers.flatMap((layer) => layer.held ?? []), ...this.inputGrads.filter((held) => held !== null)];
  }

  /** The gradients between its layers only. */
  get gradients(): Held[] {
    return this.inputGrads.filter((held) => held !== null);
  }

  forward(p: Views, x: Float32Array, batch: number): Float32Array {
    let activation = x;
    for (let i = 0; i < this.layers.length; i++) {
      this.inputs[i] = activation;
      activation = this.layers[i].forward(p, activation, batch);
    }
    return activation;
  }

  async forwardAsync(p: Views, x: Float32Array, batch: number): Promise<Float32Array> {
    let activation = x;
    for (let i = 0; i < this.layers.length; i++) {
      const layer = this.layers[i];
      this.inputs[i] = activation;
      activation = layer.synchronised ? await layer.forwardAsync!(p, activation, batch) : layer.forward(p, activation, batch);
    }
    return activation;
  }

  async backwardAsync(p: Views, g: Views, gradOut: Float32Array, gradX: Float32Array | null, batch: number): Promise<void> {
    let gradient = gradOut;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const layer = this.layers[i];
      const target = i === 0 ? gradX : this.inputGrads[i]!.f32;
      if (layer.synchronised) await layer.backwardAsync!(p, g, this.inputs[i], gradient, target, batch);
      else layer.backward(p, g, this.inputs[i], gradient, target, batch);
      if (target) gradient = target;
    }
  }

  /** Whether a layer reduces across ranks: then the chain runs through forwardAsync and backwardAsync. */
  get synchronised(): boolean {
    return this.layers.some((layer) => layer.synchronised);
  }

  /**
   * From the gradient of the chain's output; writes the gradient of its input into gradX unless
   * null. The parameter gradients overwrite g, or with `accumulate` are added to it: a layer that
   * cannot add (Layer.accumulates) writes its own into scratch, which is then added.
   */
  backward(p: Views, g: Views, gradOut: Float32Array, gradX: Float32Array | null, batch: number, accumulate = false): void {
    let gradient = gradOut;
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const layer = this.layers[i];
      const target = i === 0 ? gradX : this.inputGrads[i]!.f32;
      if (accumulate && layer.params.length > 0 && !layer.accumulates) {
        const own = this.scratchOf(i);
        layer.backward(p, own, this.inputs[i], gradient, target, batch);
        const addInto = kernel('addInto'); // the backend in use now (a test may switch it)
        for (const { name } of layer.params) addInto(g[name], 0, own[name], 0, own[name].length);
      } else layer.backward(p, g, this.inputs[i], gradient, target, batch, accumulate);
      if (target) gradient = target;
    }
  }

  /** Where layer i writes its parameter gradients before they are added (made on first use, kept). */
  private scratchOf(i: number): Views {
    if (!this.scratch[i]) {
      const layout = new Layout(this.layers[i].params);
      this.scratch[i] = layout.views(new Float32Array(layout.size));
    }
    return this.scratch[i];
  }

  private readonly scratch: (Views | undefined)[] = [];
}
