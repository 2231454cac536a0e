// The reference kernels: plain TypeScript, short and obviously right, and not wasteful
// (loops ordered so the innermost one walks memory contiguously; no allocation per call).
// Every faster implementation is tested against these.

import { createCipheriv, createDecipheriv } from 'node:crypto';
import { referenceCodecs } from './reference-codecs.js';
import { blockedIndex, type ConvGeometry, type KernelSet, type PoolGeometry } from './types.js';

/** gemm on sub-ranges of larger buffers, so per-sample loops need no subarray views. */
export function gemmAt(transA: boolean, transB: boolean, m: number, n: number, k: number, alpha: number,
  a: Float32Array, aOffset: number, b: Float32Array, bOffset: number, beta: number, c: Float32Array, cOffset: number): void {
  const cEnd = cOffset + m * n;
  if (beta === 0) c.fill(0, cOffset, cEnd);
  else if (beta !== 1) for (let i = cOffset; i < cEnd; i++) c[i] *= beta;
  if (!transA && !transB) {
    // c[i,:] += a[i,p] · b[p,:]
    for (let i = 0; i < m; i++) {
      const cRow = cOffset + i * n;
      const aRow = aOffset + i * k;
      for (let p = 0; p < k; p++) {
        const s = alpha * a[aRow + p];
        if (s === 0) continue;
        const bRow = bOffset + p * n;
        for (let j = 0; j < n; j++) c[cRow + j] += s * b[bRow + j];
      }
    }
  } else if (transA && !transB) {
    // a is [k,m]: c[i,:] += a[p,i] · b[p,:]
    for (let p = 0; p < k; p++) {
      const aRow = aOffset + p * m;
      const bRow = bOffset + p * n;
      for (let i = 0; i < m; i++) {
        const s = alpha * a[aRow + i];
        if (s === 0) continue;
        const cRow = cOffset + i * n;
        for (let j = 0; j < n; j++) c[cRow + j] += s * b[bRow + j];
      }
    }
  } else if (!transA && transB) {
    // b is [n,k]: c[i,j] += a[i,:] · b[j,:]
    for (let i = 0; i < m; i++) {
      const aRow = aOffset + i * k;
      const cRow = cOffset + i * n;
      for (let j = 0; j < n; j++) {
        const bRow = bOffset + j * k;
        let sum = 0;
        for (let p = 0; p < k; p++) sum += a[aRow + p] * b[bRow + p];
        c[cRow + j] += alpha * sum;
      }
    }
  } else {
    // a is [k,m], b is [n,k]
    for (let i = 0; i < m; i++) {
      const cRow = cOffset + i * n;
      for (let j = 0; j < n; j++) {
        const bRow = bOffset + j * k;
        let sum = 0;
        for (let p = 0; p < k; p++) sum += a[aOffset + p * m + i] * b[bRow + p];
        c[cRow + j] += alpha * sum;
      }
    }
  }
}

/** columns[(c·K + kh)·K + kw, oh·OW + ow] = x[c, oh·s − pad + kh, ow·s − pad + kw] (0 outside) */
export function im2col(x: Float32Array, xOffset: number, g: ConvGeometry, columns: Float32Array): void {
  const { channels, height, width, kernelSize: K, pad, stride, outHeight, outWidth } = g;
  let row = 0;
  for (let c = 0; c < channels; c++) {
    const plane = xOffset + c * height * width;
    for (let kh = 0; kh < K; kh++) {
      for (let kw = 0; kw < K; kw++, row++) {
        let o = row * outHeight * outWidth;
        for (let oh = 0; oh < outHeight; oh++) {
          const ih = oh * stride - pad + kh;
          if (ih < 0 || ih >= height) {
            columns.fill(0, o, o + outWidth);
            o += outWidth;
            continue;
          }
          const line = plane + ih * width;
          for (let ow = 0; ow < outWidth; ow++, o++) {
            const iw = ow * stride - pad + kw;
            columns[o] = iw >= 0 && iw < width ? x[line + iw] : 0;
          }
        }
      }
    }
  }
}

/** The adjoint of im2col: gradX[c, ih, iw] += columns[row, o] for every place the pixel was copied. */
export function col2im(columns: Float32Array, g: ConvGeometry, gradX: Float32Array, xOffset: number): void {
  const { channels, height, width, kernelSize: K, pad, stride, outHeight, outWidth } = g;
  gradX.fill(0, xOffset, xOffset + channels * height * width);
  let row = 0;
  for (let c = 0; c < channels; c++) {
    const plane = xOffset + c * height * width;
    for (let kh = 0; kh < K; kh++) {
      for (let kw = 0; kw < K; kw++, row++) {
        let o = row * outHeight * outWidth;
        for (let oh = 0; oh < outHeight; oh++) {
          const ih = oh * stride - pad + kh;
          if (ih < 0 || ih >= height) {
            o += outWidth;
            continue;
          }
          const line = plane + ih * width;
          for (let ow = 0; ow < outWidth; ow++, o++) {
            const iw = ow * stride - pad + kw;
            if (iw >= 0 && iw < width) gradX[line + iw] += columns[o];
          }
        }
      }
    }
  }
}

/** A channel-blocked array as a plain one (or the other way), through fresh memory: the reference convolutions' blocked inputs and outputs. */
function reblocked(source: Float32Array, batch: number, channels: number, plane: number, fromBlock: number, toBlock: number): Float32Array {
  const target = new Float32Array(batch * channels * plane);
  referenceKernels.reorderChannels(source, target, batch, channels, plane, fromBlock, toBlock);
  return target;
}

/** top-k's threshold comes from this many magnitudes, sampled at even strides. */
const TOPK_SAMPLES = 4096;
/** Scratch for topkIndices, grown as needed and kept (no allocation per step). */
const topkScratch: { sample: Float32Array; magnitudes: Float32Array; candidates: Uint32Array } = { sample: new Float32Array(0), magnitudes: new Float32Array(0), candidates: new Uint32Array(0) };
const grown = (array: Float32Array, n: number) => (array.length >= n ? array : new Float32Array(Math.max(n, 2 * array.length)));
const grownIndices = (array: Uint32Array, n: number) => (array.length >= n ? array : new Uint32Array(Math.max(n, 2 * array.length)));

/** The (rank)-th smallest of values[0, count) (0-based), by quickselect; reorders values. */
function selectSmallest(values: Float32Array, count: number, rank: number): number {
  let low = 0;
  let high = count - 1;
  while (low < high) {
    const pivot = values[(low + high) >> 1];
    let i = low;
    let j = high;
    while (i <= j) {
      while (values[i] < pivot) i++;
      while (values[j] > pivot) j--;
      if (i <= j) {
        const t = values[i];
        values[i] = values[j];
        values[j] = t;
        i++;
        j--;
      }
    }
    if (rank <= j) high = j;
    else if (rank >= i) low = i;
    else return values[rank];
  }
  return values[rank];
}

export const referenceKernels: KernelSet = {
  // the gradient and parameter codecs, in their own file
  ...referenceCodecs,

  // the convolutions below read and write plain arrays; blocked ones are reordered around them
  channelBlock: 1,

  reorderChannels(source, target, batch, channels, plane, fromBlock, toBlock) {
    for (let n = 0; n < batch; n++) {
      for (let c = 0; c < channels; c++) {
        for (let i = 0; i < plane; i++) target[blockedIndex(n, c, i, channels, plane, toBlock)] = source[blockedIndex(n, c, i, channels, plane, fromBlock)];
      }
    }
  },

  gemm(transA, transB, m, n, k, alpha, a, b, beta, c) {
    gemmAt(transA, transB, m, n, k, alpha, a, 0, b, 0, beta, c, 0);
  },

  denseForward(x, w, bias, out, batch, inputs, outputs) {
    gemmAt(false, true, batch, outputs, inputs, 1, x, 0, w, 0, 0, out, 0);
    for (let i = 0; i < batch; i++) {
      const row = i * outputs;
      for (let j = 0; j < outputs; j++) out[row + j] += bias[j];
    }
  },

  denseBackward(x, w, gradOut, gradW, gradBias, gradX, batch, inputs, outputs, accumulate = false) {
    if (accumulate) {
      // this batch's gradients whole, then added: the sums serial accumulation takes
      const w1 = new Float32Array(outputs * inputs);
      const b1 = new Float32Array(outputs);
      referenceKernels.denseBackward(x, w, gradOut, w1, b1, gradX, batch, inputs, outputs);
      for (let i = 0; i < w1.length; i++) gradW[i] += w1[i];
      for (let j = 0; j < outputs; j++) gradBias[j] += b1[j];
      return;
    }
    gemmAt(true, false, outputs, inputs, batch, 1, gradOut, 0, x, 0, 0, gradW, 0);
    gradBias.fill(0, 0, outputs);
    for (let i = 0; i < batch; i++) {
      const row = i * outputs;
      for (let j = 0; j < outputs; j++) gradBias[j] += gradOut[row + j];
    }
    if (gradX) gemmAt(false, false, batch, inputs, outputs, 1, gradOut, 0, w, 0, 0, gradX, 0);
  },

  convForward(x, w, bias, out, batch, g, columns) {
    if (g.inputBlock !== 1 || g.outputBlock !== 1) {
      const plain = new Float32Array(out.length);
      referenceKernels.convForward(reblocked(x, batch, g.channels, g.height * g.width, g.inputBlock, 1), w, bias, plain, batch, { ...g, inputBlock: 1, outputBlock: 1 }, columns);
      referenceKernels.reorderChannels(plain, out, batch, g.filters, g.outHeight * g.outWidth, 1, g.outputBlock);
      return;
    }
    const { channels, height, width, filters, kernelSize: K, outHeight, outWidth } = g;
    const inSize = channels * height * width;
    const outPlane = outHeight * outWidth;
    const patch = channels * K * K;
    for (let n = 0; n < batch; n++) {
      im2col(x, n * inSize, g, columns);
      const o = n * filters * outPlane;
      gemmAt(false, false, filters, outPlane, patch, 1, w, 0, columns, 0, 0, out, o);
      for (let f = 0; f < filters; f++) {
        const bf = bias[f];
        const start = o + f * outPlane;
        for (let i = start; i < start + outPlane; i++) out[i] += bf;
      }
    }
  },

  convBackward(x, w, gradOut, gradW, gradBias, gradX, batch, g, columns) {
    if (g.inputBlock !== 1 || g.outputBlock !== 1) {
      const inPlane = g.height * g.width;
      const plainGradX = gradX ? new Float32Array(batch * g.channels * inPlane) : null;
      referenceKernels.convBackward(reblocked(x, batch, g.channels, inPlane, g.inputBlock, 1), w, reblocked(gradOut, batch, g.filters, g.outHeight * g.outWidth, g.outputBlock, 1),
        gradW, gradBias, plainGradX, batch, { ...g, inputBlock: 1, outputBlock: 1 }, columns);
      if (gradX) referenceKernels.reorderChannels(plainGradX!, gradX, batch, g.channels, inPlane, 1, g.inputBlock);
      return;
    }
    const { channels, height, width, filters, kernelSize: K, outHeight, outWidth } = g;
    const inSize = channels * height * width;
    const outPlane = outHeight * outWidth;
    const patch = channels * K * K;
    gradBias.fill(0, 0, filters);
    for (let n = 0; n < batch; n++) {
      const o = n * filters * outPlane;
      im2col(x, n * inSize, g, columns);
      gemmAt(false, true, filters, patch, outPlane, 1, gradOut, o, columns, 0, n === 0 ? 0 : 1, gradW, 0);
      for (let f = 0; f < filters; f++) {
        let sum = 0;
        const start = o + f * outPlane;
        for (let i = start; i < start + outPlane; i++) sum += gradOut[i];
        gradBias[f] += sum;
      }
      if (gradX) {
        gemmAt(true, false, patch, outPlane, filters, 1, w, 0, gradOut, o, 0, columns, 0);
        col2im(columns, g, gradX, n * inSize);
      }
    }
  },

  maxPoolForward(x, out, argmax, batch, g: PoolGeometry) {
    const { channels, height, width, size, outHeight, outWidth } = g;
    let o = 0;
    for (let plane = 0; plane < batch * channels; plane++) {
      const base = plane * height * width;
      for (let oh = 0; oh < outHeight; oh++) {
        for (let ow = 0; ow < outWidth; ow++, o++) {
          let best = -Infinity;
          let bestIndex = base + oh * size * width + ow * size;
          for (let dh = 0; dh < size; dh++) {
            const line = base + (oh * size + dh) * width + ow * size;
            for (let dw = 0; dw < size; dw++) {
              const v = x[line + dw];
              if (v > best) {
                best = v;
                bestIndex = line + dw;
              }
            }
          }
          out[o] = best;
          argmax[o] = bestIndex;
        }
      }
    }
  },

  maxPoolBackward(gradOut, argmax, gradX, length, inputLength) {
    gradX.fill(0, 0, inputLength);
    for (let i = 0; i < length; i++) gradX[argmax[i]] += gradOut[i];
  },

  reluForward(x, y, length) {
    for (let i = 0; i < length; i++) {
      const v = x[i];
      y[i] = v > 0 ? v : 0;
    }
  },

  reluBackward(y, gradY, gradX, length) {
    for (let i = 0; i < length; i++) gradX[i] = y[i] > 0 ? gradY[i] : 0;
  },

  batchNormForward(x, gamma, beta, out, normalised, inverseStd, runningMean, runningVar, batch, channels, plane, block, training, momentum, epsilon) {
    const count = batch * plane;
    for (let c = 0; c < channels; c++) {
      // sample n's values of channel c: from at(n), `block` apart
      const at = (n: number) => blockedIndex(n, c, 0, channels, plane, block);
      let mean: number;
      let inverse: number;
      if (training) {
        let sum = 0;
        for (let n = 0; n < batch; n++) for (let i = 0, j = at(n); i < plane; i++, j += block) sum += x[j];
        mean = sum / count;
        let squares = 0;
        for (let n = 0; n < batch; n++) for (let i = 0, j = at(n); i < plane; i++, j += block) squares += (x[j] - mean) ** 2;
        inverse = 1 / Math.sqrt(squares / count + epsilon);
        inverseStd[c] = inverse;
        runningMean[c] = (1 - momentum) * runningMean[c] + momentum * mean;
        runningVar[c] = (1 - momentum) * runningVar[c] + momentum * (count > 1 ? squares / (count - 1) : squares);
      } else {
        mean = runningMean[c];
        inverse = 1 / Math.sqrt(runningVar[c] + epsilon);
      }
      const g = gamma[c];
      const b = beta[c];
      for (let n = 0; n < batch; n++) {
        for (let i = 0, j = at(n); i < plane; i++, j += block) {
          const normal = (x[j] - mean) * inverse;
          normalised[j] = normal;
          out[j] = g * normal + b;
        }
      }
    }
  },

  batchNormBackward(gradOut, normalised, inverseStd, gamma, gradGamma, gradBeta, gradX, batch, channels, plane, block) {
    const count = batch * plane;
    for (let c = 0; c < channels; c++) {
      const at = (n: number) => blockedIndex(n, c, 0, channels, plane, block);
      let sumDy = 0;
      let sumDyX = 0;
      for (let n = 0; n < batch; n++) {
        for (let i = 0, j = at(n); i < plane; i++, j += block) {
          sumDy += gradOut[j];
          sumDyX += gradOut[j] * normalised[j];
        }
      }
      gradGamma[c] = sumDyX;
      gradBeta[c] = sumDy;
      if (!gradX) continue;
      const scale = gamma[c] * inverseStd[c];
      const meanDy = sumDy / count;
      const meanDyX = sumDyX / count;
      for (let n = 0; n < batch; n++) {
        for (let i = 0, j = at(n); i < plane; i++, j += block) gradX[j] = scale * (gradOut[j] - meanDy - normalised[j] * meanDyX);
      }
    }
  },

  channelSums(x, centre, out, batch, channels, plane, block) {
    for (let c = 0; c < channels; c++) {
      let total = 0;
      for (let n = 0; n < batch; n++) {
        for (let i = 0, j = blockedIndex(n, c, 0, channels, plane, block); i < plane; i++, j += block) total += centre ? (x[j] - centre[c]) ** 2 : x[j];
      }
      out[c] = total;
    }
  },

  batchNormInputGradient(gradOut, normalised, inverseStd, gamma, sumDy, sumDyX, count, gradX, batch, channels, plane, block) {
    for (let c = 0; c < channels; c++) {
      const scale = gamma[c] * inverseStd[c];
      const meanDy = sumDy[c] / count;
      const meanDyX = sumDyX[c] / count;
      for (let n = 0; n < batch; n++) {
        for (let i = 0, j = blockedIndex(n, c, 0, channels, plane, block); i < plane; i++, j += block) gradX[j] = scale * (gradOut[j] - meanDy - normalised[j] * meanDyX);
      }
    }
  },

  softmaxCrossEntropy(logits, labels, batch, classes, gradLogits) {
    let total = 0;
    const scale = 1 / batch;
    for (let i = 0; i < batch; i++) {
      const row = i * classes;
      let max = -Infinity;
      for (let j = 0; j < classes; j++) if (logits[row + j] > max) max = logits[row + j];
      let sum = 0;
      for (let j = 0; j < classes; j++) sum += Math.exp(logits[row + j] - max);
      const label = labels[i];
      total += Math.log(sum) - (logits[row + label] - max);
      const inverse = 1 / sum;
      for (let j = 0; j < classes; j++) {
        const p = Math.exp(logits[row + j] - max) * inverse;
        gradLogits[row + j] = (p - (j === label ? 1 : 0)) * scale;
      }
    }
    return total / batch;
  },

  reduceStrided(source, first, stride, count, start, end, target, at, scale) {
    // float32 adds (fround) in rank order, so that every backend gives the same bits
    for (let i = start; i < end; i++) {
      let sum = source[first + i];
      for (let r = 1; r < count; r++) sum = Math.fround(sum + source[first + r * stride + i]);
      target[at + i] = scale === 1 ? sum : sum * Math.fround(scale);
    }
  },

  zero(array, start, end) {
    array.fill(0, start, end);
  },

  addInto(target, at, source, from, length) {
    for (let i = 0; i < length; i++) target[at + i] += source[from + i];
  },

  replicaMerge(shared, local, base, length) {
    for (let i = 0; i < length; i++) {
      const change = Math.fround(local[i] - base[i]);
      const value = Math.fround(shared[i] + (shared[i] === base[i] ? change : Math.fround(change * 0.5)));
      shared[i] = value;
      local[i] = value;
      base[i] = value;
    }
  },

  copy(target, at, source, from, length) {
    target.set(source.subarray(from, from + length), at);
  },

  sparseDot(indices, values, start, end, dense, offset) {
    let sum = 0;
    for (let k = start; k < end; k++) sum += values[k] * dense[offset + indices[k]];
    return sum;
  },

  sparseAxpy(indices, values, start, end, alpha, dense, offset) {
    for (let k = start; k < end; k++) dense[offset + indices[k]] += alpha * values[k];
  },

  sparseLinearSteps(rowPtr, indices, values, y, order, first, count, params, features, lr, l2, interceptRate, hinge) {
    let total = 0;
    for (let e = 0; e < count; e++) {
      const i = order[first + e];
      const start = rowPtr[i];
      const end = rowPtr[i + 1];
      let z = 0;
      for (let k = start; k < end; k++) z += values[k] * params[indices[k]];
      z += params[features];
      let loss: number;
      let slope: number;
      if (!hinge) {
        loss = (z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z))) - y[i] * z;
        slope = 1 / (1 + Math.exp(-z)) - y[i];
      } else {
        const s = 2 * y[i] - 1;
        loss = s * z < 1 ? 1 - s * z : 0;
        slope = s * z < 1 ? -s : 0;
      }
      for (let k = start; k < end; k++) {
        const j = indices[k];
        params[j] -= lr * (slope * values[k] + l2 * params[j]);
      }
      params[features] -= lr * interceptRate * slope;
      total += loss;
    }
    return total;
  },

  sgdUpdate(params, grad, length, lr, weightDecay) {
    for (let i = 0; i < length; i++) params[i] -= lr * (grad[i] + weightDecay * params[i]);
  },

  momentumUpdate(params, grad, velocity, length, lr, momentum, weightDecay, nesterov) {
    // the velocity starts at zero, so the first step sets it to g′, as PyTorch's buffer does
    for (let i = 0; i < length; i++) {
      const g = grad[i] + weightDecay * params[i];
      const v = (velocity[i] = momentum * velocity[i] + g);
      params[i] -= lr * (nesterov ? g + momentum * v : v);
    }
  },

  adamUpdate(params, grad, m, v, length, stepSize, sqrtCorrection2, beta1, beta2, epsilon, weightDecay) {
    for (let i = 0; i < length; i++) {
      const g = grad[i] + weightDecay * params[i];
      const mi = (m[i] = beta1 * m[i] + (1 - beta1) * g);
      const vi = (v[i] = beta2 * v[i] + (1 - beta2) * g * g);
      params[i] -= (stepSize * mi) / (Math.sqrt(vi) / sqrtCorrection2 + epsilon);
    }
  },

  topkIndices(values, k, chosen) {
    const n = values.length;
    // a threshold a little below the k-th largest magnitude, from a strided sample; widened until it admits k
    const samples = Math.min(n, TOPK_SAMPLES);
    const sample = (topkScratch.sample = grown(topkScratch.sample, samples));
    for (let s = 0; s < samples; s++) sample[s] = -Math.abs(values[Math.floor((s * n) / samples)]);
    let threshold = 2 * k >= n ? 0 : -selectSmallest(sample, samples, Math.min(samples - 1, Math.floor((samples * 2 * k) / n)));
    let count = 0;
    for (;;) {
      count = 0;
      for (let i = 0; i < n; i++) if (Math.abs(values[i]) >= threshold) count++;
      if (count >= k || threshold === 0) break;
      threshold /= 4;
    }
    const candidates = (topkScratch.candidates = grownIndices(topkScratch.candidates, count));
    const magnitudes = (topkScratch.magnitudes = grown(topkScratch.magnitudes, count));
    for (let i = 0, j = 0; i < n; i++) {
      if (Math.abs(values[i]) >= threshold) {
        candidates[j] = i;
        magnitudes[j++] = -Math.abs(values[i]);
      }
    }
    // the k-th largest magnitude among the candidates; then, in index order, all above it and the first ties
    const kth = -selectSmallest(magnitudes, count, k - 1);
    let above = 0;
    for (let j = 0; j < count; j++) if (Math.abs(values[candidates[j]]) > kth) above++;
    let ties = k - above;
    let written = 0;
    for (let j = 0; j < count && written < k; j++) {
      const magnitude = Math.abs(values[candidates[j]]);
      if (magnitude > kth || (magnitude === kth && ties-- > 0)) chosen[written++] = candidates[j];
    }
    return written;
  },

  // AES-GCM through node:crypto (OpenSSL): the reference is the standard's implementation, not a
  // TypeScript one; the native kernel calls the same library without Node's per-call allocations.
  aeadSeal(key, nonce, aad, src, dst, tag) {
    const cipher = createCipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
    cipher.setAAD(aad);
    if (dst) dst.set(cipher.update(src));
    else cipher.setAAD(src);
    cipher.final();
    tag.set(cipher.getAuthTag());
  },

  aeadOpen(key, nonce, aad, src, dst, tag) {
    const decipher = createDecipheriv('aes-256-gcm', key, nonce, { authTagLength: 16 });
    decipher.setAAD(aad);
    if (dst) dst.set(decipher.update(src));
    else decipher.setAAD(src);
    decipher.setAuthTag(tag);
    try {
      decipher.final();
      return true;
    } catch {
      return false;
    }
  },
};
