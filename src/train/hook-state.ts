// Resume support for what a rank keeps besides the parameters: the compression hook's state
// (error feedback, momentum, random stream) and the optimiser's, saved in checkpoints.

import type { Communicator } from '../comm/communicator.js';
import type { Hook } from '../compress/hook.js';
import type { Optimizer } from '../optim/optimizers.js';

/**
 * Every rank's compression-hook state, gathered at rank 0 as `hook.NAME.RANK` arrays for its
 * checkpoint. A collective: every rank calls it.
 */
export async function gatherHookState(comm: Communicator, hook: Hook | null | undefined): Promise<Record<string, Float32Array>> {
  const state = hook?.saveState?.();
  const out: Record<string, Float32Array> = {};
  if (!state) return out;
  for (const [name, values] of Object.entries(state)) {
    const n = values.length;
    const recv = comm.rank === 0 ? new Float32Array(n * comm.size) : null;
    await comm.gather(values, recv, 0);
    if (recv) for (let r = 0; r < comm.size; r++) out[`hook.${name}.${r}`] = recv.subarray(r * n, (r + 1) * n);
  }
  return out;
}

/**
 * Restores this rank's hook state from a checkpoint's arrays. On the same number of ranks each
 * takes its own; on another number, rank 0 takes the sum of every rank's error feedback and
 * momentum (what was owed is still owed: nothing is lost) and the others start empty.
 */
export function restoreHookState(hook: Hook | null | undefined, saved: Record<string, Float32Array>, rank: number, size: number): void {
  if (!hook?.loadState) return;
  const byName = new Map<string, Float32Array[]>();
  for (const [key, values] of Object.entries(saved)) {
    const match = /^hook\.(.+)\.(\d+)$/.exec(key);
    if (!match) continue;
    if (!byName.has(match[1])) byName.set(match[1], []);
    byName.get(match[1])![Number(match[2])] = values;
  }
  if (byName.size === 0) return;
  const ranks = Math.max(...[...byName.values()].map((list) => list.length));
  const state: Record<string, Float32Array> = {};
  for (const [name, list] of byName) {
    if (ranks === size) state[name] = list[rank];
    else if (rank === 0 && name !== 'random') {
      const sum = new Float32Array(list[0].length);
      for (const values of list) for (let i = 0; i < sum.length; i++) sum[i] += values[i];
      state[name] = sum;
    }
  }
  hook.loadState(state);
}

/**
 * Loads a saved optimiser state (its [start, end) where the optimiser keeps a range of the
 * parameters); a state the optimiser does not keep (momentum, when a hook applies it) is skipped.
 */
export function restoreOptimizer(optimizer: Optimizer, saved: Record<string, Float32Array>, steps: number, [start, end]: [number, number] = [0, optimizer.size]): void {
  for (const [name, values] of Object.entries(saved)) optimizer.state[name]?.set(values.subarray(start, end));
  optimizer.steps = steps;
}
