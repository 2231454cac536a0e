// The held-out test set of a single file: drawn by seeded shuffling, stratified by class for
// classification (each class keeps its share), never the file's last rows — a file sorted by
// label would otherwise test on one class.

import { Random, mixSeed } from '../tensor/random.js';

/** The share of a single file held out for testing. */
export const TEST_FRACTION = 0.1;

/** Row indices of a seeded train/test split, each in increasing order; `labels` (class codes) stratifies it. */
export function heldOut(count: number, seed: number, labels?: ArrayLike<number>): { train: Uint32Array; test: Uint32Array } {
  const random = new Random(mixSeed(seed, 0x7e57));
  const groups = new Map<number, number[]>();
  for (let i = 0; i < count; i++) {
    const key = labels ? labels[i] : 0;
    let group = groups.get(key);
    if (!group) groups.set(key, (group = []));
    group.push(i);
  }
  const isTest = new Uint8Array(count);
  let tests = 0;
  for (const key of [...groups.keys()].sort((a, b) => a - b)) {
    const group = groups.get(key)!;
    for (let i = group.length - 1; i > 0; i--) {
      const j = random.below(i + 1);
      [group[i], group[j]] = [group[j], group[i]];
    }
    const take = Math.round(group.length * TEST_FRACTION);
    for (let k = 0; k < take; k++) isTest[group[k]] = 1;
    tests += take;
  }
  // a tiny file still tests on something, and still trains on something
  if (tests === 0 && count > 1) isTest[random.below(count)] = 1;
  const test = new Uint32Array(isTest.reduce((a, b) => a + b, 0));
  const train = new Uint32Array(count - test.length);
  for (let i = 0, a = 0, b = 0; i < count; i++) {
    if (isTest[i]) test[b++] = i;
    else train[a++] = i;
  }
  return { train, test };
}

/** The line that says which split a run uses, for its first line. */
export function describeSplit(path: string, testPath: string | undefined, seed: number, stratified: boolean): string {
  return testPath ? `test set ${testPath}` : `test set: a seeded${stratified ? ', stratified' : ''} ${Math.round(100 * TEST_FRACTION)}% of ${path} (seed ${seed}; --test-dataset to give one)`;
}
