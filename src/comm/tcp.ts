// The tcp backend: one process per rank, on any hosts, no MPI. Ranks meet at rank 0's address
// (MASTER_ADDR:MASTER_PORT, the torchrun convention), then every pair of ranks holds one
// authenticated socket. All-reduce is a ring (reduce-scatter, then all-gather): each rank sends
// and receives 2(P − 1)/P of the buffer whatever P is, and a chunk is reduced as its bytes arrive,
// so summing overlaps the transfer.
//
// tcp-wire.ts holds the frame format, tcp-link.ts the connections, tcp-rendezvous.ts how ranks
// meet and authenticate; this file, the communicator: collectives over the links.

import { CommunicationError, capacityExceeded, collectiveMismatch, commTimeout, messageSizeMismatch, peerFailed, receiveBufferSize } from '../errors.js';
import { kernel } from '../kernels/registry.js';
import { bufferShare, checkPeer, describeCollective, operations, type Communicator, type Operation, type ReduceOp } from './communicator.js';
import type { Server } from 'node:net';
import type { Link } from './tcp-link.js';

/** How long a closing rank waits for its last written bytes to leave before it drops them. */
const FLUSH_MS = 2000;
import { header, type Frame, Type } from './tcp-wire.js';
import type { TransportSecurity } from './tcp-seal.js';

export interface TcpOptions {
  rank: number;
  size: number;
  masterAddr: string;
  masterPort: number;
  secret: string;
  /** Every blocking call gives up after this long without progress. */
  timeoutMs: number;
  /** The largest message, in floats (frames claiming more are garbage). */
  capacity: number;
  /** One-line notices: refused connections, garbage. */
  log?: (line: string) => void;
  /** How long a connection to this rank may take to prove the secret (default 5 s, at most timeoutMs): a stranger is not held for the collective timeout. */
  handshakeMs?: number;
  /** What protects frames after the handshake (default 'encrypt'; every rank must agree). */
  security?: TransportSecurity;
  /** The job's identity (`converge launch` sets CONVERGE_JOB_ID): ranks of another job are refused, named. */
  job?: string;
  /** The address this rank listens on (rank 0: MASTER_ADDR); default, the address it reaches rank 0 from. */
  bind?: string;
}

export class TcpCommunicator implements Communicator {
  readonly backend = 'tcp';
  bytesSent = 0;
  private seq = 0;
  private operation: Operation = 'idle';
  private failure: Error | null = null;
  private readonly waiters = new Set<(error: Error) => void>();
  private mailWaiter: (() => void) | null = null;
  private scratch = new Float32Array(0);
  private readonly statusReplies = new Map<number, string>();
  /** The first failure this rank heard of; an abort passes it on rather than its own echo of it. */
  private rootCause: string | null = null;

  constructor(
    readonly rank: number,
    readonly size: number,
    private readonly links: (Link | null)[],
    private readonly server: Server | null,
    private readonly options: TcpOptions,
  ) {}

  /** Wires the links' events to this communicator (called once every link is authenticated). */
  attach(): void {
    for (const link of this.links) {
      if (!link) continue;
      // A peer's end is judged where its frames arrive: its goodbye comes behind its last data on
      // the connection this rank reads, and on a real link the other connection's close can
      // overtake both. (Judged on either, a rank that left cleanly read as lost while its last
      // gather was still on the wire.) A peer that dies closes both; writing to it fails anyway.
      link.reader.socket.on('close', () => this.lost(link, 'closed its connection: it exited or was killed'));
      for (const socket of [link.socket, link.reader.socket]) socket.on('error', (error) => this.lost(link, `broke its connection (${error.message})`));
    }
  }

  private lost(link: Link, how: string): void {
    if (link.closed) return;
    link.closed = true;
    if (this.failure) return;
    // a peer that said goodbye may close; only waiting for it is an error
    if (link.finished && !link.receive) return;
    this.failBecause(link.finished ? this.leftEarly(link) : `rank ${link.peer} (last seen in ${link.lastSeen}) ${how}.`);
  }

  /**
   * Fails this rank with `cause` (unless it heard of another first), and tells its peers: they may
   * not be waiting for the peer that caused it (a rank that finished early closed only its own connections).
   */
  private failBecause(cause: string): Error {
    this.rootCause ??= cause;
    this.tellPeers();
    this.fail(peerFailed(this.rank, this.describeCurrent(), this.rootCause));
    return this.failure!;
  }

  /** What a peer that said goodbye did, once this rank needs it (waits for it, or sends to it). */
  private leftEarly(link: Link): string {
    return `rank ${link.peer} (last seen in ${link.lastSeen}) finished its job and left while rank ${this.rank} still needs it; the ranks ran different numbers of operations.`;
  }

  /** Fails everything pending and everything to come with `error`. */
  private fail(error: Error): void {
    if (this.failure) return;
    this.failure = error;
    for (const waiter of this.waiters) waiter(error);
    this.waiters.clear();
  }

  private describeCurrent(): string {
    if (this.operation === 'idle') return `operation after #${this.seq}`;
    if (this.operation === 'send' || this.operation === 'recv') return this.operation;
    return `${this.operation} #${this.seq}`;
  }

  onFrame(link: Link, frame: Frame, payload: Buffer): void {
    switch (frame.type) {
      case Type.Data:
        if (frame.operation === operations.indexOf('send')) {
          link.mail.push({ frame, payload });
          this.mailWaiter?.();
        } else if (link.receive) {
          // arrived whole while we waited; anything else than what we wait for is a mismatch
          if (!link.completeFrom(frame, payload)) this.mismatch(link, frame);
        } else link.keepEarly(frame, payload);
        return;
      case Type.Abort:
        link.closed = true;
        this.rootCause ??= payload.toString('utf8');
        this.fail(peerFailed(this.rank, this.describeCurrent(), this.rootCause));
        return;
      case Type.StatusRequest: {
        const body = Buffer.from(this.operation === 'idle' ? `computing after operation #${this.seq}` : this.describeCurrent());
        link.send([header(Type.Status, 0, 0, this.seq, 0, 0, body.length), body]);
        return;
      }
      case Type.Status:
        this.statusReplies.set(link.peer, payload.toString('utf8'));
        return;
      case Type.Bye:
        link.finished = true;
        return;
      default:
        this.garbage(link, `a frame of type ${frame.type} after the handshake`);
    }
  }

  garbage(link: Link, what: string): void {
    const message = `rank ${this.rank}: rank ${link.peer} sent garbage: ${what}; the connection is dropped — check that only converge ranks of this job reach this port.`;
    this.options.log?.(message);
    link.closed = true;
    link.socket.destroy();
    link.reader.socket.destroy();
    this.fail(new CommunicationError(message, 'GARBAGE'));
  }

  /** What arrived from a peer failed its seal: someone between the ranks altered it. Every rank stops. */
  tampered(link: Link, what: string): void {
    if (this.failure) return;
    const message = `rank ${this.rank}: data from rank ${link.peer} failed authentication (${what}): the connection between them was altered; the job stops — check the network path between the two ranks.`;
    this.options.log?.(message);
    // the peer hears it too, on the connection this rank writes (the altered one may be the other)
    this.abort(message);
    link.closed = true;
    link.reader.socket.destroy();
  }

  private mismatch(link: Link, frame: Frame): void {
    const expect = link.receive!.expect!;
    const name = (operation: number) => operations[operation] ?? `operation ${operation}`;
    const mine = describeCollective(name(expect.operation), expect.count, expect.root);
    const theirs = describeCollective(name(frame.operation), frame.count, frame.root);
    // (a frame that matches in everything but its length)
    const error = collectiveMismatch(this.rank, expect.seq, frame.seq === expect.seq && frame.part === expect.part && frame.operation === expect.operation && frame.count === expect.count && frame.root === expect.root
      ? `rank ${this.rank} expected ${expect.bytes} bytes of ${mine} from rank ${link.peer}, which sent ${frame.bytes}`
      : `rank ${this.rank} called ${mine} but rank ${link.peer} called ${theirs} as its #${frame.seq}`);
    this.abort(error.message);
    this.fail(error);
  }

  allocate(length: number): Float32Array {
    return new Float32Array(length);
  }

  private check(operation: Operation, count: number): void {
    if (this.failure) throw this.failure;
    if (count > this.options.capacity) throw capacityExceeded(`tcp ${operation}`, count, this.options.capacity);
  }

  private begin(operation: Operation, count: number): number {
    this.check(operation, count);
    this.operation = operation;
    return ++this.seq;
  }

  private end(): void {
    this.operation = 'idle';
  }

  /** Writes one frame; resolves once the socket has taken the bytes (the caller may then reuse them). */
  private write(peer: number, frameHeader: Buffer, payload: Uint8Array): Promise<void> {
    const link = this.links[peer]!;
    // closed without a failure: the peer said goodbye and left
    if (link.closed) return Promise.reject(this.failure ?? this.failBecause(this.leftEarly(link)));
    this.bytesSent += payload.length;
    return new Promise((resolve, reject) => {
      // (an empty payload adds nothing to the frame)
      link.send([frameHeader, payload], (error) => (error ? reject(this.writeFailed(link, error)) : resolve()));
    });
  }

  /** A write that failed: the peer is gone; say so as its failure, not as a socket error. */
  private writeFailed(link: Link, error: Error): Error {
    this.lost(link, `broke its connection (${error.message})`);
    return this.failure ?? error;
  }

  private sendData(peer: number, operation: number, part: number, seq: number, count: number, root: number, data: Float32Array, start: number, end: number): Promise<void> {
    const bytes = new Uint8Array(data.buffer, data.byteOffset + 4 * start, 4 * (end - start));
    return this.write(peer, header(Type.Data, operation, part, seq, count, root, bytes.length), bytes);
  }

  /**
   * Waits for the next collective frame from `peer` and puts its payload into data[start, end)
   * (copied, or summed in as it arrives). Times out after --timeout without a frame.
   */
  private receiveData(peer: number, operation: number, part: number, seq: number, count: number, root: number, data: Float32Array, start: number, end: number, sum: boolean): Promise<void> {
    const link = this.links[peer]!;
    const length = end - start;
    const expect = { type: Type.Data, operation, part, seq, count, root, bytes: 4 * length };
    const early = link.shiftEarly();
    if (early) {
      const f = early.frame;
      if (f.seq !== seq || f.operation !== operation || f.count !== count || f.root !== root || f.part !== part || f.bytes !== 4 * length) {
        link.receive = { expect, target: null, sumInto: null, sumAt: 0, received: 0, summed: 0, done: () => {} };
        this.mismatch(link, f);
        link.receive = null;
        return Promise.reject(this.failure);
      }
      // pooled payloads start at byte 0 of their own memory: read as floats in place
      const values = new Float32Array(early.payload.buffer, early.payload.byteOffset, length);
      if (sum) kernel('addInto')(data, start, values, 0, length);
      else kernel('copy')(data, start, values, 0, length);
      link.release(early.payload);
      return Promise.resolve();
    }
    if (this.failure) return Promise.reject(this.failure);
    if (link.finished) return Promise.reject(this.failBecause(this.leftEarly(link)));
    let target: Uint8Array;
    if (sum) {
      if (this.scratch.length < length) this.scratch = new Float32Array(Math.max(length, 2 * this.scratch.length));
      target = new Uint8Array(this.scratch.buffer, 0, 4 * length);
    } else target = new Uint8Array(data.buffer, data.byteOffset + 4 * start, 4 * length);
    return new Promise<void>((resolve, reject) => {
      let timer: NodeJS.Timeout;
      const failWith = (error: Error) => {
        clearTimeout(timer);
        this.waiters.delete(failWith);
        link.receive = null;
        reject(error);
      };
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => void this.timedOut(peer).then(failWith), this.options.timeoutMs);
      };
      arm();
      this.waiters.add(failWith);
      link.receive = {
        expect, target, sumInto: sum ? data : null, sumAt: start, received: 0, summed: 0,
        done: () => {
          clearTimeout(timer);
          this.waiters.delete(failWith);
          resolve();
        },
      };
    });
  }

  /**
   * After a timeout: asks every peer where it is, so the error can name the rank that is behind.
   * Receives that time out together (a root waiting on every rank) share one inquiry.
   */
  private timedOut(peer: number): Promise<Error> {
    this.inquiry ??= this.inquire(peer);
    return this.inquiry;
  }

  private inquiry: Promise<Error> | null = null;

  private async inquire(peer: number): Promise<Error> {
    const operation = this.describeCurrent();
    this.statusReplies.clear();
    for (const link of this.links) {
      if (link && !link.closed) link.send([header(Type.StatusRequest, 0, 0, this.seq, 0, 0, 0)]);
    }
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const behind: string[] = [];
    for (let r = 0; r < this.size; r++) {
      if (r === this.rank || !this.links[r]) continue;
      const status = this.statusReplies.get(r);
      if (status === undefined) behind.push(`rank ${r} (not answering)`);
      else if (!status.endsWith(`#${this.seq}`)) behind.push(`rank ${r} (${status})`);
    }
    const waitingFor = behind.length > 0 ? behind.join(', ') : `rank ${peer}`;
    const error = commTimeout(this.rank, operation, this.options.timeoutMs / 1000, waitingFor);
    this.abort(error.message);
    this.fail(error);
    return error;
  }

  // ---- collectives

  async allreduce(buffer: Float32Array, op: ReduceOp = 'sum'): Promise<void> {
    const n = buffer.length;
    const seq = this.begin('allreduce', n);
    if (this.size > 1) {
      await this.ringReduceScatter(buffer, seq, operations.indexOf('allreduce'), n, op === 'mean' ? -2 : -1);
      if (op === 'mean') this.scaleShare(buffer);
      await this.ringAllgather(buffer, seq, operations.indexOf('allreduce'), n, op === 'mean' ? -2 : -1, this.size - 1);
    }
    this.end();
  }

  async reduceScatter(buffer: Float32Array, op: ReduceOp = 'sum'): Promise<[number, number]> {
    const n = buffer.length;
    const seq = this.begin('reduceScatter', n);
    if (this.size > 1) {
      await this.ringReduceScatter(buffer, seq, operations.indexOf('reduceScatter'), n, op === 'mean' ? -2 : -1);
      if (op === 'mean') this.scaleShare(buffer);
    }
    this.end();
    return bufferShare(n, this.rank, this.size);
  }

  async allgatherShares(buffer: Float32Array): Promise<void> {
    const n = buffer.length;
    const seq = this.begin('allgatherShares', n);
    if (this.size > 1) await this.ringAllgather(buffer, seq, operations.indexOf('allgatherShares'), n, -1, 0);
    this.end();
  }

  private scaleShare(buffer: Float32Array): void {
    const [s, e] = bufferShare(buffer.length, this.rank, this.size);
    kernel('reduceStrided')(buffer, 0, 0, 1, s, e, buffer, 0, 1 / this.size);
  }

  /** Ring reduce-scatter: after P − 1 steps rank r holds the sum of share r. */
  private async ringReduceScatter(buffer: Float32Array, seq: number, operation: number, count: number, root: number): Promise<void> {
    const P = this.size;
    const right = (this.rank + 1) % P;
    const left = (this.rank + P - 1) % P;
    for (let step = 0; step < P - 1; step++) {
      const [ss, se] = bufferShare(count, (this.rank - step - 1 + 2 * P) % P, P);
      const [rs, re] = bufferShare(count, (this.rank - step - 2 + 2 * P) % P, P);
      await Promise.all([
        this.sendData(right, operation, step, seq, count, root, buffer, ss, se),
        this.receiveData(left, operation, step, seq, count, root, buffer, rs, re, true),
      ]);
    }
  }

  /** Ring all-gather of shares: rank r starts with share r; parts are numbered from `firstPart`. */
  private async ringAllgather(buffer: Float32Array, seq: number, operation: number, count: number, root: number, firstPart: number): Promise<void> {
    const P = this.size;
    const right = (this.rank + 1) % P;
    const left = (this.rank + P - 1) % P;
    for (let step = 0; step < P - 1; step++) {
      const [ss, se] = bufferShare(count, (this.rank - step + P) % P, P);
      const [rs, re] = bufferShare(count, (this.rank - step - 1 + 2 * P) % P, P);
      await Promise.all([
        this.sendData(right, operation, firstPart + step, seq, count, root, buffer, ss, se),
        this.receiveData(left, operation, firstPart + step, seq, count, root, buffer, rs, re, false),
      ]);
    }
  }

  async allgather(send: Float32Array, recv: Float32Array): Promise<void> {
    const n = send.length;
    if (recv.length !== n * this.size) throw receiveBufferSize(this.rank, 'allgather', n * this.size, recv.length);
    const seq = this.begin('allgather', n);
    kernel('copy')(recv, this.rank * n, send, 0, n);
    const P = this.size;
    const right = (this.rank + 1) % P;
    const left = (this.rank + P - 1) % P;
    const operation = operations.indexOf('allgather');
    for (let step = 0; step < P - 1; step++) {
      const s = (this.rank - step + P) % P;
      const r = (this.rank - step - 1 + 2 * P) % P;
      await Promise.all([
        this.sendData(right, operation, step, seq, n, -1, recv, s * n, (s + 1) * n),
        this.receiveData(left, operation, step, seq, n, -1, recv, r * n, (r + 1) * n, false),
      ]);
    }
    this.end();
  }

  async gather(send: Float32Array, recv: Float32Array | null, root: number): Promise<void> {
    const n = send.length;
    checkPeer(this.rank, this.size, 'gather root', root);
    if (this.rank === root && (!recv || recv.length !== n * this.size)) {
      throw receiveBufferSize(this.rank, 'gather at the root', n * this.size, recv?.length ?? 'none');
    }
    const seq = this.begin('gather', n);
    const operation = operations.indexOf('gather');
    if (this.rank === root) {
      kernel('copy')(recv!, root * n, send, 0, n);
      const pending: Promise<void>[] = [];
      for (let r = 0; r < this.size; r++) if (r !== root) pending.push(this.receiveData(r, operation, 0, seq, n, root, recv!, r * n, (r + 1) * n, false));
      await Promise.all(pending);
    } else await this.sendData(root, operation, 0, seq, n, root, send, 0, n);
    this.end();
  }

  async broadcast(buffer: Float32Array, root: number): Promise<void> {
    const n = buffer.length;
    checkPeer(this.rank, this.size, 'broadcast root', root);
    const seq = this.begin('broadcast', n);
    const operation = operations.indexOf('broadcast');
    if (this.rank === root) {
      const pending: Promise<void>[] = [];
      for (let r = 0; r < this.size; r++) if (r !== root) pending.push(this.sendData(r, operation, 0, seq, n, root, buffer, 0, n));
      await Promise.all(pending);
    } else await this.receiveData(root, operation, 0, seq, n, root, buffer, 0, n, false);
    this.end();
  }

  async barrier(): Promise<void> {
    // everyone tells rank 0 it arrived; rank 0 tells everyone to go on
    const seq = this.begin('barrier', 0);
    const operation = operations.indexOf('barrier');
    const empty = new Float32Array(0);
    if (this.rank === 0) {
      const arrivals: Promise<void>[] = [];
      for (let r = 1; r < this.size; r++) arrivals.push(this.receiveData(r, operation, 0, seq, 0, 0, empty, 0, 0, false));
      await Promise.all(arrivals);
      await Promise.all(Array.from({ length: this.size - 1 }, (_, i) => this.sendData(i + 1, operation, 1, seq, 0, 0, empty, 0, 0)));
    } else if (this.size > 1) {
      await this.sendData(0, operation, 0, seq, 0, 0, empty, 0, 0);
      await this.receiveData(0, operation, 1, seq, 0, 0, empty, 0, 0, false);
    }
    this.end();
  }

  async send(buffer: Float32Array, dest: number): Promise<void> {
    checkPeer(this.rank, this.size, 'send to', dest);
    this.check('send', buffer.length);
    this.operation = 'send';
    // (a message's place is its place on the connection: receives take whole messages in order, and read no number)
    await this.sendData(dest, operations.indexOf('send'), 0, 0, buffer.length, -1, buffer, 0, buffer.length);
    this.operation = 'idle';
  }

  async recv(buffer: Float32Array, source = -1): Promise<number> {
    checkPeer(this.rank, this.size, 'recv from', source);
    this.check('recv', buffer.length);
    this.operation = 'recv';
    const started = Date.now();
    for (;;) {
      if (this.failure) throw this.failure;
      for (let r = 0; r < this.size; r++) {
        const link = this.links[r];
        if (!link || (source >= 0 && r !== source) || link.mail.length === 0) continue;
        const { payload } = link.mail.shift()!;
        if (payload.length !== 4 * buffer.length) {
          const error = messageSizeMismatch(this.rank, buffer.length, payload.length / 4, r);
          this.abort(error.message);
          throw error;
        }
        new Uint8Array(buffer.buffer, buffer.byteOffset, payload.length).set(payload);
        this.operation = 'idle';
        return r;
      }
      // no message can come any more: every rank it may come from said goodbye
      const from = source >= 0 ? [this.links[source]!] : this.links.filter((link): link is Link => link !== null);
      if (from.every((link) => link.finished)) throw this.failBecause(this.leftEarly(from[0]));
      const waited = Date.now() - started;
      if (waited >= this.options.timeoutMs) {
        throw await this.timedOut(source >= 0 ? source : (this.rank + 1) % this.size);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => done(), this.options.timeoutMs - waited);
        const done = () => {
          clearTimeout(timer);
          this.mailWaiter = null;
          this.waiters.delete(done);
          resolve();
        };
        this.mailWaiter = done;
        this.waiters.add(done);
      });
    }
  }

  abort(reason: string): void {
    this.rootCause ??= reason;
    this.tellPeers();
    this.fail(new CommunicationError(reason, 'ABORTED'));
  }

  /** Sends the root cause to every peer still connected: each fails with it at once, wherever it waits. */
  private tellPeers(): void {
    const body = Buffer.from(this.rootCause!);
    for (const link of this.links) {
      if (!link || link.closed) continue;
      link.send([header(Type.Abort, 0, 0, this.seq, 0, 0, body.length), body]);
    }
  }

  /** Closes every connection (after the job, or after a failure). */
  close(): void {
    for (const link of this.links) {
      if (!link) continue;
      if (!link.closed) link.send([header(Type.Bye, 0, 0, this.seq, 0, 0, 0)]);
      link.closed = true;
      // the bytes already written still go out: the socket holds the process until they have left
      // (an abort's message, queued behind a gradient, was lost when the process exited at once);
      // a peer that never reads (stalled) holds it FLUSH_MS at most
      for (const socket of [link.socket, link.reader.socket]) {
        socket.end();
        if (socket.writableFinished) socket.unref();
        else {
          socket.once('finish', () => socket.unref());
          setTimeout(() => socket.destroy(), FLUSH_MS).unref();
        }
      }
    }
    this.server?.close();
  }
}
