// A one-line progress bar per epoch on a terminal (loss, samples/s, ETA); on anything else,
// one line per epoch, so logs captured from CI stay readable.

import type { TrainingEvent } from '../train/loop.js';
import { breakdownMs } from '../train/monitor.js';
import { formatBytes } from '../models/checkpointing.js';
import type { ActivationReport } from '../models/sequential.js';

/** What --recompute and --memory-budget made of rank 0's step, in one line. */
export function activationLine(a: ActivationReport): string {
  const predicted = a.predictedSeconds === undefined ? '' : `; predicted ${(a.predictedSeconds * 1e3).toFixed(1)} ms of forward and backward passes a step`;
  return `activations: --recompute ${a.schedule} holds ${formatBytes(a.bytes)} (storing all: ${formatBytes(a.storeAllBytes)}), runs ${a.recomputed} of ${a.units} units' forward passes twice${predicted}`;
}

const WIDTH = 24;

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  if (seconds < 60) return `${seconds.toFixed(0)}s`;
  return `${Math.floor(seconds / 60)}m${String(Math.round(seconds % 60)).padStart(2, '0')}s`;
}

/** The line cut to fit `columns` (one column spare, so the cursor does not wrap). */
export function clip(line: string, columns: number | undefined): string {
  return columns && columns > 1 && line.length >= columns ? line.slice(0, columns - 1) : line;
}

export class ProgressBar {
  private epochStarted = 0;
  private epochSamplesAtStart = 0;
  private epochStepAtStart = 0;
  private currentEpoch = -1;

  constructor(private readonly epochs: number, private readonly stream: NodeJS.WriteStream = process.stderr) {}

  /** A bar that redraws itself: on a terminal that can (not TERM=dumb); elsewhere plain lines. */
  private get live(): boolean {
    return Boolean(this.stream.isTTY) && process.env.TERM !== 'dumb';
  }

  update = (event: TrainingEvent, elapsed: number): void => {
    if (event.kind === 'step') {
      if (event.epoch !== this.currentEpoch) {
        this.currentEpoch = event.epoch;
        // the rate is measured from this epoch's first report on
        this.epochStarted = elapsed;
        this.epochSamplesAtStart = event.samples;
        this.epochStepAtStart = event.step;
      }
      if (!this.live) return;
      const fraction = (event.step + 1) / event.stepsPerEpoch;
      const seconds = elapsed - this.epochStarted;
      const rate = seconds > 0 ? (event.samples - this.epochSamplesAtStart) / seconds : NaN;
      const eta = seconds > 0 ? (seconds / (event.step - this.epochStepAtStart)) * (event.stepsPerEpoch - event.step - 1) : NaN;
      const filled = Math.round(fraction * WIDTH);
      const line = `epoch ${event.epoch + 1}/${this.epochs} [${'='.repeat(filled)}${' '.repeat(WIDTH - filled)}] ${(100 * fraction).toFixed(0).padStart(3)}%  loss ${event.loss.toFixed(4)}  ${Number.isFinite(rate) ? Math.round(rate).toLocaleString('en-US') : '…'} samples/s  ETA ${duration(eta)}`;
      // clipped to the terminal's width: a line that wraps would leave one line per update
      this.stream.write(`\r\x1b[K${clip(line, this.stream.columns)}`);
    } else if (event.kind === 'evaluation' && !Number.isInteger(event.epochs)) {
      // a mid-epoch evaluation (--eval-every); an epoch's end has its own line below
      if (this.live) this.stream.write('\r\x1b[K');
      const merit = Number.isNaN(event.testAccuracy) ? `test RMSE ${event.testRmse.toFixed(4)}` : `test accuracy ${(100 * event.testAccuracy).toFixed(2)}%`;
      this.stream.write(`  at epoch ${event.epochs.toFixed(2)}  test loss ${event.testLoss.toFixed(4)}  ${merit}  ${event.trainSeconds.toFixed(1)} s of training\n`);
    } else if (event.kind === 'activations' && event.schedule !== 'none') {
      this.stream.write(`${activationLine(event)}\n`);
    } else if (event.kind === 'epoch') {
      if (this.live) this.stream.write('\r\x1b[K');
      const merit = Number.isNaN(event.testAccuracy) ? `test RMSE ${event.testRmse.toFixed(4)}` : `test accuracy ${(100 * event.testAccuracy).toFixed(2)}%`;
      const step = breakdownMs(event.perStep);
      const perStep = `a step: compute ${step.compute.toFixed(2)} ms, communication ${step.communication.toFixed(2)} ms${step.waiting === null ? '' : `, waiting ${step.waiting.toFixed(2)} ms`}`;
      this.stream.write(`epoch ${event.epoch + 1}/${this.epochs}  train loss ${event.trainLoss.toFixed(4)}  test loss ${event.testLoss.toFixed(4)}  ${merit}  ${Math.round(event.samples / event.trainSeconds).toLocaleString('en-US')} samples/s  ${event.trainSeconds.toFixed(1)} s  (${perStep})\n`);
    }
  };
}
