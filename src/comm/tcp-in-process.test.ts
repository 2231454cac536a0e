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
import { tcpGroup, withTcpGroup } from './tcp-group.test.fixture.js';
import { rankFailure } from '../errors.js';
import { operations, type ProcessCommunicator } from './communicator.js';
import type { TcpCommunicator } from './tcp.js';
import type { Link } from './tcp-link.js';
import { header, Type } from './tcp-wire.js';

for (const size of [1, 2, 3]) for (const security of transportSecurities) {
  test(`tcp in one process, ${size} rank${size > 1 ? 's' : ''}, ${security}: every conformance case`, async () => {
    await withTcpGroup(size, { security, capacity: LARGE_MESSAGE }, async (comms) => {
      for (const comm of comms) assert.equal(comm.backend, 'tcp');
      for (const [name, run] of Object.entries(processBackendCases)) {
        assert.ok(capacityFor(name) <= LARGE_MESSAGE);
        await Promise.all(comms.map((comm) => run(comm))).catch((error: Error) => assert.fail(`${name}: ${error.message}`));
      }
    });
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
  await withTcpGroup(3, { capacity: 1000, timeoutMs: 500 }, async (comms) => {
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
  });
});

test('tcp in one process: a rank that finishes its job early fails every rank at once, whether or not it waits for that rank, naming it', async () => {
  // (the timeout is the test's only bound: the ranks fail on rank 1's goodbye, or on the abort of a rank that waited for it)
  await withTcpGroup(3, { capacity: 1000, timeoutMs: 3_000 }, async (comms) => {
    await Promise.all(comms.map((comm) => comm.barrier()));
    await comms[1].close();
    // rank 2 receives from rank 1 in the ring; rank 0 does not, and hears it from rank 2
    const messages = await Promise.all([0, 2].map((r) => comms[r].allreduce(new Float32Array(8)).then(() => 'no error', (error: Error) => error.message)));
    for (const [i, r] of [0, 2].entries()) {
      assert.match(messages[i], new RegExp(`^rank ${r}: allreduce #2 aborted: rank 1 \\(last seen in [^)]+\\) finished its job and left while rank [02] still needs it; the ranks ran different numbers of operations\\.$`), `rank ${r}`);
    }
  });
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

/** A rank's connections, for the tests that break one or write to it by hand as a faulty peer would. */
const linksOf = (comm: ProcessCommunicator) => (comm as unknown as { links: (Link | null)[] }).links;
const messageOf = (promise: Promise<unknown>) => promise.then(() => 'no error', (error: Error) => error.message);

test('tcp in one process: a receive that times out names the rank it waits for: its source, or for a receive from any rank, the next rank', async () => {
  // each case a group of its own (the timeout ends it); the others idle after the same barrier, so none is behind and the waited-for rank is named
  const cases = [{ rank: 1, source: 0, waits: 0 }, { rank: 1, source: -1, waits: 2 }, { rank: 2, source: -1, waits: 0 }];
  await Promise.all(cases.map(async ({ rank, source, waits }) => {
    await withTcpGroup(3, { capacity: 1000, timeoutMs: 400 }, async (comms) => {
      await Promise.all(comms.map((comm) => comm.barrier()));
      const message = await messageOf(comms[rank].recv(new Float32Array(4), source));
      assert.equal(message, `rank ${rank}: recv timed out after 0.4 s waiting for rank ${waits}; a rank is stalled or dead — check its output, or raise --timeout.`, `rank ${rank} from ${source}`);
      // the others hear it at their next operation
      const other = (rank + 1) % 3;
      assert.equal(await messageOf(comms[other].barrier()), `rank ${other}: barrier #2 aborted: ${message}`);
    });
  }));
});

test('tcp in one process: a collective that times out names each rank behind and where it is: in a receive, computing, or not answering', async () => {
  await withTcpGroup(3, { capacity: 1000, timeoutMs: 600 }, async (comms) => {
    await Promise.all(comms.map((comm) => comm.barrier()));
    // rank 1 answers no inquiry (as a rank whose event loop is blocked)
    const silent = comms[1] as unknown as TcpCommunicator;
    const onFrame = silent.onFrame.bind(silent);
    silent.onFrame = (link, frame, payload) => (frame.type === Type.StatusRequest ? undefined : onFrame(link, frame, payload));
    const reduced = messageOf(comms[0].allreduce(new Float32Array(8)));
    // rank 2 waits in a receive from rank 1 before rank 0 gives up
    await new Promise((resolve) => setTimeout(resolve, 200));
    void messageOf(comms[2].recv(new Float32Array(4), 1));
    assert.equal(await reduced, 'rank 0: allreduce #2 timed out after 0.6 s waiting for rank 1 (not answering), rank 2 (recv); a rank is stalled or dead — check its output, or raise --timeout.');
  });
});

test('tcp in one process: a send to, a receive from, or a collective with a rank that finished its job fails at once, naming it; the others hear it', async () => {
  // [who calls, what, the rank that left]
  // (a gather's root only receives: nothing but the goodbye tells it that rank 1 will not send)
  const cases = [[0, 'send', 1], [0, 'recv', 1], [1, 'recv', 0], [0, 'recv from any rank', 1], [0, 'allreduce', 1], [0, 'gather', 1]] as const;
  for (const [rank, call, left] of cases) {
    await withTcpGroup(3, { capacity: 1000, timeoutMs: 5_000 }, async (comms) => {
      await Promise.all(comms.map((comm) => comm.barrier()));
      // for a receive from any rank, every other rank has left
      for (const r of call === 'recv from any rank' ? [1, 2] : [left]) await comms[r].close();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      const other = 3 - rank - left;
      const message = await messageOf(
        call === 'send' ? comms[rank].send(new Float32Array(4), left)
        : call === 'allreduce' ? Promise.all([rank, other].map((r) => comms[r].allreduce(new Float32Array(4)))).then(() => undefined)
        : call === 'gather' ? Promise.all([rank, other].map((r) => comms[r].gather(new Float32Array(4), r === 0 ? new Float32Array(12) : null, 0))).then(() => undefined)
        : comms[rank].recv(new Float32Array(4), call === 'recv' ? left : -1));
      const operation = call === 'allreduce' || call === 'gather' ? `${call} #2` : call === 'send' ? 'send' : 'recv';
      assert.match(message, new RegExp(`^rank ${rank}: ${operation} aborted: rank ${left} \\(last seen in barrier #1\\) finished its job and left while rank ${call === 'allreduce' ? '[02]' : rank} still needs it; the ranks ran different numbers of operations\\.$`), `rank ${rank}, ${call}`);
      assert.ok(Date.now() - started < 4_000, `${call}: failed at once, not after --timeout`);
      if (call === 'send' || call === 'recv') assert.match(await messageOf(comms[other].barrier()), new RegExp(`^rank ${other}: barrier #2 aborted: rank ${left} \\(last seen in barrier #1\\) finished its job and left while rank [${rank}${other}] still needs it`), call);
    });
  }
});

test('tcp in one process: a receive from a named rank takes that rank\'s message though another\'s came first; a receive from any rank takes any, and goes on while one of several peers has left', async () => {
  await withTcpGroup(3, { capacity: 1000, timeoutMs: 5_000 }, async (comms) => {
    await comms[2].send(Float32Array.of(2, 2), 1);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await comms[0].send(Float32Array.of(0, 0), 1);
    const buffer = new Float32Array(2);
    assert.equal(await comms[1].recv(buffer, 0), 0);
    assert.deepEqual(Array.from(buffer), [0, 0]);
    assert.equal(await comms[1].recv(buffer), 2);
    assert.deepEqual(Array.from(buffer), [2, 2]);
    await comms[0].close();
    await new Promise((resolve) => setTimeout(resolve, 100));
    const received = comms[1].recv(buffer);
    await new Promise((resolve) => setTimeout(resolve, 50));
    await comms[2].send(Float32Array.of(3, 3), 1);
    assert.equal(await received, 2);
    assert.deepEqual(Array.from(buffer), [3, 3]);
  });
});

test('tcp in one process: a receive that waits fails at once when another rank aborts the job', async () => {
  await withTcpGroup(3, { capacity: 1000, timeoutMs: 5_000 }, async (comms) => {
    await Promise.all(comms.map((comm) => comm.barrier()));
    const started = Date.now();
    const received = messageOf(comms[0].recv(new Float32Array(4), 1));
    await new Promise((resolve) => setTimeout(resolve, 50));
    comms[2].abort('rank 2 failed: boom');
    assert.equal(await received, 'rank 0: recv aborted: rank 2 failed: boom');
    assert.ok(Date.now() - started < 4_000, 'at once, not after --timeout');
  });
});

test('tcp in one process: a connection that breaks (a socket error) fails the rank at once, naming the peer and the error; the others hear it', async () => {
  await withTcpGroup(3, { capacity: 1000, timeoutMs: 5_000 }, async (comms) => {
    await Promise.all(comms.map((comm) => comm.barrier()));
    // for each of rank 0's sockets to rank 1: the one it writes, and the one it reads
    linksOf(comms[0])[1]!.socket.destroy(new Error('injected reset'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await messageOf(comms[0].barrier()), 'rank 0: operation after #1 aborted: rank 1 (last seen in barrier #1) broke its connection (injected reset).');
    // rank 2 hears of it from rank 0, or from rank 1 (whose reader rank 0 closed)
    assert.match(await messageOf(comms[2].allreduce(new Float32Array(4))), /^rank 2: (operation after #1|allreduce #2) aborted: rank [01] \(last seen in barrier #1\) (broke its connection \(injected reset\)|closed its connection: it exited or was killed)\.$/);
  });
  await withTcpGroup(2, { capacity: 1000, timeoutMs: 5_000 }, async (comms) => {
    await Promise.all(comms.map((comm) => comm.barrier()));
    linksOf(comms[0])[1]!.reader.socket.destroy(new Error('injected reset'));
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await messageOf(comms[0].barrier()), 'rank 0: operation after #1 aborted: rank 1 (last seen in barrier #1) broke its connection (injected reset).');
  });
  // the connection rank 0 reads closed without a goodbye (the peer died), and a write to a connection already gone
  await withTcpGroup(2, { capacity: 1000, timeoutMs: 5_000 }, async (comms) => {
    await Promise.all(comms.map((comm) => comm.barrier()));
    linksOf(comms[0])[1]!.reader.socket.destroy();
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await messageOf(comms[0].barrier()), 'rank 0: operation after #1 aborted: rank 1 (last seen in barrier #1) closed its connection: it exited or was killed.');
  });
  await withTcpGroup(2, { capacity: 1000, timeoutMs: 5_000 }, async (comms) => {
    await Promise.all(comms.map((comm) => comm.barrier()));
    linksOf(comms[0])[1]!.socket.destroy();
    assert.equal(await messageOf(comms[0].send(new Float32Array(4), 1)), 'rank 0: send aborted: rank 1 (last seen in barrier #1) broke its connection (Cannot call write after a stream was destroyed).');
  });
});

test('tcp in one process: a message over the capacity is refused before anything is sent, and the group goes on', async () => {
  await withTcpGroup(2, { capacity: 10, timeoutMs: 5_000 }, async (comms) => {
    for (const comm of comms) await assert.rejects(comm.allreduce(new Float32Array(11)), /^CommunicationError: tcp allreduce of 11 elements exceeds the communicator's capacity of 10; create the group with a larger capacity\.$/);
    const over = new Float32Array(11);
    const refusals: [string, () => Promise<unknown>][] = [
      ['reduceScatter', () => comms[0].reduceScatter(over)], ['allgatherShares', () => comms[0].allgatherShares(over)],
      ['allgather', () => comms[0].allgather(over, new Float32Array(22))], ['gather', () => comms[0].gather(over, new Float32Array(22), 0)],
      ['broadcast', () => comms[0].broadcast(over, 0)], ['send', () => comms[0].send(over, 1)],
    ];
    for (const [name, call] of refusals) await assert.rejects(call(), new RegExp(`^CommunicationError: tcp ${name} of 11 elements exceeds the communicator's capacity of 10; create the group with a larger capacity\\.$`), name);
    await assert.rejects(comms[1].recv(new Float32Array(11), 0), /^CommunicationError: tcp recv of 11 elements exceeds the communicator's capacity of 10/);
    const buffers = comms.map((comm) => Float32Array.from({ length: 10 }, (_, i) => comm.rank * 10 + i));
    await Promise.all(comms.map((comm, r) => comm.allreduce(buffers[r])));
    for (const buffer of buffers) assert.deepEqual(Array.from(buffer), Array.from({ length: 10 }, (_, i) => 10 + 2 * i));
  });
});

// A peer that sends a frame of the collective rank 0 waits for with one field wrong (a faulty or foreign implementation):
// rank 0's allreduce of 8 floats on 2 ranks expects, from rank 1, part 0 of allreduce #2, count 8, root -1 (sum), 16 bytes
const wrongFrames: Record<string, { fields: Partial<Record<'operation' | 'part' | 'seq' | 'count' | 'root' | 'bytes', number>>; names: string }> = {
  length: { fields: { bytes: 12 }, names: 'rank 0 expected 16 bytes of allreduce of 8 floats (sum) from rank 1, which sent 12' },
  collective: { fields: { operation: operations.indexOf('broadcast') }, names: 'rank 0 called allreduce of 8 floats (sum) but rank 1 called broadcast of 8 floats (root -1) as its #2' },
  count: { fields: { count: 9 }, names: 'rank 0 called allreduce of 8 floats (sum) but rank 1 called allreduce of 9 floats (sum) as its #2' },
  root: { fields: { root: -2 }, names: 'rank 0 called allreduce of 8 floats (sum) but rank 1 called allreduce of 8 floats (mean) as its #2' },
  sequence: { fields: { seq: 3 }, names: 'rank 0 called allreduce of 8 floats (sum) but rank 1 called allreduce of 8 floats (sum) as its #3' },
  part: { fields: { part: 1 }, names: 'rank 0 called allreduce of 8 floats (sum) but rank 1 called allreduce of 8 floats (sum) as its #2' },
};

for (const [field, { fields, names }] of Object.entries(wrongFrames)) for (const early of [true, false]) {
  test(`tcp in one process: a frame with the wrong ${field}, arrived ${early ? 'before' : 'while'} rank 0 waits for it, fails the collective, named, and the peer hears it`, async () => {
    await withTcpGroup(2, { capacity: 1000, timeoutMs: 5_000 }, async (comms) => {
      await Promise.all(comms.map((comm) => comm.barrier()));
      const frame = { operation: operations.indexOf('allreduce'), part: 0, seq: 2, count: 8, root: -1, bytes: 16, ...fields };
      const sendFrame = () => linksOf(comms[1])[0]!.send([header(Type.Data, frame.operation, frame.part, frame.seq, frame.count, frame.root, frame.bytes), new Uint8Array(frame.bytes)]);
      // (the message is the same either way; the delays only choose which path of rank 0's finds the mismatch)
      if (early) {
        sendFrame();
        await new Promise((resolve) => setTimeout(resolve, 50));
      }
      const reduced = messageOf(comms[0].allreduce(new Float32Array(8)));
      if (!early) setTimeout(sendFrame, 10);
      assert.equal(await reduced, `rank 0: collective #2 mismatch: ${names}; every rank must call the same collectives in the same order.`);
      await new Promise((resolve) => setTimeout(resolve, 50));
      assert.equal(await messageOf(comms[1].barrier()), `rank 1: operation after #1 aborted: rank 0: collective #2 mismatch: ${names}; every rank must call the same collectives in the same order.`);
    });
  });
}

test('tcp in one process: a frame of a handshake type after the handshake is garbage: the connection is dropped, named, and the job fails', async () => {
  await withTcpGroup(2, { capacity: 1000, timeoutMs: 5_000 }, async (comms) => {
    await Promise.all(comms.map((comm) => comm.barrier()));
    linksOf(comms[1])[0]!.send([header(Type.Hello, 0, 0, 0, 0, 0, 0)]);
    await new Promise((resolve) => setTimeout(resolve, 100));
    assert.equal(await messageOf(comms[0].barrier()), 'rank 0: rank 1 sent garbage: a frame of type 3 after the handshake; the connection is dropped — check that only converge ranks of this job reach this port.');
  });
});
