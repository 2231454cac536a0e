// Ratings for matrix completion: (user, item, rating) triples on SharedArrayBuffers. Read from
// a text file of `user item rating` lines (0-based ids), or generated (a Netflix-like set).

import { existsSync, readFileSync } from 'node:fs';
import { corruptFile, missingData } from '../errors.js';
import { Random, mixSeed, zipfSampler } from '../tensor/random.js';

export interface RatingSplit {
  users: Int32Array;
  items: Int32Array;
  ratings: Float32Array;
  count: number;
}

export interface RatingsDataset {
  kind: 'ratings';
  name: string;
  users: number;
  items: number;
  mean: number; // of the training ratings
  train: RatingSplit;
  test: RatingSplit;
  /** How the test set was made, when it was drawn from the training file. */
  split?: string;
}

export function toRatingSplit(users: ArrayLike<number>, items: ArrayLike<number>, ratings: ArrayLike<number>): RatingSplit {
  const count = ratings.length;
  const split = {
    users: new Int32Array(new SharedArrayBuffer(4 * count)),
    items: new Int32Array(new SharedArrayBuffer(4 * count)),
    ratings: new Float32Array(new SharedArrayBuffer(4 * count)),
    count,
  };
  split.users.set(users);
  split.items.set(items);
  split.ratings.set(ratings);
  return split;
}

const HINT = 'fix that line (format: user item rating, ids 0-based integers)';

export function parseRatings(text: string, path: string): { split: RatingSplit; users: number; items: number } {
  const users: number[] = [];
  const items: number[] = [];
  const ratings: number[] = [];
  let maxUser = -1;
  let maxItem = -1;
  const lines = text.split('\n');
  lines.forEach((raw, i) => {
    const line = raw.replace(/#.*/, '').trim();
    if (!line) return;
    const fields = line.split(/\s+/);
    const where = `${path}:${i + 1}`;
    if (fields.length !== 3) throw corruptFile(where, `has ${fields.length} fields, not 3`, HINT);
    const [user, item, rating] = fields.map(Number);
    if (!Number.isInteger(user) || user < 0) throw corruptFile(where, `user '${fields[0]}' is not an integer ≥ 0`, HINT);
    if (!Number.isInteger(item) || item < 0) throw corruptFile(where, `item '${fields[1]}' is not an integer ≥ 0`, HINT);
    if (!Number.isFinite(rating)) throw corruptFile(where, `rating '${fields[2]}' is not a number`, HINT);
    users.push(user);
    items.push(item);
    ratings.push(rating);
    if (user > maxUser) maxUser = user;
    if (item > maxItem) maxItem = item;
  });
  if (ratings.length === 0) throw corruptFile(path, 'holds no ratings', HINT);
  return { split: toRatingSplit(users, items, ratings), users: maxUser + 1, items: maxItem + 1 };
}

export function readRatings(path: string): { split: RatingSplit; users: number; items: number } {
  if (!existsSync(path)) throw missingData('ratings file', path, 'check the --dataset / --test-dataset path.');
  return parseRatings(readFileSync(path, 'utf8'), path);
}

export function formatRatings(split: RatingSplit): string {
  const lines: string[] = [];
  for (let i = 0; i < split.count; i++) lines.push(`${split.users[i]} ${split.items[i]} ${+split.ratings[i].toFixed(3)}`);
  return `${lines.join('\n')}\n`;
}

export interface NetflixLikeOptions {
  users: number;
  items: number;
  ratingsPerUser: number; // mean; the per-user counts follow a power law
  rank: number; // of the hidden low-rank structure
  testFraction: number;
  seed: number;
}

export const netflixLikeDefaults: NetflixLikeOptions = { users: 20_000, items: 4_000, ratingsPerUser: 50, rank: 8, testFraction: 0.1, seed: 1 };

/**
 * A Netflix-like set: ratings on 1..5 from a hidden rank-r model with user and item biases
 * plus noise; the number of ratings per user follows a power law (Pareto, shape 1.5) and
 * items are chosen by a power-law popularity, as in real rating data.
 */
export function generateNetflixLike(o: NetflixLikeOptions): RatingsDataset {
  const random = new Random(mixSeed(o.seed, 0xf11));
  const scale = 1 / Math.sqrt(o.rank);
  const userFactors = Float32Array.from({ length: o.users * o.rank }, () => random.normal() * scale);
  const itemFactors = Float32Array.from({ length: o.items * o.rank }, () => random.normal() * scale);
  const userBias = Float32Array.from({ length: o.users }, () => 0.4 * random.normal());
  const itemBias = Float32Array.from({ length: o.items }, () => 0.4 * random.normal());
  const pick = zipfSampler(o.items, 0.8, random); // item popularity
  const train = { users: [] as number[], items: [] as number[], ratings: [] as number[] };
  const test = { users: [] as number[], items: [] as number[], ratings: [] as number[] };
  const seen = new Set<number>();
  for (let u = 0; u < o.users; u++) {
    // Pareto with shape 1.5 has mean 3·minimum: minimum = mean / 3
    const count = Math.min(o.items >> 1, Math.max(2, Math.round((o.ratingsPerUser / 3) / (1 - random.next()) ** (1 / 1.5))));
    seen.clear();
    for (let attempts = 0; seen.size < count && attempts < 20 * count; attempts++) seen.add(pick());
    for (const i of seen) {
      let dot = 0;
      for (let k = 0; k < o.rank; k++) dot += userFactors[u * o.rank + k] * itemFactors[i * o.rank + k];
      const rating = Math.min(5, Math.max(1, 3.6 + userBias[u] + itemBias[i] + dot + 0.5 * random.normal()));
      const target = random.next() < o.testFraction ? test : train;
      target.users.push(u);
      target.items.push(i);
      target.ratings.push(Math.round(rating * 2) / 2);
    }
  }
  const mean = train.ratings.reduce((a, b) => a + b, 0) / train.ratings.length;
  return {
    kind: 'ratings', name: 'netflix-like', users: o.users, items: o.items, mean,
    train: toRatingSplit(train.users, train.items, train.ratings),
    test: toRatingSplit(test.users, test.items, test.ratings),
  };
}
