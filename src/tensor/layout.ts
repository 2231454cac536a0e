// A model declares its parameters as an ordered list of named shapes. The engine keeps all of
// them in ONE flat Float32Array (and gradients in another of the same layout), so optimisers,
// collectives, compression and checkpoints each work on a single buffer. (As llm.c does.)

import { shapeMismatch } from '../errors.js';

export interface TensorSpec {
  name: string;
  shape: readonly number[];
}

export interface TensorSlot extends TensorSpec {
  offset: number;
  size: number;
}

export class Layout {
  readonly slots: readonly TensorSlot[];
  readonly size: number;
  private readonly byName = new Map<string, TensorSlot>();
  private readonly viewCache = new WeakMap<Float32Array, Record<string, Float32Array>>();

  constructor(specs: readonly TensorSpec[]) {
    let offset = 0;
    const slots: TensorSlot[] = [];
    for (const spec of specs) {
      if (this.byName.has(spec.name)) throw shapeMismatch('layout', `unique tensor names`, `'${spec.name}' twice`);
      if (spec.shape.some((d) => !Number.isInteger(d) || d <= 0)) {
        throw shapeMismatch(`layout tensor '${spec.name}'`, 'positive integer dimensions', `[${spec.shape.join(', ')}]`);
      }
      const size = spec.shape.reduce((a, b) => a * b, 1);
      const slot = { name: spec.name, shape: [...spec.shape], offset, size };
      slots.push(slot);
      this.byName.set(spec.name, slot);
      offset += size;
    }
    this.slots = slots;
    this.size = offset;
  }

  slot(name: string): TensorSlot {
    const slot = this.byName.get(name);
    if (!slot) throw shapeMismatch('layout', `a tensor named one of ${[...this.byName.keys()].join(', ')}`, `'${name}'`);
    return slot;
  }

  /** A buffer for this layout; on a SharedArrayBuffer when threads must see the same memory. */
  allocate(shared = false): Float32Array {
    const bytes = this.size * Float32Array.BYTES_PER_ELEMENT;
    return new Float32Array(shared ? new SharedArrayBuffer(bytes) : new ArrayBuffer(bytes));
  }

  /** Named views into a flat buffer of this layout; made once per buffer and cached. */
  views(buffer: Float32Array): Record<string, Float32Array> {
    let views = this.viewCache.get(buffer);
    if (views) return views;
    this.check(buffer, 'views');
    views = {};
    for (const slot of this.slots) views[slot.name] = buffer.subarray(slot.offset, slot.offset + slot.size);
    this.viewCache.set(buffer, views);
    return views;
  }

  check(buffer: Float32Array, where: string): void {
    if (buffer.length !== this.size) throw shapeMismatch(where, `a flat buffer of ${this.size} floats`, `${buffer.length}`);
  }

  /** A string that changes whenever names, shapes or order change: checkpoints carry it. */
  fingerprint(): string {
    return this.slots.map((s) => `${s.name}[${s.shape.join('x')}]`).join(';');
  }
}
