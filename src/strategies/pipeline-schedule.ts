// Pipeline schedules: what each stage does, in order, with the micro-batches of one step — and a
// simulator that runs those programs against each other to find the step's time, its bubble
// (idle time / total) and each stage's peak count of stored activations.
//
// A program lists communication as well as compute, in the order the stage issues it, so the
// executor (pipeline.ts) and the simulator read the same list. The order is chosen so that every
// send meets its receive even when a send waits for its receiver (MPI's rendezvous for large
// messages): the simulator checks exactly that, with sends that complete only together with
// their receive. GPipe runs every forward, then every backward; 1F1B (PipeDream-flush, as in
// torch.distributed.pipelining and Megatron) runs min(m, S − s) forwards on stage s, then
// alternates one backward and one forward, so stage s holds at most min(m, S − s) micro-batches'
// activations where GPipe holds m. Backwards run in micro-batch order on both, so the gradient
// sums are added in the order serial gradient accumulation adds them.

import { ConvergeError } from '../errors.js';

export const pipelineSchedules = ['gpipe', '1f1b'] as const;
export type PipelineSchedule = (typeof pipelineSchedules)[number];

export type PipelineAction =
  | { kind: 'forward' | 'backward'; micro: number }
  /** activations go forward (to stage s + 1), their gradients back (to stage s − 1) */
  | { kind: 'sendActivation' | 'recvActivation' | 'sendGradient' | 'recvGradient'; micro: number };

/** Stage `stage` of `stages`: its actions for one step of `micro` micro-batches. */
export function stageProgram(schedule: PipelineSchedule, stage: number, stages: number, micro: number): PipelineAction[] {
  const first = stage === 0;
  const last = stage === stages - 1;
  const program: PipelineAction[] = [];
  const forward = (i: number, sendNow: boolean) => {
    if (!first) program.push({ kind: 'recvActivation', micro: i });
    program.push({ kind: 'forward', micro: i });
    if (!last && sendNow) program.push({ kind: 'sendActivation', micro: i });
  };
  const backward = (i: number) => {
    if (!last) program.push({ kind: 'recvGradient', micro: i });
    program.push({ kind: 'backward', micro: i });
    if (!first) program.push({ kind: 'sendGradient', micro: i });
  };
  if (schedule === 'gpipe') {
    for (let i = 0; i < micro; i++) forward(i, true);
    for (let i = 0; i < micro; i++) backward(i);
    return program;
  }
  // 1F1B: warm-up forwards, then a forward and a backward in turn, then the remaining backwards.
  // In the steady phase the new forward's activations leave after the gradient it waits for has
  // come in: the next stage sends that gradient before it asks for these activations.
  const warmup = Math.min(micro, stages - stage - 1);
  for (let i = 0; i < warmup; i++) forward(i, true);
  for (let k = 0; k < micro - warmup; k++) {
    const i = warmup + k;
    forward(i, false);
    if (!last) {
      program.push({ kind: 'recvGradient', micro: k });
      program.push({ kind: 'sendActivation', micro: i });
    }
    program.push({ kind: 'backward', micro: k });
    if (!first) program.push({ kind: 'sendGradient', micro: k });
  }
  for (let k = micro - warmup; k < micro; k++) backward(k);
  return program;
}

/** The most micro-batches whose activations a stage holds at once under its program (a forward stores one, its backward frees it). */
export function peakStored(program: readonly PipelineAction[]): number {
  let held = 0;
  let peak = 0;
  for (const action of program) {
    if (action.kind === 'forward') peak = Math.max(peak, ++held);
    else if (action.kind === 'backward') held--;
  }
  return peak;
}

export interface StageCost {
  forward: number; // seconds (or any unit) per micro-batch
  backward: number;
}

export interface Simulation {
  /** From the first action to the last stage's end. */
  makespan: number;
  /** Each stage's compute time. */
  busy: number[];
  /** Idle share of all the stages' time: 1 − Σ busy / (S · makespan). */
  bubble: number;
  peakStored: number[];
}

/**
 * Runs the stages' programs against each other: compute takes its cost, and a send completes
 * only together with its receive (the strictest semantics, so a program that passes here cannot
 * deadlock on a backend that buffers). Throws if the programs would deadlock or mismatch.
 */
export function simulate(programs: readonly PipelineAction[][], costs: readonly StageCost[], linkSeconds = 0): Simulation {
  const stages = programs.length;
  const next = new Array<number>(stages).fill(0); // each stage's next action
  const clock = new Array<number>(stages).fill(0);
  const busy = new Array<number>(stages).fill(0);
  // a receive is matched with the send it waits for (a send waits to be matched)
  const sender = (stage: number, action: PipelineAction): { stage: number; kind: PipelineAction['kind'] } =>
    (action.kind === 'recvActivation' ? { stage: stage - 1, kind: 'sendActivation' } : { stage: stage + 1, kind: 'sendGradient' });
  for (;;) {
    let progressed = false;
    let done = 0;
    for (let s = 0; s < stages; s++) {
      if (next[s] === programs[s].length) {
        done++;
        continue;
      }
      const action = programs[s][next[s]];
      if (action.kind === 'forward' || action.kind === 'backward') {
        const cost = action.kind === 'forward' ? costs[s].forward : costs[s].backward;
        clock[s] += cost;
        busy[s] += cost;
        next[s]++;
        progressed = true;
        continue;
      }
      if (action.kind === 'sendActivation' || action.kind === 'sendGradient') continue;
      const other = sender(s, action);
      const theirs = programs[other.stage][next[other.stage]];
      if (!theirs || theirs.kind !== other.kind) continue; // the sender is elsewhere: wait
      if (theirs.micro !== action.micro) {
        throw new ConvergeError(`pipeline schedule: stage ${s} ${action.kind} of micro-batch ${action.micro} meets stage ${other.stage} ${theirs.kind} of micro-batch ${theirs.micro}`, 'BAD_SCHEDULE');
      }
      const at = Math.max(clock[s], clock[other.stage]) + linkSeconds;
      clock[s] = at;
      clock[other.stage] = at;
      next[s]++;
      next[other.stage]++;
      progressed = true;
    }
    if (done === stages) break;
    if (!progressed) {
      const stuck = programs.map((program, s) => (next[s] < program.length ? `stage ${s} at ${program[next[s]].kind} ${program[next[s]].micro}` : `stage ${s} done`));
      throw new ConvergeError(`pipeline schedule deadlocks: ${stuck.join(', ')}`, 'BAD_SCHEDULE');
    }
  }
  const makespan = Math.max(...clock);
  const total = busy.reduce((a, b) => a + b, 0);
  return { makespan, busy, bubble: makespan > 0 ? 1 - total / (stages * makespan) : 0, peakStored: programs.map(peakStored) };
}

/** Every stage's program for a configuration. */
export function pipelinePrograms(schedule: PipelineSchedule, stages: number, micro: number): PipelineAction[][] {
  return Array.from({ length: stages }, (_, s) => stageProgram(schedule, s, stages, micro));
}
