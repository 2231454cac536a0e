// Which rank this process is and how many there are, as an existing launcher says it: Open MPI
// (OMPI_COMM_WORLD_RANK/SIZE), Slurm (SLURM_PROCID/SLURM_NTASKS), or torchrun's convention
// (RANK/WORLD_SIZE), with MASTER_ADDR/MASTER_PORT for the tcp rendezvous.

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
