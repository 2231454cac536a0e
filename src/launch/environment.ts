// Which rank this process is and how many there are, as an existing launcher says it: Open MPI
// (OMPI_COMM_WORLD_RANK/SIZE), Slurm (SLURM_PROCID/SLURM_NTASKS), or torchrun's convention
// (RANK/WORLD_SIZE), with MASTER_ADDR/MASTER_PORT for the tcp rendezvous.

import { networkInterfaces } from 'node:os';
import { transportSecurities, type TransportSecurity } from '../comm/tcp-seal.js';
import { ConvergeError } from '../errors.js';

export interface ProcessPlace {
  rank: number;
  size: number;
  /** which variables said so, for messages */
  source: string;
}

const pairs: [string, string][] = [
  ['RANK', 'WORLD_SIZE'],
  ['OMPI_COMM_WORLD_RANK', 'OMPI_COMM_WORLD_SIZE'],
  ['PMIX_RANK', 'OMPI_COMM_WORLD_SIZE'],
  ['SLURM_PROCID', 'SLURM_NTASKS'],
];

export function placeFromEnvironment(env: NodeJS.ProcessEnv = process.env): ProcessPlace {
  for (const [rankName, sizeName] of pairs) {
    const rankText = env[rankName];
    const sizeText = env[sizeName];
    if (rankText === undefined || sizeText === undefined) continue;
    const rank = Number(rankText);
    const size = Number(sizeText);
    if (!Number.isInteger(size) || size < 1 || !Number.isInteger(rank) || rank < 0 || rank >= size) {
      throw new ConvergeError(`${rankName}=${rankText} and ${sizeName}=${sizeText} do not name a rank of a job (0 ≤ rank < size); check the launcher's environment.`, 'BAD_ENVIRONMENT');
    }
    return { rank, size, source: `${rankName}/${sizeName}` };
  }
  throw new ConvergeError('this process does not know its rank: start it with `converge launch -n N -- …`, mpirun, srun, or set RANK and WORLD_SIZE (and MASTER_ADDR, MASTER_PORT, CONVERGE_SECRET) yourself.', 'BAD_ENVIRONMENT');
}

export function masterFromEnvironment(env: NodeJS.ProcessEnv = process.env): { addr: string; port: number; secret: string } {
  const addr = env.MASTER_ADDR;
  const port = Number(env.MASTER_PORT);
  if (!addr) throw new ConvergeError('--backend tcp needs MASTER_ADDR (the address rank 0 listens on) in the environment of every rank.', 'BAD_ENVIRONMENT');
  if (!Number.isInteger(port) || port <= 0 || port > 65535) throw new ConvergeError(`--backend tcp needs MASTER_PORT, a port number (got ${JSON.stringify(env.MASTER_PORT)}).`, 'BAD_ENVIRONMENT');
  const secret = env.CONVERGE_SECRET;
  if (!secret || secret.length < 8) {
    throw new ConvergeError('--backend tcp needs CONVERGE_SECRET (at least 8 characters, the same on every rank) so that only this job\'s ranks can join; `converge launch` sets one.', 'BAD_ENVIRONMENT');
  }
  return { addr, port, secret };
}

/**
 * The tcp backend's other settings: CONVERGE_JOB_ID (set by `converge launch`: ranks of another
 * job are refused), CONVERGE_BIND (the address to listen on) or CONVERGE_IFNAME (an interface,
 * whose first IPv4 address is used), CONVERGE_TRANSPORT_SECURITY (encrypt, integrity, none).
 */
export function tcpSettingsFromEnvironment(env: NodeJS.ProcessEnv = process.env, interfaces = networkInterfaces()): { job?: string; bind?: string; security?: TransportSecurity } {
  const settings: { job?: string; bind?: string; security?: TransportSecurity } = {};
  if (env.CONVERGE_JOB_ID) settings.job = env.CONVERGE_JOB_ID;
  if (env.CONVERGE_BIND) settings.bind = env.CONVERGE_BIND;
  else if (env.CONVERGE_IFNAME) {
    const address = interfaces[env.CONVERGE_IFNAME]?.find((a) => a.family === 'IPv4')?.address;
    if (!address) {
      throw new ConvergeError(`CONVERGE_IFNAME=${env.CONVERGE_IFNAME}: no such interface with an IPv4 address here (there are: ${Object.keys(interfaces).join(', ')}).`, 'BAD_ENVIRONMENT');
    }
    settings.bind = address;
  }
  const security = env.CONVERGE_TRANSPORT_SECURITY;
  if (security !== undefined) {
    if (!(transportSecurities as readonly string[]).includes(security)) {
      throw new ConvergeError(`CONVERGE_TRANSPORT_SECURITY=${security}: expected one of ${transportSecurities.join(', ')}.`, 'BAD_ENVIRONMENT');
    }
    settings.security = security as TransportSecurity;
  }
  return settings;
}

/**
 * About how many bits of guessing a secret is worth: its length times the entropy of its own
 * characters' frequencies (a repeated or patterned secret scores low; 32 random hex digits ≈ 120).
 * Whoever records a handshake can test guesses offline, so a low score deserves a warning.
 */
export function secretBits(secret: string): number {
  const counts = new Map<string, number>();
  for (const c of secret) counts.set(c, (counts.get(c) ?? 0) + 1);
  const n = [...secret].length;
  let perCharacter = 0;
  for (const count of counts.values()) perCharacter -= (count / n) * Math.log2(count / n);
  return Math.round(perCharacter * n);
}

/** The warning for a secret worth fewer than 64 bits, or null. */
export function weakSecretWarning(secret: string): string | null {
  const bits = secretBits(secret);
  if (bits >= 64) return null;
  return `CONVERGE_SECRET is weak (about ${bits} bits): whoever records a handshake can guess it offline. Let \`converge launch\` make one, or use \`openssl rand -hex 32\`.`;
}

/**
 * The note for an mpi rank whose progress thread may not hold a large block: glibc gives that
 * thread its own arena unless MALLOC_ARENA_MAX=1 was set when the process started (the binding's
 * mallopt comes too late once Node's threads have made their arenas), and an arena of its own maps
 * and unmaps Open MPI's per-operation buffer each time: a 64 MiB all-reduce on 2 ranks took 150 ms
 * instead of 14 on an AMD EPYC draw of these machines. Null when it is set, or nothing is threaded.
 */
export function mallocArenaNote(env: NodeJS.ProcessEnv, threads: boolean): string | null {
  if (!threads || env.MALLOC_ARENA_MAX !== undefined) return null;
  return 'MALLOC_ARENA_MAX is not set: large collectives may run several times slower (glibc can map and unmap Open MPI\'s buffer for each; 64 MiB took 10× longer on one machine); start the job with `mpirun -x MALLOC_ARENA_MAX=1 …`.';
}
