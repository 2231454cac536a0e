// `converge study STUDY.json`: runs an ensemble of simulations whose outputs are never stored.
// Each run streams its fields to the study's server ranks, which keep only statistics (mean,
// variance, moments, extremes, exceedance, quantiles, Sobol indices) per cell and timestep, and
// write them as NPY files at the end — or train a surrogate network from them (see src/study/).

import { readFileSync, existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { missingData, corruptFile, usageError, badOption } from '../errors.js';
import { parseStudy } from '../study/spec.js';
import { runStudy } from '../study/launch.js';

const options = {
  out: { type: 'string', help: 'folder for the results: an NPY file per field and statistic, and summary.json (default study-results)' },
  servers: { type: 'string', help: "server ranks, each keeping a slice of every field's cells (overrides the study's \"servers\")" },
  concurrency: { type: 'string', help: 'simulation runs at once (overrides "concurrency")' },
  bind: { type: 'string', help: 'the address the servers listen on (default 127.0.0.1: the runs are local)' },
  resume: { type: 'boolean', help: 'go on with a study whose launcher stopped: the server ranks start from the checkpoints in --out (the study needs "checkpointEverySeconds"), and only the runs they lack run' },
  'write-samples': { type: 'boolean', help: 'a surrogate study: write every sample as NPY (DIR/samples/train_x.npy …) instead of training — the offline baseline, for converge train --dataset DIR/samples' },
  json: { type: 'boolean', help: 'print the summary as JSON' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const;

export async function studyCommand(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({ args, options: options as never, strict: true, allowPositionals: true });
  } catch (error) {
    throw usageError(`${(error as Error).message.split('\n')[0]} (see converge study --help)`);
  }
  const values = parsed.values as Record<string, string | boolean | undefined>;
  if (values.help) {
    const lines = Object.entries(options).map(([name, o]) => `  --${name.padEnd(12)} ${o.help}`);
    process.stdout.write(`Usage: converge study STUDY.json [--out DIR] [--servers R] [--concurrency K]\n\nLaunches a study's simulation runs, streams their fields to R server ranks and keeps only statistics — or, with a "surrogate", trains a network on them as they come — with no intermediate files. STUDY.json is described in the README (examples: examples/heat-study.json, examples/heat-surrogate.json).\n\n${lines.join('\n')}\n`);
    return 0;
  }
  if (parsed.positionals.length !== 1) throw usageError('converge study takes one STUDY.json (see converge study --help)');
  const path = parsed.positionals[0];
  if (!existsSync(path)) throw missingData('study description', path, 'give the path of a STUDY.json (an example: examples/heat-study.json).');
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (error) {
    throw corruptFile(path, `is not JSON (${(error as Error).message})`, 'fix the study description');
  }
  const count = (name: 'servers' | 'concurrency') => {
    const v = values[name] as string | undefined;
    if (v === undefined) return undefined;
    if (!/^[1-9]\d*$/.test(v)) throw badOption(`--${name}`, v, 'a whole number ≥ 1');
    return Number(v);
  };
  const spec = parseStudy({ ...(json as object), ...(count('servers') ? { servers: count('servers') } : {}), ...(count('concurrency') ? { concurrency: count('concurrency') } : {}) });
  if (values['write-samples'] && !spec.surrogate) throw badOption('--write-samples', 'given', 'a study with a "surrogate" (the samples are what it would train on)');
  const summary = await runStudy(spec, { out: (values.out as string | undefined) ?? 'study-results', bind: values.bind as string | undefined, writeSamples: values['write-samples'] === true, resume: values.resume === true, log: values.json ? undefined : (line) => process.stderr.write(`${line}\n`) });
  if (values.json) process.stdout.write(`${JSON.stringify(summary)}\n`);
  return 0;
}
