// A training step allocates nothing after warm-up: no new buffers at all, and no more than a
// few hundred bytes of JavaScript heap (V8's own bookkeeping), on each kernel backend.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { syntheticDataset } from '../data/dataset.js';
import { BatchMaker, epochOrder } from '../data/batches.js';
import { activeBackend, useBackend } from '../kernels/registry.js';
import { nativeKernelInfo } from '../kernels/select.js';
import { Optimizer, defaultOptimizer } from '../optim/optimizers.js';
import { Random } from '../tensor/random.js';
import { createImageModel as createModel } from './index.js';
import { recomputeName, type RecomputeSpec } from './checkpointing.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

const backends = nativeKernelInfo() ? ['reference', 'native'] : ['reference'];

for (const backend of backends) {
  // the last two recompute (their buffers move between places in the arena each step): that allocates nothing either
  for (const [name, recompute] of [['softmax'], ['mlp'], ['cnn'], ['mlp', { kind: 'revolve', snapshots: 2 }], ['cnn', { kind: 'sqrt' }]] as [string, RecomputeSpec?][]) {
    test(`a ${name} training step${recompute ? ` (--recompute ${recomputeName(recompute)})` : ''} on ${backend} kernels allocates no buffer and almost no heap over 100 steps`, async () => {
      const before = activeBackend();
      useBackend(backend);
      try {
        const data = syntheticDataset(3, 512, 16, 12);
        const model = createModel(name, { inputShape: data.shape, classes: data.classes, maxBatch: 32, hidden: [64, 32, 32, 32], cnnWidths: [4, 8, 16], recompute });
        const params = model.layout.allocate();
        model.init(params, new Random(1));
        const grad = model.layout.allocate();
        const optimizer = new Optimizer({ ...defaultOptimizer, name: 'adam' }, model.layout.size);
        const maker = new BatchMaker(data.train, data.shape, 32);
        const order = epochOrder(new Uint32Array(data.train.count), 1, 0);
        const step = (s: number) => {
          const loss = model.lossAndGrad(params, maker.fromOrder(order, (s % 16) * 32, 32), grad);
          optimizer.step(params, grad, 1e-3);
          return loss;
        };
        for (let s = 0; s < 600; s++) step(s); // warm-up: the JIT compiles (and allocates code) during the first few hundred steps
        // V8 frees buffers' memory on a background thread after a collection: let it finish
        gc();
        await new Promise((resolve) => setTimeout(resolve, 100));
        gc();
        const buffersBefore = process.memoryUsage().arrayBuffers;
        const heapBefore = process.memoryUsage().heapUsed;
        let total = 0;
        for (let s = 0; s < 100; s++) total += step(s);
        const heapGrowth = process.memoryUsage().heapUsed - heapBefore;
        const bufferGrowth = process.memoryUsage().arrayBuffers - buffersBefore;
        assert.ok(Number.isFinite(total));
        assert.equal(bufferGrowth, 0, `${bufferGrowth} bytes of new buffers in 100 steps`);
        assert.ok(heapGrowth < 64 * 1024, `${heapGrowth} bytes of heap growth in 100 steps`);
      } finally {
        useBackend(before);
      }
    });
  }
}
