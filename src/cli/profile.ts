// `converge profile`: a model of layers as the recompute schedules see it — its units (a layer
// and the in-place layers after it, or a residual block), each one's forward and backward time
// measured here at the batch, the bytes of its input, of all it keeps when recorded, and of
// the gradients it holds during its backward pass — and what each schedule would cost on it.

import { parseArgs } from 'node:util';
import { badOption, usageError } from '../errors.js';
import { prepareRun } from '../launch/threads.js';
import { formatBytes, leastMemory, price, revolve, rotor, sqrtSegments, storeAll, type Op, type UnitCost } from '../models/checkpointing.js';
import { resolveModel } from '../models/module.js';
import { Sequential } from '../models/sequential.js';
import { defaults } from '../train/config.js';
import { modelOptions } from '../train/run.js';
import { joinNegativeNumbers } from './args.js';

const options = {
  model: { type: 'string', help: `a model of layers: mlp, cnn, resnet20, or your module's path (default ${defaults.model})` },
  hidden: { type: 'string', help: 'MLP hidden widths, as converge train takes them' },
  dataset: { type: 'string', help: 'the data the model is built for (its shapes), as converge train takes it' },
  batch: { type: 'string', help: `samples a step (default ${defaults.batch})` },
  json: { type: 'boolean', help: 'print the profile and the schedules as JSON' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const;

export interface SchedulePrice {
  schedule: string;
  /** Live activation bytes at the step's peak, the shared scratch region included. */
  peakBytes: number;
  /** Forward and backward passes of a step, from the measured units. */
  stepMs: number;
  recomputed: number;
}

/** What each schedule costs on a profiled chain: store all, √n, revolve with a few snapshot counts, auto at a few budgets. */
export function scheduleCurve(costs: readonly UnitCost[], scratchBytes: number): SchedulePrice[] {
  const n = costs.length;
  const priced = (schedule: string, ops: Op[]): SchedulePrice => {
    const p = price(ops, costs);
    return { schedule, peakBytes: p.peakBytes + scratchBytes, stepMs: 1e3 * p.seconds, recomputed: p.recomputed };
  };
  const all = priced('none', storeAll(n));
  const least = leastMemory(costs);
  const curve = [all, priced('sqrt', sqrtSegments(n))];
  for (const snapshots of [1, 2, 4, 8].filter((s) => s < n)) curve.push(priced(`revolve:${snapshots}`, revolve(n, snapshots)));
  // (none where storing all is the least: every budget would store all)
  for (const fraction of all.peakBytes - scratchBytes > least ? [0.1, 0.25, 0.5, 0.75] : []) {
    const budget = least + fraction * (all.peakBytes - scratchBytes - least);
    curve.push(priced(`auto:${formatBytes(budget + scratchBytes)}`, rotor(costs, budget).ops));
  }
  return curve;
}

export async function profileCommand(args: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: joinNegativeNumbers(args), options: options as never, strict: true, allowPositionals: false }));
  } catch (error) {
    throw usageError(`${(error as Error).message.split('\n')[0]} (see converge profile --help)`);
  }
  if (values.help) {
    const lines = Object.entries(options).map(([name, o]) => `  --${name.padEnd(10)} ${o.help}`);
    process.stdout.write(`Usage: converge profile --model M [--dataset D] [--batch B]\n\nTimes each unit of a model of layers and prices the recompute schedules on it (--recompute of converge train).\n\n${lines.join('\n')}\n`);
    return 0;
  }
  const s = (name: string) => values[name] as string | undefined;
  const batch = Number(s('batch') ?? defaults.batch);
  if (!Number.isInteger(batch) || batch <= 0) throw badOption('--batch', s('batch')!, 'a positive integer');
  const hidden = s('hidden')?.split(',').map(Number) ?? defaults.hidden;
  const { config, dataset } = await prepareRun({ ...defaults, workers: 1, batch, model: s('model') ?? defaults.model, hidden, dataset: s('dataset') ?? defaults.dataset }, { writes: false });
  const model = (await resolveModel(config.model)).build({ ...modelOptions(dataset, config, batch), recompute: { kind: 'none' } });
  if (!(model instanceof Sequential)) throw badOption('--model', config.model, `a model of layers (sequential([...]), mlp, cnn, resnet20); ${model.name} is not one`);
  const { units, costs, scratchBytes } = model.profile(config.seed);
  const curve = scheduleCurve(costs, scratchBytes);
  const layerNames = units.map((unit, i) => {
    const end = i + 1 < units.length ? units[i + 1].first : model.layers.length;
    return model.layers.slice(unit.first, end).map((layer) => layer.constructor.name.toLowerCase()).join('+');
  });
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ model: model.name, batch, units: costs.map((c, i) => ({ unit: i, layers: layerNames[i], ...c })), scratchBytes, schedules: curve })}\n`);
    return 0;
  }
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(`${model.name} at batch ${batch} on ${dataset.name}: ${units.length} units; storing all holds ${formatBytes(curve[0].peakBytes)} of activations, the least the planner finds is ${formatBytes(leastMemory(costs) + scratchBytes)} (scratch ${formatBytes(scratchBytes)} included)`);
  out(`${'unit'.padStart(4)}  ${'layers'.padEnd(28)} ${'forward ms'.padStart(10)} ${'backward ms'.padStart(11)} ${'input'.padStart(10)} ${'kept'.padStart(10)} ${'gradients'.padStart(10)}`);
  costs.forEach((c, i) => {
    out(`${String(i).padStart(4)}  ${layerNames[i].slice(0, 28).padEnd(28)} ${(1e3 * c.forward).toFixed(3).padStart(10)} ${(1e3 * c.backward).toFixed(3).padStart(11)} ${formatBytes(c.input).padStart(10)} ${formatBytes(c.kept).padStart(10)} ${formatBytes(c.gradients).padStart(10)}`);
  });
  out('schedules, priced on these figures (converge train --recompute …; measured: npm run bench:recompute):');
  for (const p of curve) out(`  ${p.schedule.padEnd(16)} ${formatBytes(p.peakBytes).padStart(10)}  ${p.stepMs.toFixed(2).padStart(9)} ms a step  ${String(p.recomputed).padStart(4)} forward passes again`);
  return 0;
}
