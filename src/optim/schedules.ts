// Learning-rate schedules as functions of training progress in epochs (fractional).

import { unknownName } from '../errors.js';

export const scheduleNames = ['constant', 'step', 'cosine'] as const;
export type ScheduleName = (typeof scheduleNames)[number];

export interface ScheduleConfig {
  name: ScheduleName;
  baseLr: number;
  epochs: number; // total, for cosine
  warmupEpochs: number; // linear warm-up from ~0 to baseLr, then the schedule
  stepEpochs: number; // step: multiply by gamma every stepEpochs
  gamma: number;
}

export function learningRate(s: ScheduleConfig, epoch: number): number {
  let lr: number;
  switch (s.name) {
    case 'constant':
      lr = s.baseLr;
      break;
    case 'step':
      lr = s.baseLr * s.gamma ** Math.floor(epoch / s.stepEpochs);
      break;
    case 'cosine':
      lr = 0.5 * s.baseLr * (1 + Math.cos(Math.PI * Math.min(1, epoch / s.epochs)));
      break;
    default:
      throw unknownName('schedule', String((s as ScheduleConfig).name), scheduleNames);
  }
  if (s.warmupEpochs > 0 && epoch < s.warmupEpochs) lr *= epoch / s.warmupEpochs;
  return lr;
}

/** The linear scaling rule (Goyal et al. 2017): with P workers the global batch is P× larger, so is the lr. */
export function scaledLearningRate(lr: number, workers: number, scaling: 'linear' | 'none'): number {
  return scaling === 'linear' ? lr * workers : lr;
}
