// The byte scanner under the CSV, libsvm and ratings readers, against the platform's own
// correctly rounded conversion: Number() of the same text is the oracle, for 20,000 random numbers
// in every notation the readers accept (signs, leading zeros, no integer or no fraction part,
// more digits than a double holds, exponents from tiny to absurd), and each helper's bookkeeping;
// and the CSV and libsvm readers against Python (its csv module, str.split, float()) on random
// files of those numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Random } from '../tensor/random.js';
import { parseCsv } from './csv.js';
import { parseLibsvm } from './sparse.js';
import { Growing, Scanner } from './text-scan.js';

const bytes = (text: string) => Buffer.from(text, 'latin1');

function randomNumber(random: Random): string {
  const digits = (n: number) => Array.from({ length: n }, () => String(random.below(10))).join('');
  const length = () => [0, 1, 1, 2, 3, 5, 8, 15, 16, 17, 22, 30][random.below(12)];
  const sign = ['', '', '-', '+'][random.below(4)];
  let whole = digits(length());
  if (random.below(4) === 0) whole = '0'.repeat(1 + random.below(20)) + whole; // leading zeros
  let fraction = random.below(3) === 0 ? null : digits(length());
  if (fraction !== null && random.below(4) === 0) fraction = '0'.repeat(1 + random.below(25)) + fraction;
  if (whole === '' && !fraction) whole = digits(1 + random.below(3));
  let text = `${sign}${whole}${fraction === null ? '' : `.${fraction}`}`;
  if (random.below(2) === 0) {
    const exponent = [random.below(10), random.below(30), random.below(400), random.below(100000), 10 ** 12][random.below(5)];
    text += `${random.below(2) ? 'e' : 'E'}${['', '-', '+'][random.below(3)]}${random.below(5) === 0 ? '00' : ''}${exponent}`;
  }
  return text;
}

/** What a Python script printed as JSON about the files it read; null where python3 is missing (CI, which sets CONVERGE_REQUIRE_NUMPY, must have it). */
function pythonReads<T>(script: string, paths: string[]): T | null {
  const python = spawnSync('/usr/bin/python3', ['-c', script, ...paths], { encoding: 'utf8', maxBuffer: 1 << 26 });
  if (python.status !== 0 && !process.env.CONVERGE_REQUIRE_NUMPY) return null;
  assert.equal(python.status, 0, python.stderr);
  return JSON.parse(python.stdout) as T;
}

/** A random number in any notation whose value a float32 holds without overflowing (features are float32). */
function float32Number(random: Random): string {
  for (;;) {
    const text = randomNumber(random);
    if (Math.abs(Number(text)) < 3e38) return text;
  }
}

test('a number is read as Number() reads its text, to the last bit, in 20,000 random notations; the scan stops after it', () => {
  const random = new Random(20);
  for (let k = 0; k < 20_000; k++) {
    const text = randomNumber(random);
    const scan = new Scanner(bytes(`${text},`));
    assert.equal(scan.number(), true, text);
    assert.ok(Object.is(scan.value, Number(text)), `${text}: read ${scan.value}, Number() gives ${Number(text)}`);
    assert.equal(scan.position, text.length, `${text}: stopped at ${scan.position}`);
    assert.equal(scan.scanned, text.length + 1, `${text}: each byte examined once, and the one that ends it`);
  }
});

test('what is not a number leaves the position where it was; an exponent without digits is not part of the number', () => {
  for (const text of ['', ',', '-', '+', '.', '-.', 'e5', 'x', ' 1']) {
    const scan = new Scanner(bytes(text));
    assert.equal(scan.number(), false, JSON.stringify(text));
    assert.equal(scan.position, 0, JSON.stringify(text));
  }
  for (const [text, value, stop] of [['1e', 1, 1], ['2.5E+', 2.5, 3], ['-3e-x', -3, 2], ['7:', 7, 1], ['1.5.2', 1.5, 3]] as const) {
    const scan = new Scanner(bytes(text));
    assert.equal(scan.number(), true, text);
    assert.deepEqual([scan.value, scan.position], [value, stop], text);
  }
  // a number that starts later in the bytes
  const scan = new Scanner(bytes('ab12.5x'));
  scan.position = 2;
  assert.equal(scan.number(), true);
  assert.deepEqual([scan.value, scan.position], [12.5, 6]);
});

test('integers, blanks, lines and tokens: what each helper reads, where it stops, and the bytes it counts', () => {
  const scan = new Scanner(bytes('123:4 \t\r x\nnext line\n\nlast'));
  assert.equal(scan.integer(), true);
  assert.deepEqual([scan.value, scan.position, scan.scanned], [123, 3, 4]);
  assert.equal(scan.integer(), false, 'a colon is no digit');
  assert.equal(scan.position, 3);
  scan.position = 4;
  assert.equal(scan.integer(), true);
  assert.equal(scan.value, 4);
  const before = scan.scanned;
  scan.skipBlanks();
  assert.deepEqual([scan.position, scan.scanned - before], [9, 4], 'space, tab and carriage return skipped, not the x');
  assert.equal(scan.tokenAt(9), 'x');
  scan.nextLine();
  assert.equal(scan.position, 11, 'past the newline');
  assert.equal(scan.tokenAt(11), 'next', 'a token ends at a blank');
  assert.equal(scan.tokenAt(11, 0x20), 'next');
  assert.equal(new Scanner(bytes('a,b c')).tokenAt(0, 0x2c), 'a', 'or at the stop byte');
  assert.equal(new Scanner(bytes('x'.repeat(60))).tokenAt(0), 'x'.repeat(40), 'at most 40 bytes, for a message');
  scan.nextLine();
  scan.nextLine();
  assert.equal(scan.position, 22, 'an empty line is a line');
  scan.nextLine();
  assert.equal(scan.position, 26, 'the last line ends at the end of the bytes');
  scan.nextLine();
  assert.equal(scan.position, 26);
  // a long integer is exact up to 2^53
  const big = new Scanner(bytes('9007199254740993'));
  big.integer();
  assert.equal(big.value, Number('9007199254740993'));
});

test('a growing typed array keeps every value pushed, in order, through its doublings, and hands back no spare room', () => {
  const grow = new Growing(new Int32Array(0));
  for (let i = 0; i < 1000; i++) grow.push(i * 3 - 7);
  assert.equal(grow.length, 1000);
  assert.deepEqual([...grow.values()], Array.from({ length: 1000 }, (_, i) => i * 3 - 7));
  assert.ok(grow.values() instanceof Int32Array);
  const floats = new Growing(new Float64Array(2));
  floats.push(0.1);
  floats.push(0.2);
  floats.push(0.3);
  assert.deepEqual([...floats.values()], [0.1, 0.2, 0.3]);
});

test('CSV: 60 random files (commas or tabs, spaces, CRLF, blank lines, quoted names, the label anywhere) read as Python\'s csv module and float() read them', (t) => {
  const random = new Random(21);
  const dir = mkdtempSync(join(tmpdir(), 'converge-csv-'));
  const files: { path: string; label: string }[] = [];
  for (let f = 0; f < 60; f++) {
    const tsv = random.below(3) === 0;
    const separator = tsv ? '\t' : ',';
    const columns = 2 + random.below(5);
    const labelAt = random.below(columns);
    const names = Array.from({ length: columns }, (_, c) => (c === labelAt ? 'target' : `f${c}`));
    const named = random.below(2) === 0; // class names (a number among them, after the first, is a name too), or numbers
    const pad = () => [' ', '', '', '  '][random.below(4)];
    const lines = [names.map((name) => (random.below(3) === 0 ? `"${name}"` : name)).join(separator)];
    const rows = 1 + random.below(30);
    for (let r = 0; r < rows; r++) {
      if (random.below(8) === 0) lines.push(random.below(2) ? '' : '   ');
      const fields = names.map((_, c) => (c === labelAt ? (named ? ['cat', 'dog', 'bird', r > 0 ? '7' : 'cat'][random.below(4)] : String(random.below(5))) : float32Number(random)));
      lines.push(fields.map((field) => `${pad()}${field}${pad()}`).join(separator));
    }
    const path = join(dir, `r${f}.${tsv ? 'tsv' : 'csv'}`);
    writeFileSync(path, lines.join(random.below(2) ? '\r\n' : '\n') + (random.below(2) ? '\n' : ''));
    files.push({ path, label: 'target' });
  }
  const script = `import csv, json, struct, sys
out = []
for path in sys.argv[1:]:
    sep = '\\t' if path.endswith('.tsv') else ','
    with open(path, newline='') as f:
        rows = [r for r in csv.reader(f, delimiter=sep) if any(x.strip() for x in r)]
    header = [h.strip() for h in rows[0]]
    at = header.index('target')
    features, labels = [], []
    for r in rows[1:]:
        for i, x in enumerate(r):
            if i == at: labels.append(x.strip())
            else: features.append(struct.unpack('f', struct.pack('f', float(x)))[0])
    out.append([header, features, labels])
print(json.dumps(out))`;
  const expected = pythonReads<[string[], number[], string[]][]>(script, files.map((file) => file.path));
  if (!expected) return t.skip('python3 is not installed');
  files.forEach(({ path, label }, f) => {
    const csv = parseCsv(readFileSync(path), path, { labelColumn: label });
    const [header, features, labels] = expected[f];
    assert.deepEqual(csv.header, header, path);
    assert.equal(csv.count, labels.length, path);
    assert.deepEqual([...csv.features], features, path);
    if (csv.labels.names) assert.deepEqual(csv.labels.names, labels, path);
    else assert.deepEqual([...csv.labels.numbers!], labels.map(Number), path);
  });
});

test('libsvm: 60 random files (spaces or tabs, comments, qid, blank lines, CRLF, gaps between indices) read as Python\'s split() and float() read them', (t) => {
  const random = new Random(22);
  const dir = mkdtempSync(join(tmpdir(), 'converge-svm-'));
  const paths: string[] = [];
  for (let f = 0; f < 60; f++) {
    const blank = () => [' ', ' ', '\t', '  ', ' \t '][random.below(5)];
    const lines: string[] = [];
    if (random.below(3) === 0) lines.push('# a data set');
    const rows = 1 + random.below(25);
    for (let r = 0; r < rows; r++) {
      if (random.below(8) === 0) lines.push(random.below(2) ? '' : '  # nothing here');
      const parts = [['+1', '-1', '1', '0', '1.0', '-1e0'][random.below(6)]];
      if (random.below(5) === 0) parts.push(`qid:${random.below(100)}`);
      let index = 0;
      for (let k = random.below(8); k > 0; k--) {
        index += 1 + random.below(random.below(4) === 0 ? 5000 : 4);
        parts.push(`${index}:${float32Number(random)}`);
      }
      let line = (random.below(4) === 0 ? blank() : '') + parts.join(blank());
      if (random.below(4) === 0) line += `${blank()}# comment ${random.below(9)}:1`;
      else if (random.below(4) === 0) line += blank();
      lines.push(line);
    }
    const path = join(dir, `r${f}.svm`);
    writeFileSync(path, lines.join(random.below(2) ? '\r\n' : '\n') + (random.below(2) ? '\n' : ''));
    paths.push(path);
  }
  const script = `import json, struct, sys
out = []
for path in sys.argv[1:]:
    rows, indices, values, labels = [0], [], [], []
    for line in open(path, newline=''):
        tokens = line.split('#')[0].split()
        if not tokens: continue
        labels.append(1 if float(tokens[0]) > 0 else 0)
        for token in tokens[1:]:
            name, value = token.split(':')
            if name == 'qid': continue
            indices.append(int(name) - 1)
            values.append(struct.unpack('f', struct.pack('f', float(value)))[0])
        rows.append(len(indices))
    out.append([rows, indices, values, labels])
print(json.dumps(out))`;
  const expected = pythonReads<number[][][]>(script, paths);
  if (!expected) return t.skip('python3 is not installed');
  paths.forEach((path, f) => {
    const { split, features } = parseLibsvm(readFileSync(path), path);
    const [rows, indices, values, labels] = expected[f];
    assert.deepEqual([[...split.rowPtr], [...split.indices], [...split.values], [...split.labels]], [rows, indices, values, labels], path);
    assert.equal(features, indices.length === 0 ? 0 : Math.max(...indices) + 1, path);
  });
});
