// `converge launch -n N -- command …`: starts N local processes of one job with the environment
// a rank needs (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, CONVERGE_SECRET), prefixes each line
// they print with their rank, and ends with the first non-zero exit code. When one rank fails,
// the others get --grace seconds to notice and exit on their own (they name the failed rank),
// then are killed.

import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer } from 'node:net';
import { createInterface } from 'node:readline';

export interface LaunchOptions {
  processes: number;
  command: string[];
  /** extra environment for every rank */
  env?: NodeJS.ProcessEnv;
  masterAddr?: string;
  /** seconds the other ranks get to exit after one fails */
  graceSeconds?: number;
  /** every line a rank prints; default: to this process's stdout/stderr, prefixed "[rank r] " */
  onLine?: (rank: number, line: string, stream: 'stdout' | 'stderr') => void;
}

export interface LaunchResult {
  exitCode: number;
  codes: (number | string)[]; // each rank's exit code, or the signal that ended it
  firstFailure?: number; // the rank that failed first
}

/** A port nothing listens on now (the kernel's pick). */
export function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen({ host, port: 0 }, () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/**
 * Resolves once `child` has exited and its output pipes are read to their end ('close'), so the
 * lines a caller collected are all there: ending at 'exit' lost a process's last lines, its error
 * message among them. Pipes that a process it started still holds open are given up 5 s after it
 * exits (that process then writes into nothing).
 */
export function outputRead(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('close', () => resolve());
    child.once('exit', () => {
      const giveUp = setTimeout(() => {
        child.stdout?.destroy();
        child.stderr?.destroy();
        resolve();
      }, 5000).unref();
      child.once('close', () => clearTimeout(giveUp));
    });
    child.once('error', () => resolve());
  });
}

export async function launchProcesses(options: LaunchOptions): Promise<LaunchResult> {
  const { processes, command } = options;
  const masterAddr = options.masterAddr ?? '127.0.0.1';
  const port = await freePort(masterAddr);
  const secret = process.env.CONVERGE_SECRET ?? randomBytes(16).toString('hex');
  // the ranks of this job, and no other that happens to share the port and secret
  const job = process.env.CONVERGE_JOB_ID ?? randomBytes(8).toString('hex');
  const onLine = options.onLine ?? ((rank, line, stream) => (stream === 'stdout' ? process.stdout : process.stderr).write(`[rank ${rank}] ${line}\n`));
  const children: ChildProcess[] = [];
  const codes: (number | string)[] = new Array(processes);
  let firstFailure: number | undefined;
  let exitCode = 0;
  let killTimer: NodeJS.Timeout | undefined;
  const ended = new Promise<void>((resolve) => {
    let remaining = processes;
    for (let rank = 0; rank < processes; rank++) {
      const child = spawn(command[0], command.slice(1), {
        env: { ...process.env, ...options.env, RANK: String(rank), WORLD_SIZE: String(processes), LOCAL_RANK: String(rank), MASTER_ADDR: masterAddr, MASTER_PORT: String(port), CONVERGE_SECRET: secret, CONVERGE_JOB_ID: job },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      for (const stream of ['stdout', 'stderr'] as const) {
        createInterface({ input: child[stream]! }).on('line', (line) => onLine(rank, line, stream));
      }
      void outputRead(child).then(() => {
        if (--remaining === 0) resolve();
      });
      const finish = (code: number | string) => {
        if (codes[rank] !== undefined) return;
        codes[rank] = code;
        const failed = code !== 0;
        if (failed && firstFailure === undefined) {
          firstFailure = rank;
          exitCode = typeof code === 'number' ? code : 1;
          // the others should notice and exit; whoever has not after the grace period is killed
          killTimer = setTimeout(() => {
            for (const other of children) if (other.exitCode === null && other.signalCode === null) other.kill('SIGKILL');
          }, 1000 * (options.graceSeconds ?? 15));
        }
      };
      child.on('exit', (code, signal) => finish(code ?? signal ?? 1));
      child.on('error', (error) => {
        onLine(rank, `cannot start ${command[0]}: ${error.message}`, 'stderr');
        finish(127);
      });
    }
  });
  // Ctrl-C reaches the whole process group; the ranks stop (and save) on their own
  await ended;
  clearTimeout(killTimer);
  return { exitCode, codes, firstFailure };
}
