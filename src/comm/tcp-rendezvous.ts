// The tcp backend's rendezvous: ranks meet at rank 0's address (MASTER_ADDR:MASTER_PORT, the
// torchrun convention), learn every rank's address, and every pair of ranks connects. Before any
// data, each connection proves the job secret both ways (HMAC-SHA256 over fresh nonces); a peer
// that fails is refused and logged. Rank 0 listens on the address given, the others on the
// address they reach rank 0 from, never on all interfaces.

import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { CommunicationError } from '../errors.js';
import { Link, Source } from './tcp-link.js';
import { sessionKeys, transportSecurities, type TransportSecurity } from './tcp-seal.js';
import { HANDSHAKE_BYTES, HEADER, MAGIC, header, readHeader, type Frame, Type } from './tcp-wire.js';
import { TcpCommunicator, type TcpOptions } from './tcp.js';

/** HMAC-SHA256 of the parts, in order, keyed by the job secret. */
export function hmac(secret: string, ...parts: (string | Buffer)[]): Buffer {
  const h = createHmac('sha256', secret);
  for (const part of parts) h.update(part);
  return h.digest();
}

const READ_BUFFER = 1 << 20;
/** A connection to a rank proves the secret within this long (TcpOptions.handshakeMs). */
const HANDSHAKE_MS = 5000;
/** Connections still proving the secret, at most this many per rank of the job: more are refused at once. */
const PENDING_PER_RANK = 2;

/** Reads exactly one small frame (handshake) of an expected type, or fails with what went wrong. */
function readHandshakeFrame(source: Source, expected: Type | Type[], timeoutMs: number, where: string): Promise<{ frame: Frame; payload: Buffer }> {
  const types = Array.isArray(expected) ? expected : [expected];
  const socket = source.socket;
  return new Promise((resolve, reject) => {
    let data = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new CommunicationError(`${where}: no handshake within ${timeoutMs / 1000} s.`, 'HANDSHAKE')), timeoutMs);
    const finish = (error: Error | null, value?: { frame: Frame; payload: Buffer }) => {
      clearTimeout(timer);
      source.unlisten();
      source.onBroken = () => {};
      socket.off('close', onClose);
      socket.off('error', onClose);
      if (error) reject(error);
      else {
        // whatever followed the frame belongs to the next reader
        source.giveBack(data);
        resolve(value!);
      }
    };
    const onClose = () => finish(new CommunicationError(`${where}: the connection closed during the handshake (wrong secret, or not a converge rank).`, 'HANDSHAKE_CLOSED'));
    const onData = (chunk: Buffer) => {
      data = Buffer.concat([data, chunk]);
      if (data.length < HEADER) return;
      const frame = readHeader(data);
      if (data.readUInt32LE(0) !== MAGIC || !types.includes(frame.type) || frame.bytes > HANDSHAKE_BYTES) {
        return finish(new CommunicationError(`${where}: garbage instead of the handshake (magic 0x${data.readUInt32LE(0).toString(16)}, type ${frame.type}, ${frame.bytes} bytes).`, 'HANDSHAKE'));
      }
      if (data.length < HEADER + frame.bytes) return;
      const payload = Buffer.from(data.subarray(HEADER, HEADER + frame.bytes));
      data = data.subarray(HEADER + frame.bytes);
      finish(null, { frame, payload });
    };
    socket.on('close', onClose);
    socket.on('error', onClose);
    const onBroken = (what: string) => finish(new CommunicationError(`${where}: ${what}.`, 'TAMPERED'));
    if (source.broken) return onBroken(source.broken);
    source.onBroken = onBroken;
    source.listen(onData);
  });
}

const sendFrame = (source: Source, type: Type, payload: Buffer, seq = 0) => source.write([header(type, 0, 0, seq, 0, 0, payload.length), payload]);

/** Who a rank says it is in its proof: rank, world size, transport security, job. */
function identityOf(options: TcpOptions): Buffer {
  const job = Buffer.from(options.job ?? '');
  const identity = Buffer.alloc(12 + job.length);
  identity.writeInt32LE(options.rank, 0);
  identity.writeInt32LE(options.size, 4);
  identity.writeUInt8(transportSecurities.indexOf(securityOf(options)), 8);
  identity.writeUInt16LE(job.length, 10);
  job.copy(identity, 12);
  return identity;
}

const securityOf = (options: TcpOptions): TransportSecurity => options.security ?? 'encrypt';

/** From here on, frames on this connection are sealed (unless the job runs with security none). */
function secure(source: Source, options: TcpOptions, challenge: Buffer, answer: Buffer, side: 'acceptor' | 'dialer'): void {
  const security = securityOf(options);
  if (security === 'none') return;
  const keys = sessionKeys(options.secret, challenge, answer, security);
  source.secure(side === 'acceptor' ? { read: keys.dialerToAcceptor, write: keys.acceptorToDialer } : { read: keys.acceptorToDialer, write: keys.dialerToAcceptor }, security === 'encrypt');
}

/**
 * The accepting side: challenge, check the peer's proof, prove ourselves. Returns the peer's rank.
 * A peer that knows the secret but cannot join (another world size, job or transport security, a
 * rank already here: `admit` says why) is told the reason, with our proof, before the connection closes.
 */
async function acceptHandshake(source: Source, options: TcpOptions, admit: (peer: number) => string | null = () => null): Promise<number> {
  const socket = source.socket;
  const where = `rank ${options.rank}: connection from ${socket.remoteAddress}:${socket.remotePort}`;
  const nonce = randomBytes(16);
  sendFrame(source, Type.Challenge, nonce);
  const { payload } = await readHandshakeFrame(source, Type.Auth, Math.min(options.timeoutMs, options.handshakeMs ?? HANDSHAKE_MS), where);
  const identityLength = 12 + (payload.length >= 12 ? payload.readUInt16LE(10) : 0);
  if (payload.length !== identityLength + 16 + 32) throw new CommunicationError(`${where}: a malformed authentication of ${payload.length} bytes.`, 'HANDSHAKE');
  const identity = payload.subarray(0, identityLength);
  const peer = identity.readInt32LE(0);
  const size = identity.readInt32LE(4);
  const security = transportSecurities[identity.readUInt8(8)] ?? `mode ${identity.readUInt8(8)}`;
  const job = identity.subarray(12).toString('utf8');
  const theirNonce = payload.subarray(identityLength, identityLength + 16);
  const proof = payload.subarray(identityLength + 16);
  const expected = hmac(options.secret, 'converge-connect', nonce, identity);
  if (!timingSafeEqual(proof, expected)) throw new CommunicationError(`${where}: refused: the peer does not know the job secret (CONVERGE_SECRET).`, 'BAD_SECRET');
  const reason = job !== (options.job ?? '') ? `it belongs to job ${JSON.stringify(job)}, this rank to job ${JSON.stringify(options.job ?? '')} (CONVERGE_JOB_ID differs: two jobs share a port and a secret)`
    : size !== options.size ? `it claims to be rank ${peer} of ${size}, but this job has ${options.size} ranks (WORLD_SIZE differs)`
    : security !== securityOf(options) ? `it runs with --transport-security ${security}, this rank with ${securityOf(options)}`
    : peer < 0 || peer >= options.size ? `it claims rank ${peer}, outside 0…${options.size - 1}`
    : peer === options.rank ? `it claims rank ${peer}, which is this rank (two ranks were given RANK=${peer})`
    : admit(peer);
  if (reason) {
    const text = Buffer.from(reason);
    sendFrame(source, Type.Refused, Buffer.concat([hmac(options.secret, 'converge-refuse', theirNonce, text), text]));
    throw new CommunicationError(`${where}: refused: ${reason}.`, 'HANDSHAKE');
  }
  sendFrame(source, Type.AuthOk, hmac(options.secret, 'converge-accept', theirNonce));
  secure(source, options, nonce, theirNonce, 'acceptor');
  return peer;
}

/** The connecting side: answer the challenge, check the acceptor's proof. */
async function connectHandshake(source: Source, options: TcpOptions, where: string): Promise<void> {
  const { payload: challenge } = await readHandshakeFrame(source, Type.Challenge, options.timeoutMs, where).catch((error: CommunicationError) => {
    // closed before any challenge: the rank turned the connection away unread (too many strangers at once)
    throw error.code === 'HANDSHAKE_CLOSED' ? new CommunicationError(`${where}: the connection was closed before the handshake began.`, 'NO_CHALLENGE') : error;
  });
  const identity = identityOf(options);
  const nonce = randomBytes(16);
  sendFrame(source, Type.Auth, Buffer.concat([identity, nonce, hmac(options.secret, 'converge-connect', challenge, identity)]));
  const { frame, payload: proof } = await readHandshakeFrame(source, [Type.AuthOk, Type.Refused], options.timeoutMs, where);
  if (frame.type === Type.Refused && proof.length >= 32) {
    const reason = proof.subarray(32);
    if (timingSafeEqual(proof.subarray(0, 32), hmac(options.secret, 'converge-refuse', nonce, reason))) {
      throw new CommunicationError(`${where}: refused this rank: ${reason.toString('utf8')}.`, 'REFUSED');
    }
  }
  if (frame.type !== Type.AuthOk || proof.length !== 32 || !timingSafeEqual(proof, hmac(options.secret, 'converge-accept', nonce))) {
    throw new CommunicationError(`${where}: the peer failed to prove the job secret; refusing to send it data.`, 'BAD_SECRET');
  }
  secure(source, options, challenge, nonce, 'dialer');
}

/**
 * Dials a rank and proves the secret both ways. A connection turned away before the handshake
 * began (the rank was busy with its quota of unproven connections) is dialed again, until the timeout.
 */
async function join(host: string, port: number, options: TcpOptions, where: string, what: string, opened: Socket[]): Promise<Source> {
  const deadline = Date.now() + options.timeoutMs;
  for (;;) {
    const source = await dial(host, port, deadline, options.timeoutMs, where, opened);
    try {
      await connectHandshake(source, options, `${where}: ${what} at ${host}:${port}`);
      return source;
    } catch (error) {
      source.socket.destroy();
      if ((error as CommunicationError).code !== 'NO_CHALLENGE' || Date.now() >= deadline) throw error;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}

/** Connects (retrying while nobody listens yet, until `deadline`: --timeout after the first try), reading into one reused buffer. */
function dial(host: string, port: number, deadline: number, timeoutMs: number, where: string, opened: Socket[]): Promise<Source> {
  return new Promise((resolve, reject) => {
    const attempt = () => {
      const source = new Source();
      const socket = connect({ host, port, onread: { buffer: Buffer.allocUnsafeSlow(READ_BUFFER), callback: (bytes: number, buffer: Uint8Array) => {
        source.feed(Buffer.from(buffer.buffer, buffer.byteOffset, bytes), true);
        return true;
      } } });
      source.socket = socket;
      socket.once('connect', () => {
        socket.removeAllListeners('error');
        socket.setNoDelay(true);
        opened.push(socket);
        resolve(source);
      });
      socket.once('error', (error: NodeJS.ErrnoException) => {
        socket.destroy();
        // the peer may not be listening yet: retry until the timeout
        if ((error.code === 'ECONNREFUSED' || error.code === 'ECONNRESET') && Date.now() < deadline) setTimeout(attempt, 100);
        else reject(new CommunicationError(`${where}: cannot connect to ${host}:${port} (${error.code ?? error.message}) within ${timeoutMs / 1000} s; check MASTER_ADDR/MASTER_PORT and that rank 0 runs.`, 'CONNECT'));
      });
    };
    attempt();
  });
}

function listen(host: string, port: number, where: string): Promise<Server> {
  return new Promise((resolve, reject) => {
    const server = createServer({ noDelay: true });
    server.once('error', (error: NodeJS.ErrnoException) => reject(new CommunicationError(`${where}: cannot listen on ${host}:${port} (${error.code ?? error.message}); is the port taken?`, 'LISTEN')));
    server.listen({ host, port }, () => resolve(server));
  });
}

/**
 * Joins the job. Every pair of ranks holds two connections, one per direction: each rank reads
 * from the connections it dialed and writes to those it accepted. Rank 0 listens on
 * masterAddr:masterPort; every other rank listens on the address it reaches rank 0 from, dials
 * rank 0, and says where it listens; rank 0 answers with everyone's address; then every rank
 * dials every other.
 */
export async function connectTcp(options: TcpOptions): Promise<TcpCommunicator> {
  const opened: { servers: Server[]; sockets: Socket[] } = { servers: [], sockets: [] };
  try {
    return await rendezvous(options, opened);
  } catch (error) {
    // nothing of a failed rendezvous may keep the process alive
    for (const server of opened.servers) server.close();
    for (const socket of opened.sockets) socket.destroy();
    throw error;
  }
}

async function rendezvous(options: TcpOptions, opened: { servers: Server[]; sockets: Socket[] }): Promise<TcpCommunicator> {
  const { rank, size } = options;
  const links: (Link | null)[] = new Array(size).fill(null);
  const where = `rank ${rank}`;
  if (size === 1) return new TcpCommunicator(rank, size, links, null, options);

  // the connections others dial to this rank: handshake, then (here) only written to
  const accepted = new Map<number, Source>();
  let onAccepted: () => void = () => {};
  // connections still proving the secret: capped, and dropped (quietly) once the group has formed
  const pending = new Set<Socket>();
  let formed = false;
  let lastCapLine = 0;
  const acceptAll = (server: Server) =>
    server.on('connection', (socket) => {
      if (pending.size >= PENDING_PER_RANK * size) {
        // at most one line a second of these
        if (Date.now() - lastCapLine >= 1000) {
          lastCapLine = Date.now();
          options.log?.(`${where}: refused a connection from ${socket.remoteAddress}: ${pending.size} connections are already proving the secret (at most ${PENDING_PER_RANK * size}).`);
        }
        socket.destroy();
        return;
      }
      pending.add(socket);
      opened.sockets.push(socket); // (without Nagle's delay: the server says so for every socket it accepts)
      const source = Source.accepted(socket);
      acceptHandshake(source, options, (peer) => (accepted.has(peer) ? `rank ${peer} has already joined (two ranks were given RANK=${peer})` : null)).then(
        (peer) => {
          pending.delete(socket);
          if (accepted.has(peer)) {
            options.log?.(`${where}: refused a second connection claiming rank ${peer} from ${socket.remoteAddress}.`);
            socket.destroy();
            return;
          }
          accepted.set(peer, source);
          onAccepted();
        },
        (error: Error) => {
          pending.delete(socket);
          if (!formed) options.log?.(error.message);
          socket.destroy();
        },
      );
    });
  const waitForAccepts = (count: number) =>
    new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const missing = Array.from({ length: size }, (_, r) => r).filter((r) => r !== rank && !accepted.has(r));
        reject(new CommunicationError(`${where}: rendezvous timed out after ${options.timeoutMs / 1000} s; rank${missing.length > 1 ? 's' : ''} ${missing.join(', ')} never connected — were all ${size} ranks started with the same MASTER_ADDR, MASTER_PORT and secret?`, 'RENDEZVOUS'));
      }, options.timeoutMs);
      onAccepted = () => {
        if (accepted.size >= count) {
          clearTimeout(timer);
          resolve();
        }
      };
      onAccepted();
    });

  const dialed = new Map<number, Source>();
  let server: Server;
  if (rank === 0) {
    server = await listen(options.bind ?? options.masterAddr, options.masterPort, where);
    opened.servers.push(server);
    acceptAll(server);
    await waitForAccepts(size - 1);
    // every rank says where it listens; rank 0 answers with the whole table, then dials everyone
    // (rank 0's own entry stays empty: every rank has dialed it already)
    const table: ({ host: string; port: number } | null)[] = new Array(size).fill(null);
    await Promise.all(
      [...accepted.entries()].map(async ([peer, source]) => {
        const { payload } = await readHandshakeFrame(source, Type.Hello, options.timeoutMs, `${where}: rank ${peer}'s address`);
        const [host, port] = payload.toString('utf8').split(' ');
        table[peer] = { host, port: Number(port) };
      }),
    );
    const body = Buffer.from(JSON.stringify(table)); // once, at start-up: not the data path
    for (const source of accepted.values()) sendFrame(source, Type.Table, body);
    await Promise.all(
      table.slice(1).map(async (entry, i) => {
        const { host, port } = entry!;
        dialed.set(i + 1, await join(host, port, options, where, `rank ${i + 1}`, opened.sockets));
      }),
    );
  } else {
    const master = await join(options.masterAddr, options.masterPort, options, where, 'rank 0', opened.sockets);
    dialed.set(0, master);
    // where the others reach this rank: the address it reaches rank 0 from, unless --bind names one
    const reached = master.socket.localAddress!.replace(/^::ffff:/, '');
    const wildcard = options.bind === '0.0.0.0' || options.bind === '::';
    const host = options.bind && !wildcard ? options.bind : reached;
    server = await listen(options.bind ?? host, 0, where);
    opened.servers.push(server);
    acceptAll(server);
    const port = (server.address() as { port: number }).port;
    sendFrame(master, Type.Hello, Buffer.from(`${host} ${port}`));
    const { payload } = await readHandshakeFrame(master, Type.Table, options.timeoutMs, `${where}: the rank table from rank 0`);
    const table = JSON.parse(payload.toString('utf8')) as ({ host: string; port: number } | null)[];
    await Promise.all(
      table.map(async (entry, peer) => {
        if (peer === 0 || peer === rank) return;
        dialed.set(peer, await join(entry!.host, entry!.port, options, where, `rank ${peer}`, opened.sockets));
      }),
    );
  }
  await waitForAccepts(size - 1);
  // the rank-0 connection of a rank carried the table: the Link reads it from here on. What a peer
  // sent before this rank's communicator exists (frames, garbage, a record that does not open) is
  // held since the handshake and parsed as its Link is made: it reaches the communicator once it is there.
  let comm: TcpCommunicator | null = null;
  const before: ((comm: TcpCommunicator) => void)[] = [];
  const event = (what: (comm: TcpCommunicator) => void) => (comm ? what(comm) : before.push(what));
  const limit = () => HEADER + 4 * options.capacity + 1024;
  for (let peer = 0; peer < size; peer++) {
    if (peer === rank) continue;
    links[peer] = new Link(peer, dialed.get(peer)!, accepted.get(peer)!, limit, (l, f, p) => event((c) => c.onFrame(l, f, p!)), (l, what) => event((c) => c.garbage(l, what)), (l, what) => event((c) => c.tampered(l, what)));
  }
  // the group is complete: the listener closes, so a later connection is refused by the kernel —
  // no challenge, no log line, no memory (kept open, each one cost ≈1 KiB and two lines)
  formed = true;
  server.removeAllListeners('connection');
  server.close();
  for (const socket of pending) socket.destroy(); // strangers still in their handshake: nothing holds the job for them
  comm = new TcpCommunicator(rank, size, links, null, options);
  comm.attach();
  for (const what of before) what(comm);
  return comm;
}
