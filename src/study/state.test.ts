// One server rank's state, without processes: slices, repeated timesteps, pick-freeze groups and
// covariance pairs that wait for their last member, and a checkpoint taken mid-stream. Oracles:
// the estimators fed directly in the same order (moments, Sobol), and a state that never
// checkpointed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { deserialize, serialize } from 'node:v8';
import { Random } from '../tensor/random.js';
import { Covariance, Moments } from './moments.js';
import { Sobol } from './sobol.js';
import { StudyState, sliceOf, type StateSpec } from './state.js';

const fields = [{ name: 'a', cells: 7, timesteps: 3 }, { name: 'b', cells: 7, timesteps: 3 }];
const sample = (run: number, field: number, timestep: number) => Float64Array.from({ length: 7 }, (_, i) => Math.sin(run * 1.3 + i) * (field + 1) + timestep + new Random(run * 100 + field * 10 + timestep).next());

test('cells are split among ranks in contiguous slices that cover the field once', () => {
  for (const [cells, ranks] of [[7, 3], [1024, 2], [5, 5], [3, 4]]) {
    const slices = Array.from({ length: ranks }, (_, r) => sliceOf(cells, r, ranks));
    assert.equal(slices[0][0], 0);
    assert.equal(slices[ranks - 1][1], cells);
    for (let r = 1; r < ranks; r++) assert.equal(slices[r][0], slices[r - 1][1]);
    assert.ok(slices.every(([low, high]) => high - low <= Math.ceil(cells / ranks)));
  }
});

test('a Monte-Carlo rank counts each run\'s timestep once, keeps its slice, and pairs the two fields for their covariance', () => {
  const spec: StateSpec = { fields, runs: 6, groupSize: 1, inputs: 2, pickFreeze: false, moments: { higher: true }, covariance: [['a', 'b']] };
  const state = new StudyState(spec, 1, 2); // rank 1 of 2: cells 3..7
  assert.deepEqual(state.slices, [[3, 7], [3, 7]]);
  const oracle = new Moments(4, { higher: true });
  const covariance = new Covariance(4);
  for (let run = 0; run < 6; run++) {
    const a = sample(run, 0, 1).subarray(3);
    const b = sample(run, 1, 1).subarray(3);
    // b first for even runs: a pair waits for its other half whichever comes first
    if (run % 2 === 0) {
      assert.equal(state.add(run, 1, 1, 3, b), true);
      assert.equal(state.waiting, 1, 'b waits for its a');
    }
    assert.equal(state.add(run, 0, 1, 3, a), true);
    if (run % 2 === 1) assert.equal(state.add(run, 1, 1, 3, b), true);
    assert.equal(state.add(run, 0, 1, 3, a), false, 'the same timestep again is not counted');
    oracle.add(a);
    covariance.add(a, b);
  }
  assert.deepEqual(state.moments[0][1].mean, oracle.mean);
  assert.deepEqual(state.moments[0][1].m4, oracle.m4);
  assert.deepEqual(state.covariances[0].perTimestep[1].covariance(), covariance.covariance());
  assert.equal(state.moments[0][0].count, 0);
  assert.equal(state.counted, 12);
  assert.equal(state.repeated, 6);
  assert.equal(state.waiting, 0);
  assert.equal(state.complete(0), false);
  for (const [field, timestep] of [[0, 0], [0, 2], [1, 0], [1, 2]]) state.add(0, field, timestep, 3, sample(0, field, timestep).subarray(3));
  assert.equal(state.complete(0), true);
  // what cannot be, named
  assert.throws(() => state.add(6, 0, 0, 3, new Float64Array(4)), /study server rank 1: run 6 is not in the study \(it has 6 runs\)/);
  assert.throws(() => state.add(1, 0, 3, 3, new Float64Array(4)), /run 1 sent timestep 3 of field "a", which has 3 \(0\.\.2\)/);
  assert.throws(() => state.add(1, 0, 0, 0, new Float64Array(4)), /run 1 sent cells 0\.\.4 of field "a" to the rank that keeps 3\.\.7/);
  assert.throws(() => state.add(1, 2, 0, 3, new Float64Array(4)), /run 1 sent field #2; the study declares 2/);
});

test('a pick-freeze rank waits for a group\'s last run, whatever the order, then feeds its Sobol indices and its A and B runs\' moments', () => {
  const spec: StateSpec = { fields, runs: 4 * 5, groupSize: 4, inputs: 2, pickFreeze: true, moments: {}, covariance: [] };
  const state = new StudyState(spec, 0, 1);
  // the oracles, fed each group as it completes, per field and timestep
  const sobol = fields.map(() => [0, 1, 2].map(() => new Sobol(2, 7)));
  const moments = fields.map(() => [0, 1, 2].map(() => new Moments(7)));
  const arrivals: [number, number, number][] = [];
  for (let run = 0; run < 20; run++) for (let field = 0; field < 2; field++) for (let t = 0; t < 3; t++) arrivals.push([run, field, t]);
  const random = new Random(3);
  arrivals.sort(() => random.next() - 0.5); // the groups' members, fields and timesteps interleaved
  const seen = new Map<string, number>();
  for (const [run, field, t] of arrivals) {
    state.add(run, field, t, 0, sample(run, field, t));
    const group = Math.floor(run / 4);
    const key = `${group} ${field} ${t}`;
    seen.set(key, (seen.get(key) ?? 0) + 1);
    if (seen.get(key) === 4) {
      const member = (m: number) => sample(group * 4 + m, field, t);
      sobol[field][t].add(member(0), member(1), [member(2), member(3)]);
      moments[field][t].add(member(0));
      moments[field][t].add(member(1));
    }
  }
  assert.equal(state.waiting, 0);
  for (let field = 0; field < 2; field++) {
    for (let t = 0; t < 3; t++) {
      assert.deepEqual(state.sobol![field][t].indices(), sobol[field][t].indices(), `field ${field}, timestep ${t}`);
      assert.deepEqual(state.moments[field][t].mean, moments[field][t].mean);
      assert.equal(state.moments[field][t].count, 10);
    }
  }
  // one group's members in turn: it waits until its fourth
  const single = new StudyState({ ...spec, fields: [fields[0]] }, 0, 1);
  [2, 0, 3, 1].forEach((member, k) => {
    single.add(member, 0, 0, 0, sample(member, 0, 0));
    assert.equal(single.waiting, k < 3 ? 1 : 0);
  });
});

test('covariance pairs wait per run and timestep: halves of many pairs in flight at once', () => {
  const spec: StateSpec = { fields, runs: 6, groupSize: 1, inputs: 2, pickFreeze: false, moments: {}, covariance: [['a', 'b']] };
  const state = new StudyState(spec, 0, 1);
  const covariance = [0, 1, 2].map(() => new Covariance(7));
  // every b first (18 halves waiting), then every a, runs and timesteps in reverse
  for (let run = 0; run < 6; run++) for (let t = 0; t < 3; t++) state.add(run, 1, t, 0, sample(run, 1, t));
  assert.equal(state.waiting, 18);
  for (let run = 5; run >= 0; run--) {
    for (let t = 2; t >= 0; t--) {
      state.add(run, 0, t, 0, sample(run, 0, t));
      covariance[t].add(sample(run, 0, t), sample(run, 1, t));
    }
  }
  assert.equal(state.waiting, 0);
  for (let t = 0; t < 3; t++) assert.deepEqual(state.covariances[0].perTimestep[t].covariance(), covariance[t].covariance());
});

test('a checkpoint taken mid-stream (groups and pairs still waiting) restores a state that ends bit-identical to one never stopped', () => {
  const spec: StateSpec = { fields, runs: 4 * 6, groupSize: 4, inputs: 2, pickFreeze: true, moments: { higher: true, thresholds: [0.5], quantiles: [0.9] }, covariance: [['a', 'b']] };
  const order: [number, number, number][] = [];
  const random = new Random(5);
  for (let run = 0; run < 24; run++) for (let field = 0; field < 2; field++) for (let t = 0; t < 3; t++) order.push([run, field, t]);
  order.sort(() => random.next() - 0.5);
  const whole = new StudyState(spec, 0, 1);
  const first = new StudyState(spec, 0, 1);
  const half = Math.floor(0.75 * order.length);
  order.forEach(([run, field, t], k) => {
    whole.add(run, field, t, 0, sample(run, field, t));
    if (k < half) first.add(run, field, t, 0, sample(run, field, t));
  });
  assert.ok(first.waiting > 0, 'the checkpoint holds samples waiting for their group or pair');
  assert.ok(first.covariances[0].perTimestep.some((c) => c.count > 0) && first.sobol!.some((perTimestep) => perTimestep.some((s) => s.count > 0)), 'and finished groups and pairs');
  const resumed = new StudyState(spec, 0, 1);
  resumed.restore(deserialize(serialize(first.snapshot())));
  // the restarted rank hears every run again (the runs start over): the first half is recognised
  order.forEach(([run, field, t]) => resumed.add(run, field, t, 0, sample(run, field, t)));
  assert.equal(resumed.repeated, half);
  assert.equal(resumed.counted, whole.counted);
  // every estimate, to the bit (deepEqual compares floats with Object.is)
  for (let f = 0; f < 2; f++) {
    for (let t = 0; t < 3; t++) {
      const [m, w] = [resumed.moments[f][t], whole.moments[f][t]];
      for (const key of ['count', 'mean', 'm2', 'm3', 'm4', 'min', 'max', 'above', 'quantile'] as const) assert.deepEqual(m[key], w[key], `${key} of field ${f} at ${t}`);
      assert.deepEqual(resumed.sobol![f][t].indices(), whole.sobol![f][t].indices());
    }
  }
  resumed.covariances[0].perTimestep.forEach((c, t) => assert.deepEqual(c.covariance(), whole.covariances[0].perTimestep[t].covariance()));
  // a Monte-Carlo rank's checkpoint (no Sobol indices) comes back as well
  const mc: StateSpec = { ...spec, runs: 5, groupSize: 1, pickFreeze: false };
  const before = new StudyState(mc, 0, 1);
  before.add(0, 0, 0, 0, sample(0, 0, 0));
  const after = new StudyState(mc, 0, 1);
  after.restore(deserialize(serialize(before.snapshot())));
  assert.deepEqual(after.moments[0][0].mean, before.moments[0][0].mean);
  assert.equal(after.waiting, 1);
  assert.throws(() => new StudyState(mc, 0, 1).restore(first.snapshot()), /the checkpoint does not fit this study \(runs\)/);
  assert.throws(() => new StudyState({ ...spec, pickFreeze: false, groupSize: 1 }, 0, 1).restore(first.snapshot()), /the checkpoint does not fit this study \(design\)/);
  assert.throws(() => new StudyState({ ...spec, fields: [fields[0], { ...fields[1], timesteps: 2 }], covariance: [] }, 0, 1).restore(first.snapshot()), /the checkpoint does not fit this study \(fields and timesteps\)/);
  // a covariance needs two fields of one shape
  assert.throws(() => new StudyState({ ...spec, fields: [fields[0], { ...fields[1], cells: 6 }] }, 0, 1), /study: covariance of "a" and "b": the two fields must have the same cells and timesteps/);
  // a checkpoint of another study is refused
  const other = new StudyState({ ...spec, runs: 8 }, 0, 1);
  assert.throws(() => other.restore(first.snapshot()), /study server rank 0: the checkpoint does not fit this study \(runs\); start the study afresh/);
});

test('a timestep in pieces (a parallel simulation\'s processes, any order, one piece sent twice, a checkpoint between) counts once whole, as if sent at once', () => {
  const spec: StateSpec = { fields, runs: 3, groupSize: 1, inputs: 2, pickFreeze: false, moments: { higher: true }, covariance: [] };
  const whole = new StudyState(spec, 1, 2); // cells 3..7
  const pieces = new StudyState(spec, 1, 2);
  for (let run = 0; run < 3; run++) {
    const values = sample(run, 0, 2).subarray(3);
    assert.equal(whole.add(run, 0, 2, 3, values), true);
    // cells 5..7 (twice), then 3..4, then the missing 4..5 inside a piece 4..6 that overlaps what came
    // (run 1: the first piece starts where the rank's cells do, and is not all of them)
    if (run === 1) assert.equal(pieces.add(run, 0, 2, 3, values.subarray(0, 1)), true);
    assert.equal(pieces.add(run, 0, 2, 5, values.subarray(2)), true);
    assert.equal(pieces.add(run, 0, 2, 5, values.subarray(2)), true); // again, as a restarted process sends it
    assert.equal(pieces.add(run, 0, 2, 3, values.subarray(0, 1)), true);
    assert.equal(pieces.received[run], 0, 'not counted before its last cell');
    assert.equal(pieces.waiting, 1);
    if (run === 1) {
      const restored = new StudyState(spec, 1, 2);
      restored.restore(deserialize(serialize(pieces.snapshot())));
      assert.equal(restored.waiting, 1, 'the checkpoint holds the pieces that came');
      assert.equal(restored.add(run, 0, 2, 4, values.subarray(1, 3)), true);
      assert.deepEqual(restored.moments[0][2].count, 1 + 1);
    }
    assert.equal(pieces.add(run, 0, 2, 4, values.subarray(1, 3)), true);
    assert.equal(pieces.received[run], 1);
    assert.equal(pieces.add(run, 0, 2, 4, values.subarray(1, 2)), false, 'a piece of a counted timestep is a repeat');
  }
  assert.equal(pieces.waiting, 0);
  for (const key of ['count', 'mean', 'm2', 'm3', 'm4', 'min', 'max'] as const) assert.deepEqual(pieces.moments[0][2][key], whole.moments[0][2][key], key);
  assert.throws(() => pieces.add(0, 0, 1, 2, new Float64Array(2)), /run 0 sent cells 2\.\.4 of field "a" to the rank that keeps 3\.\.7/);
  assert.throws(() => pieces.add(0, 0, 1, 6, new Float64Array(2)), /run 0 sent cells 6\.\.8 of field "a" to the rank that keeps 3\.\.7/);
});
