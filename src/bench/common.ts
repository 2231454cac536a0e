// Shared by the benchmarks: medians, the environment line every result carries, JSON output.

import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { cpus } from 'node:os';
import { spawnSync } from 'node:child_process';

export function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const middle = sorted.length >> 1;
  return sorted.length % 2 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
}

export function environment(): Record<string, string | number> {
  return {
    date: new Date().toISOString(),
    cpu: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    node: process.version,
    OPENBLAS_CORETYPE: process.env.OPENBLAS_CORETYPE ?? '(unset)',
  };
}

export function announceEnvironment(): void {
  const coretype = process.env.OPENBLAS_CORETYPE;
  console.log(coretype
    ? `note: OPENBLAS_CORETYPE=${coretype} is set, which makes OpenBLAS use older kernels; the npm bench scripts unset it in their own command.`
    : 'note: OPENBLAS_CORETYPE is unset for this benchmark (OpenBLAS picks its kernels for this CPU); tests and CI keep it.');
}

export function writeJson(path: string, value: unknown): void {
  mkdirSync(dirname(path), { recursive: true });
  writeFileSync(path, `${JSON.stringify(value, null, 2)}\n`);
  console.log(`wrote ${path}`);
}

/** Debian's python3 (with python3-torch / python3-numpy), when it has `module`. */
export function debianPython(module: string): string | null {
  for (const python of ['/usr/bin/python3', 'python3']) {
    if (spawnSync(python, ['-c', `import ${module}`], { stdio: 'ignore' }).status === 0) return python;
  }
  return null;
}

/**
 * The PyTorch configurations a bench tries, its best taken: per core (one torch thread AND one
 * OpenBLAS thread — Debian's torch sends matrix products to OpenBLAS, whose own threads
 * torch.set_num_threads does not limit), and for the whole machine every combination.
 */
export const pytorchConfigurations = [
  { configuration: 'per-core', threads: 1, openblas: '1' },
  { configuration: 'machine', threads: 1, openblas: '' },
  { configuration: 'machine', threads: 2, openblas: '' },
  { configuration: 'machine', threads: 2, openblas: '1' },
] as const;

/** The environment of a PyTorch run in configuration `c` (OPENBLAS_NUM_THREADS set, or OpenBLAS's default). */
export function pytorchEnvironment(c: { openblas: string }): NodeJS.ProcessEnv {
  const env = { ...process.env };
  if (c.openblas) env.OPENBLAS_NUM_THREADS = c.openblas;
  else delete env.OPENBLAS_NUM_THREADS;
  return env;
}
