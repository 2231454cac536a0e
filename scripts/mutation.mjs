#!/usr/bin/env node
// Mutation testing (StrykerJS): how many small deliberate bugs the tests catch, per module.
//   npm run test:mutation -- [module ...]      (default: every module below)
// Each module mutates its sources and runs only the tests that exercise them (every mutant reruns
// that command: the whole suite per mutant would take days on 2 cores). Writes
// reports/mutation/MODULE.json (the mutation-testing-report schema, survivors included) and
// prints each module's score. Not part of `npm test`: it takes minutes to an hour per module.
//   npm run test:mutation -- --again [module ...]
// reruns only the survivors of each module's last report and the code changed since (mutation-again.mjs), and writes the report whole.
import { Stryker } from '@stryker-mutator/core';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { merge, plan } from './mutation-again.mjs';

/** tcp.test's tests whose ranks are in this process (garbage, forged records, altered bytes, strangers), by name. */
const tcpAttacks = 'tcp \\((none|encrypt|integrity)\\): |tcp: (a rank without|once the group|idle strangers)';
const tcpFiles = ['dist/comm/tcp-link.test.js', 'dist/comm/tcp-handshake.test.js', 'dist/comm/tcp-in-process.test.js', 'dist/comm/tcp.test.js'];

/** Sources mutated, and the tests that judge them (compiled, run by node --test). */
export const modules = {
  optim: { mutate: ['src/optim/optimizers.ts', 'src/optim/schedules.ts'], tests: ['dist/optim/optim.test.js', 'dist/train/updates.test.js'] },
  // the hooks, their codecs' reference and parsing, and the dense hooks' shard exchange (closed forms, unbiasedness over draws and the native
  // codecs judge them; not the training runs of launch/compress, 13 s a run)
  compress: { mutate: ['src/compress/*.ts', '!src/compress/*.test.ts'], tests: ['dist/compress/compress.test.js', 'dist/kernels/codecs.test.js', 'dist/strategies/shard-exchange.test.js'] },
  // the batches and the held-out split (the file readers are their own module, below)
  data: { mutate: ['src/data/batches.ts', 'src/data/split.ts'], tests: ['dist/data/*.test.js', 'dist/models/sparse-models.test.js'] },
  // the file readers: IDX, NPY, CIFAR-10 binary, CSV/TSV, libsvm, ratings, the byte scanner under the text ones, and arrays in memory
  // (files the tests write, each bad input's message, exact numbers in every notation judge them; not the CIFAR folder trained
  // from the CLI, 20 s a run)
  readers: {
    mutate: ['src/data/{idx,npy,cifar,csv,sparse,ratings,text-scan,dense}.ts'],
    tests: ['--test-name-pattern="^(IDX|bad IDX|Fashion-MNIST|CIFAR-10 binary|CIFAR-10 folders|CSV|labels|NPY|arrays in memory|libsvm|the RCV1-like|the Netflix-like|ratings|a number is read|what is not a number|integers, blanks|a growing typed array)"', 'dist/data/data.test.js', 'dist/data/dense.test.js', 'dist/data/sparse.test.js', 'dist/data/cifar.test.js', 'dist/data/text-scan.test.js'],
  },
  // the pipeline's schedules, simulator and partitioner (pure: closed forms and brute force judge them)
  pipeline: { mutate: ['src/strategies/pipeline-schedule.ts', 'src/strategies/pipeline-partition.ts'], tests: ['dist/strategies/pipeline.test.js'] },
  // recompute versus store: the schedules, their pricing, the rotor program (closed forms, an exhaustive search and bit-equal steps judge them) and the arena's placement
  // (not the test that measures the arena against the process's allocations: 7 s of profiling on the reference kernels, per mutant)
  recompute: { mutate: ['src/models/checkpointing.ts', 'src/tensor/arena.ts'], tests: ['--test-name-pattern="revolve|rotor|store-all|auto with a budget|options parse|every schedule|price.. refuses|sizes said and read|buffers are placed|nested lifetimes|largest first|a Held binds"', 'dist/models/recompute.test.js', 'dist/tensor/arena.test.js'] },
  // in-transit statistics: streamed moments, Sobol indices, the design and one server rank's state (two-pass sums, the Ishigami closed form,
  // the intervals' coverage and the estimators fed directly judge them; not the study's process tests, 40 s a run)
  study: { mutate: ['src/study/moments.ts', 'src/study/sobol.ts', 'src/study/design.ts', 'src/study/state.ts'], tests: ['dist/study/statistics.test.js', 'dist/study/state.test.js'] },
  // learning from a stream: the reservoir buffer, a parallel simulation's pieces and what a rank has counted, a surrogate's description,
  // its inputs' encoding and routing (closed forms, the last `capacity` samples, (1 − 1/N)^k and a state fed whole judge them; not the
  // surrogate's process tests, 5–20 s a run)
  stream: {
    mutate: ['src/data/reservoir.ts', 'src/study/pieces.ts', 'src/study/arrivals.ts', 'src/study/surrogate.ts'],
    tests: ['--test-name-pattern="^(oldest-first|random eviction|a buffer not yet full|a step waits|a stream trains|a buffer restored|cells are split|a Monte-Carlo rank|a pick-freeze rank|covariance pairs|a checkpoint taken|a timestep in pieces|a surrogate study.s description|a run.s inputs)"', 'dist/data/reservoir.test.js', 'dist/study/state.test.js', 'dist/study/surrogate.test.js'],
  },
  // Hogwild!'s replicas: the merge, its lock, when a worker takes one (closed forms, two threads merging at once, and the workers'
  // own sequential SGD merged by hand judge them; not 'every strategy trains every model', 10 s a run)
  hogwild: {
    mutate: ['src/strategies/replica.ts', 'src/strategies/hogwild.ts'],
    tests: ['--test-name-pattern="replica|a merge|merges from|merge interval|hogwild with one worker|low-precision Hogwild|Hogwild!|the merge lock"', 'dist/strategies/replica.test.js', 'dist/strategies/hogwild.test.js', 'dist/launch/relaxed.test.js', 'dist/launch/precision.test.js'],
  },
  // the data-parallel strategies: all-reduce, parameter server, local SGD, async-ps, their low-precision storage and their
  // whole-payload exchange (every rank driven step by step in one process over tcp, each step held to SGD written out, the losses'
  // mean, the stop, the checkpointed state, bf16's and int8's rounding bounds, the bytes sent, the staleness bound by brute force;
  // not the threaded training runs, 10–30 s a run)
  strategies: { mutate: ['src/strategies/{allreduce,ps,local-sgd,async-ps,precision,exchange}.ts'], tests: ['dist/strategies/in-process.test.js'] },
  // the strategies that split the model: sharded parameters (fsdp), tensor parallelism, pipelines (every rank in one process over
  // tcp, each step's loss, the parameters and velocity rank 0 gathers against SGD written out, the test split scored sample by sample,
  // a resume, a stop; a pipeline of a regression model with batch norm and dropout against the whole model run serially; not the threaded
  // runs bit-equal to all-reduce, 45 s a run, nor --recompute's passes)
  'model-parallel': {
    mutate: ['src/strategies/{fsdp,tensor,pipeline}.ts'],
    tests: ['--test-name-pattern="split the model|pipeline stages\' costs|a regression model with batch norm"', 'dist/strategies/in-process.test.js', 'dist/strategies/pipeline.test.js', 'dist/strategies/pipeline-regression.test.js'],
  },
  // the tcp record layer: session keys, sealing and opening, its counters (the record tests judge it: any chunking, replays,
  // reorderings, drops, the other direction's key, a changed length; not the relay tests between processes, 10 s a run)
  seal: { mutate: ['src/comm/tcp-seal.ts'], tests: ['dist/comm/tcp-seal.test.js'] },
  // what a run saves: checkpoint files, the hooks' and optimisers' state (the file format written out, every damage to it, state
  // restored across rank counts, the checkpoint clock judge them)
  checkpoint: { mutate: ['src/train/checkpoint.ts', 'src/train/hook-state.ts'], tests: ['dist/train/checkpoint.test.js', 'dist/train/run.test.js'] },
  // the training loop (one worker against P, a resume against an uninterrupted run, schedules against their formulas, evaluations
  // against the step's parameters scored directly, scripted losses for divergence and the epoch's mean, the checkpoint clock's
  // writes, pipelines and fsdp side by side (the steps of the strategies that read a batch themselves); not the optimisers'
  // formulas, the slow-rank fault or --sync-bn's ResNet over tcp: 15 s a run)
  loop: {
    mutate: ['src/train/loop.ts'],
    tests: ['--test-name-pattern="P workers with batch b|parameter server with one worker|interrupted run resumed|resumes on another number|JSONL log|eval-every|--target|--global-batch|where a step.s time went|learning-rate schedules|a loss that is not finite|buffers|checkpoint|an epoch reports|per-step breakdown|pipelines side by side|fsdp on threads ends bit-equal"', 'dist/train/*.test.js', 'dist/launch/threads.test.js', 'dist/launch/pipeline.test.js', 'dist/launch/fsdp.test.js'],
  },
  // the tcp backend, in three modules (a module's report is written only at its end, and its tests mostly wait: run them with
  // --concurrency=3). Its collectives (the ring, the segments, the fingerprints, failures): the conformance suite with every rank in this
  // process, 1 to 3 ranks in each transport-security mode; failures in-process (a rank that throws, stalls, leaves early, calls another
  // collective, breaks a socket, sends a frame wrong in one field); and everything below. Not the ranks in their own processes, a minute a run
  tcp: { mutate: ['src/comm/tcp.ts'], tests: [`--test-name-pattern="^(tcp in one process|${tcpAttacks}|tcp handshake: |a link |a frame that came before its receive)"`, ...tcpFiles] },
  // its links (frames, how they are parsed and written): a link's parser fed by hand, cut anywhere; its writer through backpressure over
  // a real connection, sealed and not; the in-process suite above; garbage frames, forged records and altered bytes from a hand-made rank
  'tcp-link': { mutate: ['src/comm/{tcp-link,tcp-wire}.ts'], tests: ['--test-name-pattern="^(a link |a source |a frame that came before its receive|tcp in one process|tcp \\((none|encrypt|integrity)\\): )"', ...tcpFiles] },
  // how ranks meet: hand-made handshakes (garbage, replayed, malformed or oversized proofs, impossible ranks, another job, size or
  // security mode, a rank taken twice, a fake rank 0), a rank 0 that comes late or never, a port taken; strangers; 3 ranks forming in each mode
  'tcp-rendezvous': { mutate: ['src/comm/tcp-rendezvous.ts'], tests: [`--test-name-pattern="^(tcp handshake: |tcp rendezvous: |tcp in one process, 3 ranks|${tcpAttacks})"`, ...tcpFiles] },
  // the Open MPI backend's TypeScript side: the conformance suite under mpirun, every case in one job on 2 and 3 processes, and the
  // failures a rank names itself (it throws, calls the wrong collective, sends a message of the wrong size; not a rank that dies or
  // stalls, which mpirun names, nor the jobs per case: 40 s a run); and the layer against a stand-in binding (mpi-layer.test)
  mpi: {
    mutate: ['src/comm/mpi.ts'],
    tests: ['--test-name-pattern="every case in one job|failure handling: a rank that (throws|calls|sends)|mpi layer"', 'dist/comm/mpi.test.js', 'dist/comm/mpi-layer.test.js'],
  },
  // the shared-memory backend: the conformance suite on 1–4 threads (every collective against its closed form, messages past the
  // capacity's segments) and its failure cases (a rank that throws, dies, stalls or calls the wrong collective ends every rank fast)
  shm: { mutate: ['src/comm/shm.ts'], tests: ['dist/comm/shm.test.js'] },
  // communicator groups: the conformance suite's subgroups case on shared memory, 1–4 ranks, and their own checks
  groups: { mutate: ['src/comm/group.ts'], tests: ['--test-name-pattern=subgroups', 'dist/comm/shm.test.js', 'dist/comm/group.test.js'] },
};

const again = process.argv.includes('--again');
// --concurrency=N: test runs at once (default 2, one a core); a module whose tests mostly wait (tcp's) can take 3
const concurrency = Number(process.argv.find((a) => a.startsWith('--concurrency='))?.slice('--concurrency='.length) ?? 2);
if (!Number.isInteger(concurrency) || concurrency < 1) throw new Error(`--concurrency: a positive integer, got ${concurrency}`);
const chosen = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const names = chosen.length > 0 ? chosen : Object.keys(modules);
for (const name of names) if (!modules[name]) throw new Error(`unknown module ${name}; modules: ${Object.keys(modules).join(', ')}`);
mkdirSync('reports/mutation', { recursive: true });
const scores = {};
for (const name of names) {
  const { tests } = modules[name];
  let { mutate } = modules[name];
  const reportFile = `reports/mutation/${name}.json`;
  let previous = null;
  let rerun = null;
  if (again) {
    if (!existsSync(reportFile)) throw new Error(`--again ${name}: no last report ${reportFile}; run the module whole first`);
    previous = JSON.parse(readFileSync(reportFile, 'utf8'));
    rerun = plan(previous);
    mutate = rerun.mutate;
    console.log(`${name}: ${rerun.keptCount} killed mutants kept, ${rerun.reopened} survivors and the changed code run again (${mutate.length} line ranges)`);
  }
  const results = mutate.length === 0 ? [] : await new Stryker({
    testRunner: 'command',
    commandRunner: { command: `node --test --test-concurrency=1 ${tests.join(' ')}` },
    // the sandbox sits two folders down (.stryker-tmp/sandbox-…): the compiler is the project's own
    buildCommand: 'node ../../node_modules/typescript/bin/tsc -p tsconfig.json',
    mutate,
    coverageAnalysis: 'off',
    concurrency,
    reporters: ['clear-text', 'json', 'progress'],
    jsonReporter: { fileName: again ? `reports/mutation/${name}.again.json` : reportFile },
    tempDirName: '.stryker-tmp',
    ignorePatterns: ['dist', 'runs', 'examples/dist', 'bench/results', 'reports', '.stryker-tmp'],
    timeoutMS: 10_000, // beyond 1.5× the unmutated run: a mutant that loops forever costs this much
    cleanTempDir: true,
  }).runMutationTest();
  let statuses = results.map((m) => m.status);
  if (again) {
    const merged = merge(mutate.length === 0 ? null : JSON.parse(readFileSync(`reports/mutation/${name}.again.json`, 'utf8')), rerun.kept, rerun.sources, previous);
    writeFileSync(reportFile, JSON.stringify(merged));
    statuses = Object.values(merged.files).flatMap((file) => file.mutants.map((m) => m.status));
  }
  const count = (...wanted) => statuses.filter((status) => wanted.includes(status)).length;
  const killed = count('Killed', 'Timeout');
  const survived = count('Survived', 'NoCoverage');
  const invalid = count('CompileError', 'RuntimeError');
  scores[name] = { mutants: statuses.length, killed, survived, invalid, score: +(100 * killed / Math.max(1, killed + survived)).toFixed(1) };
  console.log(`${name}: ${scores[name].score}% of ${killed + survived} valid mutants killed (${survived} survived, ${invalid} did not compile or run)`);
}
writeFileSync('reports/mutation/scores.json', JSON.stringify(scores, null, 2) + '\n');
console.table(scores);
