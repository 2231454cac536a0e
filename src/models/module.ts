// Models a user brings: a module (an ES module file or URL) whose default export is a model
// definition. Every rank imports the module itself — worker threads and processes alike reach
// the model by its URL, never by a name only this process knows.

import { isAbsolute, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { ConvergeError } from '../errors.js';
import { builtInModel, modelNames, type ModelDefinition } from './index.js';

/** A --model value that names a module rather than a built-in model: a path or a URL. */
export function isModelModule(reference: string): boolean {
  return /^(file|data|https?):/.test(reference) || reference.includes('/') || /\.[cm]?js$/.test(reference);
}

/** The module's URL, absolute, so every thread and process resolves it alike. */
export function modelModuleUrl(reference: string | URL): string {
  if (reference instanceof URL) return reference.href;
  if (/^(file|data|https?):/.test(reference)) return reference;
  return pathToFileURL(isAbsolute(reference) ? reference : resolve(reference)).href;
}

/** A short name for reports: the built-in's name, or the module's file name. */
export function modelLabel(reference: string): string {
  if (!isModelModule(reference)) return reference;
  const path = modelModuleUrl(reference).split(/[?#]/)[0];
  return path.slice(path.lastIndexOf('/') + 1).replace(/\.[cm]?js$/, '');
}

function isDefinition(value: unknown): value is ModelDefinition {
  const candidate = value as Partial<ModelDefinition> | null;
  return typeof candidate === 'object' && candidate !== null && typeof candidate.build === 'function' && ['images', 'sparse', 'ratings'].includes(candidate.data as string);
}

const loaded = new Map<string, Promise<ModelDefinition>>();

/** The definition of a built-in model's name or of a module's path or URL. */
export function resolveModel(reference: string): Promise<ModelDefinition> {
  if (!isModelModule(reference)) return Promise.resolve(builtInModel(reference));
  const url = modelModuleUrl(reference);
  let definition = loaded.get(url);
  if (!definition) {
    definition = import(url).then(
      (module: { default?: unknown; model?: unknown }) => {
        const exported = module.default ?? module.model;
        if (!isDefinition(exported)) {
          throw new ConvergeError(`--model ${reference}: the module's default export is not a model definition; export default sequential([...]) or lossAndGradModel({...}) from 'converge'.`, 'BAD_MODEL');
        }
        return exported;
      },
      (error: Error) => {
        const missing = (error as { code?: string }).code === 'ERR_MODULE_NOT_FOUND' && error.message.includes(url.replace('file://', ''));
        throw new ConvergeError(missing
          ? `--model ${reference}: no such module (${url}); give a built-in model (${modelNames.join(', ')}) or the path of a compiled .js module.`
          : `--model ${reference}: the module failed to load: ${error.message.split('\n')[0]}`, 'BAD_MODEL');
      },
    );
    loaded.set(url, definition);
  }
  return definition;
}
