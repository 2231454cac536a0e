// Every rank of a process job must run the same configuration: the options that change what is
// computed, and the model's layout. Ranks started with different options — or ranks of two jobs
// that share a port and a secret — would otherwise train together silently (one at lr 0.5, the
// other at 0.05, both exiting 0). Before any training step the ranks exchange what they run and
// fail alike, naming the first field that differs.

import type { Communicator } from '../comm/communicator.js';
import { ConvergeError } from '../errors.js';
import { modelLabel } from '../models/module.js';
import type { TrainConfig } from '../train/config.js';

/** Floats each rank sends: the length, then the identity's UTF-8 bytes one per float. */
export const IDENTITY_FLOATS = 1 + 2048;

/** What every rank of a job must agree on (in a fixed order: the first difference is named). */
export function jobIdentity(config: TrainConfig, parameters: number, dataset: string): Record<string, unknown> {
  return {
    model: modelLabel(config.model), parameters, dataset, strategy: config.strategy, backend: config.backend, workers: config.workers,
    batch: config.batch, epochs: config.epochs, seed: config.seed, optimizer: config.optimizer, lr: config.lr, lrScaling: config.lrScaling,
    momentum: config.momentum, weightDecay: config.weightDecay, schedule: config.schedule, warmupEpochs: config.warmupEpochs,
    stepEpochs: config.stepEpochs, gamma: config.gamma, compress: config.compress ?? 'none', paramPrecision: config.paramPrecision,
    syncBn: config.syncBn, syncEvery: config.syncEvery, staleness: config.staleness, mergeEvery: config.mergeEvery, evalEvery: config.evalEvery, saveEvery: config.saveEvery,
  };
}

/** Exchanges every rank's identity; throws (on every rank alike) when one differs from rank 0's. */
export async function agreeOnConfiguration(comm: Communicator, identity: Record<string, unknown>): Promise<void> {
  const bytes = Buffer.from(JSON.stringify(identity));
  if (bytes.length >= IDENTITY_FLOATS) throw new ConvergeError(`the job's configuration takes ${bytes.length} bytes, more than the ${IDENTITY_FLOATS - 1} ranks exchange to compare it.`, 'CONFIG_MISMATCH');
  const send = new Float32Array(IDENTITY_FLOATS);
  send[0] = bytes.length;
  for (let i = 0; i < bytes.length; i++) send[1 + i] = bytes[i];
  const all = new Float32Array(comm.size * IDENTITY_FLOATS);
  await comm.allgather(send, all);
  const identityOf = (r: number): Record<string, unknown> => {
    const at = r * IDENTITY_FLOATS;
    return JSON.parse(Buffer.from(all.subarray(at + 1, at + 1 + all[at])).toString('utf8'));
  };
  const root = identityOf(0);
  for (let r = 1; r < comm.size; r++) {
    const theirs = identityOf(r);
    const field = Object.keys({ ...root, ...theirs }).find((key) => JSON.stringify(root[key]) !== JSON.stringify(theirs[key]));
    if (field !== undefined) {
      throw new ConvergeError(`rank ${r} runs another configuration than rank 0: ${field} ${JSON.stringify(theirs[field])} where rank 0 has ${JSON.stringify(root[field])}; start every rank with the same options (or is another job using this MASTER_PORT and secret?).`, 'CONFIG_MISMATCH');
    }
  }
}
