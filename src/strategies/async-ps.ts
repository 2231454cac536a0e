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
import { StepReporter, checkFinite, evaluate } from './common.js';

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
  const incoming = new Float32Array(size + 3); // [gradient | loss | version pulled | step]
  const grad = incoming.subarray(0, size);
  const optimizer = context.makeOptimizer();
  for (const [name, values] of Object.entries(start.optimizerState)) optimizer.state[name].set(values);
  optimizer.steps = start.optimizerSteps;
  const testMaker = makeBatcher(dataset, 'test', model.maxBatch);
  const steps = stepsPerEpoch(dataset.train.count, workers, batch);
  const reporter = new StepReporter();
  let version = start.optimizerSteps; // updates applied so far
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
      const loss = incoming[size];
      const pulled = incoming[size + 1];
      const lr = context.learningRate(epoch + (incoming[size + 2] + 1) / steps);
      checkFinite(loss, epoch * steps + incoming[size + 2], epoch, lr);
      optimizer.step(params, grad, lr / workers);
      log.workers.push(from);
      log.versions.push(version);
      log.staleness.push(version - pulled);
      version++;
      applied++;
      lossSum += loss;
      if (!stopping && context.stopRequested()) stopping = true;
      if (reporter.due(applied, Number.MAX_SAFE_INTEGER)) {
        context.report({ kind: 'step', epoch, step: done(), stepsPerEpoch: steps, samples: (epoch * steps + firstStep) * workers * batch + applied * batch, loss, lr, bytesSent: comm.bytesSent });
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
    context.report({ kind: 'epoch', epoch, trainLoss: lossSum / Math.max(1, applied), testLoss: loss, testAccuracy: accuracy, testRmse: rmse, trainSeconds, samples: applied * batch, bytesSent: comm.bytesSent });
    context.save({ params, optimizerState: optimizer.state, optimizerSteps: version, epoch: epoch + 1, step: 0 });
  }
  return { params, stoppedEarly: false };
}

async function worker(context: StrategyContext) {
  const { comm, model, dataset, batch, epochs, seed, workers, start } = context;
  const size = model.layout.size;
  const incoming = new Float32Array(size + 3);
  const params = incoming.subarray(0, size);
  const outgoing = new Float32Array(size + 3);
  const grad = outgoing.subarray(0, size);
  const order = new Uint32Array(dataset.train.count);
  const trainMaker = makeBatcher(dataset, 'train', batch);
  const testMaker = makeBatcher(dataset, 'test', model.maxBatch);
  const index = comm.rank - 1;
  for (let epoch = start.epoch; epoch < epochs; epoch++) {
    epochOrder(order, seed, epoch);
    for (;;) {
      await comm.recv(incoming, 0);
      const command = incoming[size];
      if (command === STOP) return { params, stoppedEarly: true };
      if (command === EPOCH_END) break;
      const step = incoming[size + 1];
      outgoing[size] = model.lossAndGrad(params, trainMaker.fromOrder(order, (step * workers + index) * batch, batch), grad);
      outgoing[size + 1] = incoming[size + 2]; // the version these parameters had
      outgoing[size + 2] = step;
      await comm.send(outgoing, 0);
    }
    await comm.broadcast(params, 0);
    await evaluate(context, params, testMaker);
  }
  return { params, stoppedEarly: false };
}
