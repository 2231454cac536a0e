// The reservoir buffer online training draws from. Oracles: the samples put (each tagged with
// its arrival number), the last `capacity` of them for the oldest-first policy, and the closed
// form of uniform random eviction's survival, (1 − 1/N)^k.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { BatchMaker, epochOrder } from './batches.js';
import { Reservoir } from './reservoir.js';
import { train } from '../api/train.js';

// a sample: 2 inputs and 2 targets, each a function of its arrival number n
const tagged = (n: number): [Float32Array, Float32Array] => [Float32Array.of(n, -n), Float32Array.of(n + 0.5, n + 0.25)];

test('oldest-first eviction keeps exactly the last `capacity` samples; every sample is taken, and counted', () => {
  const capacity = 7;
  const reservoir = new Reservoir({ capacity, inputs: 2, targets: 2, threshold: 1, evict: 'oldest', seed: 1 });
  for (let n = 0; n < 30; n++) reservoir.put(...tagged(n));
  assert.equal(reservoir.held, capacity);
  assert.deepEqual({ received: reservoir.received, evicted: reservoir.evicted }, { received: 30, evicted: 23 });
  const held = Array.from({ length: capacity }, (_, slot) => reservoir.split.images[2 * slot]).sort((a, b) => a - b);
  assert.deepEqual(held, [23, 24, 25, 26, 27, 28, 29]);
  // each slot's input and target belong to one sample
  for (let slot = 0; slot < capacity; slot++) {
    const n = reservoir.split.images[2 * slot];
    assert.deepEqual([reservoir.split.images[2 * slot + 1], reservoir.split.targets[2 * slot], reservoir.split.targets[2 * slot + 1]], [-n, n + 0.5, n + 0.25]);
  }
});

test('random eviction: the newest sample is always held, and a held sample survives k more arrivals with probability (1 − 1/N)^k', () => {
  const capacity = 50;
  const more = 50;
  let survivors = 0;
  const trials = 200;
  for (let seed = 1; seed <= trials; seed++) {
    const reservoir = new Reservoir({ capacity, inputs: 2, targets: 2, threshold: capacity, evict: 'random', seed });
    for (let n = 0; n < capacity + more; n++) {
      reservoir.put(...tagged(n));
      const values = Array.from({ length: capacity }, (_, slot) => reservoir.split.images[2 * slot]);
      assert.ok(values.includes(n), `seed ${seed}: sample ${n} not held right after it was put`);
    }
    for (let slot = 0; slot < capacity; slot++) if (reservoir.split.images[2 * slot] < capacity) survivors++;
  }
  const expected = capacity * trials * (1 - 1 / capacity) ** more; // ≈ 0.364 of the first 50
  const sd = Math.sqrt(expected * (1 - expected / (capacity * trials)));
  assert.ok(Math.abs(survivors - expected) < 4 * sd, `${survivors} of the first samples survived; expected ${expected.toFixed(0)} ± ${sd.toFixed(0)}`);
});

test('a buffer not yet full: the epoch\'s batches draw only held samples, each about equally often', () => {
  const capacity = 12;
  const reservoir = new Reservoir({ capacity, inputs: 2, targets: 2, threshold: 1, evict: 'random', seed: 3 });
  for (let n = 0; n < 4; n++) reservoir.put(...tagged(n + 1)); // no sample is 0, which an empty slot holds
  const maker = new BatchMaker(reservoir.split, [2], capacity);
  const order = epochOrder(new Uint32Array(capacity), 5, 0);
  const batch = maker.fromOrder(order, 0, capacity);
  const counts = new Map<number, number>();
  for (let i = 0; i < capacity; i++) {
    const n = batch.x[2 * i];
    assert.ok(n >= 1 && n <= 4, `drew ${n}, which no put gave`);
    assert.deepEqual([batch.targets![2 * i], batch.targets![2 * i + 1]], [n + 0.5, n + 0.25]);
    counts.set(n, (counts.get(n) ?? 0) + 1);
  }
  // 12 slots folded onto 4: three draws each
  assert.deepEqual([...counts.values()], [3, 3, 3, 3]);
});

test('a step waits until the buffer holds its threshold, and goes on once the stream has ended; an empty ended stream is an error', async () => {
  const reservoir = new Reservoir({ capacity: 10, inputs: 2, targets: 2, threshold: 3, evict: 'random', seed: 1 });
  let released = false;
  const waiting = reservoir.beforeStep().then(() => (released = true));
  reservoir.put(...tagged(1));
  reservoir.put(...tagged(2));
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(released, false);
  reservoir.put(...tagged(3));
  await waiting;
  const short = new Reservoir({ capacity: 10, inputs: 2, targets: 2, threshold: 5, evict: 'random', seed: 1 });
  short.put(...tagged(1));
  const ending = short.beforeStep();
  short.end();
  await ending; // one sample and no more coming: train on it
  const empty = new Reservoir({ capacity: 10, inputs: 2, targets: 2, threshold: 5, evict: 'random', seed: 1 });
  empty.end();
  await assert.rejects(empty.beforeStep(), /the stream ended before it gave a single sample/);
  assert.throws(() => new Reservoir({ capacity: 4, inputs: 2, targets: 2, threshold: 5, evict: 'random', seed: 1 }), /threshold 5; give a whole number of samples from 1 to the capacity \(4\)/);
  assert.throws(() => reservoir.put(Float32Array.of(1), Float32Array.of(1, 2)), /a sample of 1 inputs and 2 targets; this buffer holds 2 and 2/);
  assert.throws(() => reservoir.put(Float32Array.of(1, 2), Float32Array.of(1)), /a sample of 2 inputs and 1 targets; this buffer holds 2 and 2/);
  for (const capacity of [0, 1.5]) assert.throws(() => new Reservoir({ capacity, inputs: 2, targets: 2, threshold: 1, evict: 'random', seed: 1 }), new RegExp(`reservoir: capacity ${capacity}; give a whole number of samples ≥ 1`));
  for (const threshold of [0, 2.5]) assert.throws(() => new Reservoir({ capacity: 4, inputs: 2, targets: 2, threshold, evict: 'random', seed: 1 }), /give a whole number of samples from 1 to the capacity/);
  new Reservoir({ capacity: 4, inputs: 2, targets: 2, threshold: 4, evict: 'random', seed: 1 }); // the whole buffer is a threshold
});

test('a stream trains on a process backend only: worker threads are refused with the reason', async () => {
  const reservoir = new Reservoir({ capacity: 10, inputs: 2, targets: 2, threshold: 1, evict: 'random', seed: 1 });
  const data = reservoir.dataset('stream', { x: new Float32Array(4), y: Float32Array.of(1, 2, 3, 4) });
  // a regression set of 2 inputs → 2 targets: its training split the buffer, its test split the 2 samples given
  assert.deepEqual({ shape: data.shape, classes: data.classes, task: data.task, train: data.train === reservoir.split, count: data.test.count, targets: Array.from(data.test.targets!) }, { shape: [2], classes: 2, task: 'regression', train: true, count: 2, targets: [1, 2, 3, 4] });
  assert.equal(data.stream, reservoir);
  for (const y of [new Float32Array(3), new Float32Array(6)]) assert.throws(() => reservoir.dataset('stream', { x: new Float32Array(4), y }), /does not make whole samples of 2 and 2/);
  assert.throws(() => reservoir.dataset('stream', { x: new Float32Array(0), y: new Float32Array(0) }), /does not make whole samples/);
  await assert.rejects(train({ model: 'mlp', data, backend: 'shm', workers: 1 }), /tcp or mpi for a data set fed while it trains/);
});

test('a buffer restored from its checkpoint goes on exactly as the one never stopped: the same samples held, the same slots evicted', () => {
  for (const evict of ['random', 'oldest'] as const) {
    const options = { capacity: 9, inputs: 2, targets: 2, threshold: 1, evict, seed: 11 };
    const whole = new Reservoir(options);
    const first = new Reservoir(options);
    for (let n = 0; n < 14; n++) (whole.put(...tagged(n)), first.put(...tagged(n)));
    const resumed = new Reservoir(options);
    resumed.restore(structuredClone(first.snapshot()));
    for (let n = 14; n < 40; n++) (whole.put(...tagged(n)), resumed.put(...tagged(n)));
    assert.deepEqual(Array.from(resumed.split.images), Array.from(whole.split.images), evict);
    assert.deepEqual(Array.from(resumed.split.targets), Array.from(whole.split.targets), evict);
    assert.deepEqual([resumed.held, resumed.received, resumed.evicted], [whole.held, whole.received, whole.evicted]);
  }
  assert.throws(() => new Reservoir({ capacity: 3, inputs: 2, targets: 2, threshold: 1, evict: 'random', seed: 1 }).restore(new Reservoir({ capacity: 4, inputs: 2, targets: 2, threshold: 1, evict: 'random', seed: 1 }).snapshot()), /does not fit this buffer/);
});
