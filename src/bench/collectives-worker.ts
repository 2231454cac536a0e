// One rank of bench/collectives on threads (shm).
import { runRank } from '../launch/thread-rank.js';
import { selectKernels } from '../kernels/select.js';
import { timeAllreduce } from './collectives-timing.js';

runRank<{ sizes: number[]; seconds: number; kernels: string; shared: boolean }>(async (comm, { sizes, seconds, kernels, shared }) => {
  selectKernels(kernels);
  return timeAllreduce(comm, sizes, seconds, shared);
});
