// Studies end to end: server ranks as processes, simulation runs as processes streaming over
// sealed TCP, results as NPY files. Oracles: the test simulation's closed-form outputs for
// every run's inputs (the design is reproducible), summed in two passes here; a study without
// faults for the ones with them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, existsSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawn, spawnSync } from 'node:child_process';
import { createServer, connect as dial, type Socket } from 'node:net';
import { parseNpy } from '../data/npy.js';
import * as api from '../index.js';
import { Design } from './design.js';
import { parseStudy } from './spec.js';
import { runCommand, runStudy, type StudySummary } from './launch.js';
import { CELLS, TIMESTEPS, outputs } from './simulation.test.fixture.js';
import { Kind, helloAsClient, helloAsServer, type Channel } from './wire.js';
import { mpirunAvailable } from '../launch/mpi-job.js';

const simulation = fileURLToPath(new URL('./simulation.test.fixture.js', import.meta.url));
const cli = fileURLToPath(new URL('../cli/main.js', import.meta.url));
const parameters = { x: { uniform: [-Math.PI, Math.PI] }, y: { normal: [1, 0.5] } };
const fields = { u: { cells: CELLS, timesteps: TIMESTEPS }, v: { cells: CELLS, timesteps: TIMESTEPS } };

const read = (dir: string, file: string) => {
  const npy = parseNpy(readFileSync(join(dir, file)), file);
  assert.deepEqual(npy.shape, [TIMESTEPS, CELLS]);
  assert.equal(npy.dtype, '<f8');
  return npy.values;
};
const relative = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

async function study(description: Record<string, unknown>, env: Record<string, string> = {}): Promise<{ dir: string; summary: StudySummary; lines: string[] }> {
  const dir = mkdtempSync(join(tmpdir(), 'converge-study-'));
  const lines: string[] = [];
  // through the public API, as a library's user runs a study
  const summary = await api.study({ simulation: { module: simulation }, parameters, fields, ...description }, { out: dir, env, log: (line) => lines.push(line) });
  return { dir, summary, lines };
}

test('a Monte-Carlo study over 3 server ranks: every statistic of every cell and timestep equals two passes over the runs\' outputs', async () => {
  const runs = 24;
  const { dir, summary } = await study({ design: 'monte-carlo', runs, servers: 3, concurrency: 3, seed: 5, statistics: { higher: true, thresholds: [100.5], quantiles: [0.5], covariance: [['u', 'v']] } });
  assert.equal(summary.runs, runs);
  assert.equal(summary.restarts, 0);
  // every value of both fields, once (float64), whichever rank kept it
  assert.equal(summary.bytesStreamed, runs * 2 * TIMESTEPS * CELLS * 8);
  const design = new Design([{ name: 'x', distribution: { kind: 'uniform', low: -Math.PI, high: Math.PI } }, { name: 'y', distribution: { kind: 'normal', mean: 1, sd: 0.5 } }], 'monte-carlo', 5);
  const all = Array.from({ length: runs }, (_, r) => {
    const [x, y] = design.inputs(r);
    return Array.from({ length: TIMESTEPS }, (_, t) => outputs({ x, y }, t));
  });
  const mean = read(dir, 'u.mean.npy');
  const variance = read(dir, 'u.variance.npy');
  const min = read(dir, 'u.min.npy');
  const max = read(dir, 'u.max.npy');
  const skewness = read(dir, 'u.skewness.npy');
  const exceedance = read(dir, 'u.exceedance-100.5.npy');
  const covariance = read(dir, 'u.covariance-u-v.npy');
  const vMean = read(dir, 'v.mean.npy');
  for (let t = 0; t < TIMESTEPS; t++) {
    for (let i = 0; i < CELLS; i++) {
      const u = all.map((run) => run[t].u[i]);
      const v = all.map((run) => run[t].v[i]);
      const mu = u.reduce((a, b) => a + b, 0) / runs;
      const mv = v.reduce((a, b) => a + b, 0) / runs;
      const m2 = u.reduce((s, x) => s + (x - mu) ** 2, 0);
      const m3 = u.reduce((s, x) => s + (x - mu) ** 3, 0);
      const at = t * CELLS + i;
      assert.ok(relative(mean[at], mu) < 1e-12, `mean of u, t ${t}, cell ${i}`);
      assert.ok(relative(vMean[at], mv) < 1e-12, `mean of v, t ${t}, cell ${i}`);
      assert.ok(relative(variance[at], m2 / (runs - 1)) < 1e-10, `variance, t ${t}, cell ${i}`);
      assert.ok(relative(skewness[at], (Math.sqrt(runs) * m3) / m2 ** 1.5) < 1e-8, `skewness, t ${t}, cell ${i}`);
      assert.equal(min[at], Math.min(...u));
      assert.equal(max[at], Math.max(...u));
      assert.equal(exceedance[at], u.filter((x) => x > 100.5).length / runs);
      const cov = u.reduce((s, x, k) => s + (x - mu) * (v[k] - mv), 0) / (runs - 1);
      assert.ok(relative(covariance[at], cov) < 1e-10, `covariance, t ${t}, cell ${i}`);
    }
  }
  const written = JSON.parse(readFileSync(join(dir, 'summary.json'), 'utf8'));
  assert.equal(written.runs, runs);
  assert.equal(written.files.u.mean, 'u.mean.npy');
});

test('a pick-freeze study: Sobol indices per cell and timestep equal Martinez\'s correlations computed in two passes over the groups', async () => {
  const groups = 12;
  const { dir, summary } = await study({ design: 'pick-freeze', groups, servers: 2, concurrency: 2, seed: 9 });
  assert.equal(summary.runs, groups * 4);
  const design = new Design([{ name: 'x', distribution: { kind: 'uniform', low: -Math.PI, high: Math.PI } }, { name: 'y', distribution: { kind: 'normal', mean: 1, sd: 0.5 } }], 'pick-freeze', 9);
  const first = [read(dir, 'u.sobol-first-x.npy'), read(dir, 'u.sobol-first-y.npy')];
  const total = [read(dir, 'u.sobol-total-x.npy'), read(dir, 'u.sobol-total-y.npy')];
  const mean = read(dir, 'u.mean.npy');
  const pearson = (a: number[], b: number[]) => {
    const ma = a.reduce((s, x) => s + x, 0) / a.length;
    const mb = b.reduce((s, x) => s + x, 0) / b.length;
    const cov = a.reduce((s, x, k) => s + (x - ma) * (b[k] - mb), 0);
    return cov / Math.sqrt(a.reduce((s, x) => s + (x - ma) ** 2, 0) * b.reduce((s, x) => s + (x - mb) ** 2, 0));
  };
  for (const t of [0, TIMESTEPS - 1]) {
    for (let i = 0; i < CELLS; i++) {
      const y = (member: number) => Array.from({ length: groups }, (_, g) => { const [x, yy] = design.inputs(g * 4 + member); return outputs({ x, y: yy }, t).u[i]; });
      const [a, b, c0, c1] = [0, 1, 2, 3].map(y);
      const at = t * CELLS + i;
      [c0, c1].forEach((c, k) => {
        assert.ok(Math.abs(first[k][at] - pearson(b, c)) < 1e-10, `S_${k}, t ${t}, cell ${i}: ${first[k][at]} vs ${pearson(b, c)}`);
        assert.ok(Math.abs(total[k][at] - (1 - pearson(a, c))) < 1e-10, `ST_${k}, t ${t}, cell ${i}`);
      });
      // the moments take each group's A and B, the two independent draws
      const ab = [...a, ...b];
      assert.ok(relative(mean[at], ab.reduce((s, x) => s + x, 0) / ab.length) < 1e-12);
    }
  }
});

test('a run that crashes mid-run is started again, the timesteps it had sent are not counted twice, and the statistics are bit-identical to a study without the crash', async () => {
  const description = { design: 'pick-freeze', groups: 5, servers: 2, concurrency: 1, seed: 3, statistics: { higher: true, quantiles: [0.9] } };
  const clean = await study(description);
  const crashed = await study(description, { CONVERGE_TEST_CRASH: '6:2' });
  assert.equal(crashed.summary.restarts, 1);
  assert.ok(crashed.lines.some((line) => /^run 6 exited with code 3; starting it again \(attempt 2 of 3\)$/.test(line)), crashed.lines.join('\n'));
  // what reached the servers before the crash came again and was recognised (up to 3 timesteps of 2 fields, on 2 ranks)
  assert.ok(crashed.summary.repeatedTimesteps > 0 && crashed.summary.repeatedTimesteps <= 12, `${crashed.summary.repeatedTimesteps}`);
  for (const file of Object.values(clean.summary.files).flatMap((f) => Object.values(f))) {
    assert.ok(readFileSync(join(crashed.dir, file)).equals(readFileSync(join(clean.dir, file))), file);
  }
  // a hung run is killed at its timeout and started again, with the same result
  const hung = await study({ ...description, runTimeoutSeconds: 3 }, { CONVERGE_TEST_HANG: '9:1' });
  assert.equal(hung.summary.restarts, 1);
  assert.ok(hung.lines.some((line) => line.startsWith('run 9 ran past runTimeoutSeconds (3 s); starting it again')), hung.lines.join('\n'));
  assert.ok(readFileSync(join(hung.dir, 'u.sobol-first-x.npy')).equals(readFileSync(join(clean.dir, 'u.sobol-first-x.npy'))));
});

test('a simulation that sends its fields in pieces — in any order, across 3 server ranks\' slices, crashing once — gives statistics bit-identical to one that sends them whole', async () => {
  const description = { design: 'monte-carlo', runs: 8, servers: 3, concurrency: 1, seed: 6, statistics: { higher: true, quantiles: [0.5], covariance: [['u', 'v']] } };
  const clean = await study(description);
  // pieces 0..1, 1..4 and 4..6 against slices 0..2, 2..4 and 4..6: the middle piece is cut in two on its way
  const pieces = await study(description, { CONVERGE_TEST_PIECES: '1,4', CONVERGE_TEST_CRASH: '3:2' });
  assert.equal(pieces.summary.restarts, 1);
  for (const file of Object.values(clean.summary.files).flatMap((f) => Object.values(f))) {
    assert.ok(readFileSync(join(pieces.dir, file)).equals(readFileSync(join(clean.dir, file))), file);
  }
});

test('a parallel simulation started by mpirun: its 2 processes each send their own cells, and the statistics are bit-identical to one process sending all', { skip: process.env.CONVERGE_REQUIRE_MPI === '1' ? false : mpirunAvailable() ? false : 'mpirun is not installed' }, async () => {
  const description = { design: 'monte-carlo', runs: 6, servers: 2, concurrency: 1, seed: 8 };
  const clean = await study(description);
  const dir = mkdtempSync(join(tmpdir(), 'converge-study-'));
  const lines: string[] = [];
  const parallel = await api.study({ simulation: { module: simulation, processes: 2 }, parameters, fields, ...description }, { out: dir, log: (line) => lines.push(line) });
  assert.equal(parallel.restarts, 0, lines.join('\n'));
  // every value still reaches the servers once: the two processes' halves
  assert.equal(parallel.bytesStreamed, clean.summary.bytesStreamed);
  for (const file of Object.values(clean.summary.files).flatMap((f) => Object.values(f))) {
    assert.ok(readFileSync(join(dir, file)).equals(readFileSync(join(clean.dir, file))), file);
  }
});

test('a parallel simulation\'s command: behind mpirun -np or srun -n with the study\'s variables passed on, or behind the user\'s own words; mistakes named', () => {
  const base = { parameters, fields, runs: 4 };
  const command = (simulation: object) => runCommand(parseStudy({ ...base, simulation }).simulation);
  assert.deepEqual(command({ command: ['./sim', '-v'] }), ['./sim', '-v']);
  const mpi = command({ command: ['./sim'], processes: 4 });
  assert.equal(mpi[0], 'mpirun');
  assert.deepEqual(mpi.slice(mpi.indexOf('-np'), mpi.indexOf('-np') + 2), ['-np', '4']);
  assert.equal(mpi[mpi.length - 1], './sim');
  // every variable a run reads is exported to its processes, wherever mpirun starts them
  for (const name of ['CONVERGE_STUDY_SERVERS', 'CONVERGE_STUDY_RUN', 'CONVERGE_STUDY_INPUTS', 'CONVERGE_JOB_SECRET', 'CONVERGE_STUDY_ROUTE']) assert.ok(mpi.some((word, k) => word === name && mpi[k - 1] === '-x'), name);
  assert.deepEqual(command({ command: ['./sim'], processes: 3, launcher: 'srun' }), ['srun', '-n', '3', '--export=ALL', './sim']);
  assert.deepEqual(command({ command: ['./sim'], launcher: ['mpiexec', '-n', '8', '--hostfile', 'hosts'] }), ['mpiexec', '-n', '8', '--hostfile', 'hosts', './sim']);
  const message = (simulation: object) => {
    try {
      parseStudy({ ...base, simulation });
    } catch (error) {
      return (error as Error).message;
    }
    return 'accepted';
  };
  assert.match(message({ command: ['./sim'], launcher: 'qsub' }), /study: simulation\.launcher is "qsub"; give "mpirun", "srun", or the words to put before the command/);
  assert.match(message({ command: ['./sim'], processes: 0 }), /study: simulation\.processes is 0; give a whole number ≥ 1/);
  assert.match(message({ command: ['./sim'], launcher: ['mpiexec'], processes: 2 }), /simulation\.processes is for "mpirun" or "srun"/);
  assert.match(message({ command: ['./sim'], ranks: 2 }), /study: simulation\.ranks is not known/);
});

test('a run that fails is named with its last words, also those that reach the pipe after it exited', async () => {
  // the words come from a process the run started, 0.3 s after the run itself exited: judged at the exit, they were not there yet
  await assert.rejects(study({ simulation: { command: ['bash', '-c', '(sleep 0.3; echo "no input deck found" >&2) & exit 3'] }, design: 'monte-carlo', runs: 1, concurrency: 1, retries: 0 }),
    /study: run 0 failed 1 time \(last: exited with code 3: no input deck found\); the study stops/);
});

test('a simulation that disagrees with its study is stopped with a message naming the run and what to fix', async () => {
  // sends too few cells: the client refuses before sending; the run fails each attempt and the study names it
  await assert.rejects(study({ design: 'monte-carlo', runs: 2, concurrency: 1, retries: 1 }, { CONVERGE_TEST_CELLS: '5' }),
    /study: run 0 failed 2 times \(last: exited with code 1: ConvergeError: run 0: field "u" has 6 cells in the study; this simulation sent 5 \(a piece of them\? give its first cell: send\(field, timestep, values, offset\)\)\.\); the study stops/);
  // closes without sending a timestep
  await assert.rejects(study({ design: 'monte-carlo', runs: 2, concurrency: 1 }, { CONVERGE_TEST_SKIP: '3' }),
    /study: run 0 exited 0 having sent 8 of its 10 timesteps \(every field's\) to the server ranks; a simulation must send each declared timestep/);
  // servers that cannot listen where they are told: the study stops, saying why
  await assert.rejects(api.study({ simulation: { module: simulation }, parameters, fields, runs: 2, servers: 2 }, { out: mkdtempSync(join(tmpdir(), 'converge-study-')), bind: '203.0.113.7' }),
    /study server rank \d cannot listen on 203\.0\.113\.7 \(listen EADDRNOTAVAIL.*\); give --bind an address of this machine/);
  // a description's mistakes, before anything starts
  const base = { simulation: { command: ['true'] }, parameters, fields, runs: 4 };
  assert.throws(() => parseStudy({ ...base, parameters: { x: { uniform: [1, 0] } } }), /study: parameters\.x is \{"uniform":\[1,0\]\}; give \{ "uniform": \[low, high\] \} \(low < high\)/);
  assert.throws(() => parseStudy({ ...base, design: 'pick-freeze' }), /study: runs is for "monte-carlo"; a "pick-freeze" design counts "groups"/);
  assert.throws(() => parseStudy({ ...base, fields: { u: { cells: 0, timesteps: 2 } } }), /study: fields\.u\.cells is 0; give a whole number ≥ 1/);
  assert.throws(() => parseStudy({ ...base, statistics: { covariance: [['u', 'w']] } }), /study: statistics\.covariance is \[\["u","w"\]\]; give pairs of declared fields/);
  assert.throws(() => parseStudy({ ...base, sims: 3 }), /study: key "sims" is not known/);
});

/** Two ends of a loopback connection, each through its handshake. */
async function pair(serverSecret: string, clientSecret: string, job = 'job-a'): Promise<{ server: Promise<{ channel: Channel; run: number }>; client: Promise<Channel>; close(): void }> {
  const sockets: Socket[] = [];
  let accepted!: (s: Socket) => void;
  const incoming = new Promise<Socket>((resolve) => (accepted = resolve));
  const listener = createServer((s) => (sockets.push(s), accepted(s)));
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const port = (listener.address() as { port: number }).port;
  const socket = dial({ host: '127.0.0.1', port });
  sockets.push(socket);
  await new Promise((resolve) => socket.once('connect', resolve));
  const client = helloAsClient(socket, { secret: clientSecret, job, security: 'encrypt' }, 7, 0, 'run 7');
  const server = incoming.then((s) => helloAsServer(s, { secret: serverSecret, job: 'job-a', security: 'encrypt' }, 'server rank 0'));
  client.catch(() => {});
  server.catch(() => {});
  return { server, client, close: () => (sockets.forEach((s) => s.destroy()), listener.close()) };
}

test('the study connection: a client without the secret or of another job is turned away; a byte altered on the wire breaks the connection', async () => {
  const good = await pair('secret-1', 'secret-1');
  const [{ channel: serverSide, run }, clientSide] = await Promise.all([good.server, good.client]);
  assert.equal(run, 7);
  const got: number[][] = [];
  let broken = '';
  serverSide.listen((message) => message.kind === Kind.Data && got.push([message.field, message.timestep, message.offset, ...message.values]), (what) => (broken = what));
  await clientSide.send({ kind: Kind.Data, field: 1, timestep: 4, offset: 2, values: Float64Array.of(1.5, -2, 1e300) });
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(got, [[1, 4, 2, 1.5, -2, 1e300]]);
  // the bytes are sealed: flip one in flight and the reader refuses the record
  const write = clientSide.socket.write.bind(clientSide.socket);
  clientSide.socket.write = ((chunk: Uint8Array, ...rest: never[]) => {
    const copy = Buffer.from(chunk);
    copy[copy.length - 20] ^= 1;
    return write(copy, ...rest);
  }) as typeof clientSide.socket.write;
  await clientSide.send({ kind: Kind.Data, field: 0, timestep: 0, offset: 0, values: Float64Array.of(3) });
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.match(broken, /authenticat/);
  assert.equal(got.length, 1);
  good.close();

  const wrong = await pair('secret-1', 'secret-2');
  await assert.rejects(wrong.client, /run 7: the server does not know this study's secret/);
  wrong.close();
  // a peer that skips checking the server and sends a made-up proof is turned away by the server
  const listener = createServer((socket) => {
    const hello = Buffer.alloc(46 + 5);
    hello.writeUInt32LE(0x53475643, 0);
    hello.writeUInt32LE(3, 4);
    hello.writeUInt16LE(5, 44);
    hello.write('job-a', 46);
    socket.write(hello);
    socket.once('data', () => socket.write(Buffer.alloc(32)));
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const impostor = dial({ host: '127.0.0.1', port: (listener.address() as { port: number }).port });
  await new Promise((resolve) => impostor.once('connect', resolve));
  await assert.rejects(helloAsServer(impostor, { secret: 'secret-1', job: 'job-a', security: 'encrypt' }, 'server rank 0'), /server rank 0: a client that does not know the study's secret \(run 3\); turned away/);
  impostor.destroy();
  listener.close();
  const otherJob = await pair('secret-1', 'secret-1', 'job-b');
  await assert.rejects(otherJob.server, /server rank 0: a client of job "job-b" where this study is "job-a"/);
  otherJob.close();
});

test('converge study runs the heat-equation example: a cell on the boundary holds its run\'s boundary input, so its mean is the mean of the inputs drawn', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-heat-'));
  const description = join(dir, 'study.json');
  const heat = JSON.parse(readFileSync(fileURLToPath(new URL('../../examples/heat-study.json', import.meta.url)), 'utf8'));
  const runs = 6;
  const root = fileURLToPath(new URL('../../', import.meta.url));
  const spec = { ...heat, design: 'monte-carlo', runs, groups: undefined, simulation: { command: [process.execPath, join(root, 'examples/dist/heat.js')] } };
  writeFileSync(description, JSON.stringify(spec));
  const result = spawnSync(process.execPath, [cli, 'study', description, '--out', join(dir, 'out'), '--json'], { encoding: 'utf8', cwd: root });
  assert.equal(result.status, 0, result.stderr);
  const summary = JSON.parse(result.stdout) as StudySummary;
  assert.equal(summary.runs, runs);
  const mean = parseNpy(readFileSync(join(dir, 'out', 'temperature.mean.npy')), 'mean');
  assert.deepEqual(mean.shape, [20, 1024]);
  const design = new Design(Object.entries(heat.parameters as Record<string, { uniform: [number, number] }>).map(([name, d]) => ({ name, distribution: { kind: 'uniform', low: d.uniform[0], high: d.uniform[1] } })), 'monte-carlo', heat.seed);
  const boundary = Array.from({ length: runs }, (_, r) => design.inputs(r)[2]).reduce((a, b) => a + b, 0) / runs;
  assert.ok(Math.abs(mean.values[0] - boundary) < 1e-12, `${mean.values[0]} vs ${boundary}`);
  // the centre warms over time (the source), and more than the boundary
  const centre = 16 * 32 + 16;
  assert.ok(mean.values[19 * 1024 + centre] > mean.values[centre] && mean.values[19 * 1024 + centre] > boundary + 0.5);
  assert.ok(existsSync(join(dir, 'out', 'temperature.quantile-0.9.npy')));
});


test('a server rank killed mid-study is started again from its last checkpoint; the runs it lost run again and the statistics are bit-identical to a study without the kill', async () => {
  const description = { design: 'pick-freeze', groups: 6, servers: 2, concurrency: 1, seed: 4, checkpointEverySeconds: 0.05, statistics: { higher: true, quantiles: [0.9], covariance: [['u', 'v']] } };
  const clean = await study(description);
  assert.equal(clean.summary.serverRestarts, 0);
  const dir = mkdtempSync(join(tmpdir(), 'converge-study-'));
  const lines: string[] = [];
  let killed = false;
  const summary = await runStudy(parseStudy({ simulation: { module: simulation }, parameters, fields, ...description }), {
    out: dir, log: (line) => lines.push(line),
    onRunDone: (run, pids) => {
      if (run === 13 && !killed) {
        killed = true;
        process.kill(pids[1], 'SIGKILL');
      }
    },
  });
  assert.ok(killed);
  assert.equal(summary.serverRestarts, 1);
  assert.ok(lines.includes('study server rank 1 exited (SIGKILL); starting it again from its last checkpoint'), lines.join('\n'));
  // the checkpoint held most of the 14 runs done (written every 50 ms): only those after it run again
  const back = lines.map((line) => /^study server rank 1 is back from its checkpoint, which holds (\d+) of the (\d+) runs done/.exec(line)).find(Boolean);
  assert.ok(back && Number(back[2]) === 14 && Number(back[1]) >= 7, lines.join('\n'));
  for (const file of Object.values(clean.summary.files).flatMap((f) => Object.values(f))) {
    assert.ok(readFileSync(join(dir, file)).equals(readFileSync(join(clean.dir, file))), file);
  }
  // without checkpoints the study stops, saying how to have it recover
  await assert.rejects(runStudy(parseStudy({ simulation: { module: simulation }, parameters, fields, ...description, checkpointEverySeconds: undefined }), {
    out: mkdtempSync(join(tmpdir(), 'converge-study-')),
    onRunDone: (run, pids) => run === 3 && process.kill(pids[0], 'SIGKILL'),
  }), /study server rank 0 exited \(SIGKILL\) before the study ended \(no checkpoints: give "checkpointEverySeconds" to have it started again\); the study stops/);
});

test('a launcher killed mid-study leaves no server behind, and converge study --resume goes on from the checkpoints: only the runs they lack run, and the statistics are bit-identical to a study never stopped', async () => {
  const description = { design: 'pick-freeze', groups: 6, servers: 2, concurrency: 1, seed: 4, checkpointEverySeconds: 0.05, statistics: { higher: true, quantiles: [0.9], covariance: [['u', 'v']] } };
  const clean = await study(description);
  const dir = mkdtempSync(join(tmpdir(), 'converge-study-'));
  const file = join(dir, 'study.json');
  writeFileSync(file, JSON.stringify({ simulation: { module: simulation }, parameters, fields, ...description }));
  const out = join(dir, 'out');
  // the launcher as a user starts it, killed once 8 of the 24 runs are done
  const launcher = spawn(process.execPath, [cli, 'study', file, '--out', out], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  await new Promise<void>((resolve) => launcher.stderr!.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
    if (/^8 of 24 runs done/m.test(stderr)) resolve();
  }));
  // its server ranks (forked: its children running server.js) see the launcher gone and exit; their checkpoints stay
  const servers = spawnSync('pgrep', ['-P', String(launcher.pid), '-f', 'study-server'], { encoding: 'utf8' }).stdout.split('\n').filter(Boolean).map(Number);
  assert.equal(servers.length, 2);
  launcher.kill('SIGKILL');
  await new Promise((resolve) => launcher.once('exit', resolve));
  const alive = () => servers.filter((pid) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  });
  for (let wait = 0; wait < 50 && alive().length > 0; wait++) await new Promise((resolve) => setTimeout(resolve, 100));
  assert.deepEqual(alive(), []);
  const resumed = spawnSync(process.execPath, [cli, 'study', file, '--out', out, '--resume'], { encoding: 'utf8' });
  assert.equal(resumed.status, 0, resumed.stderr);
  const back = /^resuming .*: its checkpoints hold (\d+) of the 24 runs; the other (\d+) run$/m.exec(resumed.stderr);
  assert.ok(back && Number(back[1]) >= 4 && Number(back[1]) <= 9, resumed.stderr);
  // the held runs did not run again: at most the one in flight at the kill repeats its timesteps (both fields, on both ranks)
  assert.ok(JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8')).repeatedTimesteps <= 2 * TIMESTEPS * 2);
  for (const name of Object.values(clean.summary.files).flatMap((f) => Object.values(f))) {
    assert.ok(readFileSync(join(out, name)).equals(readFileSync(join(clean.dir, name))), name);
  }
  // what --resume refuses, in one line each
  const refuse = (args: string[]) => spawnSync(process.execPath, [cli, 'study', file, ...args, '--resume'], { encoding: 'utf8' }).stderr;
  assert.match(refuse(['--out', join(dir, 'elsewhere')]), /--resume finds no .*launch\.json; nothing to resume there/);
  assert.match(refuse(['--out', out, '--servers', '3']), /--resume: .* holds another study's checkpoints/);
});
