// CSV, NPY and in-memory arrays: what they read, each bad input's one-line error, and the work
// of a parse growing with the file, not faster.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseCsv, readCsv } from './csv.js';
import { formatNpy, parseNpy, readNpy } from './npy.js';
import { datasetFromArrays, encodeLabels } from './dense.js';

const bytes = (text: string) => Buffer.from(text, 'utf8');

test('CSV: float features kept as floats, the label column by name, index or default, class names or numbers', () => {
  const csv = parseCsv(bytes('a, b ,label\n0.125,-3e2,cat\n\n1.5,7,dog\r\n2,0.1,cat\n'), 'x.csv');
  assert.deepEqual(csv.header, ['a', 'b', 'label']);
  assert.equal(csv.labelColumn, 'label');
  assert.deepEqual([...csv.features], [0.125, -300, 1.5, 7, 2, Math.fround(0.1)]);
  assert.deepEqual(csv.labels.names, ['cat', 'dog', 'cat']);
  assert.equal(csv.count, 3);
  // the label in the middle, by name and by index; TSV by extension
  const middle = parseCsv(bytes('a\ty\tb\n1\t3.5\t2\n4\t-1\t5\n'), 'x.tsv', { labelColumn: 'y' });
  assert.deepEqual([...middle.features], [1, 2, 4, 5]);
  assert.deepEqual([...middle.labels.numbers!], [3.5, -1]);
  assert.deepEqual([...parseCsv(bytes('a,b,c\n1,2,3\n'), 'x.csv', { labelColumn: '0' }).features], [2, 3]);
  // no column named label/target/class/y: the last one
  assert.equal(parseCsv(bytes('p,q\n1,2\n'), 'x.csv').labelColumn, 'q');
});

test('CSV: the label column by any of its default names in any case and place, by index only where no column bears that name; TSV only by the extension', () => {
  for (const name of ['label', 'Target', 'CLASS', 'y']) {
    const csv = parseCsv(bytes(`a,${name},b\n1,7,2\n`), 'n.csv');
    assert.equal(csv.labelColumn, name);
    assert.deepEqual([...csv.features], [1, 2]);
    assert.deepEqual([...csv.labels.numbers!], [7]);
  }
  // the first of them, left to right; a name asked for wins over them
  assert.equal(parseCsv(bytes('target,a,label\n1,2,3\n'), 'n.csv').labelColumn, 'target');
  assert.equal(parseCsv(bytes('label,a,b\n1,2,3\n'), 'n.csv', { labelColumn: 'b' }).labelColumn, 'b');
  // columns named by numbers: a name first, an index only where none matches, and never past the last column
  const numbered = bytes('2,0,1\n5,6,7\n');
  assert.equal(parseCsv(numbered, 'n.csv', { labelColumn: '1' }).labelColumn, '1');
  assert.deepEqual([...parseCsv(numbered, 'n.csv', { labelColumn: '1' }).labels.numbers!], [7]);
  assert.deepEqual([...parseCsv(bytes('p,q,r\n5,6,7\n'), 'n.csv', { labelColumn: '2' }).labels.numbers!], [7]);
  const twelve = Array.from({ length: 12 }, (_, i) => i);
  assert.deepEqual([...parseCsv(bytes(`${twelve.map((i) => `c${i}`)}\n${twelve}\n`), 'n.csv', { labelColumn: '10' }).labels.numbers!], [10]);
  for (const asked of ['3', '10', '1x', 'x1', '-1', '1.0'])
    assert.throws(() => parseCsv(bytes('p,q,r\n5,6,7\n'), 'n.csv', { labelColumn: asked }), new RegExp(`^ConvergeError: n\\.csv: has no column '${asked.replace('.', '\\.')}'; its columns are p, q, r; give --label-column one of them \\(or its 0-based index\\)$`), asked);
});

test('CSV: CRLF and a last line without its newline, blank lines before the header, quoted names; a CR inside a row is refused', () => {
  const expect = (csv: ReturnType<typeof parseCsv>) => {
    assert.deepEqual(csv.header, ['a', 'b', 'label']);
    assert.deepEqual([...csv.features], [1, 2, 4, 5]);
    assert.deepEqual([...csv.labels.numbers!], [3, 6]);
  };
  expect(parseCsv(bytes('a,b,label\r\n1,2,3\r\n4,5,6\r\n'), 'r.csv'));
  expect(parseCsv(bytes('a,b,label\r\n1,2,3 \r\n\r\n4,5,6\r'), 'r.csv'));
  expect(parseCsv(bytes('a,b,label\n1,2,3\n4,5,6'), 'r.csv'));
  expect(parseCsv(bytes('\n  \r\n"a", "b" ,"label"\n1,2,3\n4,5,6\n'), 'r.csv'));
  // the label first, so the row ends on a number
  const first = parseCsv(bytes('label,a,b\r\n3,1,2\r\n6,4,5\r'), 'r.csv');
  assert.deepEqual([...first.features], [1, 2, 4, 5]);
  assert.deepEqual([...first.labels.numbers!], [3, 6]);
  assert.throws(() => parseCsv(bytes('a,b,label\n1,2\r,3\n'), 'r.csv'), /^ConvergeError: r\.csv:2:4: a carriage return \(CR\) inside the row, not before its line feed; fix that line/);
  assert.throws(() => parseCsv(bytes('a,b,label\n1,2,3\r4,5,6\n'), 'r.csv'), /^ConvergeError: r\.csv:2:6: a carriage return \(CR\) inside the row, not before its line feed; fix that line/);
  assert.throws(() => parseCsv(bytes('label\n1\n'), 'r.csv'), /^ConvergeError: r\.csv: has a header of one column; a CSV file needs a header line naming its feature columns and its label column$/);
  assert.throws(() => parseCsv(bytes('\n \n'), 'r.csv'), /^ConvergeError: r\.csv: is empty; a CSV file needs a header line/);
  // tabs separate only where the extension says so
  assert.throws(() => parseCsv(bytes('a\tb\n1\t2\n'), 'r.tsv.csv'), /r\.tsv\.csv: has a header of one column/);
  assert.deepEqual([...parseCsv(bytes('a\tb\n1\t2\n'), 'R.TAB').features], [1]);
  assert.equal(parseCsv(bytes('a,b\n1,2\n'), 'r.csv').shape[0], 1);
});

test('CSV: each bad input is one line naming file, line and column', () => {
  const bad: [string, RegExp][] = [
    ['a,b,label\n1,2,0\n3,x,1\n', /b\.csv:3:3: 'x' in column 'b' is not a number; fix that line/],
    ['a,b,label\n1,2,0\n3,4\n', /b\.csv:3:4: the row has 2 fields, the header 3/],
    ['a,b,label\n1,2,0,9\n', /b\.csv:2:6: the row has more fields than the header's 3/],
    ['a,b,label\n1,,0\n', /b\.csv:2:3: column 'b' is empty \(a missing value\)/],
    ['a,b,label\n1,2,\n', /b\.csv:2:5: the label \(column 'label'\) is empty/],
    ['a,b,label\n1,2,0\n1,2,cat\n', /b\.csv:3:5: label 'cat' is not a number, where the rows before had numbers/],
    ['a,b\n', /b\.csv: has a header but no rows/],
    ['', /b\.csv: is empty/],
  ];
  for (const [text, pattern] of bad) assert.throws(() => parseCsv(bytes(text), 'b.csv'), pattern, JSON.stringify(text));
  assert.throws(() => parseCsv(bytes('a,b\n1,2\n'), 'b.csv', { labelColumn: 'z' }), /b\.csv: has no column 'z'; its columns are a, b; give --label-column/);
});

test('CSV: parsing is linear — twice the rows, twice the bytes examined', () => {
  const rows = Array.from({ length: 3000 }, (_, i) => `${i * 0.37},${-i / 7},${i % 3}`).join('\n');
  const once = parseCsv(bytes(`x,z,label\n${rows}\n`), 'l.csv');
  const twice = parseCsv(bytes(`x,z,label\n${rows}\n${rows}\n`), 'l.csv');
  assert.equal(twice.count, 2 * once.count);
  assert.ok(twice.scanned <= 2.05 * once.scanned, `doubling the rows took ${twice.scanned / once.scanned}× the work`);
  // each byte examined exactly once, numbers and names, LF and CRLF alike
  assert.equal(once.scanned, Buffer.byteLength(`x,z,label\n${rows}\n`));
  const names = `x,z,label\r\n${Array.from({ length: 300 }, (_, i) => `${i}, ${i % 7},${'ab'[i % 2]}`).join('\r\n')}\r\n`;
  assert.equal(parseCsv(bytes(names), 'n.csv').scanned, names.length);
});

test('labels: names and few integers are classes, other numbers regression targets; --task overrides', () => {
  assert.deepEqual(encodeLabels({ names: ['b', 'a', 'b'], width: 1 }, 'f', 'auto'), { task: 'classification', classes: 2, codes: Int32Array.of(1, 0, 1), names: ['a', 'b'] });
  const classes = encodeLabels({ numbers: Float64Array.of(3, 7, 3, 9), width: 1 }, 'f', 'auto');
  assert.equal(classes.task, 'classification');
  assert.deepEqual([...classes.codes], [0, 1, 0, 2]);
  assert.equal(encodeLabels({ numbers: Float64Array.of(0.5, 1), width: 1 }, 'f', 'auto').task, 'regression');
  assert.equal(encodeLabels({ numbers: Float64Array.of(3, 7), width: 1 }, 'f', 'regression').task, 'regression');
  assert.throws(() => encodeLabels({ numbers: Float64Array.of(0.5), width: 1 }, 'f', 'classification'), /f: label 0\.5 is not a class/);
  assert.throws(() => encodeLabels({ names: ['a'], width: 1 }, 'f', 'regression'), /its label column holds names, not numbers/);
});

/** .npy bytes with any header and payload, as numpy writes them (format 1.0). */
function npy(descr: string, shape: string, payload: Buffer, fortran = 'False'): Buffer {
  const dict = `{'descr': '${descr}', 'fortran_order': ${fortran}, 'shape': ${shape}, }`;
  const header = dict + ' '.repeat((64 - ((10 + dict.length + 1) % 64)) % 64) + '\n';
  const head = Buffer.alloc(10);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]).copy(head);
  head.writeUInt16LE(header.length, 8);
  return Buffer.concat([head, Buffer.from(header, 'latin1'), payload]);
}

test('NPY: float32 round trip; float64, int64, uint8 and bool read exactly; each bad file one line', () => {
  const values = Float32Array.of(1.5, -2, 3.25, 0, 1e-8, 7);
  const back = parseNpy(formatNpy(values, [2, 3]), 'a.npy');
  assert.deepEqual(back.shape, [2, 3]);
  assert.deepEqual([...back.values], [...values]);
  const f8 = Buffer.alloc(16);
  f8.writeDoubleLE(0.1, 0);
  f8.writeDoubleLE(-2.5, 8);
  assert.deepEqual([...parseNpy(npy('<f8', '(2,)', f8), 'b.npy').values], [0.1, -2.5]);
  const i8 = Buffer.alloc(16);
  i8.writeBigInt64LE(-3n, 0);
  i8.writeBigInt64LE(9007199254740991n, 8);
  assert.deepEqual([...parseNpy(npy('<i8', '(2,)', i8), 'c.npy').values], [-3, 9007199254740991]);
  assert.deepEqual([...parseNpy(npy('|u1', '(3,)', Buffer.from([0, 7, 255])), 'd.npy').values], [0, 7, 255]);
  assert.deepEqual([...parseNpy(npy('|b1', '(2,)', Buffer.from([1, 0])), 'e.npy').values], [1, 0]);
  assert.throws(() => parseNpy(Buffer.from('not numpy at all'), 'f.npy'), /f\.npy: is not a \.npy file/);
  assert.throws(() => parseNpy(npy('>f4', '(1,)', Buffer.alloc(4)), 'g.npy'), /g\.npy: holds dtype '>f4'; converge reads .*convert with array\.astype\('<f4'\)/);
  assert.throws(() => parseNpy(npy('<f4', '(2, 2)', Buffer.alloc(16), 'True'), 'h.npy'), /h\.npy: is in Fortran order/);
  assert.throws(() => parseNpy(npy('<f4', '(3,)', Buffer.alloc(8)), 'i.npy'), /i\.npy: is 136 bytes, where its header \(<f4, shape \(3\)\) says 140/);
});

test('NPY: every dtype numpy writes, in format versions 1, 2 and 3, reads exactly; what formatNpy writes numpy loads (numpy is the oracle, where installed)', (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-npy-'));
  // numpy writes one file per dtype (and float32 in each format version), and lists what each holds
  const script = `import numpy as np, json, sys
d = sys.argv[1]
signed = np.array([[-3, 0, 127], [1, -128, -1]])
cases = {'<f4': np.array([[0.1, -2.5, 1e-8], [3.25, 7, -0.0]]), '<f8': np.array([[0.1, -2.5, 1e-300], [3.25, 7, 2**60]]),
         '<i8': np.array([[-3, 2**53 - 1, -2**53 + 1], [0, 5, -1]]), '<i4': signed * 1000000, '<i2': signed * 200, '|i1': signed,
         '<u8': np.array([[0, 2**53 - 1, 5], [7, 1, 2**40]], dtype='u8'), '<u4': np.abs(signed) * 33000000, '<u2': np.abs(signed) * 500, '|u1': np.abs(signed) * 2,
         '|b1': np.array([[True, False, True], [False, False, True]])}
out = []
for descr, values in cases.items():
    a = values.astype(descr)
    name = 'x' + str(len(out)) + '.npy'
    np.save(d + '/' + name, a)
    out.append([name, descr, list(a.shape), a.astype('f8').ravel().tolist()])
for version in [(2, 0), (3, 0)]:
    a = cases['<f4'].astype('<f4')
    name = 'v%d.npy' % version[0]
    with open(d + '/' + name, 'wb') as f: np.lib.format.write_array(f, a, version=version)
    out.append([name, '<f4', list(a.shape), a.astype('f8').ravel().tolist()])
print(json.dumps(out))`;
  const written = spawnSync('/usr/bin/python3', ['-c', script, dir], { encoding: 'utf8' });
  if (written.status !== 0 && !process.env.CONVERGE_REQUIRE_NUMPY) return t.skip('numpy is not installed');
  assert.equal(written.status, 0, written.stderr);
  const files = JSON.parse(written.stdout) as [string, string, number[], number[]][];
  assert.equal(files.length, 13);
  for (const [name, descr, shape, values] of files) {
    const read = parseNpy(readFileSync(join(dir, name)), name);
    assert.deepEqual([read.dtype, read.shape, [...read.values]], [descr, shape, values], name);
  }
  // formatNpy's files, 1-D, 2-D and 3-D, float32 and float64: numpy loads the same shape, dtype and values
  const ours = [[Float32Array.of(1.5, -2, 1e-8), [3]], [Float64Array.of(0.1, 2, 3, 4, 5, 6), [2, 3]], [Float32Array.of(1, 2, 3, 4), [1, 2, 2]]] as const;
  ours.forEach(([values, shape], i) => {
    const bytes = formatNpy(values, shape);
    assert.equal((10 + bytes.readUInt16LE(8)) % 64, 0, 'the data starts on a 64-byte boundary, as numpy aligns it');
    writeFileSync(join(dir, `ours${i}.npy`), bytes);
  });
  const loaded = spawnSync('/usr/bin/python3', ['-c', `import numpy as np, json, sys, io
def saved(a):
    f = io.BytesIO()
    np.save(f, a)
    return f.getvalue().hex()
arrays = [np.load(sys.argv[1] + '/ours%d.npy' % i) for i in range(3)]
print(json.dumps([[list(a.shape), a.dtype.str, a.astype('f8').ravel().tolist(), saved(a)] for a in arrays]))`, dir], { encoding: 'utf8' });
  assert.equal(loaded.status, 0, loaded.stderr);
  const seen = JSON.parse(loaded.stdout) as [number[], string, number[], string][];
  assert.deepEqual(seen.map((a) => a.slice(0, 3)), ours.map(([values, shape]) => [shape, values instanceof Float32Array ? '<f4' : '<f8', [...values]]));
  // and byte for byte what numpy.save writes of the same array
  ours.forEach(([values, shape], i) => assert.equal(formatNpy(values, shape).toString('hex'), seen[i][3], `ours${i}.npy`));
});

test('NPY: each damaged header is refused in one line naming the file and what to do', () => {
  const versioned = (major: number) => {
    const file = npy('<f4', '(1,)', Buffer.alloc(4));
    file[6] = major;
    return file;
  };
  assert.throws(() => parseNpy(versioned(4), 'v.npy'), /^ConvergeError: v\.npy: has \.npy format version 4\.0; converge reads versions 1 to 3$/);
  assert.throws(() => parseNpy(versioned(0), 'v.npy'), /has \.npy format version 0\.0/);
  const short = npy('<f4', '(1,)', Buffer.alloc(0)).subarray(0, 40);
  assert.throws(() => parseNpy(short, 's.npy'), /s\.npy: ends inside its header/);
  assert.throws(() => parseNpy(Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0]), 'm.npy'), /m\.npy: is not a \.npy file/, 'shorter than a header');
  assert.throws(() => parseNpy(npy('<f4', '[1]', Buffer.alloc(4)), 'k.npy'), /k\.npy: has a header without descr, fortran_order or shape: \{'descr': '<f4', 'fortran_order': False, 'shape': \[1\], \}/);
  assert.throws(() => parseNpy(npy('<f4', '(2, -1)', Buffer.alloc(4)), 'n.npy'), /n\.npy: has shape \(2, -1\)/);
  assert.throws(() => parseNpy(npy('<f4', '(1.5,)', Buffer.alloc(4)), 'n.npy'), /has shape \(1\.5,\)/);
  // '=' is the machine's order, little-endian on every machine converge runs on; a scalar's shape () holds one value
  assert.deepEqual([...parseNpy(npy('=f4', '()', Buffer.from(Float32Array.of(2.5).buffer)), 'e.npy').values], [2.5]);
  // a float32 payload that does not start on a 4-byte boundary is read value by value, to the same values
  const file = npy('<f4', '(2,)', Buffer.from(Float32Array.of(0.1, -3).buffer));
  const odd = new Uint8Array(file.length + 1).subarray(1);
  odd.set(file);
  assert.deepEqual([...parseNpy(odd, 'o.npy').values], [Math.fround(0.1), -3]);
});

test('NPY at its edges: an empty array, a version 2 header past 64 KiB, a magic wrong in one byte, a file of the magic alone', () => {
  const empty = parseNpy(npy('<f4', '(0, 3)', Buffer.alloc(0)), 'e.npy');
  assert.deepEqual([empty.shape, empty.values.length], [[0, 3], 0]);
  // numpy writes version 2 when the header passes 65,535 bytes: its length is a 32-bit field
  const dict = `{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }`;
  const header = Buffer.from(dict + ' '.repeat(70_000 - dict.length - 1) + '\n', 'latin1');
  const head = Buffer.alloc(12);
  Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 2, 0]).copy(head);
  head.writeUInt32LE(header.length, 8);
  const big = parseNpy(Buffer.concat([head, header, Buffer.from(Float32Array.of(1.5, -2).buffer)]), 'v2.npy');
  assert.deepEqual([big.shape, [...big.values]], [[2], [1.5, -2]]);
  const wrong = npy('<f4', '(1,)', Buffer.alloc(4));
  wrong[5] = 0x5a; // \x93NUMPZ
  assert.throws(() => parseNpy(wrong, 'w.npy'), /^ConvergeError: w\.npy: is not a \.npy file \(no \\x93NUMPY magic\); write it with numpy\.save/);
  const magicOnly = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, 0, 0]);
  assert.throws(() => parseNpy(magicOnly, 'm.npy'), /^ConvergeError: m\.npy: has a header without descr, fortran_order or shape: ; write it with numpy\.save/);
});

test('arrays in memory: a data set of float features, with a held-out split, and shapes checked', () => {
  const x = Float32Array.from({ length: 40 }, (_, i) => i / 10);
  const data = datasetFromArrays({ x, y: Array.from({ length: 20 }, (_, i) => i % 2), name: 'mine' });
  assert.equal(data.classes, 2);
  assert.equal(data.train.count + data.test.count, 20);
  assert.ok(data.train.images instanceof Float32Array && data.train.images.buffer instanceof SharedArrayBuffer);
  assert.throws(() => datasetFromArrays({ x, y: [1, 2, 3] }), /arrays \(train\): has 40 feature values for 3 samples/);
  const regression = datasetFromArrays({ x, y: Array.from({ length: 20 }, (_, i) => i / 3) });
  assert.equal(regression.task, 'regression');
  assert.equal(regression.train.targets!.length, regression.train.count);
});

test('arrays in memory: a given test set is kept whole and coded with the training set\'s classes; a held-out split keeps each row whole and each class its tenth', () => {
  // each row's features and targets say which row they are, so a split is checked row by row against the arrays given
  const d = 3;
  const rowOf = (count: number) => Float32Array.from({ length: count * d }, (_, k) => 10 * Math.floor(k / d) + (k % d));
  // classes 9 < 10 < 100: sorted as numbers, not as strings ("10" < "100" < "9")
  const y = Array.from({ length: 30 }, (_, i) => [10, 9, 100][i % 3]);
  const given = datasetFromArrays({ x: rowOf(30), y, test: { x: rowOf(4), y: [100, 9, 9, 10] }, name: 'mine' });
  assert.equal(given.classes, 3);
  assert.equal(given.describe, 'arrays: 3 features, 3 classes');
  assert.equal(given.split, 'test set mine (test)');
  assert.equal(given.train.count, 30);
  assert.deepEqual([...given.train.labels.slice(0, 3)], [1, 0, 2]);
  assert.deepEqual([...given.test.labels], [2, 0, 0, 1]);
  assert.deepEqual(given.test.images, rowOf(4));
  assert.ok(given.test.images.buffer instanceof SharedArrayBuffer && given.test.labels.buffer instanceof SharedArrayBuffer);
  // the test set's own classes (3 of them here: 9, 10, 100) are renamed to the training set's codes, even when it lacks one
  assert.deepEqual([...datasetFromArrays({ x: rowOf(30), y, test: { x: rowOf(2), y: [100, 100] } }).test.labels], [2, 2]);
  assert.throws(() => datasetFromArrays({ x: rowOf(30), y, test: { x: rowOf(2), y: [9, 11] }, name: 'mine' }), /^ConvergeError: mine \(test\): holds class '11', which the training set does not; the test set's classes must be among the training set's$/);
  assert.throws(() => datasetFromArrays({ x: rowOf(30), y, test: { x: rowOf(2).subarray(1), y: [9, 10] }, shape: [3], name: 'mine' }), /^ConvergeError: mine \(test\): has 5 feature values for 2 samples; give 2 × \[3\] values, or the right shape$/);
  assert.throws(() => datasetFromArrays({ x: rowOf(30), y, test: { x: new Float32Array(4), y: [9, 10] }, name: 'mine' }), /^ConvergeError: mine \(test\): has samples of shape \[2\]; the training set's are \[3\]$/);

  // a held-out split: classes 30, 30 and 40 strong give the test set 3, 3 and 4, every row whole and labelled as its own
  const unequal = Array.from({ length: 100 }, (_, i) => (i < 30 ? 5 : i < 60 ? 6 : 7));
  for (const seed of [1, 2, 3]) {
    const held = datasetFromArrays({ x: rowOf(100), y: unequal, seed });
    assert.equal(held.split, `test set: a seeded, stratified 10% of arrays (seed ${seed}; --test-dataset to give one)`);
    const rows: number[] = [];
    for (const part of [held.train, held.test]) {
      for (let i = 0; i < part.count; i++) {
        const r = part.images[i * d] / 10;
        assert.deepEqual([...part.images.subarray(i * d, (i + 1) * d)], [10 * r, 10 * r + 1, 10 * r + 2]);
        assert.equal(part.labels[i], unequal[r] - 5);
        rows.push(r);
      }
    }
    assert.deepEqual(rows.sort((a, b) => a - b), Array.from({ length: 100 }, (_, i) => i));
    assert.deepEqual([0, 1, 2].map((c) => held.test.labels.filter((l) => l === c).length), [3, 3, 4]);
  }
  const seeded = (seed?: number) => [...datasetFromArrays({ x: rowOf(100), y: unequal, seed }).test.images];
  assert.deepEqual(seeded(), seeded(1));
  assert.notDeepEqual(seeded(1), seeded(2));

  // two regression targets a sample: each row's pair travels with its features
  const targets = Array.from({ length: 40 }, (_, k) => Math.floor(k / 2) + (k % 2) / 4);
  const two = datasetFromArrays({ x: rowOf(20), y: targets, targets: 2 });
  assert.equal(two.task, 'regression');
  assert.equal(two.classes, 2);
  assert.equal(two.describe, 'arrays: 3 features, 2 regression targets');
  assert.equal(two.train.count + two.test.count, 20);
  for (const part of [two.train, two.test]) {
    for (let i = 0; i < part.count; i++) {
      const r = part.images[i * d] / 10;
      assert.deepEqual([...part.targets!.subarray(2 * i, 2 * i + 2)], [r, r + 0.25]);
    }
  }
  assert.equal(datasetFromArrays({ x: rowOf(20), y: targets.slice(0, 20).map((v) => v + 0.5) }).describe, 'arrays: 3 features, 1 regression target');
  const kept = datasetFromArrays({ x: rowOf(20), y: targets, targets: 2, test: { x: rowOf(2), y: [7.5, 8, 9, 9.5] } });
  assert.deepEqual([...kept.test.targets!], [7.5, 8, 9, 9.5]);
  assert.equal(kept.train.targets!.length, 40);
  assert.throws(() => datasetFromArrays({ x: rowOf(20), y: targets.slice(0, 39), targets: 2, name: 'mine' }), /^ConvergeError: mine \(train\): has 39 labels; give 2 per sample$/);
  assert.throws(() => datasetFromArrays({ x: [], y: [] }), /^ConvergeError: arrays \(train\): has 0 labels; give 1 per sample$/);
  assert.throws(() => datasetFromArrays({ x: rowOf(20), y: targets, targets: 2, shape: [2] }), /^ConvergeError: arrays \(train\): has 60 feature values for 20 samples; give 20 × \[2\] values, or the right shape$/);
  assert.throws(() => datasetFromArrays({ x: rowOf(2).subarray(1), y: [0, 1] }), /has 5 feature values for 2 samples/);
});

test('labels: up to 100 distinct integers are classes by default, 101 a regression target; several columns cannot be classes', () => {
  const hundred = Float64Array.from({ length: 200 }, (_, i) => i % 100);
  assert.equal(encodeLabels({ numbers: hundred, width: 1 }, 'f', 'auto').task, 'classification');
  assert.equal(encodeLabels({ numbers: Float64Array.from({ length: 202 }, (_, i) => i % 101), width: 1 }, 'f', 'auto').task, 'regression');
  assert.equal(encodeLabels({ numbers: Float64Array.of(1, 2, 3, 4), width: 2 }, 'f', 'auto').task, 'regression');
  const pairs = encodeLabels({ numbers: Float64Array.of(1, 2, 3, 4), width: 2 }, 'f', 'auto');
  assert.equal(pairs.codes.length, 2);
  assert.deepEqual([...pairs.targets!], [1, 2, 3, 4]);
  assert.throws(() => encodeLabels({ numbers: Float64Array.of(1, 2, 3, 4), width: 2 }, 'f.csv', 'classification'), /^ConvergeError: f\.csv: its labels have 2 columns; a classifier takes one class label per sample; use --task regression for several targets$/);
  assert.throws(() => encodeLabels({ numbers: Float64Array.of(1, 2.5), width: 1 }, 'f.csv', 'classification'), /^ConvergeError: f\.csv: label 2\.5 is not a class \(an integer\); leave --task out \(or give --task regression\) to fit it as a number$/);
  assert.throws(() => encodeLabels({ names: ['a'], width: 1 }, 'f.csv', 'regression'), /^ConvergeError: f\.csv: its label column holds names, not numbers; a regression target must be numeric; leave --task out to train a classifier$/);
});

test('CSV and NPY files read from disk are what their bytes parse to; a missing one is named, with what to do', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-files-'));
  const csv = join(dir, 'data.csv');
  writeFileSync(csv, 'a,b,label\n1,2,x\n3,4.5,y\n');
  const read = readCsv(csv, { labelColumn: 'label' });
  assert.deepEqual(Array.from(read.features), [1, 2, 3, 4.5]);
  assert.deepEqual(read, parseCsv(readFileSync(csv), csv, { labelColumn: 'label' }));
  const npy = join(dir, 'x.npy');
  writeFileSync(npy, formatNpy(Float32Array.of(1, 2, 3, 4, 5, 6), [2, 3]));
  assert.deepEqual(readNpy(npy), { shape: [2, 3], dtype: '<f4', values: Float64Array.of(1, 2, 3, 4, 5, 6) });
  assert.throws(() => readCsv(join(dir, 'none.csv')), (error: Error) => error.message === `CSV file not found at ${join(dir, 'none.csv')}; check the --dataset / --test-dataset path.`);
  assert.throws(() => readNpy(join(dir, 'none.npy')), (error: Error) => error.message === `.npy file not found at ${join(dir, 'none.npy')}; check the path (a folder of NPY data holds train_x.npy and train_y.npy, and optionally test_x.npy and test_y.npy).`);
});
