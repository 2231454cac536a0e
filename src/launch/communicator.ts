// The communicator of a process that is one rank of a job: tcp (rendezvous from the
// environment) or mpi (Open MPI says the rank). Threads use the shm backend (threads.ts).

import { backends } from '../comm/backends.js';
import type { ProcessCommunicator } from '../comm/communicator.js';
import { connectTcp } from '../comm/tcp-rendezvous.js';
import { unknownName } from '../errors.js';
import { masterFromEnvironment, placeFromEnvironment } from './environment.js';

export type { ProcessCommunicator } from '../comm/communicator.js';

export async function createProcessCommunicator(backend: string, options: { capacity: number; timeoutMs: number; log?: (line: string) => void }): Promise<ProcessCommunicator> {
  if (backend === 'tcp') {
    const place = placeFromEnvironment();
    const master = masterFromEnvironment();
    return connectTcp({ rank: place.rank, size: place.size, masterAddr: master.addr, masterPort: master.port, secret: master.secret, timeoutMs: options.timeoutMs, capacity: options.capacity, log: options.log ?? ((line) => console.error(line)) });
  }
  if (backend === 'mpi') {
    const { connectMpi } = await import('../comm/mpi.js');
    return connectMpi(options);
  }
  throw unknownName('process backend', backend, backends.filter((b) => b.processes).map((b) => b.name));
}
