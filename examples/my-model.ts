// A model of your own from layers, with a residual connection: converge builds it for the
// data's shapes on every worker thread, which imports this module by its URL.
import { dense, flatten, relu, residual, sequential } from 'converge';

export default sequential(({ classes }) => [
  flatten(),
  dense(128),
  relu(),
  // out = x + dense(relu(dense(x))): the skip connection of a ResNet block
  residual([dense(128), relu(), dense(128)]),
  relu(),
  dense(classes),
]);
