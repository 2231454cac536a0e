// Matrix factorisation for rating prediction: r̂(u, i) = μ + b_u + c_i + U_u · V_i, trained on
// ½(r̂ − r)² + ½λ(‖U_u‖² + ‖V_i‖² + b_u² + c_i²) per observed rating — the penalty on the rows
// a rating touches, the usual SGD formulation (Koren, Bell, Volinsky 2009).

import { kernel } from '../kernels/registry.js';
import { Layout } from '../tensor/layout.js';
import type { Random } from '../tensor/random.js';
import type { Evaluation, Model, RatingBatch } from './model.js';

export class MatrixFactorization implements Model<RatingBatch> {
  readonly name = 'mf';
  readonly task = 'regression' as const;
  readonly layout: Layout;
  private readonly zero = kernel('zero');
  private readonly itemBase: number; // offsets into the flat buffer
  private readonly userBiasBase: number;
  private readonly itemBiasBase: number;

  constructor(readonly users: number, readonly items: number, readonly rank: number, readonly l2: number, readonly mean: number, readonly maxBatch: number) {
    this.layout = new Layout([
      { name: 'userFactors', shape: [users, rank] }, // [users, rank]
      { name: 'itemFactors', shape: [items, rank] }, // [items, rank]
      { name: 'userBias', shape: [users] },
      { name: 'itemBias', shape: [items] },
    ]);
    this.itemBase = users * rank;
    this.userBiasBase = (users + items) * rank;
    this.itemBiasBase = this.userBiasBase + users;
  }

  init(params: Float32Array, random: Random): void {
    const factors = (this.users + this.items) * this.rank;
    for (let k = 0; k < factors; k++) params[k] = 0.1 * random.normal();
    params.fill(0, factors);
  }

  private predict(params: Float32Array, user: number, item: number): number {
    const u = user * this.rank;
    const v = this.itemBase + item * this.rank;
    let dot = 0;
    for (let k = 0; k < this.rank; k++) dot += params[u + k] * params[v + k];
    return this.mean + params[this.userBiasBase + user] + params[this.itemBiasBase + item] + dot;
  }

  /** Adds `scale` × the gradient of one rating's loss to `target` (a gradient, or the parameters with scale −lr). */
  private accumulate(params: Float32Array, target: Float32Array, user: number, item: number, error: number, scale: number): void {
    const u = user * this.rank;
    const v = this.itemBase + item * this.rank;
    const λ = this.l2;
    for (let k = 0; k < this.rank; k++) {
      const pu = params[u + k];
      const pv = params[v + k];
      target[u + k] += scale * (error * pv + λ * pu);
      target[v + k] += scale * (error * pu + λ * pv);
    }
    const bu = this.userBiasBase + user;
    const bi = this.itemBiasBase + item;
    target[bu] += scale * (error + λ * params[bu]);
    target[bi] += scale * (error + λ * params[bi]);
  }

  private penalty(params: Float32Array, user: number, item: number): number {
    const u = user * this.rank;
    const v = this.itemBase + item * this.rank;
    let sum = params[this.userBiasBase + user] ** 2 + params[this.itemBiasBase + item] ** 2;
    for (let k = 0; k < this.rank; k++) sum += params[u + k] ** 2 + params[v + k] ** 2;
    return 0.5 * this.l2 * sum;
  }

  lossAndGrad(params: Float32Array, batch: RatingBatch, grad: Float32Array): number {
    this.zero(grad, 0, grad.length);
    const scale = 1 / batch.size;
    let total = 0;
    for (let i = 0; i < batch.size; i++) {
      const user = batch.users[i];
      const item = batch.items[i];
      const error = this.predict(params, user, item) - batch.ratings[i];
      total += 0.5 * error * error + this.penalty(params, user, item);
      this.accumulate(params, grad, user, item, error, scale);
    }
    return total * scale;
  }

  exampleStep(params: Float32Array, batch: RatingBatch, i: number, lr: number): number {
    const user = batch.users[i];
    const item = batch.items[i];
    const error = this.predict(params, user, item) - batch.ratings[i];
    const loss = 0.5 * error * error + this.penalty(params, user, item);
    // both factor rows are read before either is written (accumulate reads pu, pv first)
    this.accumulate(params, params, user, item, error, -lr);
    return loss;
  }

  exampleCoordinates(batch: RatingBatch, i: number, out: Int32Array): number {
    const u = batch.users[i] * this.rank;
    const v = this.itemBase + batch.items[i] * this.rank;
    for (let k = 0; k < this.rank; k++) {
      out[k] = u + k;
      out[this.rank + k] = v + k;
    }
    out[2 * this.rank] = this.userBiasBase + batch.users[i];
    out[2 * this.rank + 1] = this.itemBiasBase + batch.items[i];
    return 2 * this.rank + 2;
  }

  maxExampleCoordinates(): number {
    return 2 * this.rank + 2;
  }

  predictions(params: Float32Array, batch: RatingBatch, out: Float32Array): void {
    for (let i = 0; i < batch.size; i++) out[i] = this.predict(params, batch.users[i], batch.items[i]);
  }

  evaluate(params: Float32Array, batch: RatingBatch): Evaluation {
    let squaredError = 0;
    for (let i = 0; i < batch.size; i++) {
      squaredError += (this.predict(params, batch.users[i], batch.items[i]) - batch.ratings[i]) ** 2;
    }
    return { loss: (0.5 * squaredError) / batch.size, correct: 0, squaredError };
  }
}
