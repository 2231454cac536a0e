// Runs a sequential model's training step by a recompute schedule (checkpointing.ts) with every
// activation in one arena (tensor/arena.ts). The layers are grouped into units — a layer and the
// in-place layers after it (ReLU writes over its predecessor's output, so the two stand or fall
// together), or a residual block — and each operation of the schedule moves its unit's buffers
// to the places planned for it before running it. The plan is made once — the schedule's
// allocations replayed to learn every buffer's lifetime, the buffers placed by lifetime
// (tensor/arena.ts) — so a step allocates nothing.

import { ConvergeError } from '../errors.js';
import { Random } from '../tensor/random.js';
import { aligned, bindingAt, Held, holdPrivately, placeBuffers, type Binding, type Lifetime } from '../tensor/arena.js';
import { LayerChain } from './chain.js';
import { formatBytes, leastMemory, price, recomputeName, revolve, rotor, sqrtSegments, storeAll, type Op, type RecomputeSpec, type UnitCost } from './checkpointing.js';
import type { Layout } from '../tensor/layout.js';
import type { Layer, Views } from './layers.js';

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const bytesOf = (helds: readonly Held[]) => helds.reduce((sum, held) => sum + aligned(held.bytes), 0);

export interface Unit {
  readonly first: number; // index of its first layer in the model
  readonly head: number; // index of the layer that writes its output (the one with parameters, if any)
  readonly chain: LayerChain;
  readonly modal: readonly Layer[];
  /** What a recorded forward keeps: its output among them. */
  readonly kept: readonly Held[];
  readonly output: Held;
  /** Held during its backward pass only: the gradients inside it. */
  readonly gradients: readonly Held[];
  readonly inputFloats: number; // per sample
}

/** Cuts layers into units; a unit with a layer that keeps memory of its own (not in the arena) cannot be recomputed and says so. */
export function unitsOf(layers: readonly Layer[], inputShape: readonly number[], maxBatch: number): Unit[] {
  // a unit starts at each layer that writes memory of its own; the in-place layers before the first join it
  const starts: number[] = [];
  layers.forEach((layer, i) => {
    if (!layer.inPlace) starts.push(starts.length === 0 ? 0 : i);
    else if (starts.length === 0 && !layer.idempotent) {
      throw new ConvergeError(`--recompute: the model begins with layer ${i}, which works in place on the batch; a recomputed pass would apply it twice. Begin the model with another layer, or give --recompute none.`, 'BAD_OPTION');
    }
  });
  if (starts.length === 0) throw new ConvergeError('--recompute: the model has no layer that writes an output of its own; give --recompute none.', 'BAD_OPTION');
  return starts.map((first, k) => {
    const end = k + 1 < starts.length ? starts[k + 1] : layers.length;
    const own = layers.slice(first, end);
    const headAt = own.findIndex((layer) => !layer.inPlace);
    const head = own[headAt];
    if (!head.output || own.some((layer) => !layer.inPlace && !layer.held)) {
      throw new ConvergeError(`--recompute: a layer from ${first} on keeps memory of its own (it declares no held buffers), so its activations cannot be recomputed into the arena; give --recompute none.`, 'BAD_OPTION');
    }
    if (own.some((layer) => layer.synchronised)) throw new ConvergeError('--recompute with --sync-bn: not supported (a recomputed pass would reduce across ranks again); leave one out.', 'BAD_OPTION');
    const chain = new LayerChain(own, maxBatch);
    const all = own.flatMap((layer) => layer.held ?? []);
    return {
      first,
      head: first + headAt,
      chain,
      modal: own.filter((layer) => layer.setMode),
      kept: all.filter((held) => held.kind === 'kept'),
      output: head.output,
      gradients: [...all.filter((held) => held.kind === 'gradient'), ...chain.gradients],
      inputFloats: first === 0 ? sizeOf(inputShape) : sizeOf(layers[first - 1].outputShape),
    };
  });
}

/** What a strategy does around each unit's passes: collectives, when a rank holds only part of a unit (fsdp, tensor). */
export interface UnitHooks {
  /** Before each forward or backward pass of the unit, recomputed ones included (fsdp: gather its parameters). */
  before?(unit: number): Promise<void>;
  /** After each forward pass, recomputed ones included (tensor: sum a row-parallel unit's partial outputs). */
  afterForward?(unit: number, output: Float32Array): Promise<void>;
  /** After the unit's backward pass, with the gradient it wrote for its input, if any (fsdp: reduce-scatter; tensor: sum a block's input gradient). */
  afterBackward?(unit: number, gradX: Float32Array | null): Promise<void>;
}

/** The byte sizes of a unit as the schedules price them (times filled in by a profile). */
export function unitSizes(units: readonly Unit[], maxBatch: number): UnitCost[] {
  return units.map((unit, i) => ({
    forward: 0,
    backward: 0,
    input: i === 0 ? 0 : aligned(unit.inputFloats * maxBatch * 4),
    output: aligned(unit.output.bytes),
    kept: bytesOf(unit.kept),
    gradients: bytesOf(unit.gradients),
  }));
}

/** Every scratch buffer of the model shares one region: no two layers' calls overlap. */
export function scratchOf(layers: readonly Layer[]): Held[] {
  return layers.flatMap((layer) => layer.held ?? []).filter((held) => held.kind === 'scratch');
}

/** The shared scratch region's size: the largest scratch buffer. */
export const scratchBytesOf = (scratch: readonly Held[]) => scratch.reduce((most, held) => Math.max(most, aligned(held.bytes)), 0);

type Step = { op: Op; bindings: [Held, Binding][] };

/** The buffers a planned pass holds, each from the event that takes it to the one that gives it back. */
class Lives {
  readonly lifetimes: Lifetime[] = [];
  private clock = 0;

  take(held: Held): number {
    this.lifetimes.push({ bytes: held.bytes, from: this.clock++, to: Infinity });
    return this.lifetimes.length - 1;
  }

  give(id: number): void {
    this.lifetimes[id].to = this.clock++;
  }

  /** Places them (tensor/arena.ts): the offsets, and the size of the region they need. */
  place(): { offsets: number[]; size: number } {
    for (const life of this.lifetimes) if (life.to === Infinity) life.to = this.clock;
    return placeBuffers(this.lifetimes);
  }
}

/** A pass's operations, each with the buffers (by lifetime) it moves before it runs. */
interface Replayed {
  lives: Lives;
  steps: { op: Op; takes: [Held, number][] }[];
}

/**
 * Replays a schedule's allocations: which buffer each operation takes and when each is given back.
 * Checks the schedule as it goes (an operation without what it needs is a bug in the schedule).
 */
export function replay(ops: readonly Op[], units: readonly Unit[], boundaryGradients: readonly (Held | null)[]): Replayed {
  const n = units.length;
  const lives = new Lives();
  const record: (Map<Held, number> | null)[] = new Array(n).fill(null);
  const checkpoint: (number | null)[] = new Array(n + 1).fill(null); // the lifetime of a checkpoint x_j
  let gradient: number | null = null; // the lifetime of the live gradient of x_frontier
  let frontier = n;
  const steps: Replayed['steps'] = [];
  const fail = (what: string) => {
    throw new Error(`invalid schedule: ${what}`);
  };
  for (const op of ops) {
    const takes: [Held, number][] = [];
    if (op.kind === 'forward') {
      const unit = units[op.unit];
      if (op.unit >= frontier || record[op.unit] || checkpoint[op.unit + 1] !== null) fail(`forward ${op.unit}`);
      if (op.unit > 0 && checkpoint[op.unit] === null && !record[op.unit - 1]) fail(`forward ${op.unit} without its input`);
      const ids = new Map<Held, number>();
      for (const held of unit.kept) {
        const id = lives.take(held);
        ids.set(held, id);
        takes.push([held, id]);
      }
      if (op.record) record[op.unit] = ids;
      else {
        for (const [held, id] of ids) if (held !== unit.output) lives.give(id);
        checkpoint[op.unit + 1] = ids.get(unit.output)!;
      }
    } else if (op.kind === 'backward') {
      const i = op.unit;
      const ids = record[i];
      if (i !== frontier - 1 || !ids) fail(`backward ${i}`);
      const temporary = units[i].gradients.map((held) => {
        const id = lives.take(held);
        takes.push([held, id]);
        return id;
      });
      const gx = boundaryGradients[i];
      const next = gx ? lives.take(gx) : null;
      if (gx) takes.push([gx, next!]);
      for (const id of temporary) lives.give(id);
      if (gradient !== null) lives.give(gradient);
      for (const id of ids!.values()) lives.give(id);
      record[i] = null;
      gradient = next;
      frontier = i;
    } else {
      const id = checkpoint[op.boundary];
      // a recorded unit's backward reads the very input it ran on: that input stays until then
      if (id === null || (op.boundary < n && record[op.boundary])) fail(`drop ${op.boundary}`);
      lives.give(id!);
      checkpoint[op.boundary] = null;
    }
    steps.push({ op, takes });
  }
  if (frontier !== 0) fail('it ends with units not backpropagated');
  return { lives, steps };
}

/** A forward pass alone (evaluation, prediction): each unit unrecorded, its input given back once used. */
function replayForward(units: readonly Unit[]): Replayed {
  const lives = new Lives();
  const steps: Replayed['steps'] = [];
  let previous: number | null = null;
  units.forEach((unit, i) => {
    const takes: [Held, number][] = unit.kept.map((held) => [held, lives.take(held)]);
    for (const [held, id] of takes) if (held !== unit.output) lives.give(id);
    if (previous !== null) lives.give(previous);
    previous = takes.find(([held]) => held === unit.output)![1];
    steps.push({ op: { kind: 'forward', unit: i, record: false }, takes });
  });
  return { lives, steps };
}

/** Where each buffer of a replayed pass goes in `arena` from `base` on: the bindings each operation makes. */
function bind(replayed: Replayed, offsets: readonly number[], arena: ArrayBuffer, base: number): Step[] {
  return replayed.steps.map(({ op, takes }) => ({ op, bindings: takes.map(([held, id]): [Held, Binding] => [held, bindingAt(arena, base + offsets[id], held.floats)]) }));
}

/**
 * A sequential model's step by a schedule: the layers' buffers in one arena, the schedule's
 * operations run in order, the loss taken when the last unit runs forward.
 */
export class Recompute {
  readonly units: Unit[];
  readonly arena: ArrayBuffer;
  /** The gradient of each unit's input (none for the first: the batch's). */
  private readonly boundaryGradients: (Held | null)[];
  private readonly train: Step[];
  private readonly evaluation: Step[];
  private readonly forwarded: boolean[];
  private readonly views: (Float32Array | null)[];
  /** Bytes below the plans: the scratch region every layer's call shares. */
  readonly scratchBytes: number;

  constructor(units: Unit[], readonly ops: readonly Op[], scratch: readonly Held[], maxBatch: number) {
    this.units = units;
    const n = units.length;
    this.boundaryGradients = units.map((unit, i) => (i === 0 ? null : new Held(unit.inputFloats * maxBatch, 'gradient')));
    this.boundaryGradients.push(null); // the output's gradient is the model's own (its loss writes it)
    this.scratchBytes = scratchBytesOf(scratch);
    const train = replay(ops, units, this.boundaryGradients);
    const evaluation = replayForward(units);
    const trainPlaces = train.lives.place();
    const evaluationPlaces = evaluation.lives.place();
    this.arena = new ArrayBuffer(this.scratchBytes + Math.max(trainPlaces.size, evaluationPlaces.size));
    for (const held of scratch) held.bindTo(bindingAt(this.arena, 0, held.floats));
    this.train = bind(train, trainPlaces.offsets, this.arena, this.scratchBytes);
    this.evaluation = bind(evaluation, evaluationPlaces.offsets, this.arena, this.scratchBytes);
    this.forwarded = new Array(n).fill(false);
    this.views = new Array(n + 1).fill(null);
  }

  get peakBytes(): number {
    return this.arena.byteLength;
  }

  /** The forward passes the schedule runs unrecorded (and so runs again): its extra cost. */
  get recomputed(): number {
    return this.ops.filter((op) => op.kind === 'forward' && !op.record).length;
  }

  /**
   * One step: forwards and backwards as the schedule says. `loss(outputs)` is called when the
   * last unit has run forward and must leave the outputs' gradient in `gradOut`.
   */
  step(p: Views, g: Views, x: Float32Array, batch: number, stepNumber: number, gradOut: Float32Array, loss: (outputs: Float32Array) => number): number {
    const value = loss(this.forwardPhase(p, x, batch, stepNumber));
    this.backwardPhase(p, g, gradOut, null, batch);
    return value;
  }

  /**
   * The schedule up to the last unit's first forward pass (a pipeline stage's forward): returns
   * the outputs. `x` must stay as it is until backwardPhase has run.
   */
  forwardPhase(p: Views, x: Float32Array, batch: number, stepNumber: number): Float32Array {
    this.forwarded.fill(false);
    this.views[0] = x;
    this.stepNumber = stepNumber;
    this.position = 0;
    const last = this.units.length - 1;
    while (!this.forwarded[last]) this.run(this.train[this.position++], p, p, null, batch);
    return this.views[last + 1]!;
  }

  /** The rest of the schedule, from the outputs' gradient; writes the gradient of the input into gradX unless null. */
  backwardPhase(p: Views, g: Views, gradOut: Float32Array, gradX: Float32Array | null, batch: number, accumulate = false): void {
    this.gradient = gradOut;
    this.accumulate = accumulate;
    while (this.position < this.train.length) this.run(this.train[this.position++], p, g, gradX, batch);
    this.accumulate = false;
  }

  /**
   * The step with a strategy's collectives around each unit's passes (fsdp: gather a unit's
   * parameters before each of its passes — recomputed ones too — and reduce-scatter its gradient
   * after its backward pass). The same operations as step, in the same order.
   */
  async stepWith(hooks: UnitHooks, p: Views, g: Views, x: Float32Array, batch: number, stepNumber: number, gradOut: Float32Array, loss: (outputs: Float32Array) => number): Promise<number> {
    this.forwarded.fill(false);
    this.views[0] = x;
    this.stepNumber = stepNumber;
    this.gradient = gradOut;
    const last = this.units.length - 1;
    let value = NaN;
    for (const step of this.train) {
      const { op } = step;
      if (op.kind === 'drop') continue;
      await hooks.before?.(op.unit);
      const first = op.kind === 'forward' && !this.forwarded[op.unit];
      this.run(step, p, g, null, batch);
      if (op.kind === 'forward') {
        await hooks.afterForward?.(op.unit, this.views[op.unit + 1]!);
        if (op.unit === last && first) value = loss(this.views[last + 1]!);
      } else await hooks.afterBackward?.(op.unit, op.unit === 0 ? null : this.boundaryGradients[op.unit]!.f32);
    }
    return value;
  }

  /** A forward pass for evaluation with the strategy's collectives before each unit. */
  async forwardWith(hooks: UnitHooks, p: Views, x: Float32Array, batch: number): Promise<Float32Array> {
    let activation = x;
    for (const { op, bindings } of this.evaluation) {
      const unit = (op as { unit: number }).unit;
      await hooks.before?.(unit);
      for (let k = 0; k < bindings.length; k++) bindings[k][0].bindTo(bindings[k][1]);
      activation = this.units[unit].chain.forward(p, activation, batch);
      await hooks.afterForward?.(unit, activation);
    }
    return activation;
  }

  private stepNumber = 0;
  private position = 0; // the next operation of the step
  private gradient: Float32Array = new Float32Array(0); // the gradient of the input of the unit backpropagated last
  private accumulate = false; // backward passes add the parameter gradients to g (backwardPhase's caller says)

  private run({ op, bindings }: Step, p: Views, g: Views, gradX: Float32Array | null, batch: number): void {
    for (let k = 0; k < bindings.length; k++) bindings[k][0].bindTo(bindings[k][1]);
    if (op.kind === 'forward') {
      const unit = this.units[op.unit];
      for (const layer of unit.modal) layer.setMode!(true, this.stepNumber, this.forwarded[op.unit]);
      this.views[op.unit + 1] = unit.chain.forward(p, this.views[op.unit]!, batch);
      this.forwarded[op.unit] = true;
    } else if (op.kind === 'backward') {
      const target = op.unit === 0 ? gradX : this.boundaryGradients[op.unit]!.f32;
      this.units[op.unit].chain.backward(p, g, this.gradient, target, batch, this.accumulate);
      if (target) this.gradient = target;
    }
  }

  /** A forward pass for evaluation or prediction (the layers told `training` already). */
  forward(p: Views, x: Float32Array, batch: number): Float32Array {
    let activation = x;
    for (const { op, bindings } of this.evaluation) {
      for (let k = 0; k < bindings.length; k++) bindings[k][0].bindTo(bindings[k][1]);
      activation = this.units[(op as { unit: number }).unit].chain.forward(p, activation, batch);
    }
    return activation;
  }
}

/**
 * The arena of a step that stores everything (no recompute), laid out once (its size known before
 * it is allocated): each buffer has one
 * place for the whole run, so the layers are bound once and the step runs as it always has.
 * Kept buffers live from their forward to their backward; a gradient from the backward that
 * writes it to the one that reads it; scratch shares one region.
 */
export function storeAllArena(layers: readonly Layer[], inputGrads: readonly (Held | null)[]): { bytes: number; allocate(): ArrayBuffer } {
  const scratch = scratchOf(layers);
  const scratchBytes = scratchBytesOf(scratch);
  const lives = new Lives();
  const ids = new Map<Held, number>();
  const take = (held: Held) => ids.set(held, lives.take(held));
  const give = (held: Held) => lives.give(ids.get(held)!);
  const own = layers.map((layer) => layer.held ?? []);
  for (const helds of own) for (const held of helds) if (held.kind === 'kept') take(held);
  for (let i = layers.length - 1; i >= 0; i--) {
    const gradients = own[i].filter((held) => held.kind === 'gradient');
    if (inputGrads[i]) take(inputGrads[i]!);
    for (const held of gradients) take(held);
    for (const held of gradients) give(held);
    if (i + 1 < layers.length && inputGrads[i + 1]) give(inputGrads[i + 1]!);
    for (const held of own[i]) if (held.kind === 'kept') give(held);
  }
  const placed = lives.place();
  return {
    bytes: scratchBytes + placed.size,
    allocate() {
      const arena = new ArrayBuffer(scratchBytes + placed.size);
      for (const held of scratch) held.bindTo(bindingAt(arena, 0, held.floats));
      for (const [held, id] of ids) held.bindTo(bindingAt(arena, scratchBytes + placed.offsets[id], held.floats));
      return arena;
    },
  };
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1];

/**
 * Measures each unit alone at the largest batch: forward and backward seconds (median of 3 after
 * a warm-up), on fresh parameters and random inputs, in an arena of its own that is freed after.
 * Recomputed passes change no state, so the model is as it was.
 */
export function profileUnits(units: readonly Unit[], sizes: UnitCost[], views: { p: Views; g: Views }, maxBatch: number, random: Random): UnitCost[] {
  return units.map((unit, i) => {
    const helds = [...unit.kept, ...unit.gradients];
    const inputFloats = unit.inputFloats * maxBatch;
    const offsets: number[] = [];
    let bytes = aligned(inputFloats * 4) * 2 + aligned(unit.output.bytes); // x, its gradient, and the output's gradient
    for (const held of helds) {
      offsets.push(bytes);
      bytes += aligned(held.bytes);
    }
    const arena = new ArrayBuffer(bytes);
    const x = new Float32Array(arena, 0, inputFloats);
    const gradX = i === 0 ? null : new Float32Array(arena, aligned(inputFloats * 4), inputFloats);
    const gradOut = new Float32Array(arena, 2 * aligned(inputFloats * 4), unit.output.floats);
    random.fillUniform(x, -1, 1);
    random.fillUniform(gradOut, -1e-3, 1e-3);
    helds.forEach((held, k) => held.bindTo(bindingAt(arena, offsets[k], held.floats)));
    const forward: number[] = [];
    const backward: number[] = [];
    for (let repeat = 0; repeat < 4; repeat++) {
      for (const layer of unit.modal) layer.setMode!(true, 0, true);
      let start = performance.now();
      unit.chain.forward(views.p, x, maxBatch);
      forward.push((performance.now() - start) / 1e3);
      start = performance.now();
      unit.chain.backward(views.p, views.g, gradOut, gradX, maxBatch);
      backward.push((performance.now() - start) / 1e3);
    }
    return { ...sizes[i], forward: median(forward.slice(1)), backward: median(backward.slice(1)) };
  });
}

/** What a chain of layers says of its activation memory (the log's peakActivationBytes). */
export interface ActivationReport {
  /** The arena's size: every activation, saved tensor and gradient of a step lives in it. */
  bytes: number;
  /** The schedule: none, sqrt, revolve:S or auto. */
  schedule: string;
  /** Forward passes of a unit a step runs unrecorded, and so again. */
  recomputed: number;
  units: number;
  /** What storing everything would hold. */
  storeAllBytes: number;
  /** auto: the least the planner finds (scratch included). */
  leastBytes?: number;
  /** auto: the dynamic program's predicted seconds of a step's passes. */
  predictedSeconds?: number;
  /** auto: the measured profile it chose by. */
  profile?: UnitCost[];
}

/** What layers' buffers take, each in a place of its own (no two sharing): an upper bound, for layers outside a planned arena. */
export const heldBytesOf = (layers: readonly Layer[]) => bytesOf(layers.flatMap((layer) => layer.held ?? []));


/** Each unit's sizes and measured times (profileUnits) on fresh parameters of `layout`, initialised by `init`. */
export function measureUnits(units: readonly Unit[], scratch: readonly Held[], maxBatch: number, layout: Layout, init: (params: Float32Array) => void, seed: number): UnitCost[] {
  holdPrivately(scratch);
  const params = layout.allocate();
  init(params);
  const views = { p: layout.views(params), g: layout.views(layout.allocate()) };
  return profileUnits(units, unitSizes(units, maxBatch), views, maxBatch, new Random(seed + 1));
}

/**
 * A schedule for the units and the arena it runs in, checked against the budget: the named one,
 * or for auto (with a budget) the fastest that fits, from the times `measure` takes. `what` names
 * the chain in errors.
 */
export function planUnits(units: Unit[], scratch: readonly Held[], schedule: RecomputeSpec, budget: number | undefined, maxBatch: number, what: string, measure: () => UnitCost[]): { recompute: Recompute; report: Omit<ActivationReport, 'storeAllBytes'> } {
  const n = units.length;
  if (schedule.kind === 'auto') {
    if (budget === undefined) throw new ConvergeError('--recompute auto: give --memory-budget BYTES, the activation memory a step may hold.', 'BAD_OPTION');
    const costs = measure();
    const scratchBytes = scratchBytesOf(scratch);
    const least = leastMemory(costs) + scratchBytes;
    if (budget < least) throw new ConvergeError(`--memory-budget ${formatBytes(budget)} of activations: too small for ${what}; the smallest schedule found holds ${formatBytes(least)}. Give at least that, or a smaller --batch.`, 'BAD_OPTION');
    // placing the buffers can leave holes the dynamic program does not see: ask for less until the arena fits
    let ask = budget - scratchBytes;
    for (let attempt = 0; attempt < 8 && ask > 0; attempt++) {
      const plan = rotor(costs, ask);
      const recompute = new Recompute(units, plan.ops, scratch, maxBatch);
      if (recompute.peakBytes <= budget) return { recompute, report: { bytes: recompute.peakBytes, schedule: 'auto', recomputed: recompute.recomputed, units: n, leastBytes: least, predictedSeconds: plan.seconds, profile: costs } };
      ask -= recompute.peakBytes - budget;
    }
    throw new ConvergeError(`--memory-budget ${formatBytes(budget)} of activations: the arena of every schedule tried for ${what} came out larger; give a budget a little above ${formatBytes(least)}.`, 'BAD_OPTION');
  }
  const ops = schedule.kind === 'sqrt' ? sqrtSegments(n) : schedule.kind === 'revolve' ? revolve(n, schedule.snapshots) : storeAll(n);
  price(ops, unitSizes(units, maxBatch)); // checks the schedule before it runs
  const recompute = new Recompute(units, ops, scratch, maxBatch);
  if (budget !== undefined && recompute.peakBytes > budget) {
    throw new ConvergeError(`--memory-budget ${formatBytes(budget)}: --recompute ${recomputeName(schedule)} holds ${formatBytes(recompute.peakBytes)} of activations for ${what}; give --recompute auto to fit the budget, or a larger one.`, 'BAD_OPTION');
  }
  return { recompute, report: { bytes: recompute.peakBytes, schedule: recomputeName(schedule), recomputed: recompute.recomputed, units: n } };
}
