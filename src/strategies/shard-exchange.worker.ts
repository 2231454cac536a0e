// One rank of shard-exchange.test.ts: a gradient made from (rank, i), exchanged by share with a
// dense hook; returns what this rank ends with.
import { runRank } from '../launch/thread-rank.js';
import { parseCompress } from '../compress/parse.js';
import { ShardExchange } from './shard-exchange.js';

const gradientOf = (rank: number, size: number) => Float32Array.from({ length: size }, (_, i) => Math.sin(1 + i * 0.37 + rank * 1.7) * (rank + 1) * 10 ** (-(i % 7)));

runRank<{ form: string; size: number; parameterBytes: number; steps: number }>(async (comm, { form, size, parameterBytes, steps }) => {
  const hook = parseCompress(form)({ size, seed: comm.rank, momentum: 0 });
  const exchange = new ShardExchange(comm, hook, size, parameterBytes);
  const grad = comm.allocate(size);
  const results: number[][] = [];
  for (let step = 0; step < steps; step++) {
    grad.set(gradientOf(comm.rank + step, size));
    const { loss, stop } = await exchange.reduceScatterMean(grad, comm.rank + 1, comm.rank === 1, { epoch: 0 });
    const share = [...grad.subarray(...exchange.share)];
    if (!exchange.gathersParameters) await exchange.allgatherMean(grad, { epoch: 0 });
    results.push([loss, stop ? 1 : 0, ...share, ...grad]);
  }
  return { gathersParameters: exchange.gathersParameters, share: exchange.share, results };
});
