// The conformance suite: every backend must pass these, run on every rank of a group. Values
// are small integers, so sums are exact whatever the reduction order and results can be
// compared with ===. Each case throws on the first wrong element.

import type { Communicator } from './communicator.js';
import { splitCommunicator } from './group.js';

function expectEqual(comm: Communicator, what: string, actual: ArrayLike<number>, expected: (i: number) => number, length = actual.length): void {
  for (let i = 0; i < length; i++) {
    const e = expected(i);
    if (actual[i] !== e) throw new Error(`rank ${comm.rank}/${comm.size}: ${what}[${i}] = ${actual[i]}, expected ${e}`);
  }
}

/** rank r's contribution at index i: distinct per (rank, index), integer-valued */
const value = (rank: number, i: number, round = 0) => ((i * 7 + rank * 13 + round) % 101) - 50;
const sumOver = (size: number, i: number, round = 0) => {
  let s = 0;
  for (let r = 0; r < size; r++) s += value(r, i, round);
  return s;
};

// lengths that are empty per rank, not divisible by the size, and large
const LENGTHS = [1, 2, 7, 1000, 65537];
/** The largeMessages case's length (4.4 MB): its group needs this capacity. */
export const LARGE_MESSAGE = 1_100_003;
/** The capacity (floats) a group needs for a case. */
export const capacityFor = (name: string) => (name === 'largeMessages' || name === 'lateLargePeer' ? LARGE_MESSAGE : 70_000);

export const conformanceCases: Record<string, (comm: Communicator) => Promise<void>> = {
  async allreduceSum(comm) {
    for (const n of LENGTHS) {
      const buffer = Float32Array.from({ length: n }, (_, i) => value(comm.rank, i));
      await comm.allreduce(buffer, 'sum');
      expectEqual(comm, `allreduce sum n=${n}`, buffer, (i) => sumOver(comm.size, i));
    }
  },

  async allreduceMean(comm) {
    const n = 999;
    const buffer = Float32Array.from({ length: n }, () => comm.rank * comm.size);
    await comm.allreduce(buffer, 'mean');
    // mean of r·P over r = P(P−1)/2 — an integer, so exact
    expectEqual(comm, 'allreduce mean', buffer, () => (comm.size * (comm.size - 1)) / 2);
  },

  async manyAllreducesInARow(comm) {
    // back-to-back operations must never read a buffer a peer is still writing
    const buffer = new Float32Array(33);
    for (let round = 0; round < 500; round++) {
      for (let i = 0; i < buffer.length; i++) buffer[i] = value(comm.rank, i, round);
      await comm.allreduce(buffer);
      expectEqual(comm, `round ${round}`, buffer, (i) => sumOver(comm.size, i, round));
    }
  },

  async allreduceOnAllocatedBuffers(comm) {
    // two buffers from allocate(), used alternately and back to back, sum and mean
    const a = comm.allocate(1001);
    const b = comm.allocate(7);
    for (let round = 0; round < 200; round++) {
      const buffer = round % 2 ? b : a;
      for (let i = 0; i < buffer.length; i++) buffer[i] = value(comm.rank, i, round);
      await comm.allreduce(buffer, 'sum');
      expectEqual(comm, `allocated round ${round}`, buffer, (i) => sumOver(comm.size, i, round));
    }
    a.fill(comm.rank * comm.size);
    await comm.allreduce(a, 'mean');
    expectEqual(comm, 'allocated mean', a, () => (comm.size * (comm.size - 1)) / 2);
  },

  async reduceScatter(comm) {
    for (const n of LENGTHS) {
      const buffer = Float32Array.from({ length: n }, (_, i) => value(comm.rank, i));
      const [start, end] = await comm.reduceScatter(buffer);
      if (start < 0 || end > n || start > end) throw new Error(`rank ${comm.rank}: reduceScatter share [${start}, ${end}) of ${n}`);
      for (let i = start; i < end; i++) {
        if (buffer[i] !== sumOver(comm.size, i)) throw new Error(`rank ${comm.rank}: reduceScatter n=${n} [${i}] = ${buffer[i]}`);
      }
      // the shares of all ranks tile [0, n)
      const shares = new Float32Array(2 * comm.size);
      await comm.allgather(Float32Array.from([start, end]), shares);
      let expectedStart = 0;
      for (let r = 0; r < comm.size; r++) {
        if (shares[2 * r] !== expectedStart) throw new Error(`rank ${comm.rank}: shares do not tile: rank ${r} starts at ${shares[2 * r]}`);
        expectedStart = shares[2 * r + 1];
      }
      if (expectedStart !== n) throw new Error(`rank ${comm.rank}: shares end at ${expectedStart}, not ${n}`);
    }
    // the mean, on a private buffer and on an allocate()d one: r·P averages to P(P − 1)/2, exactly
    for (const buffer of [new Float32Array(1001), comm.allocate(1001)]) {
      buffer.fill(comm.rank * comm.size);
      const [start, end] = await comm.reduceScatter(buffer, 'mean');
      expectEqual(comm, 'reduceScatter mean', buffer.subarray(start, end), () => (comm.size * (comm.size - 1)) / 2);
    }
  },

  async reduceScatterThenAllgatherShares(comm) {
    // private buffers and allocate()d ones: the pair is an all-reduce
    const allocated = comm.allocate(4099);
    for (const buffer of [new Float32Array(4099), allocated, new Float32Array(3), allocated.subarray(0, 3)]) {
      for (let round = 0; round < 20; round++) {
        for (let i = 0; i < buffer.length; i++) buffer[i] = value(comm.rank, i, round);
        const [start, end] = await comm.reduceScatter(buffer);
        for (let i = start; i < end; i++) buffer[i] *= 2; // work on our share, as a sharded optimiser does
        await comm.allgatherShares(buffer);
        expectEqual(comm, `reduceScatter+allgatherShares n=${buffer.length} round ${round}`, buffer, (i) => 2 * sumOver(comm.size, i, round));
      }
    }
  },

  async allgather(comm) {
    for (const n of [1, 5, 4096]) {
      const recv = new Float32Array(n * comm.size).fill(NaN);
      await comm.allgather(Float32Array.from({ length: n }, (_, i) => value(comm.rank, i)), recv);
      expectEqual(comm, `allgather n=${n}`, recv, (j) => value(Math.floor(j / n), j % n));
    }
  },

  async gather(comm) {
    for (let root = 0; root < comm.size; root++) {
      const n = 17;
      const recv = comm.rank === root ? new Float32Array(n * comm.size).fill(NaN) : null;
      await comm.gather(Float32Array.from({ length: n }, (_, i) => value(comm.rank, i, root)), recv, root);
      if (recv) expectEqual(comm, `gather root ${root}`, recv, (j) => value(Math.floor(j / n), j % n, root));
    }
  },

  async broadcast(comm) {
    for (let root = 0; root < comm.size; root++) {
      for (const n of [1, 3001]) {
        const buffer = Float32Array.from({ length: n }, (_, i) => (comm.rank === root ? value(root, i) : -999));
        await comm.broadcast(buffer, root);
        expectEqual(comm, `broadcast root ${root} n=${n}`, buffer, (i) => value(root, i));
      }
    }
  },

  async gatherAndBroadcastOnAllocatedBuffers(comm) {
    const n = 513;
    const buffer = comm.allocate(n);
    for (let round = 0; round < 50; round++) {
      const root = round % comm.size;
      for (let i = 0; i < n; i++) buffer[i] = value(comm.rank, i, round);
      const recv = comm.rank === root ? new Float32Array(n * comm.size) : null;
      await comm.gather(buffer, recv, root);
      if (recv) expectEqual(comm, `in-place gather round ${round}`, recv, (j) => value(Math.floor(j / n), j % n, round));
      await comm.broadcast(buffer, root);
      expectEqual(comm, `in-place broadcast round ${round}`, buffer, (i) => value(root, i, round));
    }
  },

  async barrier(comm) {
    for (let i = 0; i < 200; i++) await comm.barrier();
  },

  async pointToPoint(comm) {
    if (comm.size === 1) return;
    const n = 1001;
    const buffer = new Float32Array(n);
    // every rank sends rank 0 three messages in a row (a mailbox holds one: the sender waits)
    if (comm.rank === 0) {
      const seen = new Map<number, number>();
      for (let k = 0; k < 3 * (comm.size - 1); k++) {
        const from = await comm.recv(buffer, -1);
        const round = seen.get(from) ?? 0;
        seen.set(from, round + 1);
        expectEqual(comm, `message ${round} from rank ${from}`, buffer, (i) => value(from, i, round));
      }
      // then a reply to each, in reverse order, received from a named source
      for (let r = comm.size - 1; r >= 1; r--) {
        buffer.fill(r * 10);
        await comm.send(buffer, r);
      }
    } else {
      for (let round = 0; round < 3; round++) {
        for (let i = 0; i < n; i++) buffer[i] = value(comm.rank, i, round);
        await comm.send(buffer, 0);
      }
      const from = await comm.recv(buffer, 0);
      if (from !== 0) throw new Error(`rank ${comm.rank}: reply from ${from}`);
      expectEqual(comm, 'reply', buffer, () => comm.rank * 10);
    }
    await comm.barrier();
  },

  async largeMessages(comm) {
    // ≥ 4 MiB: past tcp's 1 MiB write segments and mpi's 1 MiB progress-thread threshold, and not
    // divisible by any group size (the group is built with LARGE_MESSAGE floats of capacity)
    const n = LARGE_MESSAGE;
    const buffer = Float32Array.from({ length: n }, (_, i) => value(comm.rank, i));
    await comm.allreduce(buffer, 'sum');
    expectEqual(comm, `allreduce sum n=${n}`, buffer, (i) => sumOver(comm.size, i));
    // reduce-scatter mean, then every share everywhere: the mean of r·P over the ranks, (P − 1)·P/2, exact
    buffer.fill(comm.rank * comm.size);
    const [start, end] = await comm.reduceScatter(buffer, 'mean');
    for (let i = start; i < end; i++) if (buffer[i] !== (comm.size * (comm.size - 1)) / 2) throw new Error(`rank ${comm.rank}: reduceScatter mean n=${n} [${i}] = ${buffer[i]}`);
    await comm.allgatherShares(buffer);
    expectEqual(comm, `reduceScatter mean + allgatherShares n=${n}`, buffer, () => (comm.size * (comm.size - 1)) / 2);
    for (let i = 0; i < n; i++) buffer[i] = value(comm.rank, i, 1);
    await comm.broadcast(buffer, comm.size - 1);
    expectEqual(comm, `broadcast n=${n}`, buffer, (i) => value(comm.size - 1, i, 1));
    if (comm.size === 1) return;
    // a ring: each rank sends the next one its values (even ranks send first, odd ones receive first)
    const out = Float32Array.from({ length: n }, (_, i) => value(comm.rank, i, 2));
    const prev = (comm.rank + comm.size - 1) % comm.size;
    const send = () => comm.send(out, (comm.rank + 1) % comm.size);
    const recv = async () => {
      const from = await comm.recv(buffer, prev);
      if (from !== prev) throw new Error(`rank ${comm.rank}: message from ${from}, expected ${prev}`);
    };
    if (comm.rank % 2 === 0) await send().then(recv);
    else await recv().then(send);
    expectEqual(comm, `send/recv n=${n} from rank ${prev}`, buffer, (i) => value(prev, i, 2));
    await comm.barrier();
  },

  async subgroups(comm) {
    // two splits in turn: pairs of neighbouring ranks, and every rank but 0 (a ring of 3 with 4 ranks); each group ordered backwards by its key
    const splits = [
      { colour: (r: number) => Math.floor(r / 2), members: (r: number) => [r - (r % 2) + 1, r - (r % 2)].filter((m) => m < comm.size) },
      { colour: (r: number) => (r === 0 ? 1 : 0), members: (r: number) => (r === 0 ? [0] : Array.from({ length: comm.size - 1 }, (_, i) => comm.size - 1 - i)) },
    ];
    for (const split of splits) {
      const group = await splitCommunicator(comm, split.colour(comm.rank), -comm.rank);
      const members = split.members(comm.rank);
      if (group.size !== members.length || group.rank !== members.indexOf(comm.rank) || group.backend !== `${comm.backend} group`) {
        throw new Error(`rank ${comm.rank}: group rank ${group.rank} of ${group.size} (${group.backend}), expected ${members.indexOf(comm.rank)} of ${members.length}`);
      }
      // the cases above, run inside each group at once (values are the group's ranks)
      for (const name of ['allreduceSum', 'allreduceMean', 'reduceScatter', 'reduceScatterThenAllgatherShares', 'allgather', 'gather', 'broadcast', 'barrier', 'pointToPoint', 'bytesAreCounted'] as const) {
        try {
          await conformanceCases[name](group);
        } catch (error) {
          throw new Error(`rank ${comm.rank}, in a group of ${group.size}: ${name}: ${(error as Error).message}`);
        }
      }
    }
    // and the whole group still works after
    const buffer = Float32Array.from({ length: 11 }, (_, i) => value(comm.rank, i));
    await comm.allreduce(buffer, 'sum');
    expectEqual(comm, 'allreduce after the groups', buffer, (i) => sumOver(comm.size, i));
  },

  // a receive from a named rank takes that rank's message, while the others' wait beside it
  async namedSource(comm) {
    if (comm.size === 1) return;
    const buffer = new Float32Array(7);
    if (comm.rank > 0) {
      for (let i = 0; i < buffer.length; i++) buffer[i] = value(comm.rank, i);
      await comm.send(buffer, 0);
      await comm.barrier();
    } else {
      await comm.barrier(); // every other rank's message has been sent
      for (let r = comm.size - 1; r >= 1; r--) {
        const from = await comm.recv(buffer, r);
        if (from !== r) throw new Error(`rank 0: recv from rank ${r} says it came from rank ${from}`);
        expectEqual(comm, `the message received from rank ${r}`, buffer, (i) => value(r, i));
      }
    }
    await comm.barrier();
  },

  async refusals(comm) {
    // a receive buffer of the wrong size is refused before anything is sent, and the group goes on
    const refused = async (what: string, expected: string, call: () => Promise<unknown>) => {
      const message = await call().then(() => null, (error: Error) => error.message);
      if (message !== expected) throw new Error(`rank ${comm.rank}: ${what}: ${message === null ? 'not refused' : `refused with "${message}"`}, expected "${expected}"`);
    };
    const P = comm.size;
    await refused('allgather into a short buffer', `rank ${comm.rank}: allgather needs recv of ${3 * P} floats (size × send), got ${3 * P - 1}.`, () => comm.allgather(new Float32Array(3), new Float32Array(3 * P - 1)));
    // only the root checks what it receives into: the others do not call
    if (comm.rank === 0) {
      await refused('gather at the root without a buffer', `rank 0: gather at the root needs recv of ${3 * P} floats (size × send), got none.`, () => comm.gather(new Float32Array(3), null, 0));
      await refused('gather at the root into a long buffer', `rank 0: gather at the root needs recv of ${3 * P} floats (size × send), got ${3 * P + 1}.`, () => comm.gather(new Float32Array(3), new Float32Array(3 * P + 1), 0));
    }
    // a root, destination or source that is no rank of the group (or, for send and recv, this rank itself), every rank alike
    const none = (what: string, peer: number, p2p: boolean) => `rank ${comm.rank}: ${what} ${peer}: no such ${p2p ? 'peer' : 'rank'} in a group of ${P} (ranks 0 to ${P - 1}${p2p ? `, not ${comm.rank} itself` : ''}).`;
    for (const root of [P, -1, 0.5]) {
      await refused(`broadcast from root ${root}`, none('broadcast root', root, false), () => comm.broadcast(new Float32Array(3), root));
      await refused(`gather at root ${root}`, none('gather root', root, false), () => comm.gather(new Float32Array(3), new Float32Array(3 * P), root));
    }
    for (const peer of [P, -2, comm.rank]) {
      await refused(`send to ${peer}`, none('send to', peer, true), () => comm.send(new Float32Array(3), peer));
      await refused(`recv from ${peer}`, none('recv from', peer, true), () => comm.recv(new Float32Array(3), peer));
    }
    // a receive from any rank where there is none to send (a group of one)
    if (P === 1) await refused('recv from any rank', `rank 0: recv from any rank (-1): a group of 1 has no other rank to send.`, () => comm.recv(new Float32Array(3)));
    const buffer = Float32Array.from({ length: 5 }, (_, i) => value(comm.rank, i));
    await comm.allreduce(buffer);
    expectEqual(comm, 'allreduce after refusals', buffer, (i) => sumOver(P, i));
  },

  async bytesAreCounted(comm) {
    const before = comm.bytesSent;
    await comm.allreduce(new Float32Array(1024));
    if (comm.size > 1 && !(comm.bytesSent > before)) throw new Error(`rank ${comm.rank}: bytesSent did not grow (${before} → ${comm.bytesSent})`);
    // every backend counts what a ring moves (tcp its frames' payloads, which are that ring's):
    // checked operation by operation (n = 1,020 splits evenly over 1–4 ranks). A group's
    // collectives are its parent's sends, each counted: its barrier sends a token.
    if (comm.backend.endsWith(' group')) return;
    const n = 1020;
    const P = comm.size;
    const root = P - 1;
    const sent = async (what: string, expected: number, operation: () => Promise<unknown>) => {
      const start = comm.bytesSent;
      await operation();
      // (shm's count is fractional where a share is: compare to within rounding)
      if (Math.abs(comm.bytesSent - start - expected) > 1e-6 * Math.max(1, expected)) throw new Error(`rank ${comm.rank}/${P}: ${what} counted ${comm.bytesSent - start} bytes, expected ${expected}`);
    };
    // each reducing and rooted collective on a private buffer and on an allocate()d one (read in place)
    const shared = comm.allocate(n);
    for (const [on, buffer] of [['', () => new Float32Array(n)], [' of an allocate()d buffer', () => shared]] as const) {
      await sent(`allreduce${on}`, (8 * n * (P - 1)) / P, () => comm.allreduce(buffer()));
      await sent(`allreduce mean${on}`, (8 * n * (P - 1)) / P, () => comm.allreduce(buffer(), 'mean'));
      await sent(`reduceScatter${on}`, (4 * n * (P - 1)) / P, () => comm.reduceScatter(buffer()));
      await sent(`allgatherShares${on}`, (4 * n * (P - 1)) / P, () => comm.allgatherShares(buffer()));
      await sent(`gather${on}`, comm.rank === root ? 0 : 4 * n, () => comm.gather(buffer(), comm.rank === root ? new Float32Array(n * P) : null, root));
      await sent(`broadcast${on}`, comm.rank === root ? 4 * n * (P - 1) : 0, () => comm.broadcast(buffer(), root));
    }
    await sent('allgather', 4 * n * (P - 1), () => comm.allgather(new Float32Array(n), new Float32Array(n * P)));
    await sent('barrier', 0, () => comm.barrier());
    // point to point: what a rank sends, 4n bytes; receiving sends nothing (rank 0 to rank P − 1)
    if (P > 1 && comm.rank === 0) await sent('send', 4 * n, () => comm.send(new Float32Array(n), P - 1));
    if (P > 1 && comm.rank === P - 1) await sent('recv', 0, () => comm.recv(new Float32Array(n), 0));
  },
};

/**
 * What holds on the backends whose ranks are processes (tcp, mpi), not on shm's threads (which
 * block in Atomics.wait): a rank waiting in a large operation for a late peer keeps its event
 * loop turning, so timers, heartbeats and logs go on (mpi hands operations past 1 MiB to its
 * progress thread; tcp never blocks).
 */
export const processCases: Record<string, (comm: Communicator) => Promise<void>> = {
  async lateLargePeer(comm) {
    if (comm.size < 2) return;
    const n = 300_001; // 1.2 MB; an allgather's or gather's share is 1/P of it, the whole it moves past 1 MiB
    const share = Math.ceil(n / comm.size);
    const kinds: Record<string, () => Promise<unknown>> = {
      allreduce: () => comm.allreduce(new Float32Array(n)),
      reduceScatter: () => comm.reduceScatter(new Float32Array(n)),
      allgatherShares: () => comm.allgatherShares(new Float32Array(n)),
      allgather: () => comm.allgather(new Float32Array(share), new Float32Array(share * comm.size)),
      gather: () => comm.gather(new Float32Array(share), comm.rank === 0 ? new Float32Array(share * comm.size) : null, 0),
      broadcast: () => comm.broadcast(new Float32Array(n), 1),
      'send and recv': () => (comm.rank === 1 ? comm.send(new Float32Array(n), 0) : comm.rank === 0 ? comm.recv(new Float32Array(n), 1) : Promise.resolve()),
    };
    for (const [name, call] of Object.entries(kinds)) {
      if (comm.rank === 1) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        await call();
        continue;
      }
      let turned = false;
      const immediate = setImmediate(() => (turned = true));
      await call();
      clearImmediate(immediate);
      // (a gather's other ranks, and a third rank in the send, need not wait for rank 1)
      const waits = name === 'gather' || name === 'send and recv' ? comm.rank === 0 : true;
      if (!turned && waits) throw new Error(`rank ${comm.rank}: the event loop stood still while its ${name} of ${4 * n} bytes waited for a late rank 1`);
    }
  },
};

/** Every case a process backend (tcp, mpi) must pass: the conformance suite and the process cases. */
export const processBackendCases = { ...conformanceCases, ...processCases };

/**
 * Failure scenarios: rank 1 misbehaves after a first barrier; every other rank enters an
 * all-reduce and must fail fast with an error naming rank 1. Survivors report their error
 * through `report` before rethrowing, so a test can check every rank's message.
 */
export const failureCases: Record<string, (comm: Communicator, report: (message: string) => void) => Promise<void>> = {
  async throws(comm, report) {
    await comm.barrier();
    if (comm.rank === 1) throw new Error('boom');
    await survive(comm, report, () => comm.allreduce(new Float32Array(8)));
  },
  async dies(comm, report) {
    await comm.barrier();
    if (comm.rank === 1) process.exit(7);
    await survive(comm, report, () => comm.allreduce(new Float32Array(8)));
  },
  async stalls(comm, report) {
    await comm.barrier();
    if (comm.rank === 1) await new Promise((resolve) => setTimeout(resolve, 600_000));
    await survive(comm, report, () => comm.allreduce(new Float32Array(8)));
  },
  async allocatedVersusPrivate(comm, report) {
    const shared = comm.allocate(8);
    await comm.barrier();
    await survive(comm, report, () => comm.allreduce(comm.rank === 1 ? new Float32Array(8) : shared));
  },
  async messageSizeMismatch(comm, report) {
    await comm.barrier();
    if (comm.rank === 1) {
      await comm.send(new Float32Array(5), 0);
      await survive(comm, report, () => comm.barrier());
    } else if (comm.rank === 0) await survive(comm, report, () => comm.recv(new Float32Array(8), 1));
    else await survive(comm, report, () => comm.barrier());
  },
  // rank 1 sends twice to rank 0, which waits at a barrier instead of receiving: each names what the other is doing
  async sendBlocked(comm, report) {
    await comm.barrier();
    if (comm.rank === 1) {
      await comm.send(new Float32Array(4), 0);
      await survive(comm, report, () => comm.send(new Float32Array(4), 0));
    } else await survive(comm, report, () => comm.barrier());
  },
  async mismatch(comm, report) {
    await comm.barrier();
    await survive(comm, report, () => (comm.rank === 1 ? comm.broadcast(new Float32Array(8), 0) : comm.allreduce(new Float32Array(8))));
  },
  // mpi only: rank 1 calls each other kind of collective in turn where the others all-reduce 8 floats. Its fingerprint check fails
  // every rank before any data moves, so the group goes on to the next kind, and after the last one it still all-reduces
  // correctly. Every rank reports its messages, one a line, and returns: the job ends normally, so Open MPI loses no rank's
  // output (a rank that failed would have the job torn down, maybe before another rank's line got out)
  async everyKind(comm, report) {
    await comm.barrier();
    const said: string[] = [];
    for (const call of Object.values(otherKinds)) {
      try {
        await (comm.rank === 1 ? call(comm) : comm.allreduce(new Float32Array(8)));
        said.push('no error');
      } catch (error) {
        said.push((error as Error).message);
      }
    }
    const after = new Float32Array(8).fill(comm.rank + 1);
    await comm.allreduce(after);
    const sum = (comm.size * (comm.size + 1)) / 2;
    if (!after.every((value) => value === sum)) throw new Error(`rank ${comm.rank}: the all-reduce after the refusals gave ${after.join(', ')}, not ${sum}`);
    report(said.join('\n'));
  },
};

/** everyKind: what rank 1 calls, by how mismatch messages describe it, while the others call "allreduce of 8 floats (sum)". */
export const otherKinds: Record<string, (comm: Communicator) => Promise<unknown>> = {
  'barrier': (comm) => comm.barrier(),
  'broadcast of 8 floats (root 0)': (comm) => comm.broadcast(new Float32Array(8), 0),
  'allgather of 8 floats': (comm) => comm.allgather(new Float32Array(8), new Float32Array(8 * comm.size)),
  'gather of 8 floats (root 2)': (comm) => comm.gather(new Float32Array(8), null, 2),
  'allgatherShares of 8 floats': (comm) => comm.allgatherShares(new Float32Array(8)),
  'reduceScatter of 8 floats (mean)': (comm) => comm.reduceScatter(new Float32Array(8), 'mean'),
};

/**
 * Collectives that differ in one field alone (their kind, length, root, or sum against mean):
 * rank 1 calls `rankOne`, the others `others` (as mismatch messages describe them), and every
 * rank must fail naming the two.
 */
export const mismatchCases: Record<string, { others: string; rankOne: string; call: (comm: Communicator) => Promise<unknown> }> = {
  kind: { others: 'allreduce of 8 floats (sum)', rankOne: 'reduceScatter of 8 floats (sum)', call: (comm) => (comm.rank === 1 ? comm.reduceScatter(new Float32Array(8)) : comm.allreduce(new Float32Array(8))) },
  length: { others: 'allreduce of 8 floats (sum)', rankOne: 'allreduce of 9 floats (sum)', call: (comm) => comm.allreduce(new Float32Array(comm.rank === 1 ? 9 : 8)) },
  root: { others: 'broadcast of 8 floats (root 0)', rankOne: 'broadcast of 8 floats (root 1)', call: (comm) => comm.broadcast(new Float32Array(8), comm.rank === 1 ? 1 : 0) },
  allreduceMean: { others: 'allreduce of 8 floats (sum)', rankOne: 'allreduce of 8 floats (mean)', call: (comm) => comm.allreduce(new Float32Array(8), comm.rank === 1 ? 'mean' : 'sum') },
  reduceScatterMean: { others: 'reduceScatter of 8 floats (sum)', rankOne: 'reduceScatter of 8 floats (mean)', call: (comm) => comm.reduceScatter(new Float32Array(8), comm.rank === 1 ? 'mean' : 'sum') },
};
for (const [name, { call }] of Object.entries(mismatchCases)) {
  failureCases[`${name}Mismatch`] = async (comm, report) => {
    await comm.barrier();
    await survive(comm, report, () => call(comm));
  };
}

/** What rank 1 does in a failure case, as the tests' titles say it ("a rank that …"). */
export function failureDescription(name: string): string {
  const described: Record<string, string> = {
    mismatch: 'calls the wrong collective', messageSizeMismatch: 'sends a message of the wrong size',
    allocatedVersusPrivate: 'passes a private buffer where peers pass shared ones', sendBlocked: 'sends to a full mailbox while its receiver waits elsewhere',
    everyKind: 'calls each other kind of collective in turn where the others all-reduce',
  };
  return described[name] ?? (name in failureCases && name.endsWith('Mismatch') ? `calls a collective that differs in its ${name.slice(0, -'Mismatch'.length)} alone` : name);
}

/**
 * Whether a rank's mismatch message for a one-field mismatch case names the two collectives
 * (either way round), not one of them twice: "called A[ as its #2] but rank r called B".
 */
export function namesBothSides(name: string, message: string): boolean {
  const { others, rankOne } = mismatchCases[name.slice(0, -'Mismatch'.length)];
  const named = /called (.+?)(?: as its #\d+)? but rank \d+ called (.+?)(?: as its #\d+)?(?:;|$)/.exec(message);
  return named !== null && new Set([named[1], named[2]]).size === 2 && [named[1], named[2]].every((side) => side === others || side === rankOne);
}

async function survive(comm: Communicator, report: (message: string) => void, operation: () => Promise<unknown>): Promise<void> {
  try {
    await operation();
  } catch (error) {
    report((error as Error).message);
    throw error;
  }
  throw new Error(`rank ${comm.rank}: the operation succeeded although a peer misbehaved`);
}
