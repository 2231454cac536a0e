import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseLibsvm, formatLibsvm, generateRcv1Like } from './sparse.js';
import { parseRatings, generateNetflixLike, formatRatings } from './ratings.js';

test('libsvm: labels ±1 and 0/1, comments, qid, blank lines, CSR with 0-based indices', () => {
  const { split, features } = parseLibsvm('+1 1:0.5 3:2 # a comment\n\n# only a comment\n-1 qid:7 2:1.5\n0 5:1e-3\n1\n', 'a.svm');
  assert.equal(split.count, 4);
  assert.equal(features, 5);
  assert.deepEqual([...split.labels], [1, 0, 0, 1]);
  assert.deepEqual([...split.rowPtr], [0, 2, 3, 4, 4]);
  assert.deepEqual([...split.indices], [0, 2, 1, 4]);
  assert.deepEqual([...split.values].map((v) => +v.toFixed(4)), [0.5, 2, 1.5, 0.001]);
  assert.equal(split.maxRowLength, 2);
  assert.ok(split.indices.buffer instanceof SharedArrayBuffer);
});

test('libsvm: each bad line is refused with file, line and column', () => {
  const bad: [string, RegExp][] = [
    ['+1 1:0.5 2:abc', /b\.svm:1:12: value 'abc' is not a number; fix that line/],
    ['+1 0:1', /b\.svm:1:4: index 0 is not ≥ 1 \(libsvm indices are 1-based\)/],
    ['+1 3:1 2:1', /b\.svm:1:8: index 2 comes after 3 \(indices must increase\)/],
    ['+1 3:1 3:2', /b\.svm:1:8: index 3 repeats/],
    ['1 2:1\n3:1 4:1', /b\.svm:2:1: missing label \(the line starts with '3:1'\)/],
    ['x 1:1', /b\.svm:1:1: label 'x' is not a number/],
    ['2 1:1', /b\.svm:1:1: label 2 is not binary; converge's sparse models take labels −1\/\+1 or 0\/1/],
    ['+1 1.5:1', /b\.svm:1:4: index '1\.5' is not an integer/],
    ['+1 7', /b\.svm:1:4: '7' is not index:value/],
    ['# nothing\n', /b\.svm: holds no examples/],
  ];
  for (const [text, pattern] of bad) assert.throws(() => parseLibsvm(text, 'b.svm'), pattern, text);
});

test('libsvm round trip through the writer', () => {
  const data = generateRcv1Like({ rows: 50, testRows: 5, features: 300, nonZeros: 10, seed: 3 });
  const again = parseLibsvm(formatLibsvm(data.train), 'x.svm').split;
  assert.deepEqual([...again.rowPtr], [...data.train.rowPtr]);
  assert.deepEqual([...again.indices], [...data.train.indices]);
  assert.deepEqual([...again.labels], [...data.train.labels]);
  for (let k = 0; k < again.values.length; k++) assert.ok(Math.abs(again.values[k] - data.train.values[k]) < 1e-5);
});

test('the RCV1-like generator: deterministic, sorted distinct features, unit rows, power-law frequencies, balanced labels', () => {
  const o = { rows: 4000, testRows: 400, features: 5000, nonZeros: 20, seed: 7 };
  const a = generateRcv1Like(o);
  const b = generateRcv1Like(o);
  assert.deepEqual([...a.train.indices.subarray(0, 500)], [...b.train.indices.subarray(0, 500)]);
  assert.notDeepEqual([...generateRcv1Like({ ...o, seed: 8 }).train.indices.subarray(0, 500)], [...a.train.indices.subarray(0, 500)]);
  const counts = new Array<number>(o.features).fill(0);
  for (let r = 0; r < a.train.count; r++) {
    let norm = 0;
    for (let k = a.train.rowPtr[r]; k < a.train.rowPtr[r + 1]; k++) {
      if (k > a.train.rowPtr[r]) assert.ok(a.train.indices[k] > a.train.indices[k - 1], 'sorted, distinct');
      norm += a.train.values[k] ** 2;
      counts[a.train.indices[k]]++;
    }
    assert.ok(Math.abs(norm - 1) < 1e-4, 'unit length');
  }
  const meanLength = a.train.rowPtr[a.train.count] / a.train.count;
  assert.ok(meanLength > 15 && meanLength < 25, `mean row length ${meanLength}`);
  counts.sort((x, y) => y - x);
  assert.ok(counts[0] > 50 * (counts[Math.floor(o.features / 2)] + 1), 'a few features are far more frequent than the median one');
  const positives = a.train.labels.reduce((s, y) => s + y, 0) / a.train.count;
  assert.ok(positives > 0.45 && positives < 0.55, `balanced: ${positives}`);
});

test('ratings: parse, errors with file and line, the Netflix-like generator', () => {
  const { split, users, items } = parseRatings('0 1 4\n# c\n2 0 3.5\n', 'r.ratings');
  assert.equal(split.count, 2);
  assert.equal(users, 3);
  assert.equal(items, 2);
  assert.throws(() => parseRatings('0 1\n', 'r.ratings'), /r\.ratings:1: has 2 fields, not 3/);
  assert.throws(() => parseRatings('0 1 4\n-1 1 4', 'r.ratings'), /r\.ratings:2: user '-1' is not an integer ≥ 0/);
  assert.throws(() => parseRatings('0 x 4', 'r.ratings'), /r\.ratings:1: item 'x' is not an integer ≥ 0/);
  assert.throws(() => parseRatings('0 1 good', 'r.ratings'), /r\.ratings:1: rating 'good' is not a number/);
  const data = generateNetflixLike({ users: 500, items: 200, ratingsPerUser: 20, rank: 4, testFraction: 0.1, seed: 2 });
  assert.ok(data.train.count > 5000 && data.test.count > 300, `${data.train.count} / ${data.test.count}`);
  for (let i = 0; i < data.train.count; i++) {
    assert.ok(data.train.ratings[i] >= 1 && data.train.ratings[i] <= 5);
    assert.ok(data.train.users[i] < 500 && data.train.items[i] < 200);
  }
  const again = parseRatings(formatRatings(data.test), 't.ratings').split;
  assert.deepEqual([...again.users], [...data.test.users]);
  const perUser = new Array<number>(500).fill(0);
  for (const u of data.train.users) perUser[u]++;
  perUser.sort((x, y) => y - x);
  assert.ok(perUser[0] > 4 * perUser[250], 'ratings per user are skewed');
});

test('libsvm: multi-class labels become classes 0 … K−1 in the order of their values; --zero-based indices', () => {
  const multi = parseLibsvm('3 1:1\n1 2:1\n7 1:2 3:1\n3 2:2\n', 'm.svm', { binary: false });
  assert.equal(multi.classes, 3);
  assert.deepEqual([...multi.split.labels], [1, 0, 2, 1]);
  // a binary file stays binary: −1 and 0 negative, +1 positive
  assert.equal(parseLibsvm('-1 1:1\n+1 1:2\n', 'b.svm', { binary: false }).classes, 2);
  assert.throws(() => parseLibsvm('0.5 1:1\n', 'r.svm', { binary: false }), /r\.svm: the label of example 1 is 0\.5, not a class/);
  const zero = parseLibsvm('1 0:1.5 2:3\n0 1:2\n', 'z.svm', { zeroBased: true });
  assert.deepEqual([...zero.split.indices], [0, 2, 1]);
  assert.equal(zero.features, 3);
  assert.throws(() => parseLibsvm('1 0:1.5\n', 'z.svm'), /z\.svm:1:3: index 0 is not ≥ 1 .*--zero-based/);
});

test('libsvm: numbers are read exactly as Number() reads them, in every notation', () => {
  const written = ['0.1', '-2.5e-3', '1E+2', '+3', '.5', '5.', '123456789012345678', '0.30000000000000004', '1e-310', '4.9406564584124654e-324'];
  const { split } = parseLibsvm(`1 ${written.map((v, i) => `${i + 1}:${v}`).join(' ')}\n`, 'n.svm');
  assert.deepEqual([...split.values], written.map((v) => Math.fround(Number(v))));
});

test('libsvm: parsing is linear — twice the file, twice the bytes examined, each about once', () => {
  const data = generateRcv1Like({ rows: 2000, testRows: 10, features: 5000, nonZeros: 30, seed: 4 });
  const text = formatLibsvm(data.train);
  const once = parseLibsvm(text, 'x.svm');
  const twice = parseLibsvm(text + text, 'x.svm');
  assert.equal(twice.split.count, 2 * once.split.count);
  assert.ok(once.scanned <= 1.5 * text.length, `${once.scanned} bytes examined for a file of ${text.length}`);
  assert.ok(twice.scanned <= 2.05 * once.scanned, `doubling the file took ${twice.scanned / once.scanned}× the work`);
});
