// CIFAR-10's binary format (the "binary version" of the data set): data_batch_1.bin …
// data_batch_5.bin and test_batch.bin, each record one label byte then 3×32×32 bytes (the red,
// green and blue planes, row by row). batches.meta.txt, when there, names the classes.

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { corruptFile, missingData } from '../errors.js';
import type { ImageDataset, Split } from './dataset.js';

export const CIFAR_SHAPE = [3, 32, 32];
const RECORD = 1 + 3 * 32 * 32;

/** Whether a folder holds CIFAR-10 binary batches. */
export function isCifarFolder(dir: string): boolean {
  return existsSync(join(dir, 'data_batch_1.bin')) || existsSync(join(dir, 'test_batch.bin'));
}

/** The records of several batch files as one split, on shared memory. */
export function readCifarBatches(paths: string[], classes = 10): Split {
  const buffers = paths.map((path) => {
    const bytes = readFileSync(path);
    if (bytes.length === 0 || bytes.length % RECORD !== 0) {
      throw corruptFile(path, `is ${bytes.length} bytes, not a whole number of ${RECORD}-byte records (a label byte and a 3×32×32 image)`, 'is it the binary version of CIFAR-10 (not the Python or MATLAB one), and complete?');
    }
    return { path, bytes };
  });
  const count = buffers.reduce((n, b) => n + b.bytes.length / RECORD, 0);
  const images = new Uint8Array(new SharedArrayBuffer(count * (RECORD - 1)));
  const labels = new Uint8Array(new SharedArrayBuffer(count));
  let at = 0;
  for (const { path, bytes } of buffers) {
    for (let r = 0; r < bytes.length / RECORD; r++, at++) {
      const label = bytes[r * RECORD];
      if (label >= classes) throw corruptFile(`${path}: record ${r + 1}`, `has label ${label}, not one of the ${classes} classes`, 'the file is damaged or not CIFAR-10');
      labels[at] = label;
      images.set(bytes.subarray(r * RECORD + 1, (r + 1) * RECORD), at * (RECORD - 1));
    }
  }
  return { images, labels, count };
}

export function loadCifar10(dir: string): ImageDataset {
  // in the order of their numbers (data_batch_10 after data_batch_9, not after data_batch_1)
  const number = (f: string) => Number(/\d+/.exec(f)![0]);
  const trainFiles = readdirSync(dir).filter((f) => /^data_batch_\d+\.bin$/.test(f)).sort((a, b) => number(a) - number(b)).map((f) => join(dir, f));
  if (trainFiles.length === 0) throw missingData('CIFAR-10 training batches (data_batch_1.bin …)', dir, 'give the folder of the binary version of CIFAR-10.');
  const testPath = join(dir, 'test_batch.bin');
  if (!existsSync(testPath)) throw missingData('CIFAR-10 test batch (test_batch.bin)', dir, 'give the folder of the binary version of CIFAR-10.');
  return { kind: 'images', name: dir, shape: [...CIFAR_SHAPE], classes: 10, train: readCifarBatches(trainFiles), test: readCifarBatches([testPath]), describe: `CIFAR-10 binary batches (${trainFiles.length} training files)` };
}
