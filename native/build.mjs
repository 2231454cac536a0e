// Builds the native kernels at install time with the node-gyp that npm ships, against the Node
// headers already on the machine (never downloaded). A failed build is not fatal: converge then
// runs on its reference kernels, and says so once at start-up.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

const nodeGyp = process.env.npm_config_node_gyp
  ?? [join(dirname(process.execPath), '../lib/node_modules/npm/node_modules/node-gyp/bin/node-gyp.js')].find(existsSync);
if (!nodeGyp) {
  console.warn('converge: node-gyp not found; native kernels not built, the reference kernels will be used');
  process.exit(0);
}
const common = [];
// the headers of the running Node (Debian puts them in /usr/include/node)
const nodedir = process.env.npm_config_nodedir ?? (existsSync('/usr/include/node/node_api.h') ? '/usr' : undefined);
if (nodedir) common.push(`--nodedir=${nodedir}`);
const result = spawnSync(process.execPath, [nodeGyp, 'rebuild', ...common], { stdio: 'inherit' });
if (result.status !== 0) {
  console.warn('converge: the native kernels did not build (is libopenblas-dev installed?); the reference kernels will be used');
}

// the Open MPI binding (--backend mpi), where Open MPI's compiler wrapper is installed
if (spawnSync('mpicc', ['--showme:version'], { stdio: 'ignore' }).status === 0) {
  const mpi = spawnSync(process.execPath, [nodeGyp, 'rebuild', '--directory=native/mpi', ...common], { stdio: 'inherit' });
  if (mpi.status !== 0) console.warn('converge: the Open MPI binding did not build (is libopenmpi-dev installed?); --backend mpi is unavailable');
} else {
  console.warn('converge: mpicc not found (Debian: openmpi-bin libopenmpi-dev); --backend mpi is unavailable, tcp and shm work');
}

// oneDNN's convolutions (the library PyTorch's CPU convolutions use), where Debian's libdnnl-dev is installed
if (existsSync('/usr/include/oneapi/dnnl/dnnl.hpp')) {
  const dnnl = spawnSync(process.execPath, [nodeGyp, 'rebuild', '--directory=native/dnnl', ...common], { stdio: 'inherit' });
  if (dnnl.status !== 0) console.warn('converge: the oneDNN convolutions did not build; convolutions use im2col and OpenBLAS');
} else {
  console.warn('converge: oneDNN not found (Debian: libdnnl-dev); convolutions use im2col and OpenBLAS (slower)');
}
