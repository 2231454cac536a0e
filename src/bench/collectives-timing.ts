// How bench/collectives times one backend, the same on threads and in processes (and as
// bench/mpi_allreduce.c does from C): 5 warm-up operations per size, then one timing per
// operation until rank 0 says stop (checked every 16 operations), the median per size.

import type { Communicator } from '../comm/communicator.js';

export interface Timing { bytes: number; medianSeconds: number; ops: number }

export async function timeAllreduce(comm: Communicator, sizes: number[], seconds: number, inPlace: boolean): Promise<Timing[]> {
  const results: Timing[] = [];
  const region = inPlace ? comm.allocate(Math.max(...sizes) / 4) : new Float32Array(Math.max(...sizes) / 4);
  for (const bytes of sizes) {
    // in place: the buffer comm.allocate() gives (shm: read by peers where it lies); else a private one
    const buffer = region.subarray(0, bytes / 4).fill(comm.rank + 1);
    for (let i = 0; i < 5; i++) await comm.allreduce(buffer);
    const times: number[] = [];
    const control = new Float32Array(1);
    const started = performance.now();
    for (;;) {
      const t = performance.now();
      await comm.allreduce(buffer);
      times.push(performance.now() - t);
      control[0] = comm.rank === 0 && (performance.now() - started > seconds * 1000 || times.length >= 20000) ? 1 : 0;
      if (times.length % 16 === 0) {
        await comm.broadcast(control, 0);
        if (control[0] === 1) break;
      }
    }
    times.sort((a, b) => a - b);
    results.push({ bytes, medianSeconds: times[times.length >> 1] / 1000, ops: times.length });
  }
  return results;
}
