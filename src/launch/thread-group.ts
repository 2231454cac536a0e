// A group of ranks as worker threads of this process, talking through the shm backend: spawns
// one thread per rank and turns any failure into a fast, clear error. thread-rank.ts is the
// other side, run inside each thread.

import { Worker } from 'node:worker_threads';
import { abortGroup, abortMessage, rankActivity, type ShmHandle } from '../comm/shm.js';
import { CommunicationError } from '../errors.js';

export interface WorkerMessage {
  type: 'result' | 'error' | 'event';
  rank: number;
  value?: unknown;
  message?: string;
}

export interface RunOptions {
  /** Called with every 'event' message a rank posts (progress, logs). */
  onEvent?: (rank: number, value: unknown) => void;
  /** Per-rank data given to the worker as workerData.data. */
  data: (rank: number) => unknown;
  /** Extra options for each worker thread (e.g. resource limits). */
  execArgv?: string[];
}

/**
 * Runs `script` on `handle.size` worker threads and resolves with each rank's result. A rank
 * that throws, posts an error or exits early makes the group fail: the others are told at
 * once through shared memory, any still running after a grace period are terminated, and the
 * promise rejects with the first failure's message.
 */
export function runThreadGroup(handle: ShmHandle, script: URL, options: RunOptions): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const results: unknown[] = new Array(handle.size);
    const done = new Array<boolean>(handle.size).fill(false);
    let firstFailure: string | null = null;
    let remaining = handle.size;
    let killTimer: NodeJS.Timeout | undefined;
    const workers: Worker[] = [];

    const fail = (rank: number, message: string) => {
      if (firstFailure === null) {
        firstFailure = message;
        abortGroup(handle, rank, message);
        // ranks busy computing notice at their next collective; do not wait for ever
        killTimer = setTimeout(() => workers.forEach((w) => void w.terminate()), Math.min(5000, handle.timeoutMs));
        killTimer.unref();
      }
    };

    const finish = (rank: number) => {
      if (done[rank]) return;
      done[rank] = true;
      if (--remaining === 0) {
        if (killTimer) clearTimeout(killTimer);
        // the root cause is whoever aborted the group first, whichever message reached us first
        if (firstFailure !== null) reject(new CommunicationError(abortMessage(handle) ?? firstFailure, 'GROUP_FAILED'));
        else resolve(results);
      }
    };

    for (let rank = 0; rank < handle.size; rank++) {
      const worker = new Worker(script, { workerData: { handle, rank, data: options.data(rank) }, execArgv: options.execArgv });
      workers.push(worker);
      let reported = false;
      worker.on('message', (message: WorkerMessage) => {
        if (message.type === 'event') options.onEvent?.(rank, message.value);
        else if (message.type === 'result') {
          results[rank] = message.value;
          reported = true;
        } else if (message.type === 'error') {
          reported = true;
          fail(rank, message.message ?? `rank ${rank} failed`);
        }
      });
      worker.on('error', (error) => {
        reported = true;
        fail(rank, `rank ${rank} crashed during ${rankActivity(handle, rank)}: ${error.message}`);
      });
      worker.on('exit', (code) => {
        if (!reported) fail(rank, `rank ${rank} exited with code ${code} during ${rankActivity(handle, rank)} without finishing`);
        finish(rank);
      });
    }
  });
}
