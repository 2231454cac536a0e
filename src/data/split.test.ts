import { test } from 'node:test';
import assert from 'node:assert/strict';
import { heldOut } from './split.js';

test('the held-out split: disjoint, complete, seeded, and stratified — each class keeps its tenth, wherever its rows are', () => {
  // a label-sorted file: 300 of class 0, then 100 of class 1, then 50 of class 2
  const labels = [...Array(300).fill(0), ...Array(100).fill(1), ...Array(50).fill(2)];
  const { train, test: held } = heldOut(labels.length, 1, labels);
  assert.equal(train.length + held.length, labels.length);
  assert.deepEqual([...new Set([...train, ...held])].sort((a, b) => a - b), labels.map((_, i) => i));
  const perClass = [0, 1, 2].map((c) => held.filter((i) => labels[i] === c).length);
  assert.deepEqual(perClass, [30, 10, 5]);
  assert.deepEqual(heldOut(labels.length, 1, labels).test, held, 'the same seed, the same split');
  assert.notDeepEqual(heldOut(labels.length, 2, labels).test, held, 'another seed, another split');
  // not the last rows: the held-out rows are spread over the file
  assert.ok(held.some((i) => i < 300) && Math.min(...held) < 100);
  // unlabelled (ratings): a tenth, drawn the same way
  assert.equal(heldOut(1000, 1).test.length, 100);
  assert.equal(heldOut(3, 1).test.length, 1, 'a tiny file still tests on something');
});
