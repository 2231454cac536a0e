// Chooses the kernels once at start-up: native when the addon loads, else the reference, or
// whatever CONVERGE_KERNELS=reference|native forces. A missing addon is one line, not a failure.

import { ConvergeError } from '../errors.js';
import { loadNativeKernels } from './native.js';
import { activeBackend, availableBackends, registerBackend, useBackend } from './registry.js';

let nativeError: string | null = null;
let nativeInfo: { blas: string; core: string; conv: string } | null = null;

function tryNative(): boolean {
  if (availableBackends().includes('native')) return true;
  if (nativeError !== null) return false;
  try {
    const { kernels, info } = loadNativeKernels();
    registerBackend('native', kernels);
    nativeInfo = info;
    return true;
  } catch (error) {
    nativeError = (error as Error).message.split('\n')[0];
    return false;
  }
}

/**
 * Activates the backend `requested` (or CONVERGE_KERNELS, or the best available) and returns
 * its name. `notice` receives the one line explaining a fallback.
 */
export function selectKernels(requested = process.env.CONVERGE_KERNELS, notice: (line: string) => void = () => {}): string {
  if (requested === 'reference') {
    useBackend('reference');
  } else if (requested === 'native') {
    if (!tryNative()) throw new ConvergeError(`CONVERGE_KERNELS=native but the native kernels did not load (${nativeError}); run npm run build:native (needs libopenblas-dev), or unset CONVERGE_KERNELS.`, 'NO_NATIVE');
    useBackend('native');
  } else if (requested === undefined || requested === '') {
    if (tryNative()) useBackend('native');
    else {
      notice(`converge: native kernels unavailable (${nativeError}); using the reference kernels (slower). Build them with npm run build:native.`);
      useBackend('reference');
    }
  } else {
    throw new ConvergeError(`CONVERGE_KERNELS=${requested} is not a kernel backend; use reference or native.`, 'BAD_OPTION');
  }
  return activeBackend();
}

export function nativeKernelInfo(): { blas: string; core: string; conv: string } | null {
  tryNative();
  return nativeInfo;
}
