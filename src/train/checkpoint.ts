// Checkpoints: parameters, optimiser state, position (epoch, step) and the seed that makes the
// data order, in one binary file written atomically (temporary file, fsync, rename), with a
// CRC-32 over the payload so a damaged file is refused rather than half-loaded.
//
//   "CVGCKPT1" | uint32 LE header length | header JSON | float32 LE arrays, in header order

import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, writeSync, unlinkSync } from 'node:fs';
import { crc32 } from 'node:zlib';
import { checkpointMismatch, corruptFile, missingData } from '../errors.js';
import { Layout } from '../tensor/layout.js';
import type { TrainingState } from './loop.js';
import type { ParamPrecision } from '../tensor/precision.js';

const MAGIC = 'CVGCKPT1';

export interface CheckpointHeader {
  model: string;
  layout: string; // Layout.fingerprint()
  optimizer: string;
  arrays: { name: string; length: number }[]; // 'params' first, then optimiser state
  optimizerSteps: number;
  epoch: number;
  step: number;
  globalBatch: number; // lets a resume with another number of workers find its place
  seed: number;
  /** How the run stored its parameters (--param-precision); absent in checkpoints from before it was recorded. */
  paramPrecision?: ParamPrecision;
  crc32: number;
}

export interface Checkpoint {
  header: CheckpointHeader;
  state: TrainingState;
}

export function writeCheckpoint(path: string, state: TrainingState, meta: { model: string; layout: Layout; optimizer: string; globalBatch: number; seed: number; paramPrecision?: ParamPrecision }): void {
  const arrays = [{ name: 'params', data: state.params }, ...Object.entries(state.optimizerState).map(([name, data]) => ({ name, data }))];
  const payloads = arrays.map(({ data }) => new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  let crc = 0;
  for (const bytes of payloads) crc = crc32(bytes, crc);
  const header: CheckpointHeader = {
    model: meta.model, layout: meta.layout.fingerprint(), optimizer: meta.optimizer,
    arrays: arrays.map(({ name, data }) => ({ name, length: data.length })),
    optimizerSteps: state.optimizerSteps, epoch: state.epoch, step: state.step, globalBatch: meta.globalBatch, seed: meta.seed, paramPrecision: meta.paramPrecision, crc32: crc,
  };
  const headerBytes = Buffer.from(JSON.stringify(header));
  const prefix = Buffer.alloc(MAGIC.length + 4);
  prefix.write(MAGIC, 0, 'latin1');
  prefix.writeUInt32LE(headerBytes.length, MAGIC.length);
  const temporary = `${path}.tmp-${process.pid}`;
  const fd = openSync(temporary, 'w');
  try {
    writeSync(fd, prefix);
    writeSync(fd, headerBytes);
    // typed arrays are little-endian on every platform Node runs on
    for (const bytes of payloads) writeSync(fd, bytes);
    fsyncSync(fd);
  } catch (error) {
    closeSync(fd);
    unlinkSync(temporary);
    throw error;
  }
  closeSync(fd);
  renameSync(temporary, path);
}

export function readCheckpoint(path: string, model: string, layout: Layout): Checkpoint {
  return readWith(path, (header) => {
    if (header.model !== model || header.layout !== layout.fingerprint()) {
      throw checkpointMismatch(path, `holds model '${header.model}' (${header.layout}), not '${model}' (${layout.fingerprint()})`);
    }
    return layout;
  });
}

/** A checkpoint read without knowing its model: the layout comes from its header (for export). */
export function readCheckpointLayout(path: string): Checkpoint & { layout: Layout } {
  let layout: Layout | null = null;
  const checkpoint = readWith(path, (header) => {
    const specs = header.layout.split(';').filter(Boolean).map((entry) => {
      const match = /^(.*)\[([\dx]*)\]$/.exec(entry);
      if (!match) throw corruptFile(path, `has a layout entry '${entry}' that is not name[shape]`, 'the file is damaged; export another checkpoint');
      return { name: match[1], shape: match[2].split('x').map(Number) };
    });
    return (layout = new Layout(specs));
  });
  return { ...checkpoint, layout: layout! };
}

function readWith(path: string, layoutOf: (header: CheckpointHeader) => Layout): Checkpoint {
  if (!existsSync(path)) throw missingData('checkpoint', path, 'check the --resume path.');
  const bytes = readFileSync(path);
  const hint = 'the file is damaged; resume from another checkpoint or start without --resume';
  if (bytes.length < MAGIC.length + 4 || bytes.toString('latin1', 0, MAGIC.length) !== MAGIC) throw corruptFile(path, 'is not a converge checkpoint (bad magic)', hint);
  const headerLength = bytes.readUInt32LE(MAGIC.length);
  const headerStart = MAGIC.length + 4;
  if (headerStart + headerLength > bytes.length) throw corruptFile(path, 'is truncated in its header', hint);
  let header: CheckpointHeader;
  try {
    header = JSON.parse(bytes.toString('utf8', headerStart, headerStart + headerLength)) as CheckpointHeader;
  } catch {
    throw corruptFile(path, 'has an unreadable header', hint);
  }
  const layout = layoutOf(header);
  let offset = headerStart + headerLength;
  const expected = header.arrays.reduce((sum, a) => sum + 4 * a.length, 0);
  if (bytes.length - offset !== expected) throw corruptFile(path, `holds ${bytes.length - offset} payload bytes, header promises ${expected}`, hint);
  const arrays: Record<string, Float32Array> = {};
  let crc = 0;
  for (const { name, length } of header.arrays) {
    const copy = new Uint8Array(4 * length);
    copy.set(bytes.subarray(offset, offset + 4 * length));
    crc = crc32(copy, crc);
    arrays[name] = new Float32Array(copy.buffer);
    offset += 4 * length;
  }
  if (crc !== header.crc32) throw corruptFile(path, 'fails its CRC-32 check', hint);
  const { params, ...optimizerState } = arrays;
  if (!params || params.length !== layout.size) throw corruptFile(path, 'has no parameter array of the right size', hint);
  return {
    header,
    state: { params, optimizerState, optimizerSteps: header.optimizerSteps, epoch: header.epoch, step: header.step },
  };
}
