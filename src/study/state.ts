// What one server rank of a study holds: for its slice of each field's cells, the streamed
// statistics of every timestep, updated as samples arrive (in any order) and then forgotten.
// Each (run, field, timestep) is counted once: a restarted run that sends a timestep again is
// recognised. Pick-freeze groups wait, per field and timestep, until all p + 2 of their runs
// have sent it; then the Sobol indices take the group and the moments its A and B runs (the two
// independent draws). Covariances wait for both fields of a run's timestep. A parallel
// simulation's processes may each send a piece of a timestep: it counts once whole (pieces.ts).

import { ConvergeError } from '../errors.js';
import { Covariance, Moments, type MomentOptions } from './moments.js';
import { Sobol } from './sobol.js';
import { Arrivals } from './arrivals.js';
import type { Pending } from './pieces.js';

export interface FieldSpec {
  name: string;
  /** Cells of the whole field (a client sends all of them; a server rank keeps its slice). */
  cells: number;
  timesteps: number;
  /** How the cells lie on a grid, row-major (for drawing): rows × cols = cells. */
  shape?: [number, number];
}

export interface StateSpec {
  fields: readonly FieldSpec[];
  runs: number;
  /** 1 for Monte-Carlo; p + 2 for pick-freeze groups (p inputs). */
  groupSize: number;
  inputs: number;
  pickFreeze: boolean;
  moments: MomentOptions;
  /** Pairs of field names whose covariance to stream. */
  covariance: readonly (readonly [string, string])[];
}

/** The cells of a field of `cells` that server rank `rank` of `ranks` keeps: [low, high). */
export function sliceOf(cells: number, rank: number, ranks: number): [number, number] {
  return [Math.floor((rank * cells) / ranks), Math.floor(((rank + 1) * cells) / ranks)];
}

export interface StateSnapshot {
  moments: object[][];
  sobol: object[][] | null;
  covariances: object[][];
  seen: Uint8Array;
  received: Uint32Array;
  groups: Map<string, (Float64Array | null)[]>;
  pairs: Map<string, (Float64Array | null)[]>;
  counted: number;
  repeated: number;
  /** Timesteps of which some pieces have come (absent in checkpoints from before pieces). */
  pieces?: Map<string, Pending>;
}

export class StudyState {
  readonly slices: [number, number][];
  /** [field][timestep] */
  readonly moments: Moments[][];
  readonly sobol: Sobol[][] | null;
  readonly covariances: { pair: readonly [string, string]; fields: [number, number]; perTimestep: Covariance[] }[];
  /** What this rank has counted of each run, and the pieces of timesteps not yet whole. */
  private readonly arrivals: Arrivals;
  /** Timesteps counted per run. */
  readonly received: Uint32Array;
  private readonly groups = new Map<string, (Float64Array | null)[]>();
  private readonly pairs = new Map<string, (Float64Array | null)[]>();
  /** Samples counted, and samples that came again (from restarted runs) and were not. */
  counted = 0;
  repeated = 0;

  constructor(readonly spec: StateSpec, readonly rank: number, readonly ranks: number) {
    this.slices = spec.fields.map((f) => sliceOf(f.cells, rank, ranks));
    const cellsOf = (f: number) => this.slices[f][1] - this.slices[f][0];
    this.moments = spec.fields.map((f, i) => Array.from({ length: f.timesteps }, () => new Moments(cellsOf(i), spec.moments)));
    this.sobol = spec.pickFreeze ? spec.fields.map((f, i) => Array.from({ length: f.timesteps }, () => new Sobol(spec.inputs, cellsOf(i)))) : null;
    this.covariances = spec.covariance.map((pair) => {
      const fields = pair.map((name) => {
        const i = spec.fields.findIndex((f) => f.name === name);
        if (i < 0) throw new ConvergeError(`study: covariance of field "${name}", which the study does not declare (it has ${spec.fields.map((f) => f.name).join(', ')}).`, 'BAD_OPTION');
        return i;
      }) as [number, number];
      if (spec.fields[fields[0]].cells !== spec.fields[fields[1]].cells || spec.fields[fields[0]].timesteps !== spec.fields[fields[1]].timesteps) {
        throw new ConvergeError(`study: covariance of "${pair[0]}" and "${pair[1]}": the two fields must have the same cells and timesteps.`, 'BAD_OPTION');
      }
      return { pair, fields, perTimestep: Array.from({ length: spec.fields[fields[0]].timesteps }, () => new Covariance(cellsOf(fields[0]))) };
    });
    this.arrivals = new Arrivals(spec.fields, spec.runs, rank);
    this.received = this.arrivals.received;
  }

  /**
   * A run's values of this rank's slice of a field at a timestep — all of it, or a piece that
   * starts at cell `offset`. Returns false when that timestep was counted already (a restarted
   * run's); throws, naming the run, on what cannot be.
   */
  add(run: number, field: number, timestep: number, offset: number, piece: Float64Array): boolean {
    const spec = this.arrivals.check(run, field, timestep);
    const [low, high] = this.slices[field];
    if (offset < low || offset + piece.length > high || piece.length === 0) throw new ConvergeError(`study server rank ${this.rank}: run ${run} sent cells ${offset}..${offset + piece.length} of field "${spec.name}" to the rank that keeps ${low}..${high}: the client and the study disagree on the field's size (${spec.cells} cells) or the server ranks.`, 'BAD_DATA');
    const values = this.arrivals.take(run, field, timestep, low, high, offset, piece);
    if (values === 'repeat') {
      this.repeated++;
      return false;
    }
    if (values === 'pending') return true; // more pieces to come
    this.counted++;
    if (this.sobol) {
      const { group, member } = { group: Math.floor(run / this.spec.groupSize), member: run % this.spec.groupSize };
      const key = `${group}:${field}:${timestep}`;
      let members = this.groups.get(key);
      if (!members) this.groups.set(key, (members = new Array(this.spec.groupSize).fill(null)));
      members[member] = values;
      if (members.every((m) => m !== null)) {
        this.groups.delete(key);
        const [a, b, ...c] = members as Float64Array[];
        this.sobol[field][timestep].add(a, b, c);
        this.moments[field][timestep].add(a);
        this.moments[field][timestep].add(b);
        this.addPairs(field, timestep, [a, b], group);
      }
    } else {
      this.moments[field][timestep].add(values);
      this.addPairs(field, timestep, [values], run);
    }
    return true;
  }

  /** Covariances: a sample (or a group's A and B) waits for the other field of the pair. */
  private addPairs(field: number, timestep: number, samples: Float64Array[], key: number): void {
    for (const [k, { fields, perTimestep }] of this.covariances.entries()) {
      const side = fields.indexOf(field);
      if (side < 0) continue;
      const id = `${k}:${key}:${timestep}`;
      let waiting = this.pairs.get(id);
      if (!waiting) this.pairs.set(id, (waiting = [null, null]));
      waiting[side] = Float64Array.from(samples.flatMap((s) => [...s]));
      if (waiting[0] && waiting[1]) {
        this.pairs.delete(id);
        const cells = samples[0].length;
        for (let s = 0; s < samples.length; s++) perTimestep[timestep].add(waiting[0].subarray(s * cells, (s + 1) * cells), waiting[1].subarray(s * cells, (s + 1) * cells));
      }
    }
  }

  /**
   * Everything this rank has counted and holds back, as plain data for a checkpoint (v8's
   * serializer writes it exactly): restore() on a state of the same study takes it back.
   */
  snapshot(): StateSnapshot {
    return {
      moments: this.moments.map((perTimestep) => perTimestep.map((m) => ({ ...m }))),
      sobol: this.sobol?.map((perTimestep) => perTimestep.map((s) => ({ ...s }))) ?? null,
      covariances: this.covariances.map((c) => c.perTimestep.map((x) => ({ ...x }))),
      seen: this.arrivals.seen, received: this.received, groups: this.groups, pairs: this.pairs, counted: this.counted, repeated: this.repeated, pieces: this.arrivals.pieces.snapshot(),
    };
  }

  restore(snapshot: StateSnapshot): void {
    const fit = (what: string, ok: boolean) => {
      if (!ok) throw new ConvergeError(`study server rank ${this.rank}: the checkpoint does not fit this study (${what}); start the study afresh.`, 'BAD_CHECKPOINT');
    };
    fit('fields and timesteps', snapshot.moments.length === this.moments.length && snapshot.moments.every((t, f) => t.length === this.moments[f].length));
    fit('runs', snapshot.seen.length === this.arrivals.seen.length);
    fit('design', (snapshot.sobol === null) === (this.sobol === null));
    snapshot.moments.forEach((perTimestep, f) => perTimestep.forEach((m, t) => Object.assign(this.moments[f][t], m)));
    snapshot.sobol?.forEach((perTimestep, f) => perTimestep.forEach((s, t) => Object.assign(this.sobol![f][t], s)));
    snapshot.covariances.forEach((perTimestep, k) => perTimestep.forEach((c, t) => Object.assign(this.covariances[k].perTimestep[t], c)));
    this.arrivals.seen.set(snapshot.seen);
    this.received.set(snapshot.received);
    this.groups.clear();
    for (const [key, value] of snapshot.groups) this.groups.set(key, value);
    this.pairs.clear();
    for (const [key, value] of snapshot.pairs) this.pairs.set(key, value);
    this.arrivals.pieces.restore(snapshot.pieces);
    this.counted = snapshot.counted;
    this.repeated = snapshot.repeated;
  }

  /** Runs whose every timestep of every field this rank has counted. */
  complete(run: number): boolean {
    return this.received[run] === this.arrivals.timestepsPerRun;
  }

  /** Samples held back, waiting for the rest of their group or pair, or their timestep's other pieces. */
  get waiting(): number {
    return this.groups.size + this.pairs.size + this.arrivals.pieces.size;
  }
}
