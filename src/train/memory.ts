// What a rank holds for its model, declared by the strategy once its buffers exist: parameters,
// gradients, the optimiser's state and activations (the arena the model or stage planned), in
// bytes. With --memory-limit the rank refuses to start when they add up to more — before any
// step, in one line that says what to shard. A strategy that declares nothing holds a whole
// replica: the model's parameters, a gradient, the optimiser state it asked for and the model's
// activation arena.

import type { Communicator } from '../comm/communicator.js';
import { ConvergeError } from '../errors.js';
import { formatBytes } from '../models/checkpointing.js';
import type { MemoryParts } from '../strategies/strategy.js';

export type { MemoryParts };

export const totalOf = (parts: MemoryParts) => parts.parameters + parts.gradients + parts.optimizer + parts.activations;

export class MemoryLedger {
  private declared: MemoryParts | null = null;
  /** The state of the optimisers the strategy asked for (a default declaration counts it). */
  optimizerBytes = 0;

  constructor(private readonly rank: number, private readonly limit: number | undefined) {}

  /** The strategy's own figures (a model-parallel rank holds a share). */
  holds(parts: MemoryParts): void {
    this.declared = parts;
  }

  /** The parts: as declared, else a whole replica's. */
  parts(whole: { parameters: number; activations: number }): MemoryParts {
    return this.declared ?? { parameters: 4 * whole.parameters, gradients: 4 * whole.parameters, optimizer: this.optimizerBytes, activations: whole.activations };
  }

  /** Throws, in one line, when the parts add up to more than --memory-limit. */
  check(parts: MemoryParts, strategy: string, shardable: string[]): void {
    if (this.limit === undefined || totalOf(parts) <= this.limit) return;
    const what = `parameters ${formatBytes(parts.parameters)}, gradients ${formatBytes(parts.gradients)}, optimiser state ${formatBytes(parts.optimizer)}, activations ${formatBytes(parts.activations)}`;
    const others = shardable.filter((name) => name !== strategy);
    throw new ConvergeError(`--memory-limit ${formatBytes(this.limit)}: rank ${this.rank} of --strategy ${strategy} would hold ${formatBytes(totalOf(parts))} (${what}); shard the model across ranks (--strategy ${others.join(' or ')}), hold fewer activations (--memory-budget, --recompute), or give a larger limit.`, 'BAD_OPTION');
  }
}

const PARTS = ['parameters', 'gradients', 'optimizer', 'activations'] as const;
const MIB = 2 ** 20;
/** The floats a rank sends in gatherParts: a communicator must have room for them, whatever the model's size. */
export const PARTS_FLOATS = 2 * PARTS.length;

/**
 * Every rank's parts, at rank 0 (null elsewhere): a gather of four byte counts a rank, each sent
 * as whole MiB and the bytes left over so that a float32 carries it exactly (up to 16 TiB).
 */
export async function gatherParts(comm: Communicator, parts: MemoryParts): Promise<MemoryParts[] | null> {
  const mine = Float32Array.from(PARTS.flatMap((part) => [Math.floor(parts[part] / MIB), parts[part] % MIB]));
  const all = comm.rank === 0 ? new Float32Array(comm.size * mine.length) : null;
  await comm.gather(mine, all, 0);
  if (!all) return null;
  return Array.from({ length: comm.size }, (_, rank) => {
    const at = rank * mine.length;
    return Object.fromEntries(PARTS.map((part, k) => [part, all[at + 2 * k] * MIB + all[at + 2 * k + 1]])) as unknown as MemoryParts;
  });
}
