// --compress: parses a hook's written form, once, into a factory of per-worker hooks.
//   none | fp16 | bf16 | sign | qsgd:BITS | topk:DENSITY[,nodgc][,clip=X][,warmup=E][+fp16|+bf16] | randomk:DENSITY[+fp16|+bf16]

import { ConvergeError } from '../errors.js';
import { bfloat16, float16, float32 } from './codecs.js';
import type { Hook, ValueCodec } from './hook.js';
import { dense } from './dense.js';
import { qsgd, sign } from './quantize.js';
import { randomk, topk } from './sparsify.js';

export const compressForms = 'none, fp16, bf16, sign, qsgd:BITS (2–8), topk:DENSITY[,nodgc][,clip=NORM][,warmup=EPOCHS][+fp16|+bf16], randomk:DENSITY[+fp16|+bf16] (0 < DENSITY ≤ 1)';

export interface HookContext {
  size: number; // floats in the gradient
  seed: number; // per worker, for the stochastic hooks
  momentum: number; // the optimiser's, for DGC's momentum correction (0: none)
}

export type HookFactory = (context: HookContext) => Hook;

function refuse(text: string, problem: string): ConvergeError {
  return new ConvergeError(`--compress ${JSON.stringify(text)}: ${problem}; valid forms: ${compressForms}.`, 'BAD_OPTION');
}

export function parseCompress(text: string): HookFactory {
  const [main, codecName, ...more] = text.trim().split('+');
  if (more.length) throw refuse(text, 'at most one value codec may follow +');
  let codec: ValueCodec = float32;
  if (codecName !== undefined) {
    if (codecName === 'fp16') codec = float16;
    else if (codecName === 'bf16') codec = bfloat16;
    else throw refuse(text, `'${codecName}' is not a value codec (fp16 or bf16)`);
  }
  const [kind, argument, ...rest] = main.split(':');
  const options = (argument ?? '').split(',');
  const density = Number(options[0]);
  const needsDensity = () => {
    if (!(density > 0 && density <= 1)) throw refuse(text, `density '${options[0] ?? ''}' is not in (0, 1]`);
  };
  if (rest.length) throw refuse(text, 'too many colons');
  const plain = (name: string) => {
    if (argument !== undefined) throw refuse(text, `${name} takes no argument`);
    if (codecName !== undefined) throw refuse(text, `${name} takes no value codec`);
  };
  switch (kind) {
    case 'none':
      plain('none');
      return () => dense(float32);
    case 'fp16':
    case 'bf16':
      plain(kind);
      return () => dense(kind === 'fp16' ? float16 : bfloat16);
    case 'sign':
      plain('sign');
      return ({ size }) => sign(size);
    case 'qsgd': {
      const bits = Number(argument);
      if (!Number.isInteger(bits) || bits < 2 || bits > 8) throw refuse(text, `qsgd needs 2 to 8 bits, got '${argument ?? ''}'`);
      if (codecName !== undefined) throw refuse(text, 'qsgd takes no value codec');
      return ({ size, seed }) => qsgd(bits, size, seed);
    }
    case 'randomk':
      needsDensity();
      if (options.length > 1) throw refuse(text, 'randomk takes only a density');
      return ({ size, seed }) => randomk(density, codec, size, seed);
    case 'topk': {
      needsDensity();
      let dgc = true;
      let clipNorm = 0;
      let warmupEpochs = 1;
      for (const option of options.slice(1)) {
        const [key, value] = option.split('=');
        const number = Number(value);
        if (key === 'nodgc' && value === undefined) dgc = false;
        else if (key === 'clip' && number > 0) clipNorm = number;
        else if (key === 'warmup' && number >= 0) warmupEpochs = number;
        else throw refuse(text, `'${option}' is not a topk option (nodgc, clip=NORM, warmup=EPOCHS)`);
      }
      return ({ size, momentum }) => topk({ density, codec, dgc, momentum: dgc ? momentum : 0, clipNorm, warmupEpochs }, size);
    }
    default:
      throw refuse(text, `'${kind}' is not a hook`);
  }
}
