// A heat map as a PNG, written by hand (zlib's deflate and CRC-32 are all the format needs): one
// pixel per cell, coloured by viridis between the values' minimum and maximum. A study's field
// of a thousand cells at twenty timesteps is one small image, where a chart of one mark per cell
// would weigh megabytes.

import { crc32, deflateSync } from 'node:zlib';

// viridis at 0, 1/8, …, 1 (matplotlib's), interpolated linearly between
const VIRIDIS = [[68, 1, 84], [71, 44, 122], [59, 81, 139], [44, 113, 142], [33, 144, 141], [39, 173, 129], [92, 200, 99], [170, 220, 50], [253, 231, 37]];

/** The colour of t in [0, 1]. */
export function viridis(t: number): [number, number, number] {
  const x = Math.min(1, Math.max(0, Number.isFinite(t) ? t : 0)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(x));
  const f = x - i;
  return [0, 1, 2].map((c) => Math.round(VIRIDIS[i][c] + f * (VIRIDIS[i + 1][c] - VIRIDIS[i][c]))) as [number, number, number];
}

function chunk(type: string, data: Buffer): Buffer {
  const out = Buffer.alloc(12 + data.length);
  out.writeUInt32BE(data.length, 0);
  out.write(type, 4, 'latin1');
  data.copy(out, 8);
  out.writeUInt32BE(crc32(out.subarray(4, 8 + data.length)), 8 + data.length);
  return out;
}

/** `values` (rows × cols, row-major) as an 8-bit RGB PNG; NaN cells are grey. Returns the image and the range coloured. */
export function heatmapPng(values: ArrayLike<number>, rows: number, cols: number): { png: Buffer; min: number; max: number } {
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < rows * cols; i++) {
    if (Number.isFinite(values[i])) {
      min = Math.min(min, values[i]);
      max = Math.max(max, values[i]);
    }
  }
  const span = max > min ? max - min : 1;
  const raw = Buffer.alloc(rows * (1 + 3 * cols));
  for (let r = 0; r < rows; r++) {
    const at = r * (1 + 3 * cols); // each row starts with its filter byte (0: none)
    for (let c = 0; c < cols; c++) {
      const v = values[r * cols + c];
      const rgb = Number.isFinite(v) ? viridis((v - min) / span) : [128, 128, 128];
      raw.set(rgb, at + 1 + 3 * c);
    }
  }
  const header = Buffer.alloc(13);
  header.writeUInt32BE(cols, 0);
  header.writeUInt32BE(rows, 4);
  header.set([8, 2, 0, 0, 0], 8); // 8 bits, RGB, deflate, no filter, no interlace
  const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', header), chunk('IDAT', deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
  return { png, min, max };
}
