// Kernels are looked up by name. Each backend registers the kernels it implements; the active
// backend is chosen once at start-up, and any kernel it lacks falls back to the reference.
// Models fetch their kernels when they are built, so they never import a backend.

import { duplicateName, unknownName } from '../errors.js';
import { referenceKernels } from './reference.js';
import type { KernelName, KernelSet } from './types.js';

const REFERENCE = 'reference';
const backends = new Map<string, Partial<KernelSet>>();
let active = REFERENCE;

export function registerKernel<K extends KernelName>(backend: string, name: K, implementation: KernelSet[K]): void {
  let table = backends.get(backend);
  if (!table) backends.set(backend, (table = {}));
  if (table[name]) throw duplicateName(`kernel ${backend}/${name}`, name);
  table[name] = implementation;
}

export function registerBackend(backend: string, kernels: Partial<KernelSet>): void {
  for (const name of Object.keys(kernels) as KernelName[]) registerKernel(backend, name, kernels[name] as never);
}

registerBackend(REFERENCE, referenceKernels);

export function availableBackends(): string[] {
  return [...backends.keys()];
}

export function useBackend(backend: string): void {
  if (!backends.has(backend)) throw unknownName('kernel backend', backend, availableBackends());
  active = backend;
}

export function activeBackend(): string {
  return active;
}

/** The implementation of `name` in the active backend (or the named one), else the reference. */
export function kernel<K extends KernelName>(name: K, backend = active): KernelSet[K] {
  const table = backends.get(backend);
  if (!table) throw unknownName('kernel backend', backend, availableBackends());
  return (table[name] ?? referenceKernels[name]) as KernelSet[K];
}

/** Every kernel of one backend, for models that take them all at construction. */
export function kernelSet(backend = active): KernelSet {
  const names = Object.keys(referenceKernels) as KernelName[];
  return Object.fromEntries(names.map((name) => [name, kernel(name, backend)])) as unknown as KernelSet;
}
