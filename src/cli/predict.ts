// `converge predict --checkpoint run.ckpt [the model and data options of train] [--out FILE]`:
// applies a trained checkpoint to data — the test set of --dataset, or --test-dataset — and
// writes one prediction per sample (CSV, or NPY float32), with the metrics where labels exist.
// `converge export --checkpoint run.ckpt --out DIR`: every parameter tensor as an NPY file with
// its name and shape, and layout.json listing them, for numpy and PyTorch.

import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { makeBatcher } from '../data/batches.js';
import { loadAnyDataset } from '../data/load.js';
import { formatNpy } from '../data/npy.js';
import { ConvergeError, missingOption } from '../errors.js';
import { selectKernels } from '../kernels/select.js';
import { checkWritable } from '../launch/outputs.js';
import { modelLabel, modelModuleUrl, isModelModule, resolveModel } from '../models/module.js';
import { readCheckpoint, readCheckpointLayout } from '../train/checkpoint.js';
import { validate } from '../train/config.js';
import { modelOptions } from '../train/run.js';
import { EVAL_BATCH } from '../strategies/strategy.js';
import { parseTrainArgs } from './train.js';

export const predictHelp = `converge predict --checkpoint FILE [--model M --dataset D … as for train] [--out FILE.csv|FILE.npy] [--json]
  Applies a checkpoint to the test set of --dataset (or to --test-dataset): one prediction per
  sample — the class, or the predicted value — to --out (CSV: index,prediction[,label]; NPY:
  float32), and the test accuracy or RMSE where the data has labels. Give the model options
  (--model, --hidden, …) the checkpoint was trained with.
`;

export const exportHelp = `converge export --checkpoint FILE --out DIR
  Writes every parameter tensor of a checkpoint as DIR/NAME.npy (float32, its shape; numpy.load
  reads it) and DIR/layout.json (names, shapes and files, in the flat buffer's order).
`;

/** Takes `--name value` out of args; returns the value and the rest. */
function take(args: string[], name: string): [string | undefined, string[]] {
  const at = args.findIndex((a) => a === name || a.startsWith(`${name}=`));
  if (at < 0) return [undefined, args];
  const value = args[at].includes('=') ? args[at].slice(name.length + 1) : args[at + 1];
  return [value, [...args.slice(0, at), ...args.slice(at + (args[at].includes('=') ? 1 : 2))]];
}

export async function predictCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(predictHelp);
    return 0;
  }
  const [checkpoint, afterCheckpoint] = take(args, '--checkpoint');
  const [out, rest] = take(afterCheckpoint, '--out');
  if (!checkpoint) throw missingOption('--checkpoint', 'the checkpoint of a trained model (converge train … --save FILE)');
  const json = rest.includes('--json');
  const parsed = parseTrainArgs(rest.filter((a) => a !== '--json'));
  if (parsed === 'help') return 0;
  const config = { ...parsed };
  validate(config);
  if (out) checkWritable('--out', out);
  if (isModelModule(config.model)) config.model = modelModuleUrl(config.model);
  const definition = await resolveModel(config.model);
  selectKernels(undefined, (line) => process.stderr.write(`${line}\n`));
  const dataset = loadAnyDataset(config.dataset, { dataDir: config.dataDir, testDataset: config.testDataset, zeroBased: config.zeroBased, labelColumn: config.labelColumn, task: config.task, seed: config.seed });
  const model = definition.build({ ...modelOptions(dataset, config, EVAL_BATCH), seed: config.seed, replica: 0 });
  const { state } = readCheckpoint(checkpoint, modelLabel(config.model), model.layout);
  const buffers = state.optimizerState['model.buffers'];
  if (model.buffers && buffers?.length === model.buffers.length) model.buffers.set(buffers);
  if (!model.predictions) throw new ConvergeError(`model ${modelLabel(config.model)} cannot predict (it has no predictions method); give it one to use converge predict.`, 'BAD_MODEL');
  const count = dataset.test.count;
  const width = model.predictionWidth ?? 1;
  const predictions = new Float32Array(count * width);
  const batcher = makeBatcher(dataset, 'test', model.maxBatch);
  const totals = { loss: 0, correct: 0, squaredError: 0 };
  for (let first = 0; first < count; first += model.maxBatch) {
    const size = Math.min(model.maxBatch, count - first);
    const batch = batcher.range(first, size);
    model.predictions(state.params, batch as never, predictions.subarray(first * width, (first + size) * width));
    const result = model.evaluate(state.params, batch as never);
    totals.loss += result.loss * size;
    totals.correct += result.correct;
    totals.squaredError += result.squaredError;
  }
  const metrics = { samples: count, testLoss: totals.loss / count, ...(model.task === 'classification' ? { testAccuracy: totals.correct / count } : { testRmse: Math.sqrt(totals.squaredError / count) }) };
  if (out) {
    if (/\.npy$/i.test(out)) writeFileSync(out, formatNpy(predictions, width === 1 ? [count] : [count, width]));
    else {
      const lines = ['index,prediction'];
      for (let i = 0; i < count; i++) lines.push(`${i},${Array.from(predictions.subarray(i * width, (i + 1) * width), (v) => +v.toPrecision(7)).join(',')}`);
      writeFileSync(out, `${lines.join('\n')}\n`);
    }
  }
  const merit = 'testAccuracy' in metrics ? `test accuracy ${(100 * metrics.testAccuracy!).toFixed(2)}%` : `test RMSE ${metrics.testRmse!.toFixed(4)}`;
  (json ? process.stderr : process.stdout).write(`${count} predictions${out ? ` in ${out}` : ''}; ${merit}, test loss ${metrics.testLoss.toFixed(4)} (${modelLabel(config.model)} from ${checkpoint}, on ${dataset.name})\n`);
  if (json) process.stdout.write(`${JSON.stringify({ type: 'predict', checkpoint, dataset: dataset.name, out: out ?? null, ...metrics })}\n`);
  return 0;
}

export async function exportCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(exportHelp);
    return 0;
  }
  const [checkpoint, afterCheckpoint] = take(args, '--checkpoint');
  const [out, rest] = take(afterCheckpoint, '--out');
  if (!checkpoint) throw missingOption('--checkpoint', 'the checkpoint to export (converge train … --save FILE)');
  if (!out) throw missingOption('--out', 'a folder for the NPY files');
  if (rest.length > 0) throw missingOption('nothing else', `--checkpoint FILE --out DIR (got ${rest.join(' ')})`);
  const { header, layout, state } = readCheckpointLayout(checkpoint);
  mkdirSync(out, { recursive: true });
  checkWritable('--out', join(out, 'layout.json'));
  const tensors = layout.slots.map((slot) => {
    const file = `${slot.name}.npy`;
    writeFileSync(join(out, file), formatNpy(state.params.subarray(slot.offset, slot.offset + slot.size), slot.shape));
    return { name: slot.name, shape: slot.shape, file };
  });
  const buffers = state.optimizerState['model.buffers'];
  if (buffers) writeFileSync(join(out, 'model.buffers.npy'), formatNpy(buffers, [buffers.length]));
  writeFileSync(join(out, 'layout.json'), `${JSON.stringify({ model: header.model, epoch: header.epoch, step: header.step, tensors, ...(buffers ? { buffers: 'model.buffers.npy' } : {}) }, null, 2)}\n`);
  process.stdout.write(`wrote ${tensors.length} tensors (${layout.size.toLocaleString('en-US')} parameters) of ${header.model} to ${out}\n`);
  return 0;
}
