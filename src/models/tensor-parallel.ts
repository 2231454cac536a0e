// A chain of layers split Megatron-style across T ranks: each pair of dense layers with only
// element-wise activations between them becomes a column-parallel layer (rank r computes outputs
// [r·n/T, (r+1)·n/T) of the first, from the whole input) and a row-parallel one (rank r multiplies
// its slice of the activations by the matching columns of the second, giving a partial sum of
// the whole output). A block then costs one all-reduce in the forward pass (the partial sums)
// and one in the backward pass (the partial gradients of the block's input; none where the
// block starts the model). Every other layer runs whole on every rank, on the same activations.
//
// A rank's parameters are its own layout: the replicated layers' tensors, and its slices of the
// split ones, under the whole model's names; `toLocal` and `toWhole` map between the two.

import type { KernelSet } from '../kernels/types.js';
import { Layout } from '../tensor/layout.js';
import { ElementWise } from './activations.js';
import { Dense, Relu, type Layer } from './layers.js';
import { holdPrivately } from '../tensor/arena.js';
import type { Sequential } from './sequential.js';

export interface SplitBlock {
  /** Indices of the column-parallel and the row-parallel layer in the chain. */
  column: number;
  row: number;
}

/** The pairs of dense layers a chain splits into across T ranks (outputs of the first divisible by T, only element-wise layers between). */
export function splitBlocks(layers: readonly Layer[], ranks: number): SplitBlock[] {
  const blocks: SplitBlock[] = [];
  for (let i = 0; i < layers.length; i++) {
    if (!(layers[i] instanceof Dense) || (layers[i] as Dense).outputs % ranks !== 0) continue;
    let j = i + 1;
    while (j < layers.length && (layers[j] instanceof Relu || layers[j] instanceof ElementWise)) j++;
    if (j < layers.length && layers[j] instanceof Dense) {
      blocks.push({ column: i, row: j });
      i = j;
    }
  }
  return blocks;
}

export class TensorParallelChain {
  readonly layers: Layer[] = [];
  readonly layout: Layout;
  readonly blocks: SplitBlock[];
  /** For each layer: 'whole', 'column' or 'row'. */
  readonly roles: ('whole' | 'column' | 'row')[];
  private readonly whole: Layout;

  /**
   * `outOfPlace`: a ReLU right after a row-parallel layer writes its own output instead of over
   * the row's, so the row's output can be all-reduced between the two when they run as separate
   * units of a --recompute schedule (the same values: max(x, 0), its gradient where x > 0).
   */
  constructor(readonly model: Sequential, readonly ranks: number, readonly rank: number, kernels: KernelSet, outOfPlace = false) {
    this.whole = model.layout;
    this.blocks = splitBlocks(model.layers, ranks);
    this.roles = model.layers.map(() => 'whole');
    for (const block of this.blocks) {
      this.roles[block.column] = 'column';
      for (let k = block.column + 1; k < block.row; k++) this.roles[k] = 'column'; // the activations between act on the slice
      this.roles[block.row] = 'row';
    }
    model.layers.forEach((layer, i) => {
      const role = this.roles[i];
      if (role === 'whole') {
        const afterRow = i > 0 && this.roles[i - 1] === 'row';
        return this.layers.push(outOfPlace && afterRow && layer instanceof Relu ? new ElementWise('relu', layer.outputShape, model.maxBatch) : layer);
      }
      if (layer instanceof Dense) {
        const name = layer.name;
        const local = role === 'column' ? new Dense(kernels, name, layer.inputs, layer.outputs / ranks, model.maxBatch) : new Dense(kernels, name, layer.inputs / ranks, layer.outputs, model.maxBatch);
        return this.layers.push(local);
      }
      const width = [layer.outputShape.reduce((a, b) => a * b, 1) / ranks];
      this.layers.push(layer instanceof Relu ? new Relu(kernels, width) : new ElementWise((layer as ElementWise).kind, width, model.maxBatch));
    });
    this.layout = new Layout(this.layers.flatMap((layer) => layer.params));
    // the slices' buffers are this rank's own; the whole layers' are the model's arena
    holdPrivately(this.layers.filter((layer, i) => layer !== model.layers[i]).flatMap((layer) => layer.held ?? []));
  }

  /** The row-parallel layers' bias names: added once, by rank 0, before the partial sums are reduced. */
  get rowBiases(): string[] {
    return this.blocks.map((block) => `${(this.model.layers[block.row] as Dense).name}.bias`);
  }

  /**
   * Copies between the whole model's buffer and this rank's: replicated tensors whole, a
   * column-parallel layer's rows, a row-parallel weight's columns (its bias whole).
   */
  private map(whole: Float32Array, local: Float32Array, toLocal: boolean, rank: number): void {
    const w = this.whole.views(whole);
    const l = this.layout.views(local);
    this.model.layers.forEach((layer, i) => {
      const role = this.roles[i];
      for (const spec of layer.params) {
        const from = w[spec.name];
        const mine = l[spec.name];
        if (role === 'whole' || (role === 'row' && spec.shape.length === 1)) {
          if (toLocal) mine.set(from);
          else from.set(mine);
        } else if (role === 'column') {
          const part = from.subarray(rank * mine.length, (rank + 1) * mine.length); // rows: contiguous
          if (toLocal) mine.set(part);
          else part.set(mine);
        } else {
          const [rows, columns] = spec.shape;
          const width = columns / this.ranks;
          for (let q = 0; q < rows; q++) {
            const part = from.subarray(q * columns + rank * width, q * columns + (rank + 1) * width);
            const own = mine.subarray(q * width, (q + 1) * width);
            if (toLocal) own.set(part);
            else part.set(own);
          }
        }
      }
    });
  }

  toLocal(whole: Float32Array, local: Float32Array): void {
    this.map(whole, local, true, this.rank);
  }

  /** Writes rank `rank`'s parts (a buffer of this layout) into the whole buffer (replicated tensors too: every rank holds the same). */
  toWhole(local: Float32Array, whole: Float32Array, rank = this.rank): void {
    this.map(whole, local, false, rank);
  }
}
