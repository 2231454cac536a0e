// The communicator of a process that is one rank of a job: tcp (rendezvous from the
// environment) or mpi (Open MPI says the rank). Threads use the shm backend (threads.ts).

import { backends } from '../comm/backends.js';
import type { ProcessCommunicator } from '../comm/communicator.js';
import { connectTcp } from '../comm/tcp-rendezvous.js';
import { unknownName } from '../errors.js';
import type { TransportSecurity } from '../comm/tcp-seal.js';
import { mallocArenaNote, masterFromEnvironment, placeFromEnvironment, tcpSettingsFromEnvironment, weakSecretWarning } from './environment.js';

export type { ProcessCommunicator } from '../comm/communicator.js';

/** The transport security a tcp rank runs with: the one asked for, else CONVERGE_TRANSPORT_SECURITY, else encrypt. */
export function transportSecurityOf(requested?: TransportSecurity): TransportSecurity {
  return requested ?? tcpSettingsFromEnvironment().security ?? 'encrypt';
}

/** `security`, `bind`: the tcp backend's transport security and listening address (else from the environment). */
export async function createProcessCommunicator(backend: string, options: { capacity: number; timeoutMs: number; log?: (line: string) => void; security?: TransportSecurity; bind?: string }): Promise<ProcessCommunicator> {
  if (backend === 'tcp') {
    const place = placeFromEnvironment();
    const master = masterFromEnvironment();
    const settings = tcpSettingsFromEnvironment();
    const log = options.log ?? ((line: string) => console.error(line));
    const weak = weakSecretWarning(master.secret);
    if (weak && place.rank === 0) log(`converge: ${weak}`);
    return connectTcp({
      rank: place.rank, size: place.size, masterAddr: master.addr, masterPort: master.port, secret: master.secret, timeoutMs: options.timeoutMs, capacity: options.capacity, log,
      ...settings, ...(options.security ? { security: options.security } : {}), ...(options.bind ? { bind: options.bind } : {}),
    });
  }
  if (backend === 'mpi') {
    const { connectMpi } = await import('../comm/mpi.js');
    const comm = await connectMpi(options);
    const note = mallocArenaNote(process.env, comm.threads);
    if (note && comm.rank === 0) (options.log ?? ((line: string) => console.error(line)))(`converge: ${note}`);
    return comm;
  }
  throw unknownName('process backend', backend, backends.filter((b) => b.processes).map((b) => b.name));
}
