import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../tensor/random.js';
import { referenceKernels as K, im2col, col2im } from './reference.js';
import { convGeometry, poolGeometry } from './types.js';
import { kernel, registerKernel, useBackend, activeBackend } from './registry.js';

const random = new Random(42);
const rand = (n: number) => random.fillUniform(new Float32Array(n));

function close(actual: Float32Array, expected: Float32Array | number[], tolerance: number, what: string): void {
  assert.equal(actual.length, expected.length, `${what}: length`);
  for (let i = 0; i < actual.length; i++) {
    const e = expected[i];
    if (!(Math.abs(actual[i] - e) <= tolerance * (1 + Math.abs(e)))) {
      assert.fail(`${what}[${i}] = ${actual[i]}, expected ${e}`);
    }
  }
}

test('gemm matches the textbook triple loop for every transpose and odd shapes', () => {
  for (const [m, n, k] of [[1, 1, 1], [3, 5, 7], [17, 1, 9], [1, 13, 4], [33, 31, 29]]) {
    for (const transA of [false, true]) {
      for (const transB of [false, true]) {
        const a = rand(m * k);
        const b = rand(k * n);
        const c = rand(m * n);
        const expected = new Float64Array(m * n);
        for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
          let s = 0;
          for (let p = 0; p < k; p++) s += (transA ? a[p * m + i] : a[i * k + p]) * (transB ? b[j * k + p] : b[p * n + j]);
          expected[i * n + j] = 1.5 * s + 0.5 * c[i * n + j];
        }
        K.gemm(transA, transB, m, n, k, 1.5, a, b, 0.5, c);
        close(c, Array.from(expected), 1e-5, `gemm ${transA ? 'T' : 'N'}${transB ? 'T' : 'N'} ${m}x${n}x${k}`);
      }
    }
  }
});

test('gemm with beta 0 ignores NaN already in the output', () => {
  const c = new Float32Array([NaN, NaN]);
  K.gemm(false, false, 1, 2, 1, 1, new Float32Array([2]), new Float32Array([1, 3]), 0, c);
  close(c, [2, 6], 0, 'gemm beta 0');
});

test('convolution forward matches a direct convolution (padding, stride, odd sizes)', () => {
  for (const [C, H, W, F, Kz, pad, stride] of [[1, 5, 5, 2, 3, 1, 1], [3, 7, 6, 4, 3, 0, 2], [2, 4, 9, 3, 1, 0, 1], [2, 6, 5, 5, 3, 2, 1]]) {
    const g = convGeometry(C, H, W, F, Kz, pad, stride);
    const batch = 2;
    const x = rand(batch * C * H * W);
    const w = rand(F * C * Kz * Kz);
    const bias = rand(F);
    const out = new Float32Array(batch * F * g.outHeight * g.outWidth);
    K.convForward(x, w, bias, out, batch, g, new Float32Array(C * Kz * Kz * g.outHeight * g.outWidth));
    const expected: number[] = [];
    for (let n = 0; n < batch; n++) for (let f = 0; f < F; f++) for (let oh = 0; oh < g.outHeight; oh++) for (let ow = 0; ow < g.outWidth; ow++) {
      let s = bias[f];
      for (let c = 0; c < C; c++) for (let kh = 0; kh < Kz; kh++) for (let kw = 0; kw < Kz; kw++) {
        const ih = oh * stride - pad + kh;
        const iw = ow * stride - pad + kw;
        if (ih >= 0 && ih < H && iw >= 0 && iw < W) s += x[((n * C + c) * H + ih) * W + iw] * w[((f * C + c) * Kz + kh) * Kz + kw];
      }
      expected.push(s);
    }
    close(out, expected, 1e-5, `conv ${[C, H, W, F, Kz, pad, stride]}`);
  }
});

test('col2im is the adjoint of im2col: <im2col(x), y> = <x, col2im(y)>', () => {
  const g = convGeometry(3, 6, 5, 1, 3, 1, 2);
  const x = rand(3 * 6 * 5);
  const columns = new Float32Array(3 * 9 * g.outHeight * g.outWidth);
  im2col(x, 0, g, columns);
  const y = rand(columns.length);
  const back = new Float32Array(x.length);
  col2im(y, g, back, 0);
  let left = 0;
  let right = 0;
  for (let i = 0; i < y.length; i++) left += columns[i] * y[i];
  for (let i = 0; i < x.length; i++) right += x[i] * back[i];
  assert.ok(Math.abs(left - right) < 1e-4 * (1 + Math.abs(left)), `${left} vs ${right}`);
});

test('max pooling picks the window maximum and routes the gradient to it', () => {
  const g = poolGeometry(1, 4, 5, 2);
  const x = new Float32Array([
    1, 2, 3, 4, 99,
    5, 0, 8, 7, 99,
    -1, -2, 6, 6, 99,
    -4, -3, 0, 9, 99,
  ]);
  const out = new Float32Array(4);
  const argmax = new Int32Array(4);
  K.maxPoolForward(x, out, argmax, 1, g);
  close(out, [5, 8, -1, 9], 0, 'pool');
  const gradX = rand(x.length);
  K.maxPoolBackward(new Float32Array([1, 2, 3, 4]), argmax, gradX, 4, x.length);
  const expected = new Array(x.length).fill(0);
  expected[5] = 1; expected[7] = 2; expected[10] = 3; expected[18] = 4;
  close(gradX, expected, 0, 'pool backward');
});

test('softmax cross-entropy: loss of a known case and gradient by finite differences', () => {
  const logits = new Float32Array([0, 0, 0, 1000, 0, 0]);
  const grad = new Float32Array(6);
  const loss = K.softmaxCrossEntropy(logits, new Int32Array([2, 0]), 2, 3, grad);
  assert.ok(Math.abs(loss - Math.log(3) / 2) < 1e-6, 'uniform row costs log 3, a confident right row 0');
  const z = rand(12);
  const labels = new Int32Array([0, 3, 1]);
  const g = new Float32Array(12);
  K.softmaxCrossEntropy(z, labels, 3, 4, g);
  const scratch = new Float32Array(12);
  for (let i = 0; i < 12; i++) {
    const saved = z[i];
    z[i] = saved + 1e-2;
    const up = K.softmaxCrossEntropy(z, labels, 3, 4, scratch);
    z[i] = saved - 1e-2;
    const down = K.softmaxCrossEntropy(z, labels, 3, 4, scratch);
    z[i] = saved;
    assert.ok(Math.abs((up - down) / 2e-2 - g[i]) < 1e-3, `d loss / d z[${i}]`);
  }
});

test('relu forward and backward', () => {
  const x = new Float32Array([-1, 0, 2]);
  const y = new Float32Array(3);
  K.reluForward(x, y, 3);
  close(y, [0, 0, 2], 0, 'relu');
  const gradX = new Float32Array(3);
  K.reluBackward(y, new Float32Array([5, 6, 7]), gradX, 3);
  close(gradX, [0, 0, 7], 0, 'relu backward');
});

test('registry: lookup by name, fallback to the reference, duplicates refused', () => {
  const calls: number[] = [];
  registerKernel('test-backend', 'reluForward', (x, y, n) => { calls.push(n); });
  assert.throws(() => registerKernel('test-backend', 'reluForward', () => {}), /already registered/);
  assert.throws(() => useBackend('no-such-backend'), /unknown kernel backend 'no-such-backend'/);
  const before = activeBackend();
  useBackend('test-backend');
  try {
    kernel('reluForward')(new Float32Array(1), new Float32Array(1), 1);
    assert.deepEqual(calls, [1]);
    assert.equal(kernel('gemm'), K.gemm, 'kernels the backend lacks come from the reference');
  } finally {
    useBackend(before);
  }
});

test('reorderChannels lays channel c of pixel i at [n, c/B, i, c mod B] and back (oneDNN\'s nChw8c / nChw16c)', () => {
  const [batch, channels, plane] = [2, 16, 5];
  const plain = rand(batch * channels * plane);
  for (const block of [8, 16]) {
    const blocked = new Float32Array(plain.length);
    K.reorderChannels(plain, blocked, batch, channels, plane, 1, block);
    // written out: the blocks of `block` channels, each pixel's channels side by side
    let at = 0;
    for (let n = 0; n < batch; n++) {
      for (let first = 0; first < channels; first += block) {
        for (let i = 0; i < plane; i++) {
          for (let lane = 0; lane < block; lane++) assert.equal(blocked[at++], plain[(n * channels + first + lane) * plane + i], `block ${block}: [${n}, ${first + lane}, ${i}]`);
        }
      }
    }
    const back = new Float32Array(plain.length);
    K.reorderChannels(blocked, back, batch, channels, plane, block, 1);
    assert.deepEqual(back, plain, `block ${block}: back to plain`);
    const other = new Float32Array(plain.length);
    K.reorderChannels(blocked, other, batch, channels, plane, block, 24 - block);
    const expected = new Float32Array(plain.length);
    K.reorderChannels(plain, expected, batch, channels, plane, 1, 24 - block);
    assert.deepEqual(other, expected, `block ${block} → ${24 - block}`);
  }
});

/** AES-256-GCM test case 16 of McGrew & Viega's GCM specification (96-bit IV, additional data). */
const gcmVector = {
  key: 'feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308',
  nonce: 'cafebabefacedbaddecaf888',
  aad: 'feedfacedeadbeeffeedfacedeadbeefabaddad2',
  plain: 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39',
  cipher: '522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662',
  tag: '76fc6ece0f4e1768cddf8853bb2d551b',
};

test('AES-256-GCM seals the specification\'s test vector and opens it; a changed byte, tag or additional datum does not open', () => {
  const h = (hex: string) => Buffer.from(hex, 'hex');
  const v = gcmVector;
  const cipher = Buffer.alloc(h(v.plain).length);
  const tag = Buffer.alloc(16);
  K.aeadSeal(h(v.key), h(v.nonce), h(v.aad), h(v.plain), cipher, tag);
  assert.equal(cipher.toString('hex'), v.cipher);
  assert.equal(tag.toString('hex'), v.tag);
  const plain = Buffer.alloc(cipher.length);
  assert.equal(K.aeadOpen(h(v.key), h(v.nonce), h(v.aad), cipher, plain, tag), true);
  assert.equal(plain.toString('hex'), v.plain);
  const flipped = Buffer.from(cipher);
  flipped[17] ^= 1;
  assert.equal(K.aeadOpen(h(v.key), h(v.nonce), h(v.aad), flipped, plain, tag), false);
  const aad = h(v.aad);
  aad[0] ^= 1;
  assert.equal(K.aeadOpen(h(v.key), h(v.nonce), aad, cipher, plain, tag), false);
  const nonce = h(v.nonce);
  nonce[11] ^= 1; // another record number
  assert.equal(K.aeadOpen(h(v.key), nonce, h(v.aad), cipher, plain, tag), false);
  // integrity only: the tag covers additional data ‖ plaintext, and nothing is encrypted — GMAC, the same as sealing nothing with that as additional data
  const gmac = Buffer.alloc(16);
  K.aeadSeal(h(v.key), h(v.nonce), h(v.aad), h(v.plain), null, gmac);
  const direct = Buffer.alloc(16);
  K.aeadSeal(h(v.key), h(v.nonce), Buffer.concat([h(v.aad), h(v.plain)]), Buffer.alloc(0), Buffer.alloc(0), direct);
  assert.deepEqual(gmac, direct);
  assert.equal(K.aeadOpen(h(v.key), h(v.nonce), h(v.aad), h(v.plain), null, gmac), true);
  assert.equal(K.aeadOpen(h(v.key), h(v.nonce), h(v.aad), flipped, null, gmac), false);
});

/** The brute-force answer: sort indices by magnitude (descending, then index), keep k, in index order. */
function topkByBruteForce(values: Float32Array, k: number): number[] {
  const order = Array.from(values.keys()).sort((a, b) => Math.abs(values[b]) - Math.abs(values[a]) || a - b);
  return order.slice(0, k).sort((a, b) => a - b);
}

test('topkIndices picks the k largest magnitudes in index order, ties at the cut to the lowest indices, as sorting does', () => {
  const random = new Random(11);
  for (const [n, ks] of [[1, [1]], [10, [1, 3, 5, 10]], [1000, [1, 7, 250, 499, 500, 501, 1000]], [100_000, [1, 100, 1000, 25_000]]] as const) {
    for (const k of ks) {
      for (const kind of ['uniform', 'ties', 'signs'] as const) {
        // 'ties': few distinct magnitudes, so the cut falls inside a run of equal ones
        const values = Float32Array.from({ length: n }, () => (kind === 'ties' ? Math.floor(random.next() * 4) : random.next() - 0.5) * (kind === 'signs' && random.next() < 0.5 ? -1 : 1));
        const chosen = new Uint32Array(n);
        assert.equal(K.topkIndices(values, k, chosen), k);
        assert.deepEqual([...chosen.subarray(0, k)], topkByBruteForce(values, k), `n ${n}, k ${k}, ${kind}`);
      }
    }
  }
  // the strided sample sits on the small values: the threshold is too high at first and must widen
  const skewed = new Float32Array(100_000).fill(0.001);
  for (let i = 0; i < skewed.length; i += 4096) skewed[i] = 1;
  const chosen = new Uint32Array(skewed.length);
  assert.equal(K.topkIndices(skewed, 500, chosen), 500);
  assert.deepEqual([...chosen.subarray(0, 500)], topkByBruteForce(skewed, 500));
});
