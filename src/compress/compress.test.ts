import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../tensor/random.js';
import { bfloat16, float32, fromBfloat16, fromFloat16, toBfloat16, toFloat16 } from './codecs.js';
import { parseCompress, type HookContext } from './parse.js';
import type { Hook } from './hook.js';

const context = (size: number, seed = 1, momentum = 0.9): HookContext => ({ size, seed, momentum });
const random = new Random(5);
const gradient = (n: number) => random.fillUniform(new Float32Array(n), -1, 1);

function roundTrip(hook: Hook, g: Float32Array, epoch = 10): { decoded: Float32Array; bytes: number } {
  const out = new Uint8Array(hook.maxBytes(g.length));
  const bytes = hook.encode(g, out, { epoch });
  const decoded = new Float32Array(g.length).fill(NaN);
  hook.decode(out, bytes, decoded, false);
  return { decoded, bytes };
}

test('fp16 and bf16 conversions: exact values, rounding to nearest even, saturation, subnormals', () => {
  for (const x of [0, 1, -2.5, 0.5, 1024, 65504, -65504, 2 ** -14, 2 ** -24]) assert.equal(fromFloat16(toFloat16(x)), x, `fp16 ${x}`);
  assert.equal(fromFloat16(toFloat16(1e6)), 65504, 'saturates');
  assert.equal(fromFloat16(toFloat16(1 + 2 ** -11)), 1, 'a tie rounds to even');
  assert.equal(fromFloat16(toFloat16(1 + 3 * 2 ** -11)), 1 + 2 ** -9, 'the other tie rounds up to even');
  assert.ok(Number.isNaN(fromFloat16(toFloat16(NaN))));
  for (const x of [0, 1, -3, 2 ** 100, 1.5]) assert.equal(fromBfloat16(toBfloat16(x)), x, `bf16 ${x}`);
  assert.equal(fromBfloat16(toBfloat16(1 + 2 ** -8)), 1, 'bf16 tie to even');
  for (let i = 0; i < 1000; i++) {
    const x = (random.next() - 0.5) * 100;
    assert.ok(Math.abs(fromFloat16(toFloat16(x)) - x) <= Math.abs(x) * 2 ** -11 + 1e-7);
    assert.ok(Math.abs(fromBfloat16(toBfloat16(x)) - x) <= Math.abs(x) * 2 ** -8);
  }
});

test('none is exact; fp16 and bf16 within their precision; payload sizes are the encoding', () => {
  const g = gradient(1001);
  const none = roundTrip(parseCompress('none')(context(1001)), g);
  assert.deepEqual(none.decoded, g);
  assert.equal(none.bytes, 4 + 4 * 1001);
  for (const [form, tolerance] of [['fp16', 2 ** -11], ['bf16', 2 ** -8]] as const) {
    const { decoded, bytes } = roundTrip(parseCompress(form)(context(1001)), g);
    assert.equal(bytes, 4 + 2 * 1001);
    for (let i = 0; i < g.length; i++) assert.ok(Math.abs(decoded[i] - g[i]) <= Math.abs(g[i]) * tolerance + 1e-7, `${form}[${i}]`);
  }
});

test('top-k sends exactly the k largest accumulated values, as (index, value) pairs', () => {
  const n = 10000;
  const g = gradient(n);
  const hook = parseCompress('topk:0.01,nodgc')(context(n));
  const { decoded, bytes } = roundTrip(hook, g);
  assert.equal(bytes, 4 + 100 * 8);
  const sent = [...decoded.keys()].filter((i) => decoded[i] !== 0);
  assert.equal(sent.length, 100);
  const smallestSent = Math.min(...sent.map((i) => Math.abs(g[i])));
  const largestKept = Math.max(...[...g.keys()].filter((i) => decoded[i] === 0).map((i) => Math.abs(g[i])));
  assert.ok(smallestSent >= largestKept, 'no unsent value is larger than a sent one');
  for (const i of sent) assert.equal(decoded[i], g[i]);
  assert.equal(roundTrip(parseCompress('topk:0.01,nodgc+fp16')(context(n)), g).bytes, 4 + 100 * 6);
});

test('error feedback loses nothing: the sum of what was sent plus the residual equals the sum of the gradients', () => {
  const n = 3000;
  for (const form of ['topk:0.005,nodgc', 'topk:0.02,nodgc+fp16', 'topk:0.02,nodgc+bf16', 'sign']) {
    const hook = parseCompress(form)(context(n));
    const total = new Float64Array(n);
    const sent = new Float64Array(n);
    const out = new Uint8Array(hook.maxBytes(n));
    const decoded = new Float32Array(n);
    for (let step = 0; step < 300; step++) {
      const g = gradient(n);
      for (let i = 0; i < n; i++) total[i] += g[i];
      hook.decode(out, hook.encode(g, out, { epoch: 5 }), decoded, false);
      for (let i = 0; i < n; i++) sent[i] += decoded[i];
    }
    const residual = hook.residual!;
    const tolerance = 1e-3; // float32 accumulation over 300 steps
    for (let i = 0; i < n; i++) {
      assert.ok(Math.abs(sent[i] + residual[i] - total[i]) < tolerance, `${form}[${i}]: sent ${sent[i]} + residual ${residual[i]} ≠ ${total[i]}`);
    }
  }
});

test('qsgd and random-k are unbiased: the mean of many decodings is the gradient', () => {
  const n = 600;
  const g = gradient(n);
  for (const form of ['qsgd:2', 'qsgd:4', 'randomk:0.2']) {
    const mean = new Float64Array(n);
    const trials = 3000;
    const hook = parseCompress(form)(context(n, 7));
    const out = new Uint8Array(hook.maxBytes(n));
    const decoded = new Float32Array(n);
    for (let t = 0; t < trials; t++) {
      hook.decode(out, hook.encode(g, out, { epoch: 0 }), decoded, false);
      for (let i = 0; i < n; i++) mean[i] += decoded[i] / trials;
    }
    let worst = 0;
    for (let i = 0; i < n; i++) worst = Math.max(worst, Math.abs(mean[i] - g[i]));
    // each decoding's spread per element is below ~|g|·√(n/k) (randomk) or the bucket norm/levels (qsgd); /√trials
    assert.ok(worst < 0.3, `${form}: mean off by up to ${worst}`);
    let bias = 0;
    for (let i = 0; i < n; i++) bias += mean[i] - g[i];
    assert.ok(Math.abs(bias / n) < 0.01, `${form}: average bias ${bias / n}`);
    // a bias of scale cancels in that average (the gradient's mean is near 0): the least-squares
    // fit mean ≈ s·g must give s = 1 (its noise here is ≈0.002; a decoder scaled by 0.8 gives 0.8)
    let along = 0;
    let norm = 0;
    for (let i = 0; i < n; i++) [along, norm] = [along + mean[i] * g[i], norm + g[i] * g[i]];
    assert.ok(Math.abs(along / norm - 1) < 0.02, `${form}: decodings average to ${along / norm} × the gradient`);
  }
  const q = parseCompress('qsgd:4')(context(1100));
  assert.equal(q.encode(gradient(1100), new Uint8Array(q.maxBytes(1100)), { epoch: 0 }), 4 + 2 * (4 + 256) + (4 + 38));
});

test('sign sends one bit a value and the mean magnitude', () => {
  const g = Float32Array.from([1, -3, 0.5, -0.5, 2]);
  const { decoded, bytes } = roundTrip(parseCompress('sign')(context(5)), g);
  assert.equal(bytes, 8 + 1);
  assert.deepEqual([...decoded], [1.4, -1.4, 1.4, -1.4, 1.4].map(Math.fround));
});

test('DGC: momentum correction accumulates, masking clears what was sent, density warms up', () => {
  const n = 4000;
  const hook = parseCompress('topk:0.001,warmup=2')(context(n, 1, 0.9));
  assert.equal(hook.appliesMomentum, true);
  const out = new Uint8Array(hook.maxBytes(n));
  assert.equal(hook.encode(gradient(n), out, { epoch: 0 }), 4 + 0.25 * n * 8, 'epoch 0 sends 25%');
  const middle = hook.encode(gradient(n), out, { epoch: 1 });
  assert.ok(middle < 4 + 0.25 * n * 8 && middle > 4 + 0.001 * n * 8, 'then less');
  assert.equal(hook.encode(gradient(n), out, { epoch: 2 }), 4 + 4 * 8, 'the target density after the warm-up');
  assert.equal(parseCompress('topk:0.001,nodgc')(context(n)).appliesMomentum, false);
});

test('top-k, value by value: DGC\'s momentum correction and factor masking, and plain error feedback, against a direct implementation', () => {
  // a quarter sent each step, so coordinates come back often enough to show what masking cleared
  const n = 40;
  const k = 10;
  for (const form of ['topk:0.25', 'topk:0.25,nodgc']) {
    const dgc = !form.includes('nodgc');
    const hook = parseCompress(form)(context(n, 3, 0.9));
    // the oracle: u ← m·u + g (DGC), v ← v + u (or + g); send the k largest |v| exactly; clear v, and u (DGC), where sent
    const u = new Float32Array(n);
    const v = new Float32Array(n);
    for (let step = 0; step < 12; step++) {
      const g = gradient(n);
      for (let i = 0; i < n; i++) {
        if (dgc) u[i] = 0.9 * u[i] + g[i];
        v[i] += dgc ? u[i] : g[i];
      }
      const largest = [...v.keys()].sort((a, b) => Math.abs(v[b]) - Math.abs(v[a])).slice(0, k);
      const expected = new Float32Array(n);
      for (const i of largest) {
        expected[i] = v[i];
        v[i] = 0;
        u[i] = 0;
      }
      const { decoded } = roundTrip(hook, g, 1000); // past any warm-up
      // the same k coordinates, and their values to float rounding
      assert.deepEqual([...decoded.keys()].filter((i) => decoded[i] !== 0), [...largest].sort((a, b) => a - b), `${form} step ${step}: which coordinates`);
      for (const i of largest) assert.ok(Math.abs(decoded[i] - expected[i]) <= 1e-6 * Math.abs(expected[i]), `${form} step ${step} [${i}]: ${decoded[i]} vs ${expected[i]}`);
    }
  }
});

test('bad --compress strings: one line listing the valid forms', () => {
  for (const [text, problem] of [
    ['zip', /'zip' is not a hook/], ['topk', /density '' is not in \(0, 1\]/], ['topk:2', /density '2'/], ['qsgd:9', /qsgd needs 2 to 8 bits/],
    ['topk:0.1+int4', /'int4' is not a value codec/], ['sign:3', /sign takes no argument/], ['topk:0.1,fast', /'fast' is not a topk option/],
    ['qsgd:4+fp16', /qsgd takes no value codec/], ['none+fp16+bf16', /at most one value codec/],
  ] as const) {
    assert.throws(() => parseCompress(text), (error: Error) => {
      assert.match(error.message, problem);
      assert.match(error.message, /valid forms: none, fp16, bf16, sign, qsgd:BITS/);
      assert.ok(!error.message.includes('\n'));
      return true;
    }, text);
  }
});

test('a damaged payload is refused with an error, not decoded into garbage', () => {
  const hook = parseCompress('topk:0.1')(context(100));
  const out = new Uint8Array(hook.maxBytes(100));
  const bytes = hook.encode(gradient(100), out, { epoch: 5 });
  assert.throws(() => hook.decode(out, bytes - 3, new Float32Array(100), false), /payload.*bytes for \d+ pairs/);
  new DataView(out.buffer).setUint32(4, 5000, true);
  assert.throws(() => hook.decode(out, bytes, new Float32Array(100), false), /index 5000 beyond 100 values/);
  assert.throws(() => parseCompress('none')(context(10)).decode(new Uint8Array(44), 44, new Float32Array(9), false), /44 bytes for 0 values of 9/);
});

test('every form parses to its hook: its name, bytes a value, whether it applies momentum, whether it is exact', () => {
  const n = 10;
  for (const [text, name, bytes, momentum, exact] of [
    [' none ', 'none', 4 + 4 * n, false, true], ['fp16', 'fp16', 4 + 2 * n, false, false], ['bf16', 'bf16', 4 + 2 * n, false, false],
    ['sign', 'sign', 8 + 2, false, false], ['qsgd:4', 'qsgd:4', 4 + 4 + 5, false, false], ['qsgd:8', 'qsgd:8', 4 + 4 + 10, false, false],
    ['randomk:0.1', 'randomk:0.1', 4 + 8 * n, false, false], ['randomk:0.1+fp16', 'randomk:0.1+fp16', 4 + 6 * n, false, false],
    ['topk:1', 'topk:1', 4 + 8 * n, true, false], ['topk:0.01,nodgc', 'topk:0.01,nodgc', 4 + 8 * n, false, false],
    ['topk:0.01,clip=2,warmup=0+bf16', 'topk:0.01,clip=2+bf16', 4 + 6 * n, true, false],
  ] as const) {
    const hook = parseCompress(text)(context(n, 1, 0.9));
    assert.deepEqual([hook.name, hook.maxBytes(n), hook.appliesMomentum, hook.exact === true], [name, bytes, momentum, exact], text);
  }
  // DGC's momentum correction needs the optimiser's momentum: without it, plain SGD runs and the hook keeps no momentum
  assert.equal(parseCompress('topk:0.01')(context(n, 1, 0)).appliesMomentum, false);
  // the value codecs round as they say: fp16 and bf16 differ on 1 + 2^-10 (fp16 keeps it, bf16 rounds it to 1)
  const g = Float32Array.of(1 + 2 ** -10, -3);
  assert.deepEqual([...roundTrip(parseCompress('fp16')(context(2)), g).decoded], [1 + 2 ** -10, -3]);
  assert.deepEqual([...roundTrip(parseCompress('bf16')(context(2)), g).decoded], [1, -3]);
  assert.deepEqual([...roundTrip(parseCompress('topk:1,nodgc+bf16')(context(2)), g).decoded], [1, -3]);
  assert.deepEqual([...roundTrip(parseCompress('topk:1,nodgc+fp16')(context(2)), g).decoded], [1 + 2 ** -10, -3]);
});

test('more bad --compress strings, each refused with its reason; the edges of what is valid are accepted', () => {
  for (const [text, problem] of [
    ['topk:0.1:2', /too many colons/], ['none+fp16', /none takes no value codec/], ['none:1', /none takes no argument/], ['fp16:1', /fp16 takes no argument/],
    ['qsgd:1', /qsgd needs 2 to 8 bits, got '1'/], ['qsgd:2.5', /got '2.5'/], ['qsgd', /got ''/], ['qsgd:9', /got '9'/], ['randomk:0.1,2', /randomk takes only a density/],
    ['topk:0', /density '0'/], ['topk:0.1,clip=0', /'clip=0' is not a topk option/], ['topk:0.1,clip=-1', /'clip=-1'/],
    ['topk:0.1,warmup=-1', /'warmup=-1'/], ['topk:0.1,nodgc=1', /'nodgc=1'/], ['topk:0.1,fast=1', /'fast=1'/],
  ] as const) {
    assert.throws(() => parseCompress(text), (error: Error & { code?: string }) => {
      assert.match(error.message, problem);
      assert.ok(error.message.startsWith(`--compress ${JSON.stringify(text)}: `), error.message);
      assert.equal(error.code, 'BAD_OPTION');
      return true;
    }, text);
  }
  for (const text of ['qsgd:2', 'qsgd:8', 'topk:1', 'randomk:1', 'topk:0.5,warmup=0', 'topk:0.5,clip=0.5,nodgc']) assert.doesNotThrow(() => parseCompress(text)(context(4)), text);
});

test('top-k\'s local clipping scales the gradient to the clip norm when it is longer, and leaves a shorter one alone', () => {
  const hook = parseCompress('topk:1,nodgc,clip=1')(context(4));
  const long = Float32Array.of(3, 0, -4, 0); // norm 5
  assert.deepEqual([...roundTrip(hook, long).decoded], [0.6, 0, -0.8, 0].map(Math.fround));
  const short = Float32Array.of(0.5, 0.25, 0, -0.5); // norm 0.75
  assert.deepEqual([...roundTrip(hook, short).decoded], [...short]);
});

test('DGC\'s warm-up: the density falls from 25% by the same factor each epoch to the target at the warm-up\'s end; none with nodgc or warmup=0', () => {
  const n = 1024;
  const pairs = (text: string, epoch: number) => {
    const hook = parseCompress(text)(context(n, 1, 0.9));
    return (hook.encode(gradient(n), new Uint8Array(hook.maxBytes(n)), { epoch }) - 4) / 8;
  };
  // density 1/64 over 4 epochs: 1/4, 1/8, 1/16, 1/32, then 1/64
  assert.deepEqual([0, 1, 2, 3, 4, 9].map((epoch) => pairs('topk:0.015625,warmup=4', epoch)), [256, 128, 64, 32, 16, 16]);
  assert.equal(pairs('topk:0.015625,warmup=4', 3.5), Math.ceil(1024 * 0.25 * 2 ** -3.5), 'between: 0.25 · (1/16)^(3.5/4)');
  assert.equal(pairs('topk:0.015625,nodgc', 0), 16);
  assert.equal(pairs('topk:0.015625,warmup=0', 0), 16);
  assert.equal(pairs('topk:0.00001', 5), 1, 'at least one pair');
});

test('a hook\'s saved state resumes it exactly: error feedback, DGC\'s momentum and the random stream (a fresh hook does not)', () => {
  const n = 300;
  for (const form of ['topk:0.05', 'topk:0.05,nodgc', 'randomk:0.1', 'qsgd:4', 'sign']) {
    const run = parseCompress(form)(context(n, 9, 0.9));
    const out = new Uint8Array(run.maxBytes(n));
    for (let step = 0; step < 3; step++) run.encode(gradient(n), out, { epoch: 5 });
    const saved = Object.fromEntries(Object.entries(run.saveState!()).map(([name, values]) => [name, values.slice()]));
    const resumed = parseCompress(form)(context(n, 9, 0.9));
    resumed.loadState!(saved);
    const fresh = parseCompress(form)(context(n, 9, 0.9));
    const g = gradient(n);
    const [a, b, c] = [run, resumed, fresh].map((hook) => {
      const bytes = new Uint8Array(hook.maxBytes(n));
      return bytes.subarray(0, hook.encode(g, bytes, { epoch: 5 }));
    });
    assert.deepEqual(b, a, `${form}: resumed`);
    assert.notDeepEqual(c, a, `${form}: a fresh hook differs, so the state is what made them equal`);
  }
  // a state without one of a hook's arrays (a checkpoint from plain top-k into DGC) leaves that array as it is; a random stream for a hook without one is ignored
  const dgc = parseCompress('topk:0.05')(context(n, 9, 0.9));
  dgc.loadState!(parseCompress('topk:0.05,nodgc')(context(n, 9, 0.9)).saveState!());
  assert.deepEqual(dgc.saveState!().momentum, new Float32Array(n));
  assert.doesNotThrow(() => parseCompress('sign')(context(n)).loadState!({ residual: new Float32Array(n), random: new Float32Array(1) }));
});

test('decoding adds into the target when asked, for every payload kind; damaged dense, qsgd and sign payloads are refused', () => {
  const n = 64;
  for (const form of ['none', 'fp16', 'topk:0.25', 'randomk:0.5', 'qsgd:8', 'sign']) {
    const hook = parseCompress(form)(context(n, 2));
    const out = new Uint8Array(hook.maxBytes(n));
    const bytes = hook.encode(gradient(n), out, { epoch: 5 });
    const alone = new Float32Array(n);
    hook.decode(out, bytes, alone, false);
    const base = gradient(n);
    const sum = base.slice();
    hook.decode(out, bytes, sum, true);
    assert.deepEqual(sum, base.map((v, i) => v + alone[i]), `${form}: accumulated`);
    if (form === 'topk:0.25' || form === 'randomk:0.5') continue;
    const says = (length: number, values: number) => (error: Error) => error.message.includes(`${length} bytes for ${values} values`) && error.message.includes(`a payload the ${hook.name} hook wrote (a peer sent garbage`);
    assert.throws(() => hook.decode(out, bytes - 1, new Float32Array(n), false), says(bytes - 1, n), `${form}: one byte short`);
    assert.throws(() => hook.decode(out, bytes, new Float32Array(n + 1), false), says(bytes, n), `${form}: another length`);
  }
});

test('value codecs at their edges: float32 payloads read from any offset, 16-bit ones refuse an odd one; bf16 keeps infinity and NaN, rounds ties to even', () => {
  const g = Float32Array.of(1.5, -2, 3.25);
  const bytes = new Uint8Array(1 + 12);
  float32.writeAll(g, bytes, 1);
  const target = Float32Array.of(1, 1, 1);
  float32.readAll(bytes, 1, target, false);
  assert.deepEqual(target, g);
  float32.readAll(bytes, 1, target, true);
  assert.deepEqual(target, Float32Array.of(3, -4, 6.5));
  assert.throws(() => bfloat16.readAll(new Uint8Array(8), 1, new Float32Array(2), false), /unaligned/);
  assert.equal(toBfloat16(Infinity), 0x7f80);
  assert.equal(toBfloat16(-Infinity), 0xff80);
  const nan = new Float32Array(1);
  new Uint32Array(nan.buffer)[0] = 0x7fffffff; // a NaN whose rounding would carry into the sign
  assert.ok(Number.isNaN(fromBfloat16(toBfloat16(nan[0]))));
  assert.equal(fromBfloat16(toBfloat16(1 + 3 * 2 ** -8)), 1 + 2 ** -6, 'a tie after an odd last bit rounds up');
  assert.equal(fromFloat16(toFloat16(65519)), 65504);
  assert.equal(fromFloat16(toFloat16(2 ** -25)), 0, 'half the smallest subnormal: a tie, to even (zero)');
  assert.equal(fromFloat16(toFloat16(1.5 * 2 ** -25 * 2)), 2 * 2 ** -24, 'one and a half units: a tie, to even (two)');
  assert.equal(fromFloat16(toFloat16(-(2 ** -14) * 1.5)), -(2 ** -14) * 1.5, 'the first normal binade');
});

test('random-k: k = ⌈density · n⌉ distinct indices, ascending, each as likely as any other', () => {
  const n = 50;
  const hook = parseCompress('randomk:0.2')(context(n, 4));
  const out = new Uint8Array(hook.maxBytes(n));
  const counts = new Float64Array(n);
  const trials = 20000;
  for (let t = 0; t < trials; t++) {
    const bytes = hook.encode(gradient(n), out, { epoch: 0 });
    assert.equal(bytes, 4 + 10 * 8);
    const pairs = new DataView(out.buffer, 4); // (uint32 index, float32 value), one after another
    const indices = Array.from({ length: 10 }, (_, j) => pairs.getUint32(8 * j, true));
    for (let j = 0; j < 10; j++) {
      if (j > 0) assert.ok(indices[j] > indices[j - 1], 'ascending and distinct');
      counts[indices[j]]++;
    }
  }
  // each index drawn with probability k/n = 0.2: 4,000 of 20,000, standard deviation √(20000·0.2·0.8) ≈ 57
  for (let i = 0; i < n; i++) assert.ok(Math.abs(counts[i] - 4000) < 5 * 57, `index ${i} drawn ${counts[i]} times`);
  assert.equal(parseCompress('randomk:0.001')(context(n)).encode(gradient(n), out, { epoch: 0 }), 4 + 8, 'at least one pair');
});

test('qsgd\'s payload size, closed form: per bucket of 512 a float32 norm and ⌈bits · count / 8⌉ bytes; a share encodes alone', () => {
  for (const [n, bits, expected] of [[1, 4, 4 + 4 + 1], [512, 4, 4 + 4 + 256], [1024, 2, 4 + 2 * (4 + 128)], [1100, 8, 4 + 2 * (4 + 512) + (4 + 76)]] as const) {
    const hook = parseCompress(`qsgd:${bits}`)(context(n));
    assert.equal(hook.maxBytes(n), expected, `${n} values, ${bits} bits`);
    assert.equal(hook.encode(gradient(n), new Uint8Array(expected), { epoch: 0 }), expected);
  }
  const hook = parseCompress('qsgd:8')(context(2000));
  const values = gradient(2000);
  const out = new Uint8Array(hook.maxBytes(700));
  const bytes = hook.encodeShare!(values, 600, 1300, out, { epoch: 0 });
  assert.equal(bytes, hook.maxBytes(700));
  const decoded = new Float32Array(700);
  hook.decode(out, bytes, decoded, false);
  // 8 bits: 127 levels of each bucket's norm (≤ √512 here), so within norm/127 of the value
  for (let i = 0; i < 700; i++) assert.ok(Math.abs(decoded[i] - values[600 + i]) <= Math.sqrt(512) / 127, `share value ${i}`);
});
