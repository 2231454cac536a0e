// The entry point of each worker thread of a training run.
import { runRank } from './thread-rank.js';
import { trainRank, type RankInput } from '../train/run.js';

runRank<RankInput>(trainRank);
