// The client library a simulation uses to stream its fields to a study (`converge/client`):
//
//   import { connect } from 'converge/client';
//   const study = await connect();            // reads what `converge study` put in the environment
//   const { diffusivity } = study.inputs;     // this run's parameters
//   for (let t = 0; t < steps; t++) { …; await study.send('temperature', t, values); }
//   await study.close();
//
// A field's values go to every server rank, each its slice of the cells (the N × M
// redistribution) — or, in a study that trains a surrogate, whole to the ranks the study names —
// over connections that prove the job secret and are sealed. `close` returns
// once every rank has counted everything this run sent, so the process may exit.

import { connect as dial } from 'node:net';
import { ConvergeError } from '../errors.js';
import { placeFromEnvironment } from '../launch/environment.js';
import type { TransportSecurity } from '../comm/tcp-seal.js';
import { sliceOf, type FieldSpec } from './state.js';
import { Kind, helloAsClient, type Channel } from './wire.js';

/** What `converge study` tells each run, in environment variables. */
export const ENV = {
  servers: 'CONVERGE_STUDY_SERVERS',
  run: 'CONVERGE_STUDY_RUN',
  attempt: 'CONVERGE_STUDY_ATTEMPT',
  inputs: 'CONVERGE_STUDY_INPUTS',
  fields: 'CONVERGE_STUDY_FIELDS',
  security: 'CONVERGE_STUDY_SECURITY',
  secret: 'CONVERGE_JOB_SECRET',
  job: 'CONVERGE_JOB_ID',
  /** Unset: every field to every rank, each its slice (statistics). 'whole:0,2': whole fields to those ranks only (a surrogate's training). */
  route: 'CONVERGE_STUDY_ROUTE',
} as const;

export interface StudyClient {
  /** This run's number in the study's design, and how many times it was started before. */
  readonly run: number;
  readonly attempt: number;
  /** This run's input parameters, by name. */
  readonly inputs: Readonly<Record<string, number>>;
  /** The fields the study expects, with their cells and timesteps. */
  readonly fields: readonly FieldSpec[];
  /**
   * Sends one timestep of a field: all its cells, or — from one process of a parallel simulation
   * — the piece of them that starts at cell `offset`; the server ranks count the timestep once
   * every piece has come. Resolves when the connections have taken it.
   */
  send(field: string, timestep: number, values: ArrayLike<number>, offset?: number): Promise<void>;
  /** This process's place among the run's processes (a simulation started by mpirun or srun: its rank and their number; else 0 of 1). */
  readonly process: { rank: number; size: number };
  /** Says the run is over and waits until every server rank has counted all it sent. */
  close(): Promise<void>;
}

function required(name: string): string {
  const value = process.env[name];
  if (value === undefined || value === '') throw new ConvergeError(`converge/client: ${name} is not set; a simulation connects when \`converge study\` starts it (or set the study's variables yourself).`, 'BAD_OPTION');
  return value;
}

/** Which process of a parallel run this is, as mpirun or srun says (one process: 0 of 1). */
function processPlace(): { rank: number; size: number } {
  try {
    const { rank, size } = placeFromEnvironment();
    return { rank, size };
  } catch {
    return { rank: 0, size: 1 };
  }
}

export async function connect(): Promise<StudyClient> {
  const servers = required(ENV.servers).split(',').map((address) => {
    const at = address.lastIndexOf(':');
    return { host: address.slice(0, at), port: Number(address.slice(at + 1)) };
  });
  const run = Number(required(ENV.run));
  const attempt = Number(process.env[ENV.attempt] ?? 0);
  const inputs = JSON.parse(required(ENV.inputs)) as Record<string, number>;
  const fields = JSON.parse(required(ENV.fields)) as FieldSpec[];
  const credentials = { secret: required(ENV.secret), job: required(ENV.job), security: (process.env[ENV.security] ?? 'encrypt') as TransportSecurity };
  const route = process.env[ENV.route];
  const whole = route?.startsWith('whole:') ? route.slice(6).split(',').map(Number) : null;
  if (whole && (whole.length === 0 || whole.some((rank) => !(Number.isInteger(rank) && rank >= 0 && rank < servers.length)))) {
    throw new ConvergeError(`converge/client: ${ENV.route}=${route} names no server rank of the ${servers.length}; a simulation connects when \`converge study\` starts it.`, 'BAD_OPTION');
  }
  const targets = whole ?? servers.map((_, rank) => rank);
  const channels: Channel[] = await Promise.all(targets.map((rank) => ({ ...servers[rank], rank })).map(({ host, port, rank }) => new Promise<Channel>((resolve, reject) => {
    const socket = dial({ host, port });
    socket.once('error', (error) => reject(new ConvergeError(`run ${run}: cannot reach study server rank ${rank} at ${host}:${port} (${error.message}).`, 'CONNECT')));
    socket.once('connect', () => {
      socket.setNoDelay(true);
      helloAsClient(socket, credentials, run, attempt, `run ${run} → study server rank ${rank}`).then(resolve, reject);
    });
  })));
  const acknowledged = channels.map((channel, k) => new Promise<void>((resolve, reject) => {
    const rank = targets[k];
    channel.listen((message) => {
      if (message.kind === Kind.Done) resolve();
    }, (what) => reject(new ConvergeError(`run ${run}: study server rank ${rank} sent what failed authentication (${what}).`, 'TAMPERED')));
    channel.socket.once('close', () => reject(new ConvergeError(`run ${run}: study server rank ${rank} closed the connection before counting this run.`, 'PEER_LOST')));
  }));
  for (const promise of acknowledged) promise.catch(() => {}); // awaited in close
  const ranks = servers.length;
  const fieldIndex = new Map(fields.map((f, i) => [f.name, i]));
  return {
    run,
    attempt,
    inputs,
    fields,
    process: processPlace(),
    async send(name, timestep, values, from) {
      const offset = from ?? 0;
      const field = fieldIndex.get(name);
      if (field === undefined) throw new ConvergeError(`run ${run}: field "${name}" is not in the study (it declares ${fields.map((f) => f.name).join(', ')}).`, 'BAD_DATA');
      const spec = fields[field];
      if (from === undefined && values.length !== spec.cells) throw new ConvergeError(`run ${run}: field "${name}" has ${spec.cells} cells in the study; this simulation sent ${values.length} (a piece of them? give its first cell: send(field, timestep, values, offset)).`, 'BAD_DATA');
      if (!(Number.isInteger(offset) && offset >= 0 && values.length > 0 && offset + values.length <= spec.cells)) throw new ConvergeError(`run ${run}: cells ${offset}..${offset + values.length} of field "${name}", which has ${spec.cells} (0..${spec.cells}).`, 'BAD_DATA');
      if (!(Number.isInteger(timestep) && timestep >= 0 && timestep < spec.timesteps)) throw new ConvergeError(`run ${run}: timestep ${timestep} of field "${name}", which has ${spec.timesteps} (0..${spec.timesteps - 1}).`, 'BAD_DATA');
      const all = values instanceof Float64Array ? values : Float64Array.from(values); // the channel copies what it sends
      if (whole) {
        await Promise.all(channels.map((channel) => channel.send({ kind: Kind.Data, field, timestep, offset, values: all })));
        return;
      }
      // each rank the part of this piece that falls in its slice
      await Promise.all(channels.map((channel, rank) => {
        const [low, high] = sliceOf(spec.cells, rank, ranks);
        const first = Math.max(low, offset);
        const end = Math.min(high, offset + all.length);
        return first < end ? channel.send({ kind: Kind.Data, field, timestep, offset: first, values: all.subarray(first - offset, end - offset) }) : undefined;
      }));
    },
    async close() {
      await Promise.all(channels.map((channel) => channel.send({ kind: Kind.Done })));
      await Promise.all(acknowledged);
      for (const channel of channels) channel.socket.end();
    },
  };
}
