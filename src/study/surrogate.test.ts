// Surrogate studies end to end: server ranks as processes training over the tcp backend while
// simulation runs (processes) stream to them. Oracles: the test simulation's closed-form field
// at every run's inputs (the design is reproducible), and counts that follow from the routing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseNpy } from '../data/npy.js';
import * as api from '../index.js';
import { Design } from './design.js';
import { parseStudy } from './spec.js';
import { readCheckpointLayout } from '../train/checkpoint.js';
import { runStudy, type StudySummary } from './launch.js';
import { CELLS, TIMESTEPS, field } from './surrogate.test.fixture.js';
import { encodeInput, routeOf } from './surrogate.js';

const simulation = fileURLToPath(new URL('./surrogate.test.fixture.js', import.meta.url));
const parameters = { x: { uniform: [-Math.PI, Math.PI] }, y: { uniform: [0, 1] } };
const fields = { w: { cells: CELLS, timesteps: TIMESTEPS }, extra: { cells: 2, timesteps: TIMESTEPS } };
const design = (seed: number) => new Design([{ name: 'x', distribution: { kind: 'uniform', low: -Math.PI, high: Math.PI } }, { name: 'y', distribution: { kind: 'uniform', low: 0, high: 1 } }], 'monte-carlo', seed);

async function study(description: Record<string, unknown>, options: { env?: Record<string, string>; writeSamples?: boolean } = {}): Promise<{ dir: string; summary: StudySummary; lines: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'converge-surrogate-'));
  const lines: string[] = [];
  const summary = await api.study({ simulation: { module: simulation }, parameters, fields, design: 'monte-carlo', ...description }, { out: dir, env: options.env, writeSamples: options.writeSamples, log: (line) => lines.push(line) });
  return { dir, summary, lines };
}

const npy = (dir: string, file: string) => parseNpy(readFileSync(join(dir, 'samples', file)), file);

test('written samples (the offline baseline): every training sample once, its inputs encoded as the design says and its field the simulation\'s — a run that crashed and ran again included', async () => {
  const runs = 12;
  const heldOut = 3;
  const { dir, summary, lines } = await study({ runs, servers: 2, concurrency: 3, seed: 4, surrogate: { field: 'w', heldOutRuns: heldOut } }, { writeSamples: true, env: { CONVERGE_TEST_CRASH: '5:1' } });
  assert.equal(summary.restarts, 1, lines.join('\n'));
  // run 5 sent timesteps 0 and 1 of both fields before it crashed; its second attempt sent them again
  assert.equal(summary.repeatedTimesteps, 2 * 2);
  const x = npy(dir, 'train_x.npy');
  const y = npy(dir, 'train_y.npy');
  assert.deepEqual(x.shape, [(runs - heldOut) * TIMESTEPS, 3]);
  assert.deepEqual(y.shape, [(runs - heldOut) * TIMESTEPS, CELLS]);
  const d = design(4);
  const inputs = Array.from({ length: runs }, (_, run) => d.inputs(run));
  const seen = new Set<string>();
  for (let row = 0; row < x.shape[0]; row++) {
    const [sx, sy, st] = [x.values[row * 3], x.values[row * 3 + 1], x.values[row * 3 + 2]];
    // the inputs scaled to [0, 1] by their ranges, the timestep by the field's last
    const run = inputs.findIndex(([vx, vy]) => Math.abs((vx + Math.PI) / (2 * Math.PI) - sx) < 1e-6 && Math.abs(vy - sy) < 1e-6);
    assert.ok(run >= heldOut, `row ${row}: inputs (${sx}, ${sy}) are no training run's`);
    const t = Math.round(st * (TIMESTEPS - 1));
    assert.ok(Math.abs(st - t / (TIMESTEPS - 1)) < 1e-7);
    const key = `${run}:${t}`;
    assert.ok(!seen.has(key), `run ${run} timestep ${t} written twice`);
    seen.add(key);
    const expected = field(inputs[run][0], inputs[run][1], t);
    for (let i = 0; i < CELLS; i++) assert.ok(Math.abs(y.values[row * CELLS + i] - expected[i]) < 1e-5, `run ${run} t ${t} cell ${i}`);
  }
  // the held-out runs, in order: run-major, then timestep
  const testY = npy(dir, 'test_y.npy');
  assert.deepEqual(testY.shape, [heldOut * TIMESTEPS, CELLS]);
  for (let run = 0; run < heldOut; run++) {
    for (let t = 0; t < TIMESTEPS; t++) {
      const expected = field(inputs[run][0], inputs[run][1], t);
      for (let i = 0; i < CELLS; i++) assert.ok(Math.abs(testY.values[(run * TIMESTEPS + t) * CELLS + i] - expected[i]) < 1e-5);
    }
  }
  // a held-out run's fields go to both ranks, a training run's to one: float64 values, repeats included
  const valuesPerRun = TIMESTEPS * (CELLS + 2);
  assert.equal(summary.bytesStreamed, 8 * valuesPerRun * (2 * heldOut + (runs - heldOut)) + 8 * 2 * (CELLS + 2));
});

test('online: two server ranks train one network data-parallel from their buffers while the runs stream, and it predicts held-out runs far better than their mean field', async () => {
  const runs = 48;
  const heldOut = 8;
  const capacity = 60;
  const { dir, summary, lines } = await study({
    runs, servers: 2, concurrency: 2, seed: 7,
    surrogate: { heldOutRuns: heldOut, capacity, threshold: 20, evict: 'random', train: { hidden: [32, 32], lr: 0.002, batch: 16 } },
  });
  const s = summary.surrogate!;
  assert.ok(s, lines.join('\n'));
  // each rank takes every other training run: 20 runs of 4 samples, 60 kept, the rest evicted
  assert.equal(s.produced, (runs - heldOut) * TIMESTEPS);
  assert.equal(s.evicted, 2 * ((runs - heldOut) / 2 * TIMESTEPS - capacity));
  // the baseline, computed here from the closed form: each held-out run predicted by their mean at its timestep
  const d = design(7);
  let squares = 0;
  for (let t = 0; t < TIMESTEPS; t++) {
    const values = Array.from({ length: heldOut }, (_, run) => field(...(d.inputs(run) as [number, number]), t));
    for (let i = 0; i < CELLS; i++) {
      const mean = values.reduce((sum, v) => sum + v[i], 0) / heldOut;
      for (const v of values) squares += (v[i] - mean) ** 2;
    }
  }
  const meanField = squares / (heldOut * TIMESTEPS * CELLS);
  assert.ok(Math.abs(s.meanFieldMse - meanField) < 1e-5 * meanField, `${s.meanFieldMse} against ${meanField}`);
  // (seeds 7–11 ended at 0.004–0.20 of it; a network that cannot see the inputs scores about 1)
  assert.ok(s.heldOutMse < 0.5 * meanField, `held-out MSE ${s.heldOutMse}, the mean field's ${meanField}\n${lines.join('\n')}`);
  assert.ok(Math.abs(s.heldOutRmse - Math.sqrt(s.heldOutMse)) < 1e-12);
  // trained from the stream: it began before the last run was done, drew samples more than once, and tested along the way
  assert.ok(s.began < s.ended && s.consumed > s.produced, JSON.stringify({ began: s.began, ended: s.ended, consumed: s.consumed }));
  assert.ok(s.curve.length >= 2);
  assert.ok(existsSync(join(dir, 'surrogate.json')));
  // the trained parameters, as a checkpoint converge predict and export read: 3 inputs → 32 → 32 → 8 cells
  const checkpoint = readCheckpointLayout(join(dir, 'surrogate.ckpt'));
  assert.equal(checkpoint.state.params.length, s.parameters);
  assert.equal(s.parameters, 3 * 32 + 32 + 32 * 32 + 32 + 32 * CELLS + CELLS);
});

test('a server rank killed mid-study: every training rank starts again from its checkpoint (its buffer, what it counted, the model), the runs lost run again, every sample is counted once, and the surrogate still learns', async () => {
  const runs = 48;
  const heldOut = 8;
  const dir = mkdtempSync(join(tmpdir(), 'converge-surrogate-'));
  const lines: string[] = [];
  let killed = false;
  const summary = await runStudy(parseStudy({
    simulation: { module: simulation }, parameters, fields, design: 'monte-carlo', runs, servers: 2, concurrency: 2, seed: 7, checkpointEverySeconds: 0.2,
    // (each buffer holds its rank's whole share: what is learned depends on the restart, not on what was evicted when)
    surrogate: { heldOutRuns: heldOut, threshold: 20, train: { hidden: [32, 32], lr: 0.002, batch: 16 } },
  }), {
    out: dir, log: (line) => lines.push(line),
    onRunDone: (run, pids) => {
      if (run === 30 && !killed) {
        killed = true;
        process.kill(pids[1], 'SIGKILL');
      }
    },
  });
  assert.ok(killed);
  assert.equal(summary.serverRestarts, 1, lines.join('\n'));
  assert.ok(lines.some((line) => line === 'study server rank 1 exited (SIGKILL); every rank of the surrogate\'s training starts again from its last checkpoint'), lines.join('\n'));
  assert.ok(lines.some((line) => line.startsWith('the surrogate\'s server ranks are back from their checkpoints')), lines.join('\n'));
  const s = summary.surrogate!;
  // the checkpoints' samples, and the lost runs' sent again: each training sample taken once
  assert.equal(s.produced, (runs - heldOut) * TIMESTEPS);
  // training went on from its saved model, not from a fresh one
  assert.ok(s.resumedFrom && s.resumedFrom.epoch + s.resumedFrom.step > 0, JSON.stringify(s.resumedFrom));
  assert.ok(s.heldOutMse < 0.5 * s.meanFieldMse, `held-out MSE ${s.heldOutMse}, the mean field's ${s.meanFieldMse}\n${lines.join('\n')}`);
  // the curve kept from before the kill, and its time of first training
  assert.ok(s.curve[0].seconds < s.curve[s.curve.length - 1].seconds - 1 && s.began <= s.curve[0].seconds);
});

test('a surrogate study\'s description: each mistake is one line naming the key', () => {
  const base = { simulation: { module: simulation }, parameters, fields, runs: 10 };
  const message = (description: Record<string, unknown>) => {
    try {
      parseStudy({ ...base, ...description });
    } catch (error) {
      return (error as Error).message;
    }
    return 'accepted';
  };
  assert.match(message({ surrogate: {}, statistics: {} }), /surrogate and statistics are two studies/);
  assert.match(message({ surrogate: { field: 'q' } }), /surrogate\.field is "q"; give one of the study's fields \(w, extra\)/);
  assert.match(message({ surrogate: { heldOutRuns: 10 } }), /surrogate\.heldOutRuns is 10, but the study has 10 runs/);
  assert.match(message({ surrogate: { capacity: 5, threshold: 6 } }), /surrogate\.threshold is 6, more than the buffer's capacity \(5\)/);
  assert.match(message({ surrogate: { evict: 'lru' } }), /surrogate\.evict is "lru"; give "random" or "oldest"/);
  assert.match(message({ surrogate: { train: { epochs: 3 } } }), /surrogate\.train\.epochs is set by the study/);
  assert.match(message({ surrogate: { train: { learningRate: 3 } } }), /surrogate\.train\.learningRate is not an option of train\(\)/);
  assert.match(message({ surrogate: { train: { optimizer: 'adamw' } } }), /surrogate\.train is not a run converge can make: .*adamw/);
  assert.match(message({ surrogate: 'mlp' }), /study: surrogate\. is "mlp"; give an object/);
  assert.match(message({ surrogate: { train: ['hidden'] } }), /surrogate\.train is \["hidden"\]; give train\(\)'s options/);
  assert.match(message({ surrogate: { buffer: 4 } }), /surrogate\.buffer is not known; a surrogate has field, heldOutRuns, capacity, threshold, evict, train/);
  assert.match(message({ surrogate: { heldOutRuns: 1.5 } }), /surrogate\.heldOutRuns is 1\.5; give a whole number ≥ 1/);
  assert.match(message({ surrogate: { capacity: 0 } }), /surrogate\.capacity is 0; give a whole number ≥ 1/);
  // what the study itself sets, each refused by name
  for (const key of ['dataset', 'dataDir', 'testDataset', 'labelColumn', 'zeroBased', 'task', 'backend', 'workers', 'epochs', 'resume', 'save', 'saveEvery', 'stopAfterSteps', 'stopAtTarget', 'target', 'bind', 'transportSecurity', 'globalBatch']) {
    assert.match(message({ surrogate: { train: { [key]: 1 } } }), new RegExp(`surrogate\\.train\\.${key} is set by the study`), key);
  }
  assert.equal(message({ surrogate: { capacity: 5, threshold: 5 } }), 'accepted');
  // a tenth of the runs held out by default
  assert.equal(parseStudy({ ...base, runs: 30, surrogate: {} }).surrogate!.heldOutRuns, 3);
  assert.deepEqual(parseStudy({ ...base, runs: 30, surrogate: {} }).surrogate!.train, { model: 'mlp', hidden: [256, 256], optimizer: 'adam', lr: 0.001, batch: 32, strategy: 'allreduce' });
  const spec = parseStudy({ ...base, servers: 2, surrogate: { heldOutRuns: 2 } });
  // by default a buffer takes its rank's whole share (8 training runs of 4 timesteps, over 2 ranks), and training starts at a quarter of it
  assert.deepEqual({ capacity: spec.surrogate!.capacity, threshold: spec.surrogate!.threshold, field: spec.surrogate!.field }, { capacity: 16, threshold: 4, field: 0 });
});

test('a run\'s inputs as the network sees them: a uniform\'s range to [0, 1], a normal\'s standard score, the timestep\'s place; and where a run\'s fields go', () => {
  const parameters = [
    { name: 'a', distribution: { kind: 'uniform' as const, low: 2, high: 6 } },
    { name: 'b', distribution: { kind: 'normal' as const, mean: 10, sd: 4 } },
  ];
  assert.deepEqual(Array.from(encodeInput(parameters, [3, 4], 2, 5)), [0.25, -1.5, 0.5]);
  assert.deepEqual(Array.from(encodeInput(parameters, [6, 10], 4, 5)), [1, 0, 1]);
  // one timestep: its place is 0
  assert.deepEqual(Array.from(encodeInput(parameters, [2, 14], 0, 1)), [0, 1, 0]);
  // held-out runs go to every rank; the training runs after them take turns, starting at rank 0
  assert.deepEqual([0, 1, 2].map((run) => routeOf(run, 3, 2)), [[0, 1], [0, 1], [0, 1]]);
  assert.deepEqual([2, 3, 4, 5, 6].map((run) => routeOf(run, 2, 3)), [[0], [1], [2], [0], [1]]);
});
