// The rank side of runThreadGroup: builds this thread's communicator, runs the job, reports back.

import { parentPort, workerData } from 'node:worker_threads';
import { ShmCommunicator, rankActivity, type ShmHandle } from '../comm/shm.js';
import type { Communicator } from '../comm/communicator.js';
import type { WorkerMessage } from './thread-group.js';

export type RankJob<T> = (comm: Communicator, data: T, emit: (value: unknown) => void) => Promise<unknown>;

export function runRank<T>(job: RankJob<T>): void {
  const { handle, rank, data } = workerData as { handle: ShmHandle; rank: number; data: T };
  const comm = new ShmCommunicator(handle, rank);
  const post = (message: WorkerMessage) => parentPort!.postMessage(message);
  job(comm, data, (value) => post({ type: 'event', rank, value })).then(
    (value) => post({ type: 'result', rank, value }),
    (error: unknown) => {
      const text = error instanceof Error ? error.message : String(error);
      // a communication error already names this rank; anything else is this rank's own failure
      const message = text.startsWith(`rank ${rank}:`) ? text : `rank ${rank} failed during ${rankActivity(handle, rank)}: ${text}`;
      comm.abort(message);
      post({ type: 'error', rank, message });
    },
  );
}
