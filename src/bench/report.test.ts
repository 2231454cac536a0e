// converge bench and converge report, end to end on a small recorded sweep: every configuration
// runs as its own process and writes its log, a second run resumes (runs nothing again), and
// the report holds every chart and table, self-contained — and loads in headless Chromium with
// no console error where Debian's chromium is installed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const cli = new URL('../cli/main.js', import.meta.url).pathname;
const dir = mkdtempSync(join(tmpdir(), 'converge-sweep-'));
const sweep = ['bench', '--workload', 'synthetic-mlp', '--strategies', 'allreduce,hogwild', '--workers', '1,2', '--compress', 'none,topk:0.05', '--epochs', '2', '--out', dir];
const ids = ['allreduce_w1_none', 'allreduce_w1_topk-0.05', 'allreduce_w2_none', 'allreduce_w2_topk-0.05', 'hogwild_w1_none', 'hogwild_w2_none'].map((s) => `synthetic-mlp_${s}_p-fp32_bdefault_lr-none_wu0`);

test('converge bench runs each configuration as its own process, and resumes without running any again', () => {
  const first = spawnSync(process.execPath, [cli, ...sweep], { encoding: 'utf8' });
  assert.equal(first.status, 0, first.stderr);
  assert.match(first.stderr, /skipped synthetic-mlp_hogwild_w1_topk-0\.05_\S+: hogwild exchanges no gradients to compress/);
  assert.match(first.stderr, /\[#{20}\] 6\/6/);
  for (const id of ids) {
    const lines = readFileSync(join(dir, `${id}.jsonl`), 'utf8').trim().split('\n');
    assert.equal(JSON.parse(lines[lines.length - 1]).type, 'summary', id);
  }
  const before = statSync(join(dir, `${ids[0]}.jsonl`)).mtimeMs;
  const second = spawnSync(process.execPath, [cli, ...sweep], { encoding: 'utf8' });
  assert.equal(second.status, 0, second.stderr);
  assert.equal((second.stderr.match(/already done/g) ?? []).length, 6, second.stderr);
  assert.doesNotMatch(second.stderr, /running /);
  assert.equal(statSync(join(dir, `${ids[0]}.jsonl`)).mtimeMs, before);
});

test('converge report writes one self-contained page with every chart and the time-to-target table, and summary.md/json', () => {
  const out = join(dir, 'report', 'report.html');
  const result = spawnSync(process.execPath, [cli, 'report', dir, '--out', out], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /1 workload, 8 charts/);
  const html = readFileSync(out, 'utf8');
  const titles = ['test accuracy against wall time', 'test accuracy against samples seen', 'training loss against wall time', 'training loss against samples seen', 'samples per second against workers', 'speedup against workers', 'test loss against wall time', 'bytes each worker sends per step'];
  for (const title of titles) assert.ok(html.includes(`<figcaption>${title}</figcaption><svg`), `chart '${title}'`);
  assert.equal((html.match(/<svg /g) ?? []).length, 8);
  const chart = (title: string) => html.slice(html.indexOf(`<figcaption>${title}</figcaption>`), html.indexOf('</svg>', html.indexOf(`<figcaption>${title}</figcaption>`)));
  // a mark per configuration where bars on a log scale drew none; accuracy in percent; the ideal speedup dashed beside the measured
  const symbols = (svg: string) => {
    const marks = svg.slice(svg.indexOf('class="mark-symbol'));
    return (marks.slice(0, marks.indexOf('</g>')).match(/<path /g) ?? []).length;
  };
  assert.equal(symbols(chart('bytes each worker sends per step')), 6);
  assert.match(chart('test accuracy against wall time'), />\d+%</);
  assert.ok((chart('speedup against workers').match(/class="mark-line/g) ?? []).length >= 2, 'the ideal line and the measured ones');
  // real charts: axes, marks, the configurations in the legend
  assert.ok((html.match(/class="mark-line/g) ?? []).length >= 4);
  for (const label of ['allreduce ×1', 'allreduce ×2, topk:0.05', 'hogwild ×2']) assert.ok(html.includes(label), label);
  assert.equal((html.match(/<tr class="done">/g) ?? []).length, 6);
  // nothing to fetch: no script, no external reference
  assert.doesNotMatch(html, /<script|src="http|href="http|@import/);
  const summary = JSON.parse(readFileSync(join(dir, 'report', 'summary.json'), 'utf8'))['synthetic-mlp'];
  assert.equal(summary.rows.length, 6);
  const times = summary.rows.map((r: { secondsToTarget: number | null }) => r.secondsToTarget ?? Infinity);
  assert.deepEqual(times, [...times].sort((a, b) => a - b), 'best first');
  const markdown = readFileSync(join(dir, 'report', 'summary.md'), 'utf8');
  assert.match(markdown, /\| configuration \| time to target \| samples to target \| final accuracy \| samples\/s \| bytes\/worker\/step \|/);
  assert.equal((markdown.match(/^\| (allreduce|hogwild) ×/gm) ?? []).length, 6);
});

test('the report loads in headless Chromium with no console error', { skip: existsSync('/usr/bin/chromium') ? false : 'Debian chromium is not installed' }, () => {
  const out = join(dir, 'report', 'report.html');
  if (!existsSync(out)) spawnSync(process.execPath, [cli, 'report', dir, '--out', out]);
  const chromium = () => spawnSync('/usr/bin/chromium', ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', `--user-data-dir=${mkdtempSync(join(tmpdir(), 'converge-chromium-'))}`, '--enable-logging=stderr', '--v=0', '--dump-dom', `file://${out}`], { encoding: 'utf8', timeout: 60_000 });
  // headless Chromium now and then hangs before loading anything (once in a CI run: killed after 60 s, status null); one more start with a fresh profile
  let run = chromium();
  if (run.status === null) run = chromium();
  assert.equal(run.status, 0, run.stderr);
  assert.equal((run.stdout.match(/<svg /g) ?? []).length, 8, 'the DOM holds the eight charts');
  assert.doesNotMatch(run.stderr, /CONSOLE|Uncaught|ERR_FILE_NOT_FOUND/);
});

test('converge bench and report refuse what they cannot do, in one line', () => {
  const unknown = spawnSync(process.execPath, [cli, 'bench', '--workload', 'imagenet'], { encoding: 'utf8' });
  assert.equal(unknown.status, 1);
  assert.match(unknown.stderr, /converge: error: unknown workload 'imagenet'; choose one of: fmnist-mlp, fmnist-cnn, sparse-logreg, mf, synthetic-mlp\./);
  const missing = spawnSync(process.execPath, [cli, 'report', join(dir, 'nothing-here')], { encoding: 'utf8' });
  assert.equal(missing.status, 1);
  assert.match(missing.stderr, /converge: error: .*sweep folder/);
});

test('the report times the target from every evaluation a log holds (--eval-every), else from the epochs\' ends', async () => {
  const { loadRuns, tableRows } = await import('./report.js');
  const logs = mkdtempSync(join(tmpdir(), 'converge-evaluations-'));
  const record = { workload: 'synthetic-mlp', strategy: 'allreduce', workers: 2, compress: 'none', paramPrecision: 'fp32', lrScaling: 'none', warmupEpochs: 0, epochs: 2, seed: 1, backend: 'shm', args: [], status: 'done', seconds: 5 };
  const epoch = (time: number, e: number, testAccuracy: number) => ({ type: 'epoch', time, epoch: e, trainLoss: 1, testLoss: 1, testAccuracy, samplesPerSecond: 1 });
  const lines = {
    quarters: [{ type: 'evaluation', time: 0.6, epochs: 0.5, samples: 1024, testLoss: 1, testAccuracy: 0.7 }, { type: 'evaluation', time: 1.1, epochs: 1, samples: 2048, testLoss: 1, testAccuracy: 0.75 }, epoch(1.1, 0, 0.75),
      { type: 'evaluation', time: 1.7, epochs: 1.5, samples: 3072, testLoss: 1, testAccuracy: 0.82 }, { type: 'evaluation', time: 2.2, epochs: 2, samples: 4096, testLoss: 1, testAccuracy: 0.81 }, epoch(2.2, 1, 0.81)],
    epochs: [epoch(1.1, 0, 0.75), epoch(2.2, 1, 0.81), { type: 'summary', samples: 4096, epochs: 2, samplesPerSecond: 2000, testAccuracy: 0.81 }],
  };
  for (const [id, records] of Object.entries(lines)) {
    writeFileSync(join(logs, `${id}.json`), JSON.stringify({ ...record, id }));
    writeFileSync(join(logs, `${id}.jsonl`), records.map((r) => JSON.stringify(r)).join('\n'));
  }
  const rows = tableRows(loadRuns(logs), { metric: 'testAccuracy', value: 0.8 });
  assert.deepEqual(rows.map((r) => [r.id, r.secondsToTarget, r.samplesToTarget]), [['quarters', 1.7, 3072], ['epochs', 2.2, 4096]]);
});

test('converge report draws the recompute bench\'s curve: step time against activation memory per model, with its table', () => {
  const folder = mkdtempSync(join(tmpdir(), 'converge-recompute-report-'));
  const row = (model: string, schedule: string, mib: number, ms: number, predictedMs: number | null = null) => ({ model, schedule, budget: null, arenaBytes: mib * 2 ** 20, medianStepMs: ms, predictedMs, recomputed: schedule === 'none' ? 0 : 3 });
  const rows = [row('resnet20', 'none', 268, 300), row('resnet20', 'sqrt', 157, 380), row('resnet20', 'auto', 110, 345, 338), row('resnet20', 'auto', 180, 315, 307), row('deep-mlp', 'none', 33, 90), { ...row('deep-mlp', 'revolve:2', 5, 160), measuredOverPriced: 1.034 }];
  writeFileSync(join(folder, 'recompute.json'), JSON.stringify({ rows }));
  writeFileSync(join(folder, 'model-parallel.json'), JSON.stringify({ rows: [{ label: 'not a recompute row' }] })); // other benches' results lie beside it
  const out = join(folder, 'report.html');
  const result = spawnSync(process.execPath, [cli, 'report', folder, '--out', out], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /1 workload, 2 charts/);
  const html = readFileSync(out, 'utf8');
  assert.ok(html.includes('<h2>Recompute versus store</h2>'));
  for (const model of ['resnet20', 'deep-mlp']) assert.ok(html.includes(`<figcaption>${model}: step time against activation memory</figcaption><svg`), model);
  assert.equal((html.match(/<svg /g) ?? []).length, 2);
  // a point per schedule, labelled; the table says each against storing all
  const resnet = html.slice(html.indexOf('<figcaption>resnet20'), html.indexOf('</svg>', html.indexOf('<figcaption>resnet20')));
  for (const label of ['none', 'sqrt', 'auto']) assert.ok(resnet.includes(`>${label}<`), label);
  assert.ok(html.includes('<td>0.59× memory, 1.27× time</td>'), 'sqrt against storing all');
  assert.ok(html.includes('<td>338.0 ms</td>'), "auto's prediction");
  const markdown = readFileSync(join(folder, 'summary.md'), 'utf8');
  assert.match(markdown, /\| revolve:2 \| 5\.0 MiB \| 160\.0 ms \| 0\.15× memory, 1\.78× time \| – \| 1\.03× \| 3 \|/);
  assert.match(markdown, /\| sqrt \| 157\.0 MiB \| 380\.0 ms \| 0\.59× memory, 1\.27× time \| – \| – \| 3 \|/); // older results have no priced figure
});

test('converge report draws bench:network\'s results: time to the target against link rate per model, each hook against plain all-reduce', () => {
  const folder = mkdtempSync(join(tmpdir(), 'converge-network-report-'));
  const row = (model: string, rate: string, config: string, trainSeconds: (number | null)[]) => ({ model, rate, config, target: model === 'mlp' ? 0.84 : 0.89, trainSeconds, wallSeconds: trainSeconds, samples: [], bytesPerStep: 1000 });
  writeFileSync(join(folder, 'network.json'), JSON.stringify({ rows: [
    row('mlp', '1gbit', 'all-reduce', [10]), row('mlp', '100mbit', 'all-reduce', [80]), row('mlp', 'unshaped', 'all-reduce', [3]),
    row('mlp', '100mbit', 'top-k', [20]), row('mlp', '1gbit', 'top-k', [12]), row('mlp', 'unshaped', 'top-k', [null]),
    row('mlp', '10mbit', 'all-reduce', [500]), row('cnn', '100mbit', 'all-reduce', [160]),
  ] }));
  // a later file with more seeds for one cell replaces it: the medians of 3
  writeFileSync(join(folder, 'network-seeds.json'), JSON.stringify({ rows: [row('mlp', '100mbit', 'all-reduce', [86, 151, 85]), row('mlp', '100mbit', 'top-k', [16, 15, 17])] }));
  const out = join(folder, 'report.html');
  const result = spawnSync(process.execPath, [cli, 'report', folder, '--out', out], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /2 charts/);
  const html = readFileSync(out, 'utf8');
  assert.ok(html.includes('<h2>Time to accuracy against bandwidth</h2>'));
  assert.ok(html.includes('<figcaption>mlp to 84%: training seconds against link rate</figcaption><svg'));
  assert.equal((html.match(/<svg /g) ?? []).length, 2);
  // the axis runs from the slowest link to the unshaped one, whatever order the rows came in
  const mlp = html.slice(html.indexOf('<h3>mlp</h3>'), html.indexOf('</table>', html.indexOf('<h3>mlp</h3>')));
  assert.ok(mlp.includes('<th>10 Mbit/s</th><th>100 Mbit/s</th><th>1 Gbit/s</th><th>unshaped</th>'), mlp);
  const markdown = readFileSync(join(folder, 'summary.md'), 'utf8');
  assert.match(markdown, /\| all-reduce \| 500\.0 s \| 86\.0 s \| 10\.0 s \| 3\.0 s \|/);
  assert.match(markdown, /\| top-k \| – \| 16\.0 s \(5\.38×\) \| 12\.0 s \(0\.83×\) \| not reached \|/);
});

test('the training-loss charts smooth by a centred moving average: a line stays a line, a spike spreads evenly, the ends average what they have', async () => {
  const { movingAverage } = await import('./report.js');
  const line = Array.from({ length: 20 }, (_, i) => 3 + 2 * i);
  const smoothed = movingAverage(line, 4);
  for (let i = 4; i < 16; i++) assert.equal(smoothed[i], line[i], `interior ${i}`);
  assert.equal(smoothed[0], (3 + 5 + 7 + 9 + 11) / 5, 'the first point averages itself and 4 after it');
  const spike = movingAverage([0, 0, 0, 0, 0, 0, 9, 0, 0, 0, 0, 0, 0], 1);
  assert.deepEqual(spike, [0, 0, 0, 0, 0, 3, 3, 3, 0, 0, 0, 0, 0]);
});
