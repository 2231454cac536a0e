// The tcp backend with every rank a communicator of this one process, over loopback: the
// conformance suite on 1, 2 and 3 ranks in each transport-security mode, and the failures a rank can
// show without leaving the process (it throws, calls the wrong collective, sends a message of the
// wrong size). Seconds, where tcp.test's ranks in their own processes take a minute: this is what
// mutation testing of comm/tcp*.ts reruns for each mutant. tcp.test stays the judge of processes
// that die, stall or never knew the secret.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { capacityFor, failureCases, failureDescription, LARGE_MESSAGE, mismatchCases, namesBothSides, processBackendCases } from './conformance.js';
import { transportSecurities, type TransportSecurity } from './tcp-seal.js';
import { tcpGroup } from './tcp-group.test.fixture.js';
import { rankFailure } from '../errors.js';

for (const size of [1, 2, 3]) for (const security of transportSecurities) {
  test(`tcp in one process, ${size} rank${size > 1 ? 's' : ''}, ${security}: every conformance case`, async () => {
    const comms = await tcpGroup(size, { security, capacity: LARGE_MESSAGE });
    try {
      for (const [name, run] of Object.entries(processBackendCases)) {
        assert.ok(capacityFor(name) <= LARGE_MESSAGE);
        await Promise.all(comms.map((comm) => run(comm))).catch((error: Error) => assert.fail(`${name}: ${error.message}`));
      }
    } finally {
      await Promise.all(comms.map((comm) => comm.close()));
    }
  });
}

// what each rank reports; rank 1 is the one that misbehaves
const failures: Record<string, { failed: RegExp; survivor: RegExp }> = {
  // a survivor may hear of the failure before rank 0's release of the first barrier reaches it
  throws: { failed: /^boom$/, survivor: /^rank [02]: (allreduce #2|barrier #1) aborted: rank 1 failed: boom$/ },
  mismatch: { failed: /collective #2 mismatch: rank 1 called broadcast of 8 floats \(root 0\) but rank 0 called allreduce of 8 floats \(sum\)/, survivor: /collective #2 mismatch: rank \d called (allreduce|broadcast) of 8 floats \([^)]*\) but rank \d called (allreduce|broadcast) of 8 floats/ },
  messageSizeMismatch: { failed: /^rank 1: barrier #2 aborted: rank 0: recv of 8 floats got a message of 5 floats from rank 1/, survivor: /recv of 8 floats got a message of 5 floats from rank 1; sender and receiver must agree on message sizes\.$/ },
};

/** Failure case `name` on 3 ranks, each as its own process runs it (its own failure, named, goes to the others): what each reports. */
async function failureReports(name: string, security: TransportSecurity = 'none'): Promise<string[]> {
  const comms = await tcpGroup(3, { security, capacity: 1000, timeoutMs: 2_000 });
  const reports = await Promise.all(comms.map(async (comm) => {
    let reported = '';
    try {
      await failureCases[name](comm, (message) => (reported = message));
      return 'finished without an error';
    } catch (error) {
      const text = (error as Error).message;
      // as a rank's process does (conformance.process)
      comm.abort(rankFailure(comm.rank, text));
      return reported || text;
    }
  }));
  await Promise.all(comms.map(async (comm) => comm.close()));
  return reports;
}

for (const security of transportSecurities) for (const [name, expected] of Object.entries(failures)) {
  test(`tcp in one process (${security}): a rank that ${failureDescription(name)} fails the other two, naming it`, async () => {
    const reports = await failureReports(name, security);
    assert.match(reports[1], expected.failed);
    for (const rank of [0, 2]) assert.match(reports[rank], expected.survivor, `rank ${rank}`);
  });
}

test('tcp in one process: a rank that stalls (computing, its connections still answered) times the others out after --timeout, each naming it and what it does; it hears why at its next operation', async () => {
  const comms = await tcpGroup(3, { capacity: 1000, timeoutMs: 500 });
  try {
    await Promise.all(comms.map((comm) => comm.barrier()));
    // ranks 0 and 2 all-reduce; rank 1 does not come. Each asks every peer where it is: rank 1 answers that it computes
    const messages = await Promise.all([0, 2].map((r) => comms[r].allreduce(new Float32Array(8)).then(() => 'no error', (error: Error) => error.message)));
    for (const [i, r] of [0, 2].entries()) {
      assert.match(messages[i], new RegExp(`^rank ${r}: allreduce #2 (timed out after 0\\.5 s waiting for rank 1 \\(computing after operation #1\\); a rank is stalled or dead|aborted: rank [02]: allreduce #2 timed out after 0\\.5 s waiting for rank 1 \\(computing)`), `rank ${r}`);
    }
    assert.ok(messages.some((message) => /timed out after 0\.5 s waiting for rank 1 \(computing after operation #1\)/.test(message)), 'a rank names rank 1 and what it does');
    // rank 1 computes on a while the others' abort reaches it (sent as they fail: let the event loop deliver it)
    await new Promise((resolve) => setTimeout(resolve, 200));
    await assert.rejects(comms[1].barrier(), /^CommunicationError: rank 1: operation after #1 aborted: rank [02]: allreduce #2 timed out after 0\.5 s waiting for rank 1 \(computing after operation #1\)/);
  } finally {
    await Promise.all(comms.map((comm) => comm.close()));
  }
});

test('tcp in one process: a rank that finishes its job early fails every rank at once, whether or not it waits for that rank, naming it', async () => {
  // (the timeout is the test's only bound: the ranks fail on rank 1's goodbye, or on the abort of a rank that waited for it)
  const comms = await tcpGroup(3, { capacity: 1000, timeoutMs: 3_000 });
  try {
    await Promise.all(comms.map((comm) => comm.barrier()));
    await comms[1].close();
    // rank 2 receives from rank 1 in the ring; rank 0 does not, and hears it from rank 2
    const messages = await Promise.all([0, 2].map((r) => comms[r].allreduce(new Float32Array(8)).then(() => 'no error', (error: Error) => error.message)));
    for (const [i, r] of [0, 2].entries()) {
      assert.match(messages[i], new RegExp(`^rank ${r}: allreduce #2 aborted: rank 1 \\(last seen in [^)]+\\) finished its job and left while rank [02] waits for it; the ranks ran different numbers of collectives\\.$`), `rank ${r}`);
    }
  } finally {
    await Promise.all(comms.map((comm) => comm.close()));
  }
});

// a collective that differs from the others' in one field alone (kind, length, sum against mean): every rank fails, and each that names the mismatch names both sides.
// Not the root: a broadcast's root only sends, so tcp finds that mismatch at the next collective (rank 1's frames, marked root 1, wait there), not in the broadcast itself
for (const name of Object.keys(mismatchCases).filter((field) => field !== 'root').map((field) => `${field}Mismatch`)) {
  test(`tcp in one process: a rank that ${failureDescription(name)} fails every rank, the mismatch named`, async () => {
    const reports = await failureReports(name);
    assert.ok(reports.some((report) => namesBothSides(name, report)), `no rank names both sides: ${reports.join(' | ')}`);
    for (const [rank, report] of reports.entries()) assert.ok(/aborted/.test(report) || namesBothSides(name, report), `rank ${rank}: ${report}`);
  });
}
