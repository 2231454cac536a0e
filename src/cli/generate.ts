// `converge generate`: writes the seeded synthetic sets to files other tools can read too —
// RCV1-like sparse classification as libsvm, Netflix-like ratings as `user item rating` lines.

import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { badOption, unknownName, usageError } from '../errors.js';
import { joinNegativeNumbers } from './args.js';
import { formatRatings, generateNetflixLike, netflixLikeDefaults } from '../data/ratings.js';
import { formatLibsvm, generateRcv1Like, rcv1LikeDefaults } from '../data/sparse.js';

export const generateHelp = `Usage:
  converge generate rcv1-like --out DIR [--rows ${rcv1LikeDefaults.rows}] [--test-rows ${rcv1LikeDefaults.testRows}] [--features ${rcv1LikeDefaults.features}] [--nnz ${rcv1LikeDefaults.nonZeros}] [--seed 1]
      sparse binary classification, power-law feature frequencies: DIR/train.svm, DIR/test.svm (libsvm)
  converge generate netflix-like --out DIR [--users ${netflixLikeDefaults.users}] [--items ${netflixLikeDefaults.items}] [--ratings-per-user ${netflixLikeDefaults.ratingsPerUser}] [--rank ${netflixLikeDefaults.rank}] [--seed 1]
      ratings 1..5 from a low-rank model, power-law ratings per user: DIR/train.ratings, DIR/test.ratings
`;

/** Writes a file atomically: nothing half-written is left under its name. */
function writeAtomically(path: string, text: string): void {
  writeFileSync(`${path}.tmp-${process.pid}`, text);
  renameSync(`${path}.tmp-${process.pid}`, path);
}

export function generateCommand(args: string[]): number {
  const [kind, ...rest] = args;
  if (kind === undefined || kind === '--help' || kind === '-h') {
    process.stdout.write(generateHelp);
    return 0;
  }
  const options = Object.fromEntries(['out', 'rows', 'test-rows', 'features', 'nnz', 'seed', 'users', 'items', 'ratings-per-user', 'rank']
    .map((name) => [name, { type: 'string' as const }]));
  let values: Record<string, string | undefined>;
  try {
    ({ values } = parseArgs({ args: joinNegativeNumbers(rest), options, strict: true }) as { values: Record<string, string | undefined> });
  } catch (error) {
    throw usageError(`${(error as Error).message.split('\n')[0]} (see converge generate --help)`);
  }
  const integer = (name: string, fallback: number) => {
    if (values[name] === undefined) return fallback;
    const v = Number(values[name]);
    if (!Number.isInteger(v) || v <= 0) throw badOption(`--${name}`, values[name], 'a positive integer');
    return v;
  };
  const out = values.out;
  if (!out) throw badOption('--out', out, 'a folder to write the files into');
  mkdirSync(out, { recursive: true });
  const seed = integer('seed', 1);
  if (kind === 'rcv1-like') {
    const data = generateRcv1Like({ rows: integer('rows', rcv1LikeDefaults.rows), testRows: integer('test-rows', rcv1LikeDefaults.testRows),
      features: integer('features', rcv1LikeDefaults.features), nonZeros: integer('nnz', rcv1LikeDefaults.nonZeros), seed });
    writeAtomically(join(out, 'train.svm'), formatLibsvm(data.train));
    writeAtomically(join(out, 'test.svm'), formatLibsvm(data.test));
    process.stdout.write(`wrote ${join(out, 'train.svm')} (${data.train.count} rows) and ${join(out, 'test.svm')} (${data.test.count} rows), ${data.features} features\n`);
  } else if (kind === 'netflix-like') {
    const data = generateNetflixLike({ ...netflixLikeDefaults, users: integer('users', netflixLikeDefaults.users), items: integer('items', netflixLikeDefaults.items),
      ratingsPerUser: integer('ratings-per-user', netflixLikeDefaults.ratingsPerUser), rank: integer('rank', netflixLikeDefaults.rank), seed });
    writeAtomically(join(out, 'train.ratings'), formatRatings(data.train));
    writeAtomically(join(out, 'test.ratings'), formatRatings(data.test));
    process.stdout.write(`wrote ${join(out, 'train.ratings')} (${data.train.count} ratings) and ${join(out, 'test.ratings')} (${data.test.count}), ${data.users} users × ${data.items} items\n`);
  } else throw unknownName('generator', kind, ['rcv1-like', 'netflix-like']);
  return 0;
}
