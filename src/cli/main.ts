#!/usr/bin/env node
// converge's command line. Every failure ends as one line on stderr and a non-zero exit code.

import { readFileSync } from 'node:fs';
import { ConvergeError, usageError } from '../errors.js';
import { trainCommand } from './train.js';
import { generateCommand } from './generate.js';
import { launchCommand } from './launch.js';
import { benchCommand } from './bench.js';
import { reportCommand } from './report.js';
import { exportCommand, predictCommand } from './predict.js';
import { planCommand } from './plan.js';
import { profileCommand } from './profile.js';
import { studyCommand } from './study.js';

const usage = `converge — parallel and distributed training in TypeScript

Usage: converge <command> [options]

Commands:
  train [options]        train a model on all cores, or as one rank of a job
  generate KIND --out D  write a synthetic data set (rcv1-like, netflix-like)
  launch -n N -- CMD     run N local ranks of a job
  bench --workload W     sweep configurations, one process each
  plan --stages S        a pipeline's schedules simulated: bubble, stored micro-batches, cut, speed-up
  profile --model M      a model's units timed, and what each --recompute schedule costs on it
  study STUDY.json       an ensemble of simulation runs streamed into statistics (no files between)
  report DIR             charts and tables of a sweep, as one HTML page
  predict --checkpoint F apply a trained checkpoint to data: predictions and metrics
  export --checkpoint F  write a checkpoint's tensors as NPY files (numpy, PyTorch)

Run 'converge <command> --help' for a command's options, 'converge --version' for the version.
Exit codes: 0 done, 1 failed, 2 usage error, 130 interrupted (Ctrl-C; the run saved with --save).
`;

/** The package's version, from its package.json. */
function version(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'train':
      return trainCommand(rest);
    case 'generate':
      return generateCommand(rest);
    case 'launch':
      return launchCommand(rest);
    case 'bench':
      return benchCommand(rest);
    case 'plan':
      return planCommand(rest);
    case 'profile':
      return profileCommand(rest);
    case 'study':
      return studyCommand(rest);
    case 'report':
      return reportCommand(rest);
    case 'predict':
      return predictCommand(rest);
    case 'export':
      return exportCommand(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(usage);
      return 0;
    case '-V':
    case '--version':
    case 'version':
      process.stdout.write(`converge ${version()}\n`);
      return 0;
    default:
      throw usageError(`unknown command '${command}'; use one of: train, generate, launch, bench, plan, profile, study, report, predict, export (see converge --help).`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`\nconverge: error: ${message.split('\n')[0]}\n`);
    if (process.env.CONVERGE_DEBUG && error instanceof Error && !(error instanceof ConvergeError)) process.stderr.write(`${error.stack}\n`);
    // usage errors (an unknown command or flag, a missing required option) exit 2, as shells expect
    process.exitCode = error instanceof ConvergeError && error.code === 'USAGE' ? 2 : 1;
  },
);
