// The tcp backend where it will run: two ranks in separate network namespaces joined by a veth
// pair shaped with tbf to 1 Gbit/s — not loopback, where every byte arrives at once and a class
// of end-of-run races cannot show. Needs root and iproute2 (ip netns, tc); skipped, saying so,
// where they are missing, unless CONVERGE_REQUIRE_NETNS=1 (CI sets it).
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { conformanceCases } from './conformance.js';

const cli = new URL('../cli/main.js', import.meta.url).pathname;
const suffix = String(process.pid % 100000);
const [a, b] = [`cvg-a${suffix}`, `cvg-b${suffix}`];

/** Runs `ip` (or `tc`) with these arguments; throws with its message when it fails. */
function run(command: string, ...args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${(result.stderr || result.error?.message || '').trim()}`);
}

/** Two namespaces, 10.77.0.1 and 10.77.0.2, over a veth pair shaped to `rate` each way; the reason when that cannot be done. */
function network(rate = '1gbit'): string | null {
  try {
    run('ip', 'netns', 'add', a);
    run('ip', 'netns', 'add', b);
    run('ip', 'link', 'add', `va${suffix}`, 'netns', a, 'type', 'veth', 'peer', 'name', `vb${suffix}`, 'netns', b);
    for (const [ns, dev, address] of [[a, `va${suffix}`, '10.77.0.1/24'], [b, `vb${suffix}`, '10.77.0.2/24']]) {
      run('ip', '-n', ns, 'addr', 'add', address, 'dev', dev);
      run('ip', '-n', ns, 'link', 'set', dev, 'up');
      run('ip', '-n', ns, 'link', 'set', 'lo', 'up');
      run('tc', '-n', ns, 'qdisc', 'add', 'dev', dev, 'root', 'tbf', 'rate', rate, 'burst', '128kb', 'latency', '50ms');
    }
    return null;
  } catch (error) {
    teardown();
    return (error as Error).message;
  }
}

function teardown(): void {
  for (const ns of [a, b]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
}

const missing = process.getuid?.() !== 0 ? 'not root' : !existsSync('/usr/sbin/ip') && !existsSync('/bin/ip') ? 'iproute2 is not installed' : null;
const required = process.env.CONVERGE_REQUIRE_NETNS === '1';

let nextPort = 20000 + (process.pid % 20000);
const secret = randomBytes(16).toString('hex');

/** Rank r of a 2-rank tcp job, in namespace r, running `node COMMAND`; resolves with its exit code and output. */
function rank(r: number, port: number, command: string[], extra: NodeJS.ProcessEnv = {}): Promise<{ code: number | null; output: string }> {
  const env = { ...process.env, RANK: String(r), WORLD_SIZE: '2', MASTER_ADDR: '10.77.0.1', MASTER_PORT: String(port), CONVERGE_SECRET: secret, ...extra };
  const child = spawn('ip', ['netns', 'exec', r === 0 ? a : b, process.execPath, ...command], { env });
  let output = '';
  child.stdout.on('data', (chunk) => (output += chunk));
  child.stderr.on('data', (chunk) => (output += chunk));
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
}

/** Both ranks of a job running `node COMMAND` (rank 1 started a moment after rank 0); their exit codes and outputs. */
async function job(command: string[], env: (r: number) => NodeJS.ProcessEnv = () => ({})): Promise<{ code: number | null; output: string }[]> {
  const port = nextPort++;
  return Promise.all([rank(0, port, command, env(0)), new Promise<{ code: number | null; output: string }>((resolve) => setTimeout(() => resolve(rank(1, port, command, env(1))), 300))]);
}

const skip = missing && !required ? missing : false;
let made = false;
/** The namespaces, made once for the file's tests (and removed after the last). */
function ensureNetwork(): void {
  assert.equal(missing, null, `CONVERGE_REQUIRE_NETNS=1 but: ${missing}`);
  if (made) return;
  const failed = network();
  assert.equal(failed, null, `the namespaces could not be made: ${failed}`);
  made = true;
}
after(() => { if (made) teardown(); });

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
    const ranks = await job([script, 'tcp', 'all'], (r) => ({ CONVERGE_TRANSPORT_SECURITY: security, ...(r === 1 ? { CONVERGE_IFNAME: `vb${suffix}` } : {}) }));
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
    ...['allreduce', 'ps', 'async-ps', 'local-sgd'].map((strategy) => ['--strategy', strategy]),
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
