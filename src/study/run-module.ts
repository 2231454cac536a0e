// Runs a simulation written as a module (a study's { "module": "./simulation.js" }): imports it
// and calls its default export with a connected client, then closes the client.
//   export default async function (study: StudyClient) { … await study.send(…) … }

import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';
import { connect, type StudyClient } from './client.js';

const path = process.argv[2];
const simulation = (await import(pathToFileURL(resolve(path)).href)) as { default?: (study: StudyClient) => Promise<void> | void };
if (typeof simulation.default !== 'function') {
  process.stderr.write(`study: ${path} has no default export; a simulation module exports default async function (study) { … }.\n`);
  process.exit(2);
}
const study = await connect();
await simulation.default(study);
await study.close();
