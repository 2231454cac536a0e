// Sharded parameters (ZeRO stage 3, PyTorch's FSDP): every rank stores only its share of each
// layer's parameters, of their gradients and of the optimiser state — about 1/P of the model.
// A layer's parameters are all-gathered just before its forward pass and again before its
// backward pass (into one buffer the size of the largest layer, so at most one layer is whole at
// a time), and its gradient is reduce-scattered just after, leaving each rank the mean of its
// share. Each rank then updates its shares. The arithmetic, element by element, is the
// all-reduce strategy's: every layer's gradient is the same, and each element's mean and update
// are computed alike, so the two end bit-equal where the backend sums in the same order.
//
// Rank 0 gathers the whole model only for checkpoints and the result.

import { bufferShare } from '../comm/communicator.js';
import { shareOf, type Batcher } from '../data/batches.js';
import type { Layer } from '../models/layers.js';
import type { Batch } from '../models/model.js';
import { layerChainOf, layerOffsets } from '../models/stage.js';
import type { UnitHooks } from '../models/recompute.js';
import { agreedSchedule } from './agreed-schedule.js';
import { Optimizer } from '../optim/optimizers.js';
import { EVAL_BATCH, addEvaluation, evaluationFigures, type Strategy, type StrategyRank } from './strategy.js';

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

export const fsdp: Strategy = async (setup) => {
  const { comm, model } = setup;
  const chain = layerChainOf(model, 'fsdp');
  const layers: readonly Layer[] = chain.layers;
  const P = comm.size;
  const offsets = layerOffsets(layers);
  const total = offsets[layers.length];
  const layerSize = (i: number) => offsets[i + 1] - offsets[i];
  // this rank's share of each layer: [start, end) within the layer, and where it sits in the rank's shard
  const shares = layers.map((_, i) => bufferShare(layerSize(i), comm.rank, P));
  const shardOffsets = [0];
  for (const [start, end] of shares) shardOffsets.push(shardOffsets[shardOffsets.length - 1] + end - start);
  const shardSize = shardOffsets[layers.length];
  const largest = Math.max(1, ...layers.map((_, i) => layerSize(i)));

  // rank 0's starting parameters are the real ones
  await comm.broadcast(setup.startParams, 0);
  const shard = new Float32Array(shardSize);
  const shardGrad = new Float32Array(shardSize);
  const piece = (array: Float32Array, i: number) => array.subarray(offsets[i] + shares[i][0], offsets[i] + shares[i][1]);
  const mine = (array: Float32Array, i: number) => array.subarray(shardOffsets[i], shardOffsets[i + 1]);
  for (let i = 0; i < layers.length; i++) mine(shard, i).set(piece(setup.startParams, i));
  // the optimiser over the shard, its state taken from the whole (restored) state's pieces
  const whole0 = setup.optimizer();
  const optimizer = new Optimizer(whole0.config, shardSize);
  optimizer.steps = whole0.steps;
  for (const [name, values] of Object.entries(whole0.state)) for (let i = 0; i < layers.length; i++) mine(optimizer.state[name], i).set(piece(values, i));

  // one layer whole at a time: its parameters, and its gradient before the reduce-scatter
  const gathered = comm.allocate(largest);
  const layerGrad = comm.allocate(largest);
  // every parameter's name mapped into those buffers, at its place within its layer
  const p: Record<string, Float32Array> = {};
  const g: Record<string, Float32Array> = {};
  for (const slot of chain.layout.slots) {
    const layer = offsets.findIndex((offset, i) => i < layers.length && slot.offset >= offset && slot.offset < offsets[i + 1]);
    const at = slot.offset - offsets[layer];
    p[slot.name] = gathered.subarray(at, at + slot.size);
    g[slot.name] = layerGrad.subarray(at, at + slot.size);
  }
  const gather = async (i: number) => {
    const n = layerSize(i);
    gathered.set(mine(shard, i), shares[i][0]);
    await comm.allgatherShares(gathered.subarray(0, n));
  };

  // what backward needs of the forward pass: each layer's input, and room for its input's gradient
  const inputs: Float32Array[] = new Array(layers.length);
  // the gradients between layers: two buffers in turn (layer i writes the one layer i + 1 did not)
  const widest = Math.max(...layers.slice(0, -1).map((layer) => sizeOf(layer.outputShape)), 0);
  const turns = [new Float32Array(chain.maxBatch * widest), new Float32Array(chain.maxBatch * widest)];
  const inputGrads = layers.map((_, i) => (i === 0 ? null : turns[i % 2]));
  const forward = async (x: Float32Array, batch: number, training: boolean, step: number): Promise<Float32Array> => {
    for (let i = 0; i < layers.length; i++) {
      layers[i].setMode?.(training, step);
      if (layerSize(i) > 0) await gather(i);
      inputs[i] = x;
      x = layers[i].forward(p, x, batch);
    }
    return x;
  };

  // --recompute: the chain's units run by the schedule in an arena of their own, a unit's parameters gathered before each of its passes (recomputed ones too)
  let communicationMs = 0;
  const hooks: UnitHooks = {
    async before(unit) {
      const t = performance.now();
      if (layerSize(units[unit].head) > 0) await gather(units[unit].head);
      communicationMs += performance.now() - t;
    },
    async afterBackward(unit) {
      const i = units[unit].head;
      const n = layerSize(i);
      if (n === 0) return;
      const t = performance.now();
      const [start, end] = await comm.reduceScatter(layerGrad.subarray(0, n), 'mean');
      mine(shardGrad, i).set(layerGrad.subarray(start, end));
      communicationMs += performance.now() - t;
    },
  };
  const { units, recompute } = await agreedSchedule(setup, comm, chain, layers, chain.layout, setup.startParams);
  const evalBatch = Math.min(EVAL_BATCH, chain.maxBatch);
  // what this rank holds: its shares of the parameters, gradients and optimiser state, one layer whole (parameters and gradient) at a time, and the activations of a whole step
  const ownGradients = 8 * chain.maxBatch * widest;
  setup.holds?.({
    parameters: 4 * (shardSize + largest), gradients: 4 * (shardSize + largest), optimizer: optimizer.stateBytes,
    activations: recompute ? recompute.peakBytes : chain.activations.bytes + ownGradients,
  });

  const scalars = new Float32Array(2); // [loss, stop], averaged
  let exchanged = 0;
  let whole: Float32Array | null = null;

  /** The step's end, either way: the update of this rank's shares, and the loss and stop flag averaged. */
  const finish = async (loss: number, computed: number, before: number, input: { lr: number; stopRequested(): boolean }) => {
    optimizer.step(shard, shardGrad, input.lr);
    scalars[0] = loss;
    scalars[1] = comm.rank === 0 && input.stopRequested() ? 1 : 0;
    await comm.allreduce(scalars, 'mean');
    exchanged += comm.bytesSent - before;
    return { loss: scalars[0], stop: scalars[1] > 0, computeSeconds: computed / 1000 };
  };

  const rank: StrategyRank & { readonly params: Float32Array } = {
    get params() {
      return whole ?? shard;
    },
    bytesSent: () => exchanged,
    async step(input) {
      const before = comm.bytesSent;
      const batch = input.batch() as Batch;
      let computed = 0;
      let t = performance.now();
      if (recompute) {
        communicationMs = 0;
        const loss = await recompute.stepWith(hooks, p, g, batch.x, batch.size, input.epoch * input.steps + input.step, chain.gradLogits, (outputs) => chain.outputLoss(outputs, batch, true));
        computed = performance.now() - t - communicationMs;
        return finish(loss, computed, before, input);
      }
      const outputs = await forward(batch.x, batch.size, true, input.epoch * input.steps + input.step);
      const loss = chain.outputLoss(outputs, batch, true);
      computed += performance.now() - t;
      let gradOut = chain.gradLogits;
      for (let i = layers.length - 1; i >= 0; i--) {
        const n = layerSize(i);
        if (n > 0) await gather(i);
        t = performance.now();
        layers[i].backward(p, g, inputs[i], gradOut, inputGrads[i], batch.size);
        computed += performance.now() - t;
        if (inputGrads[i]) gradOut = inputGrads[i]!;
        if (n === 0) continue;
        const [start, end] = await comm.reduceScatter(layerGrad.subarray(0, n), 'mean');
        mine(shardGrad, i).set(layerGrad.subarray(start, end));
      }
      return finish(loss, computed, before, input);
    },
    async evaluate(batcher: Batcher, count: number) {
      // each rank its share of the test split; every rank gathers as many times (a rank out of samples still takes part)
      const [from, end] = shareOf(count, comm.rank, P);
      const rounds = Math.ceil(Math.ceil(count / P) / evalBatch);
      const totals = new Float32Array(4);
      for (let round = 0; round < rounds; round++) {
        const start = from + round * evalBatch;
        const n = Math.min(evalBatch, end - start);
        if (n <= 0) {
          for (let i = 0; i < layers.length; i++) if (layerSize(i) > 0) await gather(i);
          continue;
        }
        const batch = batcher.range(start, n) as Batch;
        if (recompute) for (const layer of layers) layer.setMode?.(false, 0);
        const outputs = recompute ? await recompute.forwardWith(hooks, p, batch.x, n) : await forward(batch.x, n, false, 0);
        addEvaluation(totals, chain.score(outputs, batch), n);
      }
      await comm.allreduce(totals, 'sum');
      return evaluationFigures(totals, chain.task);
    },
    async snapshot() {
      // the whole parameters and optimiser state at rank 0, a layer at a time
      const collect = async (from: Float32Array, into: Float32Array | null) => {
        for (let i = 0; i < layers.length; i++) {
          const n = layerSize(i);
          if (n === 0) continue;
          gathered.set(mine(from, i), shares[i][0]);
          await comm.allgatherShares(gathered.subarray(0, n));
          into?.set(gathered.subarray(0, n), offsets[i]);
        }
      };
      if (comm.rank === 0) whole ??= new Float32Array(total);
      await collect(shard, whole);
      const state: Record<string, Float32Array> = {};
      for (const [name, values] of Object.entries(optimizer.state)) {
        const into = comm.rank === 0 ? new Float32Array(total) : null;
        await collect(values, into);
        if (into) state[name] = into;
      }
      return comm.rank === 0 ? { optimizerState: state, optimizerSteps: optimizer.steps } : null;
    },
  };
  return rank;
};
