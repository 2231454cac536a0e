import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Worker } from 'node:worker_threads';
import { bf16Value, encodedBytes, SharedLowPrecision } from '../tensor/precision.js';
import { Replica, sharedArrayBytes } from './replica.js';

const size = 1000;
const start = Array.from({ length: size }, (_, i) => (i % 17) - 8);
const sharedFloats = () => {
  const buffer = new SharedArrayBuffer(sharedArrayBytes(4 * size));
  const shared = new Float32Array(buffer, 0, size);
  shared.set(start);
  return { buffer, shared };
};

test('a merge keeps a change only one worker made whole, takes the mean where both changed a coordinate, and hands back the others\' changes', () => {
  const { buffer, shared } = sharedFloats();
  const a = new Replica(new Float32Array(size), shared, buffer, 4 * size, 3);
  const b = new Replica(new Float32Array(size), shared, buffer, 4 * size, 3);
  assert.deepEqual([...a.local], start);
  // a changes every coordinate by +2; b every even one by +6
  for (let i = 0; i < size; i++) a.local[i] += 2;
  for (let i = 0; i < size; i += 2) b.local[i] += 6;
  a.stepped(2); // 2 of 3 examples: no merge yet
  assert.deepEqual([...shared], start);
  a.stepped(1); // the third: a merges, alone so far
  const afterA = start.map((v) => v + 2);
  assert.deepEqual([...shared], afterA);
  assert.deepEqual([...a.local], afterA);
  b.merge();
  // even: both changed it, the mean of +2 and +6; odd: only a did, +2 whole
  const both = start.map((v, i) => v + (i % 2 === 0 ? 4 : 2));
  assert.deepEqual([...shared], both);
  assert.deepEqual([...b.local], both, 'a merge starts the replica again from the shared array, with the other worker\'s changes');
  // a changes only the odd ones now; its replica still holds +2 on the even ones, which b has changed since
  for (let i = 1; i < size; i += 2) a.local[i] -= 1;
  a.merge();
  const third = both.map((v, i) => (i % 2 === 0 ? v : v - 1));
  assert.deepEqual([...shared], third, 'odd: changed by a alone since its last merge, its value; even: left alone by a, b\'s mean');
  // refresh drops what was not merged and reads the shared array
  b.local.fill(100);
  b.refresh();
  assert.deepEqual([...b.local], third);
  b.merge();
  assert.deepEqual([...shared], third, 'after a refresh, nothing is left to merge');
});

test('replicas over a bf16 shared array: values bf16 holds arrive exactly; others round stochastically, unbiased', () => {
  const buffer = new SharedArrayBuffer(sharedArrayBytes(encodedBytes('bf16', size)));
  const low = new SharedLowPrecision('bf16', buffer, size, 11);
  low.storeAll(Float32Array.from(start));
  const bytes = encodedBytes('bf16', size);
  const a = new Replica(new Float32Array(size), low, buffer, bytes, 1);
  const b = new Replica(new Float32Array(size), low, buffer, bytes, 1);
  for (let i = 0; i < size; i++) a.local[i] += 0.5;
  for (let i = 0; i < size; i += 2) b.local[i] -= 2;
  a.merge();
  b.merge();
  const decoded = new Float32Array(size);
  low.loadAll(decoded);
  const both = start.map((v, i) => (i % 2 === 0 ? v + (0.5 - 2) / 2 : v + 0.5));
  assert.deepEqual([...decoded], both);
  assert.deepEqual([...b.local], both);
  // b again, from where its merge left it: only its new changes count
  for (let i = 1; i < size; i += 2) b.local[i] += 1;
  b.merge();
  low.loadAll(decoded);
  assert.deepEqual([...decoded], both.map((v, i) => (i % 2 === 0 ? v : v + 1)));
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

test('merges from two threads at once lose no update (a lock in the shared buffer holds them apart)', async () => {
  const big = 200_000;
  const rounds = 60;
  const buffer = new SharedArrayBuffer(sharedArrayBytes(4 * big));
  const script = new URL('./replica.worker.js', import.meta.url);
  const done = await Promise.all([0, 1].map((rank) => new Promise<number>((resolve, reject) => {
    const worker = new Worker(script, { workerData: { buffer, size: big, rank, rounds } });
    worker.on('message', resolve);
    worker.on('error', reject);
  })));
  // each thread owns its half of the coordinates and adds its rank + 1 there every round; each
  // merge also reads the other half, where the other thread writes: a merge that ran into another
  // would write back an old value of the other's half, and lose that update
  const shared = new Float32Array(buffer, 0, big);
  const lost = shared.filter((v, i) => v !== (i < big / 2 ? 1 : 2) * rounds).length;
  assert.equal(lost, 0, `${lost} of ${big} coordinates lost an update`);
  assert.deepEqual(done, [rounds, rounds]);
});
