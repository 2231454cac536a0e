// The exchange of whole compressed payloads: for the sparsifying hooks (top-k, random-k) in the
// all-reduce, and for every hook in the parameter servers and local SGD (the all-reduce's dense
// hooks go by share: shard-exchange.ts). A hook's payloads differ in size between ranks and
// steps, so each exchange first shares [bytes, loss, stop] (three floats a rank), then the
// payloads, padded to the largest, as floats. Decoding sums them in rank order and scales by
// 1/P exactly as the all-reduce does, so the identity hook gives the same bits as no hook.
// bytesSent counts what really goes on the wire: each payload's encoded bytes (and the three
// floats), once per peer that receives them — not the padding shared memory copies.

import type { Communicator } from '../comm/communicator.js';
import type { Hook } from '../compress/hook.js';
import { kernel } from '../kernels/registry.js';

export class CompressedExchange {
  bytesSent = 0;
  /** At a gathering root: what the other ranks sent it. */
  bytesReceived = 0;
  private readonly send: Float32Array;
  private readonly bytes: Uint8Array;
  private readonly headers: Float32Array;
  private readonly header = new Float32Array(3);
  private readonly gathered: Float32Array;
  private readonly maxFloats: number;

  constructor(private readonly comm: Communicator, private readonly hook: Hook, size: number) {
    this.maxFloats = Math.ceil(hook.maxBytes(size) / 4);
    this.send = new Float32Array(this.maxFloats);
    this.bytes = new Uint8Array(this.send.buffer);
    this.headers = new Float32Array(3 * comm.size);
    this.gathered = new Float32Array(this.maxFloats * comm.size);
  }

  /** Every rank ends with the mean of all ranks' (compressed) gradients in `grad`; returns the mean loss and whether any rank asked to stop. */
  async allreduceMean(grad: Float32Array, loss: number, stop: boolean, epoch: number): Promise<{ loss: number; stop: boolean }> {
    const length = this.hook.encode(grad, this.bytes, { epoch });
    this.header[0] = length;
    this.header[1] = loss;
    this.header[2] = stop ? 1 : 0;
    await this.comm.allgather(this.header, this.headers);
    const floats = this.paddedFloats(this.comm.size);
    await this.comm.allgather(this.send.subarray(0, floats), this.gathered.subarray(0, floats * this.comm.size));
    let lossSum = 0;
    let anyStop = false;
    for (let r = 0; r < this.comm.size; r++) {
      this.hook.decode(new Uint8Array(this.gathered.buffer, 4 * r * floats, 4 * floats), this.headers[3 * r], grad, r > 0);
      lossSum += this.headers[3 * r + 1];
      anyStop ||= this.headers[3 * r + 2] > 0;
    }
    scale(grad, this.comm.size);
    this.bytesSent += (length + 12) * (this.comm.size - 1);
    return { loss: lossSum / this.comm.size, stop: anyStop };
  }

  /**
   * The parameter server's side: rank `root` receives every other rank's payload and writes the
   * mean of the decoded gradients (ranks other than root, in rank order) into `grad`.
   */
  async gatherMean(grad: Float32Array, loss: number, root: number, epoch: number): Promise<number> {
    const isRoot = this.comm.rank === root;
    const length = isRoot ? 0 : this.hook.encode(grad, this.bytes, { epoch });
    this.header[0] = length;
    this.header[1] = loss;
    this.header[2] = 0;
    await this.comm.allgather(this.header, this.headers);
    const floats = this.paddedFloats(this.comm.size);
    await this.comm.gather(this.send.subarray(0, floats), isRoot ? this.gathered.subarray(0, floats * this.comm.size) : null, root);
    if (!isRoot) {
      this.bytesSent += length + 12;
      return loss;
    }
    let lossSum = 0;
    let first = true;
    for (let r = 0; r < this.comm.size; r++) {
      if (r === root) continue;
      this.bytesReceived += this.headers[3 * r] + 12;
      this.hook.decode(new Uint8Array(this.gathered.buffer, 4 * r * floats, 4 * floats), this.headers[3 * r], grad, !first);
      lossSum += this.headers[3 * r + 1];
      first = false;
    }
    scale(grad, this.comm.size - 1);
    return lossSum / (this.comm.size - 1);
  }

  private paddedFloats(ranks: number): number {
    let longest = 0;
    for (let r = 0; r < ranks; r++) longest = Math.max(longest, this.headers[3 * r]);
    return Math.ceil(longest / 4);
  }
}

/** values × fround(1/count), one float32 rounding as the all-reduce's mean does */
export function scale(values: Float32Array, count: number): void {
  if (count === 1) return;
  // values × fround(1/count) in float32, in place (the kernel's scaled copy of one region)
  kernel('reduceStrided')(values, 0, values.length, 1, 0, values.length, values, 0, Math.fround(1 / count));
}
