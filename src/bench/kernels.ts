// bench/kernels: GFLOP/s of GEMM (n = 128 … 2048) and of the CNN's convolution kernels,
// reference vs native, one core; and, when Debian's python3-numpy is installed, the same GEMM
// through numpy on the same OpenBLAS with one thread, in the same run.
//   npm run bench:kernels -- [--sizes 128,256,512,1024,2048]

import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { kernel } from '../kernels/registry.js';
import { nativeKernelInfo, selectKernels } from '../kernels/select.js';
import { convGeometry } from '../kernels/types.js';
import { Random } from '../tensor/random.js';
import { announceEnvironment, debianPython, environment, median, writeJson } from './common.js';

const { values } = parseArgs({ options: { sizes: { type: 'string', default: '128,256,512,1024,2048' }, out: { type: 'string', default: 'bench/results/kernels.json' } } });
const sizes = values.sizes!.split(',').map(Number);
const random = new Random(1);

/** Median seconds per call: at least 3 calls, up to `budget` seconds. */
function time(call: () => void, budget: number): number {
  call();
  const times: number[] = [];
  const end = performance.now() + budget * 1000;
  while (times.length < 3 || (performance.now() < end && times.length < 500)) {
    const t = performance.now();
    call();
    times.push((performance.now() - t) / 1000);
  }
  return median(times);
}

announceEnvironment();
if (!nativeKernelInfo()) console.log('native kernels not built: reference only');
else console.log(`native: ${nativeKernelInfo()!.blas} (core ${nativeKernelInfo()!.core}), one thread`);
const backends = nativeKernelInfo() ? ['reference', 'native'] : ['reference'];
const rows: { kernel: string; shape: string; backend: string; gflops: number; seconds: number }[] = [];
const report = (name: string, shape: string, backend: string, flops: number, seconds: number) => {
  rows.push({ kernel: name, shape, backend, gflops: flops / seconds / 1e9, seconds });
  console.log(`${name.padEnd(22)} ${shape.padEnd(26)} ${backend.padEnd(10)} ${(flops / seconds / 1e9).toFixed(1).padStart(8)} GFLOP/s  ${(seconds * 1e3).toFixed(3).padStart(10)} ms`);
};

for (const n of sizes) {
  const a = random.fillUniform(new Float32Array(n * n));
  const b = random.fillUniform(new Float32Array(n * n));
  const c = new Float32Array(n * n);
  for (const backend of backends) {
    selectKernels(backend);
    const gemm = kernel('gemm');
    // the reference at n ≥ 1024 takes seconds a call: one budget-limited round is enough
    report('gemm NN', `${n}×${n}×${n}`, backend, 2 * n ** 3, time(() => gemm(false, false, n, n, n, 1, a, b, 0, c), backend === 'reference' ? 0.5 : 1));
  }
}

// the CNN's convolutions at batch 64 (conv1: 1→32 on 28×28; conv2: 32→64 on 14×14; 3×3 'same')
for (const [name, C, H, F] of [['conv1', 1, 28, 32], ['conv2', 32, 14, 64]] as const) {
  const g = convGeometry(C, H, H, F, 3, 1);
  const batch = 64;
  const x = random.fillUniform(new Float32Array(batch * C * H * H));
  const w = random.fillUniform(new Float32Array(F * C * 9));
  const bias = new Float32Array(F);
  const out = new Float32Array(batch * F * H * H);
  const gradW = new Float32Array(w.length);
  const gradBias = new Float32Array(F);
  const gradX = new Float32Array(x.length);
  const columns = new Float32Array(C * 9 * H * H);
  const flops = 2 * batch * F * C * 9 * H * H; // one GEMM's worth
  for (const backend of backends) {
    selectKernels(backend);
    const forward = kernel('convForward');
    const backward = kernel('convBackward');
    const budget = backend === 'reference' ? 1 : 1;
    report(`${name} forward`, `64×${C}×${H}×${H} → ${F}`, backend, flops, time(() => forward(x, w, bias, out, batch, g, columns), budget));
    // weight gradient alone (the first layer's input gradient is never needed), then both
    report(`${name} backward (w)`, `64×${C}×${H}×${H} → ${F}`, backend, flops, time(() => backward(x, w, out, gradW, gradBias, null, batch, g, columns), budget));
    report(`${name} backward (w, x)`, `64×${C}×${H}×${H} → ${F}`, backend, 2 * flops, time(() => backward(x, w, out, gradW, gradBias, gradX, batch, g, columns), budget));
  }
}

let numpy: { n: number[]; gflops: number[]; blas: string } | null = null;
const python = debianPython('numpy');
if (python) {
  const script = fileURLToPath(new URL('../../bench/numpy_gemm.py', import.meta.url));
  const result = spawnSync(python, [script, sizes.join(',')], { env: { ...process.env, OPENBLAS_NUM_THREADS: '1' }, encoding: 'utf8' });
  if (result.status === 0) {
    numpy = JSON.parse(result.stdout.trim().split('\n').pop()!);
    console.log(`\nnumpy (${python}, BLAS ${numpy!.blas}, OPENBLAS_NUM_THREADS=1) in the same run:`);
    numpy!.n.forEach((n, i) => {
      const ours = rows.find((r) => r.kernel === 'gemm NN' && r.shape.startsWith(`${n}×`) && r.backend === 'native');
      console.log(`gemm ${n}³: numpy ${numpy!.gflops[i].toFixed(1)} GFLOP/s${ours ? `; converge native ${ours.gflops.toFixed(1)} = ${(100 * ours.gflops / numpy!.gflops[i]).toFixed(0)}% of numpy` : ''}`);
    });
  } else console.log(`numpy comparison failed: ${result.stderr.trim().split('\n').pop()}`);
} else console.log('\nnumpy comparison skipped: python3-numpy is not installed (apt-get install python3-numpy)');
writeJson(values.out!, { environment: environment(), native: nativeKernelInfo(), rows, numpy });
