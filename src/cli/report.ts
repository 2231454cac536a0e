// `converge report DIR --out report.html`
import { mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { ConvergeError, badOption, missingOption } from '../errors.js';
import { checkWritable } from '../launch/outputs.js';

export const reportHelp = `converge report DIR [--out FILE]
  Reads the logs of 'converge bench … --out DIR' and writes one self-contained HTML page
  (FILE, default DIR/report.html) with the charts and the time-to-target table of every
  workload, and summary.md and summary.json beside it. On the results of
  'converge study … --out DIR' it draws heat maps of each field's mean, standard deviation and
  Sobol indices.
`;

export async function reportCommand(args: string[]): Promise<number> {
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(reportHelp);
    return 0;
  }
  const { values, positionals } = parseArgs({ args, allowPositionals: true, options: { out: { type: 'string' } } });
  if (positionals.length === 0) throw missingOption('the sweep folder', 'the folder of a converge bench … --out DIR (converge report DIR --out report.html)');
  if (positionals.length !== 1) throw badOption('converge report', positionals.join(' '), 'one folder of sweep logs (converge report DIR --out report.html)');
  const dir = positionals[0];
  if (values.out) {
    // the page's folder is made if need be (as the report always did), then checked before any drawing
    mkdirSync(dirname(resolve(values.out)), { recursive: true });
    checkWritable('--out', values.out);
  }
  // a study's results (converge study --out DIR): heat maps of its fields, drawn without vega
  const { isStudy, writeStudyReport } = await import('../bench/study-report.js');
  if (isStudy(dir)) {
    const drawn = writeStudyReport(dir, values.out ?? `${dir}/report.html`);
    process.stdout.write(`wrote ${drawn.html} (a study, ${drawn.surrogate ? 'its surrogate\'s held-out error' : `${drawn.heatMaps} heat maps`})\n`);
    return 0;
  }
  // Vega loads only here: the other commands, and the library, never need it (an optional peer dependency)
  const { writeReport } = await import('../bench/report.js').catch((error: NodeJS.ErrnoException) => {
    if (error.code === 'ERR_MODULE_NOT_FOUND' && /vega/.test(error.message)) {
      throw new ConvergeError('converge report draws its charts with vega and vega-lite, which are optional: npm install vega vega-lite, then run it again.', 'MISSING_DEPENDENCY');
    }
    throw error;
  });
  const written = await writeReport(dir, values.out ?? `${dir}/report.html`);
  process.stdout.write(`wrote ${written.html} (${written.tables} workload${written.tables === 1 ? '' : 's'}, ${written.charts} charts), ${written.markdown}, ${written.json}\n`);
  return 0;
}
