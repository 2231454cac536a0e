// What a server rank of a surrogate study does with the runs' fields: the held-out runs' go to a
// test set every rank holds; a training run's go, as (encoded inputs, field) samples, into this
// rank's reservoir buffer, which the rank trains from — one rank of a data-parallel job over the
// tcp backend whose ranks are the study's servers — while the simulations still run. Training
// stops when the launcher says the stream has ended; rank 0 then tests the final parameters on
// the held-out runs and writes them as a checkpoint.
//   With `writeSamples` (the offline baseline) a rank trains nothing and keeps every sample, for
// the launcher to write as NPY files that `converge train` reads.

import { existsSync } from 'node:fs';
import { Reservoir, type ReservoirSnapshot } from '../data/reservoir.js';
import { makeBatcher, stepsPerEpoch } from '../data/batches.js';
import type { ImageDataset } from '../data/dataset.js';
import { ConvergeError } from '../errors.js';
import { modelLabel, resolveModel } from '../models/module.js';
import { EVAL_BATCH, addEvaluation, evaluationFigures } from '../strategies/strategy.js';
import { mixSeed } from '../tensor/random.js';
import { writeCheckpoint } from '../train/checkpoint.js';
import { defaults, type TrainConfig } from '../train/config.js';
import { modelOptions } from '../train/run.js';
import { train } from '../api/train.js';
import { Design, type DesignKind, type Parameter } from './design.js';
import type { FieldSpec } from './state.js';
import { encodeInput, routeOf, type SurrogateSpec } from './surrogate.js';
import { Arrivals } from './arrivals.js';
import type { Pending } from './pieces.js';

export interface SurrogateStart {
  spec: SurrogateSpec;
  parameters: Parameter[];
  design: DesignKind;
  seed: number;
  fields: FieldSpec[];
  runs: number;
  /** Keep every sample for the launcher to write (the offline baseline) instead of training. */
  writeSamples: boolean;
  /** The training job's rendezvous (rank 0's address and port) and its secret and name. */
  master: { addr: string; port: number; secret: string; job: string; security: string };
  /** Where rank 0 writes the trained parameters. */
  checkpoint: string;
  /** With the study's checkpoints: where training saves its state (rank 0, at most every `everySeconds`), and whether to resume from it. */
  training?: { path: string; resume: boolean; everySeconds: number };
  /** Date.now() when the study started: the figures' clock. */
  studyStarted: number;
}

/** One evaluation on the held-out runs while training. */
export interface CurvePoint {
  /** Seconds since the study started. */
  seconds: number;
  /** Training samples consumed so far (every rank's), and passes over the buffers. */
  samples: number;
  epochs: number;
  /** Mean squared error per cell, and its root. */
  mse: number;
  rmse: number;
}

export interface SurrogateRankResults {
  rank: number;
  /** Training samples this rank received, and how many its buffer evicted unseen or seen. */
  received: number;
  evicted: number;
  repeated: number;
  /** Rank 0: how the training went. */
  training?: {
    curve: CurvePoint[];
    final: { mse: number; rmse: number; meanFieldMse: number };
    /** Training samples consumed (every rank's), and per second of training steps. */
    samples: number;
    samplesPerSecond: number;
    /** Seconds since the study started when training began and ended. */
    began: number;
    ended: number;
    parameters: number;
    /** Where training last resumed from a checkpoint (after its server ranks were started again). */
    resumedFrom?: { epoch: number; step: number };
  };
  /** writeSamples: this rank's training samples, and (rank 0) the held-out ones. */
  samples?: { x: Float32Array; y: Float32Array; testX?: Float32Array; testY?: Float32Array };
}

export interface SurrogateSnapshot {
  seen: Uint8Array;
  received: Uint32Array;
  pieces: Map<string, Pending>;
  reservoir: ReservoirSnapshot | null;
  kept: { x: Float32Array[]; y: Float32Array[] };
  test: { x: Float32Array; y: Float32Array };
  repeated: number;
  curve: CurvePoint[];
  began: number | null;
}

export class SurrogateSink {
  private readonly design: Design;
  private readonly timesteps: number;
  private readonly cells: number;
  private readonly inputs: number;
  /** What this rank has counted of each run, and the pieces of timesteps not yet whole. */
  private readonly arrivals: Arrivals;
  /** Timesteps counted per run (the statistics' state has the same). */
  readonly received: Uint32Array;
  private readonly test: { x: Float32Array; y: Float32Array };
  private readonly reservoir: Reservoir | null;
  private readonly kept: { x: Float32Array[]; y: Float32Array[] } = { x: [], y: [] };
  private repeated = 0;
  private ended = false;
  private stop: (() => void) | null = null;
  private training: Promise<SurrogateRankResults['training']> | null = null;
  private readonly input: Float32Array;
  /** The held-out error along the study's clock, and when training first began (both kept across restarts). */
  private curve: CurvePoint[] = [];
  private began: number | null = null;

  /**
   * `fail` stops the study; `trainingLost`, where given, takes a training error instead (with
   * checkpoints, a peer lost is a reason to start every rank again, not to stop).
   */
  constructor(readonly start: SurrogateStart, readonly rank: number, readonly ranks: number, private readonly fail: (error: Error) => void, private readonly trainingLost?: (error: Error) => void) {
    const { spec, fields, parameters, runs } = start;
    this.design = new Design(parameters, start.design, start.seed);
    this.timesteps = fields[spec.field].timesteps;
    this.cells = fields[spec.field].cells;
    this.inputs = parameters.length + 1;
    this.input = new Float32Array(this.inputs);
    this.arrivals = new Arrivals(fields, runs, rank);
    this.received = this.arrivals.received;
    const heldOut = spec.heldOutRuns * this.timesteps;
    this.test = { x: new Float32Array(heldOut * this.inputs), y: new Float32Array(heldOut * this.cells) };
    this.reservoir = start.writeSamples ? null : new Reservoir({ capacity: spec.capacity, inputs: this.inputs, targets: this.cells, threshold: spec.threshold, evict: spec.evict, seed: mixSeed(start.seed, rank, 0x7e5e) });
  }

  /** A run's field at a timestep, whole or a piece from cell `offset`; a timestep counted already (a restarted run's) is not counted again. */
  add(run: number, field: number, timestep: number, offset: number, piece: Float64Array): void {
    const { spec } = this.start;
    const declared = this.arrivals.check(run, field, timestep);
    const where = `study server rank ${this.rank}: run ${run}`;
    if (!routeOf(run, spec.heldOutRuns, this.ranks).includes(this.rank)) throw new ConvergeError(`${where} sent its fields to this rank, which a surrogate study does not route it to: the client and the study disagree on the server ranks.`, 'BAD_DATA');
    if (offset + piece.length > declared.cells || piece.length === 0) throw new ConvergeError(`${where} sent cells ${offset}..${offset + piece.length} of field "${declared.name}", which has ${declared.cells}.`, 'BAD_DATA');
    const values = this.arrivals.take(run, field, timestep, 0, declared.cells, offset, piece);
    if (values === 'repeat') {
      this.repeated++;
      return;
    }
    if (values === 'pending') return; // more pieces to come
    if (field !== spec.field) return; // a field the surrogate does not predict: counted, not kept
    const x = encodeInput(this.start.parameters, this.design.inputs(run), timestep, this.timesteps, this.input);
    if (run < spec.heldOutRuns) {
      const sample = run * this.timesteps + timestep;
      this.test.x.set(x, sample * this.inputs);
      this.test.y.set(values, sample * this.cells);
    } else if (this.reservoir) this.reservoir.put(x, values);
    else {
      this.kept.x.push(Float32Array.from(x));
      this.kept.y.push(Float32Array.from(values));
    }
  }

  /** Whether this rank holds everything run `run` was to send it (nothing, where it goes elsewhere). */
  complete(run: number): boolean {
    const routed = routeOf(run, this.start.spec.heldOutRuns, this.ranks).includes(this.rank);
    return this.arrivals.received[run] === (routed ? this.arrivals.timestepsPerRun : 0);
  }


  /** Starts training once the held-out runs are in and the buffer holds its threshold (or the stream ended). */
  begin(): void {
    if (this.reservoir) this.training = this.train(this.reservoir).catch((error: Error) => {
      (this.trainingLost ?? this.fail)(error);
      return undefined;
    });
  }

  /** What this rank holds — what it counted, its buffer, the held-out runs, the curve so far — as plain data for a checkpoint. */
  snapshot(): SurrogateSnapshot {
    return {
      seen: this.arrivals.seen, received: this.arrivals.received, pieces: this.arrivals.pieces.snapshot(), reservoir: this.reservoir?.snapshot() ?? null,
      kept: this.kept, test: this.test, repeated: this.repeated, curve: this.curve, began: this.began,
    };
  }

  restore(snapshot: SurrogateSnapshot): void {
    if (snapshot.seen.length !== this.arrivals.seen.length || snapshot.test.y.length !== this.test.y.length || (snapshot.reservoir === null) !== (this.reservoir === null)) {
      throw new ConvergeError(`study server rank ${this.rank}: the checkpoint does not fit this study (runs, fields or held-out runs); start the study afresh.`, 'BAD_CHECKPOINT');
    }
    this.arrivals.seen.set(snapshot.seen);
    this.arrivals.received.set(snapshot.received);
    this.arrivals.pieces.restore(snapshot.pieces);
    if (snapshot.reservoir) this.reservoir!.restore(snapshot.reservoir);
    this.kept.x.push(...snapshot.kept.x);
    this.kept.y.push(...snapshot.kept.y);
    this.test.x.set(snapshot.test.x);
    this.test.y.set(snapshot.test.y);
    this.repeated = snapshot.repeated;
    this.curve = snapshot.curve;
    this.began = snapshot.began;
  }

  /** Every run is done: training stops at its next step. */
  end(): void {
    this.ended = true;
    this.reservoir?.end();
    this.stop?.();
  }

  async results(): Promise<SurrogateRankResults> {
    const base = { rank: this.rank, received: this.reservoir?.received ?? this.kept.x.length, evicted: this.reservoir?.evicted ?? 0, repeated: this.repeated };
    if (!this.reservoir) {
      const join = (parts: Float32Array[], width: number) => {
        const all = new Float32Array(parts.length * width);
        parts.forEach((part, i) => all.set(part, i * width));
        return all;
      };
      return { ...base, samples: { x: join(this.kept.x, this.inputs), y: join(this.kept.y, this.cells), ...(this.rank === 0 ? { testX: this.test.x, testY: this.test.y } : {}) } };
    }
    const training = await this.training;
    return { ...base, ...(training ? { training } : {}) };
  }

  private async train(reservoir: Reservoir): Promise<SurrogateRankResults['training']> {
    const { spec, master } = this.start;
    const heldOutIn = () => Array.from({ length: spec.heldOutRuns }, (_, run) => run).every((run) => this.complete(run));
    while (!this.ended && !(heldOutIn() && reservoir.held >= spec.threshold)) await new Promise((resolve) => setTimeout(resolve, 20));
    if (!heldOutIn()) throw new ConvergeError(`study server rank ${this.rank}: the stream ended before every held-out run arrived; nothing to test the surrogate on.`, 'BAD_DATA');
    const clock = () => (Date.now() - this.start.studyStarted) / 1000;
    this.began ??= clock();
    // this process is rank `rank` of the training job, as a launcher would have said
    Object.assign(process.env, {
      RANK: String(this.rank), WORLD_SIZE: String(this.ranks), MASTER_ADDR: master.addr, MASTER_PORT: String(master.port),
      CONVERGE_SECRET: master.secret, CONVERGE_JOB_ID: master.job, CONVERGE_BIND: master.addr, CONVERGE_TRANSPORT_SECURITY: master.security,
    });
    const controller = new AbortController();
    this.stop = () => controller.abort();
    if (this.ended) controller.abort();
    const dataset = reservoir.dataset(this.start.fields[spec.field].name, this.test);
    const curve = this.curve;
    const saved = this.start.training;
    const outcome = await train({
      ...spec.train, model: spec.train.model ?? 'mlp', data: dataset, backend: 'tcp', epochs: Number.MAX_SAFE_INTEGER, signal: controller.signal,
      ...(saved ? { save: saved.path, saveEverySeconds: saved.everySeconds, ...(saved.resume && existsSync(saved.path) ? { resume: saved.path } : {}) } : {}),
      // (a pass over a small buffer is short: the curve keeps a point every quarter second)
      onEvaluation: (e) => {
        if (curve.length === 0 || clock() - curve[curve.length - 1].seconds >= 0.25) curve.push({ seconds: clock(), samples: e.samples, epochs: e.epochs, mse: e.testLoss, rmse: Math.sqrt(e.testLoss) });
      },
    });
    const ended = clock();
    if (this.rank !== 0 || !outcome.params) return undefined;
    const config: TrainConfig = { ...defaults, ...spec.train, dataset: dataset.name };
    const final = await this.testAndSave(config, dataset, outcome.params);
    curve.push({ seconds: ended, samples: outcome.summary.samples, epochs: NaN, mse: final.mse, rmse: final.rmse });
    // samples drawn in all: those before the checkpoint this training resumed from, and since
    const globalBatch = config.batch * outcome.summary.workers;
    const before = outcome.resumedFrom ? (outcome.resumedFrom.epoch * stepsPerEpoch(dataset.train.count, outcome.summary.workers, config.batch) + outcome.resumedFrom.step) * globalBatch : 0;
    return { curve, final, samples: before + outcome.summary.samples, samplesPerSecond: outcome.summary.samplesPerSecond, began: this.began, ended, parameters: outcome.params.length, ...(outcome.resumedFrom ? { resumedFrom: outcome.resumedFrom } : {}) };
  }

  /** The final parameters on the held-out runs (the loop tests only at its evaluations), and written as a checkpoint. */
  private async testAndSave(config: TrainConfig, dataset: ImageDataset, params: Float32Array): Promise<{ mse: number; rmse: number; meanFieldMse: number }> {
    const definition = await resolveModel(config.model);
    const model = definition.build({ ...modelOptions(dataset, config, EVAL_BATCH), seed: config.seed });
    const batcher = makeBatcher(dataset, 'test', EVAL_BATCH);
    const totals = new Float64Array(4);
    for (let first = 0; first < dataset.test.count; first += EVAL_BATCH) {
      const count = Math.min(EVAL_BATCH, dataset.test.count - first);
      addEvaluation(totals, model.evaluate(params, batcher.range(first, count)), count);
    }
    const mse = evaluationFigures(totals, 'regression').loss;
    // what predicting every held-out run by their mean field at each timestep would score: the scale the error is read against
    const meanFieldMse = meanFieldError(dataset.test.targets!, this.start.spec.heldOutRuns, this.timesteps, this.cells);
    writeCheckpoint(this.start.checkpoint, { params, optimizerState: {}, optimizerSteps: 0, epoch: 0, step: 0 }, { model: modelLabel(config.model), layout: model.layout, optimizer: config.optimizer, globalBatch: config.batch * this.ranks, seed: config.seed });
    return { mse, rmse: Math.sqrt(mse), meanFieldMse };
  }
}

/** The mean squared error, per value, of predicting runs [run][timestep][cell] by their mean over the runs. */
export function meanFieldError(values: Float32Array, runs: number, timesteps: number, cells: number): number {
  const perRun = timesteps * cells;
  const mean = new Float64Array(perRun);
  for (let run = 0; run < runs; run++) for (let i = 0; i < perRun; i++) mean[i] += values[run * perRun + i] / runs;
  let sum = 0;
  for (let run = 0; run < runs; run++) for (let i = 0; i < perRun; i++) sum += (values[run * perRun + i] - mean[i]) ** 2;
  return sum / (runs * perRun);
}
