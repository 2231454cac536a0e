// Runs one conformance or failure case on this rank (see shm.test.ts).
import { runRank } from '../launch/thread-rank.js';
import { conformanceCases, failureCases } from './conformance.js';

runRank<{ name: string; failure: boolean }>(async (comm, { name, failure }, emit) => {
  if (failure) await failureCases[name](comm, (message) => emit(message));
  else await conformanceCases[name](comm);
  return comm.bytesSent;
});
