// Where a process learns its rank: every launcher's variables, their precedence, and bad values.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mallocArenaNote, masterFromEnvironment, placeFromEnvironment, secretBits, tcpSettingsFromEnvironment, weakSecretWarning } from './environment.js';

test('the rank and size from torchrun, Open MPI, PMIx and Slurm variables, torchrun\'s first', () => {
  assert.deepEqual(placeFromEnvironment({ SLURM_PROCID: '5', SLURM_NTASKS: '8' }), { rank: 5, size: 8, source: 'SLURM_PROCID/SLURM_NTASKS' });
  assert.deepEqual(placeFromEnvironment({ OMPI_COMM_WORLD_RANK: '1', OMPI_COMM_WORLD_SIZE: '4' }), { rank: 1, size: 4, source: 'OMPI_COMM_WORLD_RANK/OMPI_COMM_WORLD_SIZE' });
  assert.deepEqual(placeFromEnvironment({ PMIX_RANK: '2', OMPI_COMM_WORLD_SIZE: '3' }), { rank: 2, size: 3, source: 'PMIX_RANK/OMPI_COMM_WORLD_SIZE' });
  assert.deepEqual(placeFromEnvironment({ RANK: '0', WORLD_SIZE: '2' }), { rank: 0, size: 2, source: 'RANK/WORLD_SIZE' });
  // srun inside an allocation where the user also set RANK/WORLD_SIZE: the explicit pair wins
  assert.deepEqual(placeFromEnvironment({ RANK: '3', WORLD_SIZE: '4', SLURM_PROCID: '0', SLURM_NTASKS: '1' }).rank, 3);
  // half a pair is no pair: Slurm's rank without its task count falls through to the error
  assert.throws(() => placeFromEnvironment({ SLURM_PROCID: '0' }), /does not know its rank: start it with `converge launch -n N -- …`, mpirun, srun/);
});

test('a rank outside its job, or a size that is no number, is refused naming the variables', () => {
  assert.throws(() => placeFromEnvironment({ SLURM_PROCID: '8', SLURM_NTASKS: '8' }), /SLURM_PROCID=8 and SLURM_NTASKS=8 do not name a rank of a job \(0 ≤ rank < size\)/);
  assert.throws(() => placeFromEnvironment({ RANK: '-1', WORLD_SIZE: '2' }), /RANK=-1 and WORLD_SIZE=2/);
  assert.throws(() => placeFromEnvironment({ RANK: '0', WORLD_SIZE: 'two' }), /RANK=0 and WORLD_SIZE=two/);
  assert.throws(() => placeFromEnvironment({ RANK: '0.5', WORLD_SIZE: '2' }), /RANK=0\.5/);
});

test('the tcp rendezvous needs MASTER_ADDR, a port, and a secret of at least 8 characters', () => {
  assert.deepEqual(masterFromEnvironment({ MASTER_ADDR: '10.0.0.1', MASTER_PORT: '29500', CONVERGE_SECRET: 'secret-12' }), { addr: '10.0.0.1', port: 29500, secret: 'secret-12' });
  assert.throws(() => masterFromEnvironment({ MASTER_PORT: '29500', CONVERGE_SECRET: 'secret-12' }), /needs MASTER_ADDR/);
  assert.throws(() => masterFromEnvironment({ MASTER_ADDR: 'a', MASTER_PORT: '70000', CONVERGE_SECRET: 'secret-12' }), /needs MASTER_PORT, a port number \(got "70000"\)/);
  assert.throws(() => masterFromEnvironment({ MASTER_ADDR: 'a', MASTER_PORT: '1', CONVERGE_SECRET: 'short' }), /CONVERGE_SECRET \(at least 8 characters/);
});

test('the tcp settings: the job id, the listening address (CONVERGE_BIND, or CONVERGE_IFNAME\'s IPv4 address), the transport security', () => {
  const interfaces = { lo: [{ family: 'IPv4', address: '127.0.0.1' }], eth1: [{ family: 'IPv6', address: 'fe80::1' }, { family: 'IPv4', address: '10.77.0.2' }] } as unknown as ReturnType<typeof import('node:os').networkInterfaces>;
  assert.deepEqual(tcpSettingsFromEnvironment({}, interfaces), {});
  assert.deepEqual(tcpSettingsFromEnvironment({ CONVERGE_JOB_ID: 'j1', CONVERGE_IFNAME: 'eth1', CONVERGE_TRANSPORT_SECURITY: 'integrity' }, interfaces), { job: 'j1', bind: '10.77.0.2', security: 'integrity' });
  assert.deepEqual(tcpSettingsFromEnvironment({ CONVERGE_BIND: '10.0.0.9', CONVERGE_IFNAME: 'eth1' }, interfaces), { bind: '10.0.0.9' });
  assert.throws(() => tcpSettingsFromEnvironment({ CONVERGE_IFNAME: 'eth9' }, interfaces), /^ConvergeError: CONVERGE_IFNAME=eth9: no such interface with an IPv4 address here \(there are: lo, eth1\)\.$/);
  assert.throws(() => tcpSettingsFromEnvironment({ CONVERGE_TRANSPORT_SECURITY: 'tls' }, interfaces), /CONVERGE_TRANSPORT_SECURITY=tls: expected one of encrypt, integrity, none\./);
});

test('a secret worth fewer than 64 bits gets a warning; what converge launch makes does not', () => {
  // the bits: length × the entropy of the secret's own character frequencies
  assert.equal(secretBits('aaaaaaaaaaaaaaaa'), 0);
  assert.equal(secretBits('abcdefgh'), 24); // 8 distinct characters: 3 bits each
  assert.equal(secretBits('abababababababab'), 16);
  assert.match(weakSecretWarning('job-secret-0001') ?? 'no warning', /^CONVERGE_SECRET is weak \(about 5\d bits\): whoever records a handshake can guess it offline/);
  assert.match(weakSecretWarning('a-job-secret-123') ?? 'no warning', /is weak/);
  for (let i = 0; i < 20; i++) assert.equal(weakSecretWarning(randomBytes(16).toString('hex')), null); // converge launch's
});

test('an mpi rank with a progress thread is told to start with MALLOC_ARENA_MAX=1 when it was not (any value set by the user is theirs); without the thread nothing is said', () => {
  assert.match(mallocArenaNote({}, true) ?? 'no note', /^MALLOC_ARENA_MAX is not set: .*`mpirun -x MALLOC_ARENA_MAX=1 …`\.$/);
  assert.equal(mallocArenaNote({ MALLOC_ARENA_MAX: '1' }, true), null);
  assert.equal(mallocArenaNote({ MALLOC_ARENA_MAX: '4' }, true), null);
  assert.equal(mallocArenaNote({}, false), null);
});
