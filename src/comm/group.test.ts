// Communicator groups' own checks, against a stand-in parent (the collectives themselves run in
// the conformance suite's subgroups case, on every backend): a bad colour, a rank outside its
// group, a peer outside it, buffers too small, a message from outside the group.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Communicator } from './communicator.js';
import { GroupCommunicator, splitCommunicator } from './group.js';

/** Rank 0 of 4, whose every receive comes from `from`. */
function parent(from = 1): Communicator {
  const fail = () => Promise.reject(new Error('not used'));
  return {
    backend: 'stand-in', rank: 0, size: 4, bytesSent: 0, allocate: (n) => new Float32Array(n),
    allreduce: fail, reduceScatter: fail, allgatherShares: fail, allgather: fail, gather: fail, broadcast: fail, barrier: fail,
    send: () => Promise.resolve(), recv: () => Promise.resolve(from), abort: () => {},
  };
}

test('subgroups: a colour must be an integer ≥ 0, a rank must belong to its group, peers must be in it, buffers large enough, messages from inside it', async () => {
  for (const colour of [-1, 0.5]) await assert.rejects(splitCommunicator(parent(), colour), new RegExp(`rank 0: a group's colour must be an integer ≥ 0, got ${colour}\\.`));
  assert.throws(() => new GroupCommunicator(parent(), [1, 2]), /rank 0 is not a member of the group 1,2/);
  const group = new GroupCommunicator(parent(), [0, 2, 3]);
  assert.deepEqual([group.rank, group.size, group.backend], [0, 3, 'stand-in group']);
  for (const dest of [0, 3, -1, 1.5]) assert.throws(() => group.send(new Float32Array(1), dest), new RegExp(`rank 0 of a group of 3: send to ${dest}: no such peer in the group\\.`));
  await group.send(new Float32Array(2), 2);
  assert.equal(group.bytesSent, 8);
  await assert.rejects(group.allgather(new Float32Array(2), new Float32Array(5)), /rank 0 of a group of 3: allgather needs a receive buffer of 6 floats, got 5\./);
  await assert.rejects(group.gather(new Float32Array(2), new Float32Array(5), 0), /rank 0 of a group of 3: gather needs a receive buffer of 6 floats at the root\./);
  await assert.rejects(group.gather(new Float32Array(2), null, 0), /gather needs a receive buffer of 6 floats at the root/);
  // parent rank 3 is the group's rank 2; parent rank 1 is outside the group
  assert.equal(await new GroupCommunicator(parent(3), [0, 2, 3]).recv(new Float32Array(1)), 2);
  assert.equal(await new GroupCommunicator(parent(3), [0, 2, 3]).recv(new Float32Array(1), 1), 1);
  await assert.rejects(group.recv(new Float32Array(1)), /rank 0 of a group of 3: a message from outside the group arrived in a receive from any member\./);
});
