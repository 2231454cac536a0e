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
//
// The loop's step c is, on the server, "apply pushes until every worker has pushed step c";
// on a worker, "compute step c when the server hands it out". Each worker computes its steps in
// order, so the loop's steps and the workers' agree; only the server interleaves them.

import { ConvergeError } from '../errors.js';
import type { RankSetup, StepInput, Strategy, StrategyRank } from './strategy.js';

// server → worker: [parameters | command | step | version]
const COMPUTE = 0;
const EPOCH_END = 1;
const STOP = 2;

export const asyncParameterServer: Strategy = async (setup) => (setup.comm.rank === 0 ? server(setup) : worker(setup));

/** Floats in a push: the gradient and three fields, or four fields and the largest payload. */
export function pushLength(size: number, hook: { maxBytes(n: number): number } | null): number {
  return hook ? 4 + Math.ceil(hook.maxBytes(size) / 4) : size + 3;
}

function server(setup: RankSetup): StrategyRank {
  const { comm, model, workers, staleness, hook } = setup;
  const size = model.layout.size;
  const outgoing = new Float32Array(size + 3);
  const params = outgoing.subarray(0, size);
  params.set(setup.startParams);
  const incoming = new Float32Array(pushLength(size, hook)); // [gradient | loss | version pulled | step], or [loss | version | step | bytes | payload]
  const grad = hook ? new Float32Array(size) : incoming.subarray(0, size);
  const fields = hook ? 0 : size; // where loss, version and step start
  const optimizer = setup.optimizer();
  let version = optimizer.steps; // updates applied so far
  let pushedBytes = 0;
  // clock[w] = steps worker w has started this epoch; inFlight[w] = it holds parameters and owes a push
  const clock = new Array<number>(workers + 1).fill(0);
  const inFlight = new Array<boolean>(workers + 1).fill(false);
  let stopping = false;

  const release = async (w: number, command: number, step: number) => {
    outgoing[size] = command;
    outgoing[size + 1] = step;
    outgoing[size + 2] = version;
    await comm.send(outgoing, w);
  };
  /** The steps every worker has pushed. */
  const completed = () => Math.min(...clock.slice(1).map((c, i) => (inFlight[i + 1] ? c - 1 : c)));
  /** Hands out work to every idle worker within the staleness bound of the slowest. */
  const handOut = async (steps: number) => {
    const slowest = completed();
    for (let w = 1; w <= workers; w++) {
      if (!inFlight[w] && clock[w] < steps && clock[w] - slowest <= staleness) {
        await release(w, COMPUTE, clock[w]);
        inFlight[w] = true;
        clock[w]++;
      }
    }
  };

  return {
    params,
    bytesSent: () => pushedBytes / workers,
    async beginEpoch(_epoch, firstStep, steps) {
      clock.fill(firstStep);
      inFlight.fill(false);
      await handOut(steps);
    },
    async step(input: StepInput) {
      const log = { workers: [] as number[], versions: [] as number[], staleness: [] as number[] };
      let lossSum = 0;
      while (inFlight.some(Boolean) && (stopping || completed() <= input.step)) {
        const from = await comm.recv(incoming, -1);
        inFlight[from] = false;
        const pushedStep = incoming[fields + 2];
        if (hook) hook.decode(new Uint8Array(incoming.buffer, 16), incoming[3], grad, false);
        // what the workers put on the wire: the encoded payload and four floats, or the gradient and three
        pushedBytes += hook ? incoming[3] + 16 : 4 * (size + 3);
        optimizer.step(params, grad, input.lrOf(pushedStep) / workers);
        log.workers.push(from);
        log.versions.push(version);
        log.staleness.push(version - incoming[fields + 1]);
        version++;
        lossSum += incoming[fields];
        if (!stopping && input.stopRequested()) stopping = true;
        if (!stopping) await handOut(input.steps);
      }
      if (log.workers.length > 0) setup.reportUpdates(log.workers, log.versions, log.staleness);
      const applied = log.workers.length;
      const loss = applied > 0 ? lossSum / applied : undefined;
      if (!stopping) return { loss, weight: applied / workers, stop: false };
      for (let w = 1; w <= workers; w++) await release(w, STOP, 0);
      // the position to resume from: the slowest worker's step (faster workers' extra steps are in the parameters)
      return { loss, weight: applied / workers, stop: true, resumeAt: Math.min(...clock.slice(1)) };
    },
    async endSteps(stopped, trainLoss) {
      if (stopped) return { stop: true, trainLoss };
      for (let w = 1; w <= workers; w++) await release(w, EPOCH_END, 0);
      await comm.broadcast(params, 0);
      return { stop: false, trainLoss };
    },
    async snapshot() {
      return { optimizerState: optimizer.state, optimizerSteps: version };
    },
  };
}

function worker(setup: RankSetup): StrategyRank {
  const { comm, model, hook } = setup;
  const size = model.layout.size;
  const incoming = new Float32Array(size + 3);
  const params = incoming.subarray(0, size);
  const outgoing = new Float32Array(pushLength(size, hook));
  const grad = hook ? new Float32Array(size) : outgoing.subarray(0, size);
  const fields = hook ? 0 : size;
  const payload = new Uint8Array(outgoing.buffer, 16);
  let bytes = 0;
  /** The server's next command: STOP, EPOCH_END, or COMPUTE with its step. */
  const receive = async () => {
    await comm.recv(incoming, 0);
    return incoming[size];
  };
  return {
    params,
    bytesSent: () => bytes,
    async step(input: StepInput) {
      const command = await receive();
      if (command === STOP) return { stop: true };
      const step = incoming[size + 1];
      if (command !== COMPUTE || step !== input.step) {
        throw new ConvergeError(`async-ps worker ${comm.rank}: the server sent command ${command} for step ${step} where step ${input.step} was due; the ranks run different configurations.`, 'PROTOCOL');
      }
      outgoing[fields] = await input.gradient(params, grad, step);
      outgoing[fields + 1] = incoming[size + 2]; // the version these parameters had
      outgoing[fields + 2] = step;
      if (hook) outgoing[3] = hook.encode(grad, payload, { epoch: input.epoch + step / input.steps });
      bytes += hook ? outgoing[3] + 16 : 4 * (size + 3);
      await comm.send(outgoing, 0);
      return { stop: false };
    },
    async endSteps(stopped, trainLoss) {
      if (stopped) return { stop: true, trainLoss };
      // a stop the server decided after this worker's last push arrives instead of the epoch's end
      if ((await receive()) === STOP) return { stop: true, trainLoss };
      await comm.broadcast(params, 0);
      return { stop: false, trainLoss };
    },
    async snapshot() {
      return null;
    },
  };
}
