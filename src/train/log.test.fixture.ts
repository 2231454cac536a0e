// The records of a run's JSONL log (--log), for tests that read what a run wrote.
import { readFileSync } from 'node:fs';

export function logRecords<T = Record<string, unknown>>(log: string): T[] {
  return readFileSync(log, 'utf8').trim().split('\n').map((line) => JSON.parse(line) as T);
}
