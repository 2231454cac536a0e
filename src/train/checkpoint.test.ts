// Checkpoints byte by byte: the format as the file's header comment gives it (magic, header
// length, header JSON, float32 arrays), read back exactly, and every kind of damage refused with
// a message that names the file, the problem and what to do. Resumes of every strategy through
// these files are tested in launch/ and compress/; here the file itself is the subject.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { crc32 } from 'node:zlib';
import { Layout } from '../tensor/layout.js';
import { readCheckpoint, readCheckpointLayout, writeCheckpoint } from './checkpoint.js';
import { restoreHookState, restoreOptimizer, gatherHookState } from './hook-state.js';
import { Optimizer, defaultOptimizer } from '../optim/optimizers.js';
import { createShmHandle, ShmCommunicator } from '../comm/shm.js';
import type { Hook } from '../compress/hook.js';

const dir = mkdtempSync(join(tmpdir(), 'converge-checkpoint-'));
const layout = new Layout([{ name: 'w', shape: [2, 3] }, { name: 'b', shape: [3] }]);
const params = Float32Array.from({ length: 9 }, (_, i) => Math.fround(i * 0.37 - 1));
const velocity = Float32Array.from({ length: 9 }, (_, i) => Math.fround(-i / 7));
const meta = { model: 'tiny', layout, optimizer: 'momentum', globalBatch: 96, seed: 11, paramPrecision: 'bf16' as const };

function save(name: string): string {
  const path = join(dir, name);
  writeCheckpoint(path, { params, optimizerState: { velocity }, optimizerSteps: 42, epoch: 3, step: 17 }, meta);
  return path;
}

/** The file as the format says it is laid out, parsed here without the reader. */
function parse(bytes: Buffer): { header: Record<string, unknown>; headerStart: number; headerLength: number } {
  const headerLength = bytes.readUInt32LE(8);
  return { header: JSON.parse(bytes.toString('utf8', 12, 12 + headerLength)), headerStart: 12, headerLength };
}

/** A file whose header is replaced by `header` (its length field rewritten), payload kept. */
function withHeader(path: string, name: string, edit: (header: Record<string, unknown>) => unknown): string {
  const bytes = readFileSync(path);
  const { header, headerLength } = parse(bytes);
  const text = Buffer.from(typeof edit(header) === 'string' ? (edit(header) as string) : JSON.stringify(header));
  const length = Buffer.alloc(4);
  length.writeUInt32LE(text.length);
  const out = join(dir, name);
  writeFileSync(out, Buffer.concat([bytes.subarray(0, 8), length, text, bytes.subarray(12 + headerLength)]));
  return out;
}

test('a checkpoint is "CVGCKPT1", the header\'s length, the header, then the arrays as float32 little-endian, with a CRC-32 over them; it reads back exactly', () => {
  const path = save('good.ckpt');
  const bytes = readFileSync(path);
  assert.equal(bytes.toString('latin1', 0, 8), 'CVGCKPT1');
  const { header, headerLength } = parse(bytes);
  assert.deepEqual(header, {
    model: 'tiny', layout: 'w[2x3];b[3]', optimizer: 'momentum', arrays: [{ name: 'params', length: 9 }, { name: 'velocity', length: 9 }],
    optimizerSteps: 42, epoch: 3, step: 17, globalBatch: 96, seed: 11, paramPrecision: 'bf16',
    crc32: crc32(Buffer.concat([Buffer.from(params.buffer), Buffer.from(velocity.buffer)])),
  });
  const payload = bytes.subarray(12 + headerLength);
  assert.equal(payload.length, 4 * 18, 'nothing after the arrays');
  for (let i = 0; i < 9; i++) {
    assert.equal(payload.readFloatLE(4 * i), params[i]);
    assert.equal(payload.readFloatLE(36 + 4 * i), velocity[i]);
  }
  const { header: read, state } = readCheckpoint(path, 'tiny', layout);
  assert.deepEqual(state, { params, optimizerState: { velocity }, optimizerSteps: 42, epoch: 3, step: 17 });
  assert.equal(read.globalBatch, 96);
  // without knowing the model: the layout comes from the header
  const fromHeader = readCheckpointLayout(path);
  assert.equal(fromHeader.layout.fingerprint(), 'w[2x3];b[3]');
  assert.deepEqual(fromHeader.layout.slots.map((s) => [s.name, [...s.shape]]), [['w', [2, 3]], ['b', [3]]]);
  assert.deepEqual(fromHeader.state.params, params);
  // written through a temporary file renamed into place: none is left behind
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp')), []);
});

test('a checkpoint written over an older one replaces it whole; a write that fails leaves the older one and no temporary file', () => {
  const path = save('over.ckpt');
  writeCheckpoint(path, { params: params.map((v) => v + 1), optimizerState: {}, optimizerSteps: 1, epoch: 4, step: 0 }, meta);
  const { state } = readCheckpoint(path, 'tiny', layout);
  assert.deepEqual(state.params, params.map((v) => v + 1));
  assert.deepEqual(state.optimizerState, {});
  // a write that fails midway (the temporary file lands on /dev/full: no space left)
  symlinkSync('/dev/full', `${path}.tmp-${process.pid}`);
  assert.throws(() => writeCheckpoint(path, { params, optimizerState: { velocity }, optimizerSteps: 2, epoch: 5, step: 0 }, meta), /ENOSPC/);
  assert.equal(readCheckpoint(path, 'tiny', layout).state.epoch, 4, 'the older checkpoint is intact');
  assert.deepEqual(readdirSync(dir).filter((f) => f.includes('.tmp')), []);
});

test('a damaged or foreign checkpoint is refused, naming the file and what is wrong, before anything is loaded', () => {
  const path = save('source.ckpt');
  const bytes = readFileSync(path);
  const hint = /; the file is damaged; resume from another checkpoint or start without --resume$/;
  const refused = (file: string, problem: RegExp, code = 'CORRUPT_FILE', reader = () => readCheckpoint(file, 'tiny', layout)) =>
    assert.throws(reader, (e: Error & { code?: string }) => e.code === code && problem.test(e.message)
      && (code === 'CORRUPT_FILE' ? e.message.startsWith(`${file}: `) && hint.test(e.message) : e.message.startsWith(`checkpoint ${file} `)), `${file}: ${problem}`);
  const write = (name: string, content: Buffer) => {
    const file = join(dir, name);
    writeFileSync(file, content);
    return file;
  };
  assert.throws(() => readCheckpoint(join(dir, 'absent.ckpt'), 'tiny', layout), (e: Error & { code?: string }) => e.code === 'MISSING_DATA' && /checkpoint not found at .*absent\.ckpt; check the --resume path\./.test(e.message));
  refused(write('magic.ckpt', Buffer.concat([Buffer.from('CVGCKPT2'), bytes.subarray(8)])), /is not a converge checkpoint \(bad magic\)/);
  refused(write('short.ckpt', bytes.subarray(0, 11)), /is not a converge checkpoint \(bad magic\)/);
  refused(write('just-prefix.ckpt', bytes.subarray(0, 12)), /is truncated in its header/);
  const { headerLength } = parse(bytes);
  refused(write('header-cut.ckpt', bytes.subarray(0, 12 + headerLength - 1)), /is truncated in its header/);
  // a header that ends exactly where the file does, with no payload: read, then the payload's size refused
  refused(write('no-payload.ckpt', bytes.subarray(0, 12 + headerLength)), /holds 0 payload bytes, header promises 72/);
  refused(withHeader(path, 'json.ckpt', () => '{"model": "tiny",'), /has an unreadable header/);
  refused(write('payload-cut.ckpt', bytes.subarray(0, bytes.length - 4)), /holds 68 payload bytes, header promises 72/);
  refused(write('payload-long.ckpt', Buffer.concat([bytes, Buffer.alloc(4)])), /holds 76 payload bytes, header promises 72/);
  // one bit flipped in each array in turn
  for (const at of [12 + headerLength + 5, bytes.length - 1]) {
    const flipped = Buffer.from(bytes);
    flipped[at] ^= 0x10;
    refused(write(`flipped-${at}.ckpt`, flipped), /fails its CRC-32 check/);
  }
  refused(withHeader(path, 'crc.ckpt', (h) => { h.crc32 = (h.crc32 as number) ^ 1; }), /fails its CRC-32 check/);
  // arrays renamed or resized: the CRC still holds, the parameters do not
  refused(withHeader(path, 'renamed.ckpt', (h) => { (h.arrays as { name: string }[])[0].name = 'weights'; }), /has no parameter array of the right size/);
  const resized = withHeader(path, 'resized.ckpt', (h) => { h.arrays = [{ name: 'params', length: 8 }, { name: 'velocity', length: 10 }]; });
  refused(resized, /has no parameter array of the right size/);
  // another model, or the same name with another layout
  refused(path, /holds model 'tiny' \(w\[2x3\];b\[3\]\), not 'other' \(w\[2x3\];b\[3\]\); resume with the same --model\/--hidden/, 'CHECKPOINT_MISMATCH', () => readCheckpoint(path, 'other', layout));
  const wider = new Layout([{ name: 'w', shape: [2, 4] }, { name: 'b', shape: [4] }]);
  refused(path, /holds model 'tiny' \(w\[2x3\];b\[3\]\), not 'tiny' \(w\[2x4\];b\[4\]\)/, 'CHECKPOINT_MISMATCH', () => readCheckpoint(path, 'tiny', wider));
  // read without a model: a layout entry that is not name[shape]
  const badLayout = withHeader(path, 'layout.ckpt', (h) => { h.layout = 'w[2x3];b3'; });
  assert.throws(() => readCheckpointLayout(badLayout), (e: Error) => e.message === `${badLayout}: has a layout entry 'b3' that is not name[shape]; the file is damaged; export another checkpoint`);
  const trailing = withHeader(path, 'layout-trailing.ckpt', (h) => { h.layout = 'w[2x3];b[3]x'; });
  assert.throws(() => readCheckpointLayout(trailing), /has a layout entry 'b\[3\]x' that is not name\[shape\]/);
});

/** A hook with saved state: what it is handed back is recorded. */
function recordingHook(state: Record<string, Float32Array> | undefined): Hook & { loaded?: Record<string, Float32Array> } {
  const hook = { saveState: () => state, loadState(s: Record<string, Float32Array>) { hook.loaded = s; } } as unknown as Hook & { loaded?: Record<string, Float32Array> };
  return hook;
}

test('a hook\'s state is saved as hook.NAME.RANK; on as many ranks each takes its own, on another number rank 0 takes the sum of what was owed (not the random stream)', async () => {
  const comm = new ShmCommunicator(createShmHandle(1, 64, 10_000), 0);
  const saved = await gatherHookState(comm, recordingHook({ residual: Float32Array.of(1, 2, 3), random: Float32Array.of(9) }));
  assert.deepEqual(saved, { 'hook.residual.0': Float32Array.of(1, 2, 3), 'hook.random.0': Float32Array.of(9) });
  assert.deepEqual(await gatherHookState(comm, recordingHook(undefined)), {});
  assert.deepEqual(await gatherHookState(comm, null), {});
  assert.deepEqual(await gatherHookState(comm, {} as Hook), {}, 'a hook that keeps no state');
  // three ranks, seen from the root and from another rank: the gather (played here) lays rank r's arrays at r·n
  for (const rank of [0, 1]) {
    const gathered: number[] = [];
    const three = {
      rank, size: 3,
      async gather(send: Float32Array, recv: Float32Array | null, root: number) {
        assert.equal(root, 0);
        gathered.push(send.length);
        if (recv) for (let r = 0; r < 3; r++) recv.set(send.map((v) => v + 10 * r), r * send.length);
        else assert.notEqual(rank, 0, 'the root receives');
      },
    } as unknown as ShmCommunicator;
    const state = await gatherHookState(three, recordingHook({ residual: Float32Array.of(1, 2), random: Float32Array.of(5) }));
    assert.deepEqual(gathered, [2, 1], 'one gather per array, of its length');
    assert.deepEqual(state, rank === 0 ? {
      'hook.residual.0': Float32Array.of(1, 2), 'hook.residual.1': Float32Array.of(11, 12), 'hook.residual.2': Float32Array.of(21, 22),
      'hook.random.0': Float32Array.of(5), 'hook.random.1': Float32Array.of(15), 'hook.random.2': Float32Array.of(25),
    } : {});
  }

  const three = {
    'hook.residual.0': Float32Array.of(1, 2), 'hook.residual.1': Float32Array.of(10, 20), 'hook.residual.2': Float32Array.of(100, 200),
    'hook.random.0': Float32Array.of(5), 'hook.random.1': Float32Array.of(6), 'hook.random.2': Float32Array.of(7),
    params: Float32Array.of(0), 'hook.x': Float32Array.of(0), // not a hook's array
  };
  for (let rank = 0; rank < 3; rank++) {
    const hook = recordingHook(undefined);
    restoreHookState(hook, three, rank, 3);
    assert.deepEqual(hook.loaded, { residual: three[`hook.residual.${rank}` as 'hook.residual.0'], random: three[`hook.random.${rank}` as 'hook.random.0'] }, `rank ${rank} of 3`);
  }
  const first = recordingHook(undefined);
  restoreHookState(first, three, 0, 2);
  assert.deepEqual(first.loaded, { residual: Float32Array.of(111, 222) }, 'rank 0 of 2 owes what all three did');
  const second = recordingHook(undefined);
  restoreHookState(second, three, 1, 2);
  assert.deepEqual(second.loaded, {}, 'rank 1 of 2 starts empty');
  const none = recordingHook(undefined);
  restoreHookState(none, { params: Float32Array.of(1) }, 0, 2);
  assert.equal(none.loaded, undefined, 'a checkpoint without hook state loads nothing');
  for (const key of ['xhook.residual.0', 'hook.residual.0x', 'hook.residual.', 'hook..0']) {
    const ignored = recordingHook(undefined);
    restoreHookState(ignored, { [key]: Float32Array.of(1) }, 0, 1);
    assert.equal(ignored.loaded, undefined, `'${key}' is not a hook's array`);
  }
  // ranks past 9: eleven ranks' arrays, each taken by its own rank
  const eleven = Object.fromEntries(Array.from({ length: 11 }, (_, r) => [`hook.residual.${r}`, Float32Array.of(r)]));
  const tenth = recordingHook(undefined);
  restoreHookState(tenth, eleven, 10, 11);
  assert.deepEqual(tenth.loaded, { residual: Float32Array.of(10) });
  // a hook that takes no state back is left alone
  restoreHookState({} as Hook, three, 0, 2);
  restoreHookState(null, three, 0, 2);
});

test('an optimiser takes its saved state, or its range of it, and its step count; state it does not keep is skipped', () => {
  const saved = { velocity: Float32Array.from({ length: 6 }, (_, i) => i + 1), m: Float32Array.of(7, 7, 7, 7, 7, 7) };
  const whole = new Optimizer(defaultOptimizer, 6);
  restoreOptimizer(whole, saved, 12);
  assert.deepEqual(whole.state, { velocity: saved.velocity });
  assert.equal(whole.steps, 12);
  const share = new Optimizer(defaultOptimizer, 2);
  restoreOptimizer(share, saved, 3, [2, 4]);
  assert.deepEqual(share.state.velocity, Float32Array.of(3, 4));
});
