// How a simulation (a client) talks to a study's server ranks: one TCP connection per server
// rank. Before any data, both ends prove the job secret (HMAC-SHA256 over fresh nonces, the
// run and the job), and a client learns the server is the study's; then every byte goes in
// the tcp backend's sealed records (AES-256-GCM by default, with keys from the handshake).
//
//   hello (client):   'CVGS' | u32 run | u32 attempt | 32-byte nonce | u16 job length | job
//   answer (server):  'CVGS' | 32-byte nonce | 32-byte proof
//   proof (client):   32-byte proof
//   then messages, sealed: u32 length | u8 kind | … (data: u32 field, u32 timestep, u32 offset,
//   then float64 values; done: nothing more)

import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Socket } from 'node:net';
import { CommunicationError } from '../errors.js';
import { Opener, Sealer, sessionKeys, type TransportSecurity } from '../comm/tcp-seal.js';
import { hmac } from '../comm/tcp-rendezvous.js';

export const STUDY_MAGIC = 0x53475643; // 'CVGS' little-endian
const NONCE = 32;
const PROOF = 32;
export const HANDSHAKE_MS = 5000;
/** A message's bytes, at most: 64 Mi values of a field's slice. */
const MAX_MESSAGE = 8 * 2 ** 26 + 64;

export const enum Kind {
  Data = 1,
  Done = 2,
}

export interface DataMessage {
  kind: Kind.Data;
  field: number;
  timestep: number;
  offset: number;
  values: Float64Array;
}
export type Message = DataMessage | { kind: Kind.Done };

const proof = (secret: string, who: string, clientNonce: Buffer, serverNonce: Buffer, job: string, run: number) => hmac(secret, `converge study ${who} ${job} ${run}`, clientNonce, serverNonce);

/** Reads exact byte counts from a socket, for the handshake (before records begin). */
class Exact {
  private data = Buffer.alloc(0);
  private waiting: { bytes: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  private readonly onData = (chunk: Buffer) => {
    this.data = Buffer.concat([this.data, chunk]);
    this.settle();
  };
  private readonly onEnd = () => this.fail(new CommunicationError(`${this.where}: the connection closed during the handshake (wrong secret or job, or not a converge study).`, 'HANDSHAKE_CLOSED'));

  constructor(private readonly socket: Socket, private readonly where: string) {
    socket.on('data', this.onData);
    socket.on('close', this.onEnd);
    socket.on('error', this.onEnd);
  }

  read(bytes: number, timeoutMs: number): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => this.fail(new CommunicationError(`${this.where}: no handshake within ${timeoutMs / 1000} s.`, 'HANDSHAKE')), timeoutMs);
      this.waiting = { bytes, resolve: (b) => (clearTimeout(timer), resolve(b)), reject: (e) => (clearTimeout(timer), reject(e)) };
      this.settle();
    });
  }

  /** Stops reading; what came after the handshake is returned, for the record layer. */
  release(): Buffer {
    this.socket.off('data', this.onData);
    this.socket.off('close', this.onEnd);
    this.socket.off('error', this.onEnd);
    return this.data;
  }

  private fail(error: Error): void {
    this.failure ??= error;
    this.settle();
  }

  private settle(): void {
    const w = this.waiting;
    if (!w) return;
    if (this.data.length >= w.bytes) {
      this.waiting = null;
      const out = this.data.subarray(0, w.bytes);
      this.data = this.data.subarray(w.bytes);
      w.resolve(out);
    } else if (this.failure) {
      this.waiting = null;
      w.reject(this.failure);
    }
  }
}

/** One end of an established connection: sealed messages out, opened messages in. */
export class Channel {
  private readonly sealer: Sealer | null;
  private readonly opener: Opener | null;
  private pending = Buffer.alloc(0);
  /** Messages that came before `listen` (they may follow the handshake in its last packet). */
  private queued: Message[] | null = [];
  private onMessage: (message: Message) => void = (message) => this.queued!.push(message);
  private onBroken: (what: string) => void = (what) => (this.brokenBefore = what);
  private brokenBefore: string | null = null;
  private broken = false;

  constructor(readonly socket: Socket, sendKey: Buffer, receiveKey: Buffer, security: TransportSecurity, leftover: Buffer) {
    const sealed = security !== 'none';
    this.sealer = sealed ? new Sealer(sendKey, security === 'encrypt') : null;
    this.opener = sealed ? new Opener(receiveKey, security === 'encrypt', (plain) => this.parse(plain), (what) => this.fail(what)) : null;
    socket.on('data', (chunk: Buffer) => this.take(chunk));
    if (leftover.length > 0) this.take(leftover);
  }

  /**
   * Where the peer's messages go, and why the connection broke if it does (once, when its
   * bytes fail authentication or make no sense); what came before is handed over first.
   */
  listen(onMessage: (message: Message) => void, onBroken: (what: string) => void): void {
    const queued = this.queued ?? [];
    this.queued = null;
    this.onMessage = onMessage;
    this.onBroken = onBroken;
    for (const message of queued) onMessage(message);
    if (this.brokenBefore !== null) onBroken(this.brokenBefore);
  }

  /** Writes a message; resolves once the socket has taken it (so a sender keeps pace with the link). */
  async send(message: Message): Promise<void> {
    const body = message.kind === Kind.Data ? 4 + 1 + 12 + 8 * message.values.length : 5;
    const bytes = Buffer.allocUnsafe(body);
    bytes.writeUInt32LE(body - 4, 0);
    bytes.writeUInt8(message.kind, 4);
    if (message.kind === Kind.Data) {
      bytes.writeUInt32LE(message.field, 5);
      bytes.writeUInt32LE(message.timestep, 9);
      bytes.writeUInt32LE(message.offset, 13);
      Buffer.from(message.values.buffer, message.values.byteOffset, message.values.byteLength).copy(bytes, 17);
    }
    let ok = true;
    // a sealed record's buffer goes back to the sealer once the socket has written it
    if (this.sealer) this.sealer.seal(bytes, (piece, release) => (ok = this.socket.write(piece, release ? () => release() : undefined)));
    else ok = this.socket.write(bytes);
    if (!ok) await new Promise<void>((resolve, reject) => {
      const done = () => (this.socket.off('close', gone), resolve());
      const gone = () => (this.socket.off('drain', done), reject(new CommunicationError('the study server closed the connection.', 'PEER_LOST')));
      this.socket.once('drain', done);
      this.socket.once('close', gone);
    });
  }

  private take(chunk: Buffer): void {
    if (this.broken) return;
    if (this.opener) this.opener.push(chunk);
    else this.parse(chunk);
  }

  private fail(what: string): void {
    if (this.broken) return;
    this.broken = true;
    this.onBroken(what);
    this.socket.destroy();
  }

  private parse(plain: Buffer): void {
    this.pending = this.pending.length === 0 ? Buffer.from(plain) : Buffer.concat([this.pending, plain]);
    let at = 0;
    while (!this.broken && this.pending.length - at >= 4) {
      const length = this.pending.readUInt32LE(at);
      if (length < 1 || length > MAX_MESSAGE) return this.fail(`a message of ${length} bytes`);
      if (this.pending.length - at - 4 < length) break;
      const kind = this.pending.readUInt8(at + 4);
      if (kind === Kind.Data) {
        if (length < 13 || (length - 13) % 8 !== 0) return this.fail(`a data message of ${length} bytes`);
        const count = (length - 13) / 8;
        const values = new Float64Array(count);
        Buffer.from(values.buffer).set(this.pending.subarray(at + 17, at + 17 + 8 * count));
        this.onMessage({ kind, field: this.pending.readUInt32LE(at + 5), timestep: this.pending.readUInt32LE(at + 9), offset: this.pending.readUInt32LE(at + 13), values });
      } else if (kind === Kind.Done && length === 1) this.onMessage({ kind });
      else return this.fail(`a message of kind ${kind} and ${length} bytes`);
      at += 4 + length;
    }
    this.pending = this.pending.subarray(at);
  }
}

export interface Credentials {
  secret: string;
  job: string;
  security: TransportSecurity;
}

/** The client's side of the handshake, on a connected socket. */
export async function helloAsClient(socket: Socket, credentials: Credentials, run: number, attempt: number, where: string): Promise<Channel> {
  const reader = new Exact(socket, where);
  const clientNonce = randomBytes(NONCE);
  const job = Buffer.from(credentials.job);
  const hello = Buffer.alloc(12 + NONCE + 2 + job.length);
  hello.writeUInt32LE(STUDY_MAGIC, 0);
  hello.writeUInt32LE(run, 4);
  hello.writeUInt32LE(attempt, 8);
  clientNonce.copy(hello, 12);
  hello.writeUInt16LE(job.length, 12 + NONCE);
  job.copy(hello, 14 + NONCE);
  socket.write(hello);
  const answer = await reader.read(4 + NONCE + PROOF, HANDSHAKE_MS);
  if (answer.readUInt32LE(0) !== STUDY_MAGIC) throw new CommunicationError(`${where}: the server answered with garbage, not a converge study.`, 'HANDSHAKE');
  const serverNonce = Buffer.from(answer.subarray(4, 4 + NONCE));
  const expected = proof(credentials.secret, 'server', clientNonce, serverNonce, credentials.job, run);
  if (!timingSafeEqual(expected, answer.subarray(4 + NONCE))) throw new CommunicationError(`${where}: the server does not know this study's secret (or runs another job); check CONVERGE_JOB_SECRET.`, 'AUTH');
  socket.write(proof(credentials.secret, 'client', clientNonce, serverNonce, credentials.job, run));
  const keys = sessionKeys(credentials.secret, clientNonce, serverNonce, credentials.security);
  return new Channel(socket, keys.dialerToAcceptor, keys.acceptorToDialer, credentials.security, reader.release());
}

/** The server's side: who the client says it is, checked; or an error saying why it was turned away. */
export async function helloAsServer(socket: Socket, credentials: Credentials, where: string): Promise<{ channel: Channel; run: number; attempt: number }> {
  const reader = new Exact(socket, where);
  const head = await reader.read(12 + NONCE + 2, HANDSHAKE_MS);
  if (head.readUInt32LE(0) !== STUDY_MAGIC) throw new CommunicationError(`${where}: garbage instead of a study client's hello (magic 0x${head.readUInt32LE(0).toString(16)}).`, 'HANDSHAKE');
  const run = head.readUInt32LE(4);
  const attempt = head.readUInt32LE(8);
  const clientNonce = Buffer.from(head.subarray(12, 12 + NONCE));
  const job = (await reader.read(head.readUInt16LE(12 + NONCE), HANDSHAKE_MS)).toString();
  if (job !== credentials.job) throw new CommunicationError(`${where}: a client of job "${job}" where this study is "${credentials.job}".`, 'AUTH');
  const serverNonce = randomBytes(NONCE);
  const answer = Buffer.alloc(4 + NONCE);
  answer.writeUInt32LE(STUDY_MAGIC, 0);
  serverNonce.copy(answer, 4);
  socket.write(Buffer.concat([answer, proof(credentials.secret, 'server', clientNonce, serverNonce, job, run)]));
  const theirs = await reader.read(PROOF, HANDSHAKE_MS);
  if (!timingSafeEqual(theirs, proof(credentials.secret, 'client', clientNonce, serverNonce, job, run))) throw new CommunicationError(`${where}: a client that does not know the study's secret (run ${run}); turned away.`, 'AUTH');
  const keys = sessionKeys(credentials.secret, clientNonce, serverNonce, credentials.security);
  return { channel: new Channel(socket, keys.acceptorToDialer, keys.dialerToAcceptor, credentials.security, reader.release()), run, attempt };
}
