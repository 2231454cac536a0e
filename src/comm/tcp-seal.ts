// The tcp backend's record layer: after the handshake, every byte a rank writes to a peer goes
// in sealed records, and every byte it reads is opened before anything parses it.
//
//   record = u32 length L | L bytes (encrypted, or in the clear with integrity only) | 16-byte tag
//
// AES-256-GCM, one key per direction of a connection (HKDF-SHA256 over the job secret and both
// handshake nonces, so a recorded session teaches nothing about the next), the nonce a counter
// of the records sent in that direction: a record altered, dropped, replayed or reordered fails
// its tag. The length is authenticated as additional data. `integrity` sends the bytes in the
// clear with a GMAC tag over length ‖ bytes; `none` sends frames as they are (a trusted fabric).

import { hkdfSync } from 'node:crypto';
import { kernel } from '../kernels/registry.js';

export type TransportSecurity = 'encrypt' | 'integrity' | 'none';
export const transportSecurities: readonly TransportSecurity[] = ['encrypt', 'integrity', 'none'];

/**
 * The plaintext bytes of one record, at most (a frame's payload spans several; a record never
 * spans two of a frame's segments, so at most SEGMENT bytes). Each record is one socket write:
 * 1 MiB records made an encrypted 64 MiB all-reduce on 2 ranks 59 ms where 256 KiB ones took 73
 * (medians of 3, AMD EPYC Zen 4): the kernel's time per operation fell from ≈24 to ≈17 ms.
 */
export const RECORD = Number(process.env.CONVERGE_TCP_RECORD ?? 1 << 20);
/**
 * Sealed records a connection hands its socket before it waits for the first of them to be
 * written (4 MiB of 1 MiB records): enough to keep the link busy while the next are sealed, and
 * the most record buffers a connection keeps for reuse. (Same run: 16 in flight, 62 ms; 2 MiB
 * records and segments, 2 in flight, 62; 4 MiB, 1 in flight, 64.)
 */
export const IN_FLIGHT = Number(process.env.CONVERGE_TCP_IN_FLIGHT ?? 4);
const LENGTH = 4;
const TAG = 16;

/** The two keys of one connection, from the secret and the nonces both ends chose in its handshake. */
export function sessionKeys(secret: string, challenge: Buffer, answer: Buffer, security: TransportSecurity): { acceptorToDialer: Buffer; dialerToAcceptor: Buffer } {
  const salt = Buffer.concat([challenge, answer]);
  const key = (direction: string) => Buffer.from(hkdfSync('sha256', secret, salt, `converge v1 ${security} ${direction}`, 32));
  return { acceptorToDialer: key('acceptor to dialer'), dialerToAcceptor: key('dialer to acceptor') };
}

function nonceOf(counter: number, nonce: Buffer): Buffer {
  nonce.writeUInt32LE(0, 0);
  nonce.writeUInt32LE(counter % 0x100000000, 4);
  nonce.writeUInt32LE(Math.floor(counter / 0x100000000), 8);
  return nonce;
}

/** Seals what one rank writes on one connection. */
export class Sealer {
  private counter = 0;
  private readonly nonce = Buffer.alloc(12);
  /** Record buffers the socket has finished with, for the next records (fresh pages cost more than sealing). */
  private readonly pool: Buffer[] = [];

  constructor(private readonly key: Buffer, private readonly encrypt: boolean) {}

  /**
   * The records that carry `bytes`, as buffers to write in order; `release` gives a record's
   * buffer back once the socket has written it. With integrity only, `bytes` itself is among
   * them (not copied): it must stay unchanged until written, as with no sealing at all.
   */
  seal(bytes: Uint8Array, emit: (piece: Uint8Array, release: (() => void) | null) => void): void {
    for (let at = 0; at === 0 || at < bytes.length; at += RECORD) {
      const plain = bytes.subarray(at, Math.min(bytes.length, at + RECORD));
      const n = plain.length;
      const nonce = nonceOf(this.counter++, this.nonce);
      if (this.encrypt) {
        const record = this.borrow(LENGTH + n + TAG);
        record.writeUInt32LE(n, 0);
        kernel('aeadSeal')(this.key, nonce, record.subarray(0, LENGTH), plain, record.subarray(LENGTH, LENGTH + n), record.subarray(LENGTH + n));
        emit(record, () => this.give(record));
      } else {
        const length = Buffer.allocUnsafe(LENGTH);
        length.writeUInt32LE(n, 0);
        const tag = Buffer.allocUnsafe(TAG);
        kernel('aeadSeal')(this.key, nonce, length, plain, null, tag);
        emit(length, null);
        emit(plain, null);
        emit(tag, null);
      }
      if (n === 0) break;
    }
  }

  private borrow(bytes: number): Buffer {
    const i = this.pool.findIndex((buffer) => buffer.buffer.byteLength >= bytes);
    const whole = i >= 0 ? this.pool.splice(i, 1)[0] : Buffer.allocUnsafeSlow(Math.max(bytes, LENGTH + RECORD + TAG));
    return Buffer.from(whole.buffer, whole.byteOffset, bytes);
  }

  private give(record: Buffer): void {
    if (this.pool.length < IN_FLIGHT) this.pool.push(Buffer.from(record.buffer, record.byteOffset, record.buffer.byteLength - record.byteOffset));
  }
}

/**
 * Opens what one rank reads on one connection: whole records in, their plaintext out (in a
 * buffer reused for the next record: the consumer copies what it keeps). A record whose tag
 * fails, or whose length is impossible, ends the connection's use: `broken` says why, and
 * nothing more is delivered.
 */
export class Opener {
  private counter = 0;
  private readonly nonce = Buffer.alloc(12);
  private readonly record = Buffer.allocUnsafeSlow(LENGTH + RECORD + TAG);
  private readonly plain: Buffer;
  private filled = 0;
  private wanted = LENGTH; // bytes of the record (length field, then body and tag) still to come
  private failed = false;

  constructor(
    private readonly key: Buffer,
    private readonly encrypt: boolean,
    private readonly deliver: (plain: Buffer) => void,
    private readonly broken: (what: string) => void,
  ) {
    this.plain = Buffer.allocUnsafeSlow(encrypt ? RECORD : 0);
  }

  push(chunk: Buffer): void {
    let at = 0;
    while (at < chunk.length && !this.failed) {
      // a whole record inside the chunk is opened where it lies
      if (this.filled === 0 && chunk.length - at >= LENGTH) {
        const n = chunk.readUInt32LE(at);
        if (!this.possible(n)) return;
        if (chunk.length - at >= LENGTH + n + TAG) {
          this.open(chunk.subarray(at, at + LENGTH + n + TAG), n);
          at += LENGTH + n + TAG;
          continue;
        }
      }
      const piece = Math.min(this.wanted - this.filled, chunk.length - at);
      chunk.copy(this.record, this.filled, at, at + piece);
      this.filled += piece;
      at += piece;
      if (this.filled < this.wanted) return;
      if (this.wanted === LENGTH) {
        const n = this.record.readUInt32LE(0);
        if (!this.possible(n)) return;
        this.wanted = LENGTH + n + TAG;
        continue;
      }
      this.open(this.record, this.wanted - LENGTH - TAG);
      this.filled = 0;
      this.wanted = LENGTH;
    }
  }

  /** Whether a record may claim n bytes; if not, the connection is broken (nothing beyond it is read). */
  private possible(n: number): boolean {
    if (n <= RECORD) return true;
    this.fail(`record #${this.counter} claims ${n} bytes, more than the ${RECORD} a record holds`);
    return false;
  }

  /** Opens the record at the start of `record` (n bytes of body) and delivers its plaintext. */
  private open(record: Buffer, n: number): void {
    const nonce = nonceOf(this.counter++, this.nonce);
    const body = record.subarray(LENGTH, LENGTH + n);
    const tag = record.subarray(LENGTH + n, LENGTH + n + TAG);
    const ok = kernel('aeadOpen')(this.key, nonce, record.subarray(0, LENGTH), body, this.encrypt ? this.plain.subarray(0, n) : null, tag);
    if (!ok) return this.fail(`record #${this.counter - 1} does not authenticate`);
    if (n > 0) this.deliver(this.encrypt ? this.plain.subarray(0, n) : body);
  }

  private fail(what: string): void {
    this.failed = true;
    this.broken(what);
  }
}
