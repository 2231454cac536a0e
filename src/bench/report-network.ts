// The report's section for bench:network's results (network*.json beside a sweep's logs, or in a
// folder of their own): per model, the training seconds to the target against the link's rate,
// one line per configuration (plain all-reduce, each hook, local SGD), and the table with each
// configuration's time divided into plain all-reduce's at the same rate.

import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { median } from './common.js';
import { escape, svg } from './html.js';

/** One row of bench/network's JSON: a model, a rate, a configuration, and a time per seed (null: not reached). */
export interface NetworkRow { model: string; rate: string; config: string; target: number; trainSeconds: (number | null)[]; bytesPerStep: number }

const PLAIN = 'all-reduce';

/** A rate's bits per second ('100mbit', '1gbit'; 'unshaped' is the fastest), for ordering the axis. */
export function bitsPerSecond(rate: string): number {
  const match = /^(\d+(?:\.\d+)?)(k|m|g)?bit$/.exec(rate);
  if (!match) return Infinity;
  const unit: Record<string, number> = { k: 1e3, m: 1e6, g: 1e9 };
  return Number(match[1]) * (match[2] ? unit[match[2]] : 1);
}

const rateLabel = (rate: string) => {
  const bits = bitsPerSecond(rate);
  if (!Number.isFinite(bits)) return rate;
  return bits >= 1e9 ? `${bits / 1e9} Gbit/s` : bits >= 1e6 ? `${bits / 1e6} Mbit/s` : `${bits / 1e3} kbit/s`;
};

/** The median over seeds, or null when a seed did not reach the target. */
const seconds = (row: NetworkRow) => (row.trainSeconds.length === 0 || row.trainSeconds.some((s) => s === null) ? null : median(row.trainSeconds as number[]));

/** Every network*.json in `dir`; where two files measured one (model, rate, configuration), the one with more seeds. */
export function loadNetwork(dir: string): NetworkRow[] {
  if (!existsSync(dir)) return [];
  const chosen = new Map<string, NetworkRow>();
  for (const file of readdirSync(dir).filter((f) => /^network.*\.json$/.test(f)).sort()) {
    const parsed = JSON.parse(readFileSync(join(dir, file), 'utf8')) as { rows?: NetworkRow[] };
    if (!Array.isArray(parsed.rows)) continue;
    for (const row of parsed.rows) {
      if (typeof row.model !== 'string' || typeof row.rate !== 'string' || typeof row.config !== 'string' || !Array.isArray(row.trainSeconds)) continue;
      const key = `${row.model}\u0000${row.rate}\u0000${row.config}`;
      const held = chosen.get(key);
      if (!held || row.trainSeconds.length > held.trainSeconds.length) chosen.set(key, row);
    }
  }
  return [...chosen.values()];
}

export async function networkSection(rows: NetworkRow[]): Promise<{ html: string; markdown: string; charts: number }> {
  const models = [...new Set(rows.map((r) => r.model))];
  const parts: string[] = [];
  const markdown: string[] = ['## Time to accuracy against bandwidth', ''];
  for (const model of models) {
    const own = rows.filter((r) => r.model === model);
    const rates = [...new Set(own.map((r) => r.rate))].sort((a, b) => bitsPerSecond(a) - bitsPerSecond(b));
    const configs = [...new Set(own.map((r) => r.config))];
    const points = own.flatMap((r) => {
      const s = seconds(r);
      return s === null ? [] : [{ configuration: r.config, rate: rateLabel(r.rate), seconds: s }];
    });
    const chart = await svg({
      data: { values: points },
      mark: { type: 'line', point: true },
      encoding: {
        x: { field: 'rate', type: 'ordinal', title: 'link rate', sort: rates.map(rateLabel), axis: { labelAngle: 0 } },
        y: { field: 'seconds', type: 'quantitative', title: 'training seconds to the target (log)', scale: { type: 'log' } },
        color: { field: 'configuration', type: 'nominal', title: 'configuration' },
      },
    });
    const cell = (config: string, rate: string) => {
      const row = own.find((r) => r.config === config && r.rate === rate);
      if (!row) return '–';
      const s = seconds(row);
      if (s === null) return 'not reached';
      const plain = own.find((r) => r.config === PLAIN && r.rate === rate);
      const base = plain ? seconds(plain) : null;
      return base === null || config === PLAIN ? `${s.toFixed(1)} s` : `${s.toFixed(1)} s (${(base / s).toFixed(2)}×)`;
    };
    const target = own[0].target;
    const head = ['configuration', ...rates.map(rateLabel)];
    const cells = configs.map((config) => [config, ...rates.map((rate) => cell(config, rate))]);
    const caption = `${model} to ${(100 * target).toFixed(0)}%: training seconds against link rate`;
    parts.push(`<h3>${escape(model)}</h3><table><thead><tr>${head.map((h) => `<th>${escape(h)}</th>`).join('')}</tr></thead><tbody>${cells.map((c) => `<tr>${c.map((v) => `<td>${escape(v)}</td>`).join('')}</tr>`).join('')}</tbody></table><figure><figcaption>${escape(caption)}</figcaption>${chart}</figure>`);
    markdown.push(`### ${model} to ${(100 * target).toFixed(0)}%`, '', `| ${head.join(' | ')} |`, `|${head.map(() => '---').join('|')}|`, ...cells.map((c) => `| ${c.join(' | ')} |`), '');
  }
  const html = `<section id="network"><h2>Time to accuracy against bandwidth</h2><p>Training seconds until the target accuracy, 2 ranks over tcp between network namespaces joined by a shaped veth pair (npm run bench:network); the median over the seeds measured, and in brackets how many times sooner than plain all-reduce at the same rate.</p>${parts.join('')}</section>`;
  return { html, markdown: markdown.join('\n'), charts: models.length };
}
