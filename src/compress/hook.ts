// Gradient communication hooks: a hook turns a worker's gradient (the flat buffer) into a byte
// payload and back, keeping its own state between steps (error feedback, momentum). Hooks are
// plain objects made by factories, composed by wrapping (a sparsifier carries a value codec:
// top-k with fp16 values), and validated once when parsed from --compress.

export interface StepInfo {
  epoch: number; // fractional, for warm-ups
}

export interface Hook {
  /** The --compress form that made it, e.g. "topk:0.01+fp16". */
  readonly name: string;
  /** Whether the hook applies momentum itself (DGC's momentum correction): the optimiser then runs plain SGD. */
  readonly appliesMomentum: boolean;
  /** Error-feedback hooks: what has been accumulated but not yet sent. */
  readonly residual?: Float32Array;
  /**
   * What a checkpoint must hold to resume this hook exactly: named arrays (error feedback,
   * momentum, the random stream's position), live — saved as they are, restored by loadState.
   */
  saveState?(): Record<string, Float32Array>;
  loadState?(state: Record<string, Float32Array>): void;
  /**
   * Dense hooks: encodes values[start, end) alone — one share of the gradient, with the error
   * feedback of that range — into `out`, in exactly maxBytes(end − start) bytes; `decode` takes it
   * into a target of end − start values. The all-reduce exchanges such hooks by share: a
   * reduce-scatter of encoded shares, then an all-gather (strategies/shard-exchange.ts). Hooks
   * without it (the sparsifiers) exchange whole payloads.
   */
  encodeShare?(values: Float32Array, start: number, end: number, out: Uint8Array, step: StepInfo): number;
  /** The identity: float32 values as they are, which may be summed in transit — the communicator's own reduce-scatter is its exchange. */
  readonly exact?: boolean;
  /** An upper bound of encode's output for n floats, so buffers are allocated once. */
  maxBytes(n: number): number;
  /** Encodes `gradient` into `out`; returns the bytes written — what goes on the wire. */
  encode(gradient: Float32Array, out: Uint8Array, step: StepInfo): number;
  /**
   * Decodes a payload of `length` bytes into `target`: adds it when `accumulate`, else
   * overwrites target (every element) with it. Summing P payloads in rank order this way adds
   * exactly as the all-reduce does, so the identity hook is bit-identical to no hook.
   */
  decode(payload: Uint8Array, length: number, target: Float32Array, accumulate: boolean): void;
}

/** A codec for float values inside a payload: 32, 16 or bf16 bits each. */
export interface ValueCodec {
  readonly name: string;
  readonly bytes: number; // per value
  /** How the kernels name it in sparse payloads: 0 float32, 1 IEEE half, 2 bfloat16. */
  readonly code: number;
  /** The value as it arrives: written then read. */
  round(value: number): number;
  /** Bulk forms for dense payloads: bytes[at …] ← values (at is a multiple of the codec's size). */
  writeAll(values: Float32Array, bytes: Uint8Array, at: number): void;
  /** target = (accumulate ? target + : ) the values stored at bytes[at …] */
  readAll(bytes: Uint8Array, at: number, target: Float32Array, accumulate: boolean): void;
}
