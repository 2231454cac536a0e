// One rank of bench/collectives: times allreduce at each size, reports the per-op times.
import { runRank } from '../comm/worker-entry.js';
import { selectKernels } from '../kernels/select.js';

runRank<{ sizes: number[]; seconds: number; kernels: string; shared: boolean }>(async (comm, { sizes, seconds, kernels, shared }) => {
  selectKernels(kernels);
  const results: { bytes: number; medianSeconds: number; ops: number }[] = [];
  const region = shared ? comm.allocate(Math.max(...sizes) / 4) : null;
  for (const bytes of sizes) {
    // shared: the buffer comm.allocate() gives (read in place by peers); else a private one (copied in and out)
    const buffer = (region ? region.subarray(0, bytes / 4) : new Float32Array(bytes / 4)).fill(comm.rank + 1);
    for (let i = 0; i < 5; i++) await comm.allreduce(buffer);
    // every rank runs the same number of operations: rank 0 decides, by broadcast, when to stop
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
});
