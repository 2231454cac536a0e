// converge report on a study's results: a heat map per statistic and timestep on a field with a
// grid shape, and one timestep × cell map per statistic on a field without, each a PNG of one
// pixel per cell (decoded here with zlib, and held to the study's own NPY values).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnSync } from 'node:child_process';
import { inflateSync } from 'node:zlib';
import { parseNpy } from '../data/npy.js';
import { parseStudy } from '../study/spec.js';
import { runStudy } from '../study/launch.js';
import { CELLS, TIMESTEPS } from '../study/simulation.test.fixture.js';

const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url));

test('converge report draws a study: heat maps of mean, deviation and each Sobol index, on the grid where the field has a shape', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-study-report-'));
  await runStudy(parseStudy({
    simulation: { module: fileURLToPath(new URL('../study/simulation.test.fixture.js', import.meta.url)) },
    parameters: { x: { uniform: [0, 1] }, y: { uniform: [0, 1] } },
    fields: { u: { cells: CELLS, timesteps: TIMESTEPS, shape: [2, 3] }, v: { cells: CELLS, timesteps: TIMESTEPS } },
    design: 'pick-freeze', groups: 4, concurrency: 2,
  }), { out: dir });
  const result = spawnSync(process.execPath, [cli, 'report', dir], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  // u: 6 statistics (mean, deviation, S and ST of x and y) at 3 timesteps; v: the same 6 as timestep × cell
  assert.match(result.stdout, /wrote .*report\.html \(a study, 24 heat maps\)/);
  const html = readFileSync(join(dir, 'report.html'), 'utf8');
  const figures = html.split('<figure>').slice(1);
  assert.equal(figures.length, 24);
  // each figure one PNG: its size the grid (u: 2 rows × 3 columns) or timesteps × cells (v), one pixel a cell
  const images = figures.map((figure) => {
    const png = Buffer.from(/src="data:image\/png;base64,([^"]+)"/.exec(figure)![1], 'base64');
    const width = png.readUInt32BE(16);
    const height = png.readUInt32BE(20);
    const data = inflateSync(png.subarray(41, 41 + png.readUInt32BE(33)));
    const pixel = (r: number, c: number) => [...data.subarray(r * (1 + 3 * width) + 1 + 3 * c, r * (1 + 3 * width) + 4 + 3 * c)];
    return { width, height, pixel };
  });
  assert.deepEqual(images.slice(0, 18).map((i) => [i.height, i.width]), new Array(18).fill([2, 3]));
  assert.deepEqual(images.slice(18).map((i) => [i.height, i.width]), new Array(6).fill([TIMESTEPS, CELLS]));
  // the first image is u's mean at timestep 0: its largest cell is viridis's top colour, its smallest the bottom
  const mean = parseNpy(readFileSync(join(dir, 'u.mean.npy')), 'u.mean.npy').values.subarray(0, CELLS);
  const largest = mean.indexOf(Math.max(...mean));
  const smallest = mean.indexOf(Math.min(...mean));
  assert.deepEqual(images[0].pixel(Math.floor(largest / 3), largest % 3), [253, 231, 37]);
  assert.deepEqual(images[0].pixel(Math.floor(smallest / 3), smallest % 3), [68, 1, 84]);
  for (const title of ['mean, timestep 0', 'standard deviation, timestep 2', 'first-order Sobol index of x, timestep 4', 'total Sobol index of y, timestep × cell']) assert.ok(html.includes(`<figcaption>${title}</figcaption>`), title);
  // the study's own summary.json is left as it was
  assert.equal(JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8')).runs, 16);
});

test('converge report on a surrogate study: its figures, and the held-out RMSE along the study\'s clock on a log scale beside the mean field\'s', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-surrogate-report-'));
  const curve = [{ seconds: 2, rmse: 1 }, { seconds: 6, rmse: 0.1 }, { seconds: 10, rmse: 0.01 }].map((p) => ({ ...p, mse: p.rmse ** 2, samples: 0, epochs: 1 }));
  const surrogate = { produced: 300, consumed: 9000, evicted: 12, producedPerSecond: 30, consumedPerSecond: 1000, began: 2, ended: 10, heldOutMse: 1e-4, heldOutRmse: 0.01, meanFieldMse: 1, curve, parameters: 1234, checkpoint: 'x' };
  writeFileSync(join(dir, 'summary.json'), JSON.stringify({ runs: 20, design: 'monte-carlo', seconds: 10, restarts: 0, bytesStreamed: 2 ** 20, fields: [{ name: 'w', cells: 8, timesteps: 4 }], parameters: [{ name: 'x' }], files: {}, surrogate }));
  const result = spawnSync(process.execPath, [cli, 'report', dir], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  assert.match(result.stdout, /wrote .*report\.html \(a study, its surrogate's held-out error\)/);
  const html = readFileSync(join(dir, 'report.html'), 'utf8');
  assert.match(html, /Held-out RMSE per value <b>0\.0100<\/b>; predicting each held-out run by their mean field: 1\.00/);
  assert.match(html, /drawing 9000 \(1000 a second, against 30\.0 produced\)/);
  // 520 × 260 with margins 60/16/12/36: x = 60 + 444·t/10, y = 12 + 212·(0 − log10 v)/2
  const points = /<polyline[^>]* points="([^"]+)"/.exec(html)![1];
  assert.equal(points, '148.8,12.0 326.4,118.0 504.0,224.0');
});
