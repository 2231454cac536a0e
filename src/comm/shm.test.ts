import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capacityFor, conformanceCases } from './conformance.js';
import { createShmHandle } from './shm.js';
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
  stalls: { root: /^rank [02]: allreduce #2 timed out after 0\.5 s waiting for rank 1 \(computing after operation #1\)/, survivor: /^rank [02]: allreduce #2 (timed out after 0\.5 s waiting for rank 1|aborted: rank [02]: allreduce #2 timed out)/ },
  allocatedVersusPrivate: { root: /collective #2 mismatch: rank \d called allreduce of 8 floats \(sum(, allocate\(\)d buffer at 0)?\) but rank \d called allreduce of 8 floats \(sum(, allocate\(\)d buffer at 0)?\)/, survivor: /mismatch/ },
  messageSizeMismatch: { root: /^rank 0: recv of 8 floats got a message of 5 floats from rank 1; sender and receiver must agree on message sizes\.$/, survivor: /^rank 2: barrier #2 aborted: rank 0: recv of 8 floats got a message of 5 floats/ },
  mismatch: { root: /collective #2 mismatch: rank \d called (allreduce of 8 floats \(sum\)|broadcast of 8 floats \(root 0\)) but rank \d called (allreduce|broadcast) of 8 floats/, survivor: /mismatch|aborted: rank \d: collective #2 mismatch/ },
};

for (const [name, expected] of Object.entries(failures)) {
  test(`shm failure handling: a rank that ${name === 'mismatch' ? 'calls the wrong collective' : name === 'allocatedVersusPrivate' ? 'passes a private buffer where peers pass shared ones' : name === 'messageSizeMismatch' ? 'sends a message of the wrong size' : name} fails every rank fast`, async () => {
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

test('shm refuses an operation larger than the group capacity', async () => {
  const { promise } = run(1, 'allreduceSum', false);
  await promise;
  const handle = createShmHandle(1, 10, 1000);
  const { ShmCommunicator } = await import('./shm.js');
  await assert.rejects(new ShmCommunicator(handle, 0).allreduce(new Float32Array(11)), /allreduce of 11 elements exceeds the communicator's capacity of 10/);
});
