import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, readdirSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encodeIdx } from '../data/idx.js';
import { logRecords } from '../train/log.test.fixture.js';

const main = fileURLToPath(new URL('./main.js', import.meta.url));
const quick = ['--dataset', 'synthetic', '--hidden', '16', '--epochs', '1', '--workers', '2'];

function converge(...args: string[]) {
  const result = spawnSync(process.execPath, [main, ...args], { encoding: 'utf8', timeout: 120_000 });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr };
}

/** The run failed with exactly one error line matching `pattern`. */
function failsWith(args: string[], pattern: RegExp): void {
  const { code, stderr } = converge(...args);
  assert.notEqual(code, 0, `converge ${args.join(' ')} should fail`);
  const errors = stderr.split('\n').filter((line) => line.startsWith('converge: error:'));
  assert.equal(errors.length, 1, `one error line, got: ${stderr}`);
  assert.match(errors[0], pattern);
}

function idxFolder(options: { magic?: boolean; truncate?: boolean; labels?: number; images?: number } = {}): string {
  const dir = mkdtempSync(join(tmpdir(), 'converge-cli-'));
  const images = options.images ?? 20;
  let trainImages = encodeIdx([images, 4, 4], new Uint8Array(images * 16).map((_, i) => i % 251));
  if (options.magic) trainImages = Uint8Array.from([0x50, 0x4b, 3, 4, ...trainImages.subarray(4)]);
  if (options.truncate) trainImages = trainImages.subarray(0, trainImages.length - 5);
  writeFileSync(join(dir, 'train-images-idx3-ubyte'), trainImages);
  writeFileSync(join(dir, 'train-labels-idx1-ubyte'), encodeIdx([options.labels ?? images], new Uint8Array(options.labels ?? images).map((_, i) => i % 3)));
  writeFileSync(join(dir, 't10k-images-idx3-ubyte'), encodeIdx([6, 4, 4], new Uint8Array(96)));
  writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), encodeIdx([6], new Uint8Array(6)));
  return dir;
}

test('converge train runs end to end and reports the test accuracy', () => {
  const { code, stdout, stderr } = converge('train', ...quick);
  assert.equal(code, 0, stderr);
  assert.match(stdout, /^test accuracy \d+\.\d\d% after 1 epoch \(mlp, allreduce, 2 workers, [\d,]+ samples\/s, [\d.]+ s\)\n$/);
  assert.match(stderr, /epoch 1\/1 {2}train loss [\d.]+ {2}test loss [\d.]+ {2}test accuracy [\d.]+%/);
});

test('--help documents every option', () => {
  const { code, stdout } = converge('train', '--help');
  assert.equal(code, 0);
  for (const option of ['dataset', 'data-dir', 'model', 'hidden', 'workers', 'strategy', 'epochs', 'batch', 'lr', 'optimizer', 'momentum',
    'weight-decay', 'schedule', 'warmup-epochs', 'seed', 'save', 'resume', 'log', 'timeout']) {
    assert.match(stdout, new RegExp(`--${option} `), option);
  }
});

test('bad names and numbers: one line naming the option and the valid choices', () => {
  failsWith(['train', ...quick, '--model', 'resnet'], /unknown model 'resnet'; choose one of: softmax, mlp, cnn, logreg, svm, mf\./);
  failsWith(['train', ...quick, '--strategy', 'gossip'], /unknown strategy 'gossip'; choose one of: allreduce, ps, async-ps, hogwild, local-sgd, pipeline, fsdp, tensor\./);
  failsWith(['train', ...quick, '--dataset', 'imagenet'], /unknown dataset 'imagenet'; choose one of: fashion-mnist, mnist, synthetic, rcv1-like, netflix-like, or give a \.svm\/\.ratings file or a folder\./);
  failsWith(['train', ...quick, '--optimizer', 'lion'], /unknown optimizer 'lion'; choose one of: sgd, momentum, nesterov, adam\./);
  failsWith(['train', ...quick, '--workers', '0'], /--workers: got 0; expected a positive integer\./);
  failsWith(['train', ...quick, '--lr', 'fast'], /--lr: got "fast"; expected a number\./);
  failsWith(['train', ...quick, '--lr', '-0.1'], /--lr: got -0\.1; expected a positive number\./);
  failsWith(['train', ...quick, '--batch', '-3'], /--batch: got -3; expected a positive integer\./);
  failsWith(['train', ...quick, '--batch', 'x'], /--batch: got "x"; expected a number\./);
  failsWith(['train', ...quick, '--epochs', '1.5'], /--epochs: got 1\.5; expected a positive integer\./);
  failsWith(['train', ...quick, '--epochs', '-2'], /--epochs: got -2; expected a positive integer\./);
  failsWith(['train', '--frobnicate'], /Unknown option '--frobnicate'.*converge train --help/);
  failsWith(['fly'], /unknown command 'fly'/);
});

test('bad data: missing, wrong magic, truncated, mismatched labels, too many workers', () => {
  failsWith(['train', '--dataset', 'fashion-mnist', '--data-dir', '/nonexistent/fmnist'], /data set 'fashion-mnist' not found at \/nonexistent\/fmnist; install it with apt-get install dataset-fashion-mnist, or give --data-dir\./);
  const empty = mkdtempSync(join(tmpdir(), 'converge-cli-'));
  failsWith(['train', '--dataset', 'mine', '--data-dir', empty], /train-images-idx3-ubyte\(\.gz\) not found at .*; point --data-dir at a folder/);
  failsWith(['train', '--dataset', 'mine', '--data-dir', idxFolder({ magic: true })], /train-images-idx3-ubyte: not an IDX file \(magic bytes 50 4b 03 04/);
  failsWith(['train', '--dataset', 'mine', '--data-dir', idxFolder({ truncate: true })], /train-images-idx3-ubyte: truncated: header promises 320 bytes/);
  failsWith(['train', '--dataset', 'mine', '--data-dir', idxFolder({ labels: 19 })], /expected one label per image \(20\), got 19 labels/);
  failsWith(['train', '--dataset', 'mine', '--data-dir', idxFolder({ images: 5, labels: 5 }), '--workers', '6'], /--workers: got 6; expected at most the 5 training samples of mine/);
  failsWith(['train', '--dataset', 'mine', '--data-dir', idxFolder(), '--workers', '2', '--batch', '11'], /--batch: got 11; expected a global batch \(workers × batch = 22\) no larger than the 20 training samples/);
});

test('an IDX folder of any name trains (user data via --data-dir)', () => {
  const { code, stderr } = converge('train', '--dataset', 'mine', '--data-dir', idxFolder(), '--workers', '2', '--batch', '4', '--epochs', '1', '--model', 'softmax');
  assert.equal(code, 0, stderr);
});

test('checkpoints: a different model or a damaged file is refused; nothing is half-written', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-cli-'));
  const checkpoint = join(dir, 'run.ckpt');
  assert.equal(converge('train', ...quick, '--save', checkpoint).code, 0);
  failsWith(['train', ...quick, '--hidden', '17', '--resume', checkpoint], /checkpoint .*run\.ckpt holds model 'mlp' \(fc1\.weight\[16x64\].*not 'mlp' \(fc1\.weight\[17x64\].*resume with the same --model/);
  failsWith(['train', ...quick, '--model', 'softmax', '--resume', checkpoint], /holds model 'mlp'.*not 'softmax'/);
  const bytes = readFileSync(checkpoint);
  const flipped = Buffer.from(bytes);
  flipped[flipped.length - 10] ^= 0xff;
  writeFileSync(join(dir, 'flipped.ckpt'), flipped);
  failsWith(['train', ...quick, '--resume', join(dir, 'flipped.ckpt')], /flipped\.ckpt: fails its CRC-32 check; the file is damaged/);
  writeFileSync(join(dir, 'cut.ckpt'), bytes.subarray(0, bytes.length - 100));
  failsWith(['train', ...quick, '--resume', join(dir, 'cut.ckpt')], /cut\.ckpt: holds \d+ payload bytes, header promises \d+/);
  writeFileSync(join(dir, 'junk.ckpt'), 'not a checkpoint at all');
  failsWith(['train', ...quick, '--resume', join(dir, 'junk.ckpt')], /junk\.ckpt: is not a converge checkpoint \(bad magic\)/);
  failsWith(['train', ...quick, '--resume', join(dir, 'none.ckpt')], /checkpoint not found at .*none\.ckpt/);
  // a run that fails before its first save leaves no file, finished or temporary
  const failed = join(dir, 'sub');
  mkdirSync(failed);
  failsWith(['train', ...quick, '--lr', '1e30', '--save', join(failed, 'x.ckpt')], /loss became/);
  assert.deepEqual(readdirSync(failed), []);
});

test('a diverging run stops, names the step and suggests a lower learning rate', () => {
  failsWith(['train', ...quick, '--lr', '1e30'], /loss became (NaN|Infinity) at step \d+ \(epoch 1\) with learning rate 1e\+30; training stopped — try a lower --lr/);
  // finite but absurd: more than a million times the first step's loss (at lr 100 the second step's
  // is ≈3e6; unchecked, the run went on to a chance-level model and exited 0)
  failsWith(['train', ...quick, '--lr', '100'], /loss became \d+(\.\d+)? at step \d+ \(epoch 1\) with learning rate 100; training stopped — try a lower --lr/);
});

test('--log writes JSONL ending in a summary; a failed run logs its error', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-cli-'));
  assert.equal(converge('train', ...quick, '--log', join(dir, 'ok.jsonl')).code, 0);
  const last = logRecords(join(dir, 'ok.jsonl')).pop()!;
  assert.equal(last.type, 'summary');
  converge('train', ...quick, '--lr', '1e30', '--log', join(dir, 'bad.jsonl'));
  const records = logRecords(join(dir, 'bad.jsonl'));
  assert.equal(records[records.length - 1].type, 'error');
  assert.ok(existsSync(join(dir, 'bad.jsonl')));
});

test('a rank that throws, dies or stalls mid-run ends the whole run with an error naming it', () => {
  const cases: [string, string, RegExp][] = [
    ['ps', '2:5:throw', /rank 2 failed during computing after operation #\d+: injected fault at step 5/],
    ['allreduce', '1:5:exit', /rank 1 exited with code 9 during computing after operation #\d+ without finishing/],
    ['allreduce', '0:5:stall', /rank 1: (reduceScatter|allreduce|allgatherShares) #\d+ timed out after 1 s waiting for rank 0 \(computing after operation #\d+\)/],
  ];
  for (const [strategy, fault, pattern] of cases) {
    const started = Date.now();
    const result = spawnSync(process.execPath, [main, 'train', ...quick, '--strategy', strategy, '--timeout', '1'], {
      encoding: 'utf8', timeout: 60_000, env: { ...process.env, CONVERGE_TEST_FAULT: fault },
    });
    assert.equal(result.status, 1, `${fault}: ${result.stderr}`);
    const errors = result.stderr.split('\n').filter((line) => line.startsWith('converge: error:'));
    assert.equal(errors.length, 1, result.stderr);
    assert.match(errors[0], pattern);
    assert.ok(Date.now() - started < 30_000, `${fault}: the run ended within 30 s`);
  }
});

test('Ctrl-C stops at the next step, saves the checkpoint and exits 130 (128 + SIGINT; issue 13: an interrupted run is not a finished one)', async () => {
  const { spawn } = await import('node:child_process');
  const dir = mkdtempSync(join(tmpdir(), 'converge-cli-'));
  const checkpoint = join(dir, 'interrupted.ckpt');
  const child = spawn(process.execPath, [main, 'train', '--dataset', 'synthetic', '--hidden', '16', '--workers', '2', '--epochs', '100000', '--save', checkpoint]);
  let stderr = '';
  let stdout = '';
  child.stdout.on('data', (chunk) => (stdout += chunk));
  child.stderr.on('data', (chunk) => {
    stderr += chunk;
    // the first epoch line means training is under way
    if (/epoch 1\//.test(stderr) && !child.killed) child.kill('SIGINT');
  });
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve)); // 'close': its output read to the end, not only exited
  assert.equal(code, 130, stderr);
  assert.match(stderr, /stopping after this step and saving/);
  assert.match(stdout, /stopped early after [\d.]+ s; resume with --resume .*interrupted\.ckpt/);
  assert.ok(existsSync(checkpoint));
  const resumed = converge('train', '--dataset', 'synthetic', '--hidden', '16', '--workers', '2', '--epochs', '100000', '--resume', checkpoint, '--stop-after-steps', '3');
  assert.equal(resumed.code, 0, resumed.stderr);
  assert.match(resumed.stderr, /resumed at epoch \d+ step \d+/);
  failsWith(['train', '--dataset', 'synthetic', '--hidden', '16', '--workers', '2', '--epochs', '1', '--resume', checkpoint], /--epochs: got 1; expected more than the \d+ epochs? .*interrupted\.ckpt has already trained/);
});

test('converge generate writes data sets that converge train reads back; bad generator input is refused', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-cli-'));
  const sparse = converge('generate', 'rcv1-like', '--rows', '600', '--test-rows', '60', '--features', '300', '--nnz', '8', '--out', join(dir, 'rcv'));
  assert.equal(sparse.code, 0, sparse.stderr);
  assert.match(sparse.stdout, /wrote .*train\.svm \(600 rows\) and .*test\.svm \(60 rows\), 300 features/);
  const trained = converge('train', '--dataset', join(dir, 'rcv'), '--model', 'logreg', '--strategy', 'hogwild', '--workers', '2', '--epochs', '2', '--lr', '0.5', '--batch', '4');
  assert.equal(trained.code, 0, trained.stderr);
  assert.match(trained.stdout, /test accuracy [\d.]+% after 2 epochs \(logreg, hogwild, 2 workers/);
  const ratings = converge('generate', 'netflix-like', '--users', '200', '--items', '50', '--out', join(dir, 'nf'));
  assert.equal(ratings.code, 0, ratings.stderr);
  const mf = converge('train', '--dataset', join(dir, 'nf', 'train.ratings'), '--test-dataset', join(dir, 'nf', 'test.ratings'), '--model', 'mf', '--strategy', 'async-ps', '--workers', '2', '--epochs', '1', '--lr', '0.02', '--optimizer', 'sgd', '--batch', '4');
  assert.equal(mf.code, 0, mf.stderr);
  assert.match(mf.stdout, /test RMSE [\d.]+ after 1 epoch \(mf, async-ps/);
  failsWith(['generate', 'imagenet-like', '--out', dir], /unknown generator 'imagenet-like'; choose one of: rcv1-like, netflix-like/);
  failsWith(['generate', 'rcv1-like', '--rows', '-5', '--out', dir], /--rows: got "-5"; expected a positive integer/);
  failsWith(['generate', 'rcv1-like'], /--out: got undefined; expected a folder/);
  failsWith(['train', '--dataset', join(dir, 'rcv'), '--model', 'cnn'], /--model cnn: expected images, got .*train\.svm, which holds sparse rows \(libsvm\); use --model logreg\/svm/);
  failsWith(['train', '--dataset', join(dir, 'nf', 'train.ratings'), '--model', 'logreg'], /use --model mf/);
  writeFileSync(join(dir, 'bad.svm'), '+1 1:0.5\n-1 2:0.1 1:0.3\n');
  failsWith(['train', '--dataset', join(dir, 'bad.svm'), '--model', 'logreg'], /bad\.svm:2:10: index 1 comes after 2 \(indices must increase\)/);
  failsWith(['train', '--dataset', join(dir, 'rcv'), '--model', 'logreg', '--staleness', '-1'], /--staleness: got -1; expected a non-negative integer/);
  failsWith(['train', '--dataset', join(dir, 'rcv'), '--model', 'logreg', '--sync-every', '0'], /--sync-every: got 0; expected a positive integer/);
  failsWith(['train', '--dataset', join(dir, 'rcv'), '--model', 'logreg', '--strategy', 'hogwild', '--merge-every', '1.5'], /--merge-every: got 1\.5; expected a non-negative integer \(examples between merges; 0 writes straight into the shared array\)/);
  failsWith(['train', '--dataset', join(dir, 'rcv'), '--model', 'logreg', '--merge-every', '512'], /--merge-every: got 512; expected a strategy whose workers update one shared array \(hogwild\), not allreduce/);
});

test('a multi-class libsvm file sorted by label trains, tested on a seeded stratified tenth that the first line names', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-multiclass-'));
  const file = join(dir, 'sorted.svm');
  // three classes, each a feature of its own (and noise), written class by class
  const lines: string[] = [];
  for (const label of [1, 2, 3]) for (let i = 0; i < 200; i++) lines.push(`${label} ${label}:1 ${4 + (i % 7)}:0.3`);
  writeFileSync(file, `${lines.join('\n')}\n`);
  const run = converge('train', '--dataset', file, '--model', 'logreg', '--workers', '2', '--epochs', '3', '--batch', '16', '--lr', '0.5', '--optimizer', 'sgd');
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr.split('\n')[0], /\(540 train \/ 60 test; test set: a seeded, stratified 10% of .*sorted\.svm \(seed 1; --test-dataset to give one\)\)/);
  const accuracy = Number(/test accuracy ([\d.]+)%/.exec(run.stdout)![1]);
  assert.ok(accuracy > 95, `accuracy ${accuracy}% on separable classes (a last-tenth split would test on class 3 alone)`);
});

test('converge launch: N ranks with their places and a job secret, output prefixed, a training job over tcp, the first failure\'s code', () => {
  const env = converge('launch', '-n', '3', '--', process.execPath, '-e', 'console.log(process.env.RANK, process.env.WORLD_SIZE, process.env.MASTER_ADDR, (process.env.CONVERGE_SECRET ?? "").length >= 8)');
  assert.equal(env.code, 0, env.stderr);
  const lines = env.stdout.trim().split('\n').sort();
  assert.deepEqual(lines, ['[rank 0] 0 3 127.0.0.1 true', '[rank 1] 1 3 127.0.0.1 true', '[rank 2] 2 3 127.0.0.1 true']);
  // `converge train` under launch runs over tcp (launch adds --backend tcp), 2 processes
  const job = converge('launch', '-n', '2', '--', 'converge', 'train', '--dataset', 'synthetic', '--model', 'softmax', '--epochs', '1');
  assert.equal(job.code, 0, job.stderr);
  assert.match(job.stdout + job.stderr, /\[rank 0\] .*test accuracy [\d.]+% after 1 epoch \(softmax, allreduce, 2 processes over tcp/);
  // the first line says what protects the frames; launch gives the ranks one job id and a strong secret (no warning)
  assert.match(job.stderr, /\[rank 0\] converge: softmax .*allreduce over tcp \(frames encrypted, AES-256-GCM\)/);
  assert.doesNotMatch(job.stderr, /is weak/);
  const ids = converge('launch', '-n', '2', '--', process.execPath, '-e', 'console.log(process.env.CONVERGE_JOB_ID)');
  assert.equal(new Set(ids.stdout.trim().split('\n').map((line) => line.split(' ')[2])).size, 1, ids.stdout);
  assert.match(ids.stdout, /\[rank 0\] [0-9a-f]{16}\n/);
  const plain = converge('launch', '-n', '2', '--', 'converge', 'train', '--dataset', 'synthetic', '--model', 'softmax', '--epochs', '1', '--transport-security', 'none');
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stderr, /over tcp \(frames NOT protected: --transport-security none, a trusted fabric\)/);
  failsWith(['train', '--transport-security', 'none'], /--transport-security.*none.*--backend tcp \(shm never leaves this process/);
  failsWith(['train', '--backend', 'tcp', '--transport-security', 'tls'], /transport security.*tls/);
  failsWith(['train', '--backend', 'tcp', '--bind', 'eth0'], /--bind.*eth0.*an IP address of this host/);
  const bound = converge('launch', '-n', '2', '--', 'converge', 'train', '--dataset', 'synthetic', '--model', 'softmax', '--epochs', '1', '--bind', '127.0.0.1');
  assert.equal(bound.code, 0, bound.stderr);
  // rank 1 fails with code 3: the job exits with it
  const failing = converge('launch', '-n', '2', '--grace', '1', '--', process.execPath, '-e', 'process.exit(process.env.RANK === "1" ? 3 : 0)');
  assert.equal(failing.code, 3, failing.stderr);
  failsWith(['launch', '-n', '0', '--', 'true'], /-n.*0.*the number of ranks, a positive integer/);
  failsWith(['launch', '-n', '2'], /the command/);
});

test('converge launch prints every line a rank wrote, also those still on their way when it exited; a child the rank left behind does not hold the job', () => {
  // a line written after the rank exited (by a process it started) is still the rank's output, printed before launch ends
  // (launchProcesses itself, which returned at the ranks' exit, is checked in local-job.test.ts)
  const late = converge('launch', '-n', '2', '--', 'bash', '-c', '(sleep 0.5; echo "rank $RANK, late") & echo "rank $RANK, on time"');
  assert.equal(late.code, 0, late.stderr);
  assert.deepEqual(late.stdout.trim().split('\n').sort(), ['[rank 0] rank 0, late', '[rank 0] rank 0, on time', '[rank 1] rank 1, late', '[rank 1] rank 1, on time']);
  // a child that keeps the rank's output open and says nothing is given up a few seconds after the rank exits
  const pids = join(mkdtempSync(join(tmpdir(), 'converge-launch-')), 'pids');
  const started = performance.now();
  const held = converge('launch', '-n', '1', '--', 'bash', '-c', `sleep 60 & echo $! >> ${pids}; echo done`);
  const seconds = (performance.now() - started) / 1000;
  for (const pid of readFileSync(pids, 'utf8').trim().split('\n')) process.kill(Number(pid));
  assert.equal(held.code, 0, held.stderr);
  assert.equal(held.stdout, '[rank 0] done\n');
  assert.ok(seconds < 30, `launch waited ${seconds} s for a child of the rank`);
});

test('--stop-at-target ends the run (threads, and every rank of a tcp job) at the evaluation that first reached --target', () => {
  const args = ['train', '--dataset', 'synthetic', '--model', 'mlp', '--hidden', '32,16', '--epochs', '5', '--target', '0.8', '--eval-every', '0.25', '--json'];
  const full = JSON.parse(converge(...args).stdout.trim().split('\n').pop()!);
  const stopped = converge(...args, '--stop-at-target');
  const summary = JSON.parse(stopped.stdout.trim().split('\n').pop()!);
  assert.equal(full.stoppedEarly, false);
  assert.ok(full.samplesToTarget > 0 && full.samplesToTarget < full.samples, `the target is reached before the 5 epochs end (${full.samplesToTarget} of ${full.samples})`);
  // the same run up to the crossing, then no further step
  assert.equal(summary.stoppedEarly, true);
  assert.equal(summary.samplesToTarget, full.samplesToTarget);
  assert.equal(summary.samples, summary.samplesToTarget);
  assert.match(stopped.stderr, new RegExp(`stopped at the target \\(mlp, allreduce, 2 workers, [\\d.]+ s\\); 80% reached after [\\d.]+ s of training \\(${full.samplesToTarget.toLocaleString('en-US')} samples\\)`));
  const job = converge('launch', '-n', '2', '--', 'converge', ...args.slice(0, -1), '--stop-at-target');
  assert.equal(job.code, 0, job.stderr);
  assert.match(job.stdout, /\[rank 0\] stopped at the target \(mlp, allreduce, 2 processes over tcp/);
  failsWith(['train', '--stop-at-target'], /--stop-at-target.*a --target to stop at/);
});

test('converge plan: equal stages have the bubble (S − 1)/(m + S − 1) and 1F1B stores S − s; with a model it prints the balanced cut and a predicted speed-up; bad values are refused', () => {
  const equal = converge('plan', '--stages', '4', '--microbatches', '12', '--json');
  assert.equal(equal.code, 0, equal.stderr);
  const plan = JSON.parse(equal.stdout) as { plans: { schedule: string; bubble: number; stages: { storedMicrobatches: number }[] }[] };
  assert.deepEqual(plan.plans.map((p) => p.schedule), ['gpipe', '1f1b']);
  for (const p of plan.plans) assert.ok(Math.abs(p.bubble - 3 / 15) < 1e-12, `${p.schedule}: ${p.bubble}`);
  assert.deepEqual(plan.plans[1].stages.map((s) => s.storedMicrobatches), [4, 3, 2, 1]);
  assert.deepEqual(plan.plans[0].stages.map((s) => s.storedMicrobatches), [12, 12, 12, 12]);
  const model = converge('plan', '--stages', '3', '--microbatches', '2', '--pipeline-schedule', '1f1b', '--model', 'mlp', '--dataset', 'synthetic', '--hidden', '32,16', '--batch', '32');
  assert.equal(model.code, 0, model.stderr);
  assert.match(model.stdout, /^1f1b: S = 3, m = 2: bubble [\d.]+% \(equal stages: 50\.0%\), a step [\d.]+ ms, [\d.]+× one worker\n  stage 0 \(layers 0–\d\): .*stores 2 micro-batches\n  stage 1 \(layers \d–\d\): .*stores 2 micro-batches\n  stage 2 \(layers \d–4\): .*stores 1 micro-batch\n$/);
  assert.match(converge('plan', '--stages', '0').stderr, /converge: error: --stages: got "0"; expected a positive integer/);
  assert.match(converge('plan', '--pipeline-schedule', 'zigzag').stderr, /--pipeline-schedule: got "zigzag"; expected gpipe or 1f1b/);
  assert.match(converge('plan', '--stages', '2', '--model', 'logreg', '--dataset', 'rcv1-like').stderr, /--strategy pipeline runs a model of layers layer by layer/);
});

test('converge train --strategy pipeline: the first line says the stages and micro-batches, a line per stage its share, and options for other strategies are refused', () => {
  const run = converge('train', '--strategy', 'pipeline', '--dataset', 'synthetic', '--hidden', '16', '--epochs', '1', '--stages', '2', '--microbatches', '2', '--pipeline-schedule', 'gpipe', '--stage-cuts', '2');
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stderr, /pipeline, 2 stages × 2 micro-batches of 32 \(gpipe, cut at layers 2\)/);
  assert.match(run.stdout, /^stage 0: layers 0–1, 1,040 parameters, at most 2 micro-batches stored, \d+% computing\nstage 1: layers 2–2, 170 parameters, at most 2 micro-batches stored, \d+% computing\ntest accuracy [\d.]+% after 1 epoch \(mlp, pipeline, 2 stages,/);
  failsWith(['train', ...quick, '--stages', '2'], /--stages: got 2; expected a strategy that cuts the model into stages \(pipeline\), not allreduce/);
});

test('converge train --recompute and --memory-budget: the run trains exactly as storing everything does, within the budget; bad values and other strategies are refused in one line', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-recompute-'));
  const trainWith = (memory: string[], k: number) => {
    const log = join(dir, `${k}.jsonl`);
    const run = converge('train', ...quick, '--hidden', '64,64,64,64,64,64', '--log', log, ...memory);
    assert.equal(run.code, 0, run.stderr);
    const records = logRecords(log);
    return { run, activations: records.find((r) => r.type === 'activations')!, summary: records.find((r) => r.type === 'summary')! };
  };
  const all = trainWith(['--recompute', 'none'], 0);
  const revolve = trainWith(['--recompute', 'revolve:2'], 1);
  const budgetBytes = Math.floor(all.activations.peakActivationBytes * 0.75);
  const budget = trainWith(['--memory-budget', String(budgetBytes)], 2);
  assert.equal(all.activations.schedule, 'none');
  assert.equal(all.activations.recomputed, 0);
  assert.ok(revolve.activations.recomputed > 0 && revolve.activations.peakActivationBytes < all.activations.peakActivationBytes, JSON.stringify(revolve.activations));
  assert.equal(budget.activations.schedule, 'auto');
  assert.ok(budget.activations.peakActivationBytes <= budgetBytes, JSON.stringify(budget.activations));
  assert.ok(budget.activations.recomputed > 0 && budget.activations.predictedSeconds > 0);
  assert.match(budget.run.stderr, /activations: --recompute auto holds [\d.]+ KiB \(storing all: [\d.]+ KiB\), runs \d+ of 7 units' forward passes twice; predicted [\d.]+ ms/);
  for (const other of [revolve, budget]) {
    for (const figure of ['trainLoss', 'testLoss', 'testAccuracy']) assert.equal(other.summary[figure], all.summary[figure], `${figure}: the same arithmetic, in another order of passes`);
  }
  const pipeline = converge('train', '--strategy', 'pipeline', '--dataset', 'synthetic', '--hidden', '32,32,32,32', '--epochs', '1', '--stages', '2', '--recompute', 'revolve:1');
  assert.equal(pipeline.code, 0, pipeline.stderr);
  assert.match(pipeline.stdout, /^stage 0: layers 0–\d+, [\d,]+ parameters, at most 2 micro-batches stored, their activations [\d.]+ KiB \(--recompute\), \d+% computing\nstage 1: /);
  // --memory-limit: a whole replica of 8 layers of 512 (7.2 MiB of parameters) does not fit 16 MiB; sharded, it does
  const wide = ['--dataset', 'synthetic', '--hidden', '512,512,512,512,512,512,512,512', '--epochs', '1', '--stop-after-steps', '2', '--memory-limit', '16MiB'];
  failsWith(['train', ...wide], /--memory-limit 16\.0 MiB: rank \d of --strategy allreduce would hold [\d.]+ MiB \(parameters 7\.2 MiB, gradients 7\.2 MiB, optimiser state 7\.2 MiB, activations [\d.]+ [KM]iB\); shard the model across ranks \(--strategy pipeline or fsdp or tensor\)/);
  const sharded = converge('train', ...wide, '--strategy', 'fsdp', '--json');
  assert.equal(sharded.code, 0, sharded.stderr);
  assert.ok(JSON.parse(sharded.stdout).memory.total <= 16 * 2 ** 20);
  failsWith(['train', ...quick, '--recompute', 'auto'], /--recompute: got "auto"; expected a --memory-budget to fit/);
  failsWith(['train', ...quick, '--recompute', 'half'], /--recompute half: expected none \(store every activation\), sqrt/);
  failsWith(['train', ...quick, '--memory-budget', 'lots'], /--memory-budget lots: expected a size in bytes/);
  failsWith(['train', ...quick, '--memory-budget', '2KB'], /--memory-budget 2\.0 KiB of activations: too small for model mlp at batch 64; the smallest schedule found holds [\d.]+ KiB/);
  failsWith(['train', '--model', 'logreg', '--dataset', 'rcv1-like', '--epochs', '1', '--recompute', 'sqrt'], /--recompute: got "sqrt"; expected a model of layers/);
});

test('converge profile: a model\'s units, their bytes (against the layers\' sizes) and measured times, and each schedule priced on them', () => {
  const run = converge('profile', '--model', 'mlp', '--dataset', 'synthetic', '--hidden', '32,32', '--batch', '16', '--json');
  assert.equal(run.code, 0, run.stderr);
  const profile = JSON.parse(run.stdout);
  // dense 64→32 + relu, dense 32→32 + relu, dense 32→10, at 16 samples of 4-byte floats
  assert.deepEqual(profile.units.map((u: Record<string, unknown>) => [u.layers, u.input, u.output, u.kept, u.gradients]), [
    ['dense+relu', 0, 2048, 2048, 2048], ['dense+relu', 2048, 2048, 2048, 2048], ['dense', 2048, 640, 640, 0],
  ]);
  assert.ok(profile.units.every((u: { forward: number; backward: number }) => u.forward > 0 && u.backward > 0));
  const none = profile.schedules.find((s: { schedule: string }) => s.schedule === 'none');
  // at unit 1's backward: both records, the gradient coming in, the one between its layers, the one going out
  assert.deepEqual([none.peakBytes, none.recomputed], [5 * 2048, 0]);
  assert.equal(profile.schedules.find((s: { schedule: string }) => s.schedule === 'revolve:1').recomputed, 3);
  const text = converge('profile', '--model', 'mlp', '--dataset', 'synthetic', '--hidden', '32,32', '--batch', '16');
  assert.match(text.stdout, /^mlp at batch 16 on synthetic: 3 units; storing all holds 10\.0 KiB of activations/);
  assert.match(converge('profile', '--model', 'logreg', '--dataset', 'rcv1-like').stderr, /converge: error: --model: got "logreg"; expected a model of layers/);
});
