// Pipeline parallelism: the model's layers cut into S contiguous stages, one per rank. With W
// workers, W pipelines run side by side on W·S ranks, each on its share of the global batch, and
// each stage's W replicas average their gradients (a communicator group per stage). Each step
// splits the minibatch into m micro-batches; activations go forward from stage to stage and
// their gradients come back through the communicator's send/recv, in the order the schedule
// (pipeline-schedule.ts: GPipe or 1F1B) lists. Each stage sums its parameters' gradients over
// the micro-batches (in micro-batch order), takes their mean and updates its own parameters with
// its own optimiser: the arithmetic of serial gradient accumulation over the same micro-batches.
//
// A stage holds only its parameters, their gradients and its optimiser state (its range of the
// model's flat buffer), and one set of activations per micro-batch in flight — m for GPipe,
// min(m, S − s) for 1F1B on stage s. Rank 0 gathers the whole model only for checkpoints and the
// final result, so a checkpoint resumes on any stage count.

import type { Communicator } from '../comm/communicator.js';
import { splitCommunicator } from '../comm/group.js';
import { shareOf, type Batcher } from '../data/batches.js';
import { kernel } from '../kernels/registry.js';
import type { Batch, Model } from '../models/model.js';
import { ChainStage, layerChainOf, layerOffsets } from '../models/stage.js';
import type { Sequential } from '../models/sequential.js';
import { Random } from '../tensor/random.js';
import { balancedCuts, checkCuts, stageRange } from './pipeline-partition.js';
import { peakStored, stageProgram, type PipelineSchedule, type StageCost } from './pipeline-schedule.js';
import { EVAL_BATCH, MODEL_BUFFERS, addEvaluation, evaluationFigures, type Strategy, type StrategyRank } from './strategy.js';

export interface PipelineOptions {
  stages: number;
  microbatches: number;
  schedule: PipelineSchedule;
  /** Where stages 2..S begin (layer indices); absent: balanced over costs measured at start-up. */
  cuts?: number[];
}

/** What one stage reports of a run: the evidence of its balance and its memory. */
export interface StageReport {
  stage: number;
  layers: [number, number];
  parameters: number;
  /** Micro-batches whose activations it held at once, at most (counted as they are taken and freed). */
  peakStoredMicrobatches: number;
  /** Seconds of forward and backward passes, and of the rest of its steps (waiting for neighbours, sending, updating). */
  computeSeconds: number;
  idleSeconds: number;
  /** With --recompute: the bytes its micro-batches' activation arenas hold together. */
  activationBytes?: number;
}

const sizeOf = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** The largest activation message between ranks, in floats: a batch of `batch` samples (or an evaluation batch) of the widest layer output — a pipeline's micro-batch between stages, a tensor-parallel group's partial sums. */
export function activationMessageFloats(model: Model, batch: number): number {
  const chain = layerChainOf(model);
  const widest = Math.max(sizeOf(chain.inputShape), ...chain.layers.map((layer) => sizeOf(layer.outputShape)));
  return widest * Math.max(batch, EVAL_BATCH);
}

/** Before any rank starts: the model is a chain of layers, with a layer for every stage and, if given, a cut that fits it. */
export function checkPipeline(model: Model, stages: number, cuts: number[] | undefined): void {
  const layers = layerChainOf(model).layers.length;
  if (cuts) checkCuts(cuts, layers, stages);
  else if (stages > layers) balancedCuts(new Array(layers).fill(0), stages); // says why
}

/**
 * Each layer's forward and backward seconds for one micro-batch, measured on this rank: the
 * median of 3 timed runs after a warm-up, on random inputs.
 */
export function layerCosts(chain: Sequential, params: Float32Array, microBatch: number): StageCost[] {
  const p = chain.layout.views(params);
  const g = chain.layout.views(new Float32Array(params.length));
  const random = new Random(7);
  const widths = [sizeOf(chain.inputShape), ...chain.layers.map((layer) => sizeOf(layer.outputShape))];
  const runs: StageCost[][] = chain.layers.map(() => []);
  const input = new Float32Array(microBatch * widths[0]);
  for (let run = 0; run < 4; run++) {
    random.fillUniform(input, -1, 1);
    let x: Float32Array = input;
    const inputs: Float32Array[] = [];
    const forwardSeconds: number[] = [];
    for (let i = 0; i < chain.layers.length; i++) {
      inputs.push(x.slice(0, microBatch * widths[i])); // in-place layers would overwrite what backward reads
      const started = performance.now();
      x = chain.layers[i].forward(p, x, microBatch);
      forwardSeconds.push((performance.now() - started) / 1000);
    }
    for (let i = chain.layers.length - 1; i >= 0; i--) {
      const gradOut = new Float32Array(microBatch * widths[i + 1]);
      random.fillUniform(gradOut, -1, 1);
      const gradX = i > 0 ? new Float32Array(microBatch * widths[i]) : null;
      const started = performance.now();
      chain.layers[i].backward(p, g, inputs[i], gradOut, gradX, microBatch);
      if (run > 0) runs[i].push({ forward: forwardSeconds[i], backward: (performance.now() - started) / 1000 });
    }
  }
  const median = (values: number[]) => values.sort((a, b) => a - b)[values.length >> 1];
  return runs.map((times) => ({ forward: median(times.map((t) => t.forward)), backward: median(times.map((t) => t.backward)) }));
}

/** The balanced cut of measured layer costs (forward + backward). */
export function cutsFor(costs: readonly StageCost[], stages: number): number[] {
  return balancedCuts(costs.map((cost) => cost.forward + cost.backward), stages);
}

/** Each stage's cost under a cut: the sums of its layers'. */
export function stageCosts(costs: readonly StageCost[], cuts: readonly number[]): StageCost[] {
  return Array.from({ length: cuts.length + 1 }, (_, s) => {
    const [a, b] = stageRange(cuts, costs.length, s);
    const layers = costs.slice(a, b);
    return { forward: layers.reduce((sum, c) => sum + c.forward, 0), backward: layers.reduce((sum, c) => sum + c.backward, 0) };
  });
}

export const pipeline: Strategy = async (setup) => {
  const { comm } = setup;
  const options = setup.pipeline!;
  const { stages, microbatches } = options;
  // ranks w·S … w·S + S − 1 are worker w's pipeline; its stages' neighbours are the ranks beside them
  const stage = comm.rank % stages;
  const worker = Math.floor(comm.rank / stages);
  const workers = setup.workers;
  const first = stage === 0;
  const last = stage === stages - 1;
  const previous = comm.rank - 1;
  const next = comm.rank + 1;
  const micro = setup.batch / microbatches;
  const program = stageProgram(options.schedule, stage, stages, microbatches);

  // replica 0 is the loop's model (built for the batch and for evaluations) and runs the evaluations; the others hold the activations of further micro-batches in flight
  const probe = layerChainOf(setup.model);
  const layerCount = probe.layers.length;
  const offsets = layerOffsets(probe.layers);
  const cuts = await agreeOnCuts(comm, options, probe, setup.startParams, micro);
  const rangeOf = (s: number): [number, number] => {
    const [a, b] = stageRange(cuts, layerCount, s);
    return [offsets[a], offsets[b]];
  };
  const [firstLayer, endLayer] = stageRange(cuts, layerCount, stage);
  // --recompute: each micro-batch in flight has the stage's schedule and an arena of its own, sized for the micro-batch (evaluations too then run in micro-batches), the budget shared between them
  const stored = peakStored(program);
  const memory = setup.recompute ? { recompute: setup.recompute.spec, budget: setup.recompute.budget === undefined ? undefined : Math.floor(setup.recompute.budget / stored), seed: setup.seed } : undefined;
  const evalBatch = memory ? micro : Math.max(micro, EVAL_BATCH);
  const slots = [new ChainStage(probe, firstLayer, endLayer, evalBatch, memory)];
  for (let k = 1; k < stored; k++) slots.push(new ChainStage(layerChainOf(setup.replica(micro)), firstLayer, endLayer, micro, memory));
  const activationBytes = slots.reduce((sum, slot) => sum + slot.activationBytes, 0);
  // batch norm: one set of running statistics per stage, from the checkpoint when there is one
  for (const slot of slots.slice(1)) slot.shareBuffers(slots[0]);
  const buffers = slots[0].buffers;
  const bufferOffsets = layerOffsets(probe.layers, 'buffers');
  const bufferRangeOf = (s: number): [number, number] => {
    const [a, b] = stageRange(cuts, layerCount, s);
    return [bufferOffsets[a], bufferOffsets[b]];
  };
  const [bufferLow, bufferHigh] = slots[0].bufferRange;
  if (buffers && setup.startBuffers?.length === buffers.length) buffers.set(setup.startBuffers.subarray(bufferLow, bufferHigh), bufferLow);
  const [low, high] = slots[0].paramRange;
  const size = high - low;

  // this stage's parameters, from rank 0's (the starting point every strategy takes from rank 0)
  const params = new Float32Array(size);
  params.set(setup.startParams.subarray(low, high));
  await scatterFromRoot(comm, setup.startParams, params, stages, rangeOf);
  // pipelines side by side: each stage's replicas average their gradients (a group per stage)
  const replicas = workers > 1 ? await splitCommunicator(comm, stage, worker) : null;
  const grad = new Float32Array(size);
  const optimizer = setup.optimizer([low, high]);
  const scale = kernel('reduceStrided');

  const { inputWidth, outputWidth } = slots[0];
  // activations in (one per slot: each waits for its backward) and the gradients that come back and go back
  const slotInputs = slots.map(() => (first ? null : new Float32Array(micro * inputWidth)));
  const gradientIn = last ? null : new Float32Array(micro * outputWidth);
  const gradientOut = first ? null : new Float32Array(micro * inputWidth);
  const slotOf = new Int32Array(microbatches);
  const outputs: Float32Array[] = new Array(microbatches);
  const free = slots.map((_, k) => slots.length - 1 - k);
  let peakInUse = 0;
  const take = () => {
    const slot = free.pop()!;
    peakInUse = Math.max(peakInUse, slots.length - free.length);
    return slot;
  };
  // the step's micro-batches, as views of its batch (remade only when the batcher hands out other memory)
  let viewsOf: Batch | null = null;
  const microBatches: Batch[] = [];
  const microBatch = (batch: Batch, i: number): Batch => {
    if (viewsOf !== batch || microBatches.length === 0) {
      viewsOf = batch;
      microBatches.length = 0;
      const targetWidth = batch.targets ? batch.targets.length / Math.max(1, batch.y.length) : 0;
      for (let j = 0; j < microbatches; j++) {
        microBatches.push({
          x: batch.x.subarray(j * micro * inputWidth, (j + 1) * micro * inputWidth), y: batch.y.subarray(j * micro, (j + 1) * micro),
          targets: batch.targets?.subarray(j * micro * targetWidth, (j + 1) * micro * targetWidth), size: micro,
        });
      }
    }
    return microBatches[i];
  };

  // what this rank holds: its stage's parameters, their gradient (the micro-batches add to it), their optimiser state, and its micro-batches' activations and messages
  const messages = [...slotInputs, gradientIn, gradientOut].reduce((sum, buffer) => sum + 4 * (buffer?.length ?? 0), 0);
  setup.holds?.({ parameters: 4 * size, gradients: 4 * size, optimizer: optimizer.stateBytes, activations: activationBytes + messages });

  const scalars = new Float32Array(2); // [mean loss (the last stage's), stop (rank 0's)], summed
  let computeSeconds = 0;
  let stepSeconds = 0;
  let exchanged = 0;
  let whole: Float32Array | null = null; // rank 0: the whole model, gathered for checkpoints and the result

  const rank: StrategyRank & { readonly params: Float32Array } = {
    get params() {
      return whole ?? params;
    },
    holdsBuffers: true,
    bytesSent: () => exchanged,
    async step(input) {
      const started = performance.now();
      const before = comm.bytesSent;
      let computed = 0;
      const batch = first || last ? (input.batch() as Batch) : null;
      const seedStep = (input.epoch * input.steps + input.step) * microbatches;
      let lossSum = 0;
      let backwards = 0;
      for (const action of program) {
        const i = action.micro;
        switch (action.kind) {
          case 'recvActivation':
            slotOf[i] = take();
            await comm.recv(slotInputs[slotOf[i]]!, previous);
            break;
          case 'forward': {
            if (first) slotOf[i] = take();
            const slot = slots[slotOf[i]];
            const x = first ? microBatch(batch!, i).x : slotInputs[slotOf[i]]!;
            const t = performance.now();
            outputs[i] = slot.forward(params, x, micro, true, seedStep + i);
            if (last) lossSum += slot.loss(outputs[i], microBatch(batch!, i));
            computed += performance.now() - t;
            break;
          }
          case 'sendActivation':
            await comm.send(outputs[i].subarray(0, micro * outputWidth), next);
            break;
          case 'recvGradient':
            await comm.recv(gradientIn!, next);
            break;
          case 'backward': {
            const slot = slots[slotOf[i]];
            const t = performance.now();
            // the first micro-batch's gradient overwrites the last step's, the others add to it
            slot.backward(params, grad, last ? slot.outputGradient : gradientIn!, gradientOut, micro, backwards > 0);
            backwards++;
            computed += performance.now() - t;
            free.push(slotOf[i]);
            break;
          }
          case 'sendGradient':
            await comm.send(gradientOut!, previous);
            break;
        }
      }
      // the mean over the micro-batches, as serial accumulation takes it
      if (microbatches > 1) scale(grad, 0, 0, 1, 0, size, grad, 0, 1 / microbatches);
      if (replicas && size > 0) await replicas.allreduce(grad, 'mean');
      optimizer.step(params, grad, input.lr);
      scalars[0] = last ? lossSum / microbatches / workers : 0;
      scalars[1] = comm.rank === 0 && input.stopRequested() ? 1 : 0;
      await comm.allreduce(scalars, 'sum');
      exchanged += comm.bytesSent - before;
      computeSeconds += computed / 1000;
      stepSeconds += (performance.now() - started) / 1000;
      return { loss: scalars[0], stop: scalars[1] > 0, computeSeconds: computed / 1000 };
    },
    async evaluate(batcher: Batcher, count: number) {
      const slot = slots[0];
      // batch norm: every pipeline scores with the first one's running statistics, those a checkpoint saves (as the loop makes every replica's the first worker's)
      if (replicas && bufferHigh > bufferLow) await replicas.broadcast(buffers!.subarray(bufferLow, bufferHigh), 0);
      const inputs = first ? null : new Float32Array(evalBatch * inputWidth);
      const totals = new Float32Array(4);
      // each pipeline evaluates its share of the test split
      const [from, end] = shareOf(count, worker, workers);
      for (let start = from; start < end; start += evalBatch) {
        const n = Math.min(evalBatch, end - start);
        const batch = first || last ? (batcher.range(start, n) as Batch) : null;
        let x = batch?.x;
        if (!first) {
          x = inputs!.subarray(0, n * inputWidth);
          await comm.recv(x, previous);
        }
        const out = slot.forward(params, x!, n, false, 0);
        if (!last) await comm.send(out.subarray(0, n * outputWidth), next);
        else addEvaluation(totals, slot.score(out, batch!), n);
      }
      await comm.allreduce(totals, 'sum');
      return evaluationFigures(totals, probe.task);
    },
    async snapshot() {
      // every stage's range of the parameters and of each optimiser state, side by side at rank 0 (from the first pipeline: the others' are the same)
      const full = comm.rank === 0 ? (whole ??= new Float32Array(setup.startParams.length)) : null;
      const state: Record<string, Float32Array> = {};
      if (worker === 0) {
        await gatherAtRoot(comm, params, full, stages, rangeOf);
        for (const [name, values] of Object.entries(optimizer.state)) {
          const gathered = comm.rank === 0 ? new Float32Array(setup.startParams.length) : null;
          await gatherAtRoot(comm, values, gathered, stages, rangeOf);
          if (gathered) state[name] = gathered;
        }
      }
      if (buffers && worker === 0) {
        // each stage's running statistics, in the model's buffer layout
        await gatherAtRoot(comm, buffers.subarray(bufferLow, bufferHigh), comm.rank === 0 ? buffers : null, stages, bufferRangeOf);
        if (comm.rank === 0) state[MODEL_BUFFERS] = buffers;
      }
      // and each stage's evidence
      // (the arena's bytes in 64-byte lines, which it is made of: exact in float32 up to a GiB)
      const mine = Float32Array.of(peakInUse, computeSeconds, stepSeconds - computeSeconds, size, activationBytes / 64);
      const reports = comm.rank === 0 ? new Float32Array(5 * comm.size) : null;
      await comm.gather(mine, reports, 0);
      if (reports) {
        setup.reportPipeline?.(Array.from({ length: stages }, (_, s) => ({
          stage: s, layers: stageRange(cuts, layerCount, s), parameters: reports[5 * s + 3], peakStoredMicrobatches: reports[5 * s],
          computeSeconds: reports[5 * s + 1], idleSeconds: reports[5 * s + 2],
          ...(memory ? { activationBytes: 64 * reports[5 * s + 4] } : {}),
        })));
      }
      return comm.rank === 0 ? { optimizerState: state, optimizerSteps: optimizer.steps } : null;
    },
  };
  return rank;
};

/** The cut every stage uses: the given one, or rank 0's balance of the layer costs it measured. */
async function agreeOnCuts(comm: Communicator, options: PipelineOptions, chain: Sequential, params: Float32Array, micro: number): Promise<number[]> {
  const layers = chain.layers.length;
  if (options.cuts) return checkCuts(options.cuts, layers, options.stages);
  if (options.stages === 1) return [];
  const cuts = new Float32Array(options.stages - 1);
  if (comm.rank === 0) cuts.set(cutsFor(layerCosts(chain, params, micro), options.stages));
  await comm.broadcast(cuts, 0);
  return Array.from(cuts);
}

/** Rank 0 sends every other rank its stage's range of the starting parameters (rank 0's are the ones every strategy starts from). */
async function scatterFromRoot(comm: Communicator, start: Float32Array, mine: Float32Array, stages: number, rangeOf: (stage: number) => [number, number]): Promise<void> {
  if (comm.rank !== 0) {
    if (mine.length > 0) await comm.recv(mine, 0);
    return;
  }
  for (let r = 1; r < comm.size; r++) {
    const [a, b] = rangeOf(r % stages);
    if (b > a) await comm.send(start.subarray(a, b), r);
  }
}

/** Each stage's `mine` into its range of `whole` at rank 0 (stages with no parameters send nothing). */
async function gatherAtRoot(comm: Communicator, mine: Float32Array, whole: Float32Array | null, stages: number, rangeOf: (stage: number) => [number, number]): Promise<void> {
  if (comm.rank !== 0) {
    if (mine.length > 0) await comm.send(mine, 0);
    return;
  }
  whole!.set(mine, rangeOf(0)[0]);
  for (let s = 1; s < stages; s++) {
    const [a, b] = rangeOf(s);
    if (b > a) await comm.recv(whole!.subarray(a, b), s);
  }
}
