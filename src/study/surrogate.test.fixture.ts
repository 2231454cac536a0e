// A simulation for the surrogate tests, run as a module: a field w of 8 cells over 4 timesteps,
// a smooth closed-form function of the run's inputs x and y (so a test can compute every sample
// itself, and a small network can learn it), and a second field the surrogate does not predict.
//   CONVERGE_TEST_CRASH=run:timestep   exits with code 3 right after sending that timestep (first attempt only)
import type { StudyClient } from './client.js';

export const CELLS = 8;
export const TIMESTEPS = 4;

export function field(x: number, y: number, t: number): number[] {
  return Array.from({ length: CELLS }, (_, i) => (Math.sin(x) * (i + 1)) / 4 + (0.3 * y * t) / 3 + 0.1 * i);
}

export default async function simulate(study: StudyClient): Promise<void> {
  const [run, crashAt] = (process.env.CONVERGE_TEST_CRASH ?? '-1:-1').split(':').map(Number);
  const { x, y } = study.inputs;
  for (let t = 0; t < TIMESTEPS; t++) {
    await study.send('w', t, field(x, y, t));
    await study.send('extra', t, [x, y]);
    if (study.run === run && study.attempt === 0 && t === crashAt) process.exit(3);
  }
}
