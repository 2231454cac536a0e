// What the HTML reports share: escaping, and charts drawn as inline SVG.

import * as vega from 'vega';
import * as vegaLite from 'vega-lite';

/** Text made safe to place in HTML. */
export const escape = (text: string) => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/** A Vega-Lite chart rendered in Node to SVG text: no script, no network. */
export async function svg(spec: object): Promise<string> {
  const full = { $schema: 'https://vega.github.io/schema/vega-lite/v6.json', width: 420, height: 240, config: { background: 'white', font: 'sans-serif', legend: { labelLimit: 260 } }, ...spec };
  const view = new vega.View(vega.parse(vegaLite.compile(full as vegaLite.TopLevelSpec).spec), { renderer: 'none' });
  const out = await view.toSVG();
  view.finalize();
  return out;
}
