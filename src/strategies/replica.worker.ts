// One thread of replica.test.ts: adds (rank + 1) to its own half of the coordinates, then merges,
// `rounds` times, while the other thread does the same to the other half of the same shared array;
// the two meet before each merge, so that their merges start together.
import { parentPort, workerData } from 'node:worker_threads';
import { Replica } from './replica.js';

const { buffer, meet, size, rank, rounds } = workerData as { buffer: SharedArrayBuffer; meet: SharedArrayBuffer; size: number; rank: number; rounds: number };
const replica = new Replica(new Float32Array(size), new Float32Array(buffer, 0, size), buffer, 4 * size, 1);
const arrived = new Int32Array(meet);
const [from, to] = rank === 0 ? [0, size / 2] : [size / 2, size];
let merged = 0;
for (let round = 0; round < rounds; round++) {
  for (let i = from; i < to; i++) replica.local[i] += rank + 1;
  Atomics.add(arrived, 0, 1);
  while (Atomics.load(arrived, 0) < 2 * (round + 1)); // both here: merge together
  replica.stepped(1); // mergeEvery 1: a merge after every round
  merged++;
}
parentPort!.postMessage(merged);
