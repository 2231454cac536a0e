// `converge report DIR --out report.html`: reads a sweep's logs and writes one self-contained
// HTML page (charts as inline SVG, rendered in Node by Vega-Lite; no script, no network), plus
// summary.md and summary.json with the same tables. Per workload: test accuracy (or RMSE) and
// training loss against wall time and against samples seen (statistical efficiency), samples/s
// against workers (hardware efficiency), bytes per worker per step, and the time to the
// workload's target for every configuration, best first.

import { existsSync, readFileSync, readdirSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { missingData } from '../errors.js';
import { escape, svg } from './html.js';
import { loadNetwork, networkSection } from './report-network.js';
import type { RunRecord } from './sweep.js';
import { reached, workload as findWorkload, workloads, type Target } from './workloads.js';

interface Step { time: number; epoch: number; samples: number; loss: number; bytesSent: number }
interface Epoch { time: number; epoch: number; trainLoss: number; testLoss: number; testAccuracy?: number; testRmse?: number; samplesPerSecond: number }
/** A point where the test split was scored: every evaluation (--eval-every) where a log has them, else each epoch's end. */
interface Evaluation { time: number; samples: number; testLoss?: number; testAccuracy?: number; testRmse?: number }
interface Summary { testAccuracy: number; testRmse: number | null; testLoss: number; samples: number; samplesPerSecond: number; wallSeconds: number; bytesPerWorkerPerStep: number; epochs: number }

export interface Run {
  record: RunRecord;
  label: string;
  steps: Step[];
  epochs: (Epoch & { samples: number })[];
  evaluations: Evaluation[];
  summary: Summary | null;
}

export interface Row {
  id: string;
  label: string;
  strategy: string;
  workers: number;
  compress: string;
  paramPrecision: string;
  batch: number | null;
  status: string;
  /** wall seconds (from the start of the run) to the first evaluation at the target; null: not reached */
  secondsToTarget: number | null;
  samplesToTarget: number | null;
  final: number | null; // the metric after the last epoch
  samplesPerSecond: number | null;
  bytesPerWorkerPerStep: number | null;
  message?: string;
}

/** A short name for a configuration: what differs from the defaults. */
export function labelOf(r: RunRecord): string {
  const parts = [`${r.strategy} ×${r.workers}`];
  if (r.compress !== 'none') parts.push(r.compress);
  if (r.paramPrecision !== 'fp32') parts.push(`params ${r.paramPrecision}`);
  if (r.batch !== undefined && r.batch !== null) parts.push(`batch ${r.batch}`);
  if (r.lr !== undefined && r.lr !== null) parts.push(`lr ${r.lr}`);
  if (r.lrScaling !== 'none') parts.push(`lr ${r.lrScaling}`);
  if (r.warmupEpochs > 0) parts.push(`warm-up ${r.warmupEpochs}`);
  if (r.backend !== 'shm') parts.push(r.backend);
  return parts.join(', ');
}

/** A row of bench/recompute's results: one schedule on one model. */
export interface RecomputeRow {
  model: string;
  schedule: string;
  budget: number | null;
  arenaBytes: number;
  medianStepMs: number;
  predictedMs: number | null;
  /** The step time ÷ the schedule priced on a profile measured just before it (median over repeats; absent in older results). */
  measuredOverPriced?: number;
  recomputed: number;
}

/** The recompute bench's rows in a folder (files recompute*.json, as npm run bench:recompute writes them), or none. */
export function loadRecompute(dir: string): RecomputeRow[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).filter((f) => /^recompute.*\.json$/.test(f)).sort().flatMap((file) => {
    const parsed = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { rows?: RecomputeRow[] };
    return Array.isArray(parsed.rows) && parsed.rows.every((r) => typeof r.arenaBytes === 'number' && typeof r.medianStepMs === 'number') ? parsed.rows : [];
  });
}

/** Step time against activation memory, one chart per model: every schedule a point, auto's budgets joined by a line. */
async function recomputeSection(rows: RecomputeRow[]): Promise<{ html: string; markdown: string; charts: number }> {
  const models = [...new Set(rows.map((r) => r.model))];
  const parts: string[] = [];
  const markdown: string[] = ['## Recompute versus store', ''];
  for (const model of models) {
    const own = rows.filter((r) => r.model === model);
    const all = own.find((r) => r.schedule === 'none');
    const points = own.map((r) => ({ schedule: r.schedule.startsWith('auto') ? 'auto' : r.schedule.replace(/:\d+$/, ''), label: r.schedule, mib: r.arenaBytes / 2 ** 20, ms: r.medianStepMs }));
    const chart = await svg({
      data: { values: points },
      layer: [
        { transform: [{ filter: "datum.schedule === 'auto'" }], mark: { type: 'line', color: '#999' }, encoding: { x: { field: 'mib', type: 'quantitative' }, y: { field: 'ms', type: 'quantitative' }, order: { field: 'mib' } } },
        { mark: { type: 'point', filled: true, size: 80 }, encoding: { x: { field: 'mib', type: 'quantitative', title: 'activation memory a step holds (MiB)', scale: { zero: true } }, y: { field: 'ms', type: 'quantitative', title: 'step time (ms)', scale: { zero: false } }, color: { field: 'schedule', type: 'nominal', title: 'schedule' } } },
        { mark: { type: 'text', dx: 6, align: 'left', fontSize: 10 }, encoding: { x: { field: 'mib', type: 'quantitative' }, y: { field: 'ms', type: 'quantitative' }, text: { field: 'label' } } },
      ],
    });
    const ratio = (r: RecomputeRow) => (all ? `${(r.arenaBytes / all.arenaBytes).toFixed(2)}× memory, ${(r.medianStepMs / all.medianStepMs).toFixed(2)}× time` : '');
    const cells = own.map((r) => [r.schedule, fmt.mib(r.arenaBytes), `${r.medianStepMs.toFixed(1)} ms`, ratio(r), r.predictedMs === null ? '–' : `${r.predictedMs.toFixed(1)} ms`, r.measuredOverPriced === undefined ? '–' : `${r.measuredOverPriced.toFixed(2)}×`, String(r.recomputed)]);
    const head = ['schedule', 'activation memory', 'step time', 'against storing all', 'predicted at start-up (auto)', 'measured ÷ priced just before', 'forward passes again'];
    parts.push(`<h3>${escape(model)}</h3><table><thead><tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr></thead><tbody>${cells.map((c) => `<tr>${c.map((v) => `<td>${escape(v)}</td>`).join('')}</tr>`).join('')}</tbody></table><figure><figcaption>${escape(model)}: step time against activation memory</figcaption>${chart}</figure>`);
    markdown.push(`### ${model}`, '', `| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...cells.map((c) => `| ${c.join(' | ')} |`), '');
  }
  const html = `<section id="recompute"><h2>Recompute versus store</h2><p>Each --recompute schedule's activation memory (the arena a step holds) and training-step time (npm run bench:recompute).</p>${parts.join('')}</section>`;
  return { html, markdown: markdown.join('\n'), charts: models.length };
}

export function loadRuns(dir: string, optional = false): Run[] {
  if (!existsSync(dir)) throw missingData('sweep folder', dir, "run 'converge bench … --out DIR' first.");
  const runs: Run[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.json') && f !== 'sweep.json' && !f.startsWith('summary')).sort()) {
    const record = JSON.parse(readFileSync(join(dir, file), 'utf8')) as RunRecord;
    if (!record.id || !record.workload) continue;
    const log = join(dir, `${record.id}.jsonl`);
    const lines = existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
    const summary = (lines.find((l) => l.type === 'summary') as Summary | undefined) ?? null;
    const steps = lines.filter((l) => l.type === 'step') as Step[];
    const epochRecords = lines.filter((l) => l.type === 'epoch') as Epoch[];
    // samples seen at each epoch's end: the last step record of the epoch, else by proportion
    const perEpoch = summary ? summary.samples / Math.max(1, summary.epochs) : 0;
    const epochs = epochRecords.map((e) => {
      const last = steps.filter((s) => s.epoch === e.epoch).pop();
      return { ...e, samples: last ? Math.max(last.samples, (e.epoch + 1) * perEpoch) : (e.epoch + 1) * perEpoch };
    });
    const evaluationRecords = lines.filter((l) => l.type === 'evaluation') as Evaluation[];
    const evaluations = evaluationRecords.length > 0 ? evaluationRecords : epochs;
    runs.push({ record, label: labelOf(record), steps, epochs, evaluations, summary });
  }
  if (runs.length === 0 && !optional) throw missingData('sweep logs', dir, "the folder holds no configuration of 'converge bench', nor the results of npm run bench:recompute or bench:network.");
  return runs;
}

const metricOf = (target: Target, e: Evaluation) => (target.metric === 'testAccuracy' ? e.testAccuracy : e.testRmse);

export function tableRows(runs: Run[], target: Target): Row[] {
  const rows = runs.map((run): Row => {
    const hit = run.evaluations.find((e) => reached(target, metricOf(target, e)));
    const last = run.epochs[run.epochs.length - 1];
    return {
      id: run.record.id, label: run.label, strategy: run.record.strategy, workers: run.record.workers, compress: run.record.compress,
      paramPrecision: run.record.paramPrecision, batch: run.record.batch ?? null, status: run.record.status,
      secondsToTarget: hit ? hit.time : null, samplesToTarget: hit ? hit.samples : null,
      final: last ? (metricOf(target, last) ?? null) : null,
      samplesPerSecond: run.summary?.samplesPerSecond ?? null, bytesPerWorkerPerStep: run.summary?.bytesPerWorkerPerStep ?? null,
      ...(run.record.message ? { message: run.record.message } : {}),
    };
  });
  // best first: reached, fastest; then not reached, best final metric; failed last
  const better = target.metric === 'testAccuracy' ? -1 : 1;
  return rows.sort((a, b) => {
    if ((a.secondsToTarget === null) !== (b.secondsToTarget === null)) return a.secondsToTarget === null ? 1 : -1;
    if (a.secondsToTarget !== null && b.secondsToTarget !== null) return a.secondsToTarget - b.secondsToTarget;
    if ((a.final === null) !== (b.final === null)) return a.final === null ? 1 : -1;
    return better * ((a.final ?? 0) - (b.final ?? 0));
  });
}

export interface Chart { title: string; svg: string }

/** The centred moving average of `values` over ±radius neighbours (fewer at the ends): a minibatch loss is noisy. */
export function movingAverage(values: number[], radius: number): number[] {
  return values.map((_, i) => {
    const from = Math.max(0, i - radius);
    const to = Math.min(values.length, i + radius + 1);
    let sum = 0;
    for (let j = from; j < to; j++) sum += values[j];
    return sum / (to - from);
  });
}

/** Logged steps per side over which the training-loss charts smooth. */
const SMOOTHING = 4;

export async function charts(runs: Run[], target: Target): Promise<Chart[]> {
  const metric = target.metric === 'testAccuracy' ? 'test accuracy' : 'test RMSE';
  const epochPoints = runs.flatMap((r) => r.evaluations.map((e) => ({ configuration: r.label, seconds: e.time, samples: e.samples, value: metricOf(target, e) ?? null })));
  const stepPoints = runs.flatMap((r) => {
    // a short log keeps more of its shape: the window is at most an eighth of it
    const smoothed = movingAverage(r.steps.map((s) => s.loss), Math.min(SMOOTHING, Math.floor((r.steps.length - 1) / 8)));
    return r.steps.map((s, i) => ({ configuration: r.label, seconds: s.time, samples: s.samples, loss: s.loss, smoothed: smoothed[i] }));
  });
  const color = { field: 'configuration', type: 'nominal', title: 'configuration' };
  const rule = { mark: { type: 'rule', strokeDash: [4, 4], color: 'gray' }, encoding: { y: { datum: target.value } } };
  // accuracy reads in percent on its axis
  const percent = target.metric === 'testAccuracy' ? { axis: { format: '%' } } : {};
  // the moving average, and the minibatch loss faint over it; the legend is the average's
  const trainingLoss = (x: string, xTitle: string) => ({
    data: { values: stepPoints },
    resolve: { legend: { color: 'independent' } },
    layer: [
      { mark: { type: 'line' }, encoding: { x: { field: x, type: 'quantitative', title: xTitle }, y: { field: 'smoothed', type: 'quantitative', title: 'training loss (faint: each minibatch)', scale: { type: 'log' } }, color } },
      { mark: { type: 'line', opacity: 0.2 }, encoding: { x: { field: x, type: 'quantitative' }, y: { field: 'loss', type: 'quantitative' }, color: { ...color, legend: null } } },
    ],
  });
  const line = (data: object[], x: string, xTitle: string, y: string, yTitle: string, withTarget: boolean, log = false) => ({
    data: { values: data },
    layer: [
      { mark: { type: 'line', point: data === epochPoints || data === testLoss }, encoding: { x: { field: x, type: 'quantitative', title: xTitle }, y: { field: y, type: 'quantitative', title: yTitle, scale: log ? { type: 'log' } : { zero: false }, ...(withTarget ? percent : {}) }, color } },
      ...(withTarget ? [rule] : []),
    ],
  });
  const speed = runs.filter((r) => r.summary).map((r) => ({ series: [r.record.strategy, r.record.compress !== 'none' ? r.record.compress : '', r.record.paramPrecision !== 'fp32' ? r.record.paramPrecision : ''].filter(Boolean).join(' '), workers: r.record.workers, samplesPerSecond: r.summary!.samplesPerSecond }));
  const bytes = runs.filter((r) => r.summary).map((r) => ({ configuration: r.label, bytes: Math.max(1, r.summary!.bytesPerWorkerPerStep) }));
  const testLoss = runs.flatMap((r) => r.evaluations.filter((e) => e.testLoss !== undefined).map((e) => ({ configuration: r.label, seconds: e.time, loss: e.testLoss })));
  // speedup of each series over its own 1-worker run, beside the ideal (P workers, P times the rate)
  const speedup = speed.flatMap((point) => {
    const one = speed.find((other) => other.series === point.series && other.workers === 1);
    return one ? [{ ...point, speedup: point.samplesPerSecond / one.samplesPerSecond }] : [];
  });
  const most = Math.max(1, ...speedup.map((point) => point.workers));
  const specs: [string, object][] = [
    [`${metric} against wall time`, line(epochPoints, 'seconds', 'wall time (s)', 'value', metric, true)],
    [`${metric} against samples seen`, line(epochPoints, 'samples', 'samples seen', 'value', metric, true)],
    ['training loss against wall time', trainingLoss('seconds', 'wall time (s)')],
    ['training loss against samples seen', trainingLoss('samples', 'samples seen')],
    ['samples per second against workers', { data: { values: speed }, mark: { type: 'line', point: true }, encoding: { x: { field: 'workers', type: 'quantitative', title: 'workers', axis: { tickMinStep: 1 } }, y: { field: 'samplesPerSecond', type: 'quantitative', title: 'samples / s' }, color: { field: 'series', type: 'nominal', title: 'strategy' } } }],
    ['speedup against workers', { layer: [
      { data: { values: [{ workers: 1, ideal: 1 }, { workers: most, ideal: most }] }, mark: { type: 'line', strokeDash: [4, 4], color: 'gray' }, encoding: { x: { field: 'workers', type: 'quantitative' }, y: { field: 'ideal', type: 'quantitative' } } },
      { data: { values: speedup }, mark: { type: 'line', point: true }, encoding: { x: { field: 'workers', type: 'quantitative', title: 'workers', axis: { tickMinStep: 1 } }, y: { field: 'speedup', type: 'quantitative', title: 'speedup over 1 worker (dashed: ideal)' }, color: { field: 'series', type: 'nominal', title: 'strategy' } } },
    ] }],
    ['test loss against wall time', line(testLoss, 'seconds', 'wall time (s)', 'loss', 'test loss', false)],
    // points, not bars: a bar on a log scale starts at 0, which the scale cannot draw
    ['bytes each worker sends per step', { data: { values: bytes }, mark: { type: 'point', filled: true, size: 90 }, encoding: { y: { field: 'configuration', type: 'nominal', title: null, sort: '-x' }, x: { field: 'bytes', type: 'quantitative', title: 'bytes per worker per step (log)', scale: { type: 'log' } } } }],
  ];
  const out: Chart[] = [];
  for (const [title, spec] of specs) out.push({ title, svg: await svg(spec) });
  return out;
}

const fmt = {
  seconds: (s: number | null) => (s === null ? 'not reached' : `${s.toFixed(1)} s`),
  samples: (n: number | null) => (n === null ? '–' : Math.round(n).toLocaleString('en-US')),
  metric: (t: Target, v: number | null) => (v === null ? '–' : t.metric === 'testAccuracy' ? `${(100 * v).toFixed(2)}%` : v.toFixed(4)),
  rate: (n: number | null) => (n === null ? '–' : Math.round(n).toLocaleString('en-US')),
  mib: (bytes: number) => `${(bytes / 2 ** 20).toFixed(1)} MiB`,
};

function targetText(target: Target): string {
  return target.metric === 'testAccuracy' ? `test accuracy ≥ ${(100 * target.value).toFixed(0)}%` : `test RMSE ≤ ${target.value}`;
}

function markdownTable(rows: Row[], target: Target): string {
  const head = `| configuration | time to target | samples to target | final ${target.metric === 'testAccuracy' ? 'accuracy' : 'RMSE'} | samples/s | bytes/worker/step |\n|---|---|---|---|---|---|\n`;
  return head + rows.map((r) => `| ${r.label}${r.status === 'failed' ? ` (failed: ${r.message})` : ''} | ${fmt.seconds(r.secondsToTarget)} | ${fmt.samples(r.samplesToTarget)} | ${fmt.metric(target, r.final)} | ${fmt.rate(r.samplesPerSecond)} | ${fmt.rate(r.bytesPerWorkerPerStep)} |`).join('\n');
}

export async function writeReport(dir: string, outPath: string): Promise<{ html: string; markdown: string; json: string; charts: number; tables: number }> {
  const recompute = loadRecompute(dir);
  const network = loadNetwork(dir);
  const runs = loadRuns(dir, recompute.length > 0 || network.length > 0);
  const byWorkload = new Map<string, Run[]>();
  for (const run of runs) byWorkload.set(run.record.workload, [...(byWorkload.get(run.record.workload) ?? []), run]);
  const sections: string[] = [];
  const markdown: string[] = ['# converge report', '', `From ${runs.length} configurations in \`${dir}\`, ${new Date().toISOString().slice(0, 10)}.`, ''];
  const json: Record<string, unknown> = {};
  let chartCount = 0;
  for (const [name, group] of byWorkload) {
    const w = workloads[name] ?? findWorkload(name);
    const rows = tableRows(group, w.target);
    const drawn = await charts(group, w.target);
    chartCount += drawn.length;
    json[name] = { description: w.description, target: w.target, rows };
    markdown.push(`## ${name}`, '', `${w.description}. Target: ${targetText(w.target)}.`, '', markdownTable(rows, w.target), '');
    const table = `<table><thead><tr><th>configuration</th><th>time to target</th><th>samples to target</th><th>final ${w.target.metric === 'testAccuracy' ? 'accuracy' : 'RMSE'}</th><th>samples/s</th><th>bytes/worker/step</th></tr></thead><tbody>${rows
      .map((r) => `<tr class="${r.status}"><td>${escape(r.label)}${r.status === 'failed' ? ` <em>(failed: ${escape(r.message ?? '')})</em>` : ''}</td><td>${fmt.seconds(r.secondsToTarget)}</td><td>${fmt.samples(r.samplesToTarget)}</td><td>${fmt.metric(w.target, r.final)}</td><td>${fmt.rate(r.samplesPerSecond)}</td><td>${fmt.rate(r.bytesPerWorkerPerStep)}</td></tr>`)
      .join('')}</tbody></table>`;
    sections.push(`<section id="${escape(name)}"><h2>${escape(name)}</h2><p>${escape(w.description)}. Target: ${escape(targetText(w.target))}.</p><h3>Time to target, best first</h3>${table}<div class="charts">${drawn.map((c) => `<figure><figcaption>${escape(c.title)}</figcaption>${c.svg}</figure>`).join('')}</div></section>`);
  }
  // other benches' results placed in the folder, each its own section
  const extras: [string, unknown[], () => Promise<{ html: string; markdown: string; charts: number }>][] = [
    ['recompute', recompute, () => recomputeSection(recompute)],
    ['network', network, () => networkSection(network)],
  ];
  for (const [key, rows, draw] of extras) {
    if (rows.length === 0) continue;
    const drawn = await draw();
    sections.push(drawn.html);
    markdown.push(drawn.markdown, '');
    json[key] = rows;
    chartCount += drawn.charts;
  }
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>converge report</title>
<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border-bottom: 1px solid #ddd; padding: 4px 10px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.failed td { color: #a00; }
.charts { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; } figcaption { font-weight: bold; margin: 0.5em 0; }
</style></head>
<body><h1>converge report</h1>
<p>${runs.length} configurations${recompute.length > 0 ? ` and ${recompute.length} recompute schedules` : ''}${network.length > 0 ? ` and ${network.length} bandwidth measurements` : ''} from <code>${escape(dir)}</code>. Hardware efficiency is samples per second; statistical efficiency is accuracy (or loss) per sample seen; what matters is their product, the time to the target.</p>
${sections.join('\n')}
</body></html>
`;
  const outDir = dirname(outPath);
  mkdirSync(outDir, { recursive: true });
  writeFileSync(outPath, html);
  const markdownPath = join(outDir, 'summary.md');
  const jsonPath = join(outDir, 'summary.json');
  writeFileSync(markdownPath, `${markdown.join('\n')}\n`);
  writeFileSync(jsonPath, `${JSON.stringify(json, null, 2)}\n`);
  return { html: outPath, markdown: markdownPath, json: jsonPath, charts: chartCount, tables: byWorkload.size + (recompute.length > 0 ? 1 : 0) + (network.length > 0 ? 1 : 0) };
}
