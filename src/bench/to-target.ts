// What the time-to-accuracy benches share: one converge run on threads until its test accuracy
// first reaches the config's target (evaluated every config.evalEvery), stopped there.

import type { Dataset } from '../data/dataset.js';
import { trainOnThreads } from '../launch/threads.js';
import type { TrainConfig } from '../train/config.js';

/** Training seconds and samples until the target (config.target), or nulls when the run ends first. */
export async function timeToTarget(config: TrainConfig, dataset: Dataset): Promise<{ seconds: number | null; samples: number | null }> {
  const stopFlag = new SharedArrayBuffer(4);
  const { summary } = await trainOnThreads(config, {
    dataset,
    stopFlag,
    onStart: (monitor) => monitor.listen((event) => {
      if (event.kind === 'evaluation' && event.testAccuracy >= config.target!) Atomics.store(new Int32Array(stopFlag), 0, 1);
    }),
  });
  return { seconds: summary.trainSecondsToTarget ?? null, samples: summary.samplesToTarget ?? null };
}
