// A simulation for the study tests, run as a module ({ "module": ".../simulation.test.fixture.js" }):
// two fields of 6 cells over 5 timesteps, closed-form functions of the run's inputs x and y, so
// a test can compute every run's outputs itself. Faults on request, for one run's first attempt:
//   CONVERGE_TEST_CRASH=run:timestep   exits with code 3 right after sending that timestep
//   CONVERGE_TEST_HANG=run:timestep    stops there and never returns
//   CONVERGE_TEST_CELLS=n              sends n cells instead of 6 (a simulation that disagrees)
//   CONVERGE_TEST_SKIP=t               never sends timestep t, and closes as if done
//   CONVERGE_TEST_PIECES=a,b           sends each field in pieces: cells 0..a, a..b, b..end
// Started as several processes (mpirun), process p of P sends its own cells, p·6/P .. (p+1)·6/P.
import type { StudyClient } from './client.js';

export const CELLS = 6;
export const TIMESTEPS = 5;

/** The fields of run inputs { x, y } at timestep t: u and v. */
export function outputs(inputs: Record<string, number>, t: number): { u: number[]; v: number[] } {
  const { x, y } = inputs;
  const u = Array.from({ length: CELLS }, (_, i) => Math.sin(x) * (i + 1) + 0.5 * t * y * y + x * y * (i % 3) + 100);
  const v = Array.from({ length: CELLS }, (_, i) => u[i] * 0.25 + Math.cos(y * (t + 1)) + i);
  return { u, v };
}

const fault = (name: string, study: StudyClient): number | null => {
  const value = process.env[name];
  if (!value || study.attempt > 0) return null;
  const [run, timestep] = value.split(':').map(Number);
  return run === study.run ? timestep : null;
};

export default async function simulate(study: StudyClient): Promise<void> {
  const crash = fault('CONVERGE_TEST_CRASH', study);
  const hang = fault('CONVERGE_TEST_HANG', study);
  const cells = Number(process.env.CONVERGE_TEST_CELLS ?? CELLS);
  const skip = Number(process.env.CONVERGE_TEST_SKIP ?? -1);
  const { rank, size } = study.process;
  const cuts = [Math.floor((rank * CELLS) / size), ...(process.env.CONVERGE_TEST_PIECES?.split(',').map(Number) ?? []), Math.floor(((rank + 1) * CELLS) / size)];
  const send = async (field: string, t: number, values: number[]) => {
    if (cuts.length === 2 && size === 1) return study.send(field, t, values);
    // (the last piece first: pieces may come in any order)
    for (let k = cuts.length - 2; k >= 0; k--) await study.send(field, t, values.slice(cuts[k], cuts[k + 1]), cuts[k]);
  };
  for (let t = 0; t < TIMESTEPS; t++) {
    if (t === skip) continue;
    const { u, v } = outputs(study.inputs, t);
    await send('u', t, cells === CELLS ? u : new Array(cells).fill(0));
    await send('v', t, v);
    if (t === crash) process.exit(3);
    if (t === hang) await new Promise(() => setInterval(() => {}, 1000));
  }
}
