// Ranks on a network that costs something, on one machine: Linux network namespaces, rank r at
// 10.77.0.(r+1) — two joined by a veth pair, or any number each linked to a switch (a bridge) —
// optionally shaped by the kernel with a token-bucket filter (`tc qdisc … tbf rate R`; this kernel
// has tbf and htb, not netem). Used by the tcp tests (src/comm/netns.test.ts) and `npm run
// bench:network`. Needs root and iproute2.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** Why namespaces cannot be made here, or null. */
export const netnsMissing: string | null = process.getuid?.() !== 0 ? 'not root' : !existsSync('/usr/sbin/ip') && !existsSync('/bin/ip') ? 'iproute2 is not installed' : null;

/** Runs `ip` (or `tc`) with these arguments; throws with its message when it fails. */
function run(command: string, ...args: string[]): void {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  if (result.status !== 0) throw new Error(`${command} ${args.join(' ')}: ${(result.stderr || result.error?.message || '').trim()}`);
}

/** Rank r's address on any of these networks. */
export const addressOf = (r: number) => `10.77.0.${r + 1}`;

type Exit = { code: number | null; output: string };

/** Ranks in namespaces of their own: start them, one job at a time. */
abstract class RankNamespaces {
  abstract readonly namespaces: string[];
  abstract readonly size: number;

  /** Runs `node ARGS` as rank r of a tcp job in namespace r; resolves with its exit code and output. */
  rank(r: number, args: string[], env: NodeJS.ProcessEnv): Promise<Exit> {
    const child = spawn('ip', ['netns', 'exec', this.namespaces[r], process.execPath, ...args], { env: { ...process.env, RANK: String(r), WORLD_SIZE: String(this.size), MASTER_ADDR: addressOf(0), ...env } });
    let output = '';
    child.stdout.on('data', (chunk) => (output += chunk));
    child.stderr.on('data', (chunk) => (output += chunk));
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, output })));
  }

  /** Every rank of a job running `node ARGS` (the others a moment after rank 0), with a port and secret of their own. */
  job(args: string[], port: number, secret: string, env: (r: number) => NodeJS.ProcessEnv = () => ({})): Promise<Exit[]> {
    const common = { MASTER_PORT: String(port), CONVERGE_SECRET: secret };
    return Promise.all(this.namespaces.map((_, r) => (r === 0 ? this.rank(0, args, { ...common, ...env(0) }) : new Promise<Exit>((resolve) => setTimeout(() => resolve(this.rank(r, args, { ...common, ...env(r) })), 300)))));
  }

  abstract create(rate: string | null): void;
  abstract shape(rate: string | null): void;
  abstract remove(): void;
}

/** Rank r's end of its link, in its namespace: its address, the link and loopback up. */
function addressRank(namespace: string, device: string, r: number): void {
  run('ip', '-n', namespace, 'addr', 'add', `${addressOf(r)}/24`, 'dev', device);
  run('ip', '-n', namespace, 'link', 'set', device, 'up');
  run('ip', '-n', namespace, 'link', 'set', 'lo', 'up');
}

/** tbf on one device, replacing what was there (null: nothing). The burst and queue follow tc's advice for tbf at these rates. */
function shapeDevice(namespace: string, device: string, rate: string | null): void {
  spawnSync('tc', ['-n', namespace, 'qdisc', 'del', 'dev', device, 'root'], { stdio: 'ignore' });
  if (rate) run('tc', '-n', namespace, 'qdisc', 'add', 'dev', device, 'root', 'tbf', 'rate', rate, 'burst', '128kb', 'latency', '50ms');
}

/** Two namespaces and the veth pair between them, named after `suffix` (unique per process). */
export class VethPair extends RankNamespaces {
  readonly namespaces: [string, string];
  readonly devices: [string, string];
  readonly size = 2;

  constructor(suffix = String(process.pid % 100000)) {
    super();
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
      for (let i = 0; i < 2; i++) addressRank(this.namespaces[i], this.devices[i], i);
      this.shape(rate);
    } catch (error) {
      this.remove();
      throw error;
    }
  }

  /** Reshapes both ends (null: no shaping). */
  shape(rate: string | null): void {
    for (let i = 0; i < 2; i++) shapeDevice(this.namespaces[i], this.devices[i], rate);
  }

  remove(): void {
    for (const ns of this.namespaces) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  }
}

/**
 * Any number of ranks, each in its namespace with one link to a switch: a bridge in a namespace
 * of its own. Each link is shaped both ways (the rank's side and the switch's side), so every
 * rank sends and receives at `rate`, as a host on a switched network does.
 */
export class SwitchedNetwork extends RankNamespaces {
  readonly namespaces: string[];
  private readonly switchNamespace: string;
  private readonly bridge: string;
  /** [rank's side, switch's side] of rank r's link */
  private readonly links: [string, string][];

  constructor(readonly size: number, suffix = String(process.pid % 100000)) {
    super();
    if (size > 200) throw new RangeError(`a switched network of ${size} ranks: at most 200`);
    this.namespaces = Array.from({ length: size }, (_, r) => `cvg-r${r}-${suffix}`);
    this.switchNamespace = `cvg-s${suffix}`;
    this.bridge = `br${suffix}`;
    this.links = Array.from({ length: size }, (_, r) => [`r${r}x${suffix}`, `s${r}x${suffix}`]);
  }

  create(rate: string | null): void {
    try {
      run('ip', 'netns', 'add', this.switchNamespace);
      run('ip', '-n', this.switchNamespace, 'link', 'add', this.bridge, 'type', 'bridge');
      run('ip', '-n', this.switchNamespace, 'link', 'set', this.bridge, 'up');
      this.namespaces.forEach((ns, r) => {
        const [mine, theirs] = this.links[r];
        run('ip', 'netns', 'add', ns);
        run('ip', 'link', 'add', mine, 'netns', ns, 'type', 'veth', 'peer', 'name', theirs, 'netns', this.switchNamespace);
        run('ip', '-n', this.switchNamespace, 'link', 'set', theirs, 'master', this.bridge);
        run('ip', '-n', this.switchNamespace, 'link', 'set', theirs, 'up');
        addressRank(ns, mine, r);
      });
      this.shape(rate);
    } catch (error) {
      this.remove();
      throw error;
    }
  }

  shape(rate: string | null): void {
    this.namespaces.forEach((ns, r) => {
      shapeDevice(ns, this.links[r][0], rate);
      shapeDevice(this.switchNamespace, this.links[r][1], rate);
    });
  }

  remove(): void {
    for (const ns of [...this.namespaces, this.switchNamespace]) spawnSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
  }
}
