// Checkpoints written at most every S seconds (--save-every-seconds): the clock alone, against a
// fake time; then a run whose epoch ends come faster than the period, read back from its file.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkpointClock } from './run.js';
import { readCheckpointLayout } from './checkpoint.js';
import { train } from '../api/train.js';

test('the checkpoint clock: the first write goes, then one per period; without a period every write goes', () => {
  let now = 0;
  const every = checkpointClock(2, () => now);
  const writes = [0, 500, 1999, 2000, 2500, 4100, 4200].map((t) => ((now = t), every()));
  assert.deepEqual(writes, [true, false, false, true, false, true, false]);
  const always = checkpointClock(undefined, () => now);
  assert.deepEqual([always(), always(), always()], [true, true, true]);
});

test('a run with --save-every-seconds longer than the run still writes its last checkpoint: its last epoch end, or where it stopped', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-save-seconds-'));
  const save = join(dir, 'run.ckpt');
  const seen: number[] = [];
  await train({
    model: 'softmax', data: 'synthetic', epochs: 3, workers: 1, batch: 64, seed: 2, save, saveEverySeconds: 3600,
    // the epoch's event comes before its end-of-epoch checkpoint; what the file says then is the previous one's
    onEpoch: (e) => seen.push(e.epoch),
  });
  assert.deepEqual(seen, [0, 1, 2]);
  assert.equal(readCheckpointLayout(save).state.epoch, 3, 'the last epoch end is written whatever the clock says');
  const stopped = join(dir, 'stopped.ckpt');
  await train({ model: 'softmax', data: 'synthetic', epochs: 3, workers: 1, batch: 64, seed: 2, save: stopped, saveEverySeconds: 3600, stopAfterSteps: 40 });
  const { state } = readCheckpointLayout(stopped);
  assert.deepEqual([state.epoch, state.step], [1, 8], 'a run stopped mid-epoch writes where it stopped (40 steps of 32 per epoch)');
  await assert.rejects(train({ model: 'softmax', data: 'synthetic', epochs: 1, workers: 1, saveEverySeconds: 0 }), /--save-every-seconds.*seconds > 0/);
});
