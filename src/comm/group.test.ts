// Communicator groups' own checks, against a stand-in parent (the collectives themselves run in
// the conformance suite's subgroups case, on every backend): a bad colour, a rank outside its
// group, a peer outside it, buffers too small, a message from outside the group.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Communicator } from './communicator.js';
import { GroupCommunicator, splitCommunicator } from './group.js';

/** Rank `rank` of 4, whose every receive comes from `from`; its all-gather hands out `table` ([colour, key] per rank); its aborts are kept. */
function parent(from = 1, table: number[] = [], rank = 0): Communicator & { aborted: string[] } {
  const fail = () => Promise.reject(new Error('not used'));
  const aborted: string[] = [];
  return {
    backend: 'stand-in', rank, size: 4, bytesSent: 0, allocate: (n) => new Float32Array(n), aborted,
    allreduce: fail, reduceScatter: fail, allgatherShares: fail, gather: fail, broadcast: fail, barrier: fail,
    allgather: async (_send, recv) => recv.set(table),
    send: () => Promise.resolve(), recv: () => Promise.resolve(from), abort: (reason) => aborted.push(reason),
  };
}

test('subgroups: members are ordered by key, then by rank (as MPI_Comm_split orders them)', async () => {
  // ranks 0..3 with colours 7, 3, 7, 7 and keys 5, 0, −2, 5: the group of colour 7 is ranks 2, 0, 3
  const table = [7, 5, 3, 0, 7, -2, 7, 5];
  const groups = await Promise.all([0, 2, 3].map((rank) => splitCommunicator(parent(1, table, rank), 7, table[2 * rank + 1])));
  assert.deepEqual(groups.map((g) => [g.rank, g.size]), [[1, 3], [0, 3], [2, 3]]);
  const alone = await splitCommunicator(parent(1, table, 1), 3, 0);
  assert.deepEqual([alone.rank, alone.size], [0, 1]);
});

test('subgroups: a colour must be an integer ≥ 0, a rank must belong to its group, peers must be in it, buffers large enough, messages from inside it', async () => {
  for (const colour of [-1, 0.5]) await assert.rejects(splitCommunicator(parent(), colour), new RegExp(`rank 0: a group's colour must be an integer ≥ 0, got ${colour}\\.`));
  assert.throws(() => new GroupCommunicator(parent(), [1, 2]), /rank 0 is not a member of the group 1,2/);
  const group = new GroupCommunicator(parent(), [0, 2, 3]);
  assert.deepEqual([group.rank, group.size, group.backend], [0, 3, 'stand-in group']);
  for (const dest of [0, 3, -1, 1.5]) assert.throws(() => group.send(new Float32Array(1), dest), new RegExp(`^CommunicationError: rank 0: send to ${dest}: no such peer in a group of 3 \\(ranks 0 to 2, not 0 itself\\)\\.$`));
  await group.send(new Float32Array(2), 2);
  assert.equal(group.bytesSent, 8);
  await assert.rejects(group.allgather(new Float32Array(2), new Float32Array(5)), /rank 0 of a group of 3: allgather needs a receive buffer of 6 floats, got 5\./);
  await assert.rejects(group.gather(new Float32Array(2), new Float32Array(5), 0), /rank 0 of a group of 3: gather needs a receive buffer of 6 floats at the root\./);
  await assert.rejects(group.gather(new Float32Array(2), null, 0), /gather needs a receive buffer of 6 floats at the root/);
  // parent rank 3 is the group's rank 2; parent rank 1 is outside the group
  assert.equal(await new GroupCommunicator(parent(3), [0, 2, 3]).recv(new Float32Array(1)), 2);
  assert.equal(await new GroupCommunicator(parent(3), [0, 2, 3]).recv(new Float32Array(1), 1), 1);
  await assert.rejects(group.recv(new Float32Array(1)), /rank 0 of a group of 3: a message from outside the group arrived in a receive from any member\./);
  // a group's failure is its whole job's
  const stand = parent();
  new GroupCommunicator(stand, [0, 1]).abort('rank 0 failed: boom');
  assert.deepEqual(stand.aborted, ['rank 0 failed: boom']);
});
