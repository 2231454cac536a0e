// A study that trains a surrogate instead of keeping statistics (Melissa-DL): a network mapping
// (a run's input parameters, a timestep) → one field, trained data-parallel by the server ranks
// from reservoir buffers that the running simulations fill. What the description's "surrogate"
// key says, checked before anything starts, and the few facts every side derives from it:
//
//   "surrogate": {
//     "field": "temperature",        the field to predict (default: the first)
//     "heldOutRuns": 20,             the first runs of the design, kept to test on (never trained on)
//     "capacity": 4000,              samples each server rank's buffer holds
//     "threshold": 1000,             samples a buffer holds before training starts
//     "evict": "random",             or "oldest": which sample makes room once a buffer is full
//     "train": { "hidden": [256, 256], "optimizer": "adam", "lr": 0.001, "batch": 32, … }   train()'s options
//   }

import { ConvergeError } from '../errors.js';
import { evictions, type Eviction } from '../data/reservoir.js';
import { defaults, optionNames, validate, type TrainConfig } from '../train/config.js';
import type { Distribution, Parameter } from './design.js';
import type { FieldSpec } from './state.js';

export interface SurrogateSpec {
  /** The index of the field to predict among the study's fields. */
  field: number;
  heldOutRuns: number;
  capacity: number;
  threshold: number;
  evict: Eviction;
  /** train()'s options (the data set, backend, workers and length are the study's). */
  train: Partial<TrainConfig>;
}

/** What a surrogate trains with unless "train" says otherwise. */
export const surrogateTraining: Partial<TrainConfig> = { model: 'mlp', hidden: [256, 256], optimizer: 'adam', lr: 0.001, batch: 32, strategy: 'allreduce' };

/** train()'s options that the study sets itself: the data are the stream, the ranks its servers, the length the stream's. */
const studyOwned = ['dataset', 'dataDir', 'testDataset', 'labelColumn', 'zeroBased', 'task', 'backend', 'workers', 'epochs', 'resume', 'save', 'saveEvery', 'stopAfterSteps', 'stopAtTarget', 'target', 'bind', 'transportSecurity', 'globalBatch'];

const bad = (key: string, what: string) => new ConvergeError(`study: surrogate.${key} ${what}`, 'BAD_OPTION');
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const KNOWN = ['field', 'heldOutRuns', 'capacity', 'threshold', 'evict', 'train'];

export function parseSurrogate(input: unknown, fields: readonly FieldSpec[], runs: number, servers: number): SurrogateSpec {
  if (!isObject(input)) throw bad('', `is ${JSON.stringify(input)}; give an object, e.g. { "field": "${fields[0].name}", "heldOutRuns": 20 }.`);
  for (const key of Object.keys(input)) if (!KNOWN.includes(key)) throw bad(key, `is not known; a surrogate has ${KNOWN.join(', ')}.`);
  const name = input.field ?? fields[0].name;
  const field = fields.findIndex((f) => f.name === name);
  if (field < 0) throw bad('field', `is ${JSON.stringify(name)}; give one of the study's fields (${fields.map((f) => f.name).join(', ')}).`);
  const whole = (key: string, fallback: number, low: number) => {
    const value = input[key] ?? fallback;
    if (!Number.isInteger(value) || (value as number) < low) throw bad(key, `is ${JSON.stringify(value)}; give a whole number ≥ ${low}.`);
    return value as number;
  };
  const heldOutRuns = whole('heldOutRuns', Math.max(1, Math.round(runs / 10)), 1);
  if (heldOutRuns >= runs) throw bad('heldOutRuns', `is ${heldOutRuns}, but the study has ${runs} runs; keep some to train on.`);
  const timesteps = fields[field].timesteps;
  // a buffer that can take every training sample of its share by default
  const capacity = whole('capacity', Math.max(1, Math.ceil((runs - heldOutRuns) / servers) * timesteps), 1);
  const threshold = whole('threshold', Math.max(1, Math.floor(capacity / 4)), 1);
  if (threshold > capacity) throw bad('threshold', `is ${threshold}, more than the buffer's capacity (${capacity}).`);
  const evict = input.evict ?? 'random';
  if (!(evictions as readonly unknown[]).includes(evict)) throw bad('evict', `is ${JSON.stringify(evict)}; give ${evictions.map((e) => `"${e}"`).join(' or ')}.`);
  const train = input.train ?? {};
  if (!isObject(train)) throw bad('train', `is ${JSON.stringify(train)}; give train()'s options, e.g. { "hidden": [256, 256], "lr": 0.001 }.`);
  for (const key of Object.keys(train)) {
    if (studyOwned.includes(key)) throw bad(`train.${key}`, 'is set by the study (the data are the stream, the ranks its servers, the length the stream\'s); leave it out.');
    if (!optionNames.includes(key)) throw bad(`train.${key}`, `is not an option of train(); see converge train --help (as camelCase: evalEvery for --eval-every).`);
  }
  const options = { ...surrogateTraining, ...train } as Partial<TrainConfig>;
  try {
    validate({ ...defaults, ...options, dataset: 'surrogate', backend: 'tcp', workers: servers });
  } catch (error) {
    throw bad('train', `is not a run converge can make: ${(error as Error).message}`);
  }
  return { field, heldOutRuns, capacity, threshold, evict: evict as Eviction, train: options };
}

/**
 * A run's inputs as the network sees them: each parameter scaled by its distribution (a
 * uniform's range to [0, 1], a normal's to its standard score), then the timestep's place in
 * [0, 1]. Every server rank encodes alike, from the design.
 */
export function encodeInput(parameters: readonly Parameter[], values: readonly number[], timestep: number, timesteps: number, into: Float32Array = new Float32Array(parameters.length + 1)): Float32Array {
  parameters.forEach((p, k) => (into[k] = scaled(p.distribution, values[k])));
  into[parameters.length] = timesteps > 1 ? timestep / (timesteps - 1) : 0;
  return into;
}

function scaled(distribution: Distribution, value: number): number {
  switch (distribution.kind) {
    case 'uniform':
      return (value - distribution.low) / (distribution.high - distribution.low);
    case 'normal':
      return (value - distribution.mean) / distribution.sd;
  }
}

/**
 * Where a run's fields go in a surrogate study: a held-out run's to every server rank (each
 * tests on all of them), a training run's whole to one rank, the ranks taking turns.
 */
export function routeOf(run: number, heldOutRuns: number, servers: number): number[] {
  if (run < heldOutRuns) return Array.from({ length: servers }, (_, rank) => rank);
  return [(run - heldOutRuns) % servers];
}
