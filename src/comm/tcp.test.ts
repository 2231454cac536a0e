// The tcp backend: the conformance suite with every rank its own process, the failure cases
// (a rank that throws, dies, stalls or calls the wrong collective), a peer without the job
// secret, and garbage on the wire.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { connect, createServer, type Socket } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { conformanceCases, failureDescription } from './conformance.js';
import { connectTcp } from './tcp-rendezvous.js';
import { RECORD, Sealer, sessionKeys, transportSecurities, type TransportSecurity } from './tcp-seal.js';
import { freePort, launchProcesses } from '../launch/local-job.js';
import { listenOnLoopback } from './tcp-group.test.fixture.js';

const script = new URL('./conformance.process.js', import.meta.url).pathname;
setFlagsFromString('--expose-gc'); // the churn test measures the heap after collecting

async function runCase(size: number, name: string, failure = false, env: NodeJS.ProcessEnv = {}) {
  const outputs: string[][] = Array.from({ length: size }, () => []);
  const started = Date.now();
  const result = await launchProcesses({
    processes: size,
    command: [process.execPath, script, 'tcp', name, failure ? 'failure' : ''],
    env: { CONVERGE_TEST_TIMEOUT_MS: failure ? '1000' : '20000', ...env },
    graceSeconds: 5,
    onLine: (rank, line) => outputs[rank].push(line),
  });
  const reports = outputs.map((lines) => {
    const json = lines.find((line) => line.startsWith('{'));
    return json ? (JSON.parse(json) as { ok?: boolean; error?: string }) : { error: lines.join('\n') || 'nothing printed' };
  });
  return { result, reports, outputs, seconds: (Date.now() - started) / 1000 };
}

for (const size of [2, 3]) {
  for (const name of Object.keys(conformanceCases)) {
    test(`tcp conformance, ${size} processes: ${name}`, async () => {
      const { result, reports } = await runCase(size, name);
      assert.equal(result.exitCode, 0, JSON.stringify(reports));
    });
  }
  // the cases above run encrypted (the default); the other modes run them all in one job each
  for (const security of ['integrity', 'none']) {
    test(`tcp conformance, ${size} processes, --transport-security ${security}: every case`, async () => {
      const { result, reports } = await runCase(size, 'all', false, { CONVERGE_TRANSPORT_SECURITY: security });
      assert.equal(result.exitCode, 0, JSON.stringify(reports));
    });
  }
}

const failures: Record<string, { failed: RegExp; survivor: RegExp }> = {
  // a survivor may hear of the failure before rank 0's release of the first barrier reaches it
  throws: { failed: /^boom$/, survivor: /^rank [02]: (allreduce #2|barrier #1) aborted: rank 1 failed: boom$/ },
  dies: { failed: /nothing printed/, survivor: /^rank [02]: (allreduce #2|barrier #1) aborted: rank 1 \(last seen in [^)]*\) (closed|broke) its connection/ },
  stalls: { failed: /nothing printed/, survivor: /^rank [02]: allreduce #2 (timed out after 1 s waiting for rank 1 \(computing after operation #1\)|aborted: rank [02]: allreduce #2 timed out after 1 s waiting for rank 1)/ },
  mismatch: { failed: /collective #2 mismatch: rank 1 called broadcast of 8 floats \(root 0\) but rank 0 called allreduce of 8 floats \(sum\)/, survivor: /collective #2 mismatch: rank \d called (allreduce|broadcast) of 8 floats \([^)]*\) but rank \d called (allreduce|broadcast) of 8 floats/ },
  messageSizeMismatch: { failed: /^rank 1: barrier #2 aborted: rank 0: recv of 8 floats got a message of 5 floats from rank 1/, survivor: /recv of 8 floats got a message of 5 floats from rank 1; sender and receiver must agree on message sizes\.$/ },
};

for (const security of transportSecurities) for (const [name, expected] of Object.entries(failures)) {
  test(`tcp failure handling (${security}): a rank that ${failureDescription(name)} fails every other rank within 10 s, naming it`, async () => {
    const { result, reports, seconds } = await runCase(3, name, true, { CONVERGE_TRANSPORT_SECURITY: security });
    assert.notEqual(result.exitCode, 0);
    assert.equal(result.codes.filter((code) => code === 0).length, 0, `every rank exits non-zero: ${result.codes}`);
    assert.match(reports[1].error ?? '', expected.failed);
    for (const rank of [0, 2]) assert.match(reports[rank].error ?? `rank ${rank} reported nothing`, expected.survivor);
    // a stalled rank is alive and does nothing: the launcher ends it after the grace period
    assert.ok(seconds < (name === 'stalls' ? 20 : 10), `the job ended after ${seconds} s`);
  });
}

test('tcp: a rank without the job secret is refused and named; nobody hangs', async () => {
  const port = await freePort();
  const logs: string[] = [];
  const base = { size: 2, masterAddr: '127.0.0.1', masterPort: port, timeoutMs: 1500, capacity: 1000 };
  const [zero, one] = await Promise.allSettled([
    connectTcp({ ...base, rank: 0, secret: 'the-right-secret', log: (line) => logs.push(line) }),
    connectTcp({ ...base, rank: 1, secret: 'a-wrong-secret!!' }),
  ]);
  assert.equal(zero.status, 'rejected');
  assert.match((zero as PromiseRejectedResult).reason.message, /^rank 0: rendezvous timed out after 1\.5 s; rank 1 never connected/);
  assert.equal(one.status, 'rejected');
  assert.match((one as PromiseRejectedResult).reason.message, /^rank 1: rank 0 at 127\.0\.0\.1:\d+: the connection closed during the handshake \(wrong secret, or not a converge rank\)\.$/);
  assert.ok(logs.some((line) => /^rank 0: connection from 127\.0\.0\.1:\d+: refused: the peer does not know the job secret \(CONVERGE_SECRET\)\.$/.test(line)), logs.join('\n'));
});

/** Reads whole frames from a socket, one at a time. */
function frames(socket: Socket): () => Promise<Buffer> {
  let data = Buffer.alloc(0);
  let waiting: (() => void) | null = null;
  socket.on('data', (chunk: Buffer) => {
    data = Buffer.concat([data, chunk]);
    waiting?.();
  });
  return () =>
    new Promise<Buffer>((resolve) => {
      const check = () => {
        if (data.length >= 24 && data.length >= 24 + data.readUInt32LE(20)) {
          const payload = data.subarray(24, 24 + data.readUInt32LE(20));
          data = data.subarray(24 + payload.length);
          waiting = null;
          resolve(payload);
        }
      };
      waiting = check;
      check();
    });
}

function sendFrame(socket: Socket, type: number, payload: Buffer): void {
  const header = Buffer.alloc(24);
  header.writeUInt32LE(0x31475643, 0);
  header.writeUInt8(type, 4);
  header.writeUInt32LE(payload.length, 20);
  socket.write(Buffer.concat([header, payload]));
}

/**
 * Plays rank 1 of 2 by hand, with the secret: joins at rank 0, then accepts the connection rank 0
 * dials to it (the one rank 0 reads rank 1's frames from) and hands it to `after`, with a function
 * that seals bytes as a genuine rank 1 would (the identity under `security`).
 */
async function fakeRank(port: number, secret: string, security: TransportSecurity, after: (socket: Socket, seal: (bytes: Buffer) => Buffer) => void): Promise<void> {
  const identity = Buffer.alloc(12);
  identity.writeInt32LE(1, 0);
  identity.writeInt32LE(2, 4);
  identity.writeUInt8(transportSecurities.indexOf(security), 8);
  const inbound = new Promise<Socket>((resolve) => {
    const server = createServer((socket) => {
      server.close();
      resolve(socket);
    });
    server.listen({ host: '127.0.0.1', port: 0 }, () => void join((server.address() as { port: number }).port));
  });
  const join = async (myPort: number) => {
    const master = connect({ host: '127.0.0.1', port });
    const next = frames(master);
    const challenge = await next();
    const nonce = randomBytes(16);
    sendFrame(master, 6, Buffer.concat([identity, nonce, createHmac('sha256', secret).update('converge-connect').update(challenge).update(identity).digest()]));
    await next(); // rank 0's proof
    const header = Buffer.alloc(24);
    header.writeUInt32LE(0x31475643, 0);
    header.writeUInt8(3, 4);
    const hello = Buffer.from(`127.0.0.1 ${myPort}`);
    header.writeUInt32LE(hello.length, 20);
    // the address goes sealed, as from here on everything does
    master.write(sealer(sessionKeys(secret, challenge, nonce, security).dialerToAcceptor, security)(Buffer.concat([header, hello])));
    // (the table comes back sealed: this rank needs nothing from it)
  };
  const socket = await inbound;
  const next = frames(socket);
  const challenge = Buffer.alloc(16);
  sendFrame(socket, 5, challenge); // (this test does not check rank 0's proof)
  const auth = await next();
  const theirNonce = auth.subarray(12, 28);
  sendFrame(socket, 7, createHmac('sha256', secret).update('converge-accept').update(theirNonce).digest());
  after(socket, sealer(sessionKeys(secret, challenge, theirNonce, security).acceptorToDialer, security));
}

/** Bytes as a rank writes them under `security`: records sealed with `key`, numbered from 0. */
function sealer(key: Buffer, security: TransportSecurity): (bytes: Buffer) => Buffer {
  const seal = new Sealer(key, security === 'encrypt');
  return (bytes) => {
    if (security === 'none') return bytes;
    const pieces: Uint8Array[] = [];
    seal.seal(bytes, (piece) => void pieces.push(Buffer.from(piece)));
    return Buffer.concat(pieces);
  };
}

for (const security of ['none', 'encrypt'] as const) {
  for (const [what, bytes, expected] of [
    ['a frame with a wrong magic', () => Buffer.alloc(24, 0xab), /rank 0: rank 1 sent garbage: a frame with magic 0xabababab \(expected 0x31475643\); the connection is dropped/],
    ['a frame claiming 4 GB', () => { const b = Buffer.alloc(24); b.writeUInt32LE(0x31475643, 0); b.writeUInt8(1, 4); b.writeUInt32LE(0xffffffff, 20); return b; }, /rank 0: rank 1 sent garbage: a frame of 4294967295 bytes, more than the \d+ allowed/],
    // the limit is the largest message the job can send (capacity 1,000 floats) plus the header and 1 KiB: one byte more is refused
    ['a frame one byte over the limit', () => { const b = Buffer.alloc(24); b.writeUInt32LE(0x31475643, 0); b.writeUInt8(1, 4); b.writeUInt32LE(24 + 4 * 1000 + 1024 + 1, 20); return b; }, /rank 0: rank 1 sent garbage: a frame of 5049 bytes, more than the 5048 allowed/],
    ['a frame of an unknown type', () => { const b = Buffer.alloc(24); b.writeUInt32LE(0x31475643, 0); b.writeUInt8(77, 4); return b; }, /rank 0: rank 1 sent garbage: a frame of unknown type 77/],
  ] as const) {
    test(`tcp (${security}): ${what}${security === 'none' ? '' : ', sealed by a rank that knows the secret,'} fails the waiting rank with an error, not a crash or an allocation`, async () => {
      const port = await freePort();
      const secret = 'a-job-secret-123';
      const rankZero = connectTcp({ rank: 0, size: 2, masterAddr: '127.0.0.1', masterPort: port, secret, timeoutMs: 5000, capacity: 1000, log: () => {}, security });
      await fakeRank(port, secret, security, (socket, seal) => setTimeout(() => socket.write(seal(bytes())), 50));
      const comm = await rankZero;
      await assert.rejects(comm.allreduce(new Float32Array(8)), expected);
      comm.close();
    });
  }
}

for (const security of ['encrypt', 'integrity'] as const) {
  for (const [what, bytes, reason] of [
    // the frame parser never sees it: its first bytes read as a record's length
    ['a well-formed frame sent without a seal', () => { const b = Buffer.alloc(24 + 32); b.writeUInt32LE(0x31475643, 0); b.writeUInt8(1, 4); b.writeUInt32LE(32, 20); return b; }, new RegExp(`record #0 claims 826758723 bytes, more than the ${RECORD} a record holds`)],
    ['a record with a forged tag', () => { const b = Buffer.alloc(4 + 32 + 16); b.writeUInt32LE(32, 0); return b; }, /record #0 does not authenticate/],
  ] as const) {
    test(`tcp (${security}): ${what} fails authentication — the rank stops, naming the peer`, async () => {
      const port = await freePort();
      const secret = 'a-job-secret-123';
      const rankZero = connectTcp({ rank: 0, size: 2, masterAddr: '127.0.0.1', masterPort: port, secret, timeoutMs: 5000, capacity: 1000, log: () => {}, security });
      await fakeRank(port, secret, security, (socket) => setTimeout(() => socket.write(bytes()), 50));
      const comm = await rankZero;
      const error = await comm.allreduce(new Float32Array(8)).then(() => null, (e: Error) => e);
      assert.match(error?.message ?? 'no error', /^rank 0: data from rank 1 failed authentication \(.*\): the connection between them was altered; the job stops/);
      assert.match(error!.message, reason);
      comm.close();
    });
  }
}

/**
 * A relay on the path from rank 0 to rank 1 (rank 1 reaches rank 0 through it) that passes the
 * handshake and then flips one byte in every 64 KiB, as an attacker on the network would.
 */
async function flippingRelay(target: number): Promise<{ port: number; flipped: () => number; close: () => void }> {
  let flipped = 0;
  const sockets: Socket[] = [];
  const server = createServer((inbound) => {
    const outbound = connect({ host: '127.0.0.1', port: target });
    sockets.push(inbound, outbound);
    inbound.pipe(outbound);
    let seen = 0;
    outbound.on('data', (chunk: Buffer) => {
      const copy = Buffer.from(chunk);
      // the first 64 KiB (the handshake, the rank table) pass untouched
      for (let at = 65536 - (seen % 65536); at < copy.length; at += 65536) {
        if (seen + at >= 65536) {
          copy[at] ^= 0x5a;
          flipped++;
        }
      }
      seen += chunk.length;
      inbound.write(copy);
    });
    for (const socket of [inbound, outbound]) socket.on('error', () => {}).on('close', () => { inbound.destroy(); outbound.destroy(); });
  });
  return { port: await listenOnLoopback(server), flipped: () => flipped, close: () => { server.close(); for (const s of sockets) s.destroy(); } };
}

for (const security of transportSecurities) {
  test(`tcp (${security}): bytes altered on the wire after the handshake ${security === 'none' ? 'go unnoticed (a trusted fabric is trusted)' : 'stop the job on every rank, naming the peer whose data failed'}`, async () => {
    const port = await freePort();
    const relay = await flippingRelay(port);
    const base = { size: 2, masterAddr: '127.0.0.1', secret: 'a-job-secret-123', timeoutMs: 5000, capacity: 1 << 20, log: () => {}, security };
    const comms = await Promise.all([connectTcp({ ...base, rank: 0, masterPort: port }), connectTcp({ ...base, rank: 1, masterPort: relay.port })]);
    const n = 1 << 20;
    const buffers = [new Float32Array(n).fill(1), new Float32Array(n).fill(2)];
    const results = await Promise.allSettled(comms.map((comm, r) => comm.allreduce(buffers[r])));
    relay.close();
    for (const comm of comms) comm.close();
    assert.ok(relay.flipped() > 0, 'the relay altered the stream');
    if (security === 'none') {
      assert.deepEqual(results.map((r) => r.status), ['fulfilled', 'fulfilled']);
      assert.ok(buffers[1].some((x) => x !== 3), 'the sum is silently wrong');
    } else {
      for (const [rank, result] of results.entries()) {
        assert.equal(result.status, 'rejected', `rank ${rank} fails`);
        assert.match((result as PromiseRejectedResult).reason.message, /rank 1: data from rank 0 failed authentication \(record #\d+ does not authenticate\): the connection between them was altered/, `rank ${rank}`);
      }
    }
  });
}

test('tcp: once the group has formed, its listeners are closed — 10,000 strangers\' connections are refused at once, cost no memory and no log line, and the group works on', async () => {
  const port = await freePort();
  const logs: string[] = [];
  const base = { size: 2, masterAddr: '127.0.0.1', masterPort: port, secret: 'a-job-secret-123', timeoutMs: 5000, capacity: 1000, log: (line: string) => logs.push(line) };
  const comms = await Promise.all([connectTcp({ ...base, rank: 0 }), connectTcp({ ...base, rank: 1 })]);
  const knock = () => new Promise<string>((resolve) => {
    const socket = connect({ host: '127.0.0.1', port });
    socket.on('connect', () => { socket.destroy(); resolve('connected'); });
    socket.on('error', (error: NodeJS.ErrnoException) => resolve(error.code ?? error.message));
  });
  await Promise.all(Array.from({ length: 100 }, knock)); // warm up what connecting itself allocates
  const gc = runInNewContext('gc') as () => void;
  gc();
  const before = process.memoryUsage().heapUsed;
  for (let batch = 0; batch < 100; batch++) {
    const outcomes = await Promise.all(Array.from({ length: 100 }, knock));
    assert.deepEqual(new Set(outcomes), new Set(['ECONNREFUSED']), `batch ${batch} of connections after the group formed`);
  }
  gc();
  const grown = process.memoryUsage().heapUsed - before;
  assert.ok(grown < 2 * 1024 * 1024, `the heap grew ${(grown / 1024).toFixed(0)} KiB over 10,000 connections`);
  const buffers = [Float32Array.of(1, 2), Float32Array.of(10, 20)];
  await Promise.all(comms.map((comm, r) => comm.allreduce(buffers[r], 'sum')));
  assert.deepEqual(buffers.map((b) => [...b]), [[11, 22], [11, 22]]);
  assert.deepEqual(logs, [], 'no line for the strangers');
  for (const comm of comms) comm.close();
});

/** A connection to the port that never says a word; resolves `opened` once connected and `closed` with how many bytes it was sent. */
function stranger(port: number): { opened: Promise<void>; closed: Promise<number>; socket: Socket } {
  const socket = connect({ host: '127.0.0.1', port });
  let bytes = 0;
  socket.on('data', (chunk: Buffer) => (bytes += chunk.length));
  socket.on('error', () => {});
  return { socket, opened: new Promise((resolve) => socket.once('connect', () => resolve())), closed: new Promise((resolve) => socket.once('close', () => resolve(bytes))) };
}

/** `promise`, or `fallback` if it has not settled within `ms` (a bound on a wait, not a measured time). */
const within = <T>(promise: Promise<T>, ms: number, fallback: T) => Promise.race([promise, new Promise<T>((resolve) => setTimeout(() => resolve(fallback), ms).unref())]);

test('tcp: idle strangers are capped while the group forms, and dropped (quietly) once it has formed — they cannot hold a job', async () => {
  const port = await freePort();
  const logs: string[] = [];
  // a long handshake window and timeout: only the group's forming can end the strangers' wait here
  const base = { size: 2, masterAddr: '127.0.0.1', masterPort: port, secret: 'a-job-secret-123', timeoutMs: 60_000, handshakeMs: 60_000, capacity: 1000, log: (line: string) => logs.push(line) };
  const strangers: ReturnType<typeof stranger>[] = [];
  const zero = connectTcp({ ...base, rank: 0 });
  let one: ReturnType<typeof connectTcp> | null = null;
  try {
    // 2 per rank may be proving the secret at once: the fifth stranger is turned away unanswered, and the
    // sixth and seventh, within the same second, without another line
    for (let i = 0; i < 7; i++) {
      strangers.push(stranger(port));
      await strangers[i].opened;
      await within(new Promise<void>((resolve) => strangers[i].socket.once('data', () => resolve())), 200, undefined); // counted before the next
    }
    for (const i of [4, 5, 6]) assert.equal(await within(strangers[i].closed, 10_000, -1), 0, `stranger ${i + 1} is closed without a challenge`);
    assert.deepEqual(logs.map((line) => line.replace(/:\d+:/, ':PORT:')), ['rank 0: refused a connection from 127.0.0.1: 4 connections are already proving the secret (at most 4).']);
    // rank 1 is turned away too while the quota is full, and dials again: it joins once a stranger leaves
    one = connectTcp({ ...base, rank: 1 });
    strangers[0].socket.destroy();
    const comms = await Promise.all([zero, one]);
    for (const [i, s] of strangers.slice(1, 4).entries()) assert.ok((await within(s.closed, 10_000, -1)) > 0, `idle stranger ${i + 1} is dropped once the group has formed (it had its challenge)`);
    // the one that left by itself is news; the three dropped after the group formed are not
    assert.equal(logs.filter((line) => /closed during the handshake/.test(line)).length, 1, logs.join('\n'));
    const buffers = [Float32Array.of(1), Float32Array.of(2)];
    await Promise.all(comms.map((comm, r) => comm.allreduce(buffers[r], 'sum')));
    assert.deepEqual(buffers.map((b) => b[0]), [3, 3]);
  } finally {
    for (const s of strangers) s.socket.destroy();
    for (const comm of await Promise.allSettled([zero, ...(one ? [one] : [])])) if (comm.status === 'fulfilled') comm.value.close();
  }
});

test('tcp: a peer that knows the secret but cannot join is told why — another job, world size or transport security, a rank already taken — and rank 0 logs it', async () => {
  for (const [name, peers, expected, logged] of [
    ['world size', [{ rank: 1, size: 3 }], /^rank 1: rank 0 at 127\.0\.0\.1:\d+: refused this rank: it claims to be rank 1 of 3, but this job has 2 ranks \(WORLD_SIZE differs\)\.$/, /^rank 0: connection from 127\.0\.0\.1:\d+: refused: it claims to be rank 1 of 3/],
    ['duplicate rank', [{ rank: 1, size: 3 }, { rank: 1, size: 3 }], /^rank 1: rank 0 at 127\.0\.0\.1:\d+: refused this rank: rank 1 has already joined \(two ranks were given RANK=1\)\.$/, /^rank 0: connection from 127\.0\.0\.1:\d+: refused: rank 1 has already joined/],
    ['job', [{ rank: 1, size: 2, job: 'job-b' }], /^rank 1: rank 0 at 127\.0\.0\.1:\d+: refused this rank: it belongs to job "job-b", this rank to job "job-a" \(CONVERGE_JOB_ID differs: two jobs share a port and a secret\)\.$/, /^rank 0: connection from 127\.0\.0\.1:\d+: refused: it belongs to job "job-b"/],
    ['transport security', [{ rank: 1, size: 2, security: 'none' }], /^rank 1: rank 0 at 127\.0\.0\.1:\d+: refused this rank: it runs with --transport-security none, this rank with encrypt\.$/, /^rank 0: connection from 127\.0\.0\.1:\d+: refused: it runs with --transport-security none/],
  ] as const) {
    const port = await freePort();
    const logs: string[] = [];
    const base = { masterAddr: '127.0.0.1', masterPort: port, secret: 'a-job-secret-123', timeoutMs: 1500, capacity: 1000, job: 'job-a' };
    const zero = connectTcp({ ...base, rank: 0, size: name === 'duplicate rank' ? 3 : 2, log: (line) => logs.push(line) });
    zero.catch(() => {});
    const others: ReturnType<typeof connectTcp>[] = [];
    for (const peer of peers) {
      const other = connectTcp({ ...base, ...peer });
      other.catch(() => {}); // judged below, with the rest
      others.push(other);
      await new Promise((resolve) => setTimeout(resolve, 100)); // the first joins before the second dials
    }
    const results = await Promise.allSettled([zero, ...others]);
    const refused = results.slice(1).filter((r) => r.status === 'rejected' && /refused this rank/.test(r.reason.message)) as PromiseRejectedResult[];
    assert.equal(refused.length, 1, `${name}: ${results.map((r) => (r.status === 'rejected' ? r.reason.message : 'joined')).join(' | ')}`);
    assert.match(refused[0].reason.message, expected);
    assert.ok(logs.some((line) => logged.test(line)), `${name}: rank 0 logs why: ${logs.join('\n')}`);
    for (const r of results) if (r.status === 'fulfilled') r.value.close();
  }
});
