// The mpi backend (Open MPI through native/mpi): the conformance suite under mpirun, and the
// failure cases as far as Open MPI lets a rank see them. Skipped where Open MPI or the binding
// is missing, unless CONVERGE_REQUIRE_MPI=1 (CI) makes that a failure.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { conformanceCases, failureDescription, mismatchCases, namesBothSides, otherKinds } from './conformance.js';
import { mpiJob, mpiMissing } from '../launch/mpi-job.js';

const script = new URL('./conformance.process.js', import.meta.url).pathname;

test('mpi: Open MPI and the binding are there when CI asks for them', { skip: process.env.CONVERGE_REQUIRE_MPI === '1' ? false : mpiMissing || 'present' }, () => {
  assert.equal(mpiMissing, '');
});

async function runCase(size: number, name: string, failure = false, env: Record<string, string> = {}) {
  const job = await mpiJob(size, [process.execPath, script, 'mpi', name, failure ? 'failure' : ''], { CONVERGE_TEST_TIMEOUT_MS: failure ? '1000' : '20000', ...env });
  const reports = job.lines.map((lines) => {
    const json = lines.find((line) => line.startsWith('{'));
    return json ? (JSON.parse(json) as { ok?: boolean; error?: string; said?: string }) : { error: 'nothing printed' };
  });
  return { ...job, reports, all: job.lines.flat().join('\n') };
}

for (const size of [1, 2, 3]) {
  for (const name of Object.keys(conformanceCases)) {
    test(`mpi conformance, ${size} process${size > 1 ? 'es' : ''}: ${name}`, { skip: mpiMissing || false }, async () => {
      const { exitCode, all } = await runCase(size, name);
      assert.equal(exitCode, 0, all);
    });
  }
}

// every case in turn on one communicator, one job per size: what mutation testing of mpi.ts reruns (a job per case is 40 s a run)
for (const size of [2, 3]) {
  test(`mpi conformance, ${size} processes: every case in one job`, { skip: mpiMissing || false }, async () => {
    const { exitCode, all } = await runCase(size, 'all');
    assert.equal(exitCode, 0, all);
  });
}

// without the fingerprint check (as bench:collectives measures it) every case still holds: the operations themselves wait on the progress thread
test('mpi conformance, 3 processes, CONVERGE_MPI_CHECKS=0: every case in one job', { skip: mpiMissing || false }, async () => {
  const { exitCode, all } = await runCase(3, 'all', false, { CONVERGE_MPI_CHECKS: '0' });
  assert.equal(exitCode, 0, all);
});

// What each rank can know under Open MPI: an exception and a mismatch are named by the ranks; a
// rank that exits or stalls is named by mpirun (it cannot be seen from inside a collective).
const failures: Record<string, RegExp[]> = {
  // (Open MPI's own "MPI_ABORT was invoked on rank 1" banner is sometimes lost to an ORTE_ERROR_LOG of its help system)
  throws: [/converge: error: rank 1 failed: boom/],
  dies: [/Process name: \[\[\d+,1\],1\]\s+Exit code:\s+7/],
  stalls: [/rank [02]: the fingerprint check of collective #2 timed out after 1 s waiting for the other ranks/],
  messageSizeMismatch: [/rank 0: recv of 8 floats got a message of 5 floats from rank 1; sender and receiver must agree on message sizes\./],
};

for (const [name, expected] of Object.entries(failures)) {
  test(`mpi failure handling: a rank that ${failureDescription(name)} ends the job within 10 s, and the output says why`, { skip: mpiMissing || false }, async () => {
    const { exitCode, all, seconds } = await runCase(3, name, true);
    assert.notEqual(exitCode, 0);
    for (const pattern of expected) assert.match(all, pattern);
    assert.ok(seconds < 10, `the job took ${seconds} s`);
  });
}

// a rank that calls the wrong collective: each rank that speaks names both collectives from where it
// stands; Open MPI may end the job before one of them (rank 1 or another) has printed, so at least one must
test(`mpi failure handling: a rank that ${failureDescription('mismatch')} ends the job within 10 s, and each rank that says why names both collectives`, { skip: mpiMissing || false }, async () => {
  const { exitCode, all, reports, seconds } = await runCase(3, 'mismatch', true);
  assert.notEqual(exitCode, 0);
  const said = [...reports.entries()].filter(([, report]) => report.error?.includes('mismatch'));
  assert.ok(said.length > 0, all);
  for (const [r, report] of said) {
    const [mine, theirs, other] = r === 1 ? ['broadcast of 8 floats (root 0)', 'allreduce of 8 floats (sum)', '[02]'] : ['allreduce of 8 floats (sum)', 'broadcast of 8 floats (root 0)', '1'];
    const escape = (text: string) => text.replace(/[()]/g, '\\$&');
    assert.match(report.error!, new RegExp(`^rank ${r}: collective #2 mismatch: rank ${r} called ${escape(mine)} as its #2 but rank ${other} called ${escape(theirs)} as its #2; every rank must call the same collectives in the same order\\.$`));
  }
  assert.ok(seconds < 10, `the job took ${seconds} s`);
});

// a collective that differs from the others' in one field alone: each rank names both sides (Open MPI may end the job before every rank has said it)
for (const name of Object.keys(mismatchCases).map((field) => `${field}Mismatch`)) {
  test(`mpi failure handling: a rank that ${failureDescription(name)} ends the job, the mismatch named`, { skip: mpiMissing || false }, async () => {
    const { exitCode, all, reports } = await runCase(3, name, true);
    assert.notEqual(exitCode, 0);
    const said = reports.filter((report) => report.error?.includes('mismatch'));
    assert.ok(said.length > 0, all);
    for (const report of said) assert.ok(namesBothSides(name, report.error!), report.error);
  });
}

// the fingerprint check fails every rank before any data moves, so one job tries every kind: each rank names both collectives
// each time, and the group still all-reduces afterwards (the job ends normally, so no rank's output is lost to a teardown)
test(`mpi failure handling: a rank that ${failureDescription('everyKind')} is refused each time, every rank naming both collectives, and the group goes on`, { skip: mpiMissing || false }, async () => {
  const { exitCode, all, reports } = await runCase(3, 'everyKind', true);
  assert.equal(exitCode, 0, all);
  const kinds = Object.keys(otherKinds);
  const others = 'allreduce of 8 floats (sum)';
  for (const [r, report] of reports.entries()) {
    const lines = report.said?.split('\n') ?? [];
    assert.equal(lines.length, kinds.length, `rank ${r}: ${report.said ?? all}`);
    for (const [i, kind] of kinds.entries()) {
      const n = i + 2; // after the first barrier, the i-th collective
      const [mine, theirs] = r === 1 ? [kind, others] : [others, kind];
      const other = r === 1 ? 0 : 1;
      assert.equal(lines[i], `rank ${r}: collective #${n} mismatch: rank ${r} called ${mine} as its #${n} but rank ${other} called ${theirs} as its #${n}; every rank must call the same collectives in the same order.`, `rank ${r}, ${kind}`);
    }
  }
});
