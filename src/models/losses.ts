// The losses a layer model ends in, besides softmax cross-entropy (a kernel): mean squared error
// for regression and binary cross-entropy on logits. Each returns the batch's mean loss and
// writes its gradient with respect to the model's outputs (for the mean).

/** Mean over the batch and the outputs of (y − t)², as PyTorch's MSELoss; grad = 2(y − t)/(n·k). */
export function meanSquaredError(outputs: Float32Array, targets: Float32Array, batch: number, width: number, grad: Float32Array | null): number {
  const n = batch * width;
  let sum = 0;
  const factor = 2 / n;
  for (let i = 0; i < n; i++) {
    const difference = outputs[i] - targets[i];
    sum += difference * difference;
    if (grad) grad[i] = factor * difference;
  }
  return sum / n;
}

/** Σ (y − t)² over the batch, for RMSE. */
export function squaredError(outputs: Float32Array, targets: Float32Array, batch: number, width: number): number {
  let sum = 0;
  for (let i = 0; i < batch * width; i++) sum += (outputs[i] - targets[i]) ** 2;
  return sum;
}

/**
 * Binary cross-entropy on logits z against targets t ∈ [0, 1], mean over the batch and outputs,
 * as PyTorch's BCEWithLogitsLoss: max(z, 0) − z·t + log(1 + e^−|z|); grad = (σ(z) − t)/(n·k).
 */
export function binaryCrossEntropy(logits: Float32Array, targets: Float32Array, batch: number, width: number, grad: Float32Array | null): number {
  const n = batch * width;
  let sum = 0;
  for (let i = 0; i < n; i++) {
    const z = logits[i];
    const t = targets[i];
    sum += Math.max(z, 0) - z * t + Math.log1p(Math.exp(-Math.abs(z)));
    if (grad) grad[i] = (1 / (1 + Math.exp(-z)) - t) / n;
  }
  return sum / n;
}

/** What a layer model's outputs are fitted by. */
export type LossName = 'softmax-cross-entropy' | 'mse' | 'bce';
