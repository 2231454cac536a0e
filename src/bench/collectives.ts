// bench/collectives: all-reduce time and bandwidth per message size, for the shared-memory
// backend (2 ranks by default). Prints a table and writes bench/results/collectives.json.
//   node dist/bench/collectives.js [--ranks 2] [--seconds 1]

import { writeFileSync, mkdirSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { createShmHandle, runGroup } from '../comm/shm.js';
import { selectKernels } from '../kernels/select.js';

const { values } = parseArgs({ options: { ranks: { type: 'string', default: '2' }, seconds: { type: 'string', default: '1' }, out: { type: 'string', default: 'bench/results/collectives.json' } } });
const ranks = Number(values.ranks);
const sizes = [4 << 10, 256 << 10, 4 << 20, 64 << 20];
const kernels = selectKernels(undefined, (line) => console.error(line));
const rows = [];
for (const shared of [false, true]) {
  const handle = createShmHandle(ranks, (64 << 20) / 4, 60_000);
  const outputs = (await runGroup(handle, new URL('./collectives-worker.js', import.meta.url), { data: () => ({ sizes, seconds: Number(values.seconds), kernels, shared }) })) as { bytes: number; medianSeconds: number; ops: number }[][];
  // the slowest rank's median is the operation's time
  rows.push(...sizes.map((bytes, i) => {
    const seconds = Math.max(...outputs.map((rank) => rank[i].medianSeconds));
    // bus bandwidth as NCCL/Horovod report it: 2(P−1)/P · bytes / time
    return { backend: shared ? 'shm (allocate()d buffer)' : 'shm (private buffer)', ranks, bytes, medianMicroseconds: seconds * 1e6,
      algorithmGBps: bytes / seconds / 1e9, busGBps: ((2 * (ranks - 1)) / ranks) * bytes / seconds / 1e9, ops: outputs[0][i].ops };
  }));
}
console.log(`allreduce (sum, float32), ${ranks} ranks, kernels ${kernels}; median per operation`);
console.log('backend                    size        time (µs)   algorithm GB/s   bus GB/s');
for (const r of rows) {
  const size = r.bytes >= 1 << 20 ? `${r.bytes >> 20} MiB` : `${r.bytes >> 10} KiB`;
  console.log(`${r.backend.padEnd(26)} ${size.padEnd(10)} ${r.medianMicroseconds.toFixed(1).padStart(10)} ${r.algorithmGBps.toFixed(2).padStart(16)} ${r.busGBps.toFixed(2).padStart(10)}`);
}
mkdirSync('bench/results', { recursive: true });
writeFileSync(values.out!, `${JSON.stringify({ date: new Date().toISOString(), rows }, null, 2)}\n`);
