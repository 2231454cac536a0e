// CSV and TSV files with a header line: every column numeric (float32 features) except perhaps
// the label column, which may hold class names. One pass over the bytes; errors name file, line
// and column.

import { existsSync, readFileSync } from 'node:fs';
import { corruptFile, missingData } from '../errors.js';
import type { DenseArrays } from './dense.js';
import { CHAR, Growing, Scanner } from './text-scan.js';

/** Column names tried, in order, when --label-column is not given; else the last column. */
const LABEL_NAMES = ['label', 'target', 'class', 'y'];

export interface CsvOptions {
  /** The label column's name, or its 0-based index; default: label/target/class/y, else the last column. */
  labelColumn?: string;
}

/** A CR ends a line only before LF or at the file's end (old Mac files, CR alone, are not read). */
const LONE_CR = 'a carriage return (CR) inside the row, not before its line feed';
const HINT = 'fix that line: every row has one number per column of the header (the label column may hold names)';

export function parseCsv(bytes: Uint8Array, path: string, options: CsvOptions = {}): DenseArrays & { header: string[]; labelColumn: string; scanned: number } {
  const separator = /\.(tsv|tab)$/i.test(path) ? CHAR.tab : CHAR.comma;
  const scan = new Scanner(bytes);
  const end = bytes.length;
  let lineNumber = 0;
  /** The fields of one line as text (the header, and label names). */
  const fieldEnd = (p: number) => {
    while (p < end && bytes[p] !== separator && bytes[p] !== CHAR.newline && bytes[p] !== CHAR.cr) p++;
    return p;
  };
  const unquote = (text: string) => text.trim().replace(/^"(.*)"$/, '$1');
  /** Skips spaces (and tabs, unless they separate fields). */
  const skipSpaces = () => {
    let p = scan.position;
    while (p < end && (bytes[p] === CHAR.space || (bytes[p] === CHAR.tab && separator !== CHAR.tab) || (bytes[p] === CHAR.cr && p + 1 < end && bytes[p + 1] === CHAR.newline) || (bytes[p] === CHAR.cr && p + 1 === end))) p++;
    scan.scanned += p - scan.position;
    scan.position = p;
  };
  // the header: the first line that is not blank
  let header: string[] = [];
  while (scan.position < end && header.length === 0) {
    lineNumber++;
    const start = scan.position;
    scan.nextLine();
    const text = Buffer.from(bytes.subarray(start, scan.position)).toString('utf8').replace(/\r?\n$/, '');
    if (text.trim() !== '') header = text.split(String.fromCharCode(separator)).map(unquote);
  }
  if (header.length < 2) throw corruptFile(path, header.length === 0 ? 'is empty' : 'has a header of one column', 'a CSV file needs a header line naming its feature columns and its label column');
  const asked = options.labelColumn;
  let label = asked === undefined ? header.findIndex((name) => LABEL_NAMES.includes(name.toLowerCase())) : header.indexOf(asked);
  if (asked === undefined && label === -1) label = header.length - 1;
  if (label === -1 && asked !== undefined && /^\d+$/.test(asked) && Number(asked) < header.length) label = Number(asked);
  if (label === -1) throw corruptFile(path, `has no column '${asked}'`, `its columns are ${header.join(', ')}; give --label-column one of them (or its 0-based index)`);
  const columns = header.length;
  const features = new Growing(new Float32Array(1 << 16));
  const numbers = new Growing(new Float64Array(1024));
  const names: string[] = [];
  let numeric = true;
  let count = 0;
  while (scan.position < end) {
    lineNumber++;
    const lineStart = scan.position;
    const where = (at: number) => `${path}:${lineNumber}:${at - lineStart + 1}`;
    skipSpaces();
    if (scan.position >= end || bytes[scan.position] === CHAR.newline) {
      scan.nextLine();
      continue;
    }
    scan.position = lineStart;
    for (let column = 0; column < columns; column++) {
      skipSpaces();
      const at = scan.position;
      if (column === label) {
        const stop = fieldEnd(at);
        const text = unquote(Buffer.from(bytes.subarray(at, stop)).toString('utf8'));
        scan.scanned += stop - at;
        if (text === '') throw corruptFile(where(at), `the label (column '${header[column]}') is empty`, HINT);
        const value = Number(text);
        if (numeric && Number.isFinite(value)) numbers.push(value);
        else {
          if (numeric && count > 0) throw corruptFile(where(at), `label '${text}' is not a number, where the rows before had numbers`, HINT);
          numeric = false;
          names.push(text);
        }
        scan.position = stop;
      } else {
        if (!scan.number() || !Number.isFinite(scan.value)) {
          const stop = fieldEnd(at);
          const text = Buffer.from(bytes.subarray(at, stop)).toString('utf8').trim();
          throw corruptFile(where(at), text === '' ? `column '${header[column]}' is empty (a missing value)` : `'${text}' in column '${header[column]}' is not a number`, HINT);
        }
        features.push(scan.value);
      }
      skipSpaces();
      const next = bytes[scan.position];
      if (next === CHAR.cr) throw corruptFile(where(scan.position), LONE_CR, HINT);
      if (column + 1 < columns) {
        if (next !== separator) {
          if (scan.position >= end || next === CHAR.newline) throw corruptFile(where(scan.position), `the row has ${column + 1} fields, the header ${columns}`, HINT);
          throw corruptFile(where(at), `'${scan.tokenAt(at, separator)}' in column '${header[column]}' is not a number`, HINT);
        }
        scan.position++;
      } else if (scan.position < end && next !== CHAR.newline) {
        throw corruptFile(where(scan.position), next === separator ? `the row has more fields than the header's ${columns}` : `unexpected '${scan.tokenAt(scan.position, separator)}' after the last field`, HINT);
      }
    }
    count++;
    scan.nextLine();
  }
  if (count === 0) throw corruptFile(path, 'has a header but no rows', HINT);
  return {
    features: features.values(), shape: [columns - 1], count, header, labelColumn: header[label], scanned: scan.scanned,
    labels: numeric ? { numbers: numbers.values(), width: 1 } : { names, width: 1 },
  };
}

export function readCsv(path: string, options: CsvOptions = {}): ReturnType<typeof parseCsv> {
  if (!existsSync(path)) throw missingData('CSV file', path, 'check the --dataset / --test-dataset path.');
  return parseCsv(readFileSync(path), path, options);
}
