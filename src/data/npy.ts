// NumPy's .npy arrays (format versions 1–3): little-endian float32/float64, integer and boolean
// arrays in C order, read into float32 features or numeric labels. Writes float32 arrays too
// (for exported parameters and for tests).

import { existsSync, readFileSync } from 'node:fs';
import { corruptFile, missingData } from '../errors.js';

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

/** dtype → bytes per element and how to read one at a byte offset. */
const DTYPES: Record<string, { bytes: number; read: (view: DataView, at: number) => number }> = {
  '<f4': { bytes: 4, read: (v, at) => v.getFloat32(at, true) },
  '<f8': { bytes: 8, read: (v, at) => v.getFloat64(at, true) },
  '<i8': { bytes: 8, read: (v, at) => Number(v.getBigInt64(at, true)) },
  '<i4': { bytes: 4, read: (v, at) => v.getInt32(at, true) },
  '<i2': { bytes: 2, read: (v, at) => v.getInt16(at, true) },
  '|i1': { bytes: 1, read: (v, at) => v.getInt8(at) },
  '<u8': { bytes: 8, read: (v, at) => Number(v.getBigUint64(at, true)) },
  '<u4': { bytes: 4, read: (v, at) => v.getUint32(at, true) },
  '<u2': { bytes: 2, read: (v, at) => v.getUint16(at, true) },
  '|u1': { bytes: 1, read: (v, at) => v.getUint8(at) },
  '|b1': { bytes: 1, read: (v, at) => v.getUint8(at) },
};

export interface NpyArray {
  shape: number[];
  dtype: string;
  /** The values as float64 (exact for every dtype read but 64-bit integers beyond 2^53). */
  values: Float64Array;
}

export function parseNpy(bytes: Uint8Array, path: string): NpyArray {
  const hint = 'write it with numpy.save (a little-endian, C-order array of numbers)';
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) throw corruptFile(path, 'is not a .npy file (no \\x93NUMPY magic)', hint);
  const major = bytes[6];
  if (major < 1 || major > 3) throw corruptFile(path, `has .npy format version ${major}.${bytes[7]}`, 'converge reads versions 1 to 3');
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const headerLength = major === 1 ? view.getUint16(8, true) : view.getUint32(8, true);
  const start = major === 1 ? 10 : 12;
  if (start + headerLength > bytes.length) throw corruptFile(path, 'ends inside its header', hint);
  const header = Buffer.from(bytes.subarray(start, start + headerLength)).toString(major === 3 ? 'utf8' : 'latin1');
  const descr = /'descr'\s*:\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order'\s*:\s*(True|False)/.exec(header)?.[1];
  const shapeText = /'shape'\s*:\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shapeText === undefined) throw corruptFile(path, `has a header without descr, fortran_order or shape: ${header.trim()}`, hint);
  const dtype = DTYPES[descr.replace(/^=/, '<')];
  if (!dtype) throw corruptFile(path, `holds dtype '${descr}'`, `converge reads ${Object.keys(DTYPES).join(', ')} (little-endian); convert with array.astype('<f4')`);
  if (fortran === 'True') throw corruptFile(path, 'is in Fortran order', 'save a C-order array (numpy.ascontiguousarray(a))');
  const shape = shapeText.split(',').map((s) => s.trim()).filter((s) => s !== '').map(Number);
  if (shape.some((d) => !Number.isInteger(d) || d < 0)) throw corruptFile(path, `has shape (${shapeText})`, hint);
  const count = shape.reduce((a, b) => a * b, 1);
  const dataStart = start + headerLength;
  const expected = dataStart + count * dtype.bytes;
  if (bytes.length !== expected) throw corruptFile(path, `is ${bytes.length} bytes, where its header (${descr}, shape (${shape.join(', ')})) says ${expected}`, 'the file is truncated or padded; write it again');
  const values = new Float64Array(count);
  if (descr.endsWith('f4') && dataStart % 4 === 0 && bytes.byteOffset % 4 === 0) values.set(new Float32Array(bytes.buffer, bytes.byteOffset + dataStart, count));
  else for (let i = 0; i < count; i++) values[i] = dtype.read(view, dataStart + i * dtype.bytes);
  return { shape, dtype: descr, values };
}

export function readNpy(path: string): NpyArray {
  if (!existsSync(path)) throw missingData('.npy file', path, 'check the path (a folder of NPY data holds train_x.npy and train_y.npy, and optionally test_x.npy and test_y.npy).');
  return parseNpy(readFileSync(path), path);
}

/** A float32 or float64 array as .npy bytes (format 1.0), as numpy.save writes it. */
export function formatNpy(values: Float32Array | Float64Array, shape: readonly number[]): Buffer {
  const dict = `{'descr': '<f${values.BYTES_PER_ELEMENT}', 'fortran_order': False, 'shape': (${shape.join(', ')}${shape.length === 1 ? ',' : ''}), }`;
  // magic + version + length + header, padded with spaces and a newline to a multiple of 64
  const unpadded = 10 + dict.length + 1;
  const header = `${dict}${' '.repeat((64 - (unpadded % 64)) % 64)}\n`;
  const out = Buffer.alloc(10 + header.length + values.byteLength);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  out.writeUInt16LE(header.length, 8);
  out.write(header, 10, 'latin1');
  Buffer.from(values.buffer, values.byteOffset, values.byteLength).copy(out, 10 + header.length);
  return out;
}
