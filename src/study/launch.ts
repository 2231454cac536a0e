// Runs a study: forks its server ranks, starts the simulation runs (at most `concurrency` at
// once), restarts a run that crashes or outlives its timeout (its already-counted timesteps are
// recognised by the servers), and at the end gathers every rank's slices into whole fields,
// written as NPY files beside a summary.json — or, for a surrogate study, tells the training
// ranks the stream has ended and writes what they trained (surrogate.json, surrogate.ckpt).

import { fork, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ConvergeError } from '../errors.js';
import { Design } from './design.js';
import { ENV } from './client.js';
import type { RankResults, ServerStart, SurrogateResults } from './server.js';
import { finishStatistics, finishSurrogate, type RankReply, type StudySummary } from './results.js';
import type { StudySpec } from './spec.js';
import { routeOf } from './surrogate.js';
import { outputRead } from '../launch/local-job.js';

export type { StudySummary, SurrogateSummary } from './results.js';

export interface StudyOptions {
  /** Folder for the results (created). */
  out: string;
  /** Where the servers listen (loopback by default: the runs are local processes). */
  bind?: string;
  /** Called with one line per event (a run started, failed, restarted; the end). */
  log?: (line: string) => void;
  /** Extra environment for every run (tests inject faults through it). */
  env?: Record<string, string>;
  /** Called when a run is done, with the server ranks' process ids (tests kill one through it). */
  onRunDone?: (run: number, serverPids: number[]) => void;
  /** A surrogate study: keep every sample and write it as NPY files (the offline baseline) instead of training. */
  writeSamples?: boolean;
  /** Go on with a study whose launcher stopped: its server ranks start from the checkpoints in `out`, and only the runs they lack run. */
  resume?: boolean;
}

const serverScript = fileURLToPath(new URL('./server.js', import.meta.url));
const moduleRunner = fileURLToPath(new URL('./run-module.js', import.meta.url));

interface Rank {
  process: ChildProcess;
  port: number;
  /** Questions waiting for this rank's answer: each takes the reply it matches; all fail if the rank exits. */
  replies: { take: (message: Record<string, unknown>) => boolean; fail: (error: Error) => void }[];
}

export async function runStudy(spec: StudySpec, options: StudyOptions): Promise<StudySummary> {
  const log = options.log ?? (() => {});
  const started = performance.now();
  const design = new Design(spec.parameters, spec.design, spec.seed);
  const credentials = { secret: randomBytes(16).toString('hex'), job: `study-${randomBytes(8).toString('hex')}`, security: spec.transportSecurity };
  const bind = options.bind ?? '127.0.0.1';
  const stateSpec = { fields: spec.fields, runs: spec.runs, groupSize: design.groupSize, inputs: spec.parameters.length, pickFreeze: spec.design === 'pick-freeze', moments: spec.statistics, covariance: spec.statistics.covariance };
  const inputs = spec.parameters.map((p) => p.name);
  const checkpoints = spec.checkpointEverySeconds === undefined ? null : join(options.out, 'checkpoints');
  if (checkpoints) mkdirSync(checkpoints, { recursive: true });
  // the study's clock (the figures' seconds) starts at its first launch, resumed or not
  if (options.resume && !checkpoints) throw new ConvergeError('study: --resume needs the study\'s checkpoints: give the description "checkpointEverySeconds" (the study that stopped had to have it too).', 'BAD_OPTION');
  const studyStarted = checkpoints ? launchRecord(checkpoints, spec, options.resume === true) : Date.now();
  let failure: Error | null = null;
  let stopping = false;
  /** Server ranks started again from their checkpoints; a run whose attempt saw one is not blamed for it. */
  let serverRestarts = 0;
  let recovering: Promise<void> = Promise.resolve();

  /** A surrogate's ranks are one training job: they are started again together, each time a new generation. */
  let generation = 0;
  /** Forks server rank `rank` (from its checkpoint when `resume`); resolves once it listens. */
  const startServer = (rank: number, resume: boolean) => new Promise<Rank>((resolve, reject) => {
    const child = fork(serverScript, ['--study-server'], { serialization: 'advanced', stdio: ['ignore', 'inherit', 'pipe', 'ipc'] });
    const entry: Rank = { process: child, port: 0, replies: [] };
    const mine = generation;
    child.stderr!.on('data', (chunk: Buffer) => log(chunk.toString().trimEnd()));
    child.on('message', (message: Record<string, unknown>) => {
      if (typeof message.port === 'number') {
        entry.port = message.port;
        resolve(entry);
      } else if (typeof message.error === 'string') {
        if (mine === generation) failure ??= new ConvergeError(message.error, 'STUDY_SERVER');
      }
      else entry.replies = entry.replies.filter((reply) => !reply.take(message));
    });
    child.once('exit', (code, signal) => {
      const how = signal ?? `code ${code}`;
      const gone = new ConvergeError(`study server rank ${rank} exited (${how}) before the study ended${checkpoints ? '' : ' (no checkpoints: give "checkpointEverySeconds" to have it started again)'}; the study stops.`, 'STUDY_SERVER');
      // one that never listened says why (its own error, e.g. an address it cannot bind)
      if (entry.port === 0) return reject(failure ?? gone);
      if (stopping) return;
      if (!checkpoints || failure) {
        failure ??= gone;
        for (const reply of entry.replies) reply.fail(gone);
        return;
      }
      if (spec.surrogate) {
        if (mine !== generation) return; // a rank of the job being replaced, stopped on purpose
        generation++;
        serverRestarts++;
        log(`study server rank ${rank} exited (${how}); every rank of the surrogate's training starts again from its last checkpoint`);
        recovering = recovering.then(() => recoverAll());
        return;
      }
      serverRestarts++;
      log(`study server rank ${rank} exited (${how}); starting it again from its last checkpoint`);
      recovering = recovering.then(() => recover(rank, entry));
    });
    const training = surrogate?.training && { ...surrogate.training, resume };
    const start: ServerStart = { spec: stateSpec, rank, ranks: spec.servers, credentials, bind, checkpoint: checkpoints ? { path: join(checkpoints, `rank-${rank}.v8`), everySeconds: spec.checkpointEverySeconds!, resume } : undefined, surrogate: surrogate && { ...surrogate, training } };
    child.send({ start, inputs });
  });
  // a surrogate study's servers are the ranks of one training job: rank 0's rendezvous port is chosen now
  const surrogate = spec.surrogate && {
    spec: spec.surrogate, parameters: spec.parameters, design: spec.design, seed: spec.seed, fields: spec.fields, runs: spec.runs, writeSamples: options.writeSamples === true,
    master: { addr: bind, port: await freePort(bind), secret: randomBytes(16).toString('hex'), job: `${credentials.job}-training`, security: spec.transportSecurity },
    checkpoint: join(options.out, 'surrogate.ckpt'), studyStarted,
    training: checkpoints ? { path: join(checkpoints, 'surrogate-training.ckpt'), resume: false, everySeconds: spec.checkpointEverySeconds! } : undefined,
  };
  if (surrogate) mkdirSync(options.out, { recursive: true });
  const starting = await Promise.allSettled(Array.from({ length: spec.servers }, (_, rank) => startServer(rank, options.resume === true)));
  const ranks: Rank[] = starting.flatMap((s) => (s.status === 'fulfilled' ? [s.value] : []));
  const notStarted = starting.find((s) => s.status === 'rejected');
  if (notStarted) {
    // the ranks that did start are not left behind
    stopping = true;
    for (const rank of ranks) rank.process.kill();
    throw (notStarted as PromiseRejectedResult).reason;
  }
  const ask = <T extends Record<string, unknown>>(rank: Rank, message: Record<string, unknown>, matches: (reply: Record<string, unknown>) => boolean): Promise<T> => new Promise((resolve, reject) => {
    if (rank.process.exitCode !== null || rank.process.signalCode !== null) return reject(new ServerGone());
    rank.replies.push({
      take: (reply) => {
        if (!matches(reply)) return false;
        resolve(reply as T);
        return true;
      },
      fail: reject,
    });
    rank.process.send(message);
  });

  // runs wait in order; a run put back (its data lost with a server rank) goes back in its place
  const queue = Array.from({ length: spec.runs }, (_, run) => run);
  const putBack = (run: number) => {
    const at = queue.findIndex((r) => r > run);
    queue.splice(at < 0 ? queue.length : at, 0, run);
  };
  const completed = new Set<number>();
  /** A restarted rank holds what its checkpoint held: every completed run it lacks runs again. */
  const recover = async (rank: number, old: Rank) => {
    for (const reply of old.replies) reply.fail(new ServerGone());
    try {
      ranks[rank] = await startServer(rank, true);
    } catch (error) {
      failure ??= error as Error;
      return;
    }
    rerunLost(`study server rank ${rank} is back from its checkpoint, which holds`, await lostRuns([ranks[rank]]));
  };
  /** A surrogate's ranks, one training job: the old job's ranks stopped, every rank started again from its checkpoint. */
  const recoverAll = async () => {
    const old = [...ranks];
    for (const rank of old) for (const reply of rank.replies) reply.fail(new ServerGone());
    await Promise.all(old.map((rank) => (rank.process.exitCode !== null || rank.process.signalCode !== null ? undefined : new Promise((resolve) => {
      rank.process.once('exit', resolve);
      rank.process.kill('SIGKILL');
    }))));
    try {
      const fresh = await Promise.all(old.map((_, rank) => startServer(rank, true)));
      fresh.forEach((rank, k) => (ranks[k] = rank));
    } catch (error) {
      failure ??= error as Error;
      return;
    }
    rerunLost('the surrogate\'s server ranks are back from their checkpoints, which hold', await lostRuns(ranks));
  };
  /** Of `runs`, those every one of `these` ranks holds all of (a rank gone holds nothing). */
  const heldBy = async (these: Rank[], runs: number[]) => {
    const held: number[] = [];
    for (const run of runs) {
      const replies = await Promise.all(these.map((rank) => ask<{ ok: boolean }>(rank, { complete: run }, (r) => r.complete === run).catch(() => ({ ok: false }))));
      if (replies.every((reply) => reply.ok)) held.push(run);
    }
    return held;
  };
  /** The completed runs that one of `these` ranks no longer holds all of. */
  const lostRuns = async (these: Rank[]) => {
    const done = [...completed].sort((a, b) => a - b);
    const held = new Set(await heldBy(these, done));
    return done.filter((run) => !held.has(run));
  };
  const rerunLost = (what: string, lost: number[]) => {
    for (const run of lost) {
      completed.delete(run);
      putBack(run);
    }
    log(`${what} ${completed.size} of the ${completed.size + lost.length} runs done; ${lost.length ? `runs ${lost.join(', ')} run again` : 'none runs again'}`);
  };

  const fields = JSON.stringify(spec.fields);
  const [program, ...args] = runCommand(spec.simulation);
  let restarts = 0;
  const attempts = new Map<number, number>();
  /** The runs' processes now running, each with what kills its whole process group. */
  const running = new Map<ChildProcess, () => void>();

  /** One attempt of a run: null when it is done; else why not, and whether to blame the run. */
  const attempt = async (run: number): Promise<{ why: string; blame: boolean } | null> => {
    await recovering;
    if (failure) throw failure;
    const restartsBefore = serverRestarts;
    const blamed = attempts.get(run) ?? 0;
    const parameters = Object.fromEntries(design.inputs(run).map((value, k) => [inputs[k], value]));
    const env = {
      ...process.env, ...options.env,
      [ENV.servers]: ranks.map((rank) => `${bind}:${rank.port}`).join(','), [ENV.run]: String(run), [ENV.attempt]: String(blamed), [ENV.inputs]: JSON.stringify(parameters), [ENV.fields]: fields,
      [ENV.security]: spec.transportSecurity, [ENV.secret]: credentials.secret, [ENV.job]: credentials.job,
      [ENV.route]: spec.surrogate ? `whole:${routeOf(run, spec.surrogate.heldOutRuns, spec.servers).join(',')}` : 'slices',
    };
    // a group of its own: a timeout kills the run's every process (mpirun's too), not only the first
    const child = spawn(program, args, { env, stdio: ['ignore', 'ignore', 'pipe'], detached: true });
    const kill = () => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        child.kill('SIGKILL');
      }
    };
    running.set(child, kill);
    child.once('exit', () => running.delete(child));
    let stderr = '';
    child.stderr!.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-2000)));
    // a failed run is named with its last words: what it wrote just before it exited may still be in the pipe then
    const read = outputRead(child);
    const outcome = await new Promise<string | null>((resolve) => {
      const timer = setTimeout(() => {
        kill();
        resolve(`ran past runTimeoutSeconds (${spec.runTimeoutSeconds} s)`);
      }, spec.runTimeoutSeconds * 1000);
      child.once('error', (error) => (clearTimeout(timer), resolve(`could not start ${program}: ${error.message}`)));
      child.once('exit', (code, signal) => {
        clearTimeout(timer);
        void read.then(() => resolve(code === 0 ? null : `exited with ${signal ?? `code ${code}`}${lastWords(stderr)}`));
      });
    });
    await recovering;
    if (failure) throw failure; // a server's own error says more than what it did to this run
    const serverLost = serverRestarts !== restartsBefore;
    if (outcome !== null) return { why: outcome, blame: !serverLost };
    const replies = await Promise.all(ranks.map((rank) => ask<{ ok: boolean; received: number }>(rank, { complete: run }, (reply) => reply.complete === run))).catch((error: Error) => {
      if (error instanceof ServerGone) return null;
      throw error;
    });
    if (replies === null || serverRestarts !== restartsBefore) return { why: 'lost its data with a server rank', blame: false };
    if (replies.every((reply) => reply.ok)) return null;
    const timesteps = spec.fields.reduce((sum, f) => sum + f.timesteps, 0);
    throw new ConvergeError(`study: run ${run} exited 0 having sent ${replies.map((r) => r.received).join(' and ')} of its ${timesteps} timesteps (every field's) to the server ranks; a simulation must send each declared timestep of each field, then close().`, 'BAD_DATA');
  };

  try {
    if (options.resume) {
      // the runs every rank's checkpoint holds are done; the others run, in order
      const held = await heldBy(ranks, [...queue]);
      for (const run of held) {
        completed.add(run);
        queue.splice(queue.indexOf(run), 1);
      }
      log(`resuming ${options.out}: its checkpoints hold ${held.length} of the ${spec.runs} runs; the other ${spec.runs - held.length} run`);
    }
    let done = completed.size;
    const worker = async () => {
      for (let run = queue.shift(); run !== undefined; run = queue.shift()) {
        const failed = await attempt(run);
        if (failed === null) {
          completed.add(run);
          done++;
          options.onRunDone?.(run, ranks.map((rank) => rank.process.pid!));
          if (done % Math.max(1, Math.floor(spec.runs / 10)) === 0 || done === spec.runs) log(`${done} of ${spec.runs} runs done (${((performance.now() - started) / 1000).toFixed(1)} s)`);
          continue;
        }
        if (stopping) return;
        const tries = (attempts.get(run) ?? 0) + (failed.blame ? 1 : 0);
        if (tries > spec.retries) throw new ConvergeError(`study: run ${run} failed ${tries} time${tries === 1 ? '' : 's'} (last: ${failed.why}); the study stops. Fix the simulation, or raise "retries".`, 'RUN_FAILED');
        attempts.set(run, tries);
        restarts++;
        log(`run ${run} ${failed.why}; starting it again${failed.blame ? ` (attempt ${tries + 1} of ${spec.retries + 1})` : ''}`);
        putBack(run);
      }
    };
    // a worker that finds the queue empty while another's run may still be put back waits for it
    const workers = Array.from({ length: Math.min(spec.concurrency, spec.runs) }, async () => {
      try {
        while (completed.size < spec.runs && !failure) {
          await worker();
          if (completed.size < spec.runs) await new Promise((resolve) => setTimeout(resolve, 20));
        }
      } catch (error) {
        failure ??= error as Error; // the other workers stop at their next run
        throw error;
      }
    });
    await Promise.all(workers);
    await recovering;
    if (failure) throw failure;
    stopping = true;
    const counts = { started, restarts, serverRestarts };
    const finish = <R>(rank: Rank) => ask<RankReply<R>>(rank, { finish: true }, (reply) => 'results' in reply);
    if (!spec.surrogate) return await finishStatistics(spec, options, ranks.map((rank) => finish<RankResults>(rank)), counts, log);
    return await finishSurrogate(spec, options, ranks.map((rank) => {
      rank.process.send({ streamEnded: true });
      return finish<SurrogateResults>(rank);
    }), counts, log);
  } finally {
    stopping = true;
    for (const kill of running.values()) kill();
    for (const rank of ranks) if (rank.process.exitCode === null) rank.process.kill();
  }
}

/** A server rank went away while a question to it was open (it is being started again). */
class ServerGone extends Error {
  constructor() {
    super('a study server rank exited');
  }
}

/** What a crashed run said last: its error's line (node's stack and version trailer left out). */
function lastWords(stderr: string): string {
  const lines = stderr.split('\n').map((line) => line.trim()).filter((line) => line && !/^Node\.js v/.test(line) && !line.startsWith('at '));
  const error = lines.filter((line) => /error/i.test(line)).pop() ?? lines.pop();
  return error ? `: ${error}` : '';
}

/** A port nobody listens on now, on `host` (for the training job's rendezvous). */
function freePort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (error) => reject(new ConvergeError(`study: cannot listen on ${host} (${error.message}); give --bind an address of this machine.`, 'BAD_OPTION')));
    probe.listen(0, host, () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
}

/** The words that start one run: the simulation's command (or the module runner), behind mpirun or srun for a parallel one. */
export function runCommand(simulation: StudySpec['simulation']): string[] {
  const command = 'command' in simulation ? simulation.command : [process.execPath, moduleRunner, simulation.module];
  const { processes, with: launcher } = simulation.launcher;
  if (launcher === null) return command;
  if (Array.isArray(launcher)) return [...launcher, ...command];
  if (launcher === 'srun') return ['srun', '-n', String(processes), '--export=ALL', ...command];
  // the study's variables reach every process, on this node or another
  const exported = Object.values(ENV).flatMap((name) => ['-x', name]);
  return ['mpirun', ...(process.getuid?.() === 0 ? ['--allow-run-as-root'] : []), '--oversubscribe', '-np', String(processes), ...exported, ...command];
}

/**
 * The study's first launch, recorded beside its checkpoints (its start, and what the checkpoints
 * belong to); a resumed launch reads it back and must be the same study. Returns the start (Date.now()).
 */
function launchRecord(checkpoints: string, spec: StudySpec, resume: boolean): number {
  const path = join(checkpoints, 'launch.json');
  const identity = JSON.stringify({ runs: spec.runs, servers: spec.servers, design: spec.design, seed: spec.seed, fields: spec.fields, parameters: spec.parameters, surrogate: spec.surrogate !== undefined });
  if (!resume) {
    writeFileSync(path, `${JSON.stringify({ started: Date.now(), identity })}\n`);
    return Date.now();
  }
  const nothing = (file: string) => new ConvergeError(`study: --resume finds no ${file}; nothing to resume there (start the study without --resume, or give the --out of the one that stopped).`, 'BAD_CHECKPOINT');
  if (!existsSync(path)) throw nothing(path);
  const record = JSON.parse(readFileSync(path, 'utf8')) as { started: number; identity: string };
  if (record.identity !== identity) throw new ConvergeError(`study: --resume: ${checkpoints} holds another study's checkpoints (its runs, servers, design, seed, fields or parameters differ); resume with the description it was started with.`, 'BAD_CHECKPOINT');
  const missing = Array.from({ length: spec.servers }, (_, rank) => join(checkpoints, `rank-${rank}.v8`)).find((file) => !existsSync(file));
  if (missing) throw nothing(missing);
  return record.started;
}
