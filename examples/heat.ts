// A simulation to study: the 2-D heat equation on the unit square, u_t = D ∇²u + s·g(x, y), by
// explicit finite differences on a 32 × 32 grid, with three uncertain inputs — the diffusivity
// D, the strength s of a Gaussian source at the centre, and the temperature b held on the
// boundary. It streams its temperature field at 20 output times to the study that started it,
// and writes no file.
//   converge study examples/heat-study.json       (starts 200 of these, 2 at a time)
import { connect } from 'converge/client';

const study = await connect();
const { diffusivity, source, boundary } = study.inputs;
const n = 32;
const h = 1 / (n - 1);
const outputs = study.fields.find((f) => f.name === 'temperature')!.timesteps;
const end = 0.05;
// stable for every diffusivity the study may draw (FTCS needs dt ≤ h² / 4D)
const dt = (0.2 * h * h) / Math.max(diffusivity, 1e-6);
const g = new Float64Array(n * n);
for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) g[i * n + j] = Math.exp(-((i * h - 0.5) ** 2 + (j * h - 0.5) ** 2) / 0.02);
let u = new Float64Array(n * n);
let next = new Float64Array(n * n);
const edge = (i: number, j: number) => i === 0 || j === 0 || i === n - 1 || j === n - 1;
for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) if (edge(i, j)) u[i * n + j] = boundary;
let time = 0;
for (let out = 0; out < outputs; out++) {
  const until = (end * (out + 1)) / outputs;
  while (time < until - 1e-12) {
    const step = Math.min(dt, until - time);
    const r = (diffusivity * step) / (h * h);
    for (let i = 0; i < n; i++) {
      for (let j = 0; j < n; j++) {
        const k = i * n + j;
        next[k] = edge(i, j) ? boundary : u[k] + r * (u[k - n] + u[k + n] + u[k - 1] + u[k + 1] - 4 * u[k]) + step * source * g[k];
      }
    }
    [u, next] = [next, u];
    time += step;
  }
  await study.send('temperature', out, u);
}
await study.close();
