// `converge bench`: a sweep over configurations of one workload. Each configuration runs as its
// own `converge train` process (threads, or a `converge launch` job for --backend tcp) and writes
// its JSONL log into the output folder, beside a small JSON file that says what it was. A
// configuration whose log ends in a summary is done and is not run again, so an interrupted sweep
// resumes where it stopped. Failures (a diverging configuration is a result too) are recorded and
// the sweep goes on.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, renameSync, writeFileSync, openSync, closeSync } from 'node:fs';
import { join } from 'node:path';
import { isProcessBackend } from '../comm/backends.js';
import { badOption } from '../errors.js';
import { ranksFor, strategy as strategyEntry } from '../strategies/index.js';
import { workload as findWorkload, type Workload } from './workloads.js';

export interface SweepOptions {
  workload: string;
  strategies: string[];
  workers: number[];
  compress: string[]; // 'none': no hook
  paramPrecision: string[];
  batch: (number | undefined)[]; // undefined: the workload's
  lrScaling: string[];
  lr: (number | undefined)[]; // undefined: the workload's
  warmupEpochs: number[];
  epochs: number;
  seed: number;
  backend: string;
  out: string;
  /** more `converge train` options for every configuration */
  extra: string[];
}

export interface Configuration {
  id: string;
  workload: string;
  strategy: string;
  workers: number;
  compress: string;
  paramPrecision: string;
  batch?: number;
  lrScaling: string;
  lr?: number;
  warmupEpochs: number;
  epochs: number;
  seed: number;
  backend: string;
  /** the whole `converge train` argument list */
  args: string[];
}

export interface RunRecord extends Configuration {
  status: 'done' | 'failed';
  message?: string;
  seconds: number;
}

/** Every valid combination, in a stable order; what cannot run together is left out, and said why. */
export function configurations(options: SweepOptions, skipped: (line: string) => void = () => {}): Configuration[] {
  const w: Workload = findWorkload(options.workload);
  const list: Configuration[] = [];
  for (const strategy of options.strategies) {
    for (const workers of options.workers) {
      for (const compress of options.compress) {
        for (const paramPrecision of options.paramPrecision) {
          for (const batch of options.batch) {
            for (const lrScaling of options.lrScaling) {
              for (const lr of options.lr) {
                for (const warmupEpochs of options.warmupEpochs) {
                  const parts = [w.name, strategy, `w${workers}`, compress.replace(/[^a-z0-9.]+/gi, '-'), `p-${paramPrecision}`, `b${batch ?? 'default'}`, `lr-${lrScaling}${lr === undefined ? '' : `-${lr}`}`, `wu${warmupEpochs}`];
                  const id = parts.join('_');
                  const can = strategyEntry(strategy);
                  if (!can.compression && compress !== 'none') {
                    skipped(`${id}: ${strategy} exchanges no gradients to compress`);
                    continue;
                  }
                  if (!can.paramPrecision && paramPrecision !== 'fp32') {
                    skipped(`${id}: ${strategy} stores parameters in fp32 only`);
                    continue;
                  }
                  if (!(can.backends as readonly string[]).includes(options.backend)) {
                    skipped(`${id}: ${strategy} runs on ${can.backends.join(', ')} only`);
                    continue;
                  }
                  const args = [...w.args, '--strategy', strategy, '--epochs', String(options.epochs), '--seed', String(options.seed), '--lr-scaling', lrScaling, '--warmup-epochs', String(warmupEpochs), '--param-precision', paramPrecision];
                  if (compress !== 'none') args.push('--compress', compress);
                  // the workload's own --batch and --lr give way to the sweep's
                  for (const [option, value] of [['--batch', batch], ['--lr', lr]] as const) {
                    if (value === undefined) continue;
                    const at = args.indexOf(option);
                    if (at >= 0) args.splice(at, 2);
                    args.push(option, String(value));
                  }
                  if (!isProcessBackend(options.backend)) args.push('--workers', String(workers));
                  args.push(...options.extra);
                  list.push({ id, workload: w.name, strategy, workers, compress, paramPrecision, batch, lrScaling, lr, warmupEpochs, epochs: options.epochs, seed: options.seed, backend: options.backend, args });
                }
              }
            }
          }
        }
      }
    }
  }
  if (list.length === 0) throw badOption('converge bench', options.strategies.join(','), 'at least one configuration that can run (see the lines above)');
  return list;
}

/** A configuration is done when its log ends with the run's summary. */
export function isDone(out: string, configuration: Configuration): boolean {
  const log = join(out, `${configuration.id}.jsonl`);
  if (!existsSync(log)) return false;
  const lines = readFileSync(log, 'utf8').trim().split('\n');
  try {
    return JSON.parse(lines[lines.length - 1]).type === 'summary';
  } catch {
    return false;
  }
}

/** Runs one configuration as its own process(es); resolves when it has ended, whatever the outcome. */
export function runConfiguration(cli: string, out: string, configuration: Configuration): Promise<RunRecord> {
  const started = Date.now();
  const log = join(out, `${configuration.id}.jsonl`);
  const output = join(out, `${configuration.id}.out`);
  const args = [...configuration.args, '--log', log];
  const command = !isProcessBackend(configuration.backend)
    ? [cli, 'train', ...args]
    : [cli, 'launch', '-n', String(ranksFor(strategyEntry(configuration.strategy), configuration.workers)), '--backend', configuration.backend, '--', 'converge', 'train', ...args];
  const fd = openSync(output, 'w');
  return new Promise((resolve) => {
    const child = spawn(process.execPath, command, { stdio: ['ignore', fd, fd] });
    child.on('exit', (code) => {
      closeSync(fd);
      const seconds = (Date.now() - started) / 1000;
      const text = readFileSync(output, 'utf8');
      const error = /converge: error: (.*)/.exec(text)?.[1];
      const record: RunRecord = code === 0 ? { ...configuration, status: 'done', seconds } : { ...configuration, status: 'failed', message: error ?? `exit code ${code}`, seconds };
      writeJson(join(out, `${configuration.id}.json`), record);
      resolve(record);
    });
  });
}

function writeJson(path: string, value: unknown): void {
  writeFileSync(`${path}.tmp`, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(`${path}.tmp`, path);
}

export interface SweepProgress {
  (done: number, total: number, current: Configuration | null, etaSeconds: number | null, record?: RunRecord, skipped?: boolean): void;
}

/** Runs every configuration not yet done, one after another. */
export async function runSweep(cli: string, options: SweepOptions, progress: SweepProgress, skipped: (line: string) => void = () => {}): Promise<RunRecord[]> {
  mkdirSync(options.out, { recursive: true });
  const list = configurations(options, skipped);
  writeJson(join(options.out, 'sweep.json'), { options, configurations: list.map((c) => c.id) });
  const records: RunRecord[] = [];
  // each log is read once, here: what is done, and how many are left to run (for the ETA)
  const done = list.map((configuration) => isDone(options.out, configuration));
  let left = done.filter((d) => !d).length;
  let ran = 0;
  let ranSeconds = 0;
  for (let i = 0; i < list.length; i++) {
    const configuration = list[i];
    if (done[i]) {
      const path = join(options.out, `${configuration.id}.json`);
      records.push(existsSync(path) ? (JSON.parse(readFileSync(path, 'utf8')) as RunRecord) : { ...configuration, status: 'done', seconds: 0 });
      progress(i + 1, list.length, null, null, records[records.length - 1], true);
      continue;
    }
    // the ETA: the mean time of the configurations run so far, for those left
    progress(i, list.length, configuration, ran > 0 ? (ranSeconds / ran) * left : null);
    const record = await runConfiguration(cli, options.out, configuration);
    ran++;
    left--;
    ranSeconds += record.seconds;
    records.push(record);
    progress(i + 1, list.length, null, (ranSeconds / ran) * left, record);
  }
  return records;
}
