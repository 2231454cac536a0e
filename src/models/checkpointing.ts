// Recompute versus store: which activations a training step keeps for its backward pass, and
// which it computes again from a stored one. A chain of n units (a layer with the in-place layers
// after it, or a residual block) is run by a schedule of three operations:
//
//   forward(i, record)  unit i from its input x_i: recorded, it keeps all its backward pass needs
//                       (its output x_{i+1} included); else only its output x_{i+1} (a checkpoint)
//   backward(i)         from the gradient of x_{i+1} to that of x_i; frees unit i's record
//   drop(j)             frees the checkpoint x_j
//
// This file makes schedules and prices them; it knows nothing of layers (recompute.ts runs them).
// The schedules: store all; √n segments (Chen et al. 2016, PyTorch's checkpoint_sequential);
// binomial checkpointing with S snapshots (Griewank & Walther's Revolve); and the optimal
// persistent schedule for a heterogeneous chain under a memory budget (Beaumont, Eyraud-Dubois,
// Herrmann, Joly, Shilova 2019: the rotor dynamic program).

import { ConvergeError } from '../errors.js';

export type Op = { kind: 'forward'; unit: number; record: boolean } | { kind: 'backward'; unit: number } | { kind: 'drop'; boundary: number };

/** What a unit costs: seconds per pass, and bytes (each a sum of 64-byte aligned buffers). */
export interface UnitCost {
  forward: number;
  backward: number;
  /** Its input x_i (0 for the first unit: the batch, not the arena's). */
  input: number;
  /** Its output x_{i+1}: what a checkpoint of it holds. */
  output: number;
  /** All it keeps when recorded, its output included. */
  kept: number;
  /** The gradients between its own layers, held during its backward pass only. */
  gradients: number;
}

export type RecomputeSpec = { kind: 'none' } | { kind: 'sqrt' } | { kind: 'revolve'; snapshots: number } | { kind: 'auto' };

export const recomputeHelp = 'none (store every activation), sqrt (√n segments), revolve:S (binomial checkpointing with S snapshots), auto (the fastest schedule within --memory-budget)';

export function parseRecompute(value: string): RecomputeSpec {
  if (value === 'none' || value === 'sqrt' || value === 'auto') return { kind: value };
  const revolve = /^revolve:(\d+)$/.exec(value);
  if (revolve && Number(revolve[1]) >= 1) return { kind: 'revolve', snapshots: Number(revolve[1]) };
  throw new ConvergeError(`--recompute ${value}: expected ${recomputeHelp}.`, 'BAD_OPTION');
}

export function recomputeName(spec: RecomputeSpec): string {
  return spec.kind === 'revolve' ? `revolve:${spec.snapshots}` : spec.kind;
}

const forward = (unit: number, record: boolean): Op => ({ kind: 'forward', unit, record });
const backward = (unit: number): Op => ({ kind: 'backward', unit });
const drop = (boundary: number): Op => ({ kind: 'drop', boundary });

/** Every unit recorded on the way forward, then every backward: today's behaviour. */
export function storeAll(n: number): Op[] {
  const ops: Op[] = [];
  for (let i = 0; i < n; i++) ops.push(forward(i, true));
  for (let i = n - 1; i >= 0; i--) ops.push(backward(i));
  return ops;
}

/** Unrecorded forwards from the checkpoint x_from up to x_to (to > from), dropping what lies between. */
function advance(ops: Op[], from: number, to: number): void {
  for (let i = from; i < to; i++) {
    ops.push(forward(i, false));
    if (i > from) ops.push(drop(i));
  }
}

/**
 * √n segments (as PyTorch's checkpoint_sequential with round(√n) segments): every segment but
 * the last runs unrecorded keeping only its input; the last runs recorded; on the way back each
 * segment is run again, recorded, from its input and then backpropagated.
 */
export function sqrtSegments(n: number): Op[] {
  const count = Math.max(1, Math.round(Math.sqrt(n)));
  const starts: number[] = [];
  for (let k = 0; k < count; k++) starts.push(Math.floor((k * n) / count));
  starts.push(n);
  const ops: Op[] = [];
  const last = count - 1;
  for (let k = 0; k < last; k++) advance(ops, starts[k], starts[k + 1]);
  for (let i = starts[last]; i < n; i++) ops.push(forward(i, true));
  for (let k = last; k >= 0; k--) {
    if (k < last) {
      for (let i = starts[k]; i < starts[k + 1]; i++) ops.push(forward(i, true));
    }
    for (let i = starts[k + 1] - 1; i >= starts[k]; i--) ops.push(backward(i));
    if (k > 0) ops.push(drop(starts[k]));
  }
  return ops;
}

/**
 * The fewest unrecorded forwards ("advances") that backpropagate l units from one stored input
 * with s snapshots (the input's among them): t(l, s) = min over the first split m of
 * m + t(l − m, s − 1) + t(m, s), t(1, s) = 0, t(l, 1) = l(l − 1)/2. Griewank's closed form is
 * r·l − C(s + r, s)·r/(s + 1), r the least integer with C(s + r, s) ≥ l (the tests hold it to that).
 */
function revolveTable(n: number, snapshots: number): { cost: number[][]; split: number[][] } {
  const cost: number[][] = [];
  const split: number[][] = [];
  for (let s = 0; s <= snapshots; s++) {
    cost.push(new Array(n + 1).fill(Infinity));
    split.push(new Array(n + 1).fill(0));
  }
  for (let s = 1; s <= snapshots; s++) {
    cost[s][1] = 0;
    for (let l = 2; l <= n; l++) {
      if (s === 1) {
        cost[s][l] = (l * (l - 1)) / 2;
        continue;
      }
      for (let m = 1; m < l; m++) {
        const c = m + cost[s - 1][l - m] + cost[s][m];
        if (c < cost[s][l]) {
          cost[s][l] = c;
          split[s][l] = m;
        }
      }
    }
  }
  return { cost, split };
}

/** Binomial checkpointing: at most `snapshots` stored inputs at once (x_0's counted), the fewest advances. */
export function revolve(n: number, snapshots: number): Op[] {
  if (!(snapshots >= 1)) throw new ConvergeError(`--recompute revolve:${snapshots}: needs at least 1 snapshot.`, 'BAD_OPTION');
  const { split } = revolveTable(n, Math.min(snapshots, n));
  const ops: Op[] = [];
  const solve = (s: number, t: number, snaps: number) => {
    const l = t - s + 1;
    if (l === 1) {
      ops.push(forward(s, true), backward(s));
      return;
    }
    if (snaps === 1) {
      for (let j = t; j >= s; j--) {
        if (j > s) advance(ops, s, j);
        ops.push(forward(j, true), backward(j));
        if (j > s) ops.push(drop(j));
      }
      return;
    }
    const m = s + split[Math.min(snaps, l)][l];
    advance(ops, s, m);
    solve(m, t, snaps - 1);
    ops.push(drop(m));
    solve(s, m - 1, snaps);
  };
  solve(0, n - 1, Math.min(snapshots, n));
  return ops;
}

/** Griewank and Walther's closed form of revolve's advances: r·n − C(s + r, s)·r/(s + 1). */
export function revolveAdvances(n: number, snapshots: number): number {
  const binomial = (a: number, b: number) => {
    let value = 1;
    for (let i = 1; i <= b; i++) value = (value * (a - b + i)) / i;
    return Math.round(value);
  };
  let r = 0;
  while (binomial(snapshots + r, snapshots) < n) r++;
  return r * n - (binomial(snapshots + r, snapshots) * r) / (snapshots + 1);
}

/** A schedule's price on a chain: seconds, the peak of live bytes, and the unrecorded forwards. */
export interface Priced {
  seconds: number;
  peakBytes: number;
  recomputed: number;
}

/**
 * Runs a schedule on paper: checks each operation has what it needs (its input, its record, the
 * gradient it starts from) and adds up time and live bytes. Throws on an invalid schedule.
 */
export function price(ops: readonly Op[], costs: readonly UnitCost[]): Priced {
  const n = costs.length;
  const checkpoint = new Array<boolean>(n + 1).fill(false);
  const recorded = new Array<boolean>(n).fill(false);
  let frontier = n; // units ≥ frontier are backpropagated; the gradient of x_frontier is live
  let live = 0;
  let peak = 0;
  let seconds = 0;
  let recomputed = 0;
  const gradient = (j: number) => (j > 0 && j < n ? costs[j].input : 0);
  const has = (j: number) => j === 0 || checkpoint[j] || recorded[j - 1];
  const fail = (what: string) => {
    throw new Error(`invalid schedule: ${what}`);
  };
  for (const op of ops) {
    if (op.kind === 'forward') {
      const i = op.unit;
      if (i >= frontier || recorded[i] || !has(i) || checkpoint[i + 1]) fail(`forward ${i}`);
      peak = Math.max(peak, live + costs[i].kept);
      seconds += costs[i].forward;
      if (op.record) {
        recorded[i] = true;
        live += costs[i].kept;
      } else {
        checkpoint[i + 1] = true;
        live += costs[i].output;
        recomputed++;
      }
    } else if (op.kind === 'backward') {
      const i = op.unit;
      if (i !== frontier - 1 || !recorded[i] || !has(i)) fail(`backward ${i}`);
      peak = Math.max(peak, live + costs[i].gradients + gradient(i));
      seconds += costs[i].backward;
      live += gradient(i) - gradient(i + 1) - costs[i].kept;
      recorded[i] = false;
      frontier = i;
    } else {
      // a recorded unit's backward reads the very input it ran on: that input stays until then
      if (!checkpoint[op.boundary] || recorded[op.boundary]) fail(`drop ${op.boundary}`);
      checkpoint[op.boundary] = false;
      live -= costs[op.boundary - 1].output;
    }
  }
  // (a checkpoint cannot outlive the schedule: recording its producer needs it dropped, and a backward its producer recorded)
  if (frontier !== 0) fail('it ends with units not backpropagated');
  return { seconds, peakBytes: peak, recomputed };
}

/** Sizes in whole slots (rounded up, so a schedule that fits in slots fits in bytes). */
export interface SlotCosts {
  forward: number[];
  backward: number[];
  input: number[];
  output: number[];
  kept: number[];
  gradients: number[];
}

export function inSlots(costs: readonly UnitCost[], slotBytes: number): SlotCosts {
  const slots = (bytes: number) => Math.ceil(bytes / slotBytes - 1e-9);
  return {
    forward: costs.map((c) => c.forward),
    backward: costs.map((c) => c.backward),
    input: costs.map((c) => slots(c.input)),
    output: costs.map((c) => slots(c.output)),
    kept: costs.map((c) => slots(c.kept)),
    gradients: costs.map((c) => slots(c.gradients)),
  };
}

/**
 * The rotor dynamic program. P(s, t, m): the least time to backpropagate units s..t given their
 * input x_s stored (by the caller) and the gradient of x_{t+1} live (in m), never holding more
 * than m slots. Either record s, solve s+1..t in m − kept(s), and run backward(s); or run
 * s..j−1 unrecorded to a checkpoint x_j, solve j..t in m − output(j−1), drop x_j and solve s..j−1
 * in m. Returns the table of P over (s, t, m) and the choices (0: record; j: checkpoint x_j).
 */
export function rotorTable(c: SlotCosts, slots: number): { time: Float64Array; choice: Int32Array; index: (s: number, t: number, m: number) => number } {
  const n = c.forward.length;
  const index = (s: number, t: number, m: number) => (s * n + t) * (slots + 1) + m;
  const time = new Float64Array(n * n * (slots + 1)).fill(Infinity);
  const choice = new Int32Array(time.length);
  const gradient = (j: number) => (j > 0 && j < n ? c.input[j] : 0);
  for (let length = 1; length <= n; length++) {
    for (let s = 0; s + length - 1 < n; s++) {
      const t = s + length - 1;
      for (let m = 0; m <= slots; m++) {
        let best = Infinity;
        let chosen = 0;
        // record s
        const backwardPeak = c.kept[s] + gradient(s + 1) + c.gradients[s] + gradient(s);
        if (gradient(t + 1) + c.kept[s] <= m && backwardPeak <= m) {
          const rest = s === t ? 0 : m - c.kept[s] >= 0 ? time[index(s + 1, t, m - c.kept[s])] : Infinity;
          best = c.forward[s] + rest + c.backward[s];
        }
        // a checkpoint at x_j
        let forwardTime = 0;
        let forwardPeak = 0;
        for (let j = s + 1; j <= t; j++) {
          const i = j - 1; // the unit just run unrecorded
          forwardTime += c.forward[i];
          forwardPeak = Math.max(forwardPeak, (i > s ? c.output[i - 1] : 0) + c.kept[i]);
          if (gradient(t + 1) + forwardPeak > m) break;
          const left = m - c.output[j - 1];
          if (left < 0) continue;
          const total = forwardTime + time[index(j, t, left)] + time[index(s, j - 1, m)];
          if (total < best) {
            best = total;
            chosen = j;
          }
        }
        time[index(s, t, m)] = best;
        choice[index(s, t, m)] = chosen;
      }
    }
  }
  return { time, choice, index };
}

/** The schedule behind P(0, n − 1, slots). */
function rotorOps(table: ReturnType<typeof rotorTable>, c: SlotCosts, n: number, slots: number): Op[] {
  const ops: Op[] = [];
  const solve = (s: number, t: number, m: number) => {
    const j = table.choice[table.index(s, t, m)];
    if (j === 0) {
      ops.push(forward(s, true));
      if (s < t) solve(s + 1, t, m - c.kept[s]);
      ops.push(backward(s));
      return;
    }
    advance(ops, s, j);
    solve(j, t, m - c.output[j - 1]);
    ops.push(drop(j));
    solve(s, j - 1, m);
  };
  solve(0, n - 1, slots);
  return ops;
}

export const ROTOR_SLOTS = 500;

export interface RotorPlan {
  ops: Op[];
  /** P(0, n − 1, budget): the predicted seconds of a step's forward and backward passes. */
  seconds: number;
}

/** The other schedules auto weighs against the dynamic program's (which rounds sizes up to slots, and so can miss one that fits exactly): store all, √n, revolve. */
function candidates(n: number): Op[][] {
  const list = [storeAll(n), sqrtSegments(n)];
  for (let snapshots = 1; snapshots < Math.min(n, 17); snapshots++) list.push(revolve(n, snapshots));
  return list;
}

/**
 * The least live memory the planner finds a schedule for: the dynamic program's least over fine
 * slots of the store-all peak, or a candidate's peak where that is lower.
 */
export function leastMemory(costs: readonly UnitCost[], slots = 4 * ROTOR_SLOTS): number {
  const n = costs.length;
  const all = price(storeAll(n), costs).peakBytes;
  const slotBytes = Math.max(1, all / slots);
  const table = rotorTable(inSlots(costs, slotBytes), slots);
  let least = all;
  for (let m = 0; m <= slots; m++) {
    if (Number.isFinite(table.time[table.index(0, n - 1, m)])) {
      least = Math.ceil(m * slotBytes);
      break;
    }
  }
  for (const ops of candidates(n)) least = Math.min(least, price(ops, costs).peakBytes);
  return least;
}

/**
 * The fastest schedule within `budget` bytes of live activations: the rotor dynamic program's,
 * or store all, √n or revolve where one of them fits and is faster (what the program's rounding
 * to slots can miss). Refuses a budget below the least the planner finds, saying that least.
 */
export function rotor(costs: readonly UnitCost[], budget: number, slots = ROTOR_SLOTS): RotorPlan {
  const n = costs.length;
  const c = inSlots(costs, budget / slots);
  const table = rotorTable(c, slots);
  const seconds = table.time[table.index(0, n - 1, slots)];
  let best: RotorPlan | null = Number.isFinite(seconds) ? { ops: rotorOps(table, c, n, slots), seconds } : null;
  for (const ops of candidates(n)) {
    const p = price(ops, costs);
    if (p.peakBytes <= budget && (!best || p.seconds < best.seconds)) best = { ops, seconds: p.seconds };
  }
  if (!best) {
    throw new ConvergeError(`--memory-budget ${formatBytes(budget)} of activations: too small for this model and batch; the smallest schedule found holds ${formatBytes(leastMemory(costs))}. Give at least that, or a smaller --batch.`, 'BAD_OPTION');
  }
  return best;
}

export function formatBytes(bytes: number): string {
  if (bytes >= 2 ** 30) return `${(bytes / 2 ** 30).toFixed(2)} GiB`;
  if (bytes >= 2 ** 20) return `${(bytes / 2 ** 20).toFixed(1)} MiB`;
  if (bytes >= 2 ** 10) return `${(bytes / 2 ** 10).toFixed(1)} KiB`;
  return `${bytes} B`;
}

/** A size in bytes: a number, or one with a unit (KB, MB, GB: powers of 1000; KiB, MiB, GiB: of 1024). */
export function parseBytes(value: string, flag: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kKmMgG]i?[bB]|[bB])?$/.exec(value.trim());
  if (!match) throw new ConvergeError(`${flag} ${value}: expected a size in bytes, e.g. 512MiB, 2GB or 1048576.`, 'BAD_OPTION');
  const unit = (match[2] ?? 'b').toLowerCase();
  const scale: Record<string, number> = { b: 1, kb: 1e3, mb: 1e6, gb: 1e9, kib: 2 ** 10, mib: 2 ** 20, gib: 2 ** 30 };
  const bytes = Math.floor(Number(match[1]) * scale[unit]);
  if (bytes <= 0) throw new ConvergeError(`${flag} ${value}: expected a positive size.`, 'BAD_OPTION');
  return bytes;
}
