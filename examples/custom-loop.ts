// Your own training loop, Horovod-style: every thread computes a gradient on its shard, the
// communicator averages the gradients, every thread applies the same update.
//   node examples/dist/custom-loop.js
import { runOnThreads } from 'converge';

const parameters = 2;
const results = await runOnThreads<number[]>(2, new URL('./custom-loop-rank.js', import.meta.url), { capacity: parameters, data: { steps: 200 } });
console.log(`every rank ends with the same parameters: ${JSON.stringify(results)} (the truth is [3, -1])`);
