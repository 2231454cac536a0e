// The entry point of each worker thread of a training run.
import { runRank } from '../comm/worker-entry.js';
import { trainRank, type RankInput } from '../train/rank.js';

runRank<RankInput>(trainRank);
