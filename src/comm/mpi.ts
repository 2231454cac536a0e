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

interface Binding {
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
const ALLREDUCE = 0, REDUCE_SCATTER = 1, ALLGATHER = 2, BROADCAST = 3, GATHER = 4, BARRIER = 5, SEND = 6, RECV = 7, CHECK = 8, ALLGATHER_SHARES = 9;
/** Operations on more bytes than this run on the progress thread (a hand-off costs ~10 µs; 1 MiB takes ~100 µs). */
const THREAD_BYTES = Number(process.env.CONVERGE_MPI_THREAD_BYTES ?? 1 << 20);

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
   * Runs one MPI operation after the previous one: small ones here, at once when nothing else is
   * running (the common case, with no promise chain in the way); large ones on the progress thread.
   */
  private exec(op: number, a: Float32Array | Int32Array | null, b: Float32Array | Int32Array | null, root: number, what: string, bytes: number): Promise<number> {
    if (this.running === 0 && (bytes < THREAD_BYTES || !this.threads)) {
      const code = this.mpi.call(op, a, b, root, this.seq, this.seconds);
      return code > 0 ? Promise.reject(this.failed(what, code)) : Promise.resolve(code);
    }
    const run = async (): Promise<number> => {
      try {
        let code: number;
        if (bytes < THREAD_BYTES || !this.threads) code = this.mpi.call(op, a, b, root, this.seq, this.seconds);
        else {
          const id = this.nextId++;
          code = await new Promise<number>((resolve) => {
            completions.set(id, resolve);
            // a and b stay referenced by this closure until the completion arrives
            this.mpi.start(id, op, a as Float32Array, b, root, this.seq, this.seconds);
          });
        }
        if (code > 0) throw this.failed(what, code);
        return code;
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

  private failed(what: string, code: number): CommunicationError {
    // a collective's name gets its sequence number; send and recv say where they were
    const where = /^[a-zA-Z]+$/.test(what) ? `${what} #${this.seq}` : what;
    return new CommunicationError(`rank ${this.rank}: ${where} failed in MPI: ${this.mpi.errorText(code)}.`, 'MPI');
  }

  /**
   * The fingerprint check before collective `seq`: every rank called the same operation? It waits
   * for the slowest rank, so it runs where the operation of `bytes` will: a large one's on the
   * progress thread, or a late peer would stop this rank's event loop in the check.
   */
  private begin(operation: Operation, count: number, root: number, bytes: number): Promise<void> | null {
    this.seq++;
    if (count > this.options.capacity) throw capacityExceeded(`mpi ${operation}`, count, this.options.capacity);
    return this.checks && this.size > 1 ? this.check(operation, count, root, bytes) : null;
  }

  private async check(operation: Operation, count: number, root: number, bytes: number): Promise<void> {
    const code = operations.indexOf(operation);
    const seq = this.seq % 16777216;
    const f = this.fingerprint;
    f[0] = code; f[1] = -code; f[2] = count; f[3] = -count; f[4] = root; f[5] = -root; f[6] = seq; f[7] = -seq;
    await this.exec(CHECK, f, null, 0, operation, bytes);
    if (f[0] === -f[1] && f[2] === -f[3] && f[4] === -f[5] && f[6] === -f[7]) return;
    // someone differs: find out who, and say what each called
    this.descriptor.set([code, count, root, seq]);
    await this.exec(ALLGATHER, this.descriptor, this.descriptors, 0, operation, 0);
    const describe = (r: number) => {
      const d = this.descriptors.subarray(4 * r, 4 * r + 4);
      return `${describeCollective(operations[d[0]], d[1], d[2])} as its #${d[3]}`;
    };
    let other = 0;
    for (let r = 0; r < this.size; r++) {
      const d = this.descriptors.subarray(4 * r, 4 * r + 4);
      if (d[0] !== code || d[1] !== count || d[2] !== root || d[3] !== seq) {
        other = r;
        break;
      }
    }
    const mine = other === this.rank ? (this.rank + 1) % this.size : this.rank;
    throw collectiveMismatch(this.rank, this.seq, `rank ${mine} called ${describe(mine)} but rank ${other} called ${describe(other)}`);
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
    const bytes = 4 * buffer.length;
    const check = this.begin('allreduce', buffer.length, op === 'mean' ? -2 : -1, bytes);
    if (check) await check;
    await this.exec(ALLREDUCE, buffer, null, 0, 'allreduce', bytes);
    if (op === 'mean') this.scale(buffer, 0, buffer.length);
    this.bytesSent += Math.round((8 * buffer.length * (this.size - 1)) / this.size);
  }

  async reduceScatter(buffer: Float32Array, op: ReduceOp = 'sum'): Promise<[number, number]> {
    const n = buffer.length;
    const check = this.begin('reduceScatter', n, op === 'mean' ? -2 : -1, 4 * n);
    if (check) await check;
    const [start, end] = bufferShare(n, this.rank, this.size);
    await this.exec(REDUCE_SCATTER, buffer, this.sharesOf(n), 0, 'reduceScatter', 4 * n);
    // in place, MPI leaves this rank's share at the start of the buffer
    if (start > 0) kernel('copy')(buffer, start, buffer, 0, end - start);
    if (op === 'mean') this.scale(buffer, start, end);
    this.bytesSent += Math.round((4 * n * (this.size - 1)) / this.size);
    return [start, end];
  }

  async allgatherShares(buffer: Float32Array): Promise<void> {
    const n = buffer.length;
    const check = this.begin('allgatherShares', n, -1, 4 * n);
    if (check) await check;
    await this.exec(ALLGATHER_SHARES, buffer, this.sharesOf(n), 0, 'allgatherShares', 4 * n);
    this.bytesSent += Math.round((4 * n * (this.size - 1)) / this.size);
  }

  async allgather(send: Float32Array, recv: Float32Array): Promise<void> {
    const n = send.length;
    if (recv.length !== n * this.size) throw receiveBufferSize(this.rank, 'allgather', n * this.size, recv.length);
    const check = this.begin('allgather', n, -1, 4 * n * this.size);
    if (check) await check;
    await this.exec(ALLGATHER, send, recv, 0, 'allgather', 4 * n * this.size);
    this.bytesSent += 4 * n * (this.size - 1);
  }

  async gather(send: Float32Array, recv: Float32Array | null, root: number): Promise<void> {
    const n = send.length;
    checkPeer(this.rank, this.size, 'gather root', root);
    if (this.rank === root && (!recv || recv.length !== n * this.size)) {
      throw receiveBufferSize(this.rank, 'gather at the root', n * this.size, recv?.length ?? 'none');
    }
    const check = this.begin('gather', n, root, 4 * n * this.size);
    if (check) await check;
    await this.exec(GATHER, send, this.rank === root ? recv : null, root, 'gather', 4 * n * this.size);
    if (this.rank !== root) this.bytesSent += 4 * n;
  }

  async broadcast(buffer: Float32Array, root: number): Promise<void> {
    checkPeer(this.rank, this.size, 'broadcast root', root);
    const check = this.begin('broadcast', buffer.length, root, 4 * buffer.length);
    if (check) await check;
    await this.exec(BROADCAST, buffer, null, root, 'broadcast', 4 * buffer.length);
    if (this.rank === root) this.bytesSent += 4 * buffer.length * (this.size - 1);
  }

  async barrier(): Promise<void> {
    const check = this.begin('barrier', 0, -1, 0);
    if (check) await check;
    await this.exec(BARRIER, null, null, 0, 'barrier', 0);
  }

  async send(buffer: Float32Array, dest: number): Promise<void> {
    checkPeer(this.rank, this.size, 'send to', dest);
    await this.exec(SEND, buffer, null, dest, `send to rank ${dest} (after operation #${this.seq})`, 4 * buffer.length);
    this.bytesSent += 4 * buffer.length;
  }

  async recv(buffer: Float32Array, source = -1): Promise<number> {
    if (source !== -1) checkPeer(this.rank, this.size, 'recv from', source);
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

export async function connectMpi(options: { capacity: number; timeoutMs: number }): Promise<MpiCommunicator> {
  const mpi = loadBinding();
  place ??= mpi.init((id, code) => {
    const done = completions.get(id);
    completions.delete(id);
    done?.(code);
  }, recvInfo);
  return new MpiCommunicator(mpi, place.rank, place.size, place.threads, options);
}
