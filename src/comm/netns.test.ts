// The tcp backend where it will run: two ranks in separate network namespaces joined by a veth
// pair shaped with tbf to 1 Gbit/s — not loopback, where every byte arrives at once and a class
// of end-of-run races cannot show. Needs root and iproute2 (ip netns, tc); skipped, saying so,
// where they are missing, unless CONVERGE_REQUIRE_NETNS=1 (CI sets it).
import { strategiesThat } from '../strategies/index.js';
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { conformanceCases } from './conformance.js';
import { SwitchedNetwork, VethPair, netnsMissing } from '../launch/netns.js';

const cli = new URL('../cli/main.js', import.meta.url).pathname;
const pair = new VethPair();
const required = process.env.CONVERGE_REQUIRE_NETNS === '1';
let nextPort = 20000 + (process.pid % 20000);
const secret = randomBytes(16).toString('hex');

/** Both ranks of a job running `node COMMAND`; their exit codes and outputs. */
const job = (command: string[], env?: (r: number) => NodeJS.ProcessEnv) => pair.job(command, nextPort++, secret, env);

const skip = netnsMissing && !required ? netnsMissing : false;
let made = false;
/** The namespaces, made once for the file's tests (and removed after the last). */
function ensureNetwork(): void {
  assert.equal(netnsMissing, null, `CONVERGE_REQUIRE_NETNS=1 but: ${netnsMissing}`);
  if (made) return;
  pair.create('1gbit');
  made = true;
}
after(() => { if (made) pair.remove(); });

for (const security of ['encrypt', 'integrity', 'none']) {
  test(`tcp across network namespaces on a 1 Gbit/s link, --transport-security ${security}: a compressed run ends with every rank done and nothing lost`, { skip }, async () => {
    ensureNetwork();
    // top-k keeps error-feedback state (a parameter-sized residual) that rank 0 gathers at the very
    // end to save: the last and largest message of the run, still on the wire when rank 1 is done
    const ranks = await job([cli, 'train', '--backend', 'tcp', '--model', 'mlp', '--epochs', '1', '--batch', '256', '--compress', 'topk:0.001', '--timeout', '60', '--transport-security', security]);
    for (const [r, { code, output }] of ranks.entries()) assert.equal(code, 0, `rank ${r} exited ${code}:\n${output}`);
    assert.match(ranks[0].output, /test accuracy \d+\.\d+% after 1 epoch \(mlp, allreduce, 2 processes over tcp/);
    assert.match(ranks[0].output, security === 'encrypt' ? /over tcp \(frames encrypted, AES-256-GCM\)/ : security === 'integrity' ? /frames authenticated, not encrypted/ : /frames NOT protected/);
  });
}

test('tcp conformance across network namespaces on a 1 Gbit/s link: every collective, every case, in every transport security; rank 1 listens where CONVERGE_IFNAME says', { skip }, async () => {
  ensureNetwork();
  const script = new URL('./conformance.process.js', import.meta.url).pathname;
  for (const name of Object.keys(conformanceCases)) {
    const ranks = await job([script, 'tcp', name]);
    for (const [r, { code, output }] of ranks.entries()) assert.equal(code, 0, `${name}, rank ${r} exited ${code}: ${output}`);
  }
  for (const security of ['integrity', 'none']) {
    const ranks = await job([script, 'tcp', 'all'], (r) => ({ CONVERGE_TRANSPORT_SECURITY: security, ...(r === 1 ? { CONVERGE_IFNAME: pair.devices[1] } : {}) }));
    for (const [r, { code, output }] of ranks.entries()) assert.equal(code, 0, `${security}, rank ${r} exited ${code}: ${output}`);
  }
  // an interface that is not there: one line naming it, before any connection
  const ranks = await job([script, 'tcp', 'barrier'], (r) => (r === 1 ? { CONVERGE_IFNAME: 'eth-missing' } : { CONVERGE_TEST_TIMEOUT_MS: '2000' }));
  assert.match(ranks[1].output, /CONVERGE_IFNAME=eth-missing: no such interface with an IPv4 address here \(there are: lo, vb\d+\)/);
});

test('every strategy and every compression hook trains across network namespaces, every rank exiting 0', { skip }, async () => {
  ensureNetwork();
  const quick = [cli, 'train', '--backend', 'tcp', '--dataset', 'synthetic', '--model', 'mlp', '--hidden', '32,16', '--epochs', '1', '--timeout', '60'];
  const runs = [
    ...strategiesThat((entry) => entry.backends.includes('tcp')).map((strategy) => ['--strategy', strategy]),
    ...['fp16', 'bf16', 'sign', 'qsgd:4', 'topk:0.01', 'randomk:0.05'].map((hook) => ['--compress', hook]),
    ['--param-precision', 'int8'],
  ];
  for (const extra of runs) {
    // ps and async-ps take a rank for the server: one worker here
    const ranks = await job([...quick, ...extra]);
    for (const [r, { code, output }] of ranks.entries()) assert.equal(code, 0, `${extra.join(' ')}, rank ${r} exited ${code}:\n${output}`);
    assert.match(ranks[0].output, /test accuracy \d+\.\d+% after 1 epoch/, extra.join(' '));
  }
});

test('three ranks behind a switch, each link shaped to 1 Gbit/s: the tcp conformance cases pass, and async-ps (a server and two workers) trains to its end', { skip }, async () => {
  assert.equal(netnsMissing, null, `CONVERGE_REQUIRE_NETNS=1 but: ${netnsMissing}`);
  const network = new SwitchedNetwork(3, `${process.pid % 10000}t`);
  network.create('1gbit');
  try {
    const script = new URL('./conformance.process.js', import.meta.url).pathname;
    const conformance = await network.job([script, 'tcp', 'all'], nextPort++, secret);
    for (const [r, { code, output }] of conformance.entries()) assert.equal(code, 0, `conformance, rank ${r} exited ${code}: ${output}`);
    const ranks = await network.job([cli, 'train', '--backend', 'tcp', '--strategy', 'async-ps', '--dataset', 'synthetic', '--model', 'mlp', '--hidden', '32,16', '--epochs', '2', '--timeout', '60'], nextPort++, secret);
    for (const [r, { code, output }] of ranks.entries()) assert.equal(code, 0, `async-ps, rank ${r} exited ${code}:\n${output}`);
    assert.match(ranks[0].output, /async-ps over tcp .*, 2 workers × batch 64/);
    assert.match(ranks[0].output, /after 2 epochs \(mlp, async-ps, 3 processes over tcp/);
  } finally {
    network.remove();
  }
});
