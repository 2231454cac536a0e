// The activation arena's planner and bindings, held to brute force: no two buffers alive at the
// same time share a byte, every offset is a cache line's multiple, the arena is never smaller than
// the most bytes alive at once (a sweep over every event) and is exactly that on nested lifetimes,
// and the greedy order (largest first, earlier first among equals) places a small case where
// the hand computation below says.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Random } from './random.js';
import { ALIGN, aligned, bindingAt, Held, holdPrivately, placeBuffers, type Lifetime } from './arena.js';

const roundUp = (bytes: number) => Math.ceil(bytes / 64) * 64;

/** The most (aligned) bytes alive at any one event. */
function peak(lifetimes: readonly Lifetime[]): number {
  const last = Math.max(0, ...lifetimes.map((l) => l.to));
  let most = 0;
  for (let t = 0; t < last; t++) most = Math.max(most, lifetimes.filter((l) => l.from <= t && t < l.to).reduce((sum, l) => sum + roundUp(l.bytes), 0));
  return most;
}

function assertPlaced(lifetimes: readonly Lifetime[], { offsets, size }: { offsets: number[]; size: number }, what: string): void {
  assert.equal(offsets.length, lifetimes.length);
  for (let i = 0; i < lifetimes.length; i++) {
    assert.ok(offsets[i] >= 0 && offsets[i] % 64 === 0, `${what}: buffer ${i} at ${offsets[i]}`);
    assert.ok(offsets[i] + roundUp(lifetimes[i].bytes) <= size, `${what}: buffer ${i} ends past the arena`);
    for (let j = 0; j < i; j++) {
      const together = lifetimes[i].from < lifetimes[j].to && lifetimes[j].from < lifetimes[i].to;
      const apart = offsets[i] + lifetimes[i].bytes <= offsets[j] || offsets[j] + lifetimes[j].bytes <= offsets[i];
      assert.ok(!together || apart, `${what}: buffers ${i} and ${j} are alive together and overlap`);
    }
  }
  assert.equal(size, Math.max(0, ...lifetimes.map((l, i) => offsets[i] + roundUp(l.bytes))), `${what}: the arena ends where its last buffer does`);
  assert.ok(size >= peak(lifetimes), `${what}: ${size} bytes for a peak of ${peak(lifetimes)}`);
}

test('buffers are placed at cache-line offsets, none over another alive at the same time, in an arena never smaller than the peak (200 random plans)', () => {
  const random = new Random(9);
  for (let plan = 0; plan < 200; plan++) {
    const lifetimes = Array.from({ length: 1 + Math.floor(random.next() * 12) }, () => {
      const from = Math.floor(random.next() * 20);
      return { bytes: 1 + Math.floor(random.next() * 700), from, to: from + 1 + Math.floor(random.next() * 8) };
    });
    assertPlaced(lifetimes, placeBuffers(lifetimes), `plan ${plan}`);
  }
});

test('on a training step\'s nested lifetimes (each layer\'s output kept until its backward pass) the arena is exactly the peak', () => {
  for (const layers of [1, 2, 5, 9]) {
    // forward: output k lives from event k until its backward at 2·layers − k; scratch lives one event each
    const lifetimes: Lifetime[] = [];
    for (let k = 0; k < layers; k++) lifetimes.push({ bytes: 100 * (k + 1), from: k, to: 2 * layers - k });
    for (let t = 0; t < 2 * layers; t++) lifetimes.push({ bytes: 30, from: t, to: t + 1 });
    const placed = placeBuffers(lifetimes);
    assertPlaced(lifetimes, placed, `${layers} layers`);
    assert.equal(placed.size, peak(lifetimes), `${layers} layers`);
  }
});

test('largest first, earlier first among equals, each at the lowest offset free for its whole life (a case worked by hand)', () => {
  const lifetimes: Lifetime[] = [
    { bytes: 100, from: 0, to: 4 },
    { bytes: 200, from: 2, to: 6 },
    { bytes: 64, from: 4, to: 8 },
    { bytes: 100, from: 6, to: 9 },
    { bytes: 0, from: 0, to: 9 },
  ];
  // in order: the 200 at 0 (256 aligned); the first 100 (earlier than the other) is alive with it:
  // 256; the second 100 is alive with neither: 0; the 64 is alive with the 200 (0–256) and the second
  // 100 (0–128): 256; the empty one fits before anything: 0
  const { offsets, size } = placeBuffers(lifetimes);
  assert.deepEqual(offsets, [256, 0, 256, 0, 0]);
  assert.equal(size, 384);
  assertPlaced(lifetimes, { offsets, size }, 'by hand');
  // a gap exactly as large as the buffer is taken: 192 at 0 (first event only), 128 alive throughout
  // above it at 192, another 128 from the second event at 0; the 64 (third event) fits 128–192
  const gap = placeBuffers([{ bytes: 192, from: 0, to: 1 }, { bytes: 128, from: 0, to: 3 }, { bytes: 128, from: 1, to: 3 }, { bytes: 64, from: 2, to: 3 }]);
  assert.deepEqual(gap, { offsets: [0, 192, 0, 128], size: 320 });
  // equal sizes go earliest first: [0, 3) at 0, [1, 2) above it, [2, 4) beside [1, 2) (they only touch) above [0, 3)
  assert.deepEqual(placeBuffers([{ bytes: 64, from: 0, to: 3 }, { bytes: 64, from: 1, to: 2 }, { bytes: 64, from: 2, to: 4 }]), { offsets: [0, 64, 64], size: 128 });
  // one buffer's life ending where another's begins is not a clash: they share the place
  assert.deepEqual(placeBuffers([{ bytes: 100, from: 0, to: 1 }, { bytes: 100, from: 1, to: 2 }]), { offsets: [0, 0], size: 128 });
  assert.deepEqual(placeBuffers([{ bytes: 64, from: 0, to: 1 }, { bytes: 128, from: 1, to: 2 }]), { offsets: [0, 0], size: 128 }, 'the later, larger one placed first');
  assert.deepEqual(placeBuffers([]), { offsets: [], size: 0 });
});

test('a Held binds to a place in an arena as float32 and int32 views of the same bytes; held privately, each unbound one gets memory of its own', () => {
  assert.equal(ALIGN, 64);
  assert.deepEqual([0, 1, 64, 65, 128, 129].map(aligned), [0, 64, 64, 128, 128, 192]);
  const buffer = new ArrayBuffer(1024);
  const binding = bindingAt(buffer, 128, 10);
  assert.equal(binding.f32.byteOffset, 128);
  assert.equal(binding.f32.length, 10);
  binding.f32[3] = 1;
  assert.equal(binding.i32[3], 0x3f800000, 'the same bytes');
  const held = new Held(10, 'kept');
  assert.equal(held.bytes, 40);
  assert.equal(held.f32.length, 0, 'unbound: empty');
  held.bindTo(binding);
  assert.equal(held.f32, binding.f32);
  assert.equal(held.i32, binding.i32);

  const bound = new Held(10, 'kept');
  bound.bindTo(binding);
  const loose = [new Held(5, 'scratch'), new Held(7, 'gradient')];
  const empty = new Held(0, 'scratch');
  holdPrivately([bound, ...loose, empty]);
  assert.equal(bound.f32, binding.f32, 'a bound Held keeps its place');
  for (const h of loose) {
    assert.equal(h.f32.length, h.floats);
    assert.equal(h.i32.length, h.floats);
    assert.equal(h.f32.buffer.byteLength, roundUp(h.bytes), 'its own buffer, a whole cache line');
    assert.equal(h.f32.buffer, h.i32.buffer);
  }
  assert.notEqual(loose[0].f32.buffer, loose[1].f32.buffer);
  assert.equal(empty.f32.length, 0);
  // a Held bound to memory of another size is bound again
  const small = new Held(4, 'kept');
  small.bindTo(bindingAt(buffer, 0, 2));
  holdPrivately([small]);
  assert.equal(small.f32.length, 4);
});
