// A study's design: its uncertain inputs with their distributions, and the runs to make of
// them — independent Monte-Carlo draws, or pick-freeze groups of p + 2 runs for Sobol indices
// (A, B, and C_k = A with input k taken from B). Deterministic from a seed: run r's inputs are
// the same whenever, and wherever, they are asked for (a restarted run gets its own again).

import { Random, mixSeed } from '../tensor/random.js';

export type Distribution =
  | { kind: 'uniform'; low: number; high: number }
  | { kind: 'normal'; mean: number; sd: number };

export interface Parameter {
  name: string;
  distribution: Distribution;
}

export type DesignKind = 'monte-carlo' | 'pick-freeze';

/** Where a run sits in a pick-freeze design: its group, and its role (A, B, or C_k). */
export interface Role {
  group: number;
  /** 0: A, 1: B, 2 + k: C_k. */
  member: number;
}

export function draw(distribution: Distribution, random: Random): number {
  switch (distribution.kind) {
    case 'uniform':
      return distribution.low + (distribution.high - distribution.low) * random.next();
    case 'normal':
      return distribution.mean + distribution.sd * random.normal();
  }
}

export class Design {
  constructor(readonly parameters: readonly Parameter[], readonly kind: DesignKind, readonly seed: number) {
    if (parameters.length === 0) throw new RangeError('a study needs at least one uncertain parameter');
  }

  /** Runs per group: 1 for Monte-Carlo, p + 2 for pick-freeze. */
  get groupSize(): number {
    return this.kind === 'pick-freeze' ? this.parameters.length + 2 : 1;
  }

  role(run: number): Role {
    return { group: Math.floor(run / this.groupSize), member: run % this.groupSize };
  }

  /** One independent draw of every input, the `which`-th of a group (0: A, 1: B). */
  private point(group: number, which: number): number[] {
    const random = new Random(mixSeed(this.seed, group, which));
    return this.parameters.map((p) => draw(p.distribution, random));
  }

  /** The inputs of run `run`. */
  inputs(run: number): number[] {
    const { group, member } = this.role(run);
    if (this.kind === 'monte-carlo') return this.point(group, 0);
    if (member < 2) return this.point(group, member);
    const k = member - 2;
    const a = this.point(group, 0);
    a[k] = this.point(group, 1)[k];
    return a;
  }
}
