// `converge bench`: a sweep of one workload over strategies, worker counts, compression and
// precision, each configuration its own process, with one progress line over the whole sweep.

import { parseArgs } from 'node:util';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { ConvergeError, badOption, missingOption } from '../errors.js';
import { checkWritable } from '../launch/outputs.js';
import { runSweep, type SweepOptions } from '../bench/sweep.js';
import { workloads } from '../bench/workloads.js';

export const benchHelp = `converge bench --workload NAME [options] --out DIR
  Runs every combination of the lists below as its own 'converge train' process, each writing
  DIR/<configuration>.jsonl; a configuration already finished in DIR is not run again.
  Then: converge report DIR --out report.html

  --workload NAME        ${Object.keys(workloads).join(', ')}
  --strategies A,B       (allreduce)
  --workers 1,2          gradient workers (threads; processes with --backend tcp) (1,2)
  --compress none,HOOK   gradient compression; none is no hook (none)
  --param-precision P,…  fp32, bf16, int8 (fp32)
  --batch B,…            per-worker batch (the workload's)
  --lr-scaling S,…       none, linear (lr × workers) (none)
  --lr X,…               learning rates (the workload's)
  --warmup-epochs E,…    learning-rate warm-up (0)
  --epochs N             (3)
  --seed N               (1)
  --backend shm|tcp      threads of one process, or local processes over TCP (shm)
  --out DIR              (runs)
  Anything after -- goes to every 'converge train' as it is.

  e.g. converge bench --workload fmnist-mlp --strategies allreduce,ps,async-ps,hogwild,local-sgd --workers 1,2 --compress none,topk:0.01 --epochs 3 --out runs/
`;

const list = (text: string | undefined, fallback: string) => (text ?? fallback).split(/,(?=[a-z0-9])(?!nodgc|clip|warmup)/i).filter(Boolean);
const numbers = (option: string, text: string | undefined, fallback: string) =>
  list(text, fallback).map((item) => {
    const value = Number(item);
    if (!Number.isFinite(value) || value < 0) throw badOption(option, item, 'comma-separated numbers ≥ 0');
    return value;
  });

function formatSeconds(seconds: number): string {
  const s = Math.round(seconds);
  return s >= 60 ? `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s` : `${s}s`;
}

export async function benchCommand(args: string[]): Promise<number> {
  const split = args.indexOf('--');
  const own = split >= 0 ? args.slice(0, split) : args;
  if (own.includes('--help') || own.includes('-h')) {
    process.stdout.write(benchHelp);
    return 0;
  }
  const { values } = parseArgs({
    args: own,
    options: {
      workload: { type: 'string' }, strategies: { type: 'string' }, workers: { type: 'string' }, compress: { type: 'string' },
      'param-precision': { type: 'string' }, batch: { type: 'string' }, 'lr-scaling': { type: 'string' }, lr: { type: 'string' }, 'warmup-epochs': { type: 'string' },
      epochs: { type: 'string' }, seed: { type: 'string' }, backend: { type: 'string' }, out: { type: 'string' },
    },
  });
  if (!values.workload) throw missingOption('--workload', `one of ${Object.keys(workloads).join(', ')} (converge bench --help)`);
  const backend = values.backend ?? 'shm';
  if (!['shm', 'tcp'].includes(backend)) throw badOption('--backend', backend, "'shm' or 'tcp' (for mpi, run 'mpirun … converge train --backend mpi' per configuration)");
  const options: SweepOptions = {
    workload: values.workload,
    strategies: list(values.strategies, 'allreduce'),
    workers: numbers('--workers', values.workers, '1,2'),
    compress: list(values.compress, 'none'),
    paramPrecision: list(values['param-precision'], 'fp32'),
    batch: values.batch === undefined ? [undefined] : numbers('--batch', values.batch, ''),
    lrScaling: list(values['lr-scaling'], 'none'),
    lr: values.lr === undefined ? [undefined] : numbers('--lr', values.lr, ''),
    warmupEpochs: numbers('--warmup-epochs', values['warmup-epochs'], '0'),
    epochs: numbers('--epochs', values.epochs, '3')[0],
    seed: numbers('--seed', values.seed, '1')[0],
    backend,
    out: values.out ?? 'runs',
    extra: split >= 0 ? args.slice(split + 1) : [],
  };
  // the folder the logs go into exists and takes files, before the first configuration runs
  try {
    mkdirSync(options.out, { recursive: true });
  } catch (error) {
    throw new ConvergeError(`--out ${options.out}: cannot create the folder (${(error as NodeJS.ErrnoException).code}); choose another path.`, 'NOT_WRITABLE');
  }
  checkWritable('--out', join(options.out, 'summary.json'));
  const cli = process.argv[1];
  const tty = process.stderr.isTTY;
  let failures = 0;
  const records = await runSweep(cli, options, (done, total, current, eta, record, skipped) => {
    const bar = `[${'#'.repeat(Math.round((20 * done) / total)).padEnd(20, '.')}] ${done}/${total}`;
    const etaText = eta === null ? '' : `  ETA ${formatSeconds(eta)}`;
    if (current) {
      const line = `${bar}  running ${current.id}${etaText}`;
      process.stderr.write(tty ? `\r\x1b[K${line}` : `${line}\n`);
    } else if (record) {
      if (record.status === 'failed') failures++;
      const what = skipped ? 'already done' : record.status === 'done' ? `done in ${formatSeconds(record.seconds)}` : `FAILED: ${record.message}`;
      process.stderr.write(`${tty ? '\r\x1b[K' : ''}${bar}  ${record.id}: ${what}${etaText}\n`);
    }
  }, (line) => process.stderr.write(`skipped ${line}\n`));
  process.stdout.write(`${records.length} configurations in ${options.out} (${failures} failed); next: converge report ${options.out} --out ${options.out}/report.html\n`);
  return 0;
}
