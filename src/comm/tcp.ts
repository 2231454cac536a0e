// The tcp backend: one process per rank, on any hosts, no MPI. Ranks meet at rank 0's address
// (MASTER_ADDR:MASTER_PORT, the torchrun convention), then every pair of ranks holds one
// authenticated socket. All-reduce is a ring (reduce-scatter, then all-gather): each rank sends
// and receives 2(P − 1)/P of the buffer whatever P is, and a chunk is reduced as its bytes arrive,
// so summing overlaps the transfer.
//
// Wire format: binary frames, a 24-byte header then the payload (raw float32, little-endian):
//   u32 magic 'CVG1' | u8 type | u8 operation | u16 part | u32 seq | u32 count | i32 root | u32 bytes
// Every collective frame carries the operation's sequence number and fingerprint (operation,
// element count, root); a frame that disagrees with what the receiver is doing is a mismatch
// error naming both ranks and both operations. A frame with a wrong magic, an unknown type or a
// length beyond the communicator's capacity is garbage: the connection is dropped with an error,
// never parsed further and never allocated for.
//
// Security: before any data, each connection proves the job secret both ways (HMAC-SHA256 over
// fresh nonces); a peer that fails is refused and logged. Rank 0 listens on the address given,
// the others on the address they reach rank 0 from, never on all interfaces.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { CommunicationError, capacityExceeded, collectiveMismatch, commTimeout, messageSizeMismatch, peerFailed, receiveBufferSize } from '../errors.js';
import { kernel } from '../kernels/registry.js';
import { bufferShare, describeCollective, operations, type Communicator, type Operation, type ReduceOp } from './communicator.js';

const MAGIC = 0x31475643; // 'CVG1' little-endian
const HEADER = 24;
const SEGMENT = Number(process.env.CONVERGE_TCP_SEGMENT ?? 1 << 20);
const enum Type {
  Data = 1,
  Abort = 2,
  Hello = 3, // rank → rank 0: [rank, size, port] + address
  Table = 4, // rank 0 → rank: every rank's address and port
  Challenge = 5,
  Auth = 6,
  AuthOk = 7,
  StatusRequest = 8,
  Status = 9, // [seq, operation, in an operation?]
  Bye = 10, // the sender finished its job and closes: not a failure, unless someone still waits for it
}
const TYPES = 10;
/** A handshake frame (challenge, proof, address, the rank table) is at most this long. */
const HANDSHAKE_BYTES = 65536;

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
}

interface Frame {
  type: number;
  operation: number;
  part: number;
  seq: number;
  count: number;
  root: number;
  bytes: number;
}

/** What a rank waits for from one peer: the next frame, delivered into `target` (or summed into it). */
interface Receive {
  expect: { type: Type; operation: number; part: number; seq: number; count: number; root: number; bytes: number } | null; // null: any p2p message
  target: Uint8Array | null; // where the payload goes (copy), or the scratch it lands in before summing
  sumInto: Float32Array | null; // add the payload, as it arrives, into sumInto[sumAt …]
  sumAt: number;
  received: number;
  summed: number; // floats already added
  done: (frame: Frame) => void;
}

function hmac(secret: string, ...parts: (string | Buffer)[]): Buffer {
  const h = createHmac('sha256', secret);
  for (const part of parts) h.update(part);
  return h.digest();
}

/** A connection to one peer: frame parsing, the receive it is waiting on, and what arrived early. */
class Link {
  peer = -1;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private frame: Frame | null = null; // header parsed, payload pending
  private frameReceive: Receive | null = null; // the receive the pending payload goes straight into
  private payloadTaken = 0;
  private early: { frame: Frame; payload: Buffer }[] = []; // collective frames nobody waits for yet
  readonly mail: { frame: Frame; payload: Buffer }[] = []; // point-to-point messages not yet received
  receive: Receive | null = null;
  private earlyPayload: Buffer | null = null;
  lastSeen = 'the rendezvous';
  closed = false;
  finished = false; // said goodbye

  /** Where this rank writes to the peer (the connection the peer dialed). */
  readonly socket: Socket;

  constructor(
    peer: number,
    readonly reader: Source, // the connection this rank dialed: the peer's frames arrive here
    writer: Source,
    private readonly limit: () => number,
    private readonly onFrame: (link: Link, frame: Frame, payload: Buffer | null) => void,
    private readonly onGarbage: (link: Link, what: string) => void,
  ) {
    this.peer = peer;
    this.socket = writer.socket;
    reader.listen((chunk) => this.push(chunk));
    // nothing may arrive where this rank only writes
    writer.listen(() => this.onGarbage(this, 'bytes on the connection it only reads from'));
  }

  private push(chunk: Buffer): void {
    this.parse(chunk);
    // the reader's bytes live in a buffer reused for the next read: keep a copy of a partial header
    if (this.chunks.length > 0) this.chunks = [Buffer.from(Buffer.concat(this.chunks))];
  }

  private parse(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    while (!this.closed) {
      if (!this.frame) {
        if (this.buffered < HEADER) return;
        const header = this.take(HEADER);
        const frame = readHeader(header);
        const magic = header.readUInt32LE(0);
        if (magic !== MAGIC) return this.onGarbage(this, `a frame with magic 0x${magic.toString(16)} (expected 0x${MAGIC.toString(16)})`);
        if (frame.type < 1 || frame.type > TYPES) return this.onGarbage(this, `a frame of unknown type ${frame.type}`);
        if (frame.bytes > this.limit()) return this.onGarbage(this, `a frame of ${frame.bytes} bytes, more than the ${this.limit()} allowed`);
        this.frame = frame;
        this.payloadTaken = 0;
        this.earlyPayload = null;
        this.frameReceive = this.receive && this.matches(this.receive, frame) ? this.receive : null;
        if (frame.type === Type.Data && frame.operation !== operations.indexOf('send')) this.lastSeen = `${operations[frame.operation]} #${frame.seq}`;
      }
      const frame = this.frame;
      const wanted = frame.bytes - this.payloadTaken;
      const available = Math.min(wanted, this.buffered);
      const receive = this.frameReceive;
      if (receive && receive.target) {
        // straight into the waiting buffer (and summed as whole floats arrive)
        this.takeInto(receive.target, receive.received, available);
        receive.received += available;
        this.payloadTaken += available;
        if (receive.sumInto) this.sumArrived(receive, this.payloadTaken === frame.bytes);
      } else if (available > 0) {
        this.earlyPayload ??= this.borrow(frame.bytes);
        this.takeInto(this.earlyPayload, this.payloadTaken, available);
        this.payloadTaken += available;
      }
      if (this.payloadTaken < frame.bytes) return;
      this.frame = null;
      this.frameReceive = null;
      if (receive && receive.target) {
        this.receive = null;
        receive.done(frame);
      } else {
        const payload = this.earlyPayload ?? this.borrow(0);
        this.earlyPayload = null;
        this.onFrame(this, frame, payload);
      }
    }
  }

  /** A frame that completed before its receive was posted (or while it was): hand it over. */
  completeFrom(frame: Frame, payload: Buffer): boolean {
    const receive = this.receive;
    if (!receive || !this.matches(receive, frame)) return false;
    this.receive = null;
    receive.target!.set(payload);
    receive.received = payload.length;
    if (receive.sumInto) this.sumArrived(receive, true);
    this.release(payload);
    receive.done(frame);
    return true;
  }

  /** Whether a frame is the one a receive waits for: same sequence number, fingerprint and part. */
  private matches(receive: Receive, frame: Frame): boolean {
    if (frame.type !== Type.Data) return false;
    const p2p = frame.operation === operations.indexOf('send');
    if (receive.expect === null) return false; // any-source receives take whole messages from the mail
    if (p2p !== (receive.expect.operation === operations.indexOf('send'))) return false;
    const e = receive.expect;
    return frame.seq === e.seq && frame.operation === e.operation && frame.count === e.count && frame.root === e.root && frame.part === e.part && frame.bytes === e.bytes;
  }

  private sumArrived(receive: Receive, complete: boolean): void {
    const floats = Math.floor(receive.received / 4);
    // sum in pieces of 64 Ki floats while the rest is still on the wire
    if (!complete && floats - receive.summed < 65536) return;
    const scratch = new Float32Array(receive.target!.buffer, receive.target!.byteOffset, floats);
    kernel('addInto')(receive.sumInto!, receive.sumAt + receive.summed, scratch, receive.summed, floats - receive.summed);
    receive.summed = floats;
  }

  /** Removes and returns the first n buffered bytes (n ≤ buffered). */
  private take(n: number): Buffer {
    const out = Buffer.allocUnsafe(n);
    this.takeInto(out, 0, n);
    return out;
  }

  private takeInto(target: Uint8Array, at: number, n: number): void {
    let copied = 0;
    while (copied < n) {
      const head = this.chunks[0];
      const piece = Math.min(head.length, n - copied);
      target.set(piece === head.length ? head : head.subarray(0, piece), at + copied);
      copied += piece;
      if (piece === head.length) this.chunks.shift();
      else this.chunks[0] = head.subarray(piece);
    }
    this.buffered -= n;
  }

  /**
   * A buffer for a payload nobody waits for yet (the peer ran ahead). Reused: a fresh 32 MiB
   * buffer costs ~100 ms of page faults on these machines, more than the transfer itself. Each has
   * its own 4-byte-aligned memory, so floats can be read from it in place.
   */
  private readonly pool: Buffer[] = [];

  private borrow(bytes: number): Buffer {
    const i = this.pool.findIndex((buffer) => buffer.length >= bytes);
    const whole = i >= 0 ? this.pool.splice(i, 1)[0] : Buffer.allocUnsafeSlow(Math.max(bytes, 64));
    return whole.subarray(0, bytes);
  }

  /** Gives a payload's memory back for the next early frame (keeps a few). */
  release(payload: Buffer): void {
    if (this.pool.length < 4) this.pool.push(Buffer.from(payload.buffer, 0, payload.buffer.byteLength));
  }

  /** An early collective frame, if the peer ran ahead. */
  shiftEarly(): { frame: Frame; payload: Buffer } | undefined {
    return this.early.shift();
  }

  keepEarly(frame: Frame, payload: Buffer): void {
    this.early.push({ frame, payload });
  }
}

/** The fields of the header at the start of `bytes` (the inverse of header()). */
function readHeader(bytes: Buffer): Frame {
  return { type: bytes.readUInt8(4), operation: bytes.readUInt8(5), part: bytes.readUInt16LE(6), seq: bytes.readUInt32LE(8), count: bytes.readUInt32LE(12), root: bytes.readInt32LE(16), bytes: bytes.readUInt32LE(20) };
}

function header(type: Type, operation: number, part: number, seq: number, count: number, root: number, bytes: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt8(type, 4);
  h.writeUInt8(operation, 5);
  h.writeUInt16LE(part, 6);
  h.writeUInt32LE(seq >>> 0, 8);
  h.writeUInt32LE(count >>> 0, 12);
  h.writeInt32LE(root, 16);
  h.writeUInt32LE(bytes, 20);
  return h;
}

export class TcpCommunicator implements Communicator {
  readonly backend = 'tcp';
  bytesSent = 0;
  private seq = 0;
  private p2pSent: number[];
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
  ) {
    this.p2pSent = new Array(size).fill(0);
  }

  /** Wires the links' events to this communicator (called once every link is authenticated). */
  attach(): void {
    for (const link of this.links) {
      if (!link) continue;
      for (const socket of [link.socket, link.reader.socket]) {
        socket.on('close', () => this.lost(link, 'closed its connection: it exited or was killed'));
        socket.on('error', (error) => this.lost(link, `broke its connection (${error.message})`));
      }
    }
  }

  private lost(link: Link, how: string): void {
    if (link.closed) return;
    link.closed = true;
    if (this.failure) return;
    // a peer that said goodbye may close; only waiting for it is an error
    if (link.finished && !link.receive) return;
    if (link.finished) how = `finished its job and left while rank ${this.rank} waits for it; the ranks ran different numbers of collectives`;
    this.rootCause ??= `rank ${link.peer} (last seen in ${link.lastSeen}) ${how}.`;
    this.fail(peerFailed(this.rank, this.describeCurrent(), this.rootCause));
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
        link.socket.write(Buffer.concat([header(Type.Status, 0, 0, this.seq, 0, 0, body.length), body]));
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

  private mismatch(link: Link, frame: Frame): void {
    const expect = link.receive!.expect!;
    const name = (operation: number) => operations[operation] ?? `operation ${operation}`;
    const mine = describeCollective(name(expect.operation), expect.count, expect.root);
    const theirs = describeCollective(name(frame.operation), frame.count, frame.root);
    const error = collectiveMismatch(this.rank, expect.seq, frame.seq === expect.seq && frame.part === expect.part && frame.bytes !== expect.bytes && frame.operation === expect.operation
      ? `rank ${this.rank} expected ${expect.bytes} bytes of ${mine} from rank ${link.peer}, which sent ${frame.bytes}`
      : `rank ${this.rank} called ${mine} but rank ${link.peer} called ${theirs} (its #${frame.seq})`);
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
  private write(peer: number, frameHeader: Buffer, payload: Uint8Array | null): Promise<void> {
    const link = this.links[peer]!;
    if (link.closed) return Promise.reject(this.failure ?? peerFailed(this.rank, this.describeCurrent(), `rank ${peer} is gone.`));
    if (payload) this.bytesSent += payload.length;
    return new Promise((resolve, reject) => {
      link.socket.cork();
      link.socket.write(frameHeader);
      if (payload && payload.length > 0) {
        // in segments, so the peer starts reading (and summing) while the rest is written
        for (let at = 0; at < payload.length; at += SEGMENT) {
          const last = at + SEGMENT >= payload.length;
          const piece = payload.subarray(at, Math.min(payload.length, at + SEGMENT));
          if (last) link.socket.write(piece, (error) => (error ? reject(this.writeFailed(link, error)) : resolve()));
          else link.socket.write(piece);
          if (at === 0) link.socket.uncork();
        }
      } else {
        link.socket.write(Buffer.alloc(0), (error) => (error ? reject(this.writeFailed(link, error)) : resolve()));
        link.socket.uncork();
      }
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
    if (link.finished) {
      const error = peerFailed(this.rank, this.describeCurrent(), `rank ${peer} (last seen in ${link.lastSeen}) finished its job and left while rank ${this.rank} waits for it; the ranks ran different numbers of collectives.`);
      this.fail(error);
      return Promise.reject(error);
    }
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
      if (link && !link.closed) link.socket.write(header(Type.StatusRequest, 0, 0, this.seq, 0, 0, 0));
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
    this.check('send', buffer.length);
    this.operation = 'send';
    const number = this.p2pSent[dest]++;
    await this.sendData(dest, operations.indexOf('send'), 0, number, buffer.length, -1, buffer, 0, buffer.length);
    this.operation = 'idle';
  }

  async recv(buffer: Float32Array, source = -1): Promise<number> {
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
    const body = Buffer.from(this.rootCause);
    for (const link of this.links) {
      if (!link || link.closed) continue;
      link.socket.write(Buffer.concat([header(Type.Abort, 0, 0, this.seq, 0, 0, body.length), body]));
    }
    this.fail(new CommunicationError(reason, 'ABORTED'));
  }

  /** Closes every connection (after the job, or after a failure). */
  close(): void {
    for (const link of this.links) {
      if (!link) continue;
      if (!link.closed) link.socket.write(header(Type.Bye, 0, 0, this.seq, 0, 0, 0));
      link.closed = true;
      // the bytes already written still go out; a peer that never reads (stalled) must not keep this process alive
      for (const socket of [link.socket, link.reader.socket]) {
        socket.end();
        socket.unref();
      }
    }
    this.server?.close();
  }
}

// ---- rendezvous and handshake

/**
 * The bytes of one connection, handed to whoever listens now (the handshake, then a Link); bytes
 * that arrive between listeners are kept. Connections this rank dials are read with `onread` into
 * one reused buffer: Node's default reads allocate a fresh 64 KiB buffer each time, and touching
 * fresh pages (~12 µs per 4 KiB here) cost more than the transfer. Connections it accepts are only
 * written to after the handshake, and read the default way.
 */
class Source {
  private consumer: ((chunk: Buffer) => void) | null = null;
  private held: Buffer[] = [];
  socket!: Socket;

  /** `transient`: the chunk's memory is reused after the call, so what is held is copied. */
  feed(chunk: Buffer, transient: boolean): void {
    if (this.consumer) this.consumer(chunk);
    else this.held.push(transient ? Buffer.from(chunk) : chunk);
  }

  listen(consumer: (chunk: Buffer) => void): void {
    this.consumer = consumer;
    while (this.held.length > 0 && this.consumer === consumer) consumer(this.held.shift()!);
  }

  unlisten(): void {
    this.consumer = null;
  }

  /** Bytes a listener read past its end go first to the next one. */
  giveBack(rest: Buffer): void {
    if (rest.length > 0) this.held.unshift(Buffer.from(rest));
  }

  static accepted(socket: Socket): Source {
    const source = new Source();
    source.socket = socket;
    socket.on('data', (chunk: Buffer) => source.feed(chunk, false));
    return source;
  }
}

const READ_BUFFER = 1 << 20;

/** Reads exactly one small frame (handshake), or fails with what went wrong. */
function readHandshakeFrame(source: Source, expected: Type, timeoutMs: number, where: string): Promise<{ frame: Frame; payload: Buffer }> {
  const socket = source.socket;
  return new Promise((resolve, reject) => {
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new CommunicationError(`${where}: no handshake within ${timeoutMs / 1000} s.`, 'HANDSHAKE')), timeoutMs);
    const finish = (error: Error | null, value?: { frame: Frame; payload: Buffer }) => {
      clearTimeout(timer);
      source.unlisten();
      socket.off('close', onClose);
      socket.off('error', onClose);
      if (error) reject(error);
      else {
        // whatever followed the frame belongs to the next reader
        source.giveBack(data);
        resolve(value!);
      }
    };
    const onClose = () => finish(new CommunicationError(`${where}: the connection closed during the handshake (wrong secret, or not a converge rank).`, 'HANDSHAKE'));
    const onData = (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.length < HEADER) return;
      const frame = readHeader(data);
      if (data.readUInt32LE(0) !== MAGIC || frame.type !== expected || frame.bytes > HANDSHAKE_BYTES) {
        return finish(new CommunicationError(`${where}: garbage instead of the handshake (magic 0x${data.readUInt32LE(0).toString(16)}, type ${frame.type}, ${frame.bytes} bytes).`, 'HANDSHAKE'));
      }
      if (data.length < HEADER + frame.bytes) return;
      const payload = Buffer.from(data.subarray(HEADER, HEADER + frame.bytes));
      data = data.subarray(HEADER + frame.bytes);
      finish(null, { frame, payload });
    };
    socket.on('close', onClose);
    socket.on('error', onClose);
    source.listen(onData);
  });
}

const sendFrame = (socket: Socket, type: Type, payload: Buffer, seq = 0) => socket.write(Buffer.concat([header(type, 0, 0, seq, 0, 0, payload.length), payload]));

/** The accepting side: challenge, check the peer's proof, prove ourselves. Returns the peer's rank. */
async function acceptHandshake(source: Source, options: TcpOptions): Promise<number> {
  const socket = source.socket;
  const where = `rank ${options.rank}: connection from ${socket.remoteAddress}:${socket.remotePort}`;
  const nonce = randomBytes(16);
  sendFrame(socket, Type.Challenge, nonce);
  const { payload } = await readHandshakeFrame(source, Type.Auth, options.timeoutMs, where);
  if (payload.length !== 8 + 16 + 32) throw new CommunicationError(`${where}: a malformed authentication of ${payload.length} bytes.`, 'HANDSHAKE');
  const peer = payload.readInt32LE(0);
  const size = payload.readInt32LE(4);
  const theirNonce = payload.subarray(8, 24);
  const proof = payload.subarray(24, 56);
  const expected = hmac(options.secret, 'converge-connect', nonce, payload.subarray(0, 8));
  if (!timingSafeEqual(proof, expected)) throw new CommunicationError(`${where}: refused: the peer does not know the job secret (CONVERGE_SECRET).`, 'BAD_SECRET');
  if (size !== options.size || peer < 0 || peer >= options.size || peer === options.rank) {
    throw new CommunicationError(`${where}: refused: it claims rank ${peer} of ${size}, but this job has ${options.size} ranks.`, 'HANDSHAKE');
  }
  sendFrame(socket, Type.AuthOk, hmac(options.secret, 'converge-accept', theirNonce));
  return peer;
}

/** The connecting side: answer the challenge, check the acceptor's proof. */
async function connectHandshake(source: Source, options: TcpOptions, where: string): Promise<void> {
  const { payload: challenge } = await readHandshakeFrame(source, Type.Challenge, options.timeoutMs, where);
  const identity = Buffer.alloc(8);
  identity.writeInt32LE(options.rank, 0);
  identity.writeInt32LE(options.size, 4);
  const nonce = randomBytes(16);
  sendFrame(source.socket, Type.Auth, Buffer.concat([identity, nonce, hmac(options.secret, 'converge-connect', challenge, identity)]));
  const { payload: proof } = await readHandshakeFrame(source, Type.AuthOk, options.timeoutMs, where);
  if (proof.length !== 32 || !timingSafeEqual(proof, hmac(options.secret, 'converge-accept', nonce))) {
    throw new CommunicationError(`${where}: the peer failed to prove the job secret; refusing to send it data.`, 'BAD_SECRET');
  }
}

/** Connects (retrying while nobody listens yet), reading into one reused buffer. */
function dial(host: string, port: number, timeoutMs: number, where: string, opened: Socket[]): Promise<Source> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const source = new Source();
      const socket = connect({ host, port, onread: { buffer: Buffer.allocUnsafeSlow(READ_BUFFER), callback: (bytes: number, buffer: Uint8Array) => {
        source.feed(Buffer.from(buffer.buffer, buffer.byteOffset, bytes), true);
        return true;
      } } });
      source.socket = socket;
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
        opened.push(socket);
        resolve(source);
      });
      socket.once('error', (error: NodeJS.ErrnoException) => {
        socket.destroy();
        // the peer may not be listening yet: retry until the timeout
        if ((error.code === 'ECONNREFUSED' || error.code === 'ECONNRESET') && Date.now() < deadline) setTimeout(attempt, 100);
        else reject(new CommunicationError(`${where}: cannot connect to ${host}:${port} (${error.code ?? error.message}) within ${timeoutMs / 1000} s; check MASTER_ADDR/MASTER_PORT and that rank 0 runs.`, 'CONNECT'));
      });
    };
    attempt();
  });
}

function listen(host: string, port: number, where: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer({ noDelay: true });
    server.once('error', (error: NodeJS.ErrnoException) => reject(new CommunicationError(`${where}: cannot listen on ${host}:${port} (${error.code ?? error.message}); is the port taken?`, 'LISTEN')));
    server.listen({ host, port }, () => resolve(server));
  });
}

/**
 * Joins the job. Every pair of ranks holds two connections, one per direction: each rank reads
 * from the connections it dialed and writes to those it accepted. Rank 0 listens on
 * masterAddr:masterPort; every other rank listens on the address it reaches rank 0 from, dials
 * rank 0, and says where it listens; rank 0 answers with everyone's address; then every rank
 * dials every other.
 */
export async function connectTcp(options: TcpOptions): Promise<TcpCommunicator> {
  const opened: { servers: Server[]; sockets: Socket[] } = { servers: [], sockets: [] };
  try {
    return await rendezvous(options, opened);
  } catch (error) {
    // nothing of a failed rendezvous may keep the process alive
    for (const server of opened.servers) server.close();
    for (const socket of opened.sockets) socket.destroy();
    throw error;
  }
}

async function rendezvous(options: TcpOptions, opened: { servers: Server[]; sockets: Socket[] }): Promise<TcpCommunicator> {
  const { rank, size } = options;
  const links: (Link | null)[] = new Array(size).fill(null);
  const where = `rank ${rank}`;
  if (size === 1) return new TcpCommunicator(rank, size, links, null, options);

  // the connections others dial to this rank: handshake, then (here) only written to
  const accepted = new Map<number, Source>();
  let onAccepted: () => void = () => {};
  const acceptAll = (server: Server) =>
    server.on('connection', (socket) => {
      opened.sockets.push(socket);
      socket.setNoDelay(true);
      const source = Source.accepted(socket);
      acceptHandshake(source, options).then(
        (peer) => {
          if (accepted.has(peer)) {
            options.log?.(`${where}: refused a second connection claiming rank ${peer} from ${socket.remoteAddress}.`);
            socket.destroy();
            return;
          }
          accepted.set(peer, source);
          onAccepted();
        },
        (error: Error) => {
          options.log?.(error.message);
          socket.destroy();
        },
      );
    });
  const waitForAccepts = (count: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const missing = Array.from({ length: size }, (_, r) => r).filter((r) => r !== rank && !accepted.has(r));
        reject(new CommunicationError(`${where}: rendezvous timed out after ${options.timeoutMs / 1000} s; rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} never connected — were all ${size} ranks started with the same MASTER_ADDR, MASTER_PORT and secret?`, 'RENDEZVOUS'));
      }, options.timeoutMs);
      onAccepted = () => {
        if (accepted.size >= count) {
          clearTimeout(timer);
          resolve();
        }
      };
      onAccepted();
    });

  const dialed = new Map<number, Source>();
  let server: Server;
  if (rank === 0) {
    server = await listen(options.masterAddr, options.masterPort, where);
    opened.servers.push(server);
    acceptAll(server);
    await waitForAccepts(size - 1);
    // every rank says where it listens; rank 0 answers with the whole table, then dials everyone
    const table: { host: string; port: number }[] = new Array(size);
    table[0] = { host: options.masterAddr, port: options.masterPort };
    await Promise.all(
      [...accepted.entries()].map(async ([peer, source]) => {
        const { payload } = await readHandshakeFrame(source, Type.Hello, options.timeoutMs, `${where}: rank ${peer}'s address`);
        const [host, port] = payload.toString('utf8').split(' ');
        table[peer] = { host, port: Number(port) };
      }),
    );
    const body = Buffer.from(JSON.stringify(table)); // once, at start-up: not the data path
    for (const source of accepted.values()) sendFrame(source.socket, Type.Table, body);
    await Promise.all(
      table.slice(1).map(async ({ host, port }, i) => {
        const source = await dial(host, port, options.timeoutMs, where, opened.sockets);
        await connectHandshake(source, options, `${where}: rank ${i + 1} at ${host}:${port}`);
        dialed.set(i + 1, source);
      }),
    );
  } else {
    const master = await dial(options.masterAddr, options.masterPort, options.timeoutMs, where, opened.sockets);
    await connectHandshake(master, options, `${where}: rank 0 at ${options.masterAddr}:${options.masterPort}`);
    dialed.set(0, master);
    const host = master.socket.localAddress!.replace(/^::ffff:/, '');
    server = await listen(host, 0, where);
    opened.servers.push(server);
    acceptAll(server);
    const port = (server.address() as { port: number }).port;
    sendFrame(master.socket, Type.Hello, Buffer.from(`${host} ${port}`));
    const { payload } = await readHandshakeFrame(master, Type.Table, options.timeoutMs, `${where}: the rank table from rank 0`);
    const table = JSON.parse(payload.toString('utf8')) as { host: string; port: number }[];
    await Promise.all(
      table.map(async ({ host: h, port: p }, peer) => {
        if (peer === 0 || peer === rank) return;
        const source = await dial(h, p, options.timeoutMs, where, opened.sockets);
        await connectHandshake(source, options, `${where}: rank ${peer} at ${h}:${p}`);
        dialed.set(peer, source);
      }),
    );
  }
  await waitForAccepts(size - 1);
  // the rank-0 connection of a rank carried the table: the Link reads it from here on
  let comm: TcpCommunicator | null = null;
  const early: { link: Link; frame: Frame; payload: Buffer }[] = [];
  const limit = () => HEADER + 4 * options.capacity + 1024;
  for (let peer = 0; peer < size; peer++) {
    if (peer === rank) continue;
    links[peer] = new Link(peer, dialed.get(peer)!, accepted.get(peer)!, limit, (l, f, p) => (comm ? comm.onFrame(l, f, p!) : early.push({ link: l, frame: f, payload: p! })), (l, what) => comm?.garbage(l, what));
  }
  comm = new TcpCommunicator(rank, size, links, server, options);
  comm.attach();
  for (const { link, frame, payload } of early) comm.onFrame(link, frame, payload);
  // from here on, connections are refused: the group is complete
  server.on('connection', (socket) => {
    options.log?.(`${where}: refused a connection from ${socket.remoteAddress} after the group formed.`);
    socket.destroy();
  });
  return comm;
}
