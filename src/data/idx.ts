// The IDX format of MNIST and Fashion-MNIST (gzipped or raw): two zero bytes, a type byte
// (0x08 = unsigned byte), the number of dimensions, then each dimension as a big-endian int32.

import { readFileSync, existsSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';
import { corruptFile, missingData } from '../errors.js';

export interface IdxArray {
  shape: number[];
  data: Uint8Array;
}

const HINT = 'download it again or point --data-dir at an intact copy';

export function parseIdx(bytes: Uint8Array, path: string): IdxArray {
  if (bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = gunzipSync(bytes);
    } catch (error) {
      throw corruptFile(path, `gzip data is damaged (${(error as Error).message})`, HINT);
    }
  }
  if (bytes.length < 4 || bytes[0] !== 0 || bytes[1] !== 0) {
    const got = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
    throw corruptFile(path, `not an IDX file (magic bytes ${got || 'missing'}, expected 00 00 08 0N)`, HINT);
  }
  if (bytes[2] !== 0x08) throw corruptFile(path, `IDX element type 0x${bytes[2].toString(16)} is not unsigned byte (0x08)`, 'converge reads 8-bit IDX files');
  const dims = bytes[3];
  if (dims < 1 || dims > 4) throw corruptFile(path, `IDX header claims ${dims} dimensions`, HINT);
  const headerSize = 4 + 4 * dims;
  if (bytes.length < headerSize) throw corruptFile(path, `truncated in its header (${bytes.length} bytes)`, HINT);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape: number[] = [];
  for (let i = 0; i < dims; i++) shape.push(view.getUint32(4 + 4 * i, false));
  const count = shape.reduce((a, b) => a * b, 1);
  const available = bytes.length - headerSize;
  if (available < count) {
    throw corruptFile(path, `truncated: header promises ${count} bytes of data for shape [${shape.join(', ')}], file holds ${available}`, HINT);
  }
  return { shape, data: bytes.subarray(headerSize, headerSize + count) };
}

export function readIdx(path: string): IdxArray {
  if (!existsSync(path)) throw missingData('IDX file', path, 'check --data-dir (for Fashion-MNIST: apt-get install dataset-fashion-mnist).');
  return parseIdx(readFileSync(path), path);
}

/** Writes an IDX file's bytes (for tests and for converting data sets). */
export function encodeIdx(shape: readonly number[], data: Uint8Array): Uint8Array {
  const header = new Uint8Array(4 + 4 * shape.length);
  header[2] = 0x08;
  header[3] = shape.length;
  const view = new DataView(header.buffer);
  shape.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const out = new Uint8Array(header.length + data.length);
  out.set(header);
  out.set(data, header.length);
  return out;
}
