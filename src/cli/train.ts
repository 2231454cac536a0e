// `converge train`: options → TrainConfig → a run on worker threads, with a progress bar.

import { formatBytes, parseBytes, recomputeHelp } from '../models/checkpointing.js';
import { parseArgs } from 'node:util';
import { isProcessBackend } from '../comm/backends.js';
import { modelLabel } from '../models/module.js';
import type { Dataset } from '../data/dataset.js';
import { badOption, usageError } from '../errors.js';
import { defaults, withRecommended, type TrainConfig } from '../train/config.js';
import type { Summary } from '../train/monitor.js';
import { trainOnProcess } from '../launch/process-rank.js';
import { transportSecurityOf } from '../launch/communicator.js';
import type { TransportSecurity } from '../comm/tcp-seal.js';
import { trainOnThreads } from '../launch/threads.js';
import { strategies, strategiesThat } from '../strategies/index.js';
import { ProgressBar } from './progress.js';
import { joinNegativeNumbers } from './args.js';

const options = {
  dataset: { type: 'string', help: `fashion-mnist | mnist | synthetic | rcv1-like | netflix-like (generated in memory), a libsvm file (.svm), a CSV/TSV file (.csv, .tsv: a header, then rows), a ratings file (.ratings), or a folder (IDX files; NPY train_x.npy/train_y.npy; train.svm/.csv/.ratings) (default ${defaults.dataset})` },
  'data-dir': { type: 'string', help: 'folder with the four MNIST-format IDX files (gzipped or raw); default: where the Debian package puts them' },
  'test-dataset': { type: 'string', help: 'the test file for a file --dataset (default: a seeded, stratified tenth of it is held out)' },
  'zero-based': { type: 'boolean', help: 'libsvm feature indices start at 0 (default: at 1)' },
  'label-column': { type: 'string', help: 'CSV: the label column, by name or 0-based index (default: label/target/class/y, else the last column)' },
  task: { type: 'string', help: `CSV/NPY: classification | regression | auto (names and ≤ 100 distinct integers are classes; other numbers are regression targets, fitted by mean squared error) (default ${defaults.task})` },
  model: { type: 'string', help: `softmax | mlp | cnn (images), logreg | svm (sparse rows), mf (ratings) (default ${defaults.model})` },
  hidden: { type: 'string', help: `MLP hidden widths, comma-separated (default ${defaults.hidden.join(',')})` },
  l2: { type: 'string', help: 'L2 penalty of logreg/svm (default 1e-6) and mf (default 0.02)' },
  factors: { type: 'string', help: `mf: rank of the factorisation (default ${defaults.factors})` },
  rank: { type: 'string', help: 'the old name of --factors' },
  workers: { type: 'string', help: 'gradient workers, one thread each (default: one per core; with tcp/mpi: from the job size; pipeline: 1)' },
  stages: { type: 'string', help: 'pipeline: ranks the model\'s layers are cut across, one stage each (default: one per core; with tcp/mpi: the job size)' },
  microbatches: { type: 'string', help: `pipeline: micro-batches each step's batch is split into; they fill the pipeline, so more shrink its idle bubble, (S − 1)/(m + S − 1) (default ${defaults.microbatches})` },
  'pipeline-schedule': { type: 'string', help: `pipeline: gpipe (every forward, then every backward; m micro-batches stored) | 1f1b (one forward, one backward in turn; at most S − s stored on stage s) (default ${defaults.pipelineSchedule})` },
  'tensor-parallel': { type: 'string', help: 'tensor: ranks each pair of dense layers is split across, Megatron-style (default: one per core; with tcp/mpi: the job size)' },
  'stage-cuts': { type: 'string', help: 'pipeline: the layer indices where stages 2..S begin, comma-separated (default: balanced over the layers\' forward and backward times measured at start-up; `converge plan` shows them)' },
  recompute: { type: 'string', help: `models of layers: which activations a step stores and which it computes again from a stored one: ${recomputeHelp} (default none; auto with --memory-budget)` },
  'memory-limit': { type: 'string', help: 'the most a rank may hold for the model — parameters, gradients, optimiser state and activations — e.g. 4GiB; a rank over it is refused before the first step, told what to shard' },
  'memory-budget': { type: 'string', help: 'models of layers: the most activation memory a rank\'s step may hold, e.g. 512MiB or 2GB; a step that cannot fit is refused at start-up with the least it needs' },
  backend: { type: 'string', help: 'shm: worker threads of this process (default); tcp or mpi: this process is one rank of a job started by `converge launch`, mpirun or srun' },
  strategy: { type: 'string', help: `${Object.entries(strategies).map(([name, s]) => `${name} (${s.description})`).join('; ')} (default ${defaults.strategy})` },
  'sync-every': { type: 'string', help: `local-sgd: average the workers' copies every k steps (default ${defaults.syncEvery})` },
  staleness: { type: 'string', help: `async-ps: how many steps a worker may run ahead of the slowest; 0 is synchronous (default ${defaults.staleness})` },
  'merge-every': { type: 'string', help: `hogwild: each worker steps on its own replica and adds its changes into the shared array every N examples, so the cores do not fight over its cache lines; 0 writes every update straight into the shared array (default: replicas where the parameters take at most 1 MiB, merging every sixteenth of a worker\'s epoch, at most 1024 examples)` },
  'param-precision': { type: 'string', help: `how the parameters are stored: fp32 | bf16 | int8 (stochastic rounding on every update; allreduce, ps, local-sgd, hogwild) (default ${defaults.paramPrecision})` },
  'sync-bn': { type: 'boolean', help: `batch norm normalises by the statistics of every worker's batch together, reduced inside each step (${strategiesThat((s) => s.syncBatchNorm).join(', ')}) (default: each worker's own batch, as DDP)` },
  compress: { type: 'string', help: 'gradient compression: none | fp16 | bf16 | sign | qsgd:BITS | topk:DENSITY[,nodgc][,clip=NORM][,warmup=EPOCHS][+fp16|+bf16] | randomk:DENSITY[+fp16|+bf16] (default: no hook)' },
  epochs: { type: 'string', help: `passes over the training set (default ${defaults.epochs})` },
  batch: { type: 'string', help: `samples per worker per step; the global batch is workers × batch (default ${defaults.batch})` },
  'global-batch': { type: 'string', help: 'samples per step over all workers, in place of --batch: each worker takes global-batch / workers, so the run makes the same updates on any number of workers' },
  'eval-every': { type: 'string', help: `evaluate on the test split every this many epochs (0.25: four times an epoch), or every N steps (e.g. 200steps); each epoch's end always (default ${defaults.evalEvery})` },
  target: { type: 'string', help: 'a test accuracy (e.g. 0.84) or RMSE: the summary says how many seconds of training and samples it took to first reach it' },
  lr: { type: 'string', help: `learning rate for one worker's batch (default ${defaults.lr})` },
  'lr-scaling': { type: 'string', help: `linear: lr × workers, the linear scaling rule, so lr stays "per ${defaults.batch} samples" | none (default ${defaults.lrScaling})` },
  optimizer: { type: 'string', help: `sgd | momentum | nesterov | adam (default ${defaults.optimizer})` },
  momentum: { type: 'string', help: `momentum for momentum/nesterov (default ${defaults.momentum})` },
  'weight-decay': { type: 'string', help: `L2 penalty added to the gradient (default ${defaults.weightDecay})` },
  schedule: { type: 'string', help: `constant | step | cosine (default ${defaults.schedule})` },
  'warmup-epochs': { type: 'string', help: `linear warm-up from 0 over this many epochs (default ${defaults.warmupEpochs})` },
  'step-epochs': { type: 'string', help: `step schedule: multiply the lr by --gamma every this many epochs (default ${defaults.stepEpochs})` },
  gamma: { type: 'string', help: `step schedule factor (default ${defaults.gamma})` },
  seed: { type: 'string', help: `seed of the initial parameters and of the data order (default ${defaults.seed})` },
  save: { type: 'string', help: 'checkpoint file, written atomically after every epoch (and on Ctrl-C)' },
  'save-every': { type: 'string', help: 'also checkpoint every N steps (default 0: epoch ends only)' },
  'save-every-seconds': { type: 'string', help: 'write checkpoints at most every S seconds (the last is always written)' },
  resume: { type: 'string', help: 'continue from a checkpoint (the same model; any number of workers)' },
  log: { type: 'string', help: "JSONL log: step and epoch records, then a summary object ('-': to stdout; progress stays on stderr)" },
  json: { type: 'boolean', help: 'print the final summary as one JSON object on stdout (the last line goes to stderr)' },
  'stop-at-target': { type: 'boolean', help: 'stop (every rank, saving with --save) once an evaluation reaches --target' },
  timeout: { type: 'string', help: `seconds a rank waits for its peers before failing (default ${defaults.timeoutSeconds})` },
  'stop-after-steps': { type: 'string', help: 'stop after N steps of this run, saving with --save (an interruption on purpose)' },
  'slow-rank': { type: 'string', help: 'R:F — rank R computes its gradients F times slower, a straggler on purpose (with a server, rank 0 is the server)' },
  bind: { type: 'string', help: 'tcp: the address this rank listens on (default: the one it reaches rank 0 from; or CONVERGE_BIND, CONVERGE_IFNAME)' },
  'transport-security': { type: 'string', help: 'tcp: encrypt (default: AES-256-GCM, session keys from the handshake), integrity (authenticated, readable on the wire) or none (a trusted fabric); every rank the same' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const;

export function trainHelp(): string {
  const lines = Object.entries(options).map(([name, o]) => `  --${name.padEnd(18)} ${o.help}`);
  return `Usage: converge train [options]\n\nTrains a model on worker threads (all cores by default), evaluating on the test split after each epoch.\n\n${lines.join('\n')}\n`;
}

function number(option: string, value: string | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  const parsed = Number(value);
  if (value.trim() === '' || !Number.isFinite(parsed)) throw badOption(`--${option}`, value, 'a number');
  return parsed;
}

export function parseTrainArgs(rawArgs: string[]): TrainConfig | 'help' {
  const args = joinNegativeNumbers(rawArgs);
  let values: Record<string, string | boolean | undefined>;
  try {
    const parseOptions = Object.fromEntries(Object.entries(options).map(([k, o]) => [k, { type: o.type, ...('short' in o ? { short: o.short } : {}) }]));
    ({ values } = parseArgs({ args, options: parseOptions as never, strict: true, allowPositionals: false }));
  } catch (error) {
    throw usageError(`${(error as Error).message.split('\n')[0]} (see converge train --help)`);
  }
  if (values.help) return 'help';
  const s = (name: string) => values[name] as string | undefined;
  const n = (name: string, fallback: number) => number(name, s(name), fallback);
  const hidden = s('hidden');
  if (s('batch') !== undefined && s('global-batch') !== undefined) throw usageError('--batch and --global-batch both given: give one (--global-batch B makes each worker\'s batch B / workers)');
  const config: TrainConfig = {
    ...defaults,
    dataset: s('dataset') ?? defaults.dataset,
    dataDir: s('data-dir'),
    testDataset: s('test-dataset'),
    zeroBased: values['zero-based'] === true,
    labelColumn: s('label-column'),
    task: (s('task') ?? defaults.task) as TrainConfig['task'],
    l2: s('l2') === undefined ? undefined : n('l2', 0),
    factors: n('factors', n('rank', defaults.factors)),
    syncEvery: n('sync-every', defaults.syncEvery),
    staleness: n('staleness', defaults.staleness),
    mergeEvery: s('merge-every') === undefined ? undefined : n('merge-every', 0),
    compress: s('compress'),
    paramPrecision: (s('param-precision') ?? defaults.paramPrecision) as TrainConfig['paramPrecision'],
    syncBn: values['sync-bn'] === true,
    model: s('model') ?? defaults.model,
    hidden: hidden === undefined ? defaults.hidden : hidden.split(',').map((w) => number('hidden', w, NaN)),
    workers: n('workers', defaults.workers),
    stages: n('stages', defaults.stages),
    microbatches: n('microbatches', defaults.microbatches),
    pipelineSchedule: (s('pipeline-schedule') ?? defaults.pipelineSchedule) as TrainConfig['pipelineSchedule'],
    stageCuts: s('stage-cuts') === undefined ? undefined : s('stage-cuts')!.split(',').map((c) => number('stage-cuts', c, NaN)),
    tensorParallel: n('tensor-parallel', defaults.tensorParallel),
    recompute: s('recompute'),
    memoryBudget: s('memory-budget') === undefined ? undefined : parseBytes(s('memory-budget')!, '--memory-budget'),
    memoryLimit: s('memory-limit') === undefined ? undefined : parseBytes(s('memory-limit')!, '--memory-limit'),
    backend: s('backend') ?? defaults.backend,
    strategy: s('strategy') ?? defaults.strategy,
    epochs: n('epochs', defaults.epochs),
    batch: n('batch', defaults.batch),
    globalBatch: s('global-batch') === undefined ? undefined : n('global-batch', 0),
    evalEvery: s('eval-every') ?? defaults.evalEvery,
    target: s('target') === undefined ? undefined : n('target', 0),
    lr: n('lr', defaults.lr),
    lrScaling: (s('lr-scaling') ?? defaults.lrScaling) as TrainConfig['lrScaling'],
    optimizer: (s('optimizer') ?? defaults.optimizer) as TrainConfig['optimizer'],
    momentum: n('momentum', defaults.momentum),
    weightDecay: n('weight-decay', defaults.weightDecay),
    schedule: (s('schedule') ?? defaults.schedule) as TrainConfig['schedule'],
    warmupEpochs: n('warmup-epochs', defaults.warmupEpochs),
    stepEpochs: n('step-epochs', defaults.stepEpochs),
    gamma: n('gamma', defaults.gamma),
    seed: n('seed', defaults.seed),
    save: s('save'),
    saveEvery: n('save-every', defaults.saveEvery),
    saveEverySeconds: s('save-every-seconds') === undefined ? undefined : number('save-every-seconds', s('save-every-seconds')!, NaN),
    resume: s('resume'),
    log: s('log'),
    timeoutSeconds: n('timeout', defaults.timeoutSeconds),
    stopAtTarget: values['stop-at-target'] === true,
    stopAfterSteps: s('stop-after-steps') === undefined ? undefined : n('stop-after-steps', 0),
    slowRank: s('slow-rank'),
    transportSecurity: s('transport-security') as TrainConfig['transportSecurity'],
    bind: s('bind'),
  };
  // a built-in model's recipe (ResNet-20's schedule and weight decay) where the flags leave it open
  const flag = (option: string) => option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);
  const chosen = withRecommended(config, (option) => values[flag(option)] !== undefined);
  recipes.set(chosen.config, chosen.taken);
  return chosen.config;
}

/** What each parsed configuration took from its model's recipe, for the first line. */
const recipes = new WeakMap<TrainConfig, string[]>();
const recipeText = (config: TrainConfig, original: TrainConfig) => {
  const taken = recipes.get(original) ?? [];
  return taken.length > 0 ? `, ${modelLabel(config.model)}'s recipe: ${taken.join(', ')}` : '';
};

/** The signals that stop a run (and save it), and the exit code each leaves: 128 + its number. */
const STOP_SIGNALS = { SIGINT: 130, SIGTERM: 143 } as const;

export async function trainCommand(args: string[]): Promise<number> {
  const config = parseTrainArgs(args);
  if (config === 'help') {
    process.stdout.write(trainHelp());
    return 0;
  }
  const json = args.includes('--json');
  const stopFlag = new SharedArrayBuffer(4);
  let stoppedBy: keyof typeof STOP_SIGNALS | null = null;
  const onSignal = (signal: keyof typeof STOP_SIGNALS) => {
    if (stoppedBy) process.exit(STOP_SIGNALS[signal]);
    stoppedBy = signal;
    Atomics.store(new Int32Array(stopFlag), 0, 1);
    // a live progress bar is cleared first, so the message has a line of its own
    process.stderr.write(`${process.stderr.isTTY ? '\r\x1b[K' : '\n'}stopping after this step${config.save ? ` and saving ${config.save}` : ''} (press Ctrl-C again to quit at once)\n`);
  };
  const listeners = Object.keys(STOP_SIGNALS).map((signal) => [signal, () => onSignal(signal as keyof typeof STOP_SIGNALS)] as const);
  for (const [signal, listener] of listeners) process.on(signal, listener);
  const asked = (option: string) => args.includes(option) || args.some((a) => a.startsWith(`${option}=`));
  const workersAsked = asked('--workers') ? config.workers : undefined;
  const split = strategies[config.strategy]?.modelRanks;
  const modelRanksAsked = split && asked(split === 'stages' ? '--stages' : '--tensor-parallel') ? config[split] : undefined;
  try {
    const code = isProcessBackend(config.backend) ? await trainAsRank(config, { workersAsked, modelRanksAsked }, stopFlag, json) : await trainWithThreads(config, stopFlag, json);
    // an interrupted run saved what it had (with --save) but did not finish: say so to the shell
    return stoppedBy ? STOP_SIGNALS[stoppedBy] : code;
  } finally {
    for (const [signal, listener] of listeners) process.off(signal, listener);
  }
}

/** Which test set a run uses, when it was drawn from the training file. */
const splitText = (dataset: Dataset) => `${'describe' in dataset && dataset.describe ? `; ${dataset.describe}` : ''}${'split' in dataset && dataset.split ? `; ${dataset.split}` : ''}`;

const resumedText = (resumedFrom?: { epoch: number; step: number }) => (resumedFrom ? `, resumed at epoch ${resumedFrom.epoch + 1} step ${resumedFrom.step}` : '');

/** The run's last line: how to resume it, or what it reached; `ranks` says where it ran. */
function finalLine(s: Summary, config: TrainConfig, ranks: string): string {
  if (s.stoppedEarly && config.stopAtTarget && s.trainSecondsToTarget != null) {
    return `stopped at the target (${s.model}, ${s.strategy}, ${ranks}, ${s.wallSeconds.toFixed(1)} s)${targetText(s)}\n`;
  }
  if (s.stoppedEarly) return `stopped early after ${s.wallSeconds.toFixed(1)} s${config.save ? `; resume with --resume ${config.save}` : ''}\n`;
  return `${Number.isNaN(s.testAccuracy) ? `test RMSE ${s.testRmse.toFixed(4)}` : `test accuracy ${(100 * s.testAccuracy).toFixed(2)}%`} after ${config.epochs} epoch${config.epochs > 1 ? 's' : ''} (${s.model}, ${s.strategy}, ${ranks}, ${Math.round(s.samplesPerSecond).toLocaleString('en-US')} samples/s, ${s.wallSeconds.toFixed(1)} s)${targetText(s)}\n`;
}

/** With --target: when the run first reached it, or that it did not. */
function targetText(s: Summary): string {
  if (s.target === undefined) return '';
  const goal = Number.isNaN(s.testAccuracy) ? `RMSE ${s.target}` : `${+(100 * s.target).toFixed(2)}%`;
  if (s.trainSecondsToTarget == null) return `; ${goal} not reached`;
  return `; ${goal} reached after ${s.trainSecondsToTarget.toFixed(2)} s of training (${s.samplesToTarget!.toLocaleString('en-US')} samples)`;
}

/** Where the run's last line goes: stdout, unless the JSONL log or --json takes stdout. */
function resultStream(config: TrainConfig, json: boolean): NodeJS.WriteStream {
  return config.log === '-' || json ? process.stderr : process.stdout;
}

async function trainWithThreads(config: TrainConfig, stopFlag: SharedArrayBuffer, json: boolean): Promise<number> {
  const result = await trainOnThreads(config, {
    stopFlag,
    notice: (line) => process.stderr.write(`${line}\n`),
    onStart: (monitor, info) => {
      const c = info.config;
      process.stderr.write(`converge: ${modelLabel(c.model)} (${info.parameters.toLocaleString('en-US')} parameters) on ${info.dataset.name} (${info.dataset.train.count} train / ${info.dataset.test.count} test${splitText(info.dataset)}), `
        + `${c.strategy}, ${ranksText(c)}, ${c.optimizer} lr ${c.lr}${c.lrScaling === 'linear' && c.workers > 1 ? ` × ${c.workers} (linear scaling)` : ''}, kernels ${info.kernels}`
        + `${recipeText(c, config)}${resumedText(info.resumedFrom)}\n`);
      monitor.listen(new ProgressBar(c.epochs).update);
    },
  });
  const s = result.summary;
  // a bar left mid-epoch (a stopped run) is cleared, so the last line has a line of its own
  if (process.stderr.isTTY) process.stderr.write('\r\x1b[K');
  resultStream(config, json).write(stagesText(s) + finalLine(s, config, strategies[config.strategy].modelRanks === 'stages' ? `${config.workers > 1 ? `${config.workers} pipelines × ` : ''}${config.stages} stages`
    : strategies[config.strategy].modelRanks === 'tensorParallel' ? `${config.workers > 1 ? `${config.workers} × ` : ''}${config.tensorParallel} tensor-parallel ranks` : `${s.workers} worker${s.workers > 1 ? 's' : ''}`));
  if (json) process.stdout.write(`${JSON.stringify(s)}\n`);
  return 0;
}

/** How the run's ranks divide the work, for the first line. */
function ranksText(c: TrainConfig): string {
  if (strategies[c.strategy]?.modelRanks === 'tensorParallel') return `${c.workers > 1 ? `${c.workers} groups of ` : ''}${c.tensorParallel} tensor-parallel ranks × batch ${c.batch}`;
  if (strategies[c.strategy]?.modelRanks === 'stages') return `${c.workers > 1 ? `${c.workers} pipelines of ` : ''}${c.stages} stages × ${c.microbatches} micro-batches of ${c.batch / c.microbatches} (${c.pipelineSchedule}${c.stageCuts ? `, cut at layers ${c.stageCuts.join(',')}` : ''})`;
  return `${c.workers} worker${c.workers > 1 ? 's' : ''} × batch ${c.batch}`;
}

/** A pipeline's evidence, a line per stage: its layers, parameters, stored micro-batches and how busy it was. */
function stagesText(s: Summary): string {
  return (s.pipeline ?? []).map((stage) => `stage ${stage.stage}: layers ${stage.layers[0]}–${stage.layers[1] - 1}, ${stage.parameters.toLocaleString('en-US')} parameters, at most ${stage.peakStoredMicrobatches} micro-batches stored, `
    + `${stage.activationBytes === undefined ? '' : `their activations ${formatBytes(stage.activationBytes)} (--recompute), `}`
    + `${(100 * stage.computeSeconds / Math.max(1e-9, stage.computeSeconds + stage.idleSeconds)).toFixed(0)}% computing\n`).join('');
}

function transportText(security: TransportSecurity): string {
  return security === 'encrypt' ? 'frames encrypted, AES-256-GCM' : security === 'integrity' ? 'frames authenticated, not encrypted: --transport-security integrity' : 'frames NOT protected: --transport-security none, a trusted fabric';
}

/** One rank of a tcp or mpi job: rank 0 shows the progress and the result; the others stay quiet. */
async function trainAsRank(config: TrainConfig, asked: { workersAsked?: number; modelRanksAsked?: number }, stopFlag: SharedArrayBuffer, json: boolean): Promise<number> {
  const result = await trainOnProcess(config, {
    stopFlag,
    ...asked,
    notice: (line) => process.stderr.write(`${line}\n`),
    onStart: (monitor, info) => {
      const c = info.config;
      process.stderr.write(`converge: ${modelLabel(c.model)} (${info.parameters.toLocaleString('en-US')} parameters) on ${info.dataset.name}${splitText(info.dataset) ? ` (${splitText(info.dataset).slice(2)})` : ''}, ${c.strategy} over ${c.backend}${c.backend === 'tcp' ? ` (${transportText(transportSecurityOf(c.transportSecurity))})` : ''}, ${ranksText(c)}, kernels ${info.kernels}`
        + `${resumedText(info.resumedFrom)}\n`);
      // a launcher's pipe is not a terminal: one line per epoch instead of a bar
      if (process.stderr.isTTY) monitor.listen(new ProgressBar(c.epochs).update);
      else monitor.listen((event) => {
        if (event.kind === 'epoch') process.stderr.write(`epoch ${event.epoch + 1}/${c.epochs}: train loss ${event.trainLoss.toFixed(4)}, test ${Number.isNaN(event.testAccuracy) ? `RMSE ${event.testRmse.toFixed(4)}` : `accuracy ${(100 * event.testAccuracy).toFixed(2)}%`}\n`);
        else if (event.kind === 'evaluation' && !Number.isInteger(event.epochs)) process.stderr.write(`  at epoch ${event.epochs.toFixed(2)}: test ${Number.isNaN(event.testAccuracy) ? `RMSE ${event.testRmse.toFixed(4)}` : `accuracy ${(100 * event.testAccuracy).toFixed(2)}%`}\n`);
      });
    },
  });
  if (result.rank === 0) {
    resultStream(config, json).write(stagesText(result.summary) + finalLine(result.summary, config, `${result.size} processes over ${config.backend}`));
    if (json) process.stdout.write(`${JSON.stringify(result.summary)}\n`);
  }
  return 0;
}
