// The conventions of a command line and a package: --version and a short --help, exit codes
// (2 for usage, 130 for Ctrl-C), --log - and --json on stdout, a progress bar that fits its
// terminal, outputs checked before work, the packed file list, predict and export.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseNpy } from '../data/npy.js';
import { readCheckpointLayout } from '../train/checkpoint.js';
import { ProgressBar, clip } from './progress.js';

const main = fileURLToPath(new URL('./main.js', import.meta.url));
const root = fileURLToPath(new URL('../../', import.meta.url));
const quick = ['--dataset', 'synthetic', '--hidden', '16', '--epochs', '1', '--workers', '2'];
const converge = (...args: string[]) => spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 120_000 });

test('--version prints the package version; --help fits a screen and points to each command\'s help', () => {
  const version = (JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { version: string }).version;
  assert.equal(converge('--version').stdout, `converge ${version}\n`);
  const help = converge('--help');
  assert.equal(help.status, 0);
  assert.ok(help.stdout.trim().split('\n').length <= 24, `${help.stdout.split('\n').length} lines`);
  assert.match(help.stdout, /Run 'converge <command> --help'/);
  for (const command of ['train', 'generate', 'launch', 'bench', 'report', 'predict', 'export']) assert.match(help.stdout, new RegExp(`^  ${command} `, 'm'));
});

test('exit codes: 2 for a usage error, with what is accepted; 1 for a failed run', () => {
  const flag = converge('train', '--bogus');
  assert.equal(flag.status, 2);
  assert.match(flag.stderr, /converge: error: Unknown option '--bogus' \(see converge train --help\)/);
  const command = converge('trian');
  assert.equal(command.status, 2);
  const workload = converge('bench');
  assert.equal(workload.status, 2);
  assert.match(workload.stderr, /--workload is required: give one of fmnist-mlp, fmnist-cnn, sparse-logreg, mf, synthetic-mlp/);
  assert.equal(converge('launch', '--', 'true').status, 2);
  assert.equal(converge('train', ...quick, '--lr', '1e30').status, 1);
});

test('Ctrl-C stops after the step, saves, says how to resume, and exits 130', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-interrupt-'));
  const save = join(dir, 'run.ckpt');
  const child = spawn(process.execPath, [main, 'train', ...quick, '--epochs', '500', '--save', save], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    // interrupt once training is under way (an epoch has been reported)
    if (/epoch 1\/500/.test(stderr) && !child.killed) child.kill('SIGINT');
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve)); // 'close': its output read to the end, not only exited
  assert.equal(code, 130, stderr);
  assert.match(stderr, /stopping after this step and saving/);
  assert.match(stdout, /stopped early after [\d.]+ s; resume with --resume .*run\.ckpt/);
  assert.ok(existsSync(save));
});

test('--log - writes the JSONL to stdout and --json the summary, each with the last line on stderr', () => {
  const logged = converge('train', ...quick, '--log', '-');
  assert.equal(logged.status, 0, logged.stderr);
  const records = logged.stdout.trim().split('\n').map((line) => JSON.parse(line) as { type: string });
  assert.ok(records.some((r) => r.type === 'step') && records.some((r) => r.type === 'epoch'));
  assert.equal(records[records.length - 1].type, 'summary');
  assert.ok(!existsSync(join(root, '-')), 'no file named -');
  assert.match(logged.stderr, /test accuracy [\d.]+% after 1 epoch/);
  const json = converge('train', ...quick, '--json');
  const lines = json.stdout.trim().split('\n');
  assert.equal(lines.length, 1);
  const summary = JSON.parse(lines[0]) as { type: string; testAccuracy: number };
  assert.equal(summary.type, 'summary');
  assert.ok(summary.testAccuracy > 0.3);
});

test('the progress bar fits its terminal, and is plain lines where the terminal cannot redraw', () => {
  assert.equal(clip('x'.repeat(100), 60).length, 59);
  assert.equal(clip('short', 60), 'short');
  const written: string[] = [];
  const terminal = { isTTY: true, columns: 60, write: (text: string) => written.push(text) } as unknown as NodeJS.WriteStream;
  const step = { kind: 'step' as const, epoch: 0, step: 5, stepsPerEpoch: 100, samples: 768, loss: 0.5, lr: 0.05, bytesSent: 0 };
  new ProgressBar(3, terminal).update(step, 1);
  new ProgressBar(3, terminal).update({ ...step, step: 9, samples: 1280 }, 2);
  for (const text of written) assert.ok(text.replace('\r\x1b[K', '').length <= 59, `'${text}' is wider than 59 columns`);
  const saved = process.env.TERM;
  process.env.TERM = 'dumb';
  try {
    written.length = 0;
    new ProgressBar(3, terminal).update(step, 1);
    assert.deepEqual(written, [], 'no redrawn bar on a dumb terminal');
  } finally {
    if (saved === undefined) delete process.env.TERM;
    else process.env.TERM = saved;
  }
});

test('output paths are checked before any work: a checkpoint that cannot be written is refused at once', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-outputs-'));
  const missing = converge('train', ...quick, '--epochs', '50', '--save', '/nonexistent/dir/run.ckpt');
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /converge: error: --save \/nonexistent\/dir\/run\.ckpt: the folder \/nonexistent\/dir does not exist; choose another path \(checked before any work starts\)\./);
  assert.doesNotMatch(missing.stderr, /epoch 1/, 'refused before training');
  assert.match(converge('train', ...quick, '--log', dir).stderr, /--log .*: it is a folder/);
});

test('the package: no tests or build leftovers in the tarball, a LICENSE, engines as the code needs', () => {
  const pack = spawnSync('npm', ['pack', '--dry-run', '--json'], { cwd: root, encoding: 'utf8' });
  const files = (JSON.parse(pack.stdout) as { files: { path: string }[] }[])[0].files.map((f) => f.path);
  assert.ok(files.includes('LICENSE') && files.includes('dist/index.js') && files.includes('dist/index.d.ts') && files.includes('native/converge.cc'));
  assert.deepEqual(files.filter((f) => /\.test\.|\/build\//.test(f)), []);
  const manifest = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')) as { engines: { node: string }; dependencies: Record<string, string>; license: string };
  // checkpoints use node:zlib's crc32, which Node.js 20.15 brought
  assert.equal(manifest.engines.node, '>=20.15');
  assert.ok(!('vega' in manifest.dependencies), 'the report\'s charting is an optional peer, not a cost to every library user');
  assert.match(readFileSync(join(root, 'LICENSE'), 'utf8'), new RegExp(`^${manifest.license} License`));
});

test('predict applies a checkpoint (its accuracy is the training run\'s own), and export writes tensors numpy reads back', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-predict-'));
  const save = join(dir, 'm.ckpt');
  const trained = converge('train', ...quick, '--epochs', '2', '--save', save, '--json');
  const accuracy = (JSON.parse(trained.stdout) as { testAccuracy: number }).testAccuracy;
  const out = join(dir, 'p.csv');
  const predicted = converge('predict', '--checkpoint', save, '--dataset', 'synthetic', '--hidden', '16', '--out', out, '--json');
  assert.equal(predicted.status, 0, predicted.stderr);
  const result = JSON.parse(predicted.stdout) as { samples: number; testAccuracy: number };
  assert.equal(result.samples, 512);
  assert.ok(Math.abs(result.testAccuracy - accuracy) < 1e-6, `predict ${result.testAccuracy} against the run's ${accuracy}`);
  const rows = readFileSync(out, 'utf8').trim().split('\n');
  assert.equal(rows[0], 'index,prediction');
  assert.equal(rows.length, 513);
  assert.ok(rows.slice(1).every((row) => /^\d+,\d$/.test(row)));
  const npy = join(dir, 'p.npy');
  converge('predict', '--checkpoint', save, '--dataset', 'synthetic', '--hidden', '16', '--out', npy);
  assert.deepEqual(parseNpy(readFileSync(npy), npy).values.slice(0, 5), Float64Array.from(rows.slice(1, 6), (r) => Number(r.split(',')[1])));
  // export: every tensor back as it is in the checkpoint
  const exported = join(dir, 'export');
  assert.equal(converge('export', '--checkpoint', save, '--out', exported).status, 0);
  const { layout, state } = readCheckpointLayout(save);
  const listing = JSON.parse(readFileSync(join(exported, 'layout.json'), 'utf8')) as { tensors: { name: string; shape: number[]; file: string }[] };
  assert.deepEqual(listing.tensors.map((t) => t.name), ['fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias']);
  for (const slot of layout.slots) {
    const back = parseNpy(readFileSync(join(exported, `${slot.name}.npy`)), slot.name);
    assert.deepEqual(back.shape, [...slot.shape]);
    assert.deepEqual(Float32Array.from(back.values), state.params.subarray(slot.offset, slot.offset + slot.size));
  }
  // and numpy itself, the format's owner, where it is installed (CI installs it)
  const numpy = spawnSync('/usr/bin/python3', ['-c', `import numpy, json, sys\nl = json.load(open(sys.argv[1] + '/layout.json'))\nprint(json.dumps([[list(numpy.load(sys.argv[1] + '/' + t['file']).shape), float(numpy.load(sys.argv[1] + '/' + t['file']).sum())] for t in l['tensors']]))`, exported], { encoding: 'utf8' });
  if (numpy.status !== 0 && !process.env.CONVERGE_REQUIRE_NUMPY) return;
  assert.equal(numpy.status, 0, numpy.stderr);
  const seen = JSON.parse(numpy.stdout) as [number[], number][];
  layout.slots.forEach((slot, i) => {
    assert.deepEqual(seen[i][0], [...slot.shape]);
    const sum = state.params.subarray(slot.offset, slot.offset + slot.size).reduce((a, b) => a + b, 0);
    assert.ok(Math.abs(seen[i][1] - sum) < 1e-3 * (1 + Math.abs(sum)), `${slot.name}: numpy's sum ${seen[i][1]} against ${sum}`);
  });
});

test('a built-in model\'s recipe fills the options the user leaves open, and only those', async () => {
  const { parseTrainArgs } = await import('./train.js');
  const recipe = parseTrainArgs(['--model', 'resnet20']);
  assert.ok(recipe !== 'help');
  assert.equal(recipe.schedule, 'cosine');
  assert.equal(recipe.weightDecay, 1e-4);
  const mine = parseTrainArgs(['--model', 'resnet20', '--schedule', 'constant']);
  assert.ok(mine !== 'help');
  assert.equal(mine.schedule, 'constant', 'a flag the user gives wins');
  assert.equal(mine.weightDecay, 1e-4);
  const plain = parseTrainArgs(['--model', 'mlp']);
  assert.ok(plain !== 'help');
  assert.equal(plain.schedule, 'constant');
  assert.equal(plain.weightDecay, 0);
});
