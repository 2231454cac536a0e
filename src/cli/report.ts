// `converge report DIR --out report.html`
import { parseArgs } from 'node:util';
import { badOption } from '../errors.js';

export const reportHelp = `converge report DIR [--out FILE]
  Reads the logs of 'converge bench … --out DIR' and writes one self-contained HTML page
  (FILE, default DIR/report.html) with the charts and the time-to-target table of every
  workload, and summary.md and summary.json beside it.
`;

export async function reportCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(reportHelp);
    return 0;
  }
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { out: { type: 'string' } } });
  if (positionals.length !== 1) throw badOption('converge report', positionals.join(' ') || null, 'one folder of sweep logs (converge report DIR --out report.html)');
  const dir = positionals[0];
  // Vega loads only here: the other commands start without it
  const { writeReport } = await import('../bench/report.js');
  const written = await writeReport(dir, values.out ?? `${dir}/report.html`);
  process.stdout.write(`wrote ${written.html} (${written.tables} workload${written.tables === 1 ? '' : 's'}, ${written.charts} charts), ${written.markdown}, ${written.json}\n`);
  return 0;
}
