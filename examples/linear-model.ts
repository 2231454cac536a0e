// A model of your own as a plain lossAndGrad function over the flat parameter buffer:
// multinomial logistic regression, written out by hand.
import { lossAndGradModel, type Batch } from 'converge';

export default lossAndGradModel<Batch>({
  name: 'linear',
  parameters: ({ inputShape, classes }) => [
    { name: 'weight', shape: [classes!, inputShape!.reduce((a, b) => a * b, 1)] }, // [classes, in]
    { name: 'bias', shape: [classes!] },
  ],
  lossAndGrad(params, batch, grad, layout) {
    const [classes, inputs] = layout.slot('weight').shape;
    const w = layout.views(params).weight;
    const b = layout.views(params).bias;
    const gw = layout.views(grad).weight;
    const gb = layout.views(grad).bias;
    grad.fill(0);
    const logits = new Float64Array(classes);
    let loss = 0;
    for (let n = 0; n < batch.size; n++) {
      const x = batch.x.subarray(n * inputs, (n + 1) * inputs);
      let max = -Infinity;
      for (let c = 0; c < classes; c++) {
        let z = b[c];
        for (let i = 0; i < inputs; i++) z += w[c * inputs + i] * x[i];
        logits[c] = z;
        max = Math.max(max, z);
      }
      let sum = 0;
      for (let c = 0; c < classes; c++) sum += Math.exp(logits[c] - max);
      loss += Math.log(sum) + max - logits[batch.y[n]];
      for (let c = 0; c < classes; c++) {
        // d loss / d logit = softmax − one-hot, averaged over the batch
        const d = (Math.exp(logits[c] - max) / sum - (c === batch.y[n] ? 1 : 0)) / batch.size;
        gb[c] += d;
        for (let i = 0; i < inputs; i++) gw[c * inputs + i] += d * x[i];
      }
    }
    return loss / batch.size;
  },
  predict(params, batch, out, layout) {
    const [classes, inputs] = layout.slot('weight').shape;
    const w = layout.views(params).weight;
    const b = layout.views(params).bias;
    for (let n = 0; n < batch.size; n++) {
      let best = 0;
      let bestScore = -Infinity;
      for (let c = 0; c < classes; c++) {
        let z = b[c];
        for (let i = 0; i < inputs; i++) z += w[c * inputs + i] * batch.x[n * inputs + i];
        if (z > bestScore) [best, bestScore] = [c, z];
      }
      out[n] = best;
    }
  },
});
