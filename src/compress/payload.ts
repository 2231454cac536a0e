// What the hooks' payloads share: little-endian bytes that start with a uint32 — the element
// count (dense hooks) or the number of (index, value) pairs (sparse hooks), checked on decode —
// and how a hook's state (arrays and a random stream) is saved and restored.

import { kernel } from '../kernels/registry.js';
import { Random } from '../tensor/random.js';
import { badOption } from '../errors.js';
import type { Hook, ValueCodec } from './hook.js';

export function view(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

export function damaged(hook: string, problem: string): Error {
  return badOption('payload', problem, `a payload the ${hook} hook wrote (a peer sent garbage, or the ranks use different --compress)`);
}

/** saveState/loadState over a hook's arrays and its random stream (whose 32-bit state travels as a float's bits). */
export function stateOf(arrays: Record<string, Float32Array>, random: Random | null): Pick<Hook, 'saveState' | 'loadState'> {
  const position = new Uint32Array(1);
  return {
    saveState() {
      if (!random) return { ...arrays };
      position[0] = random.getState();
      return { ...arrays, random: new Float32Array(position.buffer) };
    },
    loadState(state) {
      for (const [name, values] of Object.entries(arrays)) if (state[name]) values.set(state[name]);
      if (random && state.random) random.setState(new Uint32Array(state.random.buffer, state.random.byteOffset, 1)[0]);
    },
  };
}

/** Writes (index, value) pairs; shared by top-k and random-k. */
export function writePairs(out: Uint8Array, indices: Uint32Array, values: Float32Array, count: number, codec: ValueCodec): number {
  view(out).setUint32(0, count, true);
  kernel('pairsEncode')(indices, values, count, codec.code, out.subarray(4));
  return 4 + count * (4 + codec.bytes);
}

export function decodePairs(name: string, payload: Uint8Array, length: number, target: Float32Array, accumulate: boolean, codec: ValueCodec): void {
  const count = view(payload).getUint32(0, true);
  if (length !== 4 + count * (4 + codec.bytes)) throw damaged(name, `${length} bytes for ${count} pairs`);
  // (the kernel: TypedArray.fill is ≈ 8× slower than memset on the shared memory a gradient lives in)
  if (!accumulate) kernel('zero')(target, 0, target.length);
  const beyond = kernel('pairsAccumulate')(payload.subarray(4, length), count, codec.code, target);
  if (beyond >= 0) throw damaged(name, `index ${beyond} beyond ${target.length} values`);
}
