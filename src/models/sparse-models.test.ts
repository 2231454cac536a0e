import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from '../tensor/random.js';
import { generateRcv1Like } from '../data/sparse.js';
import { generateNetflixLike } from '../data/ratings.js';
import { epochOrder, SparseBatchMaker, RatingBatchMaker } from '../data/batches.js';
import { createModel, type AnyBatch, type Model, type SparseBatch } from './index.js';

function finiteDifferences(model: Model, params: Float32Array, batch: AnyBatch, coordinates: number[]): void {
  const grad = model.layout.allocate();
  grad.fill(NaN);
  model.lossAndGrad(params, batch, grad);
  const scratch = model.layout.allocate();
  for (const i of coordinates) {
    const saved = params[i];
    params[i] = saved + 1e-2;
    const up = model.lossAndGrad(params, batch, scratch);
    params[i] = saved - 1e-2;
    const down = model.lossAndGrad(params, batch, scratch);
    params[i] = saved;
    const numeric = (up - down) / 2e-2;
    assert.ok(Math.abs(numeric - grad[i]) <= 2e-3 + 2e-2 * Math.abs(numeric), `${model.name}[${i}]: analytic ${grad[i]}, numeric ${numeric}`);
  }
  assert.ok(grad.every(Number.isFinite), 'every gradient element written');
}

const sparse = generateRcv1Like({ rows: 64, testRows: 8, features: 40, nonZeros: 6, seed: 5 });
const ratings = generateNetflixLike({ users: 30, items: 20, ratingsPerUser: 8, rank: 3, testFraction: 0.1, seed: 5 });

test('logreg and svm gradients match finite differences (weights, bias, L2)', () => {
  for (const name of ['logreg', 'svm']) {
    const model = createModel(name, { features: 40, maxBatch: 16, l2: 0.01 });
    const params = new Random(3).fillUniform(model.layout.allocate(), -0.5, 0.5);
    const batch = new SparseBatchMaker(sparse.train, 16).range(0, 16);
    finiteDifferences(model, params, batch, Array.from({ length: 41 }, (_, i) => i));
  }
});

test('mf gradient matches finite differences', () => {
  const model = createModel('mf', { users: 30, items: 20, factors: 3, mean: ratings.mean, l2: 0.05, maxBatch: 20 });
  const params = model.layout.allocate();
  model.init(params, new Random(4));
  const batch = new RatingBatchMaker(ratings.train, 20).range(0, 20);
  const touched = new Set<number>();
  for (let i = 0; i < batch.size; i++) {
    for (let k = 0; k < 3; k++) {
      touched.add(batch.users[i] * 3 + k);
      touched.add(30 * 3 + batch.items[i] * 3 + k);
    }
    touched.add(50 * 3 + batch.users[i]);
    touched.add(50 * 3 + 30 + batch.items[i]);
  }
  finiteDifferences(model, params, batch, [...touched, 0, 1, model.layout.size - 1]);
});

test('exampleStep is an SGD step on that example alone, touching only its coordinates', () => {
  // without the penalty, the sparse step equals the dense one exactly where it matters
  for (const [model, batch] of [
    [createModel('logreg', { features: 40, maxBatch: 1, l2: 0 }), new SparseBatchMaker(sparse.train, 1).range(3, 1)],
    [createModel('svm', { features: 40, maxBatch: 1, l2: 0 }), new SparseBatchMaker(sparse.train, 1).range(5, 1)],
    [createModel('mf', { users: 30, items: 20, factors: 3, mean: ratings.mean, l2: 0.05, maxBatch: 1 }), new RatingBatchMaker(ratings.train, 1).range(7, 1)],
  ] as [Model, AnyBatch][]) {
    const params = model.layout.allocate();
    model.init(params, new Random(9));
    if (model.name !== 'mf') new Random(9).fillUniform(params, -0.3, 0.3);
    const grad = model.layout.allocate();
    const loss = model.lossAndGrad(params, batch, grad);
    const stepped = params.slice();
    const stepLoss = model.exampleStep!(stepped, batch, 0, 0.1);
    assert.ok(Math.abs(stepLoss - loss) < 1e-5, `${model.name}: loss ${stepLoss} vs ${loss}`);
    for (let i = 0; i < params.length; i++) {
      // logreg and svm: the bias (the last coordinate) steps at a hundredth of the rate, as scikit-learn's does on sparse data
      const rate = model.name !== 'mf' && i === params.length - 1 ? 0.001 : 0.1;
      const expected = params[i] - rate * grad[i];
      assert.ok(Math.abs(stepped[i] - expected) < 1e-6, `${model.name}[${i}]: ${stepped[i]} vs ${expected}`);
      if (grad[i] === 0) assert.equal(stepped[i], params[i], 'untouched coordinates stay bit-identical');
    }
  }
});

test('exampleStep with an L2 penalty: the dense step on the coordinates of the example (penalty once), the rest untouched (lazy)', () => {
  for (const name of ['logreg', 'svm']) {
    const model = createModel(name, { features: 40, maxBatch: 1, l2: 0.05 }) as Model<SparseBatch>;
    const batch = new SparseBatchMaker(sparse.train, 1).range(3, 1);
    const params = model.layout.allocate();
    new Random(9).fillUniform(params, -0.3, 0.3);
    const grad = model.layout.allocate();
    model.lossAndGrad(params, batch, grad); // grad_j = l2·p_j + slope·x_j: the penalty's gradient everywhere
    const stepped = params.slice();
    model.exampleStep!(stepped, batch, 0, 0.1);
    // the example's features, read from the batch itself, and the bias (the last coordinate)
    const touched = new Set([...batch.indices.subarray(batch.rowPtr[0], batch.rowPtr[1]), params.length - 1]);
    for (let i = 0; i < params.length; i++) {
      const expected = touched.has(i) ? params[i] - (i === params.length - 1 ? 0.001 : 0.1) * grad[i] : params[i];
      assert.ok(Math.abs(stepped[i] - expected) < 1e-6, `${name}[${i}]${touched.has(i) ? ' (touched)' : ''}: ${stepped[i]} vs ${expected}`);
    }
  }
});

test('models refuse data of the wrong kind', () => {
  assert.throws(() => createModel('logreg', { maxBatch: 1, inputShape: [1, 2, 2], classes: 2 }), /model logreg: expected sparse \(libsvm\) data/);
  assert.throws(() => createModel('mf', { maxBatch: 1, features: 3 }), /model mf: expected ratings data/);
  assert.throws(() => createModel('mlp', { maxBatch: 1, features: 3 }), /model mlp: expected image data/);
});

test('multinomial logreg (more than two classes) gradient matches finite differences; svm refuses more than two classes', () => {
  const model = createModel('logreg', { features: 40, classes: 4, maxBatch: 16, l2: 0.01 });
  const params = new Random(4).fillUniform(model.layout.allocate(), -0.5, 0.5);
  // the generated labels are 0/1: make four classes of them, by row
  const split = { ...sparse.train, labels: Float32Array.from(sparse.train.labels, (l, i) => (l + 2 * (i % 2)) % 4) };
  const batch = new SparseBatchMaker(split, 16).range(0, 16);
  finiteDifferences(model, params, batch, Array.from({ length: model.layout.size }, (_, i) => i).filter((i) => i % 3 === 0 || i >= 160));
  assert.throws(() => createModel('svm', { features: 40, classes: 3, maxBatch: 1 }), /model svm: expected binary labels \(two classes\), got 3 classes; use --model logreg/);
});


test('exampleSteps over an order is exampleStep on each of those examples in turn, bit for bit (logreg and svm, with L2): the kernel Hogwild! calls a minibatch at a time', () => {
  const whole = new SparseBatchMaker(sparse.train, 64).range(0, 64);
  const order = epochOrder(new Uint32Array(64), 9, 0);
  for (const name of ['logreg', 'svm']) {
    const model = createModel(name, { features: 40, maxBatch: 64, l2: 0.01 }) as Model<SparseBatch>;
    const start = new Random(3).fillUniform(model.layout.allocate(), -0.5, 0.5);
    const one = start.slice();
    let expected = 0;
    for (let e = 5; e < 5 + 40; e++) expected += model.exampleStep!(one, whole, order[e], 0.3);
    const batched = start.slice();
    const loss = model.exampleSteps!(batched, whole, order, 5, 40, 0.3);
    assert.deepEqual(batched, one, name);
    assert.equal(loss, expected, name);
    assert.ok(!one.every((v, i) => v === start[i]), 'the steps moved something');
  }
});
