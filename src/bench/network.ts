// bench/network: time to accuracy where the network costs something. Two ranks in two Linux
// network namespaces joined by a veth pair, shaped by the kernel's token-bucket filter to each
// rate (unshaped: the veth at memory speed), `converge train --backend tcp` between them; async-ps
// (a server and 2 workers) runs its 3 ranks behind a switch, each rank's link shaped to the same
// rate. For each model, rate and configuration: the training seconds until the test accuracy first
// reaches the target (evaluated every quarter epoch — async-ps's ranks meet only at epoch ends, so
// its times are epoch ends; the run stops there, --stop-at-target), medians over seeds.
// Needs root and iproute2; says so and stops where they are missing.
//   npm run bench:network -- [--models mlp,cnn] [--rates 100mbit,1gbit,unshaped] [--configs plain,fp16,…] [--seeds 1] [--transport-security none]

import { randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import { SwitchedNetwork, VethPair, netnsMissing } from '../launch/netns.js';
import { announceEnvironment, environment, median, writeJson } from './common.js';

const { values } = parseArgs({
  options: {
    models: { type: 'string', default: 'mlp,cnn' },
    rates: { type: 'string', default: '100mbit,1gbit,unshaped' },
    configs: { type: 'string', default: 'plain,fp16,qsgd8,topk,local-sgd,async-ps' },
    seeds: { type: 'string', default: '1' },
    'transport-security': { type: 'string', default: 'none' },
    out: { type: 'string', default: 'bench/results/network.json' },
  },
});

/** The configurations, by the name --configs uses: their flags. */
const configurations: Record<string, { label: string; flags: string[]; ranks?: number; evalEvery?: string }> = {
  plain: { label: 'all-reduce', flags: [] },
  fp16: { label: 'fp16', flags: ['--compress', 'fp16'] },
  qsgd8: { label: 'QSGD 8-bit', flags: ['--compress', 'qsgd:8'] },
  topk: { label: 'top-k 0.001, DGC', flags: ['--compress', 'topk:0.001'] },
  'local-sgd': { label: 'local SGD, k = 8', flags: ['--strategy', 'local-sgd', '--sync-every', '8'] },
  'async-ps': { label: 'async-ps, 2 workers', flags: ['--strategy', 'async-ps'], ranks: 3, evalEvery: '1' },
};
/** Each model's target and epoch cap (a run that has not reached it by then counts as not reaching it). */
const models: Record<string, { target: number; epochs: number }> = { mlp: { target: 0.84, epochs: 6 }, cnn: { target: 0.89, epochs: 4 } };

if (netnsMissing) {
  console.error(`bench:network needs network namespaces: ${netnsMissing} (run as root with iproute2 installed).`);
  process.exit(1);
}
const names = values.configs!.split(',');
for (const name of names) if (!configurations[name]) throw new Error(`--configs: unknown ${name} (known: ${Object.keys(configurations).join(', ')})`);
const seeds = values.seeds!.split(',').map(Number);
const cli = new URL('../cli/main.js', import.meta.url).pathname;
announceEnvironment();

interface Row { model: string; rate: string; config: string; target: number; trainSeconds: (number | null)[]; wallSeconds: (number | null)[]; samples: (number | null)[]; bytesPerStep: number }
const rows: Row[] = [];
const pair = new VethPair();
// the 3 ranks of async-ps, made only when asked for
const switched = names.some((name) => configurations[name].ranks === 3) ? new SwitchedNetwork(3) : null;
const secret = randomBytes(16).toString('hex');
let port = 21000 + (process.pid % 20000);
pair.create(null);
switched?.create(null);
// removed however the run ends: done, failed, or interrupted
process.on('exit', () => {
  pair.remove();
  switched?.remove();
});
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));
for (const rate of values.rates!.split(',')) {
  pair.shape(rate === 'unshaped' ? null : rate);
  switched?.shape(rate === 'unshaped' ? null : rate);
  for (const model of values.models!.split(',')) {
    const { target, epochs } = models[model];
    for (const name of names) {
      const row: Row = { model, rate, config: configurations[name].label, target, trainSeconds: [], wallSeconds: [], samples: [], bytesPerStep: 0 };
      for (const seed of seeds) {
        const args = [cli, 'train', '--backend', 'tcp', '--model', model, '--epochs', String(epochs), '--seed', String(seed), '--target', String(target), '--stop-at-target',
          '--eval-every', configurations[name].evalEvery ?? '0.25', '--json', '--timeout', '300', '--transport-security', values['transport-security']!, ...configurations[name].flags];
        const ranks = await (configurations[name].ranks === 3 ? switched! : pair).job(args, port++, secret);
        const failed = ranks.findIndex((r) => r.code !== 0);
        if (failed >= 0) throw new Error(`${model} ${rate} ${name} seed ${seed}: rank ${failed} exited ${ranks[failed].code}:\n${ranks[failed].output}`);
        const summary = JSON.parse(ranks[0].output.split('\n').filter((line) => line.startsWith('{')).pop()!);
        row.trainSeconds.push(summary.trainSecondsToTarget);
        row.wallSeconds.push(summary.wallSecondsToTarget);
        row.samples.push(summary.samplesToTarget);
        row.bytesPerStep = summary.bytesPerWorkerPerStep;
        console.error(`${model} ${rate} ${configurations[name].label} seed ${seed}: ${summary.trainSecondsToTarget === null ? `${100 * target}% not reached in ${epochs} epochs (${(100 * summary.testAccuracy).toFixed(2)}%)` : `${summary.trainSecondsToTarget.toFixed(1)} s of training`}`);
      }
      rows.push(row);
    }
  }
}

const middle = (xs: (number | null)[]) => (xs.some((x) => x === null) ? null : median(xs as number[]));
console.log(`time to target, 2 ranks over tcp (--transport-security ${values['transport-security']}) between two namespaces, evaluated every 0.25 epoch; median training seconds over seeds ${seeds.join(', ')}`);
console.log('model  rate        configuration          bytes/step   to target (s)   ÷ all-reduce');
for (const r of rows) {
  const seconds = middle(r.trainSeconds);
  const plain = rows.find((p) => p.model === r.model && p.rate === r.rate && p.config === configurations.plain.label);
  const base = plain ? middle(plain.trainSeconds) : null;
  const speedup = seconds !== null && base !== null ? `${(base / seconds).toFixed(2)}×` : '-';
  console.log(`${r.model.padEnd(6)} ${r.rate.padEnd(11)} ${r.config.padEnd(22)} ${Math.round(r.bytesPerStep).toLocaleString("en-US").padStart(10)}   ${(seconds === null ? 'not reached' : seconds.toFixed(1)).padStart(13)}   ${speedup.padStart(12)}`);
}
writeJson(values.out!, { environment: environment(), transportSecurity: values['transport-security'], seeds, rows });
