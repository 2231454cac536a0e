// The CIFAR-10 reader, on files the test writes in the binary format (the real data set cannot
// be fetched here): records, planes, labels, errors, and a CNN that learns from them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Random } from '../tensor/random.js';
import { isCifarFolder, loadCifar10, readCifarBatches } from './cifar.js';
import { makeBatcher } from './batches.js';

/** `count` records: class k's image is its own prototype (one bright plane region per class) plus noise. */
function batchFile(path: string, count: number, random: Random): number[] {
  const record = 1 + 3072;
  const bytes = Buffer.alloc(count * record);
  const labels: number[] = [];
  for (let r = 0; r < count; r++) {
    const label = random.below(10);
    labels.push(label);
    bytes[r * record] = label;
    for (let c = 0; c < 3; c++) {
      for (let y = 0; y < 32; y++) {
        for (let x = 0; x < 32; x++) {
          const lit = (label % 3 === c && Math.floor(y / 11) === Math.floor(label / 3) % 3) || (label === 9 && x < 8);
          bytes[r * record + 1 + c * 1024 + y * 32 + x] = Math.max(0, Math.min(255, (lit ? 200 : 40) + Math.round(30 * random.normal())));
        }
      }
    }
  }
  writeFileSync(path, bytes);
  return labels;
}

test('CIFAR-10 binary batches: records in order across files, planes as written, labels; wrong lengths and labels refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-cifar-'));
  const random = new Random(3);
  const first = batchFile(join(dir, 'data_batch_1.bin'), 7, random);
  const second = batchFile(join(dir, 'data_batch_2.bin'), 5, random);
  const held = batchFile(join(dir, 'test_batch.bin'), 4, random);
  const data = loadCifar10(dir);
  assert.deepEqual(data.shape, [3, 32, 32]);
  assert.equal(data.train.count, 12);
  assert.deepEqual([...data.train.labels], [...first, ...second]);
  assert.deepEqual([...data.test.labels], held);
  // the images are the files' records without their label bytes, in file order: cut out of the bytes written here
  const written = ['data_batch_1.bin', 'data_batch_2.bin'].map((name) => readFileSync(join(dir, name)));
  const records = written.flatMap((bytes) => Array.from({ length: bytes.length / 3073 }, (_, r) => bytes.subarray(r * 3073 + 1, (r + 1) * 3073)));
  assert.ok(Buffer.from(data.train.images).equals(Buffer.concat(records)), 'the training images are the records\' bytes');
  // record 8 (the second file's first), green plane, row 5, column 6
  const byte = written[1][1 + 1024 + 5 * 32 + 6];
  assert.equal(data.train.images[7 * 3072 + 1024 + 5 * 32 + 6], byte);
  // batches scale the bytes to [0, 1], channel-planar as the convolutions read them
  const batch = makeBatcher(data, 'train', 12).range(7, 1);
  assert.equal('x' in batch && batch.x[1024 + 5 * 32 + 6], Math.fround(byte / 255));
  assert.equal(isCifarFolder(dir), true);
  assert.equal(isCifarFolder(tmpdir()), false);
  writeFileSync(join(dir, 'short.bin'), Buffer.alloc(3072));
  assert.throws(() => readCifarBatches([join(dir, 'short.bin')]), /short\.bin: is 3072 bytes, not a whole number of 3073-byte records .*binary version of CIFAR-10/);
  const bad = Buffer.alloc(3073);
  bad[0] = 12;
  writeFileSync(join(dir, 'bad.bin'), bad);
  assert.throws(() => readCifarBatches([join(dir, 'bad.bin')]), /bad\.bin: record 1: has label 12, not one of the 10 classes/);
  writeFileSync(join(dir, 'empty.bin'), Buffer.alloc(0));
  assert.throws(() => readCifarBatches([join(dir, 'empty.bin')]), /empty\.bin: is 0 bytes, not a whole number of 3073-byte records/);
  // label 9 is a class; a folder without training batches, or without the test batch, is named with what it lacks
  const nine = Buffer.alloc(3073);
  nine[0] = 9;
  writeFileSync(join(dir, 'nine.bin'), nine);
  assert.deepEqual([...readCifarBatches([join(dir, 'nine.bin')]).labels], [9]);
  const lacking = mkdtempSync(join(tmpdir(), 'converge-cifar-'));
  assert.throws(() => loadCifar10(lacking), /CIFAR-10 training batches \(data_batch_1\.bin …\) not found at .*; give the folder of the binary version of CIFAR-10\./);
  writeFileSync(join(lacking, 'data_batch_1.bin'), nine);
  assert.throws(() => loadCifar10(lacking), /CIFAR-10 test batch \(test_batch\.bin\) not found at .*; give the folder of the binary version of CIFAR-10\.$/);
});

test('CIFAR-10 folders: every data_batch_N.bin in the order of N and nothing else; a folder with only its test batch is one (and says what it lacks); label 10 refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-cifar-'));
  const record = (label: number) => Buffer.concat([Buffer.of(label), Buffer.alloc(3072, label)]);
  assert.equal(isCifarFolder(dir), false);
  writeFileSync(join(dir, 'test_batch.bin'), record(0));
  assert.equal(isCifarFolder(dir), true);
  assert.throws(() => loadCifar10(dir), /CIFAR-10 training batches \(data_batch_1\.bin …\) not found/);
  for (const n of [10, 2, 1, 9]) writeFileSync(join(dir, `data_batch_${n}.bin`), record(n % 10));
  for (const other of ['data_batch_3.bin.bak', 'xdata_batch_4.bin', 'data_batch_.bin', 'data_batch_5.binx']) writeFileSync(join(dir, other), record(5));
  const data = loadCifar10(dir);
  assert.deepEqual([...data.train.labels], [1, 2, 9, 0]);
  assert.equal(data.describe, 'CIFAR-10 binary batches (4 training files)');
  writeFileSync(join(dir, 'ten.bin'), record(10));
  assert.throws(() => readCifarBatches([join(dir, 'ten.bin')]), /^ConvergeError: .*ten\.bin: record 1: has label 10, not one of the 10 classes; the file is damaged or not CIFAR-10$/);
});

test('a CIFAR-10 folder trains the CNN from the CLI (3×32×32 images)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-cifar-train-'));
  const random = new Random(4);
  batchFile(join(dir, 'data_batch_1.bin'), 600, random);
  batchFile(join(dir, 'test_batch.bin'), 200, random);
  const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  const run = spawnSync(process.execPath, [cli, 'train', '--dataset', dir, '--model', 'cnn', '--workers', '2', '--epochs', '2', '--batch', '16'], { encoding: 'utf8' });
  assert.equal(run.status, 0, run.stderr);
  assert.match(run.stderr, /\(600 train \/ 200 test; CIFAR-10 binary batches \(1 training files\)\)/);
  const accuracy = Number(/test accuracy ([\d.]+)%/.exec(run.stdout)![1]);
  assert.ok(accuracy > 50, `accuracy ${accuracy}% (chance is 10%)`);
});
