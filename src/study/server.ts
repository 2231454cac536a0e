// One server rank of a study, as a process the launcher forks: it listens for the simulations'
// connections, checks each one's proof of the job secret, and streams what they send into its
// slice of the statistics (state.ts) — or, in a surrogate study, into the buffer it trains from
// (surrogate-server.ts). The launcher asks it, over the fork's channel, whether a run is
// complete, and at the end for its results.
//
//   launcher → server: { start: ServerStart } | { complete: run } | { streamEnded: true } | { finish: true }
//   server → launcher: { port } | { complete: run, ok, received } | { results } | { error }

import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { createServer, type Socket } from 'node:net';
import { deserialize, serialize } from 'node:v8';
import { ConvergeError } from '../errors.js';
import type { MomentOptions } from './moments.js';
import { StudyState, type StateSnapshot, type StateSpec } from './state.js';
import { SurrogateSink, type SurrogateRankResults, type SurrogateSnapshot, type SurrogateStart } from './surrogate-server.js';

/** The exit code of a surrogate's server rank whose training lost a peer (with checkpoints: start every rank again). */
export const TRAINING_LOST = 75;
import { Kind, helloAsServer, type Credentials } from './wire.js';

export interface ServerStart {
  spec: StateSpec;
  rank: number;
  ranks: number;
  credentials: Credentials;
  /** The address to listen on (loopback unless the clients run elsewhere). */
  bind: string;
  /** Where to write this rank's state every `everySeconds` (atomically: a whole checkpoint or the previous one), and whether to start from it. */
  checkpoint?: { path: string; everySeconds: number; resume: boolean };
  /** A surrogate study: train from the stream instead of keeping statistics. */
  surrogate?: SurrogateStart;
}

/** One field's statistics on this rank's slice: [timestep][cell] flattened, per statistic name. */
export interface RankResults {
  rank: number;
  slices: [number, number][];
  /** [field] → statistic name → values, timestep-major over the slice's cells. */
  fields: Record<string, Float64Array>[];
  counted: number;
  repeated: number;
  bytes: number;
  refused: number;
}

/** A surrogate study's rank: what it trained (rank 0) or kept, and what it received. */
export type SurrogateResults = SurrogateRankResults & { bytes: number; refused: number };

const statisticNames = (moments: MomentOptions, inputs: string[], pickFreeze: boolean): string[] => [
  'mean', 'variance', 'min', 'max',
  ...(moments.higher ? ['skewness', 'kurtosis'] : []),
  ...(moments.thresholds ?? []).map((t) => `exceedance-${t}`),
  ...(moments.quantiles ?? []).map((q) => `quantile-${q}`),
  ...(pickFreeze ? inputs.flatMap((name) => ['first', 'first-low', 'first-high', 'total', 'total-low', 'total-high'].map((s) => `sobol-${s}-${name}`)) : []),
];

/** Every statistic of the state, timestep-major, by name (covariances as `covariance-A-B`, on the first field of the pair). */
export function collect(state: StudyState, inputs: string[]): Record<string, Float64Array>[] {
  const { spec } = state;
  return spec.fields.map((field, f) => {
    const cells = state.slices[f][1] - state.slices[f][0];
    const out: Record<string, Float64Array> = {};
    for (const name of statisticNames(spec.moments, inputs, spec.pickFreeze)) out[name] = new Float64Array(field.timesteps * cells);
    for (let t = 0; t < field.timesteps; t++) {
      const m = state.moments[f][t];
      const put = (name: string, values: Float64Array) => out[name].set(values, t * cells);
      put('mean', m.mean);
      put('variance', m.variance());
      put('min', m.min);
      put('max', m.max);
      if (spec.moments.higher) {
        put('skewness', m.skewness());
        put('kurtosis', m.kurtosis());
      }
      (spec.moments.thresholds ?? []).forEach((threshold, k) => put(`exceedance-${threshold}`, m.exceedance(k)));
      (spec.moments.quantiles ?? []).forEach((level, k) => put(`quantile-${level}`, m.quantile[k]));
      if (state.sobol) {
        const indices = state.sobol[f][t].indices();
        inputs.forEach((name, k) => {
          put(`sobol-first-${name}`, indices.first[k]);
          put(`sobol-first-low-${name}`, indices.firstLow[k]);
          put(`sobol-first-high-${name}`, indices.firstHigh[k]);
          put(`sobol-total-${name}`, indices.total[k]);
          put(`sobol-total-low-${name}`, indices.totalLow[k]);
          put(`sobol-total-high-${name}`, indices.totalHigh[k]);
        });
      }
    }
    for (const { pair, fields, perTimestep } of state.covariances) {
      if (fields[0] !== f) continue;
      const values = new Float64Array(field.timesteps * cells);
      perTimestep.forEach((c, t) => values.set(c.covariance(), t * cells));
      out[`covariance-${pair[0]}-${pair[1]}`] = values;
    }
    return out;
  });
}

/** Runs a server rank in this process until the launcher says finish. */
export async function serve(start: ServerStart, inputs: string[], send: (message: unknown) => void, receive: (handler: (message: Record<string, unknown>) => void) => void): Promise<void> {
  const where = `study server rank ${start.rank}`;
  let failure: Error | null = null;
  const fail = (error: Error) => {
    failure ??= error;
    send({ error: error.message });
  };
  // with checkpoints, a surrogate's training that loses a peer exits: the launcher starts every rank again from its checkpoint
  const trainingLost = start.checkpoint ? (error: Error) => {
    process.stderr.write(`${where}: training stopped (${error.message.split('\n')[0]}); this rank exits to be started again from its checkpoint.\n`);
    process.exit(TRAINING_LOST);
  } : undefined;
  const surrogate = start.surrogate ? new SurrogateSink(start.surrogate, start.rank, start.ranks, fail, trainingLost) : null;
  const state = surrogate ? null : new StudyState(start.spec, start.rank, start.ranks);
  const sink = surrogate ?? state!;
  const { checkpoint } = start;
  if (checkpoint?.resume && existsSync(checkpoint.path)) {
    const snapshot = deserialize(readFileSync(checkpoint.path));
    if (surrogate) surrogate.restore(snapshot as SurrogateSnapshot);
    else state!.restore(snapshot as StateSnapshot);
  }
  const save = () => {
    if (!checkpoint) return;
    writeFileSync(`${checkpoint.path}.partial`, serialize(sink.snapshot()));
    renameSync(`${checkpoint.path}.partial`, checkpoint.path);
  };
  const saving = checkpoint ? setInterval(save, 1000 * checkpoint.everySeconds) : null;
  const sockets = new Set<Socket>();
  let bytes = 0;
  let refused = 0;
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    helloAsServer(socket, start.credentials, where).then(({ channel, run }) => {
      channel.listen((message) => {
        if (message.kind === Kind.Data) {
          bytes += 8 * message.values.length;
          try {
            sink.add(run, message.field, message.timestep, message.offset, message.values);
          } catch (error) {
            fail(error as Error);
            socket.destroy();
          }
        } else if (message.kind === Kind.Done) {
          // everything the run sent before it is counted: the client may exit
          channel.send({ kind: Kind.Done }).catch(() => {});
        }
      }, (what) => fail(new ConvergeError(`${where}: run ${run} sent data that failed authentication or made no sense (${what}); its connection was dropped.`, 'TAMPERED')));
    }, (error: Error) => {
      refused++;
      process.stderr.write(`${error.message}\n`);
      socket.destroy();
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (error) => reject(new ConvergeError(`${where} cannot listen on ${start.bind} (${error.message}); give --bind an address of this machine.`, 'BAD_OPTION')));
    server.listen(0, start.bind, () => resolve());
  });
  const address = server.address();
  send({ port: typeof address === 'object' && address ? address.port : 0 });
  surrogate?.begin();
  await new Promise<void>((resolve) => {
    receive((message) => {
      if (typeof message.complete === 'number') {
        const run = message.complete;
        send({ complete: run, ok: sink.complete(run), received: sink.received[run] });
      } else if (message.streamEnded) {
        surrogate?.end();
      } else if (message.finish) {
        if (saving) clearInterval(saving);
        server.close();
        for (const socket of sockets) socket.destroy();
        if (surrogate) {
          surrogate.results().then((results) => {
            const trained: SurrogateResults = { ...results, bytes, refused };
            send({ results: trained, waiting: 0, failure: failure?.message ?? null });
            resolve();
          }, (error: Error) => {
            send({ results: null, waiting: 0, failure: error.message });
            resolve();
          });
          return;
        }
        const results: RankResults = { rank: start.rank, slices: state!.slices, fields: collect(state!, inputs), counted: state!.counted, repeated: state!.repeated, bytes, refused };
        send({ results, waiting: state!.waiting, failure: failure?.message ?? null });
        resolve();
      }
    });
  });
}

// forked by the launcher
if (process.send && process.argv.includes('--study-server')) {
  const send = (message: unknown) => process.send!(message);
  // a launcher that dies takes its ranks with it (their checkpoints stay, for converge study --resume)
  process.once('disconnect', () => process.exit(1));
  process.once('message', (first: { start: ServerStart; inputs: string[] }) => {
    // once its results are sent the rank waits to be stopped: leaving would race the message out
    // a rank that cannot serve says why, then exits (the disconnect listener would keep it alive)
    serve(first.start, first.inputs, send, (handler) => process.on('message', handler)).catch((error: Error) => {
      process.send!({ error: error.message }, () => process.exit(1));
    });
  });
}
