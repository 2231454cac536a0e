// The all-reduce's exchange by share, held to a direct computation: each share's mean is its
// owner's own values plus every other rank's values as the codec rounds them (per-value
// conversions, not the kernels), summed in rank order in float32 and scaled by fround(1/P), then
// rounded by the codec once more on its way to every rank. Sign's error feedback is per share.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createShmHandle } from '../comm/shm.js';
import { runThreadGroup } from '../launch/thread-group.js';
import { fromFloat16, toFloat16 } from '../compress/codecs.js';

const script = new URL('./shard-exchange.worker.js', import.meta.url);
// the worker's gradient, written out again
const gradientOf = (rank: number, size: number) => Float32Array.from({ length: size }, (_, i) => Math.sin(1 + i * 0.37 + rank * 1.7) * (rank + 1) * 10 ** (-(i % 7)));
const shareOf = (size: number, q: number, P: number) => [Math.floor((size * q) / P), Math.floor((size * (q + 1)) / P)];

interface Result { gathersParameters: boolean; share: [number, number]; results: number[][] }
async function exchange(P: number, form: string, size: number, parameterBytes = 4, steps = 1): Promise<Result[]> {
  const handle = createShmHandle(P, 4 * size + 64, 20_000);
  return (await runThreadGroup(handle, script, { data: () => ({ form, size, parameterBytes, steps }) })) as Result[];
}

/** What a direct computation says every rank holds after both phases, for a codec that rounds each value by `round`. */
function expectedMean(P: number, size: number, step: number, round: (x: number) => number): Float32Array {
  const mean = new Float32Array(size);
  for (let q = 0; q < P; q++) {
    const [start, end] = shareOf(size, q, P);
    for (let i = start; i < end; i++) {
      let sum = gradientOf(q + step, size)[i]; // the owner's own value, unrounded
      for (let r = 0; r < P; r++) if (r !== q) sum = Math.fround(sum + round(gradientOf(r + step, size)[i]));
      mean[i] = round(Math.fround(sum * Math.fround(1 / P)));
    }
  }
  return mean;
}

test('fp16 by share: each owner sums its own values and the others\' rounded ones, and every rank ends with the same rounded mean (2 and 3 ranks)', async () => {
  const fp16 = (x: number) => fromFloat16(toFloat16(x));
  for (const P of [2, 3]) {
    const size = 1001;
    const ranks = await exchange(P, 'fp16', size);
    const expected = expectedMean(P, size, 0, fp16);
    for (const [rank, { gathersParameters, results }] of ranks.entries()) {
      assert.equal(gathersParameters, false, 'fp16 with float32 parameters gathers the gradient: 2 bytes a value against 4');
      const [loss, stop, ...rest] = results[0];
      assert.equal(loss, ((P + 1) * P) / 2 / P, 'the mean loss');
      assert.equal(stop, 1, 'rank 1 asked to stop');
      assert.deepEqual(Float32Array.from(rest.slice(-size)), expected, `rank ${rank} of ${P}`);
    }
  }
});

test('with parameters as small as the encoded gradient the parameters are gathered: each rank keeps its own share\'s mean', async () => {
  const P = 3;
  const size = 500;
  const ranks = await exchange(P, 'fp16', size, 2);
  const fp16 = (x: number) => fromFloat16(toFloat16(x));
  // the owner's mean before the second rounding
  const unrounded = expectedMean(P, size, 0, fp16).map((_, i) => {
    const q = [0, 1, 2].find((r) => i < shareOf(size, r, P)[1])!;
    let sum = gradientOf(q, size)[i];
    for (let r = 0; r < P; r++) if (r !== q) sum = Math.fround(sum + fp16(gradientOf(r, size)[i]));
    return Math.fround(sum * Math.fround(1 / P));
  });
  for (const [rank, { gathersParameters, share, results }] of ranks.entries()) {
    assert.equal(gathersParameters, true, 'a tie goes to the parameters');
    assert.deepEqual(share, shareOf(size, rank, P));
    const mine = Float32Array.from(results[0].slice(2, 2 + share[1] - share[0]));
    assert.deepEqual(mine, unrounded.subarray(...share), `rank ${rank}`);
  }
});

test('sign by share: scaled signs of each share with its own error feedback, over steps', async () => {
  const P = 2;
  const size = 301;
  const steps = 3;
  const ranks = await exchange(P, 'sign', size, 4, steps);
  // EF-signSGD written out per (rank, range): residual += g; scale = mean |residual|; send ±scale; residual −= what was sent
  const residuals = new Map<string, Float32Array>();
  const signs = (key: string, values: Float32Array) => {
    const residual = residuals.get(key) ?? new Float32Array(values.length);
    residuals.set(key, residual);
    const lanes = [0, 0, 0, 0]; // the mean magnitude, summed in 4 lanes as the codec defines it
    for (let i = 0; i < values.length; i++) lanes[i & 3] += Math.abs((residual[i] = Math.fround(residual[i] + values[i])));
    const scale = Math.fround((lanes[0] + lanes[1] + (lanes[2] + lanes[3])) / values.length);
    return values.map((_, i) => {
      const sent = residual[i] < 0 ? -scale : scale;
      residual[i] = Math.fround(residual[i] - sent);
      return sent;
    });
  };
  for (let step = 0; step < steps; step++) {
    const expected = new Float32Array(size);
    for (let q = 0; q < P; q++) {
      const [start, end] = shareOf(size, q, P);
      const other = 1 - q;
      const own = gradientOf(q + step, size).subarray(start, end);
      const sent = signs(`${other}:${q}`, gradientOf(other + step, size).subarray(start, end));
      const mean = own.map((v, i) => Math.fround(Math.fround(v + sent[i]) * 0.5));
      expected.set(signs(`${q}:${q}`, mean), start);
    }
    for (const [rank, { results }] of ranks.entries()) assert.deepEqual(Float32Array.from(results[step].slice(-size)), expected, `rank ${rank}, step ${step}`);
  }
});
