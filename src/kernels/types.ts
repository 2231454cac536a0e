// The numeric kernels a model may call, by name. All arrays are row-major and contiguous;
// every output is written in place into a buffer the caller allocated once.
//
// Images are [N, C, H, W] (block 1), or channel-blocked [N, C/B, H, W, B] — oneDNN's nChw16c
// and nChw8c, where the B channels of one pixel lie side by side — for C a multiple of B. A
// convolution reads and writes either; kept blocked from one convolution to the next, the
// activations are never reordered (the kernels' `channelBlock` says which B they prefer).

export interface ConvGeometry {
  channels: number; // input channels C
  height: number; // input H
  width: number; // input W
  filters: number; // output channels F
  kernelSize: number; // square kernel K
  pad: number;
  stride: number;
  outHeight: number; // OH = (H + 2·pad − K) / stride + 1
  outWidth: number;
  inputBlock: number; // the channel block of x (1: plain NCHW)
  outputBlock: number; // the channel block of out
}

export interface PoolGeometry {
  channels: number;
  height: number;
  width: number;
  size: number; // square window, stride = size
  outHeight: number;
  outWidth: number;
}

export interface KernelSet {
  /** The channel block B the convolutions work fastest in (16 or 8 with oneDNN, by the CPU's vector width; 1: plain only). */
  readonly channelBlock: number;
  /** target = source with its channels reblocked from fromBlock to toBlock (either may be 1), per sample of channels × plane. */
  reorderChannels(source: Float32Array, target: Float32Array, batch: number, channels: number, plane: number, fromBlock: number, toBlock: number): void;
  /** c[m,n] = alpha · op(a)[m,k] · op(b)[k,n] + beta · c, op = transpose when the flag is set. */
  gemm(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
    a: Float32Array, b: Float32Array, beta: number, c: Float32Array): void;
  /** out[n,f] = x[n,k] · w[f,k]ᵀ + bias[f]  (a dense layer; w is [out, in]) */
  denseForward(x: Float32Array, w: Float32Array, bias: Float32Array, out: Float32Array, batch: number, inputs: number, outputs: number): void;
  /**
   * gradW = gradOutᵀ · x, gradBias = Σ rows of gradOut, gradX = gradOut · w (skipped when gradX is null); the
   * parameter gradients are overwritten, or with `accumulate` added to: gradW += the product, gradBias += the row sum
   * (each taken whole first, so k micro-batches accumulate as their gradients summed one after another would)
   */
  denseBackward(x: Float32Array, w: Float32Array, gradOut: Float32Array, gradW: Float32Array, gradBias: Float32Array,
    gradX: Float32Array | null, batch: number, inputs: number, outputs: number, accumulate?: boolean): void;
  /** out[N,F,OH,OW] = conv(x[N,C,H,W], w[F,C,K,K]) + bias[F], x and out in the geometry's channel blocks; `columns` holds C·K·K·OH·OW floats */
  convForward(x: Float32Array, w: Float32Array, bias: Float32Array, out: Float32Array, batch: number, g: ConvGeometry, columns: Float32Array): void;
  /** gradW = Σ_n gradOut_n · im2col(x_n)ᵀ, gradBias = Σ gradOut, gradX = col2im(wᵀ · gradOut_n) (skipped when null); overwritten */
  convBackward(x: Float32Array, w: Float32Array, gradOut: Float32Array, gradW: Float32Array, gradBias: Float32Array,
    gradX: Float32Array | null, batch: number, g: ConvGeometry, columns: Float32Array): void;
  /** out = max over each window; argmax records the winning input index for the backward pass */
  maxPoolForward(x: Float32Array, out: Float32Array, argmax: Int32Array, batch: number, g: PoolGeometry): void;
  /** gradX = 0, then gradX[argmax[i]] += gradOut[i] */
  maxPoolBackward(gradOut: Float32Array, argmax: Int32Array, gradX: Float32Array, length: number, inputLength: number): void;
  /** y = max(x, 0) over the first `length` elements (in place allowed) */
  reluForward(x: Float32Array, y: Float32Array, length: number): void;
  /** gradX = gradY where y > 0, else 0 (in place allowed) */
  reluBackward(y: Float32Array, gradY: Float32Array, gradX: Float32Array, length: number): void;
  /**
   * Batch norm of x[N, C, plane] (channel-blocked by `block`) per channel: out = γ·x̂ + β. Training (`training` true): x̂ from the
   * batch's mean and biased variance, kept in `normalised` with 1/σ in `inverseStd`, and the running
   * statistics updated (momentum m, the unbiased variance); else x̂ from the running statistics.
   */
  batchNormForward(x: Float32Array, gamma: Float32Array, beta: Float32Array, out: Float32Array, normalised: Float32Array, inverseStd: Float32Array,
    runningMean: Float32Array, runningVar: Float32Array, batch: number, channels: number, plane: number, block: number, training: boolean, momentum: number, epsilon: number): void;
  /** dγ = Σ dy·x̂, dβ = Σ dy, and (unless gradX is null) dx = γ/σ · (dy − mean(dy) − x̂·mean(dy·x̂)), per channel */
  batchNormBackward(gradOut: Float32Array, normalised: Float32Array, inverseStd: Float32Array, gamma: Float32Array, gradGamma: Float32Array, gradBeta: Float32Array,
    gradX: Float32Array | null, batch: number, channels: number, plane: number, block: number): void;
  /** out[c] = Σ x over channel c's values (centre null), or Σ (x − centre[c])²: what synchronised batch norm reduces across ranks */
  channelSums(x: Float32Array, centre: Float32Array | null, out: Float32Array, batch: number, channels: number, plane: number, block: number): void;
  /** gradX = γ/σ · (dy − sumDy/count − x̂ · sumDyX/count) per channel: batch norm's input gradient from sums over `count` values (every rank's) */
  batchNormInputGradient(gradOut: Float32Array, normalised: Float32Array, inverseStd: Float32Array, gamma: Float32Array, sumDy: Float32Array, sumDyX: Float32Array,
    count: number, gradX: Float32Array, batch: number, channels: number, plane: number, block: number): void;
  /** mean cross-entropy of softmax(logits[n,k]) against labels; writes gradLogits = (softmax − onehot)/n */
  softmaxCrossEntropy(logits: Float32Array, labels: Int32Array, batch: number, classes: number, gradLogits: Float32Array): number;
  /** target[at + i] = scale · Σ_{r<count} source[first + r·stride + i] for i in [start, end), summed in r order
   *  (the reduction step of the shared-memory all-reduce) */
  reduceStrided(source: Float32Array, first: number, stride: number, count: number, start: number, end: number,
    target: Float32Array, at: number, scale: number): void;
  /** array[start, end) = 0 — a kernel because TypedArray.fill on SharedArrayBuffer memory is ≈ 8× slower than memset in V8 */
  zero(array: Float32Array, start: number, end: number): void;
  /** target[at + i] += source[from + i] for i < length, in float32 (a received chunk summed into a buffer) */
  addInto(target: Float32Array, at: number, source: Float32Array, from: number, length: number): void;
  /** Hogwild!'s replica merge over the first `length` elements: v = shared + (local − base) × (1 where shared = base, else ½), each
   *  operation in float32; shared = local = base = v */
  replicaMerge(shared: Float32Array, local: Float32Array, base: Float32Array, length: number): void;
  /** target[at, at + length) = source[from, from + length) (for the same reason as zero) */
  copy(target: Float32Array, at: number, source: Float32Array, from: number, length: number): void;
  /** Σ_{k ∈ [start, end)} values[k] · dense[indices[k]] — a sparse row times a dense vector */
  sparseDot(indices: Int32Array, values: Float32Array, start: number, end: number, dense: Float32Array, offset: number): number;
  /** dense[offset + indices[k]] += alpha · values[k] for k in [start, end) */
  sparseAxpy(indices: Int32Array, values: Float32Array, start: number, end: number, alpha: number, dense: Float32Array, offset: number): void;
  /**
   * Per-example SGD on a sparse linear model (Hogwild!'s inner loop, models/sparse.ts), one example
   * after another: for each i = order[first + e], e < count, with z = x_i · w + b (accumulated in
   * float64), the loss and its slope in z (logistic: softplus(z) − y·z and σ(z) − y; hinge on s = 2y − 1:
   * 1 − s·z and −s where s·z < 1, else 0), then w_j −= lr·(slope·x_ij + l2·w_j) on the row's features
   * and b −= lr·interceptRate·slope, in params = [w, b] (b at params[features]). Returns the summed loss.
   */
  sparseLinearSteps(rowPtr: Int32Array, indices: Int32Array, values: Float32Array, y: Float32Array, order: Uint32Array, first: number, count: number,
    params: Float32Array, features: number, lr: number, l2: number, interceptRate: number, hinge: boolean): number;
  /** p −= lr·(g + wd·p) over the first `length` elements */
  sgdUpdate(params: Float32Array, grad: Float32Array, length: number, lr: number, weightDecay: number): void;
  /** v = μ·v + g′; p −= lr·v (Nesterov: p −= lr·(g′ + μ·v)), g′ = g + wd·p */
  momentumUpdate(params: Float32Array, grad: Float32Array, velocity: Float32Array, length: number, lr: number, momentum: number,
    weightDecay: number, nesterov: boolean): void;
  /** Adam: m, v moments; stepSize = lr / (1 − β1ᵗ), sqrtCorrection2 = √(1 − β2ᵗ) */
  adamUpdate(params: Float32Array, grad: Float32Array, m: Float32Array, v: Float32Array, length: number, stepSize: number,
    sqrtCorrection2: number, beta1: number, beta2: number, epsilon: number, weightDecay: number): void;
  /** The indices of the k largest |values[i]| (1 ≤ k ≤ values.length), in increasing index order, into chosen[0, k);
   *  among equal magnitudes at the cut, the lowest indices. Returns k. (top-k sparsification's selection) */
  topkIndices(values: Float32Array, k: number, chosen: Uint32Array): number;
  // The codecs of gradient compression and low-precision parameters (native/codecs.cc, reference-codecs.ts).
  // A stochastic codec takes `random`, the state of the caller's Random stream, and draws one number per value
  // in order; the caller then skips its stream ahead by values.length.
  /** out[i] = values[i] as IEEE half bits: nearest, ties to even, saturating at ±65504; NaN → 0x7e00 */
  fp16Encode(values: Float32Array, out: Uint16Array): void;
  /** target = (accumulate ? target + : ) the values of the half bits stored[0, target.length) */
  fp16Decode(stored: Uint16Array, target: Float32Array, accumulate: boolean): void;
  /** out[i] = values[i] as bfloat16 bits (the top 16): nearest, ties to even (random null), else rounded stochastically
   *  (up with probability the dropped bits' fraction: unbiased) */
  bf16Encode(values: Float32Array, out: Uint16Array, random: number | null): void;
  /** replicaMerge on a bf16 shared array (local.length values): v = decoded + (local − base) × (1 or ½) in float32, rounded
   *  stochastically as bf16Encode rounds (one draw a value, in order); shared = its bits, local = base = its value */
  replicaMergeBf16(shared: Uint16Array, local: Float32Array, base: Float32Array, random: number): void;
  /** target = (accumulate ? target + : ) the values of the bfloat16 bits stored[0, target.length) */
  bf16Decode(stored: Uint16Array, target: Float32Array, accumulate: boolean): void;
  /** values in blocks of 64 from values[0]: out = each block's float32 scale (max |v| / 127), then one int8 q ∈ [−127, 127]
   *  per value, q·scale rounded stochastically to v (4·⌈n/64⌉ + n bytes) */
  int8Encode(values: Float32Array, out: Uint8Array, random: number): void;
  /** values = q · scale, from what int8Encode wrote for values.length values */
  int8Decode(bytes: Uint8Array, values: Float32Array): void;
  /** QSGD: per bucket of `bucket` values its L2 norm (float32), then per value a sign bit above a level ℓ ∈ 0..2^(bits−1)−1
   *  (ℓ/levels·norm rounded stochastically to |v|), `bits` bits a value, least significant first; a bucket's bits end on a byte */
  qsgdEncode(gradient: Float32Array, bits: number, bucket: number, out: Uint8Array, random: number): void;
  /** target = (accumulate ? target + : ) what qsgdEncode wrote for target.length values */
  qsgdDecode(payload: Uint8Array, bits: number, bucket: number, target: Float32Array, accumulate: boolean): void;
  /** Sparse payloads: count pairs of (uint32 index, value) little-endian into out, the value as float32 (codec 0), IEEE half (1)
   *  or bfloat16 (2), both rounded to nearest even as fp16Encode and bf16Encode (random null) round */
  pairsEncode(indices: Uint32Array, values: Float32Array, count: number, codec: number, out: Uint8Array): void;
  /** target[index] += value for each of count pairs, in order; returns −1, or the first index ≥ target.length (the pairs before it added) */
  pairsAccumulate(payload: Uint8Array, count: number, codec: number, target: Float32Array): number;
  /** Top-k's error feedback: residual += scale·gradient; with momentum (DGC's correction) u = m·u + scale·gradient, then residual += u */
  dgcAccumulate(gradient: Float32Array, scale: number, momentumFactor: number, momentum: Float32Array | null, residual: Float32Array): void;
  /** EF-signSGD: residual += gradient; scale = mean |residual|; bit i of out set where residual[i] < 0; residual −= ±scale; returns scale */
  signEncode(gradient: Float32Array, residual: Float32Array, out: Uint8Array): number;
  /** target = (accumulate ? target + : ) ±scale, minus where bit i of bits is set */
  signDecode(bits: Uint8Array, scale: number, target: Float32Array, accumulate: boolean): void;
  /** AES-256-GCM, one record (the tcp backend's sealed frames): dst ← the encryption of src under key (32 bytes) and
   *  nonce (12 bytes), tag ← the 16-byte tag over aad and dst. With dst null nothing is encrypted: the tag covers
   *  aad ‖ src as additional data (GMAC, integrity only). */
  aeadSeal(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, src: Uint8Array, dst: Uint8Array | null, tag: Uint8Array): void;
  /** The inverse of aeadSeal: true, and dst ← the plaintext, when tag authenticates aad and src; false (dst
   *  undefined) when it does not. */
  aeadOpen(key: Uint8Array, nonce: Uint8Array, aad: Uint8Array, src: Uint8Array, dst: Uint8Array | null, tag: Uint8Array): boolean;
}

export type KernelName = keyof KernelSet;

export function convGeometry(channels: number, height: number, width: number, filters: number, kernelSize: number, pad: number, stride = 1,
  inputBlock = 1, outputBlock = 1): ConvGeometry {
  return {
    channels, height, width, filters, kernelSize, pad, stride, inputBlock, outputBlock,
    outHeight: Math.floor((height + 2 * pad - kernelSize) / stride) + 1,
    outWidth: Math.floor((width + 2 * pad - kernelSize) / stride) + 1,
  };
}

export function poolGeometry(channels: number, height: number, width: number, size: number): PoolGeometry {
  return { channels, height, width, size, outHeight: Math.floor(height / size), outWidth: Math.floor(width / size) };
}

/** Where channel c of sample n, at position i of its plane, lies in a [N, C/B, plane, B] array (B = 1: [N, C, plane]). */
export function blockedIndex(n: number, c: number, i: number, channels: number, plane: number, block: number): number {
  const group = Math.floor(c / block);
  return ((n * (channels / block) + group) * plane + i) * block + (c - group * block);
}
