import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capacityFor, conformanceCases, failureDescription, mismatchCases, namesBothSides } from './conformance.js';
import { abortGroup, abortMessage, createShmHandle, rankActivity, ShmCommunicator } from './shm.js';
import { runThreadGroup as runGroup } from '../launch/thread-group.js';

const script = new URL('./conformance.worker.js', import.meta.url);

function run(size: number, name: string, failure: boolean, timeoutMs = 20_000) {
  const capacity = capacityFor(name);
  // mailboxes: the cases that send large messages point to point (a group's ring runs over them) get room for them
  const handle = createShmHandle(size, capacity, timeoutMs, capacity, name === 'largeMessages' || name === 'subgroups' ? capacity + 1 : 2000);
  const reports: string[] = new Array(size);
  const promise = runGroup(handle, script, { data: () => ({ name, failure }), onEvent: (rank, value) => (reports[rank] = value as string) });
  return { promise, reports };
}

for (const size of [1, 2, 3, 4]) {
  for (const name of Object.keys(conformanceCases)) {
    test(`shm conformance, ${size} rank${size > 1 ? 's' : ''}: ${name}`, async () => {
      await run(size, name, false).promise;
    });
  }
}

// a rank's failure must end the whole group quickly, with messages naming rank 1
const failures: Record<string, { root: RegExp; survivor: RegExp }> = {
  throws: { root: /^rank 1 failed during computing after operation #1: boom$/, survivor: /^rank [02]: allreduce #2 aborted: rank 1 failed during computing after operation #1: boom$/ },
  dies: { root: /^rank 1 exited with code 7 during computing after operation #1 without finishing$/, survivor: /^rank [02]: allreduce #2 aborted: rank 1 exited with code 7/ },
  stalls: { root: /^rank [02]: allreduce #2 timed out after 0\.5 s waiting for rank 1 \(computing after operation #1\); a rank is stalled/, survivor: /^rank [02]: allreduce #2 (timed out after 0\.5 s waiting for rank 1|aborted: rank [02]: allreduce #2 timed out)/ },
  allocatedVersusPrivate: { root: /collective #2 mismatch: rank \d called allreduce of 8 floats \(sum(, allocate\(\)d buffer at 0)?\) but rank \d called allreduce of 8 floats \(sum(, allocate\(\)d buffer at 0)?\)/, survivor: /mismatch/ },
  messageSizeMismatch: { root: /^rank 0: recv of 8 floats got a message of 5 floats from rank 1; sender and receiver must agree on message sizes\.$/, survivor: /^rank 2: barrier #2 aborted: rank 0: recv of 8 floats got a message of 5 floats/ },
  sendBlocked: {
    root: /^rank (([02]): barrier #2 timed out after 0\.5 s waiting for rank 1 \(send \(after operation #1\)\)|1: send to rank 0 timed out after 0\.5 s waiting for rank 0 to take the previous message \(barrier #2\));/,
    // (a survivor whose peer at the barrier timed out first hears of that)
    survivor: /^rank [02]: barrier #2 (timed out after 0\.5 s waiting for rank 1 \(send \(after operation #1\)\)|aborted: rank 1: send to rank 0 timed out|aborted: rank [02]: barrier #2 timed out after 0\.5 s waiting for rank 1 \(send \(after operation #1\)\))/,
  },
  mismatch: { root: /collective #2 mismatch: rank \d called (allreduce of 8 floats \(sum\)|broadcast of 8 floats \(root 0\)) but rank \d called (allreduce|broadcast) of 8 floats/, survivor: /mismatch|aborted: rank \d: collective #2 mismatch/ },
};

for (const [name, expected] of Object.entries(failures)) {
  test(`shm failure handling: a rank that ${failureDescription(name)} fails every rank fast`, async () => {
    const started = Date.now();
    const { promise, reports } = run(3, name, true, 500);
    await assert.rejects(promise, (error: Error) => {
      assert.match(error.message, expected.root);
      return true;
    });
    for (const rank of name === 'messageSizeMismatch' ? [2] : [0, 2]) assert.match(reports[rank] ?? `rank ${rank} reported nothing`, expected.survivor);
    assert.ok(Date.now() - started < 10_000, 'the group ended within 10 s');
  });
}

// a collective that differs from the others' in one field alone: the group fails, and every rank that names the mismatch names both sides
for (const name of Object.keys(mismatchCases).map((field) => `${field}Mismatch`)) {
  test(`shm failure handling: a rank that ${failureDescription(name)} fails every rank fast, the mismatch named`, async () => {
    const { promise, reports } = run(3, name, true, 500);
    await assert.rejects(promise, (error: Error) => {
      assert.ok(namesBothSides(name, error.message), error.message);
      return true;
    });
    for (const rank of [0, 1, 2]) assert.ok(/aborted/.test(reports[rank] ?? '') || namesBothSides(name, reports[rank] ?? ''), `rank ${rank}: ${reports[rank]}`);
  });
}

test('shm refuses an operation larger than the group capacity, and takes one exactly as large', async () => {
  const { promise } = run(1, 'allreduceSum', false);
  await promise;
  const comm = new ShmCommunicator(createShmHandle(1, 10, 1000), 0);
  await comm.allreduce(new Float32Array(10));
  await assert.rejects(comm.allreduce(new Float32Array(11)), /^CommunicationError: shm allreduce of 11 elements exceeds the communicator's capacity of 10; create the group with a larger capacity\.$/);
  assert.equal(comm.allocate(6).length, 6);
  assert.equal(comm.allocate(4).length, 4, 'the region holds exactly its capacity');
  assert.throws(() => comm.allocate(1), /^CommunicationError: shm allocate of 11 elements exceeds the communicator's capacity of 10/);
});

test('shm refuses point-to-point calls it cannot make, and receive buffers of the wrong size, with what to do', async () => {
  const plain = new ShmCommunicator(createShmHandle(2, 16, 1000), 0);
  await assert.rejects(plain.send(new Float32Array(2), 1), (e: Error & { code?: string }) => e.code === 'NO_MAILBOXES' && e.message === "rank 0: send needs a group made with point-to-point mailboxes (createShmHandle's mailCapacity).");
  await assert.rejects(plain.recv(new Float32Array(2)), (e: Error & { code?: string }) => e.code === 'NO_MAILBOXES' && /^rank 0: recv needs/.test(e.message));
  const comm = new ShmCommunicator(createShmHandle(2, 16, 1000, 16, 8), 0);
  for (const peer of [0, 2, -1, 1.5]) {
    await assert.rejects(comm.send(new Float32Array(2), peer), (e: Error & { code?: string }) => e.code === 'BAD_ARGUMENT' && e.message === `rank 0: send to ${peer}: no such peer in a group of 2 (ranks 0 to 1, not 0 itself).`, `send to ${peer}`);
  }
  await assert.rejects(comm.recv(new Float32Array(2), 0), /^CommunicationError: rank 0: recv from 0: no such peer in a group of 2 \(ranks 0 to 1, not 0 itself\)\.$/);
  // a mailbox of 8 floats holds messages of up to 7
  await assert.rejects(comm.send(new Float32Array(8), 1), /^CommunicationError: shm send of 8 elements exceeds the communicator's capacity of 7/);
  await assert.rejects(comm.recv(new Float32Array(8), 1), /shm recv of 8 elements exceeds the communicator's capacity of 7/);
  await assert.rejects(comm.recv(new Float32Array(8)), /shm recv of 8 elements exceeds the communicator's capacity of 7/, 'from any rank too');
  await assert.rejects(comm.allgather(new Float32Array(3), new Float32Array(5)), (e: Error & { code?: string }) => e.code === 'BAD_ARGUMENT' && e.message === 'rank 0: allgather needs recv of 6 floats (size × send), got 5.');
  await assert.rejects(comm.gather(new Float32Array(3), null, 0), /^CommunicationError: rank 0: gather at the root needs recv of 6 floats \(size × send\), got none\.$/);
  await assert.rejects(comm.gather(new Float32Array(3), new Float32Array(7), 0), /gather at the root needs recv of 6 floats \(size × send\), got 7\./);
});

test('a failed group: the first failure\'s message is kept; the failed rank meets its own reason, the others "aborted" with it, at their next operation', async () => {
  const handle = createShmHandle(2, 16, 1000);
  assert.equal(abortMessage(handle), null, 'a healthy group has no failure');
  assert.equal(rankActivity(handle, 1), 'start-up');
  const zero = new ShmCommunicator(handle, 0);
  const one = new ShmCommunicator(handle, 1);
  one.abort('rank 1 ran out of memory'); // as a launcher aborts a failed rank's group
  abortGroup(handle, 0, 'a later failure');
  assert.equal(abortMessage(handle), 'rank 1 ran out of memory');
  await assert.rejects(one.barrier(), (e: Error & { code?: string }) => e.code === 'ABORTED' && e.message === 'rank 1 ran out of memory');
  await assert.rejects(zero.allreduce(new Float32Array(2)), (e: Error & { code?: string }) => e.code === 'PEER_FAILED' && e.message === 'rank 0: allreduce #1 aborted: rank 1 ran out of memory');
  // a message longer than its room is cut to 2,048 bytes
  const other = createShmHandle(1, 4, 1000);
  abortGroup(other, 0, 'x'.repeat(3000));
  assert.equal(abortMessage(other), 'x'.repeat(2048));
});

test('what a rank is doing, as a stalled peer\'s message names it', async () => {
  const handle = createShmHandle(1, 16, 1000, 16, 4);
  const comm = new ShmCommunicator(handle, 0);
  assert.equal(rankActivity(handle, 0), 'start-up');
  await comm.barrier();
  assert.equal(rankActivity(handle, 0), 'computing after operation #1');
  await comm.allreduce(new Float32Array(3));
  assert.equal(rankActivity(handle, 0), 'computing after operation #2');
});
