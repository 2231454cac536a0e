// The interface every backend implements (shm, tcp, mpi). Collectives are
// called by every rank in the same order; each carries a sequence number and a fingerprint
// (operation, element count, root) that backends check, so a mismatch is an error, not a hang.

import { isPointToPoint, notAPeer, type PeerRole } from '../errors.js';

export type ReduceOp = 'sum' | 'mean';

export interface Communicator {
  readonly backend: string;
  readonly rank: number;
  readonly size: number;
  /** Bytes this rank has put on the wire (for shm: bytes of its data its peers read). */
  readonly bytesSent: number;
  /** Seconds this rank has waited for its peers inside collectives, where the backend can tell (shm); else undefined. */
  readonly waitedSeconds?: number;
  /**
   * A buffer this backend's collectives handle fastest (shm: in shared memory, read by peers in
   * place). Every rank allocates the same lengths in the same order. Any Float32Array works too.
   */
  allocate(length: number): Float32Array;
  /** Every rank ends with the element-wise reduction of all ranks' buffers. */
  allreduce(buffer: Float32Array, op?: ReduceOp): Promise<void>;
  /** Reduces into this rank's share of `buffer` only; returns that share as [start, end). */
  reduceScatter(buffer: Float32Array, op?: ReduceOp): Promise<[number, number]>;
  /** The inverse of reduceScatter: every rank ends with each rank's share of `buffer` (shares as reduceScatter gives them). */
  allgatherShares(buffer: Float32Array): Promise<void>;
  /** recv[r·n .. (r+1)·n) = rank r's send, n = send.length, on every rank. */
  allgather(send: Float32Array, recv: Float32Array): Promise<void>;
  /** At `root`, recv[r·n .. (r+1)·n) = rank r's send; recv is ignored (may be null) elsewhere. */
  gather(send: Float32Array, recv: Float32Array | null, root: number): Promise<void>;
  /** Every rank's buffer becomes root's. */
  broadcast(buffer: Float32Array, root: number): Promise<void>;
  barrier(): Promise<void>;
  /** Point to point: delivers `buffer` to `dest`; waits (with the timeout) while dest has not taken the previous message. */
  send(buffer: Float32Array, dest: number): Promise<void>;
  /** Receives a message of buffer.length floats from `source` (−1: from any rank); returns the sender. */
  recv(buffer: Float32Array, source?: number): Promise<number>;
  /** Tells every peer this rank has failed, so that they stop waiting for it. */
  abort(reason: string): void;
}

/** A communicator of a process that is one rank of a job (tcp, mpi): it holds sockets or MPI, so it is closed. */
export interface ProcessCommunicator extends Communicator {
  close(): void | Promise<void>;
}

/** Throws unless `peer` is a rank of the group (for send and recv, another than `rank`); recv's −1, any rank, needs a group with another rank. */
export function checkPeer(rank: number, size: number, what: PeerRole, peer: number): void {
  const ok = what === 'recv from' && peer === -1 ? size > 1 : Number.isInteger(peer) && peer >= 0 && peer < size && !(isPointToPoint(what) && peer === rank);
  if (!ok) throw notAPeer(rank, size, what, peer);
}

/** Rank `rank`'s share of n elements split among `size` ranks, as [start, end): reduceScatter's partition on every backend. */
export function bufferShare(n: number, rank: number, size: number): [number, number] {
  return [Math.floor((n * rank) / size), Math.floor((n * (rank + 1)) / size)];
}

/**
 * A collective as mismatch messages name it: "allreduce of 8 floats (sum)", "broadcast of 8
 * floats (root 0)", "allgather of 8 floats", "barrier". A reduction's root is its operation
 * (−1 sum, −2 mean); only gather and broadcast have a root; `detail` (", …") follows either.
 */
export function describeCollective(operation: string, count: number, root: number, detail = ''): string {
  const how = operation === 'allreduce' || operation === 'reduceScatter' ? (root === -2 ? 'mean' : 'sum') : operation === 'gather' || operation === 'broadcast' ? `root ${root}` : '';
  const said = how + (how ? detail : detail.replace(/^, /, ''));
  return `${operation}${operation === 'barrier' ? '' : ` of ${count} floats`}${said ? ` (${said})` : ''}`;
}

export const operations = ['idle', 'allreduce', 'reduceScatter', 'allgatherShares', 'allgather', 'gather', 'broadcast', 'barrier', 'send', 'recv'] as const;
export type Operation = (typeof operations)[number];
