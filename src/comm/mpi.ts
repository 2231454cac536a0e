// The mpi backend: Open MPI through converge's Node-API binding (native/mpi). The rank and size
// come from MPI (mpirun, srun). Buffers are used in place. Calls are serialized: small ones run
// blocking on this thread (as fast as MPI from C), large ones on the binding's progress thread
// so timers and logging go on. A watchdog in the binding ends a call that outlasts --timeout
// (MPI calls cannot be interrupted), and mpirun then ends the job.
//
// Before each collective the ranks compare fingerprints (operation, element count, root,
// sequence number) with one small all-reduce of 8 integers; a mismatch is an error on every rank
// that names both ranks and both operations. CONVERGE_MPI_CHECKS=0 skips it (to measure its cost).

import { createRequire } from 'node:module';
import { existsSync } from 'node:fs';
import { CommunicationError, ConvergeError, capacityExceeded, collectiveMismatch, messageSizeMismatch, receiveBufferSize } from '../errors.js';
import { kernel } from '../kernels/registry.js';
import { bufferShare, checkPeer, describeCollective, operations, type Operation, type ProcessCommunicator, type ReduceOp } from './communicator.js';

const bindingPath = new URL('../../native/mpi/build/Release/converge_mpi.node', import.meta.url).pathname;

export interface Binding {
  /** recvInfo receives [source, floats] of each recv */
  init(onDone: (id: number, code: number) => void, recvInfo: Int32Array): { rank: number; size: number; threads: boolean; library: string };
  /** → the MPI error code (0: success; −1: a recv of another size) */
  call(op: number, a: Float32Array | Int32Array | null, b: Float32Array | Int32Array | null, root: number, seq: number, seconds: number): number;
  start(id: number, op: number, a: Float32Array | null, b: Float32Array | Int32Array | null, root: number, seq: number, seconds: number): void;
  errorText(code: number): string;
  abort(reason: string): never;
  finalize(): void;
}

// the binding's operation codes (native/mpi/converge_mpi.cc)
export const ALLREDUCE = 0, REDUCE_SCATTER = 1, ALLGATHER = 2, BROADCAST = 3, GATHER = 4, BARRIER = 5, SEND = 6, RECV = 7, CHECK = 8, ALLGATHER_SHARES = 9;
/** Operations on more bytes than this run on the progress thread (a hand-off costs ~10 µs; 1 MiB takes ~100 µs). */
const THREAD_BYTES = Number(process.env.CONVERGE_MPI_THREAD_BYTES ?? 1 << 20);

/** What a collective's fingerprint check compares: its operation, element count and root (or reduction). */
interface Fingerprint {
  operation: Operation;
  count: number;
  root: number;
}

let binding: Binding | null = null;
let place: { rank: number; size: number; threads: boolean; library: string } | null = null;
const completions = new Map<number, (code: number) => void>();
const recvInfo = new Int32Array(2);

function loadBinding(): Binding {
  if (binding) return binding;
  if (!existsSync(bindingPath)) {
    throw new ConvergeError('--backend mpi needs the Open MPI binding, which is not built: install Open MPI (Debian: openmpi-bin libopenmpi-dev), then run `npm run build:native`.', 'NO_MPI');
  }
  binding = createRequire(import.meta.url)(bindingPath) as Binding;
  return binding;
}

export class MpiCommunicator implements ProcessCommunicator {
  readonly backend = 'mpi';
  bytesSent = 0;
  private seq = 0;
  private nextId = 0;
  private tail: Promise<unknown> = Promise.resolve();
  private running = 0; // operations queued or running and not finished (calls are serialized)
  private readonly checks = process.env.CONVERGE_MPI_CHECKS !== '0';
  private readonly fingerprint = new Int32Array(8);
  private readonly descriptor = new Float32Array(4);
  private descriptors: Float32Array;
  private readonly seconds: number;
  private readonly shares: Map<number, Int32Array> = new Map();

  constructor(private readonly mpi: Binding, readonly rank: number, readonly size: number, readonly threads: boolean, private readonly options: { capacity: number; timeoutMs: number }) {
    this.seconds = options.timeoutMs / 1000;
    this.descriptors = new Float32Array(4 * size);
  }

  allocate(length: number): Float32Array {
    return new Float32Array(length);
  }

  /**
   * Runs one operation's MPI calls (its fingerprint check first, for a collective) after every call
   * made before it, the two back to back: the ranks make their calls in the same order however
   * their threads' timings fall. Small operations with nothing queued run here at once (the common
   * case, with no promise chain in the way); from THREAD_BYTES on, the calls, the check's too, go to
   * the progress thread, so a late peer does not stop this rank's event loop.
   */
  private exec(op: number, a: Float32Array | Int32Array | null, b: Float32Array | Int32Array | null, root: number, what: string, bytes: number, check: Fingerprint | null = null): Promise<number> {
    const seq = this.seq;
    if (this.running === 0 && (bytes < THREAD_BYTES || !this.threads)) {
      try {
        if (check && !this.agreeHere(check, seq)) {
          this.callHere(ALLGATHER, this.describeOwn(check, seq), this.descriptors, 0, check.operation, seq);
          this.refuse(check, seq);
        }
        return Promise.resolve(this.callHere(op, a, b, root, what, seq));
      } catch (error) {
        return Promise.reject(error);
      }
    }
    const run = async (): Promise<number> => {
      try {
        if (check) {
          this.fingerprintOf(check, seq);
          await this.callNow(CHECK, this.fingerprint, null, 0, check.operation, seq, bytes);
          if (!this.agreed()) {
            await this.callNow(ALLGATHER, this.describeOwn(check, seq), this.descriptors, 0, check.operation, seq, 0);
            this.refuse(check, seq);
          }
        }
        return await this.callNow(op, a, b, root, what, seq, bytes);
      } finally {
        this.running--;
      }
    };
    // counted from the moment it is queued, so a later small call cannot slip in ahead of it
    this.running++;
    const next = this.tail.then(run, run);
    this.tail = next.catch(() => {});
    return next;
  }

  /** One MPI call on this thread; an MPI error fails it. */
  private callHere(op: number, a: Float32Array | Int32Array | null, b: Float32Array | Int32Array | null, root: number, what: string, seq: number): number {
    const code = this.mpi.call(op, a, b, root, seq, this.seconds);
    if (code > 0) throw this.failed(what, code, seq);
    return code;
  }

  /** One MPI call now, here if small, else on the progress thread. */
  private async callNow(op: number, a: Float32Array | Int32Array | null, b: Float32Array | Int32Array | null, root: number, what: string, seq: number, bytes: number): Promise<number> {
    if (bytes < THREAD_BYTES || !this.threads) return this.callHere(op, a, b, root, what, seq);
    const id = this.nextId++;
    const code = await new Promise<number>((resolve) => {
      completions.set(id, resolve);
      // a and b stay referenced by this closure until the completion arrives
      this.mpi.start(id, op, a as Float32Array, b, root, seq, this.seconds);
    });
    if (code > 0) throw this.failed(what, code, seq);
    return code;
  }

  private failed(what: string, code: number, seq: number): CommunicationError {
    // a collective's name gets its sequence number; send and recv say where they were
    const where = /^[a-zA-Z]+$/.test(what) ? `${what} #${seq}` : what;
    return new CommunicationError(`rank ${this.rank}: ${where} failed in MPI: ${this.mpi.errorText(code)}.`, 'MPI');
  }

  /** Collective `seq` begins: its number, the capacity, and the fingerprint its calls check first (none without checks). */
  private begin(operation: Operation, count: number, root: number): Fingerprint | null {
    this.seq++;
    if (count > this.options.capacity) throw capacityExceeded(`mpi ${operation}`, count, this.options.capacity);
    return this.checks && this.size > 1 ? { operation, count, root } : null;
  }

  /** The fingerprint check's buffer: (code, −code, count, −count, root, −root, seq, −seq); MPI's min-reduction leaves each pair opposite only where every rank agreed. */
  private fingerprintOf({ operation, count, root }: Fingerprint, seq: number): void {
    const code = operations.indexOf(operation);
    const s = seq % 16777216;
    const f = this.fingerprint;
    f[0] = code; f[1] = -code; f[2] = count; f[3] = -count; f[4] = root; f[5] = -root; f[6] = s; f[7] = -s;
  }

  private agreed(): boolean {
    const f = this.fingerprint;
    return f[0] === -f[1] && f[2] === -f[3] && f[4] === -f[5] && f[6] === -f[7];
  }

  private agreeHere(check: Fingerprint, seq: number): boolean {
    this.fingerprintOf(check, seq);
    this.callHere(CHECK, this.fingerprint, null, 0, check.operation, seq);
    return this.agreed();
  }

  /** This rank's descriptor, for the allgather that finds out who differs. */
  private describeOwn({ operation, count, root }: Fingerprint, seq: number): Float32Array {
    this.descriptor.set([operations.indexOf(operation), count, root, seq % 16777216]);
    return this.descriptor;
  }

  /** Someone differs (the descriptors are gathered): say what this rank and the first that differs called. */
  private refuse({ operation, count, root }: Fingerprint, seq: number): never {
    const code = operations.indexOf(operation);
    const own = seq % 16777216;
    const describe = (r: number) => {
      const d = this.descriptors.subarray(4 * r, 4 * r + 4);
      return `${describeCollective(operations[d[0]], d[1], d[2])} as its #${d[3]}`;
    };
    let other = 0;
    for (let r = 0; r < this.size; r++) {
      const d = this.descriptors.subarray(4 * r, 4 * r + 4);
      if (d[0] !== code || d[1] !== count || d[2] !== root || d[3] !== own) {
        other = r;
        break;
      }
    }
    const mine = other === this.rank ? (this.rank + 1) % this.size : this.rank;
    throw collectiveMismatch(this.rank, seq, `rank ${mine} called ${describe(mine)} but rank ${other} called ${describe(other)}`);
  }

  private sharesOf(n: number): Int32Array {
    let counts = this.shares.get(n);
    if (!counts) {
      counts = new Int32Array(2 * this.size);
      for (let r = 0; r < this.size; r++) {
        const [s, e] = bufferShare(n, r, this.size);
        counts[r] = e - s;
        counts[this.size + r] = s;
      }
      this.shares.set(n, counts);
    }
    return counts;
  }

  private scale(buffer: Float32Array, start: number, end: number): void {
    kernel('reduceStrided')(buffer, 0, 0, 1, start, end, buffer, 0, 1 / this.size);
  }

  async allreduce(buffer: Float32Array, op: ReduceOp = 'sum'): Promise<void> {
    const check = this.begin('allreduce', buffer.length, op === 'mean' ? -2 : -1);
    await this.exec(ALLREDUCE, buffer, null, 0, 'allreduce', 4 * buffer.length, check);
    if (op === 'mean') this.scale(buffer, 0, buffer.length);
    this.bytesSent += Math.round((8 * buffer.length * (this.size - 1)) / this.size);
  }

  async reduceScatter(buffer: Float32Array, op: ReduceOp = 'sum'): Promise<[number, number]> {
    const n = buffer.length;
    const check = this.begin('reduceScatter', n, op === 'mean' ? -2 : -1);
    const [start, end] = bufferShare(n, this.rank, this.size);
    await this.exec(REDUCE_SCATTER, buffer, this.sharesOf(n), 0, 'reduceScatter', 4 * n, check);
    // in place, MPI leaves this rank's share at the start of the buffer
    if (start > 0) kernel('copy')(buffer, start, buffer, 0, end - start);
    if (op === 'mean') this.scale(buffer, start, end);
    this.bytesSent += Math.round((4 * n * (this.size - 1)) / this.size);
    return [start, end];
  }

  async allgatherShares(buffer: Float32Array): Promise<void> {
    const n = buffer.length;
    const check = this.begin('allgatherShares', n, -1);
    await this.exec(ALLGATHER_SHARES, buffer, this.sharesOf(n), 0, 'allgatherShares', 4 * n, check);
    this.bytesSent += Math.round((4 * n * (this.size - 1)) / this.size);
  }

  async allgather(send: Float32Array, recv: Float32Array): Promise<void> {
    const n = send.length;
    if (recv.length !== n * this.size) throw receiveBufferSize(this.rank, 'allgather', n * this.size, recv.length);
    const check = this.begin('allgather', n, -1);
    await this.exec(ALLGATHER, send, recv, 0, 'allgather', 4 * n * this.size, check);
    this.bytesSent += 4 * n * (this.size - 1);
  }

  async gather(send: Float32Array, recv: Float32Array | null, root: number): Promise<void> {
    const n = send.length;
    checkPeer(this.rank, this.size, 'gather root', root);
    if (this.rank === root && (!recv || recv.length !== n * this.size)) {
      throw receiveBufferSize(this.rank, 'gather at the root', n * this.size, recv?.length ?? 'none');
    }
    const check = this.begin('gather', n, root);
    await this.exec(GATHER, send, this.rank === root ? recv : null, root, 'gather', 4 * n * this.size, check);
    if (this.rank !== root) this.bytesSent += 4 * n;
  }

  async broadcast(buffer: Float32Array, root: number): Promise<void> {
    checkPeer(this.rank, this.size, 'broadcast root', root);
    const check = this.begin('broadcast', buffer.length, root);
    await this.exec(BROADCAST, buffer, null, root, 'broadcast', 4 * buffer.length, check);
    if (this.rank === root) this.bytesSent += 4 * buffer.length * (this.size - 1);
  }

  async barrier(): Promise<void> {
    const check = this.begin('barrier', 0, -1);
    await this.exec(BARRIER, null, null, 0, 'barrier', 0, check);
  }

  async send(buffer: Float32Array, dest: number): Promise<void> {
    checkPeer(this.rank, this.size, 'send to', dest);
    await this.exec(SEND, buffer, null, dest, `send to rank ${dest} (after operation #${this.seq})`, 4 * buffer.length);
    this.bytesSent += 4 * buffer.length;
  }

  async recv(buffer: Float32Array, source = -1): Promise<number> {
    checkPeer(this.rank, this.size, 'recv from', source);
    const what = `recv from ${source < 0 ? 'any rank' : `rank ${source}`} (after operation #${this.seq})`;
    const code = await this.exec(RECV, buffer, null, source, what, 4 * buffer.length);
    if (code === -1) {
      throw messageSizeMismatch(this.rank, buffer.length, recvInfo[1], recvInfo[0]);
    }
    return recvInfo[0];
  }

  /** Ends the whole job: the reason goes to stderr, then MPI_Abort (mpirun reports which rank called it). */
  abort(reason: string): void {
    this.mpi.abort(reason);
  }

  close(): void {
    this.mpi.finalize();
  }
}

/** This process's rank of the job; `mpi` is the binding (a test passes a stand-in that plays MPI's part). */
export async function connectMpi(options: { capacity: number; timeoutMs: number }, mpi: Binding = loadBinding()): Promise<MpiCommunicator> {
  place ??= mpi.init((id, code) => {
    const done = completions.get(id);
    completions.delete(id);
    done?.(code);
  }, recvInfo);
  return new MpiCommunicator(mpi, place.rank, place.size, place.threads, options);
}
