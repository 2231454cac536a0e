// study(): `converge study` as a function — the description checked as STUDY.json is, then the
// runs launched and streamed into statistics, written under `out`.
//   const summary = await study({ simulation: { module: './sim.js' }, parameters: { … }, fields: { … }, runs: 100 }, { out: 'results' });

import { parseStudy } from '../study/spec.js';
import { runStudy, type StudyOptions, type StudySummary } from '../study/launch.js';

export type { StudyOptions, StudySummary };

export function study(description: object, options: StudyOptions): Promise<StudySummary> {
  return runStudy(parseStudy(description), options);
}
