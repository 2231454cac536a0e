// What each thread of custom-loop.ts runs: least squares y = a·x + b on this rank's shard.
import { Random, type Communicator } from 'converge';

export default async function (comm: Communicator, { steps }: { steps: number }): Promise<number[]> {
  const random = new Random(100 + comm.rank); // each rank its own data
  const params = comm.allocate(2); // [a, b], where the communicator reads it fastest
  const grad = comm.allocate(2);
  params.set([comm.rank, comm.rank]); // deliberately different …
  await comm.broadcast(params, 0); // … until rank 0's parameters reach every rank
  for (let step = 0; step < steps; step++) {
    grad.fill(0);
    for (let i = 0; i < 32; i++) {
      const x = random.next() * 2 - 1;
      const y = 3 * x - 1 + 0.01 * (random.next() - 0.5);
      const error = params[0] * x + params[1] - y;
      grad[0] += (error * x) / 32;
      grad[1] += error / 32;
    }
    await comm.allreduce(grad, 'mean');
    for (let i = 0; i < 2; i++) params[i] -= 0.5 * grad[i];
  }
  return Array.from(params, (v) => +v.toFixed(3));
}
