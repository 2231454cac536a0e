// The communicator of a process that is one rank of a job: tcp (rendezvous from the
// environment) or mpi (Open MPI says the rank). Threads use the shm backend (threads.ts).

import type { Communicator } from '../comm/communicator.js';
import { connectTcp } from '../comm/tcp.js';
import { unknownName } from '../errors.js';
import { masterFromEnvironment, placeFromEnvironment } from './environment.js';

export const processBackends = ['tcp', 'mpi'] as const;

export interface ProcessCommunicator extends Communicator {
  close(): void | Promise<void>;
}

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
  throw unknownName('backend', backend, ['shm', ...processBackends]);
}
