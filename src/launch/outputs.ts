// Output paths are checked before any work: a checkpoint that cannot be written is refused at
// start-up, not after an epoch of training.

import { accessSync, constants, existsSync, statSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { ConvergeError } from '../errors.js';

/** Throws, in one line, unless `path` (a file to be written; '-' is standard output) can be written. */
export function checkWritable(option: string, path: string): void {
  if (path === '-') return;
  const full = resolve(path);
  const dir = dirname(full);
  const refuse = (problem: string) => new ConvergeError(`${option} ${path}: ${problem}; choose another path (checked before any work starts).`, 'NOT_WRITABLE');
  if (!existsSync(dir)) throw refuse(`the folder ${dir} does not exist`);
  if (!statSync(dir).isDirectory()) throw refuse(`${dir} is not a folder`);
  try {
    accessSync(dir, constants.W_OK);
  } catch {
    throw refuse(`the folder ${dir} is not writable`);
  }
  if (existsSync(full)) {
    if (statSync(full).isDirectory()) throw refuse('it is a folder');
    try {
      accessSync(full, constants.W_OK);
    } catch {
      throw refuse('the file exists and is not writable');
    }
  }
}
