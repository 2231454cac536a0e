// Ranks on a network that costs something, on one machine: two Linux network namespaces joined
// by a veth pair (10.77.0.1 and 10.77.0.2), optionally shaped by the kernel with a token-bucket
// filter (`tc qdisc … tbf rate R`; this kernel has tbf and htb, not netem). Used by the tcp
// tests (src/comm/netns.test.ts) and `npm run bench:network`. Needs root and iproute2.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Why namespaces cannot be made here, or null. */
export const netnsMissing: string | null = process.getuid?.() !== 0 ? 'not root' : !existsSync('/usr/sbin/ip') && !existsSync('/bin/ip') ? 'iproute2 is not installed' : null;

/** Runs `ip` (or `tc`) with these arguments; throws with its message when it fails. */
function run(command: string, ...args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${(result.stderr || result.error?.message || '').trim()}`);
}

export const ADDRESSES = ['10.77.0.1', '10.77.0.2'] as const;

/** Two namespaces and the veth pair between them, named after `suffix` (unique per process). */
export class VethPair {
  readonly namespaces: [string, string];
  readonly devices: [string, string];

  constructor(suffix = String(process.pid % 100000)) {
    this.namespaces = [`cvg-a${suffix}`, `cvg-b${suffix}`];
    this.devices = [`va${suffix}`, `vb${suffix}`];
  }

  /** Makes the pair, shaped to `rate` each way (a tc rate such as 100mbit or 1gbit; null: unshaped). Throws saying what failed, leaving nothing behind. */
  create(rate: string | null): void {
    const [a, b] = this.namespaces;
    try {
      run('ip', 'netns', 'add', a);
      run('ip', 'netns', 'add', b);
      run('ip', 'link', 'add', this.devices[0], 'netns', a, 'type', 'veth', 'peer', 'name', this.devices[1], 'netns', b);
      for (let i = 0; i < 2; i++) {
        const [ns, dev] = [this.namespaces[i], this.devices[i]];
        run('ip', '-n', ns, 'addr', 'add', `${ADDRESSES[i]}/24`, 'dev', dev);
        run('ip', '-n', ns, 'link', 'set', dev, 'up');
        run('ip', '-n', ns, 'link', 'set', 'lo', 'up');
      }
      this.shape(rate);
    } catch (error) {
      this.remove();
      throw error;
    }
  }

  /** Reshapes both ends (null: no shaping). The burst and queue follow tc's advice for tbf at these rates. */
  shape(rate: string | null): void {
    for (let i = 0; i < 2; i++) {
      spawnSync('tc', ['-n', this.namespaces[i], 'qdisc', 'del', 'dev', this.devices[i], 'root'], { stdio: 'ignore' });
      if (rate) run('tc', '-n', this.namespaces[i], 'qdisc', 'add', 'dev', this.devices[i], 'root', 'tbf', 'rate', rate, 'burst', '128kb', 'latency', '50ms');
    }
  }

  remove(): void {
    for (const ns of this.namespaces) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  }

  /** Runs `node ARGS` as rank r of a 2-rank tcp job in namespace r; resolves with its exit code and output. */
  rank(r: number, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; output: string }> {
    const child = spawn('ip', ['netns', 'exec', this.namespaces[r], process.execPath, ...args], { env: { ...process.env, RANK: String(r), WORLD_SIZE: '2', MASTER_ADDR: ADDRESSES[0], ...env } });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
  }

  /** Both ranks of a job running `node ARGS` (rank 1 a moment after rank 0), with a port and secret of their own. */
  job(args: string[], port: number, secret: string, env: (r: number) => NodeJS.ProcessEnv = () => ({})): Promise<{ code: number | null; output: string }[]> {
    const common = { MASTER_PORT: String(port), CONVERGE_SECRET: secret };
    return Promise.all([
      this.rank(0, args, { ...common, ...env(0) }),
      new Promise<{ code: number | null; output: string }>((resolve) => setTimeout(() => resolve(this.rank(1, args, { ...common, ...env(1) })), 300)),
    ]);
  }
}
