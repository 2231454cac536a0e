// The mpi backend's TypeScript layer against a stand-in for the binding (native/mpi), which plays
// MPI's part as a script says: which calls run here and which on the progress thread, in what
// order, with what timeout; what a rank says when MPI returns an error, or when the fingerprint
// check finds another rank's collective. What only Open MPI can show (the collectives' results,
// failures across processes) is mpi.test.ts's.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ALLGATHER, ALLGATHER_SHARES, ALLREDUCE, BARRIER, BROADCAST, CHECK, GATHER, RECV, REDUCE_SCATTER, SEND, connectMpi, type Binding } from './mpi.js';

interface Call { where: 'here' | 'thread'; op: number; root: number; seq: number; seconds: number; id?: number }

/** Rank 0 of 3 with a progress thread. Every call succeeds unless `codes` says otherwise (by operation); threaded ones finish when the test says. */
class StandIn implements Binding {
  calls: Call[] = [];
  codes = new Map<number, number>();
  /** What the other ranks called, as the fingerprint check's min-reduction and the descriptors' allgather would show it: [operation code, count, root] each. */
  others: [number, number, number][] | null = null;
  pending: number[] = [];
  private onDone!: (id: number, code: number) => void;

  init(onDone: (id: number, code: number) => void) {
    this.onDone = onDone;
    return { rank: 0, size: 3, threads: true, library: 'stand-in' };
  }

  call(op: number, a: Float32Array | Int32Array | null, b: Float32Array | Int32Array | null, root: number, seq: number, seconds: number): number {
    this.calls.push({ where: 'here', op, root, seq, seconds });
    this.play(op, a, b);
    return this.codes.get(op) ?? 0;
  }

  start(id: number, op: number, a: Float32Array | null, b: Float32Array | Int32Array | null, root: number, seq: number, seconds: number): void {
    this.calls.push({ where: 'thread', op, root, seq, seconds, id });
    this.play(op, a, b);
    this.pending.push(id);
  }

  /** The progress thread's next call ends. */
  finish(code = 0): void {
    const id = this.pending.shift();
    assert.notEqual(id, undefined, 'a call on the progress thread');
    this.onDone(id!, code);
  }

  private play(op: number, a: Float32Array | Int32Array | null, b: Float32Array | Int32Array | null): void {
    if (!this.others) return;
    if (op === CHECK) {
      // the min over the ranks of (code, −code, count, −count, …): a rank that differs breaks a pair
      const f = a as Int32Array;
      for (const [code, count, root] of this.others) {
        f[0] = Math.min(f[0], code); f[1] = Math.min(f[1], -code);
        f[2] = Math.min(f[2], count); f[3] = Math.min(f[3], -count);
        f[4] = Math.min(f[4], root); f[5] = Math.min(f[5], -root);
      }
    }
    if (op === ALLGATHER && a instanceof Float32Array && a.length === 4) {
      // the descriptors: this rank's, then the others' at the same sequence number
      const all = b as Float32Array;
      all.set(a, 0);
      this.others.forEach(([code, count, root], i) => all.set([code, count, root, a[3]], 4 * (i + 1)));
    }
  }

  errorText(code: number): string {
    return `MPI_ERR_STAND_IN (${code})`;
  }

  abort(): never {
    throw new Error('abort');
  }

  finalize(): void {}
}

const mpi = new StandIn();
const comm = await connectMpi({ capacity: 1 << 20, timeoutMs: 2500 }, mpi);
const MIB = 1 << 20;
/** The calls each operation makes, from here on. */
async function callsOf(run: () => Promise<unknown>): Promise<Call[]> {
  const from = mpi.calls.length;
  await run();
  return mpi.calls.slice(from);
}

test('mpi layer: operations under 1 MiB (and their fingerprint checks) call MPI here; from 1 MiB both go to the progress thread, by the bytes each operation moves; every call carries the timeout in seconds', async () => {
  const n = MIB / 4; // floats in 1 MiB
  const threaded = (op: number) => [{ op: CHECK, where: 'thread' }, { op, where: 'thread' }];
  const here = (op: number) => [{ op: CHECK, where: 'here' }, { op, where: 'here' }];
  const cases: [string, () => Promise<unknown>, { op: number; where: string }[]][] = [
    ['allreduce just under 1 MiB', () => comm.allreduce(new Float32Array(n - 1)), here(ALLREDUCE)],
    ['allreduce of 1 MiB', () => comm.allreduce(new Float32Array(n)), threaded(ALLREDUCE)],
    ['reduceScatter of 1 MiB', () => comm.reduceScatter(new Float32Array(n)), threaded(REDUCE_SCATTER)],
    ['reduceScatter just under', () => comm.reduceScatter(new Float32Array(n - 1)), here(REDUCE_SCATTER)],
    ['allgatherShares of 1 MiB', () => comm.allgatherShares(new Float32Array(n)), threaded(ALLGATHER_SHARES)],
    ['allgatherShares just under', () => comm.allgatherShares(new Float32Array(n - 1)), here(ALLGATHER_SHARES)],
    // an allgather or gather moves P shares: a third of 1 MiB from each of 3 ranks is 1 MiB
    ['allgather of 3 shares of a third of 1 MiB', () => comm.allgather(new Float32Array(Math.ceil(n / 3)), new Float32Array(3 * Math.ceil(n / 3))), threaded(ALLGATHER)],
    ['allgather of 3 shares just under', () => comm.allgather(new Float32Array(Math.floor((n - 1) / 3)), new Float32Array(3 * Math.floor((n - 1) / 3))), here(ALLGATHER)],
    ['gather of 3 shares of a third of 1 MiB', () => comm.gather(new Float32Array(Math.ceil(n / 3)), new Float32Array(3 * Math.ceil(n / 3)), 0), threaded(GATHER)],
    ['gather of 3 shares just under', () => comm.gather(new Float32Array(Math.floor((n - 1) / 3)), new Float32Array(3 * Math.floor((n - 1) / 3)), 0), here(GATHER)],
    ['broadcast of 1 MiB', () => comm.broadcast(new Float32Array(n), 2), threaded(BROADCAST)],
    ['broadcast just under', () => comm.broadcast(new Float32Array(n - 1), 2), here(BROADCAST)],
    ['barrier', () => comm.barrier(), here(BARRIER)],
    ['send of 1 MiB', () => comm.send(new Float32Array(n), 1), [{ op: SEND, where: 'thread' }]],
    ['send just under', () => comm.send(new Float32Array(n - 1), 1), [{ op: SEND, where: 'here' }]],
    ['recv of 1 MiB', () => comm.recv(new Float32Array(n), 2), [{ op: RECV, where: 'thread' }]],
    ['recv just under', () => comm.recv(new Float32Array(n - 1), 2), [{ op: RECV, where: 'here' }]],
  ];
  for (const [what, run, expected] of cases) {
    const done = callsOf(run);
    // the progress thread's calls end one at a time, in order, as they would
    for (let i = 0; i < expected.length; i++) {
      await new Promise((resolve) => setImmediate(resolve));
      if (mpi.pending.length > 0) mpi.finish();
    }
    const calls = await done;
    assert.deepEqual(calls.map(({ op, where }) => ({ op, where })), expected, what);
    for (const call of calls) assert.equal(call.seconds, 2.5, `${what}: the timeout in seconds`);
  }
  // a root or a peer reaches MPI as given
  const rooted = await callsOf(() => comm.broadcast(new Float32Array(4), 2));
  assert.equal(rooted[1].root, 2);
  assert.equal((await callsOf(() => comm.recv(new Float32Array(4))))[0].root, -1, 'a receive from any rank');
});

test('mpi layer: calls run one at a time, in the order made: a small call after a large one waits for it, each threaded call has its own id, and every operation carries the collective\'s sequence number', async () => {
  const order: string[] = [];
  const from = mpi.calls.length;
  const large = comm.allreduce(new Float32Array(MIB / 4)).then(() => order.push('large'));
  const small = comm.allreduce(new Float32Array(4)).then(() => order.push('small'));
  await new Promise((resolve) => setImmediate(resolve));
  assert.equal(mpi.pending.length, 1, 'the large one\'s check is on the progress thread');
  assert.equal(mpi.calls.length, from + 1, 'the small one waits');
  mpi.finish();
  await new Promise((resolve) => setImmediate(resolve));
  mpi.finish();
  await Promise.all([large, small]);
  assert.deepEqual(order, ['large', 'small']);
  const calls = mpi.calls.slice(from);
  assert.deepEqual(calls.map((c) => [c.op, c.where]), [[CHECK, 'thread'], [ALLREDUCE, 'thread'], [CHECK, 'here'], [ALLREDUCE, 'here']]);
  assert.equal(new Set(calls.filter((c) => c.id !== undefined).map((c) => c.id)).size, 2, 'distinct ids');
  assert.ok(calls[1].id! > calls[0].id!, 'ids count up');
  // the large one is collective #k, the small #k + 1, each with its check
  assert.deepEqual(calls.map((c) => c.seq), [calls[0].seq, calls[0].seq, calls[0].seq + 1, calls[0].seq + 1]);
});

test('mpi layer: an error from MPI fails the operation with one line naming the rank, the operation (a collective with its number, a send or recv with where it was) and MPI\'s own words, here or on the progress thread', async () => {
  const failing = async (op: number, run: () => Promise<unknown>, expected: RegExp, threaded = false) => {
    mpi.codes.set(op, 5);
    const outcome = run().then(() => 'no error', (error: Error) => error.message);
    if (threaded) {
      for (let i = 0; i < 2; i++) {
        await new Promise((resolve) => setImmediate(resolve));
        if (mpi.pending.length > 0) mpi.finish(mpi.calls.at(-1)!.op === op ? 5 : 0);
      }
    }
    assert.match(await outcome, expected);
    mpi.codes.delete(op);
  };
  const seq = () => mpi.calls.at(-1)!.seq;
  await failing(ALLREDUCE, () => comm.allreduce(new Float32Array(4)), /^rank 0: allreduce #\d+ failed in MPI: MPI_ERR_STAND_IN \(5\)\.$/);
  const at = seq();
  await failing(ALLREDUCE, () => comm.allreduce(new Float32Array(MIB / 4)), new RegExp(`^rank 0: allreduce #${at + 1} failed in MPI: MPI_ERR_STAND_IN \\(5\\)\\.$`), true);
  await failing(BARRIER, () => comm.barrier(), new RegExp(`^rank 0: barrier #${at + 2} failed in MPI`));
  await failing(SEND, () => comm.send(new Float32Array(4), 2), new RegExp(`^rank 0: send to rank 2 \\(after operation #${at + 2}\\) failed in MPI: MPI_ERR_STAND_IN \\(5\\)\\.$`));
  await failing(RECV, () => comm.recv(new Float32Array(4)), new RegExp(`^rank 0: recv from any rank \\(after operation #${at + 2}\\) failed in MPI`));
  await failing(RECV, () => comm.recv(new Float32Array(4), 1), new RegExp(`^rank 0: recv from rank 1 \\(after operation #${at + 2}\\) failed in MPI`));
  // the layer goes on after a failed call
  assert.deepEqual((await callsOf(() => comm.barrier())).map((c) => c.op), [CHECK, BARRIER]);
});

test('mpi layer: when another rank called a different collective, the fingerprint check names this rank\'s and the first differing rank\'s, and the operation is not run', async () => {
  const mismatch = async (others: [number, number, number][], run: () => Promise<unknown>, expected: RegExp) => {
    mpi.others = others;
    const calls = mpi.calls.length;
    const message = await run().then(() => 'no error', (error: Error) => error.message);
    mpi.others = null;
    assert.match(message, expected);
    assert.deepEqual(mpi.calls.slice(calls).map((c) => c.op), [CHECK, ALLGATHER], 'the check, then the descriptors: nothing else');
  };
  // operation codes are the communicator's `operations` indices: allreduce 1, broadcast 6
  await mismatch([[1, 8, -1], [6, 8, 0]], () => comm.allreduce(new Float32Array(8)), /^rank 0: collective #(\d+) mismatch: rank 0 called allreduce of 8 floats \(sum\) as its #\1 but rank 2 called broadcast of 8 floats \(root 0\) as its #\1/);
  await mismatch([[1, 9, -1], [1, 8, -1]], () => comm.allreduce(new Float32Array(8)), /rank 0 called allreduce of 8 floats \(sum\) as its #\d+ but rank 1 called allreduce of 9 floats \(sum\)/);
  await mismatch([[1, 8, -2], [1, 8, -2]], () => comm.allreduce(new Float32Array(8)), /rank 0 called allreduce of 8 floats \(sum\) as its #\d+ but rank 1 called allreduce of 8 floats \(mean\)/);
  await mismatch([[6, 8, 1], [6, 8, 1]], () => comm.broadcast(new Float32Array(8), 2), /rank 0 called broadcast of 8 floats \(root 2\) as its #\d+ but rank 1 called broadcast of 8 floats \(root 1\)/);
  // a capacity the operation exceeds is refused before the check
  const calls = mpi.calls.length;
  await assert.rejects(comm.allreduce(new Float32Array((1 << 20) + 1)), /^CommunicationError: mpi allreduce of 1048577 elements exceeds the communicator's capacity of 1048576/);
  assert.equal(mpi.calls.length, calls);
});
