// `converge report DIR` on a study's results (the folder `converge study --out DIR` wrote): heat
// maps of each field's statistics — mean, standard deviation and every parameter's Sobol
// indices — at a few timesteps, drawn on the field's grid when the study gave it a shape
// ("shape": [rows, cols]), else as timestep × cell; for a study that trained a surrogate, its
// held-out error along the study's clock. One self-contained HTML page of PNG images
// (heatmap.ts) and SVG; it needs no charting library.

import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseNpy } from '../data/npy.js';
import { escape } from './html.js';
import { heatmapPng } from './heatmap.js';
import type { SurrogateSummary } from '../study/launch.js';

interface StudyResults {
  runs: number;
  design: string;
  seconds: number;
  restarts: number;
  bytesStreamed: number;
  fields: { name: string; cells: number; timesteps: number; shape?: [number, number] }[];
  parameters: { name: string }[];
  files: Record<string, Record<string, string>>;
  surrogate?: SurrogateSummary;
  /** A surrogate study run with --write-samples: where the samples went. */
  samples?: string;
}

/** Whether a folder holds a study's results (its summary.json lists fields and their files). */
export function isStudy(dir: string): boolean {
  const path = join(dir, 'summary.json');
  if (!existsSync(path)) return false;
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as Partial<StudyResults>;
    return Array.isArray(parsed.fields) && typeof parsed.files === 'object' && parsed.files !== null;
  } catch {
    return false;
  }
}

/** The timesteps drawn: the first, the middle and the last. */
const shown = (timesteps: number) => [...new Set([0, Math.floor((timesteps - 1) / 2), timesteps - 1])];

/** One statistic as an image: the field's grid at a timestep when it has a shape, else timestep × cell. */
function heatMap(values: Float64Array, field: StudyResults['fields'][number], timestep: number | null, title: string): string {
  const [rows, cols] = timestep !== null && field.shape ? field.shape : [field.timesteps, field.cells];
  const from = timestep !== null && field.shape ? timestep * field.cells : 0;
  const { png, min, max } = heatmapPng(values.subarray(from, from + rows * cols), rows, cols);
  // scaled up to about 240 pixels a side, each cell a sharp block
  const scale = Math.max(1, Math.floor(240 / Math.max(rows, cols)));
  const range = (v: number) => (Number.isFinite(v) ? v.toPrecision(3) : '–');
  return `<figure><figcaption>${escape(title)}</figcaption><img alt="${escape(title)}" width="${cols * scale}" height="${rows * scale}" src="data:image/png;base64,${png.toString('base64')}"><div class="range">${range(min)} <span class="ramp"></span> ${range(max)}</div></figure>`;
}

export function writeStudyReport(dir: string, outPath: string): { html: string; heatMaps: number; surrogate: boolean } {
  const study = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as StudyResults;
  const sections: string[] = [];
  let heatMaps = 0;
  if (study.surrogate) sections.push(surrogateSection(study.surrogate));
  if (study.samples) sections.push(`<section><h2>samples</h2><p>Written to <code>${escape(study.samples)}</code> for offline training (<code>converge train --dataset ${escape(study.samples)}</code>).</p></section>`);
  for (const field of study.fields) {
    const files = study.files[field.name];
    if (!files) continue; // a surrogate study keeps no statistics
    const load = (statistic: string) => parseNpy(readFileSync(join(dir, files[statistic])), files[statistic]).values;
    const statistics: [string, Float64Array][] = [['mean', load('mean')], ['standard deviation', load('variance').map(Math.sqrt)]];
    for (const { name } of study.parameters) {
      for (const kind of ['first', 'total']) if (files[`sobol-${kind}-${name}`]) statistics.push([`${kind === 'first' ? 'first-order' : 'total'} Sobol index of ${name}`, load(`sobol-${kind}-${name}`)]);
    }
    const figures: string[] = [];
    for (const [label, values] of statistics) {
      if (field.shape) {
        for (const t of shown(field.timesteps)) figures.push(heatMap(values, field, t, `${label}, timestep ${t}`));
      } else figures.push(heatMap(values, field, null, `${label}, timestep × cell`));
    }
    heatMaps += figures.length;
    sections.push(`<section><h2>${escape(field.name)}</h2><p>${field.cells} cells${field.shape ? ` (${field.shape[0]} × ${field.shape[1]})` : ''}, ${field.timesteps} timesteps.</p><div class="charts">${figures.join('')}</div></section>`);
  }
  const html = `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>converge study</title>
<style>
body { font-family: sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; } figure { margin: 0; } figcaption { font-size: 13px; margin-bottom: 4px; }
img { image-rendering: pixelated; display: block; } .range { font-size: 12px; display: flex; align-items: center; gap: 4px; }
.ramp { display: inline-block; width: 120px; height: 10px; background: linear-gradient(to right, #440154, #3b528b, #21918c, #5ec962, #fde725); }
</style></head>
<body><h1>converge study</h1>
<p>${study.runs} runs (${escape(study.design)}) in ${study.seconds.toFixed(1)} s, ${(study.bytesStreamed / 2 ** 20).toFixed(1)} MiB streamed, ${study.restarts} restarted; parameters ${study.parameters.map((p) => escape(p.name)).join(', ')}. From <code>${escape(dir)}</code>.</p>
${sections.join('\n')}
</body></html>
`;
  mkdirSync(dirname(outPath), { recursive: true });
  writeFileSync(outPath, html);
  return { html: outPath, heatMaps, surrogate: study.surrogate !== undefined };
}

/** A surrogate's figures, and its held-out RMSE against seconds since the study started (log scale), beside the mean field's. */
function surrogateSection(s: SurrogateSummary): string {
  const width = 520;
  const height = 260;
  const margin = { left: 60, right: 16, top: 12, bottom: 36 };
  const meanField = Math.sqrt(s.meanFieldMse);
  const points = s.curve.filter((p) => p.rmse > 0 && Number.isFinite(p.rmse));
  const values = [...points.map((p) => p.rmse), meanField];
  const [low, high] = [Math.log10(Math.min(...values)), Math.log10(Math.max(...values))];
  const seconds = Math.max(s.ended, ...points.map((p) => p.seconds));
  const x = (t: number) => margin.left + (t / seconds) * (width - margin.left - margin.right);
  const y = (v: number) => margin.top + ((high - Math.log10(v)) / Math.max(1e-9, high - low)) * (height - margin.top - margin.bottom);
  const line = points.map((p) => `${x(p.seconds).toFixed(1)},${y(p.rmse).toFixed(1)}`).join(' ');
  const ticks = Array.from({ length: Math.floor(high) - Math.ceil(low) + 1 }, (_, k) => 10 ** (Math.ceil(low) + k));
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-size="11">
<line x1="${margin.left}" y1="${height - margin.bottom}" x2="${width - margin.right}" y2="${height - margin.bottom}" stroke="#888"/>
<line x1="${margin.left}" y1="${margin.top}" x2="${margin.left}" y2="${height - margin.bottom}" stroke="#888"/>
${ticks.map((v) => `<text x="${margin.left - 4}" y="${y(v) + 4}" text-anchor="end">${v.toExponential(0)}</text>`).join('')}
<text x="${(margin.left + width) / 2}" y="${height - 6}" text-anchor="middle">seconds since the study started</text>
<line x1="${x(s.began)}" y1="${margin.top}" x2="${x(s.began)}" y2="${height - margin.bottom}" stroke="#bbb" stroke-dasharray="3 3"/>
<line x1="${margin.left}" y1="${y(meanField)}" x2="${width - margin.right}" y2="${y(meanField)}" stroke="#c44" stroke-dasharray="5 3"/>
<text x="${width - margin.right}" y="${y(meanField) - 4}" text-anchor="end" fill="#c44">the runs' mean field</text>
<polyline fill="none" stroke="#21918c" stroke-width="2" points="${line}"/>
</svg>`;
  return `<section><h2>surrogate</h2><p>Trained from ${s.began.toFixed(1)} s to ${s.ended.toFixed(1)} s on ${s.produced} samples as they came (${s.evicted} evicted from full buffers), drawing ${s.consumed} (${s.consumedPerSecond.toFixed(0)} a second, against ${s.producedPerSecond.toFixed(1)} produced); ${s.parameters} parameters. Held-out RMSE per value <b>${s.heldOutRmse.toPrecision(3)}</b>; predicting each held-out run by their mean field: ${meanField.toPrecision(3)}.</p><figure><figcaption>held-out RMSE per value</figcaption>${svg}</figure></section>`;
}
