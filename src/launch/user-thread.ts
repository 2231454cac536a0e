// The entry point of each worker thread of runOnThreads: imports the user's module by its URL
// and runs its default export with this thread's communicator.
import { ConvergeError } from '../errors.js';
import { runRank } from './thread-rank.js';

runRank<{ module: string; data: unknown }>(async (comm, { module, data }, emit) => {
  const loaded = (await import(module)) as { default?: unknown };
  if (typeof loaded.default !== 'function') {
    throw new ConvergeError(`${module}: its default export is not a function; export default async function (comm, data) { … } to run it on every thread.`, 'BAD_MODULE');
  }
  return (loaded.default as (comm: unknown, data: unknown, emit: (value: unknown) => void) => Promise<unknown>)(comm, data, emit);
});
