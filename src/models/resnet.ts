// ResNet-20: the CIFAR network of He et al. 2016 (section 4.2, Table 6): a 3×3 convolution of 16
// filters, three stages of three basic blocks (16, 32, 64 filters; the second and third stages
// begin with stride 2 and a projection shortcut, 1×1 convolution and batch norm), global average
// pooling and a dense layer. Convolutions have no bias (batch norm follows each). Built for images
// of any size and channel count: 272,186 parameters on one channel and 10 classes, as PyTorch's.

import { batchNorm, conv2d, dense, globalAvgPool2d, relu, residual, sequential, type LayerSpec } from './define.js';
import type { ModelOptions } from './model.js';
import type { Model } from './model.js';
import { shapeMismatch } from '../errors.js';

/** conv–bn–relu–conv–bn, plus the input (or its projection), then ReLU. */
function basicBlock(filters: number, stride: number, project: boolean): LayerSpec[] {
  const body = [conv2d(filters, 3, { stride, bias: false }), batchNorm(), relu(), conv2d(filters, 3, { bias: false }), batchNorm()];
  const shortcut = project ? [conv2d(filters, 1, { stride, pad: 0, bias: false }), batchNorm()] : undefined;
  return [residual(body, shortcut), relu()];
}

export function resnet20(options: ModelOptions): Model {
  if (!options.inputShape || options.inputShape.length !== 3) throw shapeMismatch('model resnet20', 'image data [channels, height, width]', options.inputShape ? `[${options.inputShape}]` : 'data of another kind');
  const layers: LayerSpec[] = [conv2d(16, 3, { bias: false }), batchNorm(), relu()];
  let channels = 16;
  for (const filters of [16, 32, 64]) {
    for (let block = 0; block < 3; block++) {
      const stride = block === 0 && filters !== 16 ? 2 : 1;
      layers.push(...basicBlock(filters, stride, stride !== 1 || channels !== filters));
      channels = filters;
    }
  }
  layers.push(globalAvgPool2d(), dense(options.classes ?? 10));
  return sequential(layers, { name: 'resnet20' }).build(options);
}
