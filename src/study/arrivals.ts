// What a server rank has counted of each run: a byte per (run, field, timestep), set once the
// timestep is whole — its pieces put together first (pieces.ts) — so that a restarted run's
// repeats are recognised and a run is complete when every timestep it owes this rank has come.
// The statistics' state and a surrogate's training rank both count this way.

import { ConvergeError } from '../errors.js';
import { Pieces } from './pieces.js';
import type { FieldSpec } from './state.js';

export class Arrivals {
  /** Timesteps every run sends: every field's, summed. */
  readonly timestepsPerRun: number;
  /** Where each field's timesteps begin among a run's. */
  private readonly fieldStart: number[];
  /** A byte per (run, field, timestep): 1 once counted. */
  readonly seen: Uint8Array;
  /** Timesteps counted per run. */
  readonly received: Uint32Array;
  readonly pieces = new Pieces();

  constructor(private readonly fields: readonly FieldSpec[], private readonly runs: number, private readonly rank: number) {
    this.timestepsPerRun = fields.reduce((sum, f) => sum + f.timesteps, 0);
    this.fieldStart = fields.map((_, f) => fields.slice(0, f).reduce((sum, g) => sum + g.timesteps, 0));
    this.seen = new Uint8Array(runs * this.timestepsPerRun);
    this.received = new Uint32Array(runs);
  }

  /** The field a run sent, after checking that the run, the field and the timestep are the study's (else a line naming the run). */
  check(run: number, field: number, timestep: number): FieldSpec {
    const where = `study server rank ${this.rank}: run ${run}`;
    if (!(run < this.runs)) throw new ConvergeError(`${where} is not in the study (it has ${this.runs} runs).`, 'BAD_DATA');
    const spec = this.fields[field];
    if (!spec) throw new ConvergeError(`${where} sent field #${field}; the study declares ${this.fields.length}.`, 'BAD_DATA');
    if (!(timestep < spec.timesteps)) throw new ConvergeError(`${where} sent timestep ${timestep} of field "${spec.name}", which has ${spec.timesteps} (0..${spec.timesteps - 1}).`, 'BAD_DATA');
    return spec;
  }

  /**
   * A piece (cells from `offset`) of the cells [low, high) this rank keeps of a run's field at a
   * timestep: the whole range once it completes a timestep not counted before (now counted),
   * 'pending' while pieces are missing, 'repeat' for a timestep counted already.
   */
  take(run: number, field: number, timestep: number, low: number, high: number, offset: number, piece: Float64Array): Float64Array | 'pending' | 'repeat' {
    const at = run * this.timestepsPerRun + this.fieldStart[field] + timestep;
    if (this.seen[at]) return 'repeat';
    const values = this.pieces.add(`${run}:${field}:${timestep}`, low, high, offset, piece);
    if (values === null) return 'pending';
    this.seen[at] = 1;
    this.received[run]++;
    return values;
  }
}
