// bench/loaders: how long reading a large libsvm file takes — converge's reader against
// scikit-learn's load_svmlight_file (C, via Cython) on the same file, in the same run, alternating.
// The file is what `converge generate rcv1-like` writes (200,000 rows, ≈8M non-zeros, ≈122 MB).
//   npm run bench:loaders -- [--rows 200000] [--repeats 3] [--file PATH]

import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { formatLibsvm, generateRcv1Like, rcv1LikeDefaults, readLibsvm } from '../data/sparse.js';
import { debianPython, environment, median, writeJson } from './common.js';

const { values } = parseArgs({
  options: {
    rows: { type: 'string', default: String(rcv1LikeDefaults.rows) },
    repeats: { type: 'string', default: '3' },
    file: { type: 'string' },
    out: { type: 'string', default: 'bench/results/loaders.json' },
  },
});
const repeats = Number(values.repeats);
const file = values.file ?? join(tmpdir(), `converge-rcv1-like-${values.rows}.svm`);
if (!existsSync(file)) {
  console.log(`writing ${file} …`);
  mkdirSync(tmpdir(), { recursive: true });
  const data = generateRcv1Like({ ...rcv1LikeDefaults, rows: Number(values.rows), testRows: 1 });
  writeFileSync(file, formatLibsvm(data.train));
}
const python = debianPython('sklearn');
if (!python) console.log('note: no scikit-learn (apt-get install python3-sklearn): converge alone');

const ours: number[] = [];
const theirs: number[] = [];
let check = { rows: 0, nonZeros: 0, checksum: 0 };
let sklearn = { rows: 0, nonZeros: 0, checksum: 0 };
for (let r = 0; r < repeats; r++) {
  const started = performance.now();
  const { split } = readLibsvm(file, { binary: false });
  ours.push((performance.now() - started) / 1000);
  let checksum = 0;
  for (const v of split.values) checksum += v;
  check = { rows: split.count, nonZeros: split.values.length, checksum };
  if (python) {
    const run = spawnSync(python, [new URL('../../bench/sklearn_load.py', import.meta.url).pathname, file], { encoding: 'utf8' });
    if (run.status !== 0) throw new Error(`scikit-learn failed: ${run.stderr}`);
    sklearn = JSON.parse(run.stdout.trim().split('\n').pop()!);
    theirs.push((sklearn as unknown as { seconds: number }).seconds);
  }
  console.log(`repeat ${r + 1}: converge ${ours[r].toFixed(2)} s${python ? `, scikit-learn ${theirs[r].toFixed(2)} s` : ''}`);
}
const result = {
  environment: environment(), file, bytes: (await import('node:fs')).statSync(file).size, repeats,
  convergeSeconds: median(ours), sklearnSeconds: python ? median(theirs) : null,
  converge: check, sklearn: python ? sklearn : null,
};
console.log(`${(result.bytes / 1e6).toFixed(0)} MB, ${check.rows} rows, ${check.nonZeros} non-zeros: converge ${result.convergeSeconds.toFixed(2)} s` +
  (python ? `, scikit-learn ${result.sklearnSeconds!.toFixed(2)} s (medians of ${repeats}; converge ${(result.sklearnSeconds! / result.convergeSeconds).toFixed(2)}× as fast); same rows, non-zeros and sum of values: ${sklearn.rows === check.rows && sklearn.nonZeros === check.nonZeros && Math.abs(sklearn.checksum - check.checksum) <= 1e-4 * Math.abs(check.checksum)}` : ''));
writeJson(values.out!, result);
