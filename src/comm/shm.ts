// The shared-memory backend: ranks are worker threads of one process; the data moves through a
// SharedArrayBuffer and ranks synchronise with Atomics. All-reduce is reduce-scatter then
// all-gather: each rank sums only its 1/P share of every rank's contribution, so the work and
// memory traffic per rank do not grow with P.
//
// Memory is double-buffered by operation parity: operation k uses set k mod 2. A rank can
// only start writing operation k+2 after passing a barrier of operation k+1, which every rank
// reaches only after finishing operation k, so one barrier per operation is enough.

import { availableParallelism } from 'node:os';
import { capacityExceeded, collectiveMismatch, commTimeout, CommunicationError, messageSizeMismatch, peerFailed, receiveBufferSize } from '../errors.js';
import { kernel } from '../kernels/registry.js';
import type { KernelSet } from '../kernels/types.js';
import { bufferShare, checkPeer, describeCollective, operations, type Communicator, type Operation, type ReduceOp } from './communicator.js';

// control words
const COUNT = 0; // ranks arrived at the current barrier
const GENERATION = 1; // barrier generation; waiters sleep on it
const ABORTED = 2; // 0, or the failed rank + 1
const ABORT_LOCK = 3; // first failure wins the right to write its message
const MESSAGE_LENGTH = 4;
const STATUS = 8; // per rank: [operation code, sequence number]; code 0 = computing
const MESSAGE_BYTES = 2048;
// A waiting rank spins before it sleeps: a wake-up from Atomics.wait costs tens to hundreds of
// µs here (measured: 30% of a small model's barriers slept, ≈ 190 µs each, with a 20,000-load
// spin), a spin a few µs. With no more ranks than cores the spinning core would idle anyway, so
// it spins up to SPIN_MS; with more ranks than cores it would take the core a peer needs, so
// then it sleeps at once.
const SPIN_MS = 2;

export interface ShmHandle {
  size: number;
  capacity: number; // floats per rank per operation
  timeoutMs: number;
  control: SharedArrayBuffer;
  message: SharedArrayBuffer;
  data: SharedArrayBuffer;
  /** One region of `regionCapacity` floats per rank, handed out by allocate(): collectives on it copy nothing in. */
  regions: SharedArrayBuffer;
  regionCapacity: number;
  spinMs: number; // how long a waiting rank spins before it sleeps
  mailCapacity: number; // floats per point-to-point mailbox (0: no send/recv)
  mail: SharedArrayBuffer; // size × size mailboxes
  mailControl: SharedArrayBuffer; // per mailbox [state, length], then one doorbell per rank
}

const EMPTY = 0; // mailbox states
const FULL = 1;
const RECORD = 4; // fingerprint words per rank per set: operation, count, root, region offset + 1 (0: a private buffer)

export function createShmHandle(size: number, capacity: number, timeoutMs: number, regionCapacity = capacity, mailCapacity = 0): ShmHandle {
  const controlWords = STATUS + 2 * size + 2 * size * RECORD;
  return {
    size,
    capacity,
    timeoutMs,
    control: new SharedArrayBuffer(4 * controlWords),
    message: new SharedArrayBuffer(MESSAGE_BYTES),
    // per set: one slot per rank + one result region
    data: new SharedArrayBuffer(4 * 2 * (size + 1) * capacity),
    regions: new SharedArrayBuffer(4 * size * regionCapacity),
    regionCapacity,
    spinMs: size <= availableParallelism() ? SPIN_MS : 0,
    mailCapacity,
    mail: new SharedArrayBuffer(4 * size * size * mailCapacity),
    mailControl: new SharedArrayBuffer(4 * (2 * size * size + size)),
  };
}

function recordBase(size: number): number {
  return STATUS + 2 * size;
}

/** Marks the group failed on behalf of `rank`; the first failure's message is kept. */
export function abortGroup(handle: ShmHandle, rank: number, reason: string): void {
  const control = new Int32Array(handle.control);
  if (Atomics.compareExchange(control, ABORT_LOCK, 0, 1) === 0) {
    const bytes = new TextEncoder().encode(reason).subarray(0, MESSAGE_BYTES);
    new Uint8Array(handle.message).set(bytes);
    Atomics.store(control, MESSAGE_LENGTH, bytes.length);
    Atomics.store(control, ABORTED, rank + 1);
  }
  Atomics.notify(control, GENERATION);
  // wake ranks waiting in send/recv too
  const mail = new Int32Array(handle.mailControl);
  for (let i = 0; i < mail.length; i++) Atomics.notify(mail, i);
}

/** The first failure's message, or null while the group is healthy. */
export function abortMessage(handle: ShmHandle): string | null {
  const control = new Int32Array(handle.control);
  if (Atomics.load(control, ABORTED) === 0) return null;
  const length = Atomics.load(control, MESSAGE_LENGTH);
  return new TextDecoder().decode(new Uint8Array(handle.message).slice(0, length));
}

/** What `rank` was doing, as "allreduce #12", or "" when it was between operations. */
export function rankActivity(handle: ShmHandle, rank: number): string {
  const control = new Int32Array(handle.control);
  const code = Atomics.load(control, STATUS + 2 * rank);
  const seq = Atomics.load(control, STATUS + 2 * rank + 1);
  const name = operations[code];
  if (name === 'send' || name === 'recv') return `${name} (after operation #${seq})`;
  return code ? `${name} #${seq}` : seq ? `computing after operation #${seq}` : 'start-up';
}

export class ShmCommunicator implements Communicator {
  readonly backend = 'shm';
  readonly size: number;
  bytesSent = 0;
  waitedSeconds = 0;
  private readonly control: Int32Array;
  private readonly data: Float32Array;
  private readonly capacity: number;
  private seq = 0;
  private allocated = 0;
  private readonly regionData: Float32Array;
  private readonly regionCapacity: number;
  private readonly mail: Float32Array;
  private readonly mailControl: Int32Array;

  constructor(private readonly handle: ShmHandle, readonly rank: number) {
    this.size = handle.size;
    this.capacity = handle.capacity;
    this.control = new Int32Array(handle.control);
    this.data = new Float32Array(handle.data);
    this.regionData = new Float32Array(handle.regions);
    this.regionCapacity = handle.regionCapacity;
    this.mail = new Float32Array(handle.mail);
    this.mailControl = new Int32Array(handle.mailControl);
  }

  /** The summing loop is a kernel (the native one runs in C++), looked up per call: the backend is chosen after start-up. */
  private reduce(...args: Parameters<KernelSet['reduceStrided']>): void {
    kernel('reduceStrided')(...args);
  }

  /**
   * Every copy into and out of shared memory goes through the copy kernel: V8's TypedArray.set
   * on SharedArrayBuffer memory is about 2× slower than the native memmove.
   */
  private move(target: Float32Array, at: number, source: Float32Array, from: number, length: number): void {
    kernel('copy')(target, at, source, from, length);
  }

  private slot(set: number, rank: number): number {
    return (set * (this.size + 1) + rank) * this.capacity;
  }

  private result(set: number): number {
    return this.slot(set, this.size);
  }

  /** Opens operation `seq`: checks the group is alive, records status and fingerprint. */
  private begin(operation: Operation, count: number, root: number, regionOffset = -1): number {
    this.checkAborted(`${operation} #${this.seq + 1}`);
    if (count > this.capacity) throw capacityExceeded(`shm ${operation}`, count, this.capacity);
    this.seq++;
    const code = operations.indexOf(operation);
    const set = this.seq & 1;
    const record = recordBase(this.size) + (set * this.size + this.rank) * RECORD;
    Atomics.store(this.control, record, code);
    Atomics.store(this.control, record + 1, count);
    Atomics.store(this.control, record + 2, root);
    Atomics.store(this.control, record + 3, regionOffset + 1);
    Atomics.store(this.control, STATUS + 2 * this.rank + 1, this.seq);
    Atomics.store(this.control, STATUS + 2 * this.rank, code);
    return set;
  }

  private end(): void {
    Atomics.store(this.control, STATUS + 2 * this.rank, 0);
  }

  /** After the first barrier of an operation: every rank must be in the same operation. */
  private checkFingerprints(operation: Operation, set: number): void {
    const base = recordBase(this.size) + set * this.size * RECORD;
    const mine = base + this.rank * RECORD;
    for (let r = 0; r < this.size; r++) {
      const theirs = base + r * RECORD;
      if (this.control[theirs] !== this.control[mine] || this.control[theirs + 1] !== this.control[mine + 1]
        || this.control[theirs + 2] !== this.control[mine + 2] || this.control[theirs + 3] !== this.control[mine + 3]) {
        const c = this.control;
        const describe = (at: number) => describeCollective(operations[c[at]], c[at + 1], c[at + 2], c[at + 3] ? `, allocate()d buffer at ${c[at + 3] - 1}` : '');
        const error = collectiveMismatch(this.rank, this.seq, `rank ${this.rank} called ${describe(mine)} but rank ${r} called ${describe(theirs)}`);
        this.abort(error.message);
        throw error;
      }
    }
  }

  private checkAborted(operation: string): void {
    const failed = Atomics.load(this.control, ABORTED);
    if (failed === 0) return;
    const reason = abortMessage(this.handle) ?? 'unknown failure';
    if (failed - 1 === this.rank) throw new CommunicationError(reason, 'ABORTED');
    throw peerFailed(this.rank, operation, reason);
  }

  private barrierWait(operation: Operation): void {
    const c = this.control;
    const generation = Atomics.load(c, GENERATION);
    if (Atomics.add(c, COUNT, 1) === this.size - 1) {
      Atomics.store(c, COUNT, 0);
      Atomics.add(c, GENERATION, 1);
      Atomics.notify(c, GENERATION);
      return;
    }
    this.waitWhile(c, GENERATION, generation, `${operation} #${this.seq}`, () => this.laggards());
  }

  /**
   * Waits while array[index] === value: spins briefly, then sleeps in slices, failing on abort
   * or after the timeout with an error naming what it waited for.
   */
  private waitWhile(array: Int32Array, index: number, value: number, operation: string, waitingFor: () => string): void {
    if (Atomics.load(array, index) !== value) return;
    const started = performance.now();
    try {
      this.waitLonger(array, index, value, operation, waitingFor);
    } finally {
      this.waitedSeconds += (performance.now() - started) / 1000;
    }
  }

  private waitLonger(array: Int32Array, index: number, value: number, operation: string, waitingFor: () => string): void {
    if (this.handle.spinMs > 0) {
      const spinUntil = performance.now() + this.handle.spinMs;
      do {
        for (let i = 0; i < 256; i++) if (Atomics.load(array, index) !== value) return;
      } while (performance.now() < spinUntil && Atomics.load(this.control, ABORTED) === 0);
    }
    const deadline = performance.now() + this.handle.timeoutMs;
    while (Atomics.load(array, index) === value) {
      this.checkAborted(operation);
      const left = deadline - performance.now();
      if (left <= 0) {
        const error = commTimeout(this.rank, operation, this.handle.timeoutMs / 1000, waitingFor());
        this.abort(error.message);
        throw error;
      }
      Atomics.wait(array, index, value, Math.min(left, 1000));
    }
  }

  // ---- point to point: one mailbox per (sender, receiver) pair, holding one message at a time

  private mailbox(from: number, to: number): { state: number; data: number } {
    const box = from * this.size + to;
    return { state: 2 * box, data: box * this.handle.mailCapacity };
  }

  private checkPointToPoint(operation: 'send' | 'recv', peer: number, n: number): void {
    if (this.handle.mailCapacity === 0) throw new CommunicationError(`rank ${this.rank}: ${operation} needs a group made with point-to-point mailboxes (createShmHandle's mailCapacity).`, 'NO_MAILBOXES');
    checkPeer(this.rank, this.size, operation === 'send' ? 'send to' : 'recv from', peer);
    if (n + 1 > this.handle.mailCapacity) throw capacityExceeded(`shm ${operation}`, n, this.handle.mailCapacity - 1);
  }

  async send(buffer: Float32Array, dest: number): Promise<void> {
    const n = buffer.length;
    this.checkPointToPoint('send', dest, n);
    const operation = `send to rank ${dest}`;
    this.checkAborted(operation);
    const { state, data } = this.mailbox(this.rank, dest);
    const control = this.mailControl;
    Atomics.store(this.control, STATUS + 2 * this.rank, operations.indexOf('send'));
    // the previous message must have been taken
    this.waitWhile(control, state, FULL, operation, () => `rank ${dest} to take the previous message (${rankActivity(this.handle, dest)})`);
    this.move(this.mail, data, buffer, 0, n);
    Atomics.store(control, state + 1, n);
    Atomics.store(control, state, FULL);
    Atomics.notify(control, state);
    Atomics.add(control, this.doorbell(dest), 1);
    Atomics.notify(control, this.doorbell(dest));
    this.bytesSent += 4 * n;
    this.end();
  }

  private doorbell(rank: number): number {
    return 2 * this.size * this.size + rank;
  }

  /** Receives one message into `buffer` from `source`, or from any peer when source is −1; returns the sender. */
  async recv(buffer: Float32Array, source = -1): Promise<number> {
    const n = buffer.length;
    this.checkPointToPoint('recv', source, n);
    const control = this.mailControl;
    const operation = source === -1 ? 'recv from any rank' : `recv from rank ${source}`;
    Atomics.store(this.control, STATUS + 2 * this.rank, operations.indexOf('recv'));
    let from = -1;
    for (;;) {
      this.checkAborted(operation);
      const ring = Atomics.load(control, this.doorbell(this.rank));
      for (let r = 0; r < this.size && from === -1; r++) {
        if (r === this.rank || (source !== -1 && r !== source)) continue;
        if (Atomics.load(control, this.mailbox(r, this.rank).state) === FULL) from = r;
      }
      if (from !== -1) break;
      this.waitWhile(control, this.doorbell(this.rank), ring, operation, () => (source === -1 ? 'a message from any rank' : `rank ${source} (${rankActivity(this.handle, source)})`));
    }
    const { state, data } = this.mailbox(from, this.rank);
    const length = Atomics.load(control, state + 1);
    if (length !== n) {
      const error = messageSizeMismatch(this.rank, n, length, from);
      this.abort(error.message);
      throw error;
    }
    this.move(buffer, 0, this.mail, data, n);
    Atomics.store(control, state, EMPTY);
    Atomics.notify(control, state);
    this.end();
    return from;
  }

  /** The ranks that have not reached this operation, and what they are doing. */
  private laggards(): string {
    const behind: string[] = [];
    for (let r = 0; r < this.size; r++) {
      if (r === this.rank) continue;
      const theirSeq = Atomics.load(this.control, STATUS + 2 * r + 1);
      const theirCode = Atomics.load(this.control, STATUS + 2 * r);
      if (theirSeq < this.seq || (theirSeq === this.seq && theirCode === 0)) behind.push(`rank ${r} (${rankActivity(this.handle, r)})`);
    }
    return behind.length ? behind.join(', ') : 'the other ranks';
  }

  private sync(operation: Operation, set: number): void {
    this.barrierWait(operation);
    this.checkFingerprints(operation, set);
  }

  /**
   * A buffer in this rank's shared region: peers read it in place, so an all-reduce on it copies
   * nothing in and moves about half the bytes. Every rank must allocate the same lengths in the
   * same order (the fingerprint checks it).
   */
  allocate(length: number): Float32Array {
    if (this.allocated + length > this.regionCapacity) throw capacityExceeded('shm allocate', this.allocated + length, this.regionCapacity);
    const view = new Float32Array(this.handle.regions, 4 * (this.rank * this.regionCapacity + this.allocated), length);
    this.allocated += length;
    return view;
  }

  /** The offset of `buffer` in this rank's region, or −1 when it is a private buffer. */
  private regionOffset(buffer: Float32Array): number {
    if (buffer.buffer !== this.handle.regions) return -1;
    return buffer.byteOffset / 4 - this.rank * this.regionCapacity;
  }

  async allreduce(buffer: Float32Array, op: ReduceOp = 'sum'): Promise<void> {
    const n = buffer.length;
    const offset = this.regionOffset(buffer);
    const set = this.begin('allreduce', n, op === 'mean' ? -2 : -1, offset);
    if (this.size === 1) return this.end(); // the sum and the mean of one buffer are the buffer
    if (offset >= 0) return this.allreduceInPlace(buffer, n, offset, op, set);
    const d = this.data;
    this.move(d, this.slot(set, this.rank), buffer, 0, n);
    this.sync('allreduce', set);
    const [start, end] = bufferShare(n, this.rank, this.size);
    const result = this.result(set);
    this.reduce(d, this.slot(set, 0), this.capacity, this.size, start, end, d, result, op === 'mean' ? 1 / this.size : 1);
    this.barrierWait('allreduce');
    this.move(buffer, 0, d, result, n);
    this.bytesSent += allreduceBytes(n, this.size);
    this.end();
  }

  /**
   * All-reduce on allocate()d buffers: rank r sums share r of every rank's region into its own
   * region, then copies every other share from its owner. A rank's share r is written only by
   * rank r and read by others only after the barrier that follows; a closing barrier keeps a
   * fast rank from overwriting its buffer while a peer still copies from it.
   */
  private allreduceInPlace(buffer: Float32Array, n: number, offset: number, op: ReduceOp, set: number): void {
    const regions = this.regionData;
    this.sync('allreduce', set);
    const [start, end] = bufferShare(n, this.rank, this.size);
    const first = offset; // rank 0's copy; rank r's is `regionCapacity` floats further
    const stride = this.regionCapacity;
    this.reduce(regions, first, stride, this.size, start, end, regions, first + this.rank * stride, op === 'mean' ? 1 / this.size : 1);
    this.barrierWait('allreduce');
    for (let r = 0; r < this.size; r++) {
      if (r === this.rank) continue;
      const [s, e] = bufferShare(n, r, this.size);
      this.move(buffer, s, regions, first + r * stride + s, e - s);
    }
    this.barrierWait('allreduce');
    this.bytesSent += allreduceBytes(n, this.size);
    this.end();
  }

  async reduceScatter(buffer: Float32Array, op: ReduceOp = 'sum'): Promise<[number, number]> {
    const n = buffer.length;
    const offset = this.regionOffset(buffer);
    const set = this.begin('reduceScatter', n, op === 'mean' ? -2 : -1, offset);
    if (this.size === 1) {
      this.end();
      return [0, n]; // one rank's sum and mean are its own buffer
    }
    if (offset >= 0) {
      // in place: sum share r of every rank's region into our own; the closing barrier keeps us
      // from overwriting our buffer while a peer still reads its share of it
      this.sync('reduceScatter', set);
      const [start, end] = bufferShare(n, this.rank, this.size);
      const stride = this.regionCapacity;
      this.reduce(this.regionData, offset, stride, this.size, start, end, this.regionData, offset + this.rank * stride, op === 'mean' ? 1 / this.size : 1);
      this.barrierWait('reduceScatter');
      this.bytesSent += (4 * n * (this.size - 1)) / this.size;
      this.end();
      return [start, end];
    }
    this.move(this.data, this.slot(set, this.rank), buffer, 0, n);
    this.sync('reduceScatter', set);
    const [start, end] = bufferShare(n, this.rank, this.size);
    this.reduce(this.data, this.slot(set, 0), this.capacity, this.size, start, end, buffer, 0, op === 'mean' ? 1 / this.size : 1);
    this.bytesSent += (4 * n * (this.size - 1)) / this.size;
    this.end();
    return [start, end];
  }

  async allgatherShares(buffer: Float32Array): Promise<void> {
    const n = buffer.length;
    const offset = this.regionOffset(buffer);
    const set = this.begin('allgatherShares', n, -1, offset);
    const [start, end] = bufferShare(n, this.rank, this.size);
    if (this.size === 1) return this.end();
    if (offset >= 0) {
      this.sync('allgatherShares', set);
      for (let r = 0; r < this.size; r++) {
        if (r === this.rank) continue;
        const [s, e] = bufferShare(n, r, this.size);
        this.move(buffer, s, this.regionData, offset + r * this.regionCapacity + s, e - s);
      }
      this.barrierWait('allgatherShares');
    } else {
      const slot = this.slot(set, this.rank);
      this.move(this.data, slot + start, buffer, start, end - start);
      this.sync('allgatherShares', set);
      for (let r = 0; r < this.size; r++) {
        if (r === this.rank) continue;
        const [s, e] = bufferShare(n, r, this.size);
        this.move(buffer, s, this.data, this.slot(set, r) + s, e - s);
      }
    }
    this.bytesSent += (4 * (end - start) * (this.size - 1));
    this.end();
  }

  async allgather(send: Float32Array, recv: Float32Array): Promise<void> {
    const n = send.length;
    if (recv.length !== n * this.size) throw receiveBufferSize(this.rank, 'allgather', n * this.size, recv.length);
    const set = this.begin('allgather', n, -1);
    this.move(this.data, this.slot(set, this.rank), send, 0, n);
    this.sync('allgather', set);
    for (let r = 0; r < this.size; r++) this.move(recv, r * n, this.data, this.slot(set, r), n);
    this.bytesSent += 4 * n * (this.size - 1);
    this.end();
  }

  async gather(send: Float32Array, recv: Float32Array | null, root: number): Promise<void> {
    const n = send.length;
    checkPeer(this.rank, this.size, 'gather root', root);
    if (this.rank === root && (!recv || recv.length !== n * this.size)) {
      throw receiveBufferSize(this.rank, 'gather at the root', n * this.size, recv?.length ?? 'none');
    }
    const offset = this.regionOffset(send);
    const set = this.begin('gather', n, root, offset);
    // allocate()d buffers are read in place by the root, and kept until it has (closing barrier)
    const inPlace = offset >= 0;
    if (this.rank !== root) {
      if (!inPlace) this.move(this.data, this.slot(set, this.rank), send, 0, n);
      this.bytesSent += 4 * n;
    }
    this.sync('gather', set);
    if (this.rank === root && recv) {
      for (let r = 0; r < this.size; r++) {
        const from = inPlace ? offset + r * this.regionCapacity : this.slot(set, r);
        if (r === root) this.move(recv, r * n, send, 0, n);
        else this.move(recv, r * n, inPlace ? this.regionData : this.data, from, n);
      }
    }
    if (inPlace) this.barrierWait('gather');
    this.end();
  }

  async broadcast(buffer: Float32Array, root: number): Promise<void> {
    const n = buffer.length;
    checkPeer(this.rank, this.size, 'broadcast root', root);
    const offset = this.regionOffset(buffer);
    const set = this.begin('broadcast', n, root, offset);
    const inPlace = offset >= 0;
    if (this.rank === root) {
      if (!inPlace) this.move(this.data, this.slot(set, root), buffer, 0, n);
      this.bytesSent += 4 * n * (this.size - 1);
    }
    this.sync('broadcast', set);
    if (this.rank !== root) {
      const from = inPlace ? offset + root * this.regionCapacity : this.slot(set, root);
      this.move(buffer, 0, inPlace ? this.regionData : this.data, from, n);
    }
    // in place, the root keeps its buffer unchanged until every rank has copied it
    if (inPlace) this.barrierWait('broadcast');
    this.end();
  }

  async barrier(): Promise<void> {
    const set = this.begin('barrier', 0, -1);
    this.sync('barrier', set);
    this.end();
  }

  abort(reason: string): void {
    abortGroup(this.handle, this.rank, reason);
  }
}

/** Bytes of one rank's data its peers read in an all-reduce: 2(P−1)/P · n floats, as in a ring. */
function allreduceBytes(n: number, size: number): number {
  return (8 * n * (size - 1)) / size;
}
