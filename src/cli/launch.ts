// `converge launch -n N [--backend tcp] [--grace S] -- COMMAND …`: N local ranks of one job.

import { parseArgs } from 'node:util';
import { badOption, missingOption } from '../errors.js';
import { launchProcesses } from '../launch/local-job.js';

export const launchHelp = `converge launch -n N [options] -- COMMAND [ARGS…]
  Starts N processes of COMMAND as ranks 0…N−1 of one job on this machine, with RANK,
  WORLD_SIZE, MASTER_ADDR, MASTER_PORT and a fresh CONVERGE_SECRET (or yours) in their
  environment; prefixes their output with [rank r]; exits with the first non-zero code.
  A 'converge train' command gets --backend tcp unless it names a backend.

  -n, --processes N   ranks to start (required)
  --master-addr A     the address rank 0 listens on (default 127.0.0.1)
  --grace S           seconds the other ranks get to exit after one fails (default 15)

  e.g. converge launch -n 2 -- converge train --model mlp --epochs 2
`;

export async function launchCommand(args: string[]): Promise<number> {
  const split = args.indexOf('--');
  if (args.includes('--help') && (split < 0 || args.indexOf('--help') < split)) {
    process.stdout.write(launchHelp);
    return 0;
  }
  if (split < 0 || split === args.length - 1) throw missingOption('the command', 'options, then -- and the command each rank runs, e.g. converge launch -n 2 -- converge train --backend tcp (converge launch --help)');
  const { values } = parseArgs({
    args: args.slice(0, split),
    options: { processes: { type: 'string', short: 'n' }, 'master-addr': { type: 'string' }, grace: { type: 'string' }, backend: { type: 'string' } },
  });
  const processes = Number(values.processes);
  if (values.processes === undefined) throw missingOption('-n', 'the number of ranks, a positive integer');
  if (!Number.isInteger(processes) || processes < 1) throw badOption('-n', values.processes, 'the number of ranks, a positive integer');
  const grace = values.grace === undefined ? 15 : Number(values.grace);
  if (!Number.isFinite(grace) || grace < 0) throw badOption('--grace', values.grace, 'a number of seconds ≥ 0');
  let command = args.slice(split + 1);
  // `converge …` runs this very installation, whatever PATH holds
  if (command[0] === 'converge') command = [process.execPath, process.argv[1], ...command.slice(1)];
  const trainAt = command.indexOf('train');
  if (trainAt >= 0 && !command.some((a) => a === '--backend' || a.startsWith('--backend='))) command.splice(trainAt + 1, 0, '--backend', values.backend ?? 'tcp');
  const result = await launchProcesses({ processes, command, masterAddr: values['master-addr'], graceSeconds: grace });
  if (result.firstFailure !== undefined) process.stderr.write(`converge launch: rank ${result.firstFailure} failed first (exit ${result.codes[result.firstFailure]}); exit codes: ${result.codes.join(', ')}\n`);
  return result.exitCode;
}
