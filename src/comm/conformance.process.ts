// One rank of a conformance or failure case in its own process (tcp and mpi backends; see
// tcp.test.ts): `node conformance.process.js BACKEND CASE [failure]` (CASE `all`: every
// conformance case and every process case in turn, on one communicator). Prints one JSON line: {ok} (with what a failure case
// that ends normally said) or {error}, then exits 0 or 1.
import { capacityFor, failureCases, processBackendCases as cases } from './conformance.js';
import { createProcessCommunicator } from '../launch/communicator.js';
import { rankFailure } from '../errors.js';

const [backend, name, mode] = process.argv.slice(2);
const names = name === 'all' ? Object.keys(cases) : [name];
const comm = await createProcessCommunicator(backend, { capacity: Math.max(...names.map(capacityFor)), timeoutMs: Number(process.env.CONVERGE_TEST_TIMEOUT_MS ?? 20_000) });
let reported = '';
try {
  if (mode === 'failure') await failureCases[name](comm, (message) => (reported = message));
  else for (const each of names) await cases[each](comm);
  console.log(JSON.stringify({ ok: true, bytes: comm.bytesSent, ...(reported ? { said: reported } : {}) }));
  await comm.close();
  process.exit(0);
} catch (error) {
  const text = (error as Error).message;
  console.log(JSON.stringify({ error: reported || text }));
  comm.abort(rankFailure(comm.rank, text));
  // leave the abort frames time to reach the peers before the sockets close
  setTimeout(() => process.exit(1), 200);
}
