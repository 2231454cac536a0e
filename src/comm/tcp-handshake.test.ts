// The tcp handshake against hand-made peers: a stranger at rank 0's port that sends garbage, an
// oversized or malformed proof, a proof replayed from another connection, or nothing; a peer that
// knows the secret but claims a rank it cannot have; and a fake rank 0 that does not know the
// secret (its acceptance and its refusals are not believed, and it gets no data). Each is refused
// with a line naming what was wrong, and the job forms anyway.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { hmac, connectTcp } from './tcp-rendezvous.js';
import { transportSecurities } from './tcp-seal.js';
import { header, HEADER, Type } from './tcp-wire.js';
import type { CommunicationError } from '../errors.js';
import { freePort } from '../launch/local-job.js';
import { listenOnLoopback } from './tcp-group.test.fixture.js';

const secret = 'a-job-secret-123';

/** A connection's frames, read whole one at a time (null once it closes). */
function frameReader(socket: Socket): () => Promise<{ type: number; payload: Buffer } | null> {
  let data = Buffer.alloc(0);
  let closed = false;
  let wake: (() => void) | null = null;
  socket.on('data', (chunk: Buffer) => {
    data = Buffer.concat([data, chunk]);
    wake?.();
  });
  socket.on('close', () => {
    closed = true;
    wake?.();
  });
  return () => new Promise((resolve) => {
    const check = () => {
      if (data.length >= HEADER && data.length >= HEADER + data.readUInt32LE(20)) {
        const type = data.readUInt8(4);
        const payload = Buffer.from(data.subarray(HEADER, HEADER + data.readUInt32LE(20)));
        data = data.subarray(HEADER + payload.length);
        wake = null;
        resolve({ type, payload });
      } else if (closed) resolve(null);
    };
    wake = check;
    check();
  });
}

/** A connection to `port`, dialed again while nobody listens there yet. */
async function dialed(port: number): Promise<Socket> {
  for (;;) {
    const socket = connect({ host: '127.0.0.1', port });
    const error = await new Promise<Error | null>((resolve) => socket.once('connect', () => resolve(null)).once('error', resolve));
    if (!error) return socket;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

const frame = (type: number, payload: Buffer, bytes = payload.length) => Buffer.concat([header(type, 0, 0, 0, 0, 0, bytes), payload]);

/** Who a peer says it is (tcp-rendezvous' identityOf, written out). */
function identity(rank: number, size: number, job = '', mode = transportSecurities.indexOf('encrypt')): Buffer {
  const bytes = Buffer.alloc(12 + job.length);
  bytes.writeInt32LE(rank, 0);
  bytes.writeInt32LE(size, 4);
  bytes.writeUInt8(mode, 8);
  bytes.writeUInt16LE(job.length, 10);
  bytes.write(job, 12);
  return bytes;
}

/** A genuine proof of `who` for the challenge `challenge`, with the dialer's nonce `nonce`. */
const auth = (challenge: Buffer, who: Buffer, nonce = Buffer.alloc(16, 7)) => frame(Type.Auth, Buffer.concat([who, nonce, hmac(secret, 'converge-connect', challenge, who)]));

/** Resolves once `lines`, from `from` on, has a line matching `pattern` (polled: the test's own timeout bounds it). */
async function logged(lines: string[], from: number, pattern: RegExp): Promise<string> {
  for (;;) {
    const line = lines.slice(from).find((l) => pattern.test(l));
    if (line) return line;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

test('tcp handshake: a stranger at rank 0 that sends garbage, a proof too long, malformed, replayed or without the secret, or nothing, is refused, each named in one line; one with the secret that claims an impossible rank is told why; the job forms', async () => {
  const port = await freePort();
  const logs: string[] = [];
  const zero = connectTcp({ rank: 0, size: 2, masterAddr: '127.0.0.1', masterPort: port, secret, timeoutMs: 8_000, handshakeMs: 300, capacity: 100, log: (line) => logs.push(line) });
  let replayable: Buffer | null = null;
  const cases: [string, (challenge: Buffer, socket: Socket) => Buffer | null | Promise<null>, RegExp, string?][] = [
    ['garbage', () => Buffer.alloc(24, 0xab), /: garbage instead of the handshake \(magic 0xabababab, type 171, 2880154539 bytes\)\.$/],
    ['a proof over the handshake limit', () => frame(Type.Auth, Buffer.alloc(0), 65537), /: garbage instead of the handshake \(magic 0x31475643, type 6, 65537 bytes\)\.$/],
    ['a proof at the handshake limit', () => frame(Type.Auth, Buffer.alloc(65536)), /: a malformed authentication of 65536 bytes\.$/],
    ['a frame of another type', () => frame(Type.Data, Buffer.alloc(8)), /: garbage instead of the handshake \(magic 0x31475643, type 1, 8 bytes\)\.$/],
    ['a proof without the magic', (c) => { const bytes = auth(c, identity(1, 2)); bytes.writeUInt32LE(0x12345678, 0); return bytes; }, /: garbage instead of the handshake \(magic 0x12345678, type 6, 60 bytes\)\.$/],
    ['a reset', async (_, socket) => { socket.resetAndDestroy(); return null; }, /: the connection closed during the handshake \(wrong secret, or not a converge rank\)\.$/],
    ['a proof shorter than an identity', () => frame(Type.Auth, Buffer.alloc(10)), /: a malformed authentication of 10 bytes\.$/],
    ['a proof whose identity claims a longer job name', () => { const who = identity(1, 2); who.writeUInt16LE(5, 10); return frame(Type.Auth, Buffer.concat([who, Buffer.alloc(48)])); }, /: a malformed authentication of 60 bytes\.$/],
    ['a proof without the secret', () => frame(Type.Auth, Buffer.concat([identity(1, 2), Buffer.alloc(48, 1)])), /: refused: the peer does not know the job secret \(CONVERGE_SECRET\)\.$/],
    // a genuine proof of an earlier connection (seen on the wire) does not answer this connection's challenge
    ['a proof replayed from another connection', () => replayable, /: refused: the peer does not know the job secret \(CONVERGE_SECRET\)\.$/],
    ['nothing', () => null, /: no handshake within 0\.3 s\.$/],
    ['the secret, and rank 5 of 2', (c) => auth(c, identity(5, 2)), /: refused: it claims rank 5, outside 0…1\.$/, 'it claims rank 5, outside 0…1'],
    ['the secret, and rank 2 of 2', (c) => auth(c, identity(2, 2)), /: refused: it claims rank 2, outside 0…1\.$/, 'it claims rank 2, outside 0…1'],
    // (its first piece shorter than a header, read apart from the rest)
    ['the secret, and rank 5 of 2, in two pieces', async (c, socket) => { const bytes = auth(c, identity(5, 2)); socket.write(bytes.subarray(0, 10)); await new Promise((resolve) => setTimeout(resolve, 50)); socket.write(bytes.subarray(10)); return null; }, /: refused: it claims rank 5, outside 0…1\.$/, 'it claims rank 5, outside 0…1'],
    ['the secret, and rank -1 of 2', (c) => auth(c, identity(-1, 2)), /: refused: it claims rank -1, outside 0…1\.$/, 'it claims rank -1, outside 0…1'],
    ['the secret, and another job', (c) => auth(c, identity(1, 2, 'job-b')), /: refused: it belongs to job "job-b", this rank to job "" \(CONVERGE_JOB_ID differs: two jobs share a port and a secret\)\.$/, 'it belongs to job "job-b", this rank to job "" (CONVERGE_JOB_ID differs: two jobs share a port and a secret)'],
    ['the secret, and another world size', (c) => auth(c, identity(1, 3)), /: refused: it claims to be rank 1 of 3, but this job has 2 ranks \(WORLD_SIZE differs\)\.$/, 'it claims to be rank 1 of 3, but this job has 2 ranks (WORLD_SIZE differs)'],
    ['the secret, and no transport security', (c) => auth(c, identity(1, 2, '', transportSecurities.indexOf('none'))), /: refused: it runs with --transport-security none, this rank with encrypt\.$/, 'it runs with --transport-security none, this rank with encrypt'],
    ['the secret, and a transport security that does not exist', (c) => auth(c, identity(1, 2, '', 7)), /: refused: it runs with --transport-security mode 7, this rank with encrypt\.$/, 'it runs with --transport-security mode 7, this rank with encrypt'],
    ['the secret, and rank 0, rank 0\'s own', (c) => auth(c, identity(0, 2)), /: refused: it claims rank 0, which is this rank \(two ranks were given RANK=0\)\.$/, 'it claims rank 0, which is this rank (two ranks were given RANK=0)'],
  ];
  try {
    for (const [what, answer, expected, told] of cases) {
      const before = logs.length;
      const socket = await dialed(port);
      const next = frameReader(socket);
      const challenge = await next();
      assert.equal(challenge?.type, Type.Challenge, what);
      assert.equal(challenge!.payload.length, 16, `${what}: a 16-byte nonce`);
      // (the replay case answers with the proof of the case before it, made for another challenge)
      replayable = auth(Buffer.alloc(16, 9), identity(1, 2));
      const bytes = await answer(challenge!.payload, socket);
      if (bytes) socket.write(bytes);
      const line = await logged(logs, before, new RegExp(`^rank 0: connection from 127\\.0\\.0\\.1:\\d+${expected.source}`));
      assert.equal(logs.length, before + 1, `${what}: one line (${line})`);
      // a peer that proved the secret is told why, with rank 0's proof of it; the others hear nothing
      const reply = await next();
      if (told) {
        assert.equal(reply?.type, Type.Refused, what);
        const reason = reply!.payload.subarray(32);
        assert.equal(reason.toString('utf8'), told);
        assert.ok(reply!.payload.subarray(0, 32).equals(hmac(secret, 'converge-refuse', Buffer.alloc(16, 7), reason)), `${what}: the refusal is proven`);
        assert.equal(await next(), null, `${what}: then closed`);
      } else assert.equal(reply, null, `${what}: closed without a word`);
    }
    // the job forms with its real rank 1, and works
    const comms = await Promise.all([zero, connectTcp({ rank: 1, size: 2, masterAddr: '127.0.0.1', masterPort: port, secret, timeoutMs: 20_000, capacity: 100 })]);
    const buffers = [Float32Array.of(1, 2), Float32Array.of(10, 20)];
    await Promise.all(comms.map((comm, r) => comm.allreduce(buffers[r])));
    assert.deepEqual(buffers.map((b) => Array.from(b)), [[11, 22], [11, 22]]);
    for (const comm of comms) comm.close();
  } catch (error) {
    void zero.then((comm) => comm.close(), () => {});
    throw error;
  }
});

/** A fake rank 0 at a port of its own that answers rank 1's connection with `reply(challenge's answer)`. */
async function fakeRankZero(reply: (auth: Buffer, socket: Socket, next: () => Promise<{ type: number; payload: Buffer } | null>) => void, first = frame(Type.Challenge, Buffer.alloc(16, 3))): Promise<number> {
  const server = createServer((socket) => {
    server.close();
    const next = frameReader(socket);
    socket.write(first);
    void next().then((answer) => answer && reply(answer.payload, socket, next));
  });
  return listenOnLoopback(server);
}

/** The dialer's nonce in its proof (identity, nonce, HMAC). */
const nonceOf = (answer: Buffer) => answer.subarray(answer.length - 48, answer.length - 32);

test('tcp handshake: rank 1 believes neither the acceptance nor the refusal of a rank 0 that does not know the secret, and sends it nothing', async () => {
  const failedProof = /the peer failed to prove the job secret; refusing to send it data\.$/;
  const refusal = (answer: Buffer, text: Buffer, key = secret) => frame(Type.Refused, Buffer.concat([hmac(key, 'converge-refuse', nonceOf(answer), text), text]));
  // (a record that does not open: its length, 4 bytes, and a tag that is not theirs)
  const forged = Buffer.concat([Buffer.from([4, 0, 0, 0]), Buffer.alloc(20, 9)]);
  const broken = /^rank 1: the rank table from rank 0: record #0 does not authenticate\.$/;
  for (const [what, reply, expected, code, first] of [
    ['an acceptance without the secret', (answer: Buffer, socket: Socket) => socket.write(frame(Type.AuthOk, hmac('another-secret!!', 'converge-accept', nonceOf(answer)))), failedProof, 'BAD_SECRET'],
    ['an acceptance of another length', (answer: Buffer, socket: Socket) => socket.write(frame(Type.AuthOk, Buffer.concat([hmac(secret, 'converge-accept', nonceOf(answer)), Buffer.alloc(1)]))), failedProof, 'BAD_SECRET'],
    ['a refusal without the secret', (answer: Buffer, socket: Socket) => socket.write(refusal(answer, Buffer.from('go away'), 'another-secret!!')), failedProof, 'BAD_SECRET'],
    ['a refusal shorter than a proof', (_: Buffer, socket: Socket) => socket.write(frame(Type.Refused, Buffer.alloc(10, 1))), failedProof, 'BAD_SECRET'],
    ['a refusal that carries the acceptance proof', (answer: Buffer, socket: Socket) => socket.write(frame(Type.Refused, hmac(secret, 'converge-accept', nonceOf(answer)))), failedProof, 'BAD_SECRET'],
    ['a genuine refusal', (answer: Buffer, socket: Socket) => socket.write(refusal(answer, Buffer.from('no room'))), /refused this rank: no room\.$/, 'REFUSED'],
    ['a genuine refusal without a reason', (answer: Buffer, socket: Socket) => socket.write(refusal(answer, Buffer.alloc(0))), /refused this rank: \.$/, 'REFUSED'],
    ['garbage', (_: Buffer, socket: Socket) => socket.write(Buffer.alloc(30, 0x55)), /garbage instead of the handshake \(magic 0x55555555, type 85, 1431655765 bytes\)\.$/, 'HANDSHAKE'],
    ['garbage instead of the challenge', () => {}, /garbage instead of the handshake \(magic 0x66666666, type 102, 1717986918 bytes\)\.$/, 'HANDSHAKE', Buffer.alloc(30, 0x66)],
    // a genuine acceptance, then a record that does not open: sent with it (the connection breaks as rank 1 begins to open records), or once rank 1 waits for the table
    ['an acceptance and a forged record with it', (answer: Buffer, socket: Socket) => socket.write(Buffer.concat([frame(Type.AuthOk, hmac(secret, 'converge-accept', nonceOf(answer))), forged])), broken, 'TAMPERED'],
    ['an acceptance, then a forged record', (answer: Buffer, socket: Socket) => { socket.once('data', () => socket.write(forged)); socket.write(frame(Type.AuthOk, hmac(secret, 'converge-accept', nonceOf(answer)))); }, broken, 'TAMPERED'],
  ] as const) {
    const port = await fakeRankZero(reply, first);
    const error = await connectTcp({ rank: 1, size: 2, masterAddr: '127.0.0.1', masterPort: port, secret, timeoutMs: 3000, capacity: 100 }).then(() => null, (e: CommunicationError) => e);
    const where = code === 'TAMPERED' ? '' : `^rank 1: rank 0 at 127\\.0\\.0\\.1:${port}: `;
    assert.match(String(error?.message), new RegExp(`${where}${expected.source}`), what);
    assert.equal(error?.code, code, what);
  }
});

test('tcp handshake: rank 1 proves who it is: its rank, the world size, its transport security and its job, bound to rank 0\'s challenge', async () => {
  let proof = null as Buffer | null;
  const port = await fakeRankZero((answer, socket) => {
    proof = answer;
    socket.destroy();
  });
  await connectTcp({ rank: 1, size: 3, masterAddr: '127.0.0.1', masterPort: port, secret, timeoutMs: 3000, capacity: 100, job: 'job-7', security: 'integrity' }).catch(() => {});
  const who = identity(1, 3, 'job-7', transportSecurities.indexOf('integrity'));
  assert.ok(proof, 'rank 1 answered');
  assert.ok(proof!.subarray(0, who.length).equals(who), 'its identity');
  assert.equal(proof!.length, who.length + 16 + 32);
  assert.ok(proof!.subarray(who.length + 16).equals(hmac(secret, 'converge-connect', Buffer.alloc(16, 3), who)), 'proven for this challenge');
});

test('tcp handshake: nobody at rank 0\'s port, a port already taken, ranks that never come: each fails within --timeout, naming what to check', async () => {
  const base = { masterAddr: '127.0.0.1', secret, timeoutMs: 400, capacity: 100 };
  const failure = (joining: Promise<{ close(): void }>) => joining.then((comm) => { comm.close(); return 'joined'; }, (error: CommunicationError) => `${error.code}: ${error.message}`);
  const nobody = await freePort();
  assert.equal(await failure(connectTcp({ ...base, rank: 1, size: 2, masterPort: nobody })),
    `CONNECT: rank 1: cannot connect to 127.0.0.1:${nobody} (ECONNREFUSED) within 0.4 s; check MASTER_ADDR/MASTER_PORT and that rank 0 runs.`);
  // a rank 0 that closes every connection before its challenge: dialed again until --timeout
  const closing = createServer((socket) => socket.end());
  const closes = await listenOnLoopback(closing);
  try {
    assert.equal(await failure(connectTcp({ ...base, rank: 1, size: 2, masterPort: closes })), `NO_CHALLENGE: rank 1: rank 0 at 127.0.0.1:${closes}: the connection was closed before the handshake began.`);
  } finally {
    closing.close();
  }
  // a rank 0 that comes later (within --timeout) is dialed again until it listens
  const later = await freePort();
  const one = connectTcp({ ...base, timeoutMs: 3000, rank: 1, size: 2, masterPort: later });
  await new Promise((resolve) => setTimeout(resolve, 300));
  const comms = await Promise.all([connectTcp({ ...base, timeoutMs: 3000, rank: 0, size: 2, masterPort: later }), one]);
  for (const comm of comms) comm.close();
  const taken = createServer();
  const port = await listenOnLoopback(taken);
  try {
    assert.equal(await failure(connectTcp({ ...base, rank: 0, size: 2, masterPort: port })), `LISTEN: rank 0: cannot listen on 127.0.0.1:${port} (EADDRINUSE); is the port taken?`);
    // a job of one rank listens nowhere
    assert.equal(await failure(connectTcp({ ...base, rank: 0, size: 1, masterPort: port })), 'joined');
  } finally {
    taken.close();
  }
  for (const [size, missing] of [[2, 'rank 1'], [3, 'ranks 1, 2']] as const) {
    assert.equal(await failure(connectTcp({ ...base, rank: 0, size, masterPort: await freePort() })),
      `RENDEZVOUS: rank 0: rendezvous timed out after 0.4 s; ${missing} never connected — were all ${size} ranks started with the same MASTER_ADDR, MASTER_PORT and secret?`);
  }
});

test('tcp handshake: a second peer with the secret that claims a rank already joined is told so, and rank 0 logs it', async () => {
  const port = await freePort();
  const logs: string[] = [];
  const zero = connectTcp({ rank: 0, size: 3, masterAddr: '127.0.0.1', masterPort: port, secret, timeoutMs: 600, capacity: 100, log: (line) => logs.push(line) }).then(() => 'joined', (error: Error) => error.message);
  const replies: ({ type: number; payload: Buffer } | null)[] = [];
  for (let i = 0; i < 2; i++) {
    const socket = await dialed(port);
    const next = frameReader(socket);
    const challenge = await next();
    socket.write(auth(challenge!.payload, identity(2, 3)));
    replies.push(await next());
  }
  assert.equal(replies[0]?.type, Type.AuthOk, 'the first is rank 2');
  assert.equal(replies[1]?.type, Type.Refused);
  assert.equal(replies[1]!.payload.subarray(32).toString('utf8'), 'rank 2 has already joined (two ranks were given RANK=2)');
  assert.ok(logs.some((line) => /^rank 0: connection from 127\.0\.0\.1:\d+: refused: rank 2 has already joined \(two ranks were given RANK=2\)\.$/.test(line)), logs.join('\n'));
  // rank 1 never came
  assert.equal(await zero, 'rank 0: rendezvous timed out after 0.6 s; rank 1 never connected — were all 3 ranks started with the same MASTER_ADDR, MASTER_PORT and secret?');
});

/** Whether a connection to host:port is taken (true) or refused (false). */
const answers = (host: string, port: number) => new Promise<boolean>((resolve) => {
  const socket = connect({ host, port });
  socket.once('connect', () => { socket.destroy(); resolve(true); }).once('error', () => resolve(false));
});

test('tcp rendezvous: a rank listens on the address it reaches rank 0 from, or on --bind\'s, and tells rank 0 that address; --bind 0.0.0.0 listens on every interface but tells the reached one', async () => {
  // (every 127/8 address is loopback on Linux: rank 1 reaches rank 0 from 127.0.0.1, whatever it binds)
  for (const [bind, told, taken, refused] of [
    [undefined, '127.0.0.1', '127.0.0.1', '127.0.0.2'],
    ['127.0.0.2', '127.0.0.2', '127.0.0.2', '127.0.0.1'],
    ['0.0.0.0', '127.0.0.1', '127.0.0.3', null],
  ] as const) {
    let hello: (frame: { type: number; payload: Buffer } | null) => void = () => {};
    const said = new Promise<{ type: number; payload: Buffer } | null>((resolve) => (hello = resolve));
    let fake: Socket | null = null;
    const port = await fakeRankZero((answer, socket, next) => {
      fake = socket;
      socket.write(frame(Type.AuthOk, hmac(secret, 'converge-accept', nonceOf(answer))));
      void next().then(hello);
    });
    // security none: the address rank 1 sends after the handshake can be read here
    const one = connectTcp({ rank: 1, size: 2, masterAddr: '127.0.0.1', masterPort: port, secret, timeoutMs: 3000, capacity: 100, security: 'none', bind }).then(() => 'joined', (error: Error) => error.message);
    const address = await said;
    assert.equal(address?.type, Type.Hello, `bind ${bind}`);
    const [host, listening] = address!.payload.toString('utf8').split(' ');
    assert.equal(host, told, `bind ${bind}: the address rank 0 is told`);
    assert.ok(await answers(taken, Number(listening)), `bind ${bind}: rank 1 listens on ${taken}:${listening}`);
    if (refused) assert.equal(await answers(refused, Number(listening)), false, `bind ${bind}: rank 1 does not listen on ${refused}`);
    fake!.destroy();
    assert.match(await one, /^rank 1: the rank table from rank 0: the connection closed during the handshake/, `bind ${bind}`);
  }
});

/** Plays a rank that dials `port` with the secret at security none and is accepted: the connection, its frames after the acceptance. */
async function fakeRank(port: number, rank: number, size: number): Promise<{ socket: Socket; next: ReturnType<typeof frameReader> }> {
  const socket = await dialed(port);
  const next = frameReader(socket);
  const challenge = await next();
  socket.write(auth(challenge!.payload, identity(rank, size, '', transportSecurities.indexOf('none'))));
  assert.equal((await next())?.type, Type.AuthOk);
  return { socket, next };
}

/** A port where whoever connects is sent garbage. */
async function garbageServer(): Promise<{ port: number; close: () => void }> {
  const server = createServer((socket) => socket.end(Buffer.alloc(30, 0x44)));
  return { port: await listenOnLoopback(server), close: () => server.close() };
}

test('tcp rendezvous: a rank that never says where it listens, or gives an address where something else answers, fails rank 0 naming that rank; a table that sends rank 1 to such an address fails rank 1 naming the rank it dialed', async () => {
  const none = { secret, capacity: 100, masterAddr: '127.0.0.1', security: 'none' as const };
  const garbage = await garbageServer();
  const said = /garbage instead of the handshake \(magic 0x44444444, type 68, 1145324612 bytes\)\.$/;
  try {
    // silent: no address within --timeout
    let port = await freePort();
    let zero = connectTcp({ ...none, rank: 0, size: 2, masterPort: port, timeoutMs: 500 }).then(() => 'joined', (error: Error) => error.message);
    let one = await fakeRank(port, 1, 2);
    assert.equal(await zero, "rank 0: rank 1's address: no handshake within 0.5 s.");
    one.socket.destroy();
    // an address where something else answers
    port = await freePort();
    zero = connectTcp({ ...none, rank: 0, size: 2, masterPort: port, timeoutMs: 3000 }).then(() => 'joined', (error: Error) => error.message);
    one = await fakeRank(port, 1, 2);
    one.socket.write(frame(Type.Hello, Buffer.from(`127.0.0.1 ${garbage.port}`)));
    assert.match(await zero, new RegExp(`^rank 0: rank 1 at 127\\.0\\.0\\.1:${garbage.port}: ${said.source}`));
    one.socket.destroy();
    // rank 0's table sends rank 1 to rank 2 there
    const fake = await fakeRankZero((answer, socket, next) => {
      socket.write(frame(Type.AuthOk, hmac(secret, 'converge-accept', nonceOf(answer))));
      void next().then((hello) => {
        const [host, listening] = hello!.payload.toString('utf8').split(' ');
        socket.write(frame(Type.Table, Buffer.from(JSON.stringify([null, { host, port: Number(listening) }, { host: '127.0.0.1', port: garbage.port }]))));
      });
    });
    const message = await connectTcp({ ...none, rank: 1, size: 3, masterPort: fake, timeoutMs: 3000 }).then(() => 'joined', (error: Error) => error.message);
    assert.match(message, new RegExp(`^rank 1: rank 2 at 127\\.0\\.0\\.1:${garbage.port}: ${said.source}`));
  } finally {
    garbage.close();
  }
});

test('tcp rendezvous: what rank 0 sends before rank 1\'s group has formed reaches rank 1\'s communicator: a goodbye (rank 1\'s first receive from it fails at once), or garbage (its first operation fails, naming it)', async () => {
  for (const [what, early, expected] of [
    ['a goodbye', header(Type.Bye, 0, 0, 0, 0, 0, 0), /rank 0 \(last seen in the rendezvous\) finished its job and left while rank 1 still needs it/],
    ['garbage', Buffer.alloc(24, 0x33), /^rank 1: rank 0 sent garbage: a frame with magic 0x33333333 \(expected 0x31475643\); the connection is dropped/],
  ] as const) {
    const dialer: { socket: Socket | null } = { socket: null };
    const port = await fakeRankZero((answer, socket, next) => {
      socket.write(frame(Type.AuthOk, hmac(secret, 'converge-accept', nonceOf(answer))));
      void next().then(async (hello) => {
        const [host, listening] = hello!.payload.toString('utf8').split(' ');
        socket.write(Buffer.concat([frame(Type.Table, Buffer.from(JSON.stringify([null, { host, port: Number(listening) }]))), early]));
        // then dial rank 1 as rank 0 does: with this, its group is complete
        const back = connect({ host, port: Number(listening) });
        dialer.socket = back;
        const frames = frameReader(back);
        const challenge = await frames();
        back.write(auth(challenge!.payload, identity(0, 2, '', transportSecurities.indexOf('none'))));
      });
    });
    const comm = await connectTcp({ rank: 1, size: 2, masterAddr: '127.0.0.1', masterPort: port, secret, timeoutMs: 3000, capacity: 100, security: 'none' });
    try {
      const message = await comm.recv(new Float32Array(2), 0).then(() => 'received', (error: Error) => error.message);
      assert.match(message, expected, what);
    } finally {
      comm.close();
      dialer.socket?.destroy();
    }
  }
});

test('tcp rendezvous: a rank 0 without a log (a library caller) goes on past strangers that send garbage or come beyond the cap', async () => {
  const port = await freePort();
  const base = { size: 2, masterAddr: '127.0.0.1', masterPort: port, secret, timeoutMs: 5000, handshakeMs: 5000, capacity: 100 };
  const zero = connectTcp({ ...base, rank: 0 });
  const strangers: Socket[] = [];
  // four idle strangers fill the quota (2 a rank); the fifth is turned away, the sixth sends garbage once one has left
  for (let i = 0; i < 5; i++) {
    const socket = await dialed(port);
    strangers.push(socket);
    if (i < 4) await frameReader(socket)();
    else await new Promise((resolve) => socket.once('close', resolve));
  }
  strangers[0].destroy();
  // (turned away too until rank 0 has seen the first one leave)
  let sixth: Socket;
  for (;;) {
    sixth = await dialed(port);
    strangers.push(sixth);
    if (await frameReader(sixth)()) break;
  }
  sixth.write(Buffer.alloc(24, 0x22));
  await new Promise((resolve) => sixth.once('close', resolve));
  for (const socket of strangers) socket.destroy();
  const comms = await Promise.all([zero, connectTcp({ ...base, rank: 1 })]);
  const buffers = [Float32Array.of(1), Float32Array.of(2)];
  await Promise.all(comms.map((comm, r) => comm.allreduce(buffers[r])));
  assert.deepEqual(buffers.map((b) => b[0]), [3, 3]);
  for (const comm of comms) comm.close();
});
