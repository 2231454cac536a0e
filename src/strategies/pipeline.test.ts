// Pipeline schedules and the stage partitioner, against closed forms and brute force: the bubble
// of equal stages is (S − 1)/(m + S − 1), 1F1B stores min(m, S − s) micro-batches on stage s and
// GPipe m, no program deadlocks even when every send waits for its receive, and the balanced cut
// is the best of every possible cut.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../tensor/random.js';
import { createModel } from '../models/index.js';
import { layerChainOf } from '../models/stage.js';
import { activationMessageFloats, checkPipeline, cutsFor, layerCosts, stageCosts } from './pipeline.js';
import { balancedCuts, checkCuts, stageRange } from './pipeline-partition.js';
import { EVAL_BATCH } from './strategy.js';
import { peakStored, pipelinePrograms, simulate, stageProgram, type PipelineAction } from './pipeline-schedule.js';

const schedules = ['gpipe', '1f1b'] as const;

test('pipeline schedules: with equal stages the bubble is exactly (S − 1)/(m + S − 1), for GPipe and 1F1B, S ≤ 6, m ≤ 12', () => {
  for (const schedule of schedules) {
    for (let stages = 1; stages <= 6; stages++) {
      for (let micro = 1; micro <= 12; micro++) {
        // backward twice the forward, as for dense layers; the formula holds for any equal split
        const costs = Array.from({ length: stages }, () => ({ forward: 1, backward: 2 }));
        const result = simulate(pipelinePrograms(schedule, stages, micro), costs);
        const expected = (stages - 1) / (micro + stages - 1);
        assert.ok(Math.abs(result.bubble - expected) < 1e-12, `${schedule} S=${stages} m=${micro}: bubble ${result.bubble}, expected ${expected}`);
        assert.equal(result.makespan, 3 * (micro + stages - 1), `${schedule} S=${stages} m=${micro}: makespan`);
      }
    }
  }
});

test('pipeline schedules: 1F1B stores at most min(m, S − s) micro-batches on stage s, GPipe m; every program runs each forward and backward once, backwards in micro-batch order', () => {
  for (const schedule of schedules) {
    for (let stages = 1; stages <= 8; stages++) {
      for (let micro = 1; micro <= 16; micro++) {
        for (let s = 0; s < stages; s++) {
          const program = stageProgram(schedule, s, stages, micro);
          assert.equal(peakStored(program), schedule === 'gpipe' ? micro : Math.min(micro, stages - s), `${schedule} S=${stages} m=${micro} stage ${s}`);
          const forwards = program.filter((a) => a.kind === 'forward').map((a) => a.micro);
          const backwards = program.filter((a) => a.kind === 'backward').map((a) => a.micro);
          const inOrder = Array.from({ length: micro }, (_, i) => i);
          assert.deepEqual(forwards, inOrder);
          assert.deepEqual(backwards, inOrder, 'backwards in micro-batch order: the gradient sums add as serial accumulation does');
          for (let i = 0; i < micro; i++) {
            const at = (kind: PipelineAction['kind']) => {
              const index = program.findIndex((a) => a.kind === kind && a.micro === i);
              assert.ok(index >= 0, `${schedule} S=${stages} m=${micro} stage ${s}: no ${kind} of micro-batch ${i}`);
              return index;
            };
            assert.ok(at('forward') < at('backward'));
            if (s > 0) assert.ok(at('recvActivation') < at('forward') && at('backward') < at('sendGradient'));
            if (s < stages - 1) assert.ok(at('forward') < at('sendActivation') && at('recvGradient') < at('backward'));
          }
        }
      }
    }
  }
});

test('pipeline schedules: no configuration deadlocks when every send waits for its receive (S ≤ 8, m ≤ 16, unequal stages); the order a textbook 1F1B sends in would', () => {
  const random = new Random(3);
  for (const schedule of schedules) {
    for (let stages = 1; stages <= 8; stages++) {
      for (let micro = 1; micro <= 16; micro++) {
        const costs = Array.from({ length: stages }, () => ({ forward: 0.5 + random.next(), backward: 1 + 2 * random.next() }));
        const result = simulate(pipelinePrograms(schedule, stages, micro), costs, 0.1);
        assert.ok(result.bubble >= 0 && result.bubble < 1);
      }
    }
  }
  // the steady phase written as "forward, send its activations, then wait for a gradient" meets the next stage sending that gradient: a deadlock the simulator must see
  const textbook = pipelinePrograms('1f1b', 3, 4).map((program) => {
    const out = [...program];
    for (let j = 0; j + 1 < out.length; j++) {
      if (out[j].kind === 'recvGradient' && out[j + 1].kind === 'sendActivation') [out[j], out[j + 1]] = [out[j + 1], out[j]];
    }
    return out;
  });
  assert.throws(() => simulate(textbook, Array.from({ length: 3 }, () => ({ forward: 1, backward: 2 }))), /pipeline schedule deadlocks: stage 0 at sendActivation 2, stage 1 at sendActivation 1, stage 2 at sendGradient 0$/);
  // two activations received in the wrong order meet their sends as a mismatch, named
  const swapped = pipelinePrograms('gpipe', 2, 2);
  const receives = swapped[1].filter((a) => a.kind === 'recvActivation');
  [receives[0].micro, receives[1].micro] = [1, 0];
  assert.throws(() => simulate(swapped, [{ forward: 1, backward: 2 }, { forward: 1, backward: 2 }]), /stage 1 recvActivation of micro-batch 1 meets stage 0 sendActivation of micro-batch 0/);
});

test('pipeline schedules: each hop costs the link time — one micro-batch through 2 equal stages takes F + L + F + B + L + B', () => {
  for (const schedule of schedules) {
    const result = simulate(pipelinePrograms(schedule, 2, 1), [{ forward: 1, backward: 2 }, { forward: 1, backward: 2 }], 0.25);
    assert.equal(result.makespan, 6.5);
    assert.deepEqual(result.busy, [3, 3]);
  }
});

test('pipeline partition: the balanced cut minimises the slowest stage (brute force over every cut), leaves no stage empty, and --stage-cuts is checked', () => {
  const random = new Random(11);
  for (let trial = 0; trial < 300; trial++) {
    const layers = 1 + random.below(9);
    const stages = 1 + random.below(Math.min(layers, 5));
    const costs = Array.from({ length: layers }, () => (random.below(4) === 0 ? 0 : random.next() * 10));
    const cuts = balancedCuts(costs, stages);
    assert.equal(cuts.length, stages - 1);
    // each stage from one cut to the next (written out here, not stageRange's)
    const worst = (c: number[]) => Math.max(...[0, ...c].map((start, s) => {
      const end = s < c.length ? c[s] : layers;
      assert.ok(end > start, `stage ${s} of ${c} is empty`);
      return costs.slice(start, end).reduce((x, y) => x + y, 0);
    }));
    let best = Infinity;
    const choose = (from: number, chosen: number[]) => {
      if (chosen.length === stages - 1) {
        best = Math.min(best, worst(chosen));
        return;
      }
      for (let c = from; c < layers; c++) choose(c + 1, [...chosen, c]);
    };
    choose(1, []);
    assert.ok(Math.abs(worst(cuts) - best) < 1e-9, `costs ${costs}: cut ${cuts} gives ${worst(cuts)}, the best is ${best}`);
  }
  for (const stages of [3, 0, 1.5]) assert.throws(() => balancedCuts([1, 2], stages), new RegExp(`--stages: got ${stages}; expected 1 to 2 \\(the model has 2 layers`));
  assert.deepEqual(checkCuts([2, 4], 5, 3), [2, 4]);
  for (const bad of [[2], [4, 2], [0, 3], [2, 5]]) assert.throws(() => checkCuts(bad, 5, 3), /^ConvergeError: --stage-cuts: got "[\d,]+"; expected 2 increasing layer indices between 1 and 4, where stages 2..3 begin \(the model has 5 layers\)/);
  assert.throws(() => checkCuts([5], 5, 2), /expected 1 increasing layer indices between 1 and 4, where stage 2 begins \(the model has 5 layers\)/);
  assert.deepEqual([0, 1, 2].map((s) => stageRange([2, 4], 6, s)), [[0, 2], [2, 4], [4, 6]]);
});

test('pipeline stages\' costs: a stage costs the sums of its layers\' forward and backward times, the measured cut balances forward + backward, and checkPipeline refuses a model too short or a cut that does not fit before any rank starts', () => {
  const random = new Random(5);
  for (let trial = 0; trial < 100; trial++) {
    const layers = 2 + random.below(7);
    const stages = 1 + random.below(Math.min(layers, 4));
    const costs = Array.from({ length: layers }, () => ({ forward: random.next(), backward: 3 * random.next() }));
    const cuts = balancedCuts(costs.map(() => random.next()), stages);
    const summed = stageCosts(costs, cuts);
    assert.equal(summed.length, stages);
    // each layer once, in the stage whose range holds it (written out here)
    const bounds = [0, ...cuts, layers];
    for (let s = 0; s < stages; s++) {
      let forward = 0;
      let backward = 0;
      for (let i = bounds[s]; i < bounds[s + 1]; i++) {
        forward += costs[i].forward;
        backward += costs[i].backward;
      }
      assert.ok(Math.abs(summed[s].forward - forward) < 1e-12 && Math.abs(summed[s].backward - backward) < 1e-12, `stage ${s} of ${cuts}: ${JSON.stringify(summed[s])}`);
    }
    // the measured cut is the balanced cut of each layer's whole time
    assert.deepEqual(cutsFor(costs, stages), balancedCuts(costs.map((c) => c.forward + c.backward), stages));
  }
  // forward and backward both count: the backward-heavy last layer gets a stage of its own
  assert.deepEqual(cutsFor([{ forward: 3, backward: 0 }, { forward: 3, backward: 0 }, { forward: 0, backward: 6 }], 2), [2]);
  assert.deepEqual(cutsFor([{ forward: 0, backward: 6 }, { forward: 3, backward: 0 }, { forward: 3, backward: 0 }], 2), [1]);

  // a chain of 7 layers (4 linear, 3 ReLU): 16 inputs, hidden 5, 6, 4, 3 classes
  const mlp = createModel('mlp', { inputShape: [1, 4, 4], classes: 3, hidden: [5, 6, 4], maxBatch: 8 });
  checkPipeline(mlp, 7, undefined);
  checkPipeline(mlp, 3, [2, 5]);
  assert.throws(() => checkPipeline(mlp, 8, undefined), /--stages: got 8; expected 1 to 7 \(the model has 7 layers/);
  assert.throws(() => checkPipeline(mlp, 3, [2, 7]), /--stage-cuts: got "2,7"; expected 2 increasing layer indices between 1 and 6/);
  assert.throws(() => checkPipeline(mlp, 3, [2]), /--stage-cuts: got "2"/);
  // the largest message between stages: the widest of the input and the layers' outputs, for a batch or an evaluation batch, whichever is larger
  assert.equal(activationMessageFloats(mlp, 8), 16 * EVAL_BATCH);
  assert.equal(activationMessageFloats(mlp, EVAL_BATCH + 7), 16 * (EVAL_BATCH + 7));
  const wide = createModel('mlp', { inputShape: [1, 2, 2], classes: 3, hidden: [40, 6], maxBatch: 8 });
  assert.equal(activationMessageFloats(wide, EVAL_BATCH * 2), 40 * EVAL_BATCH * 2);

  // the costs measured: one per layer, each a time (finite, not negative), the parameters left as they were
  const params = new Float32Array(mlp.layout.size);
  mlp.init(params, new Random(3));
  const before = Float32Array.from(params);
  const measured = layerCosts(layerChainOf(mlp), params, 4);
  assert.equal(measured.length, 7);
  for (const cost of measured) assert.ok(Number.isFinite(cost.forward) && cost.forward >= 0 && Number.isFinite(cost.backward) && cost.backward >= 0 && cost.forward < 1 && cost.backward < 1, JSON.stringify(cost));
  assert.deepEqual(params, before);
});
