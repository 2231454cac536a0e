// What a model is to the registry and to a user's module: the data it trains on and how to
// build it for the data's shapes; and which loss a dense model fits its data by.

import type { LossName } from './losses.js';
import type { Model, ModelOptions } from './model.js';

/** The data a model trains on. */
export type DataKind = 'images' | 'sparse' | 'ratings';

/**
 * What the registry holds for a model, and what a user's model module exports (as its default
 * export): the kind of data it trains on and how to build it for the data's shapes.
 */
export interface ModelDefinition {
  readonly data: DataKind;
  /** A deep network (ResNet): named apart from the small models in messages. */
  readonly deep?: boolean;
  /** Training options that suit it better than the general defaults (by their TrainConfig names), used unless the user gives them. */
  readonly recommended?: Readonly<Record<string, string | number>>;
  build(options: ModelOptions): Model;
}

/** Classes are fitted by softmax cross-entropy, regression targets by mean squared error. */
export const lossFor = (o: ModelOptions): LossName => (o.task === 'regression' ? 'mse' : 'softmax-cross-entropy');
