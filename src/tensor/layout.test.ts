import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Layout } from './layout.js';

test('layout packs named tensors into one flat buffer in declaration order', () => {
  const layout = new Layout([
    { name: 'w', shape: [3, 2] },
    { name: 'b', shape: [3] },
  ]);
  assert.equal(layout.size, 9);
  const params = layout.allocate(true);
  assert.ok(params.buffer instanceof SharedArrayBuffer);
  const { w, b } = layout.views(params);
  w[5] = 7;
  b[0] = 11;
  assert.equal(params[5], 7);
  assert.equal(params[6], 11);
  assert.equal(layout.views(params), layout.views(params), 'views are cached per buffer');
  assert.equal(layout.allocate(false).buffer instanceof ArrayBuffer, true);
});

test('layout rejects duplicate names, bad shapes and wrong buffer sizes', () => {
  assert.throws(() => new Layout([{ name: 'a', shape: [1] }, { name: 'a', shape: [2] }]), /'a' twice/);
  assert.throws(() => new Layout([{ name: 'a', shape: [0, 2] }]), /positive integer/);
  const layout = new Layout([{ name: 'a', shape: [4] }]);
  assert.throws(() => layout.views(new Float32Array(3)), /4 floats/);
  assert.throws(() => layout.slot('nope'), /'nope'/);
  assert.notEqual(layout.fingerprint(), new Layout([{ name: 'a', shape: [2, 2] }]).fingerprint());
});
