// bench/collectives: all-reduce (sum, float32) time and bandwidth per message size, for every
// backend in one run — shm (threads; private and allocate()d buffers), tcp (processes; encrypted,
// integrity only and unprotected), mpi
// (processes under mpirun, with and without the fingerprint check) — and, as the yardstick, a C
// program calling MPI_Allreduce (bench/mpi_allreduce.c, built here with mpicc). 2 ranks by default.
// Prints a table and writes bench/results/collectives.json.
// The machine's speed drifts from minute to minute, so the whole set runs --repeats times,
// backends interleaved, and each figure is the median over the repeats.
//   npm run bench:collectives -- [--ranks 2] [--seconds 1] [--repeats 3] [--backends shm,tcp,mpi,c]

import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { createShmHandle } from '../comm/shm.js';
import { runThreadGroup } from '../launch/thread-group.js';
import { selectKernels } from '../kernels/select.js';
import { launchProcesses } from '../launch/local-job.js';
import { mpiJob, mpiMissing, mpirunFlags } from '../launch/mpi-job.js';
import { announceEnvironment, environment, writeJson } from './common.js';
import type { Timing } from './collectives-timing.js';
import { transportSecurities, type TransportSecurity } from '../comm/tcp-seal.js';

const tcpRow = (security: TransportSecurity) => `tcp loopback, ${security === 'encrypt' ? 'encrypted' : security === 'integrity' ? 'integrity only' : 'unprotected'}`;

const { values } = parseArgs({ options: { ranks: { type: 'string', default: '2' }, seconds: { type: 'string', default: '1' }, backends: { type: 'string', default: 'shm,tcp,mpi,c' }, repeats: { type: 'string', default: '3' }, out: { type: 'string', default: 'bench/results/collectives.json' } } });
const ranks = Number(values.ranks);
const seconds = values.seconds!;
const sizes = [4 << 10, 256 << 10, 4 << 20, 64 << 20];
const backends = values.backends!.split(',');
const kernels = selectKernels(undefined, (line) => console.error(line));
const processScript = new URL('./collectives-process.js', import.meta.url).pathname;
announceEnvironment();

interface Row { backend: string; ranks: number; bytes: number; medianMicroseconds: number; algorithmGBps: number; busGBps: number; repeats: number[] }
/** Per backend and size: the operation's time in each repeat (the slowest rank's median). */
const measured = new Map<string, number[][]>();
function addRows(backend: string, perRank: Timing[][]): void {
  if (!measured.has(backend)) measured.set(backend, sizes.map(() => []));
  sizes.forEach((_, i) => measured.get(backend)![i].push(Math.max(...perRank.map((timings) => timings[i].medianSeconds))));
}
const parse = (lines: string[]) => lines.filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as { rank: number; timings?: Timing[] } & Timing);

const dir = mkdtempSync(join(tmpdir(), 'converge-mpi-c-'));
const cBuilt = !mpiMissing && backends.includes('c') ? spawnSync('mpicc', ['-O2', '-o', join(dir, 'allreduce'), new URL('../../bench/mpi_allreduce.c', import.meta.url).pathname], { encoding: 'utf8' }) : null;
if (cBuilt && cBuilt.status !== 0) console.error(`mpicc failed: ${cBuilt.stderr}`);
const repeats = Number(values.repeats);
for (let repeat = 0; repeat < repeats; repeat++) {
  console.error(`repeat ${repeat + 1}/${repeats}`);
  if (backends.includes('shm')) {
    for (const shared of [false, true]) {
      const handle = createShmHandle(ranks, (64 << 20) / 4, 60_000);
      const outputs = (await runThreadGroup(handle, new URL('./collectives-worker.js', import.meta.url), { data: () => ({ sizes, seconds: Number(seconds), kernels, shared }) })) as Timing[][];
      addRows(shared ? 'shm (allocate()d buffer)' : 'shm (private buffer)', outputs);
    }
  }
  if (backends.includes('tcp')) {
    // one row per transport security: what sealing every frame costs, side by side
    for (const security of transportSecurities) {
      const lines: string[] = [];
      const job = await launchProcesses({ processes: ranks, command: [process.execPath, processScript, 'tcp', seconds, ...sizes.map(String)], env: { CONVERGE_TRANSPORT_SECURITY: security }, onLine: (_rank, line) => lines.push(line) });
      if (job.exitCode !== 0) console.error(`tcp (${security}) failed: ${lines.join('\n')}`);
      else addRows(tcpRow(security), parse(lines).map((r) => r.timings!));
    }
  }
  const mpiSkipped = mpiMissing;
  if (mpiSkipped && (backends.includes('mpi') || backends.includes('c'))) console.error(`mpi and C skipped: ${mpiSkipped}`);
  if (!mpiSkipped && backends.includes('mpi')) {
    for (const checks of [true, false]) {
      const job = await mpiJob(ranks, [process.execPath, processScript, 'mpi', seconds, ...sizes.map(String)], { CONVERGE_MPI_CHECKS: checks ? '1' : '0' });
      if (job.exitCode !== 0) console.error(`mpi failed: ${job.lines.flat().join('\n')}`);
      else addRows(checks ? 'mpi (Node addon)' : 'mpi (addon, no fingerprint check)', parse(job.lines.flat()).map((r) => r.timings!));
    }
  }
  if (cBuilt?.status === 0) {
    const run = spawnSync('mpirun', [...mpirunFlags().filter((f) => f !== '--tag-output'), '-np', String(ranks), join(dir, 'allreduce'), seconds], { encoding: 'utf8' });
    const records = parse(run.stdout.split('\n'));
    addRows('C MPI_Allreduce (mpicc)', Array.from({ length: ranks }, (_, r) => records.filter((x) => x.rank === r)));
  }
}

const median = (values: number[]) => [...values].sort((a, b) => a - b)[values.length >> 1];
const rows: Row[] = [];
for (const [backend, perSize] of measured) {
  sizes.forEach((bytes, i) => {
    const time = median(perSize[i]);
    // bus bandwidth as NCCL/Horovod report it: 2(P−1)/P · bytes / time
    rows.push({ backend, ranks, bytes, medianMicroseconds: time * 1e6, algorithmGBps: bytes / time / 1e9, busGBps: ((2 * (ranks - 1)) / ranks) * bytes / time / 1e9, repeats: perSize[i].map((t) => +(t * 1e6).toFixed(1)) });
  });
}

console.log(`allreduce (sum, float32, in place), ${ranks} ranks, kernels ${kernels}; median per operation (slowest rank), median of ${repeats} repeats`);
console.log('backend                              size        time (µs)   algorithm GB/s   bus GB/s');
for (const r of rows) {
  const size = r.bytes >= 1 << 20 ? `${r.bytes >> 20} MiB` : `${r.bytes >> 10} KiB`;
  console.log(`${r.backend.padEnd(36)} ${size.padEnd(10)} ${r.medianMicroseconds.toFixed(1).padStart(10)} ${r.algorithmGBps.toFixed(2).padStart(16)} ${r.busGBps.toFixed(2).padStart(10)}`);
}
// the targets, as ratios measured in this run
const at = (backend: string, bytes: number) => rows.find((r) => r.backend === backend && r.bytes === bytes);
const c = (bytes: number) => at('C MPI_Allreduce (mpicc)', bytes);
if (c(4 << 20)) {
  console.log('\nagainst C (time of C / time of converge, medians; ≥ 1 is as fast or faster):');
  for (const backend of ['mpi (Node addon)', 'mpi (addon, no fingerprint check)', 'shm (allocate()d buffer)', ...transportSecurities.map(tcpRow)]) {
    const ratios = sizes.map((bytes) => {
      const mine = at(backend, bytes);
      return mine ? `${(c(bytes)!.medianMicroseconds / mine.medianMicroseconds).toFixed(2)}` : '-';
    });
    console.log(`  ${backend.padEnd(36)} ${ratios.join('  ')}   (4 KiB, 256 KiB, 4 MiB, 64 MiB)`);
  }
}
const plain = (bytes: number) => at(tcpRow('none'), bytes);
if (plain(4 << 20)) {
  console.log('\ntcp: the price of sealing (time unprotected / time sealed, medians; 1 is free), and the sealed bus bandwidth:');
  for (const security of ['encrypt', 'integrity'] as const) {
    const cells = sizes.map((bytes) => {
      const mine = at(tcpRow(security), bytes);
      return mine ? `${(plain(bytes)!.medianMicroseconds / mine.medianMicroseconds).toFixed(2)} (${mine.busGBps.toFixed(2)} GB/s)` : '-';
    });
    console.log(`  ${security.padEnd(10)} ${cells.join('  ')}   (4 KiB, 256 KiB, 4 MiB, 64 MiB)`);
  }
}
writeJson(values.out!, { environment: environment(), ranks, repeats, rows });
