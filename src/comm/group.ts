// Sub-groups of a communicator, split by colour as MPI_Comm_split does: the ranks that give the
// same colour form a group, ordered by key (then by their rank). A group is a Communicator of its
// own, built over the parent's point-to-point send/recv, so it works on every backend that has
// them: ring reduce-scatter and all-gather (each rank's traffic independent of the group's size),
// gather and broadcast to and from the root directly.
//
// A group's messages travel on the parent's channels between the same two ranks: point-to-point
// traffic of the parent between two members must not be in flight while the group runs a
// collective (a pipeline sends its activations and gradients within a step, and its stages'
// groups reduce after it).

import { ConvergeError } from '../errors.js';
import { bufferShare, checkPeer, type Communicator, type ReduceOp } from './communicator.js';

/**
 * The group of ranks that passed the same colour (a non-negative integer), ordered by key. A
 * collective of the parent: every rank calls it.
 */
export async function splitCommunicator(parent: Communicator, colour: number, key = parent.rank): Promise<Communicator> {
  if (!Number.isInteger(colour) || colour < 0) throw new ConvergeError(`rank ${parent.rank}: a group's colour must be an integer ≥ 0, got ${colour}.`, 'BAD_ARGUMENT');
  const all = new Float32Array(2 * parent.size);
  await parent.allgather(Float32Array.of(colour, key), all);
  const members: number[] = [];
  for (let r = 0; r < parent.size; r++) if (all[2 * r] === colour) members.push(r);
  members.sort((a, b) => all[2 * a + 1] - all[2 * b + 1] || a - b);
  return new GroupCommunicator(parent, members);
}

export class GroupCommunicator implements Communicator {
  readonly rank: number;
  readonly size: number;
  bytesSent = 0;
  private scratch = new Float32Array(0);

  constructor(private readonly parent: Communicator, private readonly members: readonly number[]) {
    this.rank = members.indexOf(parent.rank);
    if (this.rank < 0) throw new ConvergeError(`rank ${parent.rank} is not a member of the group ${members.join(',')}`, 'BAD_ARGUMENT');
    this.size = members.length;
  }

  get backend(): string {
    return `${this.parent.backend} group`;
  }

  allocate(length: number): Float32Array {
    return new Float32Array(length);
  }

  private async sendTo(buffer: Float32Array, rank: number): Promise<void> {
    await this.parent.send(buffer, this.members[rank]);
    this.bytesSent += 4 * buffer.length;
  }

  private async recvFrom(buffer: Float32Array, rank: number): Promise<void> {
    await this.parent.recv(buffer, this.members[rank]);
  }

  /** One step of a ring: send to the next rank, receive from the previous; odd ranks receive first, so a send that waits for its receive cannot close a cycle. */
  private async exchange(out: Float32Array, into: Float32Array): Promise<void> {
    const next = (this.rank + 1) % this.size;
    const previous = (this.rank + this.size - 1) % this.size;
    if (this.rank % 2 === 0) {
      await this.sendTo(out, next);
      await this.recvFrom(into, previous);
    } else {
      await this.recvFrom(into, previous);
      await this.sendTo(out, next);
    }
  }

  private temporary(length: number): Float32Array {
    if (this.scratch.length < length) this.scratch = new Float32Array(length);
    return this.scratch.subarray(0, length);
  }

  /** A rank's index counted around the ring. */
  private around(rank: number): number {
    return ((rank % this.size) + this.size) % this.size;
  }

  private chunk(buffer: Float32Array, index: number): Float32Array {
    const [start, end] = bufferShare(buffer.length, this.around(index), this.size);
    return buffer.subarray(start, end);
  }

  async reduceScatter(buffer: Float32Array, op: ReduceOp = 'sum'): Promise<[number, number]> {
    // step k: pass on chunk r − k − 1 (summed so far), add the previous rank's into chunk r − k − 2; chunk r is whole last
    for (let k = 0; k + 1 < this.size; k++) {
      const out = this.chunk(buffer, this.rank - k - 1);
      const target = this.chunk(buffer, this.rank - k - 2);
      const received = this.temporary(target.length);
      await this.exchange(out, received);
      for (let i = 0; i < target.length; i++) target[i] += received[i];
    }
    const share = bufferShare(buffer.length, this.rank, this.size);
    if (op === 'mean' && this.size > 1) for (let i = share[0]; i < share[1]; i++) buffer[i] *= 1 / this.size;
    return share;
  }

  async allgatherShares(buffer: Float32Array): Promise<void> {
    // step k: pass on chunk r − k, receive chunk r − k − 1
    for (let k = 0; k + 1 < this.size; k++) {
      const target = this.chunk(buffer, this.rank - k - 1);
      const received = this.temporary(target.length);
      await this.exchange(this.chunk(buffer, this.rank - k), received);
      target.set(received);
    }
  }

  async allreduce(buffer: Float32Array, op: ReduceOp = 'sum'): Promise<void> {
    await this.reduceScatter(buffer, op);
    await this.allgatherShares(buffer);
  }

  async allgather(send: Float32Array, recv: Float32Array): Promise<void> {
    const n = send.length;
    if (recv.length < n * this.size) throw new ConvergeError(`rank ${this.rank} of a group of ${this.size}: allgather needs a receive buffer of ${n * this.size} floats, got ${recv.length}.`, 'BAD_ARGUMENT');
    recv.set(send, this.rank * n);
    const block = (r: number) => recv.subarray(this.around(r) * n, (this.around(r) + 1) * n);
    for (let k = 0; k + 1 < this.size; k++) {
      const received = this.temporary(n);
      await this.exchange(block(this.rank - k), received);
      block(this.rank - k - 1).set(received);
    }
  }

  async gather(send: Float32Array, recv: Float32Array | null, root: number): Promise<void> {
    const n = send.length;
    checkPeer(this.rank, this.size, 'gather root', root);
    if (this.rank !== root) return this.sendTo(send, root);
    if (!recv || recv.length < n * this.size) throw new ConvergeError(`rank ${this.rank} of a group of ${this.size}: gather needs a receive buffer of ${n * this.size} floats at the root.`, 'BAD_ARGUMENT');
    recv.set(send, root * n);
    for (let r = 0; r < this.size; r++) if (r !== root) await this.recvFrom(recv.subarray(r * n, (r + 1) * n), r);
  }

  async broadcast(buffer: Float32Array, root: number): Promise<void> {
    checkPeer(this.rank, this.size, 'broadcast root', root);
    if (this.rank !== root) return this.recvFrom(buffer, root);
    for (let r = 0; r < this.size; r++) if (r !== root) await this.sendTo(buffer, r);
  }

  async barrier(): Promise<void> {
    await this.allreduce(new Float32Array(1));
  }

  send(buffer: Float32Array, dest: number): Promise<void> {
    checkPeer(this.rank, this.size, 'send to', dest);
    return this.sendTo(buffer, dest);
  }

  async recv(buffer: Float32Array, source = -1): Promise<number> {
    checkPeer(this.rank, this.size, 'recv from', source);
    if (source !== -1) {
      await this.recvFrom(buffer, source);
      return source;
    }
    const from = this.members.indexOf(await this.parent.recv(buffer, -1));
    if (from < 0) throw new ConvergeError(`rank ${this.rank} of a group of ${this.size}: a message from outside the group arrived in a receive from any member.`, 'BAD_ARGUMENT');
    return from;
  }

  abort(reason: string): void {
    this.parent.abort(reason);
  }
}
