#!/usr/bin/env node
// converge's command line. Every failure ends as one line on stderr and a non-zero exit code.

import { ConvergeError } from '../errors.js';
import { trainCommand, trainHelp } from './train.js';
import { generateCommand, generateHelp } from './generate.js';
import { launchCommand, launchHelp } from './launch.js';
import { benchCommand, benchHelp } from './bench.js';
import { reportCommand, reportHelp } from './report.js';

const usage = `converge — parallel and distributed training in TypeScript

Usage:
  converge train [options]     train a model (converge train --help for the options)
  converge generate KIND ...   write a synthetic data set (converge generate --help)
  converge launch -n N -- CMD  run N local ranks of a job (converge launch --help)
  converge bench --workload W  sweep configurations, one process each (converge bench --help)
  converge report DIR          charts and tables of a sweep, as one HTML page

`;

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
    case 'report':
      return reportCommand(rest);
    case undefined:
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(`${usage}${trainHelp()}\n${generateHelp}\n${launchHelp}\n${benchHelp}\n${reportHelp}`);
      return 0;
    default:
      throw new ConvergeError(`unknown command '${command}'; use one of: train, generate, launch, bench, report (see converge --help).`, 'UNKNOWN_COMMAND');
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
    process.exitCode = 1;
  },
);
