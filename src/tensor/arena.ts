// Activation memory. A layer does not allocate what it writes while training (its output, what
// it keeps for its backward pass, its scratch, the gradients it passes on); it declares each as a
// Held of a fixed size, and the model that holds the layer binds every Held to a place in ONE
// arena: a single ArrayBuffer per model, allocated once. Where each Held lives is planned before
// the first step: the step's allocations and releases are replayed to learn each buffer's
// lifetime, and the buffers are placed so that none overlaps one alive at the same time. The
// arena's size is then the step's real activation memory — what `--recompute` schedules trade
// against time, and what `--memory-budget` bounds.

/** kept: written in a forward pass, read by the next layer or by the backward pass. scratch: used within one call. gradient: within a backward pass. */
export type HeldKind = 'kept' | 'scratch' | 'gradient';

const EMPTY_F32 = new Float32Array(0);
const EMPTY_I32 = new Int32Array(0);

/** Buffers start at multiples of 64 bytes (a cache line; what the SIMD kernels like). */
export const ALIGN = 64;
export const aligned = (bytes: number) => Math.ceil(bytes / ALIGN) * ALIGN;

export class Held {
  /** The memory it is bound to now (empty until bound). */
  f32: Float32Array = EMPTY_F32;
  /** The same memory as 32-bit integers (max pooling's argmax). */
  i32: Int32Array = EMPTY_I32;

  constructor(readonly floats: number, readonly kind: HeldKind) {}

  get bytes(): number {
    return this.floats * 4;
  }

  bindTo(binding: Binding): void {
    this.f32 = binding.f32;
    this.i32 = binding.i32;
  }
}

/** A place in an arena for one Held, made once so that moving a Held there allocates nothing. */
export interface Binding {
  readonly f32: Float32Array;
  readonly i32: Int32Array;
}

export function bindingAt(buffer: ArrayBuffer, byteOffset: number, floats: number): Binding {
  return { f32: new Float32Array(buffer, byteOffset, floats), i32: new Int32Array(buffer, byteOffset, floats) };
}

/** Binds each Held not bound yet to memory of its own: for layers used outside a model's arena (a tensor-parallel rank's slices, tests). */
export function holdPrivately(helds: Iterable<Held>): void {
  for (const held of helds) {
    if (held.f32.length === held.floats && held.floats > 0) continue;
    held.bindTo(bindingAt(new ArrayBuffer(aligned(held.bytes)), 0, held.floats));
  }
}

/** A buffer's life in a planned step: its size, and the events [from, to) between which it is held. */
export interface Lifetime {
  bytes: number;
  from: number;
  to: number;
}

/**
 * Places buffers whose lifetimes are known in advance (as TensorFlow Lite's planner does, greedy
 * by size): the largest first, each at the lowest offset where it overlaps no placed buffer that
 * is alive at the same time. Returns their offsets and the arena's size; the size is never below
 * the most bytes alive at once, and on the chains of a training step it is usually that.
 */
export function placeBuffers(lifetimes: readonly Lifetime[]): { offsets: number[]; size: number } {
  const order = lifetimes.map((_, i) => i).sort((a, b) => lifetimes[b].bytes - lifetimes[a].bytes || lifetimes[a].from - lifetimes[b].from);
  const offsets = new Array<number>(lifetimes.length).fill(-1);
  const placed: number[] = [];
  let size = 0;
  for (const i of order) {
    const me = lifetimes[i];
    const bytes = aligned(me.bytes);
    const clashes = placed
      .filter((j) => lifetimes[j].from < me.to && me.from < lifetimes[j].to)
      .sort((a, b) => offsets[a] - offsets[b]);
    let offset = 0;
    for (const j of clashes) {
      if (offsets[j] - offset >= bytes) break;
      offset = Math.max(offset, offsets[j] + aligned(lifetimes[j].bytes));
    }
    offsets[i] = offset;
    placed.push(i);
    size = Math.max(size, offset + bytes);
  }
  return { offsets, size };
}
