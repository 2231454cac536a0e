// A timestep of a field may reach a server rank in pieces: the processes of a parallel
// simulation each send the cells they own (the N × M redistribution, M simulation processes to
// N server ranks). The pieces of one (run, field, timestep) are put together here until the
// cells the rank keeps are all there; a piece sent again (by a restarted run) overwrites its
// cells with the same values and is not counted twice.

export interface Pending {
  values: Float64Array;
  /** A byte per cell: 1 once a piece gave it. */
  got: Uint8Array;
  missing: number;
}

export class Pieces {
  private readonly pending = new Map<string, Pending>();

  /**
   * Cells [offset, offset + values.length) of the range [low, high) a rank keeps (the caller has
   * checked that they lie inside it). Returns the whole range's values once every cell has come,
   * else null.
   */
  add(key: string, low: number, high: number, offset: number, values: Float64Array): Float64Array | null {
    // the whole range at once, as a one-process simulation sends it: nothing to hold
    if (offset === low && values.length === high - low && !this.pending.has(key)) return values;
    let entry = this.pending.get(key);
    if (!entry) this.pending.set(key, (entry = { values: new Float64Array(high - low), got: new Uint8Array(high - low), missing: high - low }));
    const start = offset - low;
    for (let i = 0; i < values.length; i++) {
      if (!entry.got[start + i]) {
        entry.got[start + i] = 1;
        entry.missing--;
      }
      entry.values[start + i] = values[i];
    }
    if (entry.missing > 0) return null;
    this.pending.delete(key);
    return entry.values;
  }

  /** Timesteps some of whose cells have come and some not. */
  get size(): number {
    return this.pending.size;
  }

  /** What is held, for a checkpoint (v8's serializer writes it exactly). */
  snapshot(): Map<string, Pending> {
    return this.pending;
  }

  restore(pending: Map<string, Pending> | undefined): void {
    this.pending.clear();
    for (const [key, value] of pending ?? []) this.pending.set(key, value);
  }
}
