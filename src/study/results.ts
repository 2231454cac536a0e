// What a study writes at its end: each statistic of each field as one NPY file (the ranks'
// slices put side by side), or a surrogate study's training figures (surrogate.json) — or, for
// the offline baseline, its samples as NPY — and the summary the launcher returns.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConvergeError } from '../errors.js';
import { formatNpy } from '../data/npy.js';
import type { RankResults, SurrogateResults } from './server.js';
import type { StudySpec } from './spec.js';
import type { CurvePoint } from './surrogate-server.js';
import type { StudyOptions } from './launch.js';

/** What a surrogate study trained, and how fast the stream came and went. */
export interface SurrogateSummary {
  /** Training samples the simulations produced (repeats not counted), and the servers' training consumed (drawn from the buffers). */
  produced: number;
  consumed: number;
  /** Samples evicted from full buffers. */
  evicted: number;
  /** Per second of the stream: produced while training ran, and consumed. */
  producedPerSecond: number;
  consumedPerSecond: number;
  /** Seconds since the study started when training began and ended. */
  began: number;
  ended: number;
  /** On the held-out runs: mean squared error per value, its root, and what predicting their mean field scores. */
  heldOutMse: number;
  heldOutRmse: number;
  meanFieldMse: number;
  curve: CurvePoint[];
  parameters: number;
  checkpoint: string;
  /** Where training last resumed from its checkpoint, after its server ranks were started again. */
  resumedFrom?: { epoch: number; step: number };
}

export interface StudySummary {
  runs: number;
  servers: number;
  design: string;
  /** Runs started again after a crash, a timeout, or the loss of a server rank. */
  restarts: number;
  /** Server ranks started again from their last checkpoint. */
  serverRestarts: number;
  seconds: number;
  runsPerSecond: number;
  /** Field values received by the servers, in bytes (float64), repeats included. */
  bytesStreamed: number;
  /** Timesteps sent again by restarted runs and not counted twice. */
  repeatedTimesteps: number;
  /** Connections turned away (a wrong secret or job). */
  refusedConnections: number;
  /** The files written, by field: statistic → file name. */
  files: Record<string, Record<string, string>>;
  /** A surrogate study's training (absent with writeSamples, whose folder `samples` holds train_x.npy … test_y.npy). */
  surrogate?: SurrogateSummary;
  samples?: string;
}

/** Each statistic of each field, its ranks' slices put side by side: [timesteps, cells] float64 NPY. */
function writeResults(spec: StudySpec, ranks: RankResults[], out: string): Record<string, Record<string, string>> {
  mkdirSync(out, { recursive: true });
  const files: Record<string, Record<string, string>> = {};
  spec.fields.forEach((field, f) => {
    files[field.name] = {};
    for (const name of Object.keys(ranks[0].fields[f])) {
      const whole = new Float64Array(field.timesteps * field.cells);
      for (const rank of ranks) {
        const [low, high] = rank.slices[f];
        const slice = rank.fields[f][name];
        for (let t = 0; t < field.timesteps; t++) whole.set(slice.subarray(t * (high - low), (t + 1) * (high - low)), t * field.cells + low);
      }
      const file = `${field.name}.${name}.npy`;
      writeFileSync(join(out, file), formatNpy(whole, [field.timesteps, field.cells]));
      files[field.name][name] = file;
    }
  });
  return files;
}

/** How the launch went: when it started (performance.now()), runs and server ranks started again. */
export interface LaunchCounts {
  started: number;
  restarts: number;
  serverRestarts: number;
}

/** A server rank's answer to `finish`: its results, or why it has none; samples it still holds back. */
export type RankReply<R> = { results: R | null; failure: string | null; waiting?: number };

/** The ranks' answers, or the first failure among them. */
async function gather<R>(replies: Promise<RankReply<R>>[]): Promise<R[]> {
  const ranks = await Promise.all(replies);
  const broken = ranks.find((r) => r.failure);
  if (broken) throw new ConvergeError(broken.failure!, 'STUDY_SERVER');
  if (ranks.some((r) => (r.waiting ?? 0) > 0)) throw new ConvergeError(`study: ${ranks.reduce((s, r) => s + (r.waiting ?? 0), 0)} samples still wait for the rest of their group or pair after every run ended (a bug: please report it).`, 'STUDY_SERVER');
  return ranks.map((r) => r.results!);
}

/** What every study's summary says, from its ranks' counts. */
function summaryOf(spec: StudySpec, ranks: { bytes: number; repeated: number; refused: number }[], counts: LaunchCounts, files: StudySummary['files']): StudySummary {
  const seconds = (performance.now() - counts.started) / 1000;
  return {
    runs: spec.runs, servers: spec.servers, design: spec.design, restarts: counts.restarts, serverRestarts: counts.serverRestarts, seconds, runsPerSecond: spec.runs / seconds,
    bytesStreamed: ranks.reduce((s, r) => s + r.bytes, 0), repeatedTimesteps: ranks.reduce((s, r) => s + r.repeated, 0),
    refusedConnections: ranks.reduce((s, r) => s + r.refused, 0), files,
  };
}

/** The end of a statistics study: every rank's slices put together and written, and the summary. */
export async function finishStatistics(spec: StudySpec, options: StudyOptions, replies: Promise<RankReply<RankResults>>[], counts: LaunchCounts, log: (line: string) => void): Promise<StudySummary> {
  const results = await gather(replies);
  const summary = summaryOf(spec, results, counts, writeResults(spec, results, options.out));
  writeFileSync(join(options.out, 'summary.json'), `${JSON.stringify({ ...summary, parameters: spec.parameters, fields: spec.fields, statistics: spec.statistics }, null, 2)}\n`);
  log(`study done: ${spec.runs} runs in ${summary.seconds.toFixed(1)} s (${summary.runsPerSecond.toFixed(1)} runs/s), ${(summary.bytesStreamed / 2 ** 20).toFixed(1)} MiB streamed, ${counts.restarts} runs and ${counts.serverRestarts} server ranks restarted; results in ${options.out}`);
  return summary;
}

/** The end of a surrogate study: the ranks' training (or samples) gathered and written, and the summary. */
export async function finishSurrogate(spec: StudySpec, options: StudyOptions, replies: Promise<RankReply<SurrogateResults>>[], counts: LaunchCounts, log: (line: string) => void): Promise<StudySummary> {
  const results = await gather(replies);
  const summary = summaryOf(spec, results, counts, {});
  const seconds = summary.seconds;
  const produced = results.reduce((s, r) => s + r.received, 0);
  if (options.writeSamples) {
    const folder = join(options.out, 'samples');
    mkdirSync(folder, { recursive: true });
    const inputs = spec.parameters.length + 1;
    const cells = spec.fields[spec.surrogate!.field].cells;
    const join32 = (parts: Float32Array[]) => {
      const all = new Float32Array(parts.reduce((s, p) => s + p.length, 0));
      let at = 0;
      for (const part of parts) (all.set(part, at), (at += part.length));
      return all;
    };
    const x = join32(results.map((r) => r.samples!.x));
    const y = join32(results.map((r) => r.samples!.y));
    const { testX, testY } = results[0].samples!;
    writeFileSync(join(folder, 'train_x.npy'), formatNpy(x, [x.length / inputs, inputs]));
    writeFileSync(join(folder, 'train_y.npy'), formatNpy(y, [y.length / cells, cells]));
    writeFileSync(join(folder, 'test_x.npy'), formatNpy(testX!, [testX!.length / inputs, inputs]));
    writeFileSync(join(folder, 'test_y.npy'), formatNpy(testY!, [testY!.length / cells, cells]));
    summary.samples = folder;
    log(`study done: ${spec.runs} runs in ${seconds.toFixed(1)} s, ${produced} training samples and ${testX!.length / inputs} held-out ones written to ${folder} (train on them with converge train --dataset ${folder})`);
  } else {
    const training = results[0].training!;
    const span = Math.max(1e-9, training.ended - training.began);
    summary.surrogate = {
      produced, consumed: training.samples, evicted: results.reduce((s, r) => s + r.evicted, 0),
      producedPerSecond: produced / seconds, consumedPerSecond: training.samples / span, began: training.began, ended: training.ended,
      heldOutMse: training.final.mse, heldOutRmse: training.final.rmse, meanFieldMse: training.final.meanFieldMse, curve: training.curve,
      parameters: training.parameters, checkpoint: join(options.out, 'surrogate.ckpt'), ...(training.resumedFrom ? { resumedFrom: training.resumedFrom } : {}),
    };
    writeFileSync(join(options.out, 'surrogate.json'), `${JSON.stringify(summary.surrogate, null, 2)}\n`);
    const s = summary.surrogate;
    log(`study done: ${spec.runs} runs in ${seconds.toFixed(1)} s; the surrogate trained from ${training.began.toFixed(1)} s to ${training.ended.toFixed(1)} s on ${s.produced} samples (${s.evicted} evicted), drawing ${s.consumed} (${s.consumedPerSecond.toFixed(0)}/s against ${s.producedPerSecond.toFixed(0)}/s produced); held-out RMSE ${s.heldOutRmse.toPrecision(3)} per value (the mean field's: ${Math.sqrt(s.meanFieldMse).toPrecision(3)}); in ${options.out}`);
  }
  writeFileSync(join(options.out, 'summary.json'), `${JSON.stringify({ ...summary, parameters: spec.parameters, fields: spec.fields, surrogateOptions: spec.surrogate }, null, 2)}\n`);
  return summary;
}
