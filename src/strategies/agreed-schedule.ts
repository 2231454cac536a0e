// A --recompute schedule every rank of a group runs alike. Where a chain's passes hold
// collectives (fsdp's gathers, tensor parallelism's sums), two ranks on different schedules would
// no longer pair them up: auto plans on rank 0's measured times, broadcast, so every rank plans
// the same schedule.

import type { Communicator } from '../comm/communicator.js';
import type { Layer } from '../models/layers.js';
import { measureUnits, planUnits, scratchOf, unitsOf, unitSizes, type Unit } from '../models/recompute.js';
import type { Sequential } from '../models/sequential.js';
import type { Layout } from '../tensor/layout.js';
import type { RankSetup } from './strategy.js';

/**
 * The units of `layers` (the rank's own: a tensor-parallel rank's slices) and their schedule, or
 * none without --recompute; rank 0 reports the arena. `params` are the rank's parameters in `layout`.
 */
export async function agreedSchedule(setup: RankSetup, comm: Communicator, model: Sequential, layers: readonly Layer[], layout: Layout, params: Float32Array) {
  if (!setup.recompute) return { units: [] as Unit[], recompute: null };
  const units = unitsOf(layers, model.inputShape, model.maxBatch);
  const times = new Float32Array(2 * units.length);
  if (setup.recompute.spec.kind === 'auto') {
    if (comm.rank === 0) {
      measureUnits(units, scratchOf(layers), model.maxBatch, layout, (fresh) => fresh.set(params), setup.seed).forEach((cost, i) => {
        times[2 * i] = cost.forward;
        times[2 * i + 1] = cost.backward;
      });
    }
    await comm.broadcast(times, 0);
  }
  const planned = planUnits(units, scratchOf(layers), setup.recompute.spec, setup.recompute.budget, model.maxBatch, `model ${model.name} at batch ${model.maxBatch}`,
    () => unitSizes(units, model.maxBatch).map((cost, i) => ({ ...cost, forward: times[2 * i], backward: times[2 * i + 1] })));
  if (comm.rank === 0) setup.reportActivations?.({ ...planned.report, storeAllBytes: model.activations.storeAllBytes });
  return { units, recompute: planned.recompute };
}
