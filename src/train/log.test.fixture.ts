// The records of a run's JSONL log (--log), for tests that read what a run wrote.
import { readFileSync } from 'node:fs';

/** One line of the log: its `type` (step, epoch, evaluation, summary, error, …) says which other fields it has. */
export type LogRecord = Record<string, any>;

export function logRecords<T = LogRecord>(log: string): T[] {
  return readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as T);
}
