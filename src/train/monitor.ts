// Turns the events ranks report into the run's evidence: a JSONL log (one object per report,
// then a summary), live figures for a progress display, and the summary itself.

import { totalOf, type MemoryParts } from './memory.js';
import { closeSync, openSync, writeSync } from 'node:fs';
import type { StageReport } from '../strategies/pipeline.js';
import type { TensorParallelReport } from '../strategies/tensor.js';
import type { StepBreakdown, TrainingEvent } from './loop.js';

export interface Summary {
  type: 'summary';
  dataset: string;
  model: string;
  strategy: string;
  workers: number;
  kernels: string;
  epochs: number; // epochs completed in this run
  testAccuracy: number; // NaN for regression
  testRmse: number; // NaN for classification
  testLoss: number;
  trainLoss: number;
  samples: number; // trained in this run
  samplesPerSecond: number; // samples / seconds spent in training steps (evaluation excluded)
  wallSeconds: number; // the whole run, start-up and evaluation included
  bytesPerWorkerPerStep: number;
  stoppedEarly: boolean;
  meanStaleness?: number; // async-ps
  maxStaleness?: number;
  /** With --target: the accuracy (or RMSE) asked for, and the first evaluation that reached it (null: none did). */
  target?: number;
  trainSecondsToTarget?: number | null; // training time of this run until then, evaluations excluded
  samplesToTarget?: number | null;
  wallSecondsToTarget?: number | null;
  /** pipeline: each stage's layers, parameters, peak stored micro-batches, and compute and idle seconds. */
  pipeline?: StageReport[];
  /** tensor: the split blocks, the all-reduces a step made, the parameters a rank holds. */
  tensorParallel?: TensorParallelReport;
  /** Models of layers: rank 0's activation arena (bytes really held by a step), the schedule, the forward passes it runs again. */
  activations?: { peakActivationBytes: number; schedule: string; recomputed: number; units: number; storeAllBytes: number; predictedSeconds?: number };
  /** Rank 0's bytes for the model: parameters, gradients, optimiser state, activations (what --memory-limit checks); `ranks`, each rank's. */
  memory?: MemoryParts & { total: number; ranks: (MemoryParts & { total: number })[] };
}

export type Listener = (event: TrainingEvent, elapsedSeconds: number) => void;

export class Monitor {
  private readonly started = performance.now();
  private readonly fd: number | null;
  private trainSeconds = 0;
  private samples = 0;
  private steps = 0;
  private epochsDone = 0;
  private lastEpoch: Extract<TrainingEvent, { kind: 'epoch' }> | null = null;
  private lastBytes = 0;
  private listeners: Listener[] = [];
  private stalenessSum = 0; // async-ps: over every update
  private stalenessMax = 0;
  private stalenessCount = 0;
  private reached: { trainSeconds: number; samples: number; wallSeconds: number } | null = null;
  private stopFlag: SharedArrayBuffer | null = null;
  private stages: StageReport[] | null = null;
  private tensor: TensorParallelReport | null = null;
  private activations: Summary['activations'] | null = null;
  private memory: Summary['memory'] | null = null;

  /** --stop-at-target: the first evaluation that reaches the target raises the run's stop flag (the ranks stop together at their next meeting). */
  stopAtTarget(stopFlag: SharedArrayBuffer): void {
    this.stopFlag = stopFlag;
  }

  constructor(logPath: string | undefined, private readonly run: { dataset: string; model: string; strategy: string; workers: number; kernels: string; batch: number; target?: number }) {
    // '-' is standard output (fd 1), which the monitor writes to but never closes
    this.fd = logPath === '-' ? 1 : logPath ? openSync(logPath, 'w') : null;
  }

  listen(listener: Listener): void {
    this.listeners.push(listener);
  }

  elapsed(): number {
    return (performance.now() - this.started) / 1000;
  }

  private write(record: object): void {
    if (this.fd !== null) writeSync(this.fd, `${JSON.stringify(record)}\n`);
  }

  onEvent = (_rank: number, value: unknown): void => {
    const event = value as TrainingEvent;
    const time = +this.elapsed().toFixed(4);
    if (event.kind === 'step') {
      this.write({ type: 'step', time, epoch: event.epoch, step: event.step, samples: event.samples, loss: event.loss, lr: event.lr, bytesSent: event.bytesSent });
    } else if (event.kind === 'updates') {
      for (let i = 0; i < event.workers.length; i++) this.write({ type: 'update', time, worker: event.workers[i], version: event.versions[i], staleness: event.staleness[i] });
      for (const value of event.staleness) {
        this.stalenessSum += value;
        this.stalenessMax = Math.max(this.stalenessMax, value);
      }
      this.stalenessCount += event.staleness.length;
    } else if (event.kind === 'tensor') {
      const { kind: _kind, ...report } = event;
      this.tensor = report;
      this.write({ type: 'tensor', time, ...report });
    } else if (event.kind === 'memory') {
      const { kind: _kind, ranks, ...parts } = event;
      this.memory = { ...parts, total: totalOf(parts), ranks: ranks.map((rank) => ({ ...rank, total: totalOf(rank) })) };
      this.write({ type: 'memory', time, ...this.memory });
    } else if (event.kind === 'activations') {
      const { bytes, schedule, recomputed, units, storeAllBytes, predictedSeconds } = event;
      this.activations = { peakActivationBytes: bytes, schedule, recomputed, units, storeAllBytes, ...(predictedSeconds !== undefined ? { predictedSeconds } : {}) };
      this.write({ type: 'activations', time, ...this.activations, ...(event.profile ? { profile: event.profile } : {}) });
    } else if (event.kind === 'pipeline') {
      this.stages = event.stages;
      this.write({ type: 'pipeline', time, stages: event.stages });
    } else if (event.kind === 'evaluation') {
      const classification = !Number.isNaN(event.testAccuracy);
      this.write({ type: 'evaluation', time, epochs: event.epochs, samples: event.samples, testLoss: event.testLoss,
        ...(classification ? { testAccuracy: event.testAccuracy } : { testRmse: event.testRmse }), trainSeconds: event.trainSeconds });
      const { target } = this.run;
      if (target !== undefined && !this.reached && (classification ? event.testAccuracy >= target : event.testRmse <= target)) {
        this.reached = { trainSeconds: event.trainSeconds, samples: event.samples, wallSeconds: time };
        if (this.stopFlag) Atomics.store(new Int32Array(this.stopFlag), 0, 1);
      }
    } else {
      this.epochsDone++;
      this.trainSeconds += event.trainSeconds;
      this.samples += event.samples;
      this.steps += event.samples / (this.run.batch * this.run.workers);
      this.lastBytes = event.bytesSent;
      this.lastEpoch = event;
      this.write({ type: 'epoch', time, epoch: event.epoch, trainLoss: event.trainLoss, testLoss: event.testLoss,
        ...(Number.isNaN(event.testAccuracy) ? { testRmse: event.testRmse } : { testAccuracy: event.testAccuracy }),
        samplesPerSecond: event.samples / event.trainSeconds, trainSeconds: event.trainSeconds, bytesSent: event.bytesSent, perStepMs: breakdownMs(event.perStep) });
    }
    for (const listener of this.listeners) listener(event, time);
  };

  summary(stoppedEarly: boolean): Summary {
    const last = this.lastEpoch;
    const summary: Summary = {
      type: 'summary', ...pick(this.run), epochs: this.epochsDone,
      testAccuracy: last?.testAccuracy ?? NaN, testRmse: last?.testRmse ?? NaN, testLoss: last?.testLoss ?? NaN, trainLoss: last?.trainLoss ?? NaN,
      samples: this.samples, samplesPerSecond: this.trainSeconds > 0 ? this.samples / this.trainSeconds : 0,
      wallSeconds: this.elapsed(), bytesPerWorkerPerStep: this.steps > 0 ? this.lastBytes / this.steps : 0, stoppedEarly,
      ...(this.stalenessCount ? { meanStaleness: this.stalenessSum / this.stalenessCount, maxStaleness: this.stalenessMax } : {}),
      ...(this.stages ? { pipeline: this.stages } : {}),
      ...(this.tensor ? { tensorParallel: this.tensor } : {}),
      ...(this.activations ? { activations: this.activations } : {}),
      ...(this.memory ? { memory: this.memory } : {}),
      ...(this.run.target !== undefined ? {
        target: this.run.target, trainSecondsToTarget: this.reached?.trainSeconds ?? null, samplesToTarget: this.reached?.samples ?? null, wallSecondsToTarget: this.reached?.wallSeconds ?? null,
      } : {}),
    };
    this.write(summary);
    return summary;
  }

  fail(message: string): void {
    this.write({ type: 'error', time: this.elapsed(), message });
  }

  close(): void {
    if (this.fd !== null && this.fd !== 1) closeSync(this.fd);
  }
}

/** A step's breakdown in milliseconds, rounded to µs: what the log and the epoch line show. */
export function breakdownMs(perStep: StepBreakdown): { compute: number; communication: number; waiting: number | null } {
  const ms = (seconds: number) => +(1000 * seconds).toFixed(3);
  return { compute: ms(perStep.compute), communication: ms(perStep.communication), waiting: perStep.waiting === null ? null : ms(perStep.waiting) };
}

function pick(run: { dataset: string; model: string; strategy: string; workers: number; kernels: string }) {
  return { dataset: run.dataset, model: run.model, strategy: run.strategy, workers: run.workers, kernels: run.kernels };
}
