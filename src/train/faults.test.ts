// --slow-rank: a straggler on purpose. Its pause is (F − 1) × the gradient's own duration, on the
// named rank only (a fake clock and sleep make that exact), and it changes nothing computed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { trainOnThreads } from '../launch/threads.js';
import type { Model } from '../models/model.js';
import { defaults, validate } from './config.js';
import { parseSlowRank, withSlowdown } from './faults.js';

test('--slow-rank R:F: rank R sleeps (F − 1) × each gradient computation\'s duration after it; other ranks never', () => {
  let now = 100;
  const model = { lossAndGrad: () => { now += 7; return 0.5; } } as unknown as Model;
  const slept: number[] = [];
  const slow = withSlowdown(model, 1, parseSlowRank('1:3'), () => now, (ms) => slept.push(ms));
  assert.equal(slow.lossAndGrad(new Float32Array(0), {} as never, new Float32Array(0)), 0.5);
  assert.equal(slow.lossAndGrad(new Float32Array(0), {} as never, new Float32Array(0)), 0.5);
  assert.deepEqual(slept, [14, 14], '7 ms of computing, twice as long again asleep');
  assert.equal(withSlowdown(model, 0, parseSlowRank('1:3')), model, 'rank 0 is not the slow one');
  assert.equal(withSlowdown(model, 1, parseSlowRank('1:1')), model, 'a factor of 1 is no slowdown');
  assert.deepEqual(parseSlowRank('2:1.5'), { rank: 2, factor: 1.5 });
  for (const bad of ['1', '1:0.5', 'a:2', '1:2:3', '']) assert.throws(() => parseSlowRank(bad), /--slow-rank: got .*; expected RANK:FACTOR/, bad);
  assert.throws(() => validate({ ...defaults, slowRank: '1:x' }), /--slow-rank/);
});

test('--slow-rank changes what is computed in no way: a synchronous run ends bit-identical', async () => {
  const base = { ...defaults, dataset: 'synthetic', model: 'mlp', hidden: [16], epochs: 1, workers: 2, seed: 3 };
  const plain = await trainOnThreads(base);
  const slowed = await trainOnThreads({ ...base, slowRank: '1:2' });
  assert.deepEqual(slowed.params, plain.params);
});
