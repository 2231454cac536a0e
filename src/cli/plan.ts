// `converge plan`: what a pipeline configuration will do before it runs — each schedule's bubble
// (the stages' idle share of a step), the micro-batches each stage stores, and, for a model, the
// cut the partitioner picks from measured layer costs and the speed it predicts against one
// worker. The schedules are simulated as the stages will run them (pipeline-schedule.ts).

import { parseArgs } from 'node:util';
import { badOption, usageError } from '../errors.js';
import { prepareRun } from '../launch/threads.js';
import { layerChainOf } from '../models/stage.js';
import { resolveModel } from '../models/module.js';
import { cutsFor, layerCosts, stageCosts } from '../strategies/pipeline.js';
import { checkCuts, stageRange } from '../strategies/pipeline-partition.js';
import { pipelinePrograms, pipelineSchedules, simulate, type PipelineSchedule, type StageCost } from '../strategies/pipeline-schedule.js';
import { defaults } from '../train/config.js';
import { modelOptions } from '../train/run.js';
import { joinNegativeNumbers } from './args.js';

const options = {
  stages: { type: 'string', help: 'pipeline stages, S (default 2)' },
  microbatches: { type: 'string', help: `micro-batches a step is split into, m (default ${defaults.microbatches})` },
  'pipeline-schedule': { type: 'string', help: 'gpipe | 1f1b (default: both)' },
  model: { type: 'string', help: 'a model to cut: its layers are timed here and the cut balanced over them (default: S equal stages)' },
  hidden: { type: 'string', help: 'MLP hidden widths, as converge train takes them' },
  dataset: { type: 'string', help: 'the data the model is built for (its shapes), as converge train takes it' },
  batch: { type: 'string', help: `samples a step, split into the micro-batches (default ${defaults.batch})` },
  'stage-cuts': { type: 'string', help: 'a cut to judge instead of the balanced one' },
  json: { type: 'boolean', help: 'print the plan as JSON' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const;

export interface StagePlan {
  stage: number;
  layers: [number, number] | null; // with a model
  forwardMs: number;
  backwardMs: number;
  storedMicrobatches: number;
}

export interface SchedulePlan {
  schedule: PipelineSchedule;
  stepMs: number;
  bubble: number;
  /** Equal stages' bubble, (S − 1)/(m + S − 1), beside it. */
  equalStagesBubble: number;
  /** With a model: one worker's step (every layer, every micro-batch) ÷ the pipeline's. */
  speedup: number | null;
  stages: StagePlan[];
}

function number(option: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed <= 0) throw badOption(`--${option}`, value, 'a positive integer');
  return parsed;
}

export async function planCommand(args: string[]): Promise<number> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args: joinNegativeNumbers(args), options: options as never, strict: true, allowPositionals: false }));
  } catch (error) {
    throw usageError(`${(error as Error).message.split('\n')[0]} (see converge plan --help)`);
  }
  if (values.help) {
    const lines = Object.entries(options).map(([name, o]) => `  --${name.padEnd(18)} ${o.help}`);
    process.stdout.write(`Usage: converge plan --stages S --microbatches m [--model M ...]\n\nSimulates a pipeline's schedules: the bubble, the micro-batches each stage stores, and with a model the balanced cut and the predicted speed-up.\n\n${lines.join('\n')}\n`);
    return 0;
  }
  const s = (name: string) => values[name] as string | undefined;
  const stages = number('stages', s('stages'), 2);
  const microbatches = number('microbatches', s('microbatches'), defaults.microbatches);
  const schedule = s('pipeline-schedule');
  if (schedule !== undefined && !(pipelineSchedules as readonly string[]).includes(schedule)) throw badOption('--pipeline-schedule', schedule, pipelineSchedules.join(' or '));
  const schedules = schedule ? [schedule as PipelineSchedule] : [...pipelineSchedules];

  // the stages' costs: equal (forward 1, backward 2), or the model's layers timed and cut
  let costs: StageCost[] = Array.from({ length: stages }, () => ({ forward: 1, backward: 2 }));
  let cuts: number[] | null = null;
  let layerTotal: StageCost | null = null;
  let layerCount = 0;
  let unit = 'units';
  const model = s('model');
  if (model !== undefined) {
    const batch = number('batch', s('batch'), defaults.batch);
    const hidden = s('hidden')?.split(',').map(Number) ?? defaults.hidden;
    const { config, dataset, start } = await prepareRun({ ...defaults, strategy: 'pipeline', workers: 1, stages, microbatches, batch, model, hidden, dataset: s('dataset') ?? defaults.dataset }, { writes: false });
    const micro = batch / microbatches;
    const chain = layerChainOf((await resolveModel(config.model)).build(modelOptions(dataset, config, micro)));
    const layers = layerCosts(chain, start.params, micro);
    layerCount = layers.length;
    cuts = s('stage-cuts') !== undefined ? checkCuts(s('stage-cuts')!.split(',').map(Number), layers.length, stages) : cutsFor(layers, stages);
    costs = stageCosts(layers, cuts).map((cost) => ({ forward: 1000 * cost.forward, backward: 1000 * cost.backward }));
    layerTotal = { forward: costs.reduce((sum, c) => sum + c.forward, 0), backward: costs.reduce((sum, c) => sum + c.backward, 0) };
    unit = 'ms';
  }
  const plans: SchedulePlan[] = schedules.map((name) => {
    const result = simulate(pipelinePrograms(name, stages, microbatches), costs);
    return {
      schedule: name, stepMs: result.makespan, bubble: result.bubble, equalStagesBubble: (stages - 1) / (microbatches + stages - 1),
      speedup: layerTotal ? (microbatches * (layerTotal.forward + layerTotal.backward)) / result.makespan : null,
      stages: costs.map((cost, stage) => ({ stage, layers: cuts ? stageRange(cuts, layerCount, stage) : null, forwardMs: cost.forward, backwardMs: cost.backward, storedMicrobatches: result.peakStored[stage] })),
    };
  });
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ stages, microbatches, cuts, plans })}\n`);
    return 0;
  }
  for (const plan of plans) {
    const speed = plan.speedup === null ? '' : `, ${plan.speedup.toFixed(2)}× one worker`;
    process.stdout.write(`${plan.schedule}: S = ${stages}, m = ${microbatches}: bubble ${(100 * plan.bubble).toFixed(1)}% (equal stages: ${(100 * plan.equalStagesBubble).toFixed(1)}%), a step ${plan.stepMs.toFixed(2)} ${unit}${speed}\n`);
    for (const stage of plan.stages) {
      process.stdout.write(`  stage ${stage.stage}${stage.layers ? ` (layers ${stage.layers[0]}–${stage.layers[1] - 1})` : ''}: forward ${stage.forwardMs.toFixed(3)}, backward ${stage.backwardMs.toFixed(3)} ${unit} a micro-batch; stores ${stage.storedMicrobatches} micro-batch${stage.storedMicrobatches === 1 ? '' : 'es'}\n`);
    }
  }
  return 0;
}
