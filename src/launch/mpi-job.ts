// Starts a job with Open MPI's mpirun (tests and benchmarks): each rank's output lines apart,
// and each rank's exit code as far as mpirun reports it.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { outputRead } from './local-job.js';

/** Whether mpirun is installed (Debian's openmpi-bin). */
export function mpirunAvailable(): boolean {
  return spawnSync('mpirun', ['--version'], { stdio: 'ignore' }).status === 0;
}

const binding = new URL('../../native/mpi/build/Release/converge_mpi.node', import.meta.url).pathname;
/** Why mpi jobs cannot run here ('' when they can). */
export const mpiMissing = !mpirunAvailable() ? 'mpirun is not installed (Debian: openmpi-bin libopenmpi-dev)' : !existsSync(binding) ? 'the Open MPI binding is not built (npm run build:native)' : '';

/** Flags every converge job under mpirun needs on these machines (see the README): MALLOC_ARENA_MAX=1, see mallocArenaNote. */
export function mpirunFlags(): string[] {
  const flags = ['--oversubscribe', '--tag-output', '--mca', 'btl', 'self,vader', '-x', 'MALLOC_ARENA_MAX=1'];
  if (process.getuid?.() === 0) flags.unshift('--allow-run-as-root');
  return flags;
}

export async function mpiJob(processes: number, command: string[], env: NodeJS.ProcessEnv = {}): Promise<{ exitCode: number; codes: (number | string)[]; lines: string[][]; seconds: number }> {
  const started = Date.now();
  const lines: string[][] = Array.from({ length: processes }, () => []);
  const other: string[] = [];
  const child = spawn('mpirun', [...mpirunFlags(), '-np', String(processes), ...command], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  for (const stream of [child.stdout, child.stderr]) {
    createInterface({ input: stream }).on('line', (line) => {
      // --tag-output: "[1,RANK]<stdout>:text"
      const tagged = /^\[\d+,(\d+)\]<std(?:out|err)>:(.*)$/.exec(line);
      if (tagged) lines[Number(tagged[1])].push(tagged[2]);
      else other.push(line);
    });
  }
  const exited = new Promise<number>((resolve) => child.on('exit', (code, signal) => resolve(code ?? (signal ? 128 : 1))));
  await outputRead(child);
  const exitCode = await exited;
  // mpirun's own report (which rank died, and how) belongs to every rank's story
  for (const rankLines of lines) rankLines.push(...other);
  // mpirun returns one code for the job: a rank that did not finish is counted as failed
  const codes = lines.map(() => exitCode);
  return { exitCode, codes, lines, seconds: (Date.now() - started) / 1000 };
}
