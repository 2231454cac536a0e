// CSV, NPY and in-memory arrays: what they read, each bad input's one-line error, and the work
// of a parse growing with the file, not faster.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseCsv } from './csv.js';
import { formatNpy, parseNpy } from './npy.js';
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
