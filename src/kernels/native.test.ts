// The native kernels held to the reference on random shapes. Skipped when the addon is not
// built, unless CONVERGE_REQUIRE_NATIVE=1 (CI sets it), where a missing addon is a failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../tensor/random.js';
import { epochOrder } from '../data/batches.js';
import { referenceKernels as R } from './reference.js';
import { loadNativeKernels } from './native.js';
import { convGeometry, poolGeometry, type KernelSet } from './types.js';

let N: KernelSet | null = null;
let nativeInfo: { conv: string } | null = null;
let loadError = '';
try {
  ({ kernels: N, info: nativeInfo } = loadNativeKernels());
} catch (error) {
  loadError = (error as Error).message;
}
const required = process.env.CONVERGE_REQUIRE_NATIVE === '1';
const skip = !N && !required ? `native kernels not built (${loadError.split('\n')[0]})` : false;

const random = new Random(7);
const rand = (n: number) => random.fillUniform(new Float32Array(n));

function close(actual: Float32Array, expected: Float32Array, what: string, tolerance = 1e-4): void {
  assert.equal(actual.length, expected.length);
  let scale = 0;
  for (const v of expected) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < actual.length; i++) {
    if (!(Math.abs(actual[i] - expected[i]) <= tolerance * (1 + scale))) assert.fail(`${what}[${i}]: native ${actual[i]}, reference ${expected[i]}`);
  }
}

/** Runs `call` with reference and native kernels on identical copies of `outputs`; compares them. */
function same(what: string, outputs: Float32Array[], call: (k: KernelSet, out: Float32Array[]) => number | void, fast: KernelSet = N!): void {
  const ref = outputs.map((o) => o.slice());
  const nat = outputs.map((o) => o.slice());
  const a = call(R, ref);
  const b = call(fast, nat);
  if (typeof a === 'number') assert.ok(Math.abs(a - (b as number)) < 1e-5 * (1 + Math.abs(a)), `${what}: ${a} vs ${b}`);
  ref.forEach((r, i) => close(nat[i], r, `${what} output ${i}`));
}

test('native kernels load when required', { skip: !required }, () => {
  assert.ok(N, `CONVERGE_REQUIRE_NATIVE=1 but the addon failed to load: ${loadError}`);
});

test('native gemm matches the reference: every transpose, odd shapes, alpha/beta, shared memory', { skip }, () => {
  for (const [m, n, k] of [[1, 1, 1], [1, 10, 784], [64, 512, 784], [7, 13, 5], [129, 3, 257], [300, 200, 100]]) {
    for (const transA of [false, true]) for (const transB of [false, true]) {
      const a = rand(m * k);
      const b = rand(k * n);
      const shared = new Float32Array(new SharedArrayBuffer(4 * m * n));
      shared.set(rand(m * n));
      for (const [alpha, beta] of [[1, 0], [0.5, 1], [-2, 0.25]]) {
        same(`gemm ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} ${m}x${n}x${k} α${alpha} β${beta}`, [shared], (K, [c]) => K.gemm(transA, transB, m, n, k, alpha, a, b, beta, c));
      }
    }
  }
});

test('native dense forward and backward match the reference (batch 1, odd, large), overwriting and accumulating', { skip }, () => {
  for (const [batch, inputs, outputs] of [[1, 784, 512], [3, 7, 5], [256, 33, 10]]) {
    const x = rand(batch * inputs);
    const w = rand(outputs * inputs);
    const bias = rand(outputs);
    same(`dense forward ${batch}x${inputs}x${outputs}`, [new Float32Array(batch * outputs)], (K, [out]) => K.denseForward(x, w, bias, out, batch, inputs, outputs));
    const gradOut = rand(batch * outputs);
    same(`dense backward ${batch}x${inputs}x${outputs}`, [new Float32Array(outputs * inputs), new Float32Array(outputs), new Float32Array(batch * inputs)],
      (K, [gw, gb, gx]) => K.denseBackward(x, w, gradOut, gw, gb, gx, batch, inputs, outputs));
    same('dense backward without gradX', [new Float32Array(outputs * inputs), new Float32Array(outputs)],
      (K, [gw, gb]) => K.denseBackward(x, w, gradOut, gw, gb, null, batch, inputs, outputs));
    // accumulate: added to gradients already there, each sum taken whole first — bit for bit the fresh gradients added after
    const [startW, startB] = [rand(outputs * inputs), rand(outputs)];
    same(`dense backward accumulating ${batch}x${inputs}x${outputs}`, [startW, startB],
      (K, [gw, gb]) => K.denseBackward(x, w, gradOut, gw, gb, null, batch, inputs, outputs, true));
    for (const K of [R, N!]) {
      const [fw, fb] = [new Float32Array(outputs * inputs), new Float32Array(outputs)];
      K.denseBackward(x, w, gradOut, fw, fb, null, batch, inputs, outputs);
      const [gw, gb] = [startW.slice(), startB.slice()];
      K.denseBackward(x, w, gradOut, gw, gb, null, batch, inputs, outputs, true);
      assert.deepEqual(gw, startW.map((v, i) => v + fw[i]), `${K === R ? 'reference' : 'native'} weight gradient accumulated`);
      assert.deepEqual(gb, startB.map((v, j) => v + fb[j]), `${K === R ? 'reference' : 'native'} bias gradient accumulated`);
    }
  }
});

/** The native kernels with the convolutions of im2col and sgemm, whether or not oneDNN is there. */
function im2colKernels(): KernelSet | null {
  const saved = process.env.CONVERGE_CONV;
  process.env.CONVERGE_CONV = 'im2col';
  try {
    return N ? loadNativeKernels().kernels : null;
  } finally {
    if (saved === undefined) delete process.env.CONVERGE_CONV;
    else process.env.CONVERGE_CONV = saved;
  }
}

test('oneDNN\'s convolutions are the native ones where libdnnl-dev was there to build them (CI requires it)', { skip: !N || (!nativeInfo?.conv.startsWith('oneDNN') && process.env.CONVERGE_REQUIRE_DNNL !== '1') }, () => {
  assert.match(nativeInfo!.conv, /^oneDNN \d+\.\d+/, 'CONVERGE_REQUIRE_DNNL=1 but the oneDNN convolutions did not load');
});

for (const [label, kernels] of [['oneDNN (where built)', () => N], ['im2col + sgemm', im2colKernels]] as const) {
test(`native convolution forward and backward match the reference (padding, stride, odd sizes): ${label}`, { skip }, () => {
  const fast = kernels()!;
  for (const [C, H, W, F, Kz, pad, stride, batch] of [[1, 28, 28, 32, 3, 1, 1, 2], [32, 14, 14, 64, 3, 1, 1, 1], [3, 7, 6, 4, 3, 0, 2, 3], [2, 5, 9, 3, 5, 2, 1, 2], [2, 4, 4, 2, 1, 0, 1, 1], [16, 28, 28, 32, 3, 1, 2, 4], [16, 7, 7, 32, 1, 0, 2, 3]]) {
    const g = convGeometry(C, H, W, F, Kz, pad, stride);
    const x = rand(batch * C * H * W);
    const w = rand(F * C * Kz * Kz);
    const bias = rand(F);
    const outSize = batch * F * g.outHeight * g.outWidth;
    const columns = () => new Float32Array(C * Kz * Kz * g.outHeight * g.outWidth);
    same(`conv forward ${[C, H, W, F, Kz, pad, stride]}`, [new Float32Array(outSize)], (K, [out]) => K.convForward(x, w, bias, out, batch, g, columns()), fast);
    const gradOut = rand(outSize);
    same(`conv backward ${[C, H, W, F, Kz, pad, stride]}`, [new Float32Array(w.length), new Float32Array(F), new Float32Array(x.length)],
      (K, [gw, gb, gx]) => K.convBackward(x, w, gradOut, gw, gb, gx, batch, g, columns()), fast);
  }
});
}

test('oneDNN\'s convolutions read and write channel-blocked images (8 and 16 channels a block), and its reorders match the reference', { skip: !N || !nativeInfo?.conv.startsWith('oneDNN') }, () => {
  assert.ok([8, 16].includes(N!.channelBlock), `channelBlock ${N!.channelBlock}: oneDNN asks for 8 (AVX2) or 16 (AVX-512) channels a block`);
  for (const block of [8, 16]) {
    for (const [C, H, W, F, Kz, pad, stride, batch] of [[16, 9, 9, 32, 3, 1, 1, 3], [32, 8, 8, 16, 3, 1, 2, 2], [16, 7, 7, 32, 1, 0, 2, 3]]) {
      for (const [inputBlock, outputBlock] of [[block, block], [1, block], [block, 1]]) {
        const g = convGeometry(C, H, W, F, Kz, pad, stride, inputBlock, outputBlock);
        const what = `${[C, H, W, F, Kz, pad, stride]} blocks ${inputBlock}→${outputBlock}`;
        const x = rand(batch * C * H * W);
        const w = rand(F * C * Kz * Kz);
        const bias = rand(F);
        const outSize = batch * F * g.outHeight * g.outWidth;
        const columns = () => new Float32Array(C * Kz * Kz * g.outHeight * g.outWidth);
        same(`conv forward ${what}`, [new Float32Array(outSize)], (K, [out]) => K.convForward(x, w, bias, out, batch, g, columns()));
        const gradOut = rand(outSize);
        same(`conv backward ${what}`, [new Float32Array(w.length), new Float32Array(F), new Float32Array(x.length)],
          (K, [gw, gb, gx]) => K.convBackward(x, w, gradOut, gw, gb, gx, batch, g, columns()));
      }
    }
    const x = rand(3 * 32 * 49);
    same(`reorder plain → ${block}`, [new Float32Array(x.length)], (K, [out]) => K.reorderChannels(x, out, 3, 32, 49, 1, block));
    same(`reorder ${block} → plain`, [new Float32Array(x.length)], (K, [out]) => K.reorderChannels(x, out, 3, 32, 49, block, 1));
  }
});

test('native pooling, ReLU, softmax cross-entropy and optimiser updates match the reference', { skip }, () => {
  const g = poolGeometry(3, 7, 6, 2);
  const batch = 2;
  const x = rand(batch * 3 * 7 * 6);
  const outLength = batch * 3 * g.outHeight * g.outWidth;
  const argmaxR = new Int32Array(outLength);
  const argmaxN = new Int32Array(outLength);
  const outR = new Float32Array(outLength);
  const outN = new Float32Array(outLength);
  R.maxPoolForward(x, outR, argmaxR, batch, g);
  N!.maxPoolForward(x, outN, argmaxN, batch, g);
  close(outN, outR, 'maxpool');
  assert.deepEqual(argmaxN, argmaxR);
  const gradOut = rand(outLength);
  same('maxpool backward', [rand(x.length)], (K, [gx]) => K.maxPoolBackward(gradOut, argmaxR, gx, outLength, x.length));
  same('relu forward', [new Float32Array(x.length)], (K, [y]) => K.reluForward(x, y, x.length));
  const gradY = rand(x.length);
  same('relu backward', [new Float32Array(x.length)], (K, [gx]) => K.reluBackward(x, gradY, gx, x.length));
  const logits = rand(37 * 10).map((v) => v * 20);
  const labels = Int32Array.from({ length: 37 }, (_, i) => i % 10);
  same('softmax cross-entropy', [new Float32Array(370)], (K, [grad]) => K.softmaxCrossEntropy(logits, labels, 37, 10, grad));
  const regions = rand(3 * 700);
  for (const [count, scale] of [[1, 1], [2, 0.5], [3, 1 / 3]]) {
    same(`reduceStrided ${count} ranks`, [regions], (K, [r]) => K.reduceStrided(r, 5, 700, count, 17, 690, r, 5 + (count - 1) * 700, scale));
    same(`reduceStrided ${count} ranks into another buffer`, [new Float32Array(700)], (K, [t]) => K.reduceStrided(regions, 0, 700, count, 0, 700, t, 0, scale));
  }
  same('zero', [rand(50)], (K, [a]) => K.zero(a, 7, 41));
  const source = rand(60);
  same('copy', [new Float32Array(new SharedArrayBuffer(4 * 60))], (K, [t]) => K.copy(t, 5, source, 11, 40));
  same('addInto', [rand(60)], (K, [t]) => K.addInto(t, 5, source, 11, 40));
  const n = 1001;
  const grad = rand(n);
  same('sgd update', [rand(n)], (K, [p]) => K.sgdUpdate(p, grad, n, 0.1, 0.01));
  const velocity = rand(n);
  for (const nesterov of [false, true]) same(`momentum update nesterov=${nesterov}`, [rand(n), velocity], (K, [p, v]) => K.momentumUpdate(p, grad, v, n, 0.1, 0.9, 0.001, nesterov));
  same('adam update', [rand(n), rand(n), rand(n).map(Math.abs)], (K, [p, m, v]) => K.adamUpdate(p, grad, m, v, n, 0.01, 0.3, 0.9, 0.999, 1e-8, 0.01));
});

test('native replicaMerge gives the reference\'s bits (float32 at each operation): whole changes where shared = base, halves elsewhere, magnitudes far apart', { skip }, () => {
  const n = 1037;
  // changes small and large against the shared values, so a merge computed in double and rounded once would differ
  const spread = (scale: number) => rand(n).map((v, i) => (v - 0.5) * scale * 10 ** ((i % 9) - 4));
  const shared = spread(1);
  const base = spread(3);
  const local = base.map((v, i) => (i % 3 === 0 ? v : v + spread(7)[i]));
  // every other coordinate still as this replica last saw it (its change lands whole), the rest changed by another (half lands)
  for (let i = 0; i < n; i += 2) shared[i] = base[i];
  const run = (k: KernelSet) => {
    const s = new Float32Array(new SharedArrayBuffer(4 * n));
    s.set(shared);
    const l = local.slice();
    const b = base.slice();
    k.replicaMerge(s, l, b, n - 5); // the last 5 are left alone
    return [s, l, b];
  };
  const [r, fast] = [run(R), run(N!)];
  for (let i = 0; i < 3; i++) assert.deepEqual(fast[i], r[i]);
  assert.deepEqual(r[0].subarray(n - 5), shared.subarray(n - 5));
  // the merge is shared + (local − base) × (1 or ½), to float32 precision, and leaves the three equal
  for (let i = 0; i < n - 5; i++) {
    const change = (local[i] - base[i]) * (i % 2 === 0 ? 1 : 0.5);
    const exact = shared[i] + change;
    const unit = 2 ** -22 * Math.max(Math.abs(shared[i]), Math.abs(change));
    assert.ok(Math.abs(r[0][i] - exact) <= unit, `${i}: ${r[0][i]} for ${exact}`);
    assert.ok(r[1][i] === r[0][i] && r[2][i] === r[0][i]);
  }
});

test('native batch norm forward (training and evaluation) and backward match the reference, plain and channel-blocked', { skip }, () => {
  // the last shapes: planes longer than the native kernel's blocks, and values far from zero (a mean
  // of 1,000 and a spread of 0.1), where a one-pass variance that did not shift would cancel
  for (const [batch, channels, plane, offset, spread] of [[4, 3, 25, 1, 3], [64, 16, 784, 1, 3], [2, 5, 1, 1, 3], [2, 32, 9, 1, 3], [3, 2, 1500, 1000, 0.1], [3, 16, 1500, 1000, 0.1]]) {
    const n = batch * channels * plane;
    const x = rand(n).map((v) => spread * v + offset);
    const gamma = rand(channels);
    const beta = rand(channels);
    for (const block of [1, 8, 16].filter((b) => channels % b === 0)) {
      const shape = `${[batch, channels, plane]} block ${block}`;
      for (const training of [true, false]) {
        same(`batch norm forward ${shape} ${training ? 'training' : 'evaluation'}`,
          [new Float32Array(n), new Float32Array(n), new Float32Array(channels), rand(channels), rand(channels).map((v) => 1 + Math.abs(v))],
          (K, [out, normalised, inverseStd, mean, variance]) => K.batchNormForward(x, gamma, beta, out, normalised, inverseStd, mean, variance, batch, channels, plane, block, training, 0.1, 1e-5));
      }
      const normalised = rand(n);
      const inverseStd = rand(channels).map((v) => 1 + Math.abs(v));
      const gradOut = rand(n);
      same(`batch norm backward ${shape}`, [new Float32Array(channels), new Float32Array(channels), new Float32Array(n)],
        (K, [gradGamma, gradBeta, gradX]) => K.batchNormBackward(gradOut, normalised, inverseStd, gamma, gradGamma, gradBeta, gradX, batch, channels, plane, block));
      // synchronised batch norm's sums, and its input gradient from sums over more values than this batch's
      const centre = rand(channels).map((v) => offset + spread * v);
      same(`channel sums ${shape}`, [new Float32Array(channels)], (K, [out]) => K.channelSums(x, null, out, batch, channels, plane, block));
      same(`channel sums of squares ${shape}`, [new Float32Array(channels)], (K, [out]) => K.channelSums(x, centre, out, batch, channels, plane, block));
      const [sumDy, sumDyX] = [rand(channels).map((v) => 50 * v), rand(channels).map((v) => 50 * v)];
      same(`batch norm input gradient ${shape}`, [new Float32Array(n)],
        (K, [gradX]) => K.batchNormInputGradient(gradOut, normalised, inverseStd, gamma, sumDy, sumDyX, 3 * n / channels, gradX, batch, channels, plane, block));
    }
  }
});

test('native AES-256-GCM gives the reference\'s (OpenSSL through node:crypto) ciphertext and tags, sealed and integrity-only, and refuses what it refuses', { skip }, () => {
  const bytes = (n: number) => Buffer.from(rand(Math.ceil(n / 4)).buffer).subarray(0, n);
  for (const n of [0, 1, 15, 16, 1000, 262144]) {
    const key = bytes(32), nonce = bytes(12), aad = bytes(4), plain = bytes(n);
    const outputs = [R, N!].map((k) => {
      const cipher = Buffer.alloc(n), tag = Buffer.alloc(16), gmac = Buffer.alloc(16);
      k.aeadSeal(key, nonce, aad, plain, cipher, tag);
      k.aeadSeal(key, nonce, aad, plain, null, gmac);
      return { cipher, tag, gmac };
    });
    assert.deepEqual(outputs[1], outputs[0], `${n} bytes`);
    const { cipher, tag, gmac } = outputs[0];
    const back = Buffer.alloc(n);
    assert.equal(N!.aeadOpen(key, nonce, aad, cipher, back, tag), true);
    assert.deepEqual(back, plain);
    assert.equal(N!.aeadOpen(key, nonce, aad, plain, null, gmac), true);
    const badTag = Buffer.from(tag);
    badTag[n % 16] ^= 0x80;
    assert.equal(N!.aeadOpen(key, nonce, aad, cipher, back, badTag), false, `${n} bytes, altered tag`);
    if (n > 0) {
      const altered = Buffer.from(cipher);
      altered[n - 1] ^= 1;
      assert.equal(N!.aeadOpen(key, nonce, aad, altered, back, tag), false, `${n} bytes, altered ciphertext`);
      assert.equal(N!.aeadOpen(key, nonce, aad, altered, null, gmac), false, `${n} bytes, altered clear text`);
    }
  }
});

test('native sparseLinearSteps takes the reference\'s per-example steps: logistic and hinge, with and without L2, rows of 0 to 60 entries, repeated features across rows', { skip }, () => {
  const rows = 300;
  const features = 500;
  const rowPtr = new Int32Array(rows + 1);
  const indices: number[] = [];
  const values: number[] = [];
  for (let r = 0; r < rows; r++) {
    const length = random.below(61); // 0…60, some rows empty
    const chosen = new Set<number>();
    while (chosen.size < length) chosen.add(random.below(features));
    for (const j of [...chosen].sort((a, b) => a - b)) {
      indices.push(j);
      values.push(random.next() * 4 - 2);
    }
    rowPtr[r + 1] = indices.length;
  }
  const y = Float32Array.from({ length: rows }, () => random.below(2));
  const order = epochOrder(new Uint32Array(rows), 11, 0);
  for (const hinge of [false, true]) {
    for (const l2 of [0, 1e-3]) {
      same(`sparseLinearSteps ${hinge ? 'hinge' : 'logistic'}, l2 ${l2}`, [rand(features + 1)], (k, [params]) =>
        k.sparseLinearSteps(rowPtr, Int32Array.from(indices), Float32Array.from(values), y, order, 7, 250, params, features, 0.5, l2, 0.01, hinge));
    }
  }
});

test('native topkIndices chooses what the reference chooses: random, tied and signed values, every density', { skip }, () => {
  for (const n of [1, 17, 4096, 536_714]) {
    for (const density of [0.001, 0.01, 0.25, 0.5, 1]) {
      const k = Math.max(1, Math.ceil(density * n));
      for (const tied of [false, true]) {
        const values = rand(n).map((x, i) => (tied ? Math.round(x * 3) : x) * (i % 3 === 0 ? -1 : 1));
        const [a, b] = [new Uint32Array(n), new Uint32Array(n)];
        assert.equal(N!.topkIndices(values, k, a), R.topkIndices(values, k, b));
        assert.deepEqual(a.subarray(0, k), b.subarray(0, k), `n ${n}, k ${k}, tied ${tied}`);
      }
    }
  }
});
