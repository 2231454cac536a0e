import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLibsvm, formatLibsvm, generateRcv1Like, labelClasses, readLibsvm } from './sparse.js';
import { parseRatings, generateNetflixLike, formatRatings, readRatings } from './ratings.js';

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
  assert.ok(once.scanned >= text.length && once.scanned <= 1.5 * text.length, `${once.scanned} bytes examined for a file of ${text.length}`);
  assert.ok(twice.scanned <= 2.05 * once.scanned, `doubling the file took ${twice.scanned / once.scanned}× the work`);
});

test('ratings: ids counted from the largest, any blanks between fields, comments after a rating; files read from disk or refused by name', () => {
  const one = parseRatings('0 0 4\n', 'o.ratings');
  assert.deepEqual([one.users, one.items], [1, 1]);
  const spaced = parseRatings('5  0\t4 # late\n2 7 3.5   \n\n  # only a comment\n', 's.ratings');
  assert.deepEqual([spaced.users, spaced.items, spaced.split.count], [6, 8, 2]);
  assert.deepEqual([[...spaced.split.users], [...spaced.split.items], [...spaced.split.ratings]], [[5, 2], [0, 7], [4, 3.5]]);
  assert.throws(() => parseRatings('0 -1 4\n', 'b.ratings'), /^ConvergeError: b\.ratings:1: item '-1' is not an integer ≥ 0; fix that line \(format: user item rating, ids 0-based integers\)$/);
  assert.throws(() => parseRatings('# nothing\n\n', 'b.ratings'), /^ConvergeError: b\.ratings: holds no ratings; fix that line/);
  // the writer's text reads back to the same ratings, items and users
  const data = generateNetflixLike({ users: 50, items: 40, ratingsPerUser: 6, rank: 2, testFraction: 0.1, seed: 5 });
  const again = parseRatings(formatRatings(data.train), 't.ratings').split;
  assert.deepEqual([[...again.users], [...again.items], [...again.ratings]], [[...data.train.users], [...data.train.items], [...data.train.ratings]]);
  const dir = mkdtempSync(join(tmpdir(), 'converge-ratings-'));
  writeFileSync(join(dir, 'r.ratings'), '3 1 2.5\n');
  assert.deepEqual([...readRatings(join(dir, 'r.ratings')).split.ratings], [2.5]);
  assert.throws(() => readRatings(join(dir, 'none.ratings')), new RegExp(`^ConvergeError: ratings file not found at ${join(dir, 'none.ratings')}; check the --dataset / --test-dataset path\\.$`));
});

test('libsvm: blanks after the last line, a comment right after a value, qid only as itself, features counted 1-based; files read from disk or refused by name', () => {
  const parsed = parseLibsvm('1 2:0.5#note\n-1 qid:3 3:1 # c\n   \n  ', 'q.svm');
  assert.deepEqual([parsed.split.count, parsed.features], [2, 3]);
  assert.deepEqual([...parsed.split.values], [0.5, 1]);
  assert.equal(parseLibsvm('1 7:1\n', 'f.svm').features, 7);
  const bad: [string, RegExp][] = [
    ['1 q5:1', /^ConvergeError: b\.svm:1:3: index 'q5' is not an integer/],
    ['1 qidx:1', /^ConvergeError: b\.svm:1:3: index 'qidx' is not an integer/],
    ['1 qid 1:2', /^ConvergeError: b\.svm:1:3: 'qid' is not index:value/],
    ['1 1:2x', /^ConvergeError: b\.svm:1:5: value '2x' is not a number/],
    ['1 1:inf', /^ConvergeError: b\.svm:1:5: value 'inf' is not a number/],
    ['1 1:1e999', /^ConvergeError: b\.svm:1:5: value '1e999' is not a finite number; fix that line/],
  ];
  for (const [text, pattern] of bad) assert.throws(() => parseLibsvm(text, 'b.svm'), pattern, text);
  assert.deepEqual(labelClasses(Float64Array.of(-1, 1, 0), 'l.svm'), { classes: 2, names: [0, 1], codes: Float32Array.of(0, 1, 0) });
  assert.deepEqual(labelClasses(Float64Array.of(10, 2, 2), 'l.svm'), { classes: 2, names: [2, 10], codes: Float32Array.of(1, 0, 0) });
  assert.throws(() => labelClasses(Float64Array.of(1, 2, 2.5), 'l.svm'), /^ConvergeError: l\.svm: the label of example 3 is 2\.5, not a class \(an integer\); converge's classifiers take integer class labels; for a regression target use a CSV file with --label-column$/);
  const dir = mkdtempSync(join(tmpdir(), 'converge-libsvm-'));
  writeFileSync(join(dir, 'd.svm'), '1 2:3\n');
  assert.deepEqual([...readLibsvm(join(dir, 'd.svm')).split.values], [3]);
  assert.throws(() => readLibsvm(join(dir, 'none.svm')), new RegExp(`^ConvergeError: libsvm file not found at ${join(dir, 'none.svm')}; check the --dataset / --test-dataset path\\.$`));
});

test('the RCV1-like generator: positive values, rarer features weighing more, frequent features spread over the indices, rows of 0.5–1.5× the mean length', () => {
  const o = { rows: 3000, testRows: 10, features: 4000, nonZeros: 20, seed: 9 };
  const data = generateRcv1Like(o);
  assert.equal(data.name, 'rcv1-like');
  const { rowPtr, indices, values } = data.train;
  const counts = new Float64Array(o.features);
  const sums = new Float64Array(o.features);
  for (let r = 0; r < data.train.count; r++) {
    const length = rowPtr[r + 1] - rowPtr[r];
    assert.ok(length >= 0.5 * o.nonZeros && length <= 1.5 * o.nonZeros, `row ${r} has ${length} features`);
    // a row's values relative to its largest: idf · (1, 2 or 3), so none below a tenth of it here
    for (let k = rowPtr[r]; k < rowPtr[r + 1]; k++) {
      assert.ok(values[k] > 0, `value ${values[k]}`);
      counts[indices[k]]++;
      sums[indices[k]] += values[k];
    }
  }
  // features by frequency: the 20 most frequent are spread over the indices, and carry smaller values than rare ones
  const order = [...counts.keys()].filter((j) => counts[j] > 0).sort((a, b) => counts[b] - counts[a]);
  const hot = order.slice(0, 20);
  const meanIndex = hot.reduce((a, j) => a + j, 0) / hot.length;
  assert.ok(meanIndex > 0.2 * o.features && meanIndex < 0.8 * o.features, `the frequent features sit at indices around ${meanIndex}`);
  const meanValue = (js: number[]) => js.reduce((a, j) => a + sums[j], 0) / js.reduce((a, j) => a + counts[j], 0);
  const rare = order.slice(-200);
  assert.ok(meanValue(rare) > 1.5 * meanValue(hot), `rare ${meanValue(rare)}, frequent ${meanValue(hot)}`);
});

test('the Netflix-like generator: half-step ratings around 3.6 with few clipped, about the mean number of ratings a user, its mean the training set\'s', () => {
  const o = { users: 2000, items: 300, ratingsPerUser: 20, rank: 4, testFraction: 0.1, seed: 4 };
  const data = generateNetflixLike(o);
  assert.equal(data.name, 'netflix-like');
  const r = data.train.ratings;
  let sum = 0;
  for (const v of r) {
    assert.ok(Number.isInteger(2 * v), `rating ${v}`);
    sum += v;
  }
  assert.ok(Math.abs(data.mean - sum / r.length) < 1e-9, `mean ${data.mean}, ratings' mean ${sum / r.length}`);
  assert.ok(data.mean > 3.3 && data.mean < 3.7, `mean ${data.mean}`);
  // 3.6 + N(0, 0.4²) + N(0, 0.4²) + a rank-4 dot product of variance 1/4 + N(0, 0.5²): σ ≈ 0.9, so about 10% reach 5 and under 1% go below 1
  const share = (v: number) => r.filter((x) => x === v).length / r.length;
  assert.ok(share(5) > 0.05 && share(5) < 0.16, `share of 5s ${share(5)}`);
  assert.ok(share(1) < 0.02, `share of 1s ${share(1)}`);
  let squares = 0;
  for (const v of r) squares += (v - data.mean) ** 2;
  const sd = Math.sqrt(squares / r.length);
  assert.ok(sd > 0.75 && sd < 1, `standard deviation ${sd}`);
  // Pareto (shape 1.5, mean 20) capped at half the items: E[min(X, 150)] = 20 − (20/3)^1.5·150^−0.5 / 0.5 ≈ 17.2 (16.4–17.8 over seeds 1–6)
  const perUser = (data.train.count + data.test.count) / o.users;
  assert.ok(perUser > 15.5 && perUser < 19, `${perUser} ratings a user`);
});
