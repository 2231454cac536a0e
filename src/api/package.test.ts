// converge as a dependency: a separate project installs the packed tarball (its install script
// builds the native kernels), type-checks the examples with strict tsc against the shipped
// declarations, and trains the models it defines on 2 workers, through train() and the CLI.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../../', import.meta.url));
const require = createRequire(import.meta.url);

function run(command: string, args: string[], cwd: string): string {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', timeout: 300_000 });
  assert.equal(result.status, 0, `${command} ${args.join(' ')} failed:\n${result.stdout}\n${result.stderr}`);
  return result.stdout;
}

test('a separate project depends on the packed tarball, type-checks with strict tsc, and trains its own models on 2 workers', () => {
  const dir = mkdtempSync(join(tmpdir(), 'converge-package-'));
  const tarball = run('npm', ['pack', '--pack-destination', dir, '--silent'], root).trim().split('\n').pop()!;
  const app = join(dir, 'app');
  mkdirSync(app);
  const version = (name: string) => (require(`${name}/package.json`) as { version: string }).version;
  writeFileSync(join(app, 'package.json'), JSON.stringify({
    name: 'app', private: true, type: 'module',
    dependencies: { converge: `file:../${tarball}` },
    devDependencies: { typescript: version('typescript'), '@types/node': version('@types/node') },
  }, null, 2));
  const examples = join(root, 'examples');
  for (const file of readdirSync(examples).filter((f) => f.endsWith('.ts') || f === 'tsconfig.json')) copyFileSync(join(examples, file), join(app, file));
  run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--loglevel=error'], app);
  const tsc = join(app, 'node_modules', 'typescript', 'bin', 'tsc');
  run(process.execPath, [tsc, '-p', '.'], app);

  // the declarations are real: a misuse does not compile
  writeFileSync(join(app, 'misuse.ts'), "import { train } from 'converge';\nawait train({ model: 'mlp', workers: 'two' });\n");
  const misuse = spawnSync(process.execPath, [tsc, '-p', '.', '--noEmit'], { cwd: app, encoding: 'utf8' });
  assert.notEqual(misuse.status, 0, 'a string for workers must not type-check');
  assert.match(misuse.stdout, /misuse\.ts.*Type 'string' is not assignable to type 'number'/);

  const trained = run(process.execPath, ['dist/train.js', 'synthetic', '1'], app);
  for (const model of ['my-model', 'linear-model']) {
    for (const strategy of ['allreduce', 'ps', 'local-sgd', 'hogwild']) {
      const line = new RegExp(`^${model} ${strategy}: ([\\d.]+)% at \\d+ samples/s$`, 'm').exec(trained);
      assert.ok(line, `${model} ${strategy} in:\n${trained}`);
      assert.ok(Number(line[1]) > 80, `${model} ${strategy}: ${line[1]}% (chance is 10%)`);
    }
  }
  const cli = run(join(app, 'node_modules', '.bin', 'converge'), ['train', '--model', './dist/my-model.js', '--dataset', 'synthetic', '--workers', '2', '--epochs', '1'], app);
  assert.match(cli, /test accuracy [\d.]+% after 1 epoch \(my-model, allreduce, 2 workers/);
  // the tarball holds every source its binding.gyp names: its install built the native kernels (CI requires them)
  if (process.env.CONVERGE_REQUIRE_NATIVE === '1') assert.ok(existsSync(join(app, 'node_modules', 'converge', 'build', 'Release', 'converge_native.node')), 'the installed package built no native kernels: a source its binding.gyp names is missing from the tarball');
  assert.match(run(process.execPath, ['dist/custom-loop.js'], app), /\[\[3,-1\],\[3,-1\]\]/);
});
