// Every error a user can meet is made here, by a small factory that says what went wrong,
// where, and what to do. The CLI prints `error.message` as one line and exits non-zero.

export class ConvergeError extends Error {
  override name = 'ConvergeError';
  constructor(message: string, readonly code: string) {
    super(message);
  }
}

export class CommunicationError extends ConvergeError {
  override name = 'CommunicationError';
}

/** The command line itself is wrong (an unknown command or flag, a missing value or required option): exit code 2. */
export function usageError(message: string): ConvergeError {
  return new ConvergeError(message, 'USAGE');
}

/** A required option left out: a usage error that says what it accepts. */
export function missingOption(option: string, accepted: string): ConvergeError {
  return usageError(`${option} is required: give ${accepted}.`);
}

export function badOption(option: string, value: unknown, expected: string): ConvergeError {
  return new ConvergeError(`${option}: got ${JSON.stringify(value)}; expected ${expected}.`, 'BAD_OPTION');
}

export function unknownName(kind: string, name: string, known: readonly string[]): ConvergeError {
  return new ConvergeError(`unknown ${kind} '${name}'; choose one of: ${known.join(', ')}.`, 'UNKNOWN_NAME');
}

export function duplicateName(kind: string, name: string): ConvergeError {
  return new ConvergeError(`${kind} '${name}' is already registered; register each name once.`, 'DUPLICATE_NAME');
}

export function missingData(what: string, path: string, hint: string): ConvergeError {
  return new ConvergeError(`${what} not found at ${path}; ${hint}`, 'MISSING_DATA');
}

export function corruptFile(path: string, problem: string, hint: string): ConvergeError {
  return new ConvergeError(`${path}: ${problem}; ${hint}`, 'CORRUPT_FILE');
}

export function shapeMismatch(where: string, expected: string, got: string): ConvergeError {
  return new ConvergeError(`${where}: expected ${expected}, got ${got}.`, 'SHAPE_MISMATCH');
}

export function checkpointMismatch(path: string, problem: string): ConvergeError {
  return new ConvergeError(
    `checkpoint ${path} ${problem}; resume with the same --model/--hidden it was saved with, or start without --resume.`,
    'CHECKPOINT_MISMATCH',
  );
}

export function divergence(step: number, epoch: number, loss: number, lr: number): ConvergeError {
  return new ConvergeError(
    `loss became ${loss} at step ${step} (epoch ${epoch + 1}) with learning rate ${lr}; training stopped — try a lower --lr (e.g. ${+(lr / 4).toPrecision(2)}) or a warm-up (--warmup-epochs 1).`,
    'DIVERGED',
  );
}

export function commTimeout(rank: number, operation: string, seconds: number, waitingFor: string): CommunicationError {
  return new CommunicationError(
    `rank ${rank}: ${operation} timed out after ${seconds} s waiting for ${waitingFor}; a rank is stalled or dead — check its output, or raise --timeout.`,
    'COMM_TIMEOUT',
  );
}

/** `reason` is the failed rank's own message, which names it and what it was doing. */
export function peerFailed(rank: number, operation: string, reason: string): CommunicationError {
  return new CommunicationError(`rank ${rank}: ${operation} aborted: ${reason}`, 'PEER_FAILED');
}

export function collectiveMismatch(rank: number, seq: number, what: string): CommunicationError {
  return new CommunicationError(`rank ${rank}: collective #${seq} mismatch: ${what}; every rank must call the same collectives in the same order.`, 'COLLECTIVE_MISMATCH');
}

export function messageSizeMismatch(rank: number, expected: number, got: number, from: number): CommunicationError {
  return new CommunicationError(`rank ${rank}: recv of ${expected} floats got a message of ${got} floats from rank ${from}; sender and receiver must agree on message sizes.`, 'MESSAGE_MISMATCH');
}

/** What a failed rank tells the others: a communication error already names the rank; anything else is the rank's own failure. */
export const rankFailure = (rank: number, text: string) => (text.startsWith(`rank ${rank}:`) ? text : `rank ${rank} failed: ${text}`);

/** A destination or source (not a root): it may not be the rank itself. */
export const isPointToPoint = (what: PeerRole) => what === 'send to' || what === 'recv from';

/**
 * A root, destination or source that is no rank of the group (for send and recv, nor this rank
 * itself): the caller's bug, refused before anything moves, on every backend alike.
 */
export type PeerRole = 'broadcast root' | 'gather root' | 'send to' | 'recv from';

export function notAPeer(rank: number, size: number, what: PeerRole, peer: number): CommunicationError {
  if (what === 'recv from' && peer === -1) return new CommunicationError(`rank ${rank}: recv from any rank (-1): a group of ${size} has no other rank to send.`, 'BAD_ARGUMENT');
  const p2p = isPointToPoint(what);
  return new CommunicationError(`rank ${rank}: ${what} ${peer}: no such ${p2p ? 'peer' : 'rank'} in a group of ${size} (ranks 0 to ${size - 1}${p2p ? `, not ${rank} itself` : ''}).`, 'BAD_ARGUMENT');
}

/** allgather (everywhere) and gather (at the root) need recv of size × send floats. */
export function receiveBufferSize(rank: number, operation: 'allgather' | 'gather at the root', expected: number, got: number | string): CommunicationError {
  return new CommunicationError(`rank ${rank}: ${operation} needs recv of ${expected} floats (size × send), got ${got}.`, 'BAD_ARGUMENT');
}

export function capacityExceeded(operation: string, elements: number, capacity: number): CommunicationError {
  return new CommunicationError(
    `${operation} of ${elements} elements exceeds the communicator's capacity of ${capacity}; create the group with a larger capacity.`,
    'CAPACITY',
  );
}
