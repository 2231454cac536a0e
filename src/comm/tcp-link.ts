// The tcp backend's connections: a Source holds one socket's bytes until someone listens (the
// handshake, then a Link); a Link parses a peer's frames and delivers each to the receive that
// waits for it, summing collective payloads as their bytes arrive.

import type { Socket } from 'node:net';
import { kernel } from '../kernels/registry.js';
import { operations } from './communicator.js';
import { IN_FLIGHT, Opener, Sealer } from './tcp-seal.js';
import { HEADER, MAGIC, SEGMENT, TYPES, readHeader, type Frame, Type } from './tcp-wire.js';

/** What a rank waits for from one peer: the next frame, delivered into `target` (or summed into it). */
export interface Receive {
  expect: { type: Type; operation: number; part: number; seq: number; count: number; root: number; bytes: number } | null; // null: any p2p message
  target: Uint8Array | null; // where the payload goes (copy), or the scratch it lands in before summing
  sumInto: Float32Array | null; // add the payload, as it arrives, into sumInto[sumAt …]
  sumAt: number;
  received: number;
  summed: number; // floats already added
  done: (frame: Frame) => void;
}

/** A connection to one peer: frame parsing, the receive it is waiting on, and what arrived early. */
export class Link {
  readonly peer: number;
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
  readonly writer: Source;

  constructor(
    peer: number,
    readonly reader: Source, // the connection this rank dialed: the peer's frames arrive here
    writer: Source,
    private readonly limit: () => number,
    private readonly onFrame: (link: Link, frame: Frame, payload: Buffer | null) => void,
    private readonly onGarbage: (link: Link, what: string) => void,
    onTampered: (link: Link, what: string) => void,
  ) {
    this.peer = peer;
    this.writer = writer;
    this.socket = writer.socket;
    for (const source of [reader, writer]) {
      source.onBroken = (what) => onTampered(this, what);
      if (source.broken) onTampered(this, source.broken);
    }
    reader.listen((chunk) => this.push(chunk));
    // nothing may arrive where this rank only writes
    writer.listen(() => this.refuse('bytes on the connection it only reads from'));
  }

  /** Garbage from the peer: nothing after it is parsed. */
  private refuse(what: string): void {
    this.closed = true;
    this.onGarbage(this, what);
  }

  /** Writes one frame's pieces to the peer (sealed, if the job seals); `done` once the socket took them. */
  send(pieces: Uint8Array[], done?: (error?: Error | null) => void): void {
    this.writer.write(pieces, done);
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
        if (magic !== MAGIC) return this.refuse(`a frame with magic 0x${magic.toString(16)} (expected 0x${MAGIC.toString(16)})`);
        if (frame.type < 1 || frame.type > TYPES) return this.refuse(`a frame of unknown type ${frame.type}`);
        if (frame.bytes > this.limit()) return this.refuse(`a frame of ${frame.bytes} bytes, more than the ${this.limit()} allowed`);
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
    // (any-source receives take whole messages from the mail; a point-to-point message and a
    // collective differ in their operation, so neither completes a receive for the other)
    if (frame.type !== Type.Data || receive.expect === null) return false;
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
    // the smallest that fits: a large buffer is kept for a large payload
    let best = -1;
    for (let i = 0; i < this.pool.length; i++) if (this.pool[i].length >= bytes && (best < 0 || this.pool[i].length < this.pool[best].length)) best = i;
    const whole = best >= 0 ? this.pool.splice(best, 1)[0] : Buffer.allocUnsafeSlow(Math.max(bytes, 64));
    return whole.subarray(0, bytes);
  }

  /**
   * Gives a payload's memory back for the next early frame. The 4 largest are kept: keeping the
   * first 4 given back held on to the small ones of a job's first collectives, and every 32 MiB
   * payload after them that came early paid for a fresh buffer (a 64 MiB all-reduce on 2 ranks,
   * after smaller ones: 120–140 ms instead of 33 in about one run of three).
   */
  release(payload: Buffer): void {
    this.pool.push(Buffer.from(payload.buffer, 0, payload.buffer.byteLength));
    if (this.pool.length > 4) {
      let smallest = 0;
      for (let i = 1; i < this.pool.length; i++) if (this.pool[i].length < this.pool[smallest].length) smallest = i;
      this.pool.splice(smallest, 1);
    }
  }

  /** An early collective frame, if the peer ran ahead. */
  shiftEarly(): { frame: Frame; payload: Buffer } | undefined {
    return this.early.shift();
  }

  keepEarly(frame: Frame, payload: Buffer): void {
    this.early.push({ frame, payload });
  }
}

/**
 * The bytes of one connection, handed to whoever listens now (the handshake, then a Link); bytes
 * that arrive between listeners are kept. Connections this rank dials are read with `onread` into
 * one reused buffer: Node's default reads allocate a fresh 64 KiB buffer each time, and touching
 * fresh pages (~12 µs per 4 KiB) cost more than the transfer. Connections it accepts are only
 * written to after the handshake, and read the default way. Once the handshake has agreed on
 * session keys (`secure`), what arrives is opened and what is written is sealed (tcp-seal.ts).
 */
export class Source {
  private consumer: ((chunk: Buffer) => void) | null = null;
  private held: Buffer[] = [];
  private opener: Opener | null = null;
  private sealer: Sealer | null = null;
  /** Why what arrived could not be opened (altered, or not records at all); then nothing more is delivered. */
  broken: string | null = null;
  /** Told once, when `broken` is set: whoever reads now decides what it ends. */
  onBroken: (what: string) => void = () => {};
  socket!: Socket;

  /** `transient`: the chunk's memory is reused after the call, so what is held is copied. */
  feed(chunk: Buffer, transient: boolean): void {
    if (this.opener) this.opener.push(chunk);
    else this.deliver(chunk, transient);
  }

  private deliver(chunk: Buffer, transient: boolean): void {
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

  /**
   * From here on what arrives is opened with `keys.read` and what is written sealed with
   * `keys.write`. Bytes that came before (held, unread) are records already: they are opened first.
   */
  secure(keys: { read: Buffer; write: Buffer }, encrypt: boolean): void {
    this.sealer = new Sealer(keys.write, encrypt);
    const raw = this.held;
    this.held = [];
    this.opener = new Opener(keys.read, encrypt, (plain) => this.deliver(plain, true), (what) => {
      this.broken = what;
      this.onBroken(what);
    });
    for (const chunk of raw) this.opener.push(chunk);
  }

  /**
   * Writes `pieces` in order, sealed once secure; `done` once the socket has taken the last of
   * them (the caller may then reuse the memory). Large pieces go in segments, the first ones
   * together, so the peer starts reading (and summing) while the rest is written.
   */
  write(pieces: Uint8Array[], done: (error?: Error | null) => void = () => {}): void {
    const segments: Uint8Array[] = [];
    for (const bytes of pieces) {
      for (let at = 0; at < bytes.length; at += SEGMENT) segments.push(bytes.subarray(at, Math.min(bytes.length, at + SEGMENT)));
    }
    if (this.sealer) {
      this.queue.push({ segments, next: 0, done });
      this.pump();
      return;
    }
    // unsealed: everything is handed to the socket at once; it sends as the peer takes it
    const socket = this.socket;
    socket.cork();
    if (segments.length === 0) socket.write(Buffer.alloc(0), done);
    for (let i = 0; i < segments.length; i++) {
      socket.write(segments[i], i === segments.length - 1 ? done : undefined);
      // the header and the first segment leave together; then each segment as soon as it is ready
      if (i === Math.min(1, segments.length - 1)) socket.uncork();
    }
    if (segments.length === 0) socket.uncork();
  }

  /** Sealed writes not yet all handed to the socket, in order (a record's number is its place in the stream). */
  private readonly queue: { segments: Uint8Array[]; next: number; done: (error?: Error | null) => void }[] = [];
  private waitingForDrain = false;
  private inFlight = 0; // sealed records handed to the socket and not yet written
  private waitingForRecords = false;

  /**
   * Seals and writes queued segments until the socket holds enough (the kernel's buffer is full),
   * then waits for it to drain: sealing the next segment while the last ones are on the wire, and
   * leaving the event loop free to open (and sum) what arrives meanwhile. Sealing everything at
   * once kept both ranks sealing while neither read.
   */
  private pump(): void {
    const socket = this.socket;
    while (this.queue.length > 0) {
      const job = this.queue[0];
      while (job.next < job.segments.length) {
        if (socket.destroyed) return this.failQueued(new Error('the connection is closed'));
        // a corked socket writes nothing, so neither its records nor a drain would ever come back: a
        // frame's header waits for its first segment only while neither waits (it hung a frame whose
        // header took the socket past its high-water mark)
        if ((this.inFlight >= IN_FLIGHT || socket.writableNeedDrain) && socket.writableCorked > 0) socket.uncork();
        if (this.inFlight >= IN_FLIGHT) {
          // the socket still holds IN_FLIGHT sealed records: go on as it finishes with them (their buffers come back for the next ones)
          this.waitingForRecords = true;
          return;
        }
        if (socket.writableNeedDrain) {
          if (!this.waitingForDrain) {
            this.waitingForDrain = true;
            const resume = () => {
              socket.off('close', resume);
              socket.off('drain', resume);
              this.waitingForDrain = false;
              this.pump();
            };
            socket.once('drain', resume);
            socket.once('close', resume);
          }
          return;
        }
        const i = job.next++;
        const last = job.next === job.segments.length;
        const first = i === 0 && job.segments.length > 1;
        if (first) socket.cork(); // a frame's header leaves with its first segment
        const out: { piece: Uint8Array; release: (() => void) | null }[] = [];
        this.sealer!.seal(job.segments[i], (piece, release) => void out.push({ piece, release }));
        for (let k = 0; k < out.length; k++) {
          const { piece, release } = out[k];
          const final = last && k === out.length - 1;
          if (release) this.inFlight++;
          socket.write(piece, release || final ? (error) => {
            if (release) {
              release();
              this.inFlight--;
              if (this.waitingForRecords) {
                this.waitingForRecords = false;
                this.pump();
              }
            }
            if (final) job.done(error);
          } : undefined);
        }
        if (i === 1 || (i === 0 && !first)) socket.uncork();
      }
      // (nothing to seal: done once the socket has taken what came before, as an unsealed write is)
      if (job.segments.length === 0) socket.write(Buffer.alloc(0), (error) => job.done(error));
      this.queue.shift();
    }
  }

  private failQueued(error: Error): void {
    for (const job of this.queue.splice(0)) job.done(error);
  }

  static accepted(socket: Socket): Source {
    const source = new Source();
    source.socket = socket;
    socket.on('data', (chunk: Buffer) => source.feed(chunk, false));
    return source;
  }
}
