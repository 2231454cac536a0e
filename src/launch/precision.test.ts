// --param-precision inside the strategies: the parameters a run ends with are values the format
// holds, training still learns, the all-gather moves the encoded bytes, and what cannot work is
// refused in one line.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { defaults, type TrainConfig } from '../train/config.js';
import { trainOnThreads } from './threads.js';
import { formatLibsvm, generateRcv1Like } from '../data/sparse.js';
import { INT8_BLOCK } from '../tensor/precision.js';

const images: TrainConfig = { ...defaults, dataset: 'synthetic', model: 'mlp', hidden: [32, 16], epochs: 2, batch: 16, lr: 0.05, seed: 5, workers: 2 };
const dir = mkdtempSync(join(tmpdir(), 'converge-precision-'));
const sparseData = generateRcv1Like({ rows: 3000, testRows: 300, features: 2000, nonZeros: 15, seed: 2 });
writeFileSync(join(dir, 'train.svm'), formatLibsvm(sparseData.train));
writeFileSync(join(dir, 'test.svm'), formatLibsvm(sparseData.test));
const sparse: TrainConfig = { ...defaults, dataset: join(dir, 'train.svm'), testDataset: join(dir, 'test.svm'), model: 'logreg', workers: 2, batch: 10, epochs: 2, lr: 0.5, seed: 3 };

function allBf16(params: Float32Array): boolean {
  return new Uint32Array(params.buffer, params.byteOffset, params.length).every((bits) => (bits & 0xffff) === 0);
}

test('bf16 parameters: every strategy that stores them ends on bf16 values and still learns', async () => {
  const plain = await trainOnThreads({ ...images, strategy: 'allreduce' });
  for (const strategy of ['allreduce', 'ps', 'local-sgd', 'hogwild']) {
    const { params, summary } = await trainOnThreads({ ...images, strategy, paramPrecision: 'bf16', syncEvery: 2 });
    assert.ok(allBf16(params), `${strategy}: a parameter with more than bf16's bits`);
    assert.ok(summary.testAccuracy > plain.summary.testAccuracy - 0.1, `${strategy} bf16: ${summary.testAccuracy} against float32 ${plain.summary.testAccuracy}`);
  }
});

test('int8 parameters: one worker ends on q·scale values, block by block; 2 workers learn with every strategy', async () => {
  const { params } = await trainOnThreads({ ...images, workers: 1, paramPrecision: 'int8' });
  for (let first = 0; first < params.length; first += INT8_BLOCK) {
    const block = params.subarray(first, first + INT8_BLOCK);
    const scale = Math.max(...block.map(Math.abs)) / 127;
    for (const value of block) assert.ok(Math.abs(value / scale - Math.round(value / scale)) < 1e-3, `block at ${first}: ${value} is not a multiple of ${scale}`);
  }
  const plain = await trainOnThreads({ ...images, strategy: 'allreduce' });
  for (const strategy of ['allreduce', 'ps', 'local-sgd', 'hogwild']) {
    const { summary } = await trainOnThreads({ ...images, strategy, paramPrecision: 'int8', syncEvery: 2 });
    assert.ok(summary.testAccuracy > plain.summary.testAccuracy - 0.15, `${strategy} int8: ${summary.testAccuracy} against float32 ${plain.summary.testAccuracy}`);
  }
});

test('low-precision Hogwild! on a sparse model learns as float32 does', async () => {
  const float = await trainOnThreads({ ...sparse, strategy: 'hogwild' });
  // with replicas (changes rounded in at each merge) and without (rounded in at each example)
  for (const mergeEvery of [undefined, 0]) {
    for (const paramPrecision of ['bf16', 'int8'] as const) {
      const { params, summary } = await trainOnThreads({ ...sparse, strategy: 'hogwild', paramPrecision, mergeEvery });
      if (paramPrecision === 'bf16') assert.ok(allBf16(params));
      assert.ok(summary.testAccuracy > float.summary.testAccuracy - 0.05, `${paramPrecision}, --merge-every ${mergeEvery}: ${summary.testAccuracy} against float32 ${float.summary.testAccuracy}`);
    }
  }
});

test('the all-reduce all-gathers encoded parameters: bf16 sends half the bytes of the parameter half of the exchange', async () => {
  const bytes = async (paramPrecision: TrainConfig['paramPrecision'], log: string) => {
    await trainOnThreads({ ...images, epochs: 1, paramPrecision, log: join(dir, log) });
    const lines = readFileSync(join(dir, log), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    return lines[lines.length - 1].bytesPerWorkerPerStep as number;
  };
  const size = 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10;
  // reduce-scatter of the gradient (half of it to the peer), [loss, stop], then the parameters' share
  assert.equal(await bytes('fp32', 'fp32.jsonl'), 4 * size + 8);
  assert.equal(await bytes('bf16', 'bf16.jsonl'), 2 * size + 8 + 4 * Math.ceil((2 * size) / 2 / 4));
});

test('--param-precision is refused for async-ps and when unknown', async () => {
  await assert.rejects(trainOnThreads({ ...images, strategy: 'async-ps', paramPrecision: 'bf16' }), /--param-precision: got "bf16"; expected fp32 with async-ps/);
  await assert.rejects(trainOnThreads({ ...images, paramPrecision: 'fp8' as never }), /unknown param-precision 'fp8'; choose one of: fp32, bf16, int8/);
});

test('a low-precision run stopped and resumed ends bit-identical to an uninterrupted one: the stochastic roundings are keyed by the step, not a stream position', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-precision-resume-'));
  for (const [strategy, paramPrecision, compress] of [['allreduce', 'bf16', undefined], ['allreduce', 'int8', undefined], ['ps', 'bf16', undefined], ['allreduce', 'bf16', 'fp16']] as const) {
    const config: TrainConfig = { ...images, strategy, paramPrecision, compress, optimizer: 'momentum', epochs: 2 };
    const whole = await trainOnThreads(config);
    const checkpoint = join(dir, `${strategy}-${paramPrecision}-${compress}.ckpt`);
    // stopped mid-epoch, so the resumed run starts inside an epoch
    await trainOnThreads({ ...config, save: checkpoint, stopAfterSteps: 11 });
    const resumed = await trainOnThreads({ ...config, resume: checkpoint });
    assert.deepEqual(resumed.params, whole.params, `${strategy} ${paramPrecision}${compress ? ` with ${compress}` : ''}: resumed parameters differ`);
  }
});
