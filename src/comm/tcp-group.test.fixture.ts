// P ranks of one tcp job as communicators of this one process, over loopback: for tests that
// drive every rank at once (tcp-in-process.test, strategies/in-process.test); and the tcp tests'
// hand-made servers, listening on a free loopback port.
import type { Server } from 'node:net';
import type { ProcessCommunicator } from './communicator.js';
import { connectTcp } from './tcp-rendezvous.js';
import type { TransportSecurity } from './tcp-seal.js';
import { freePort } from '../launch/local-job.js';

export async function tcpGroup(P: number, options: { security?: TransportSecurity; capacity?: number; timeoutMs?: number } = {}): Promise<ProcessCommunicator[]> {
  const port = await freePort();
  return Promise.all(Array.from({ length: P }, (_, rank) => connectTcp({
    rank, size: P, masterAddr: '127.0.0.1', masterPort: port, secret: 'in-process-secret',
    timeoutMs: options.timeoutMs ?? 5_000, capacity: options.capacity ?? 1 << 16, security: options.security ?? 'none',
  })));
}

/** Runs `body` with a group of P ranks, and closes every rank after it, whether it passed or threw. */
export async function withTcpGroup<T>(P: number, options: Parameters<typeof tcpGroup>[1], body: (comms: ProcessCommunicator[]) => Promise<T>): Promise<T> {
  const comms = await tcpGroup(P, options);
  try {
    return await body(comms);
  } finally {
    await Promise.all(comms.map((comm) => comm.close()));
  }
}

/** Starts `server` on a free port of 127.0.0.1; resolves with that port. */
export async function listenOnLoopback(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen({ host: '127.0.0.1', port: 0 }, () => resolve()));
  return (server.address() as { port: number }).port;
}
