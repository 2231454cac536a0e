// The asynchronous parameter server, with bounded staleness (stale-synchronous parallel, Ho et
// al. 2013). Rank 0 is the server; ranks 1..P are workers. A worker receives parameters and a
// step to compute, computes the gradient of that step's minibatch and pushes it; the server
// applies each push as it arrives (moving the parameters by lr/P times it, so that P pushes
// make one synchronous step's worth) and hands that worker new parameters at once — unless the
// worker is more than --staleness s steps ahead of the slowest, in which case it waits. With
// s = 0 every worker computes on the same parameters and the server applies the P pushes of a
// round before releasing anyone: synchronous SGD again. The staleness of each update (how many
// other updates were applied between the worker's pull and its push) goes to the log; while a
// worker computes step c its peers may complete their steps c − s … c + s, so it is at most
// (2s + 1)(P − 1).

import { epochOrder, makeBatcher, stepsPerEpoch } from '../data/batches.js';
import type { Strategy, StrategyContext } from './context.js';
import { StepReporter, checkFinite, evaluate, loopParts, restoreOptimizer } from './common.js';

// server → worker: [parameters | command | step | version]
const COMPUTE = 0;
const EPOCH_END = 1;
const STOP = 2;

export const asyncParameterServer: Strategy = async (context) => (context.comm.rank === 0 ? server(context) : worker(context));

async function server(context: StrategyContext) {
  const { comm, model, dataset, batch, epochs, workers, start, staleness } = context;
  const size = model.layout.size;
  const outgoing = new Float32Array(size + 3);
  const params = outgoing.subarray(0, size);
  params.set(start.params);
  // no momentum correction here: moved into the workers, momentum would compound their staleness
  // (measured: top-k with it ended anywhere from 9% to 80% on a set the others learn to 99%);
  // the server's optimiser keeps the momentum instead
  const hook = context.makeHook?.(size, { momentum: 0 });
  const incoming = new Float32Array(pushLength(size, hook)); // [gradient | loss | version pulled | step], or [loss | version | step | bytes | payload]
  const grad = hook ? new Float32Array(size) : incoming.subarray(0, size);
  const fields = hook ? 0 : size; // where loss, version and step start
  const optimizer = context.makeOptimizer();
  restoreOptimizer(optimizer, start);
  const testMaker = makeBatcher(dataset, 'test', model.maxBatch);
  const steps = stepsPerEpoch(dataset.train.count, workers, batch);
  const reporter = new StepReporter();
  let version = start.optimizerSteps; // updates applied so far
  let pushedBytes = 0;
  const log = { workers: [] as number[], versions: [] as number[], staleness: [] as number[] };
  const flush = () => {
    if (log.workers.length === 0) return;
    context.report({ kind: 'updates', ...log });
    log.workers = [];
    log.versions = [];
    log.staleness = [];
  };

  const release = async (w: number, command: number, step: number) => {
    outgoing[size] = command;
    outgoing[size + 1] = step;
    outgoing[size + 2] = version;
    await comm.send(outgoing, w);
  };

  for (let epoch = start.epoch; epoch < epochs; epoch++) {
    const epochStart = performance.now();
    const firstStep = epoch === start.epoch ? start.step : 0;
    // clock[w] = steps worker w has started this epoch; inFlight[w] = it holds parameters and owes a push
    const clock = new Array<number>(workers + 1).fill(firstStep);
    const inFlight = new Array<boolean>(workers + 1).fill(false);
    const done = () => Math.min(...clock.slice(1));
    let lossSum = 0;
    let applied = 0;
    let stopping = false;
    for (let w = 1; w <= workers; w++) {
      if (clock[w] < steps) {
        await release(w, COMPUTE, clock[w]);
        inFlight[w] = true;
        clock[w]++;
      }
    }
    while (inFlight.some(Boolean)) {
      const from = await comm.recv(incoming, -1);
      inFlight[from] = false;
      const loss = incoming[fields];
      const pulled = incoming[fields + 1];
      const pushedStep = incoming[fields + 2];
      if (hook) hook.decode(new Uint8Array(incoming.buffer, 16), incoming[3], grad, false);
      // what the workers put on the wire: the encoded payload and four floats, or the gradient and three
      pushedBytes += hook ? incoming[3] + 16 : 4 * (size + 3);
      const lr = context.learningRate(epoch + (pushedStep + 1) / steps);
      checkFinite(loss, epoch * steps + pushedStep, epoch, lr);
      optimizer.step(params, grad, lr / workers);
      log.workers.push(from);
      log.versions.push(version);
      log.staleness.push(version - pulled);
      version++;
      applied++;
      lossSum += loss;
      if (!stopping && context.stopRequested()) stopping = true;
      if (reporter.due(applied, Number.MAX_SAFE_INTEGER)) {
        context.report({ kind: 'step', epoch, step: done(), stepsPerEpoch: steps, samples: (epoch * steps + firstStep) * workers * batch + applied * batch, loss, lr, bytesSent: pushedBytes / workers });
        flush();
      }
      if (stopping) continue;
      // hand out work to every idle worker within the staleness bound of the slowest
      const slowest = Math.min(...clock.slice(1).map((c, i) => (inFlight[i + 1] ? c - 1 : c)));
      for (let w = 1; w <= workers; w++) {
        if (!inFlight[w] && clock[w] < steps && clock[w] - slowest <= staleness) {
          await release(w, COMPUTE, clock[w]);
          inFlight[w] = true;
          clock[w]++;
        }
      }
    }
    flush();
    if (stopping) {
      for (let w = 1; w <= workers; w++) await release(w, STOP, 0);
      // the position to resume from: the slowest worker's step (faster workers' extra steps are in the parameters)
      context.save({ params, optimizerState: optimizer.state, optimizerSteps: version, epoch, step: Math.min(...clock.slice(1)) });
      return { params, stoppedEarly: true };
    }
    for (let w = 1; w <= workers; w++) await release(w, EPOCH_END, 0);
    const trainSeconds = (performance.now() - epochStart) / 1000;
    await comm.broadcast(params, 0);
    const { loss, accuracy, rmse } = await evaluate(context, params, testMaker);
    context.report({ kind: 'epoch', epoch, trainLoss: lossSum / Math.max(1, applied), testLoss: loss, testAccuracy: accuracy, testRmse: rmse, trainSeconds, samples: applied * batch, bytesSent: pushedBytes / workers });
    context.save({ params, optimizerState: optimizer.state, optimizerSteps: version, epoch: epoch + 1, step: 0 });
  }
  return { params, stoppedEarly: false };
}

/** Floats in a push: the gradient and three fields, or four fields and the largest payload. */
export function pushLength(size: number, hook: { maxBytes(n: number): number } | undefined): number {
  return hook ? 4 + Math.ceil(hook.maxBytes(size) / 4) : size + 3;
}

async function worker(context: StrategyContext) {
  const { comm, model, batch, epochs, seed, workers, start } = context;
  const size = model.layout.size;
  const incoming = new Float32Array(size + 3);
  const params = incoming.subarray(0, size);
  const hook = context.makeHook?.(size, { momentum: 0 });
  const outgoing = new Float32Array(pushLength(size, hook));
  const grad = hook ? new Float32Array(size) : outgoing.subarray(0, size);
  const fields = hook ? 0 : size;
  const payload = new Uint8Array(outgoing.buffer, 16);
  const { order, trainMaker, testMaker, steps } = loopParts(context);
  const index = comm.rank - 1;
  for (let epoch = start.epoch; epoch < epochs; epoch++) {
    epochOrder(order, seed, epoch);
    for (;;) {
      await comm.recv(incoming, 0);
      const command = incoming[size];
      if (command === STOP) return { params, stoppedEarly: true };
      if (command === EPOCH_END) break;
      const step = incoming[size + 1];
      outgoing[fields] = model.lossAndGrad(params, trainMaker.fromOrder(order, (step * workers + index) * batch, batch), grad);
      outgoing[fields + 1] = incoming[size + 2]; // the version these parameters had
      outgoing[fields + 2] = step;
      if (hook) outgoing[3] = hook.encode(grad, payload, { epoch: epoch + step / steps });
      await comm.send(outgoing, 0);
    }
    await comm.broadcast(params, 0);
    await evaluate(context, params, testMaker);
  }
  return { params, stoppedEarly: false };
}
