import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { bf16Value, encodedBytes, SharedLowPrecision } from '../tensor/precision.js';
import { referenceKernels as R } from '../kernels/reference.js';
import { Random } from '../tensor/random.js';
import { defaultMergeEvery, usesReplica } from './hogwild.js';
import { Replica, sharedArrayBytes } from './replica.js';

const size = 1000;
const start = Array.from({ length: size }, (_, i) => (i % 17) - 8);

test('a merge adds a change whole where no other worker changed the coordinate, half where one did, and hands back the others\' changes', () => {
  const buffer = new SharedArrayBuffer(sharedArrayBytes(4 * size));
  const shared = new Float32Array(buffer, 0, size);
  shared.set(start);
  const a = new Replica(new Float32Array(size), shared, buffer, 4 * size, 3);
  const b = new Replica(new Float32Array(size), shared, buffer, 4 * size, 3);
  assert.deepEqual([...a.local], start);
  // a changes every coordinate by +2; b the even ones by +5
  for (let i = 0; i < size; i++) a.local[i] += 2;
  for (let i = 0; i < size; i += 2) b.local[i] += 5;
  a.stepped(2); // 2 of 3 examples: no merge yet
  assert.deepEqual([...shared], start);
  a.stepped(1); // the third: a merges, first: all of its change
  const afterA = start.map((v) => v + 2);
  assert.deepEqual([...shared], afterA);
  assert.deepEqual([...a.local], afterA);
  b.merge();
  // even: a changed them since b's last merge, so half of b's +5; odd: b left them, a's value
  const both = start.map((v, i) => v + 2 + (i % 2 === 0 ? 2.5 : 0));
  assert.deepEqual([...shared], both);
  assert.deepEqual([...b.local], both, 'a merge starts the replica again from the shared array, with the other worker\'s changes');
  // a changes every coordinate by −1, from where it merged (+2): b changed the even ones since, the odd ones are as a left them
  for (let i = 0; i < size; i++) a.local[i] -= 1;
  a.merge();
  const third = both.map((v, i) => v + (i % 2 === 0 ? -0.5 : -1));
  assert.deepEqual([...shared], third, 'a base left behind would count a\'s +2 again');
  // refresh drops what was not merged and reads the shared array
  b.local.fill(100);
  b.refresh();
  assert.deepEqual([...b.local], third);
  b.merge();
  assert.deepEqual([...shared], third, 'after a refresh, nothing is left to add');
});

test('replicas over a bf16 shared array: changes bf16 holds exactly arrive exactly; others round stochastically, unbiased', () => {
  const bytes = encodedBytes('bf16', size);
  const buffer = new SharedArrayBuffer(sharedArrayBytes(bytes));
  const low = new SharedLowPrecision('bf16', buffer, size, 11);
  low.storeAll(Float32Array.from(start));
  const a = new Replica(new Float32Array(size), low, buffer, bytes, 1);
  const b = new Replica(new Float32Array(size), low, buffer, bytes, 1);
  for (let i = 0; i < size; i++) {
    a.local[i] += 0.5;
    b.local[i] -= 2;
  }
  a.merge();
  b.merge(); // half of −2: a changed them all
  const decoded = new Float32Array(size);
  low.loadAll(decoded);
  assert.deepEqual([...decoded], start.map((v) => v + 0.5 - 1));
  assert.deepEqual([...b.local], [...decoded]);
  // a again, from where its merge left it (+0.5), b having changed them all since: half of +1
  for (let i = 0; i < size; i++) a.local[i] += 1;
  a.merge();
  low.loadAll(decoded);
  assert.deepEqual([...decoded], start.map((v) => v + 0.5 - 1 + 0.5));
  // 1 + 2^-10 is not a bf16 value (7 fraction bits): each coordinate ends on 1 or 1 + 2^-7, at 1 + 2^-7 an eighth of the time
  low.storeAll(new Float32Array(size).fill(1));
  a.refresh();
  for (let i = 0; i < size; i++) a.local[i] += 2 ** -10;
  a.merge();
  low.loadAll(decoded);
  const up = decoded.filter((v) => v === bf16Value(0x3f81)).length;
  assert.equal(decoded.filter((v) => v === 1).length + up, size);
  // binomial(1000, 1/8): mean 125, σ 10.5
  assert.ok(Math.abs(up - 125) < 45, `${up} of ${size} rounded up where 125 are expected`);
});

test('a bf16 replica merges through the kernel with the shared array\'s own random stream', () => {
  const bytes = encodedBytes('bf16', size);
  const buffer = new SharedArrayBuffer(sharedArrayBytes(bytes));
  const low = new SharedLowPrecision('bf16', buffer, size, 23);
  low.storeAll(Float32Array.from(start, (v) => v / 3)); // draws one number from the stream (seed 23) for its encoding's key
  const a = new Replica(new Float32Array(size), low, buffer, bytes, 1);
  const expected = { shared: new Uint16Array(buffer, 0, size).slice(), local: a.local.slice(), base: a.local.slice() };
  for (let i = 0; i < size; i++) a.local[i] += (i % 5) / 7;
  expected.local.set(a.local);
  a.merge();
  const stream = new Random(23);
  stream.bits();
  R.replicaMergeBf16(expected.shared, expected.local, expected.base, stream.getState());
  assert.deepEqual(new Uint16Array(buffer, 0, size), expected.shared);
  assert.deepEqual(a.local, expected.local);
});

test('replicas over an int8 shared array add each change on its own, whole or half, and keep the blocks\' scales', () => {
  const bytes = encodedBytes('int8', size);
  const buffer = new SharedArrayBuffer(sharedArrayBytes(bytes));
  const low = new SharedLowPrecision('int8', buffer, size, 5);
  // every block of 64 holds 127 first: its scale is 1, and integers are exact
  const ints = start.map((v, i) => (i % 64 === 0 ? 127 : v));
  low.storeAll(Float32Array.from(ints));
  const a = new Replica(new Float32Array(size), low, buffer, bytes, 1);
  const b = new Replica(new Float32Array(size), low, buffer, bytes, 1);
  for (let i = 1; i < size; i++) if (i % 64 !== 0) a.local[i] += 2;
  for (let i = 2; i < size; i += 2) if (i % 64 !== 0) b.local[i] += 6;
  a.merge();
  b.merge(); // half of +6 where a changed them
  const decoded = new Float32Array(size);
  low.loadAll(decoded);
  assert.deepEqual([...decoded], ints.map((v, i) => (i === 0 || i % 64 === 0 ? v : v + 2 + (i % 2 === 0 ? 3 : 0))));
  assert.deepEqual([...b.local], [...decoded]);
});

test('the default merge interval is a sixteenth of a worker\'s epoch, at most 1,024 examples, at least 1', () => {
  assert.equal(defaultMergeEvery(100_000), 1024);
  assert.equal(defaultMergeEvery(16_400), 1024);
  assert.equal(defaultMergeEvery(16_000), 1000);
  assert.equal(defaultMergeEvery(1500), 93);
  assert.equal(defaultMergeEvery(10), 1);
});

test('merges from two threads at once lose no update (a lock in the shared buffer holds them apart)', async () => {
  const big = 200_000;
  const rounds = 60;
  const buffer = new SharedArrayBuffer(sharedArrayBytes(4 * big));
  // the threads meet before each round's merge, so that their merges run into each other if nothing holds them apart
  const meet = new SharedArrayBuffer(4);
  const script = new URL('./replica.worker.js', import.meta.url);
  const done = await Promise.all([0, 1].map((rank) => new Promise<number>((resolve, reject) => {
    const worker = new Worker(script, { workerData: { buffer, meet, size: big, rank, rounds } });
    worker.on('message', resolve);
    worker.on('error', reject);
  })));
  assert.deepEqual(done, [rounds, rounds]);
  // each thread owns half of the coordinates and adds its rank + 1 there every round; each merge
  // also reads and writes back the other half, where the other thread merges: a merge that ran
  // into another would write back an old value of the other's half, and lose that update
  const shared = new Float32Array(buffer, 0, big);
  const lost = shared.filter((v, i) => v !== (i < big / 2 ? 1 : 2) * rounds).length;
  assert.equal(lost, 0, `${lost} of ${big} coordinates lost an update`);
});

test('hogwild takes replicas for per-example models on 2 or more workers (or a rounded shared array), by default only up to 1 MiB of parameters', () => {
  const base = { perExample: true, workers: 2, lowPrecision: false, parameters: 100_001, mergeEvery: undefined };
  assert.equal(usesReplica(base), true);
  assert.equal(usesReplica({ ...base, parameters: 262_144 }), true, 'exactly 1 MiB');
  assert.equal(usesReplica({ ...base, parameters: 262_145 }), false, 'the Netflix-like factors (1.6 MB) write straight in');
  assert.equal(usesReplica({ ...base, parameters: 262_145, mergeEvery: 1024 }), true, 'unless asked for');
  assert.equal(usesReplica({ ...base, mergeEvery: 0 }), false);
  assert.equal(usesReplica({ ...base, workers: 1 }), false, 'one float32 worker: plain sequential SGD');
  assert.equal(usesReplica({ ...base, workers: 1, lowPrecision: true }), true, 'one worker on a bf16 array rounds at merges');
  assert.equal(usesReplica({ ...base, perExample: false }), false, 'dense models write straight in');
});

test('the merge lock takes one cache line of its own, on the first 64-byte boundary after the parameters', () => {
  for (const [bytes, total] of [[4, 128], [64, 128], [100, 192], [4 * size, 4032 + 64]]) assert.equal(sharedArrayBytes(bytes), total, `${bytes} bytes of parameters`);
});
