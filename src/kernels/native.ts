// The native backend: OpenBLAS and C++ loops through a Node-API addon (native/converge.cc).
// This file only adapts argument shapes; the kernels' meaning is in types.ts and reference.ts.

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { referenceKernels } from './reference.js';
import type { ConvGeometry, KernelSet } from './types.js';

interface Addon {
  gemm: KernelSet['gemm'];
  denseForward: KernelSet['denseForward'];
  denseBackward: KernelSet['denseBackward'];
  convForward(x: Float32Array, w: Float32Array, bias: Float32Array, out: Float32Array, batch: number, columns: Float32Array,
    ...geometry: number[]): void;
  convBackward(x: Float32Array, w: Float32Array, gradOut: Float32Array, gradW: Float32Array, gradBias: Float32Array,
    gradX: Float32Array | null, batch: number, columns: Float32Array, ...geometry: number[]): void;
  maxPoolForward(x: Float32Array, out: Float32Array, argmax: Int32Array, batch: number, ...geometry: number[]): void;
  maxPoolBackward: KernelSet['maxPoolBackward'];
  reluForward: KernelSet['reluForward'];
  reluBackward: KernelSet['reluBackward'];
  softmaxCrossEntropy: KernelSet['softmaxCrossEntropy'];
  batchNormForward: KernelSet['batchNormForward'];
  batchNormBackward: KernelSet['batchNormBackward'];
  channelSums: KernelSet['channelSums'];
  batchNormInputGradient: KernelSet['batchNormInputGradient'];
  reduceStrided: KernelSet['reduceStrided'];
  zero: KernelSet['zero'];
  copy: KernelSet['copy'];
  addInto: KernelSet['addInto'];
  replicaMerge: KernelSet['replicaMerge'];
  aeadSeal: KernelSet['aeadSeal'];
  topkIndices: KernelSet['topkIndices'];
  aeadOpen: KernelSet['aeadOpen'];
  fp16Encode: KernelSet['fp16Encode'];
  fp16Decode: KernelSet['fp16Decode'];
  bf16Encode(values: Float32Array, out: Uint16Array, random: number): void;
  bf16Decode: KernelSet['bf16Decode'];
  replicaMergeBf16: KernelSet['replicaMergeBf16'];
  int8Encode: KernelSet['int8Encode'];
  int8Decode: KernelSet['int8Decode'];
  qsgdEncode: KernelSet['qsgdEncode'];
  qsgdDecode: KernelSet['qsgdDecode'];
  dgcAccumulate: KernelSet['dgcAccumulate'];
  pairsEncode: KernelSet['pairsEncode'];
  pairsAccumulate: KernelSet['pairsAccumulate'];
  signEncode: KernelSet['signEncode'];
  signDecode: KernelSet['signDecode'];
  sgdUpdate: KernelSet['sgdUpdate'];
  momentumUpdate: KernelSet['momentumUpdate'];
  adamUpdate: KernelSet['adamUpdate'];
  sparseLinearSteps: KernelSet['sparseLinearSteps'];
  info(): { blas: string; core: string };
}

export const addonPath = new URL('../../build/Release/converge_native.node', import.meta.url);
/** The convolutions through oneDNN (native/dnnl), where libdnnl-dev was there to build them. */
export const dnnlPath = new URL('../../native/dnnl/build/Release/converge_dnnl.node', import.meta.url);

interface DnnlAddon {
  convForward: Addon['convForward'];
  convBackward: Addon['convBackward'];
  reorderChannels: KernelSet['reorderChannels'];
  channelBlock(): number;
  info(): string;
}

/** oneDNN's convolutions, unless missing or CONVERGE_CONV=im2col asks for the OpenBLAS ones. */
function loadDnnl(): DnnlAddon | null {
  if (process.env.CONVERGE_CONV === 'im2col' || !existsSync(dnnlPath)) return null;
  return createRequire(import.meta.url)(dnnlPath.pathname) as DnnlAddon;
}

/** Loads the addon; throws (with the loader's reason) when it is missing or broken. */
export function loadNativeKernels(): { kernels: KernelSet; info: { blas: string; core: string; conv: string } } {
  const addon = createRequire(import.meta.url)(addonPath.pathname) as Addon;
  // the convolutions: oneDNN's direct kernels where built (what PyTorch uses), else im2col and sgemm
  const dnnl = loadDnnl();
  const conv = dnnl ?? addon;
  const plainOnly = (g: ConvGeometry) => {
    if (!dnnl && (g.inputBlock !== 1 || g.outputBlock !== 1)) throw new RangeError('the im2col convolutions read and write plain NCHW arrays only (channelBlock 1)');
  };
  const kernels: KernelSet = {
    // oneDNN computes convolutions in channel blocks; the im2col ones, on plain arrays only
    channelBlock: dnnl ? dnnl.channelBlock() : 1,
    reorderChannels: dnnl ? dnnl.reorderChannels : referenceKernels.reorderChannels,
    gemm: addon.gemm,
    denseForward: addon.denseForward,
    denseBackward: addon.denseBackward,
    convForward: (x, w, bias, out, batch, g, columns) => plainOnly(g) ?? conv.convForward(x, w, bias, out, batch, columns,
      g.channels, g.height, g.width, g.filters, g.kernelSize, g.pad, g.stride, g.outHeight, g.outWidth, g.inputBlock, g.outputBlock),
    convBackward: (x, w, gradOut, gradW, gradBias, gradX, batch, g, columns) => plainOnly(g) ?? conv.convBackward(x, w, gradOut, gradW, gradBias, gradX, batch, columns,
      g.channels, g.height, g.width, g.filters, g.kernelSize, g.pad, g.stride, g.outHeight, g.outWidth, g.inputBlock, g.outputBlock),
    maxPoolForward: (x, out, argmax, batch, g) => addon.maxPoolForward(x, out, argmax, batch, g.channels, g.height, g.width, g.size, g.outHeight, g.outWidth),
    maxPoolBackward: addon.maxPoolBackward,
    reluForward: addon.reluForward,
    reluBackward: addon.reluBackward,
    softmaxCrossEntropy: addon.softmaxCrossEntropy,
    batchNormForward: addon.batchNormForward,
    batchNormBackward: addon.batchNormBackward,
    channelSums: addon.channelSums,
    batchNormInputGradient: addon.batchNormInputGradient,
    reduceStrided: addon.reduceStrided,
    zero: addon.zero,
    copy: addon.copy,
    addInto: addon.addInto,
    replicaMerge: addon.replicaMerge,
    aeadSeal: addon.aeadSeal,
    topkIndices: addon.topkIndices,
    aeadOpen: addon.aeadOpen,
    fp16Encode: addon.fp16Encode,
    fp16Decode: addon.fp16Decode,
    bf16Encode: (values, out, random) => addon.bf16Encode(values, out, random ?? -1), // −1: nearest, not stochastic
    bf16Decode: addon.bf16Decode,
    replicaMergeBf16: addon.replicaMergeBf16,
    int8Encode: addon.int8Encode,
    int8Decode: addon.int8Decode,
    qsgdEncode: addon.qsgdEncode,
    qsgdDecode: addon.qsgdDecode,
    dgcAccumulate: addon.dgcAccumulate,
    pairsEncode: addon.pairsEncode,
    pairsAccumulate: addon.pairsAccumulate,
    signEncode: addon.signEncode,
    signDecode: addon.signDecode,
    sgdUpdate: addon.sgdUpdate,
    momentumUpdate: addon.momentumUpdate,
    adamUpdate: addon.adamUpdate,
    // a sparse row has ~40 entries: the loop costs less in JavaScript than one call into the addon
    sparseDot: referenceKernels.sparseDot,
    sparseAxpy: referenceKernels.sparseAxpy,
    // but a minibatch of whole per-example steps is worth one call
    sparseLinearSteps: addon.sparseLinearSteps,
  };
  return { kernels, info: { ...addon.info(), conv: dnnl ? dnnl.info() : 'im2col + sgemm' } };
}
