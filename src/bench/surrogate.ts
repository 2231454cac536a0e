// bench/surrogate: a surrogate trained online from a running study against one trained offline
// on the same simulations' data written to disk first (Melissa-DL's comparison), on the
// heat-equation example. Online: `converge study` with a "surrogate" — the server ranks train
// while the runs stream. Offline: the same study with --write-samples (every sample kept, then
// written as NPY), then `train()` on those files with the same network, options and number of
// workers, for as many samples as the online run drew. Both are tested on the same held-out runs;
// both clocks start when the study starts. Repeats alternate the two; medians are reported.
//   npm run bench:surrogate -- [--repeats 3] [--study examples/heat-surrogate.json] [--target 0.01]

import { readFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { train } from '../api/train.js';
import { parseStudy } from '../study/spec.js';
import { runStudy } from '../study/launch.js';
import { announceEnvironment, environment, median, writeJson } from './common.js';

const { values } = parseArgs({
  options: {
    repeats: { type: 'string', default: '3' },
    study: { type: 'string', default: 'examples/heat-surrogate.json' },
    // the target: this fraction of the held-out error of predicting each run by the runs' mean field
    target: { type: 'string', default: '0.01' },
    out: { type: 'string', default: 'bench/results/surrogate.json' },
  },
});

interface Point { seconds: number; mse: number }
interface Outcome {
  way: 'online' | 'offline';
  /** Seconds from the study's start to the trained model (offline: generation, writing and training). */
  seconds: number;
  /** Offline: the study that wrote the samples; online: when training began and ended. */
  generationSeconds?: number;
  began?: number;
  heldOutMse: number;
  meanFieldMse: number;
  /** Training samples drawn, and distinct ones produced. */
  consumed: number;
  produced: number;
  evicted: number;
  curve: Point[];
  secondsToTarget: number | null;
}

announceEnvironment();
const spec = parseStudy(JSON.parse(readFileSync(values.study!, 'utf8')));
if (!spec.surrogate) throw new Error(`${values.study} has no "surrogate"`);
const targetFraction = Number(values.target);
const firstAt = (curve: Point[], target: number) => curve.find((p) => p.mse <= target)?.seconds ?? null;

async function online(): Promise<Outcome> {
  const out = mkdtempSync(join(tmpdir(), 'converge-bench-online-'));
  try {
    const summary = await runStudy(spec, { out });
    const s = summary.surrogate!;
    const curve = s.curve.map((p) => ({ seconds: p.seconds, mse: p.mse }));
    return { way: 'online', seconds: summary.seconds, began: s.began, heldOutMse: s.heldOutMse, meanFieldMse: s.meanFieldMse, consumed: s.consumed, produced: s.produced, evicted: s.evicted, curve, secondsToTarget: firstAt(curve, targetFraction * s.meanFieldMse) };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

async function offline(samplesToDraw: number, meanFieldMse: number): Promise<Outcome> {
  const out = mkdtempSync(join(tmpdir(), 'converge-bench-offline-'));
  try {
    const started = performance.now();
    const summary = await runStudy(spec, { out, writeSamples: true });
    const generationSeconds = (performance.now() - started) / 1000;
    const produced = (spec.runs - spec.surrogate!.heldOutRuns) * spec.fields[spec.surrogate!.field].timesteps;
    const curve: Point[] = [];
    const clock = () => (performance.now() - started) / 1000;
    // the online run's network and options, on as many workers as it had server ranks, for as many samples as it drew
    const outcome = await train({
      ...spec.surrogate!.train, model: spec.surrogate!.train.model ?? 'mlp', data: summary.samples!, task: 'regression', backend: 'shm', workers: spec.servers,
      epochs: Math.max(1, Math.round(samplesToDraw / produced)),
      onEvaluation: (e) => curve.push({ seconds: clock(), mse: e.testLoss }),
    });
    return { way: 'offline', seconds: clock(), generationSeconds, heldOutMse: outcome.summary.testLoss, meanFieldMse, consumed: outcome.summary.samples, produced, evicted: 0, curve, secondsToTarget: firstAt(curve, targetFraction * meanFieldMse) };
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
}

const repeats = Number(values.repeats);
const runs: Outcome[] = [];
for (let repeat = 0; repeat < repeats; repeat++) {
  const on = await online();
  const off = await offline(on.consumed, on.meanFieldMse);
  runs.push(on, off);
  for (const r of [on, off]) {
    console.log(`repeat ${repeat + 1} ${r.way.padEnd(7)} ${r.seconds.toFixed(1)} s  held-out RMSE ${Math.sqrt(r.heldOutMse).toPrecision(3)} (mean field ${Math.sqrt(r.meanFieldMse).toPrecision(3)})  drew ${r.consumed} of ${r.produced} samples  to target ${r.secondsToTarget === null ? 'never' : `${r.secondsToTarget.toFixed(1)} s`}${r.generationSeconds ? `  (generation and writing ${r.generationSeconds.toFixed(1)} s)` : ''}`);
  }
}
const summarize = (way: 'online' | 'offline') => {
  const rows = runs.filter((r) => r.way === way);
  const reached = rows.map((r) => r.secondsToTarget).filter((s): s is number => s !== null);
  return {
    way, seconds: median(rows.map((r) => r.seconds)), heldOutRmse: median(rows.map((r) => Math.sqrt(r.heldOutMse))), meanFieldRmse: median(rows.map((r) => Math.sqrt(r.meanFieldMse))),
    consumed: median(rows.map((r) => r.consumed)), produced: median(rows.map((r) => r.produced)), evicted: median(rows.map((r) => r.evicted)),
    secondsToTarget: reached.length === rows.length ? median(reached) : null, reachedTarget: `${reached.length}/${rows.length}`,
    ...(way === 'offline' ? { generationSeconds: median(rows.map((r) => r.generationSeconds!)) } : { trainingBegan: median(rows.map((r) => r.began!)) }),
  };
};
const table = [summarize('online'), summarize('offline')];
console.log(`\nmedians of ${repeats} (target: held-out MSE ≤ ${targetFraction} × the mean field's)`);
for (const row of table) console.log(JSON.stringify(row));
writeJson(values.out!, { environment: environment(), study: values.study, spec: { runs: spec.runs, servers: spec.servers, concurrency: spec.concurrency, surrogate: spec.surrogate }, targetFraction, table, runs });
