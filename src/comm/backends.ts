// The communication backends, in order of preference: the first is the one a run on one machine
// gets; the others make this process one rank of a job. One list, read by the options' checks,
// the launchers and the sweeps.

export interface BackendEntry {
  readonly name: 'shm' | 'tcp' | 'mpi';
  /** Ranks are processes (started by `converge launch`, mpirun or srun), not threads of this one. */
  readonly processes: boolean;
  readonly description: string;
}

export const backends: readonly BackendEntry[] = [
  { name: 'shm', processes: false, description: 'worker threads of this process, sharing memory' },
  { name: 'tcp', processes: true, description: 'processes on any hosts, over TCP (rendezvous at MASTER_ADDR:MASTER_PORT)' },
  { name: 'mpi', processes: true, description: 'processes of an Open MPI job (mpirun, srun)' },
];

export type BackendName = BackendEntry['name'];

export const backendNames: readonly BackendName[] = backends.map((b) => b.name);

export function isProcessBackend(name: string): boolean {
  return backends.some((b) => b.name === name && b.processes);
}
