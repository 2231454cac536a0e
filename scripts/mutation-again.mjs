// `npm run test:mutation -- --again MODULE`: rerun only what a module's last report left open.
//
// A mutant that a test killed stays killed while its code is unchanged and no test is taken away: a
// rerun after tests were added needs only the mutants that survived, and the code that changed
// since. plan() maps the report's lines to the files as they are now (a longest-common-subsequence
// line diff), keeps the killed mutants whose lines are intact, and names the line ranges to mutate
// again: every survivor's lines, and the lines that changed (widened to the whole span of any old
// mutant they touch, so a block mutant around a changed line runs again too). merge() puts the
// rerun's mutants and the kept ones into one report, as a whole run would have written it.
// A module whose files are not the report's (a file added to it) needs a whole run.
import { readFileSync } from 'node:fs';

/** For each old line (0-based), the new line it is unchanged as, or −1: a longest common subsequence of the lines. */
export function lineMap(oldLines, newLines) {
  const n = oldLines.length;
  const m = newLines.length;
  const lcs = new Uint32Array((n + 1) * (m + 1)); // lcs[i·(m+1) + j]: of oldLines[i..] and newLines[j..]
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      lcs[i * (m + 1) + j] = oldLines[i] === newLines[j] ? lcs[(i + 1) * (m + 1) + j + 1] + 1 : Math.max(lcs[(i + 1) * (m + 1) + j], lcs[i * (m + 1) + j + 1]);
    }
  }
  const map = new Int32Array(n).fill(-1);
  for (let i = 0, j = 0; i < n && j < m;) {
    if (oldLines[i] === newLines[j]) map[i++] = j++;
    else if (lcs[(i + 1) * (m + 1) + j] >= lcs[i * (m + 1) + j + 1]) i++;
    else j++;
  }
  return map;
}

const open = (mutant) => mutant.status === 'Survived' || mutant.status === 'NoCoverage';
const keyOf = (m) => `${m.mutatorName}|${m.replacement}|${m.location.start.line}:${m.location.start.column}-${m.location.end.line}:${m.location.end.column}`;

/**
 * What to run again for a module's last report: `mutate` (line ranges, file:from-to, 1-based), the killed mutants kept (per file, at
 * their lines now), and counts. `read(file)` gives a file's text now.
 */
export function plan(report, read = (file) => readFileSync(file, 'utf8')) {
  const mutate = [];
  const kept = {};
  const sources = {};
  let reopened = 0;
  for (const [file, { source, mutants }] of Object.entries(report.files)) {
    const now = read(file);
    sources[file] = now;
    const oldLines = source.split('\n');
    const newLines = now.split('\n');
    const map = lineMap(oldLines, newLines);
    const n = oldLines.length;
    const unchanged = new Uint8Array(newLines.length);
    for (const j of map) if (j >= 0) unchanged[j] = 1;
    const again = new Uint8Array(newLines.length + 1); // 1-based new lines to mutate again
    for (let j = 0; j < newLines.length; j++) if (!unchanged[j]) again[j + 1] = 1;
    // the new line where old line i (0-based) is, or the nearest intact line before (after) it
    const before = (i) => { while (i >= 0 && map[i] < 0) i--; return i < 0 ? 0 : map[i]; };
    const after = (i) => { while (i < n && map[i] < 0) i++; return i >= n ? newLines.length - 1 : map[i]; };
    kept[file] = [];
    for (const mutant of mutants) {
      const { start, end } = mutant.location;
      let intact = true;
      for (let i = start.line - 1; i <= end.line - 1; i++) if (map[i] !== map[start.line - 1] + (i - (start.line - 1)) || map[i] < 0) intact = false;
      if (intact && !open(mutant)) {
        kept[file].push({ ...mutant, location: { start: { ...start, line: map[start.line - 1] + 1 }, end: { ...end, line: map[end.line - 1] + 1 } } });
        continue;
      }
      if (open(mutant)) reopened++;
      // a survivor's lines, or the whole span now of a mutant whose code changed
      const [from, to] = intact ? [map[start.line - 1], map[end.line - 1]] : [before(start.line - 1), after(end.line - 1)];
      for (let j = from; j <= to; j++) again[j + 1] = 1;
    }
    for (let line = 1; line <= newLines.length; line++) {
      if (!again[line]) continue;
      let last = line;
      while (last + 1 <= newLines.length && again[last + 1]) last++;
      mutate.push(`${file}:${line}-${last}`);
      line = last;
    }
  }
  const keptCount = Object.values(kept).reduce((sum, list) => sum + list.length, 0);
  return { mutate, kept, sources, reopened, keptCount };
}

/** One report from a rerun's (null: nothing ran again) and the mutants kept: the rerun's where both have one, ids renumbered. */
export function merge(rerun, kept, sources, previous) {
  const base = rerun ?? previous;
  const files = {};
  let id = 0;
  for (const [file, source] of Object.entries(sources)) {
    const fresh = rerun?.files[file]?.mutants ?? [];
    const ran = new Set(fresh.map(keyOf));
    const mutants = [...fresh, ...kept[file].filter((m) => !ran.has(keyOf(m)))]
      .sort((a, b) => a.location.start.line - b.location.start.line || a.location.start.column - b.location.start.column)
      .map((m) => ({ ...m, id: String(id++) }));
    files[file] = { language: previous.files[file].language, source, mutants };
  }
  return { ...base, files };
}
