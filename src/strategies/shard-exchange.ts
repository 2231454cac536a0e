// The all-reduce's exchange by shares, with or without a dense compression hook. Rank r owns
// share r of the gradient (the communicator's partition, bufferShare).
//
// 1. Reduce-scatter. No hook, or the identity: the communicator's own reduce-scatter, which sums
//    float32 in transit. A lossy dense hook (fp16, bf16, qsgd, sign): each rank encodes the shares
//    it does not own, share q goes to rank q only (two ranks: one all-gather swaps their shares, both
//    directions at once; more: one gather rooted at each rank, one after another), and the owner
//    adds the decoded shares, in rank order, to its own unencoded values (they never cross a wire)
//    and scales by 1/P. Each rank sends (P − 1)/P of one encoded gradient, not P − 1 whole ones.
// 2. All-gather, of whichever is smaller per value: the updated parameters in their storage
//    precision (each rank updates its own share only, as ZeRO stage 1 does), or the mean gradient
//    share encoded again by the hook (every rank decodes every share, its own too, so all hold the
//    same mean and apply the same update to the whole model). At a tie the parameters: the update
//    is then split P ways. So the identity hook runs exactly the plain all-reduce, fp16 with
//    float32 parameters gathers gradients (2 bytes a value), fp16 with --param-precision bf16
//    gathers parameters (2 bytes, and a sharded update).

import { bufferShare, type Communicator } from '../comm/communicator.js';
import type { Hook, StepInfo } from '../compress/hook.js';
import { scale } from './exchange.js';

export class ShardExchange {
  /** Whether phase 2 all-gathers the parameters (each rank updates its own share) rather than the mean gradient. */
  readonly gathersParameters: boolean;
  /** This rank's share of the gradient and the parameters, [first, end). */
  readonly share: [number, number];
  private readonly slot: number; // floats an encoded share takes, the largest share's
  private readonly outgoing: Float32Array; // phase 1: the encoded share for rank q in slot q; phase 2: this rank's in slot 0
  private readonly incoming: Float32Array; // what the gathers deliver, slot by slot
  private readonly scalars = new Float32Array(2); // [loss, stop], averaged
  private readonly encoded: boolean; // a lossy hook: shares travel encoded

  /** `parameterBytes`: bytes a parameter takes in its storage precision (4 for float32). */
  constructor(private readonly comm: Communicator, private readonly hook: Hook | null, private readonly size: number, parameterBytes: number) {
    this.share = bufferShare(size, comm.rank, comm.size);
    this.encoded = hook !== null && !hook.exact;
    const largest = Math.ceil(size / comm.size);
    const gradientBytes = this.encoded ? hook!.maxBytes(largest) / largest : 4;
    this.gathersParameters = parameterBytes <= gradientBytes;
    this.slot = this.encoded ? Math.ceil(hook!.maxBytes(largest) / 4) : 0;
    this.outgoing = new Float32Array(this.slot * comm.size);
    this.incoming = new Float32Array(this.slot * comm.size);
    if (this.encoded && !hook!.encodeShare) throw new Error(`the ${hook!.name} hook cannot encode by share`);
  }

  /** Phase 1: grad[first, end) becomes the mean of every rank's gradient there; returns the mean loss and whether any rank asked to stop. */
  async reduceScatterMean(grad: Float32Array, loss: number, stop: boolean, step: StepInfo): Promise<{ loss: number; stop: boolean }> {
    this.scalars[0] = loss;
    this.scalars[1] = stop ? 1 : 0;
    if (!this.encoded) await this.comm.reduceScatter(grad, 'mean');
    else {
      const { rank, size: P } = this.comm;
      const slot = (buffer: Float32Array, q: number) => buffer.subarray(q * this.slot, (q + 1) * this.slot);
      if (P === 2) {
        // two ranks: each has one share for the other, and one all-gather swaps them, both ways at once
        this.encodeShare(grad, 1 - rank, slot(this.outgoing, 0), step);
        await this.comm.allgather(slot(this.outgoing, 0), this.incoming.subarray(0, 2 * this.slot));
      } else {
        // share q to rank q alone: one gather rooted at each rank (each moves one encoded share a rank;
        // a communicator all-to-all would run them at once)
        for (let q = 0; q < P; q++) if (q !== rank) this.encodeShare(grad, q, slot(this.outgoing, q), step);
        for (let q = 0; q < P; q++) await this.comm.gather(slot(this.outgoing, q), q === rank ? this.incoming : null, q);
      }
      const mine = grad.subarray(...this.share);
      for (let r = 0; r < P; r++) if (r !== rank) this.decodeInto(this.incoming.subarray(r * this.slot, (r + 1) * this.slot), mine, true);
      scale(mine, P);
    }
    await this.comm.allreduce(this.scalars, 'mean');
    return { loss: this.scalars[0], stop: this.scalars[1] > 0 };
  }

  /** Phase 2 when gradients are gathered: every rank ends with the same mean gradient, each share as its owner encoded it. */
  async allgatherMean(grad: Float32Array, step: StepInfo): Promise<void> {
    const { size: P } = this.comm;
    if (!this.encoded) {
      await this.comm.allgatherShares(grad);
      return;
    }
    const mine = this.outgoing.subarray(0, this.slot);
    this.encodeShare(grad, this.comm.rank, mine, step);
    await this.comm.allgather(mine, this.incoming);
    for (let q = 0; q < P; q++) this.decodeInto(this.incoming.subarray(q * this.slot, (q + 1) * this.slot), grad.subarray(...bufferShare(this.size, q, P)), false);
  }

  private encodeShare(values: Float32Array, q: number, slot: Float32Array, step: StepInfo): void {
    const [start, end] = bufferShare(this.size, q, this.comm.size);
    this.hook!.encodeShare!(values, start, end, new Uint8Array(slot.buffer, slot.byteOffset, slot.byteLength), step);
  }

  private decodeInto(slot: Float32Array, target: Float32Array, accumulate: boolean): void {
    // a dense hook's payload for n values is exactly maxBytes(n) long
    this.hook!.decode(new Uint8Array(slot.buffer, slot.byteOffset, slot.byteLength), this.hook!.maxBytes(target.length), target, accumulate);
  }
}
