// --param-precision for the strategies that keep parameters on every rank: the master copy is
// what a low-precision store holds (every value representable in bf16, or int8 with a block
// scale), and what travels between ranks is the encoded bytes, not float32. Computation reads
// the decoded float32 values, so a strategy keeps its float32 buffer and calls these at the
// points where parameters are written.

import { bufferShare, type Communicator } from '../comm/communicator.js';
import { PrecisionCodec, encodedBytes, type ParamPrecision } from '../tensor/precision.js';
import { mixSeed } from '../tensor/random.js';

export class ParameterStorage {
  /** Rounds what every rank rounds alike (the same values, the same random stream). */
  private readonly common: PrecisionCodec;
  /** Rounds what only this rank writes. */
  private readonly own: PrecisionCodec;
  private readonly scratch: Uint8Array;
  private readonly send: Float32Array;
  private readonly gathered: Float32Array;
  private readonly shareWords: number;

  constructor(readonly precision: ParamPrecision, private readonly size: number, private readonly seed: number, private readonly comm: Communicator) {
    this.common = new PrecisionCodec(precision, mixSeed(seed, 0x70726563));
    this.own = new PrecisionCodec(precision, mixSeed(seed, 0x70726563, comm.rank + 1));
    this.scratch = new Uint8Array(encodedBytes(precision, size) + 8);
    // the largest share (reduceScatter's partition: ⌊n·r/P⌋) encoded, in whole floats
    this.shareWords = Math.ceil(encodedBytes(precision, Math.ceil(size / comm.size)) / 4);
    this.send = new Float32Array(this.shareWords);
    this.gathered = new Float32Array(this.shareWords * comm.size);
  }

  /**
   * Keys the rounding streams by the step (the run's count of steps, epochs included), so that
   * each step's roundings depend on the seed, the rank and the step alone: a run resumed from a
   * checkpoint rounds as the uninterrupted one did, with no stream position to save.
   */
  atStep(step: number): void {
    this.common.reseed(mixSeed(this.seed, 0x70726563, 0, step));
    this.own.reseed(mixSeed(this.seed, 0x70726563, this.comm.rank + 1, step));
  }

  /** The stored value of every parameter, the same on every rank that holds the same values. */
  roundAll(params: Float32Array): void {
    this.common.round(params, 0, this.size, this.scratch);
  }

  /** This rank's own copy rounded (local-sgd's private copies, the server's parameters). */
  roundOwn(params: Float32Array, start = 0, end = this.size): void {
    this.own.round(params, start, end, this.scratch);
  }

  /**
   * The all-gather of updated shares, in the storage format: this rank encodes params[first, end),
   * every rank receives every encoded share and decodes it, its own included.
   */
  async allgatherShares(params: Float32Array, first: number, end: number): Promise<void> {
    const bytes = new Uint8Array(this.send.buffer);
    this.own.encode(params, first, end, bytes);
    await this.comm.allgather(this.send, this.gathered);
    const P = this.comm.size;
    for (let r = 0; r < P; r++) {
      const [s, e] = bufferShare(this.size, r, P);
      this.own.decode(new Uint8Array(this.gathered.buffer, 4 * r * this.shareWords, 4 * this.shareWords), params, s, e);
    }
  }

  /** Floats a broadcast of the encoded parameters takes (see encodeInto). */
  get broadcastWords(): number {
    return Math.ceil(encodedBytes(this.precision, this.size) / 4);
  }

  /** Root: rounds params in place and writes their encoding into `words`. */
  encodeInto(params: Float32Array, words: Float32Array): void {
    const bytes = new Uint8Array(words.buffer, words.byteOffset, 4 * this.broadcastWords);
    this.own.encode(params, 0, this.size, bytes);
    this.own.decode(bytes, params, 0, this.size);
  }

  /** Others: the parameters from what encodeInto wrote. */
  decodeFrom(words: Float32Array, params: Float32Array): void {
    this.own.decode(new Uint8Array(words.buffer, words.byteOffset, 4 * this.broadcastWords), params, 0, this.size);
  }
}
