// A study's description (STUDY.json, or the object given to the API), checked before anything
// starts: each mistake is one line naming the key and what to write instead.
//
// {
//   "simulation": { "command": ["node", "examples/dist/heat.js"] }   (or { "module": "./sim.js" };
//                 a parallel one: "processes": 4, "launcher": "mpirun" | "srun" | ["mpiexec", "-n", "4", …]),
//   "parameters": { "diffusivity": { "uniform": [0.5, 1.5] }, "source": { "normal": [1, 0.2] } },
//   "fields": { "temperature": { "cells": 1024, "timesteps": 20, "shape": [32, 32] } },
//   "design": "pick-freeze", "groups": 40          (or "design": "monte-carlo", "runs": 200),
//   "statistics": { "higher": true, "thresholds": [0.5], "quantiles": [0.1, 0.9], "covariance": [["a", "b"]] },
//   "servers": 2, "concurrency": 2, "seed": 1, "runTimeoutSeconds": 60, "retries": 2
// }
// or, in place of "statistics", "surrogate": { … } to train a network from the stream (surrogate.ts).

import { ConvergeError } from '../errors.js';
import type { DesignKind, Parameter } from './design.js';
import type { MomentOptions } from './moments.js';
import type { FieldSpec } from './state.js';
import { parseSurrogate, type SurrogateSpec } from './surrogate.js';

/** How a run's processes are started: one process, or a parallel simulation through mpirun or srun (or a prefix of the user's). */
export interface Launcher {
  processes: number;
  /** 'mpirun' and 'srun' get -np/-n processes; a list is put before the command as it is. */
  with: 'mpirun' | 'srun' | string[] | null;
}

export interface StudySpec {
  simulation: ({ command: string[] } | { module: string }) & { launcher: Launcher };
  parameters: Parameter[];
  fields: FieldSpec[];
  design: DesignKind;
  /** Runs in all (groups × (p + 2) for pick-freeze). */
  runs: number;
  statistics: MomentOptions & { covariance: [string, string][] };
  servers: number;
  concurrency: number;
  seed: number;
  runTimeoutSeconds: number;
  retries: number;
  /** Server ranks write their state this often and a rank that dies is started again from it; none when absent. */
  checkpointEverySeconds?: number;
  /** How the clients' connections are protected (as the tcp backend's --transport-security). */
  transportSecurity: 'encrypt' | 'integrity' | 'none';
  /** Train a surrogate from the stream instead of keeping statistics (surrogate.ts). */
  surrogate?: SurrogateSpec;
}

const bad = (key: string, what: string) => new ConvergeError(`study: ${key} ${what}`, 'BAD_OPTION');
const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const positiveInteger = (value: unknown, key: string, fallback?: number): number => {
  if (value === undefined && fallback !== undefined) return fallback;
  if (!Number.isInteger(value) || (value as number) < 1) throw bad(key, `is ${JSON.stringify(value)}; give a whole number ≥ 1.`);
  return value as number;
};
const numbers = (value: unknown, key: string): number[] => {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== 'number' || !Number.isFinite(v))) throw bad(key, `is ${JSON.stringify(value)}; give a list of numbers.`);
  return value as number[];
};

const KNOWN = ['simulation', 'parameters', 'fields', 'design', 'groups', 'runs', 'statistics', 'servers', 'concurrency', 'seed', 'runTimeoutSeconds', 'retries', 'transportSecurity', 'checkpointEverySeconds', 'surrogate'];

export function parseStudy(input: unknown): StudySpec {
  if (!isObject(input)) throw bad('description', 'must be a JSON object');
  for (const key of Object.keys(input)) if (!KNOWN.includes(key)) throw bad(`key "${key}"`, `is not known; a study has ${KNOWN.join(', ')}.`);
  const simulation = input.simulation;
  let sim: { command: string[] } | { module: string };
  if (isObject(simulation) && Array.isArray(simulation.command) && simulation.command.length > 0 && simulation.command.every((c) => typeof c === 'string')) sim = { command: simulation.command as string[] };
  else if (isObject(simulation) && typeof simulation.module === 'string') sim = { module: simulation.module };
  else throw bad('simulation', `is ${JSON.stringify(simulation)}; give { "command": ["program", "arg", …] } or { "module": "./simulation.js" }.`);
  for (const key of Object.keys(simulation)) {
    if (!['command', 'module', 'processes', 'launcher'].includes(key)) throw bad(`simulation.${key}`, 'is not known; a simulation has "command" or "module", and for a parallel one "processes" and "launcher".');
  }
  const processes = positiveInteger(simulation.processes, 'simulation.processes', 1);
  const launcher = simulation.launcher ?? (processes > 1 ? 'mpirun' : null);
  if (!(launcher === null || launcher === 'mpirun' || launcher === 'srun' || (Array.isArray(launcher) && launcher.length > 0 && launcher.every((a) => typeof a === 'string')))) {
    throw bad('simulation.launcher', `is ${JSON.stringify(launcher)}; give "mpirun", "srun", or the words to put before the command (e.g. ["mpiexec", "-n", "4", "--hostfile", "hosts"]).`);
  }
  if (Array.isArray(launcher) && simulation.processes !== undefined) throw bad('simulation.processes', 'is for "mpirun" or "srun"; a launcher given as a list says its own process count.');

  if (!isObject(input.parameters) || Object.keys(input.parameters).length === 0) throw bad('parameters', 'must name at least one uncertain input, e.g. { "diffusivity": { "uniform": [0.5, 1.5] } }.');
  const parameters: Parameter[] = Object.entries(input.parameters).map(([name, d]) => {
    const key = `parameters.${name}`;
    if (isObject(d) && Array.isArray(d.uniform) && d.uniform.length === 2 && d.uniform.every(Number.isFinite) && d.uniform[0] < d.uniform[1]) return { name, distribution: { kind: 'uniform', low: d.uniform[0], high: d.uniform[1] } };
    if (isObject(d) && Array.isArray(d.normal) && d.normal.length === 2 && d.normal.every(Number.isFinite) && d.normal[1] > 0) return { name, distribution: { kind: 'normal', mean: d.normal[0], sd: d.normal[1] } };
    throw bad(key, `is ${JSON.stringify(d)}; give { "uniform": [low, high] } (low < high) or { "normal": [mean, sd] } (sd > 0).`);
  });

  if (!isObject(input.fields) || Object.keys(input.fields).length === 0) throw bad('fields', 'must declare at least one field, e.g. { "temperature": { "cells": 1024, "timesteps": 20 } }.');
  const fields: FieldSpec[] = Object.entries(input.fields).map(([name, f]) => {
    if (!isObject(f)) throw bad(`fields.${name}`, 'must be { "cells": N, "timesteps": T }.');
    const cells = positiveInteger(f.cells, `fields.${name}.cells`);
    const timesteps = positiveInteger(f.timesteps, `fields.${name}.timesteps`);
    if (f.shape === undefined) return { name, cells, timesteps };
    if (!Array.isArray(f.shape) || f.shape.length !== 2 || !f.shape.every((d) => Number.isInteger(d) && d > 0) || f.shape[0] * f.shape[1] !== cells) {
      throw bad(`fields.${name}.shape`, `is ${JSON.stringify(f.shape)}; give [rows, columns] whose product is the field's ${cells} cells.`);
    }
    return { name, cells, timesteps, shape: [f.shape[0], f.shape[1]] };
  });

  const design = input.design ?? 'monte-carlo';
  if (design !== 'monte-carlo' && design !== 'pick-freeze') throw bad('design', `is ${JSON.stringify(design)}; give "monte-carlo" or "pick-freeze".`);
  let runs: number;
  if (design === 'pick-freeze') {
    if (input.runs !== undefined) throw bad('runs', 'is for "monte-carlo"; a "pick-freeze" design counts "groups" (each of p + 2 runs).');
    const groups = positiveInteger(input.groups, 'groups');
    if (groups < 4) throw bad('groups', `is ${groups}; Sobol intervals need at least 4 groups.`);
    runs = groups * (parameters.length + 2);
  } else {
    if (input.groups !== undefined) throw bad('groups', 'is for "pick-freeze"; a "monte-carlo" design counts "runs".');
    runs = positiveInteger(input.runs, 'runs');
  }

  const statistics = input.statistics ?? {};
  if (!isObject(statistics)) throw bad('statistics', 'must be an object.');
  const quantiles = numbers(statistics.quantiles, 'statistics.quantiles');
  if (quantiles.some((q) => !(q > 0 && q < 1))) throw bad('statistics.quantiles', `is ${JSON.stringify(quantiles)}; give levels between 0 and 1.`);
  const covariance = statistics.covariance ?? [];
  if (!Array.isArray(covariance) || covariance.some((p) => !Array.isArray(p) || p.length !== 2 || p.some((n) => typeof n !== 'string' || !fields.some((f) => f.name === n)))) {
    throw bad('statistics.covariance', `is ${JSON.stringify(covariance)}; give pairs of declared fields, e.g. [["${fields[0].name}", "${fields[fields.length - 1].name}"]].`);
  }
  const security = input.transportSecurity ?? 'encrypt';
  if (security !== 'encrypt' && security !== 'integrity' && security !== 'none') throw bad('transportSecurity', `is ${JSON.stringify(security)}; give "encrypt", "integrity" or "none".`);
  const seed = input.seed ?? 1;
  if (!Number.isInteger(seed)) throw bad('seed', `is ${JSON.stringify(seed)}; give a whole number.`);
  const timeout = input.runTimeoutSeconds ?? 300;
  if (typeof timeout !== 'number' || !(timeout > 0)) throw bad('runTimeoutSeconds', `is ${JSON.stringify(timeout)}; give seconds > 0.`);
  const retries = input.retries ?? 2;
  if (!Number.isInteger(retries) || (retries as number) < 0) throw bad('retries', `is ${JSON.stringify(retries)}; give a whole number ≥ 0.`);
  const every = input.checkpointEverySeconds;
  if (every !== undefined && (typeof every !== 'number' || !(every > 0))) throw bad('checkpointEverySeconds', `is ${JSON.stringify(every)}; give seconds > 0.`);
  const servers = positiveInteger(input.servers, 'servers', 1);
  let surrogate: SurrogateSpec | undefined;
  if (input.surrogate !== undefined) {
    if (input.statistics !== undefined) throw bad('surrogate', 'and statistics are two studies: a surrogate study\'s servers train a network, whose data reach them whole, not as slices; run the statistics as a study of their own.');
    surrogate = parseSurrogate(input.surrogate, fields, runs, servers);
  }
  return {
    ...(every !== undefined ? { checkpointEverySeconds: every } : {}),
    ...(surrogate ? { surrogate } : {}),
    simulation: { ...sim, launcher: { processes, with: launcher as Launcher['with'] } }, parameters, fields, design, runs,
    statistics: { higher: statistics.higher === true, thresholds: numbers(statistics.thresholds, 'statistics.thresholds'), quantiles, covariance: covariance as [string, string][] },
    servers, concurrency: positiveInteger(input.concurrency, 'concurrency', 2),
    seed: seed as number, runTimeoutSeconds: timeout, retries: retries as number, transportSecurity: security,
  };
}
