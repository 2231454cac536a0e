// Trains both models of this folder data-parallel on 2 worker threads, with each strategy.
//   node examples/dist/train.js [data set, default fashion-mnist] [epochs, default 1]
import { train, ConvergeError } from 'converge';

const data = process.argv[2] ?? 'fashion-mnist';
const epochs = Number(process.argv[3] ?? 1);

try {
  for (const file of ['./my-model.js', './linear-model.js']) {
    for (const strategy of ['allreduce', 'ps', 'local-sgd', 'hogwild']) {
      const { summary } = await train({
        model: new URL(file, import.meta.url),
        data,
        strategy,
        workers: 2,
        epochs,
        lr: file === './linear-model.js' ? 0.1 : 0.05,
        onEpoch: (e) => console.log(`  epoch ${e.epoch + 1}: test accuracy ${(100 * e.testAccuracy).toFixed(2)}%`),
      });
      console.log(`${summary.model} ${strategy}: ${(100 * summary.testAccuracy).toFixed(2)}% at ${Math.round(summary.samplesPerSecond)} samples/s`);
    }
  }
} catch (error) {
  // every error converge raises says what, where and what to do, with a code to branch on
  if (error instanceof ConvergeError) console.error(`${error.code}: ${error.message}`);
  else throw error;
  process.exit(1);
}
