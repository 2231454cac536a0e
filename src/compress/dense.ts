// The dense hooks: every value sent, in a value codec (fp32: the identity hook; fp16, bf16).

import { float32 } from './codecs.js';
import type { Hook, ValueCodec } from './hook.js';
import { damaged, view } from './payload.js';

/** Every value, in `codec` (fp32: the identity). */
export function dense(codec: ValueCodec): Hook {
  return {
    name: codec === float32 ? 'none' : codec.name,
    appliesMomentum: false,
    exact: codec === float32,
    maxBytes: (n) => 4 + n * codec.bytes,
    encodeShare(values, start, end, out, step) {
      return this.encode(values.subarray(start, end), out, step);
    },
    encode(gradient, out) {
      view(out).setUint32(0, gradient.length, true);
      codec.writeAll(gradient, out, 4);
      return 4 + gradient.length * codec.bytes;
    },
    decode(payload, length, target, accumulate) {
      const n = view(payload).getUint32(0, true);
      if (n !== target.length || length !== 4 + n * codec.bytes) throw damaged(this.name, `${length} bytes for ${n} values of ${target.length}`);
      codec.readAll(payload, 4, target, accumulate);
    },
  };
}
