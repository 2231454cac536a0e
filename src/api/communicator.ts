// The communicator for a loop of your own, Horovod-style: `init()` joins the job this process
// belongs to, `runOnThreads()` runs a module on N threads of this process with one communicator
// each. Then `comm.allreduce(gradient, 'mean')`, `comm.broadcast(params, 0)` and the rest of
// the Communicator interface, on buffers of at most `capacity` floats per call.

import type { Communicator, ProcessCommunicator } from '../comm/communicator.js';
import type { TransportSecurity } from '../comm/tcp-seal.js';
import { ShmCommunicator, createShmHandle } from '../comm/shm.js';
import { badOption } from '../errors.js';
import { createProcessCommunicator } from '../launch/communicator.js';
import { runThreadGroup } from '../launch/thread-group.js';

export interface CommunicatorOptions {
  /**
   * The most floats one call moves (the largest buffer you all-reduce, broadcast or send; for
   * allgather and gather, the send buffer): the shm backend reserves shared memory of this size
   * per rank, tcp and mpi their receive buffers. Size it to your parameter count (+ a few).
   */
  capacity: number;
  /** Seconds a rank waits for its peers before the call fails, naming who it waited for (default 120). */
  timeoutSeconds?: number;
  /** tcp: what protects frames after the handshake (default CONVERGE_TRANSPORT_SECURITY, else 'encrypt'); every rank the same. */
  transportSecurity?: TransportSecurity;
}

function checkCapacity(options: CommunicatorOptions): void {
  if (!Number.isInteger(options.capacity) || options.capacity <= 0) throw badOption('capacity', options.capacity, 'a positive number of floats: the largest buffer one call moves');
}

export interface ThreadOptions extends CommunicatorOptions {
  /** Handed to every thread's function as its second argument (structured-cloned). */
  data?: unknown;
  /** Floats that comm.allocate() may hand out per rank, all calls together (default 2 × capacity: parameters and gradients). */
  allocatable?: number;
  /** Reserve mailboxes for send/recv: threads² × capacity floats (default off). */
  pointToPoint?: boolean;
}

const jobVariables = ['RANK', 'OMPI_COMM_WORLD_RANK', 'PMIX_RANK', 'SLURM_PROCID'];

/**
 * This process's communicator. Started by `converge launch` (or with RANK, WORLD_SIZE,
 * MASTER_ADDR, MASTER_PORT, CONVERGE_SECRET set): tcp; by mpirun or srun: mpi unless `backend`
 * says otherwise; on its own: a group of one rank.
 */
export async function init(options: CommunicatorOptions & { backend?: 'tcp' | 'mpi' }): Promise<ProcessCommunicator> {
  checkCapacity(options);
  const timeoutMs = 1000 * (options.timeoutSeconds ?? 120);
  const inJob = jobVariables.some((name) => process.env[name] !== undefined);
  if (!inJob && options.backend === undefined) {
    const comm = new ShmCommunicator(createShmHandle(1, options.capacity, timeoutMs, 2 * options.capacity), 0);
    return Object.assign(comm, { close: () => {} });
  }
  const backend = options.backend ?? (process.env.RANK !== undefined ? 'tcp' : 'mpi');
  return createProcessCommunicator(backend, { capacity: options.capacity, timeoutMs, security: options.transportSecurity });
}

/**
 * Runs the default export of `module` — `async (comm, data) => result` — on `threads` worker
 * threads of this process, each with its rank's communicator (shared memory); resolves with
 * every rank's result, or rejects with the first failure, naming the rank.
 */
export function runOnThreads<T = unknown>(threads: number, module: URL | string, options: ThreadOptions): Promise<T[]> {
  checkCapacity(options);
  if (!Number.isInteger(threads) || threads <= 0) throw badOption('threads', threads, 'a positive integer');
  const url = module instanceof URL ? module.href : module;
  const allocatable = options.allocatable ?? 2 * options.capacity;
  if (!Number.isInteger(allocatable) || allocatable <= 0) throw badOption('allocatable', allocatable, 'a positive number of floats');
  const handle = createShmHandle(threads, options.capacity, 1000 * (options.timeoutSeconds ?? 120), allocatable, options.pointToPoint ? options.capacity : 0);
  return runThreadGroup(handle, new URL('../launch/user-thread.js', import.meta.url), { data: () => ({ module: url, data: options.data }) }) as Promise<T[]>;
}

export type { Communicator, ProcessCommunicator };
