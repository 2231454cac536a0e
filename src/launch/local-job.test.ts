// launchProcesses, as bench/collectives, the api and the process tests use it: what it says the ranks
// printed is complete when it returns.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { launchProcesses } from './local-job.js';

test('launchProcesses returns once every line each rank wrote is read, also those written after it exited', async () => {
  const lines: string[] = [];
  // the last line comes from a process the rank started, after the rank itself has exited: a job that
  // ended at the ranks' exit returned without it (and callers that read the lines then missed them)
  const job = await launchProcesses({ processes: 2, command: ['bash', '-c', '(sleep 0.5; echo "rank $RANK, late") & echo "rank $RANK, on time"; exit $RANK'], onLine: (rank, line) => lines.push(`${rank}: ${line}`) });
  assert.deepEqual(lines.sort(), ['0: rank 0, late', '0: rank 0, on time', '1: rank 1, late', '1: rank 1, on time']);
  assert.deepEqual(job.codes, [0, 1]);
  assert.equal(job.exitCode, 1);
  assert.equal(job.firstFailure, 1);
});
