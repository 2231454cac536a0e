// One rank of bench/collectives as a process (tcp under converge launch, mpi under mpirun):
// `node collectives-process.js BACKEND SECONDS SIZE…`; prints one JSON line with its timings.
import { selectKernels } from '../kernels/select.js';
import { createProcessCommunicator } from '../launch/communicator.js';
import { timeAllreduce } from './collectives-timing.js';

const [backend, seconds, ...sizes] = process.argv.slice(2);
const kernels = selectKernels(undefined, () => {});
const byteSizes = sizes.map(Number);
const comm = await createProcessCommunicator(backend, { capacity: Math.max(...byteSizes) / 4 + 4, timeoutMs: 120_000 });
const timings = await timeAllreduce(comm, byteSizes, Number(seconds), true);
console.log(JSON.stringify({ rank: comm.rank, kernels, timings }));
await comm.close();
