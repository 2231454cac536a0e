// `converge report DIR` on a study's results (the folder `converge study --out DIR` wrote): heat
// maps of each field's statistics — mean, standard deviation and every parameter's Sobol
// indices — at a few timesteps, drawn on the field's grid when the study gave it a shape
// ("shape": [rows, cols]), else as timestep × cell. One self-contained HTML page of PNG images
// (heatmap.ts); it needs no charting library.

import { existsSync, readFileSync, writeFileSync, mkdirSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseNpy } from '../data/npy.js';
import { escape } from './html.js';
import { heatmapPng } from './heatmap.js';

interface StudyResults {
  runs: number;
  design: string;
  seconds: number;
  restarts: number;
  bytesStreamed: number;
  fields: { name: string; cells: number; timesteps: number; shape?: [number, number] }[];
  parameters: { name: string }[];
  files: Record<string, Record<string, string>>;
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

export function writeStudyReport(dir: string, outPath: string): { html: string; charts: number } {
  const study = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')) as StudyResults;
  const sections: string[] = [];
  let charts = 0;
  for (const field of study.fields) {
    const files = study.files[field.name] ?? {};
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
    charts += figures.length;
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
  return { html: outPath, charts };
}
