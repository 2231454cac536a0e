// Tensor (intra-layer) parallelism, Megatron-style: the T ranks of a worker hold the slices of
// each split pair of dense layers (models/tensor-parallel.ts) and the other layers whole; they
// compute every sample of the worker's batch together. A split block costs one all-reduce of its
// partial outputs in the forward pass and one of its input's partial gradients in the backward
// pass. With W workers, W·T ranks: each worker's group takes its share of the global batch, and
// the ranks holding the same slice average their gradients across the workers.
//
// Rank 0 gathers the whole model only for checkpoints and the result.

import { heldBytesOf, type UnitHooks } from '../models/recompute.js';
import { agreedSchedule } from './agreed-schedule.js';
import type { Communicator } from '../comm/communicator.js';
import { splitCommunicator } from '../comm/group.js';
import { shareOf, type Batcher } from '../data/batches.js';
import { kernelSet } from '../kernels/registry.js';
import type { Batch } from '../models/model.js';
import { layerChainOf } from '../models/stage.js';
import { TensorParallelChain } from '../models/tensor-parallel.js';
import { Optimizer } from '../optim/optimizers.js';
import { EVAL_BATCH, addEvaluation, evaluationFigures, type Strategy, type StrategyRank } from './strategy.js';

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** How many all-reduces a step of the split blocks made, forward and backward (the engine's own count, for the evidence). */
export interface TensorParallelReport {
  blocks: number;
  forwardAllreduces: number;
  backwardAllreduces: number;
  /** Parameters this rank holds, and the whole model's. */
  parameters: number;
  wholeParameters: number;
}

export const tensorParallel: Strategy = async (setup) => {
  const { comm } = setup;
  const ranks = setup.tensorParallel ?? 1;
  const worker = Math.floor(comm.rank / ranks);
  const workers = setup.workers;
  // with --recompute a ReLU after a row layer writes its own output, so the row's can be summed between the two
  const chain = new TensorParallelChain(layerChainOf(setup.model, 'tensor'), ranks, comm.rank % ranks, kernelSet(), setup.recompute !== undefined);
  // the ranks of this worker's group reduce the partial sums; the same slices across workers average gradients
  const group: Communicator = workers > 1 ? await splitCommunicator(comm, worker, comm.rank) : comm;
  const replicas = workers > 1 ? await splitCommunicator(comm, comm.rank % ranks, worker) : null;
  const { layers, layout } = chain;
  const total = setup.startParams.length;

  await comm.broadcast(setup.startParams, 0);
  const params = layout.allocate();
  chain.toLocal(setup.startParams, params);
  const grad = layout.allocate();
  const whole0 = setup.optimizer();
  const optimizer = new Optimizer(whole0.config, layout.size);
  optimizer.steps = whole0.steps;
  for (const [name, values] of Object.entries(whole0.state)) chain.toLocal(values, optimizer.state[name]);

  // the row-parallel biases are added once: by the group's rank 0; the others see zeros in their forward pass
  const p = layout.views(params);
  const forwardViews: Record<string, Float32Array> = { ...p };
  if (group.rank !== 0) for (const name of chain.rowBiases) forwardViews[name] = new Float32Array(p[name].length);
  const g = layout.views(grad);
  const isRow = chain.roles.map((role, i) => role === 'row' && layers[i].params.length > 0);
  const startsBlock = chain.roles.map((role, i) => role === 'column' && (i === 0 || chain.roles[i - 1] !== 'column'));
  const inputs: Float32Array[] = new Array(layers.length);
  const inputGrads = layers.map((_, i) => (i === 0 ? null : new Float32Array(chain.model.maxBatch * sizeOf(layers[i - 1].outputShape))));
  const counts = { forward: 0, backward: 0 };

  const forward = async (x: Float32Array, batch: number, training: boolean, step: number): Promise<Float32Array> => {
    for (let i = 0; i < layers.length; i++) {
      layers[i].setMode?.(training, step);
      inputs[i] = x;
      x = layers[i].forward(forwardViews, x, batch);
      if (isRow[i]) {
        const out = x.subarray(0, batch * sizeOf(layers[i].outputShape));
        await group.allreduce(out, 'sum');
        counts.forward++;
      }
    }
    return x;
  };

  // --recompute: the chain's units run by the schedule, a row unit's output summed after each of its forward passes (recomputed ones too), a block's input gradient after its backward
  let rows = 0; // the batch the hooks sum over
  const hooks: UnitHooks = {
    async afterForward(unit, output) {
      const i = units[unit].head;
      if (!isRow[i]) return;
      await group.allreduce(output.subarray(0, rows * sizeOf(layers[i].outputShape)), 'sum');
      counts.forward++;
    },
    async afterBackward(unit, gradX) {
      const i = units[unit].head;
      if (!gradX || !startsBlock[i]) return;
      await group.allreduce(gradX.subarray(0, rows * sizeOf(layers[i - 1].outputShape)), 'sum');
      counts.backward++;
    },
  };
  const { units, recompute } = await agreedSchedule(setup, comm, chain.model, layers, layout, params);
  // what this rank holds: its slices of the parameters, gradients and optimiser state, and its layers' activations (split layers' at their width)
  setup.holds?.({
    parameters: 4 * layout.size, gradients: 4 * layout.size, optimizer: optimizer.stateBytes,
    activations: recompute ? recompute.peakBytes : heldBytesOf(layers) + inputGrads.reduce((sum, buffer) => sum + 4 * (buffer?.length ?? 0), 0),
  });

  const scalars = new Float32Array(2); // [loss, stop]
  let exchanged = 0;
  let whole: Float32Array | null = null;
  let first: { forward: number; backward: number } | null = null;

  /** A step's forward and backward passes, every layer's activations stored; the loss. */
  const passes = async (batch: Batch, step: number): Promise<number> => {
    const outputs = await forward(batch.x, batch.size, true, step);
    const loss = chain.model.outputLoss(outputs, batch, true);
    let gradOut = chain.model.gradLogits;
    for (let i = layers.length - 1; i >= 0; i--) {
      const gradX = inputGrads[i];
      layers[i].backward(forwardViews, g, inputs[i], gradOut, gradX, batch.size);
      if (!gradX) continue;
      // the gradient of a block's input is the sum of every rank's part
      if (startsBlock[i]) {
        await group.allreduce(gradX.subarray(0, batch.size * sizeOf(layers[i - 1].outputShape)), 'sum');
        counts.backward++;
      }
      gradOut = gradX;
    }
    return loss;
  };

  /** The same by the --recompute schedule. */
  const recomputedPasses = (batch: Batch, step: number): Promise<number> => {
    rows = batch.size;
    return recompute!.stepWith(hooks, forwardViews, g, batch.x, batch.size, step, chain.model.gradLogits, (outputs) => chain.model.outputLoss(outputs, batch, true));
  };

  const rank: StrategyRank & { readonly params: Float32Array } = {
    get params() {
      return whole ?? params;
    },
    bytesSent: () => exchanged,
    async step(input) {
      const before = comm.bytesSent;
      const batch = input.batch() as Batch;
      counts.forward = 0;
      counts.backward = 0;
      const t = performance.now();
      const loss = recompute ? await recomputedPasses(batch, input.epoch * input.steps + input.step) : await passes(batch, input.epoch * input.steps + input.step);
      const computed = performance.now() - t;
      first ??= { ...counts };
      if (replicas) await replicas.allreduce(grad, 'mean');
      optimizer.step(params, grad, input.lr);
      scalars[0] = group.rank === 0 ? loss / workers : 0;
      scalars[1] = comm.rank === 0 && input.stopRequested() ? 1 : 0;
      await comm.allreduce(scalars, 'sum');
      exchanged += comm.bytesSent - before;
      return { loss: scalars[0], stop: scalars[1] > 0, computeSeconds: computed / 1000 };
    },
    async evaluate(batcher: Batcher, count: number) {
      // each worker's group its share of the test split, all of the group's ranks on the same samples
      const [from, end] = shareOf(count, worker, workers);
      const totals = new Float32Array(4);
      const evalBatch = Math.min(EVAL_BATCH, chain.model.maxBatch);
      for (let start = from; start < end; start += evalBatch) {
        const n = Math.min(evalBatch, end - start);
        const batch = batcher.range(start, n) as Batch;
        let outputs: Float32Array;
        if (recompute) {
          rows = n;
          for (const layer of layers) layer.setMode?.(false, 0);
          outputs = await recompute.forwardWith(hooks, forwardViews, batch.x, n);
        } else outputs = await forward(batch.x, n, false, 0);
        const result = chain.model.score(outputs, batch);
        if (group.rank === 0) addEvaluation(totals, result, n); // the group's ranks computed the same
      }
      await comm.allreduce(totals, 'sum');
      return evaluationFigures(totals, chain.model.task);
    },
    async snapshot() {
      // the first worker's ranks send rank 0 their parts; it puts the whole model together
      const parts = comm.rank === 0 ? new Float32Array(layout.size * comm.size) : null;
      const assemble = async (mine: Float32Array, into: Float32Array | null) => {
        await comm.gather(mine, parts, 0);
        if (!into || !parts) return;
        for (let r = 0; r < ranks; r++) chain.toWhole(parts.subarray(r * layout.size, (r + 1) * layout.size), into, r);
      };
      if (comm.rank === 0) whole ??= new Float32Array(total);
      await assemble(params, whole);
      const state: Record<string, Float32Array> = {};
      for (const [name, values] of Object.entries(optimizer.state)) {
        const into = comm.rank === 0 ? new Float32Array(total) : null;
        await assemble(values, into);
        if (into) state[name] = into;
      }
      if (comm.rank === 0 && first) {
        setup.reportTensorParallel?.({ blocks: chain.blocks.length, forwardAllreduces: first.forward, backwardAllreduces: first.backward, parameters: layout.size, wholeParameters: total });
      }
      return comm.rank === 0 ? { optimizerState: state, optimizerSteps: optimizer.steps } : null;
    },
  };
  return rank;
};
