// The tcp backend's wire format: binary frames, a 24-byte header then the payload (raw float32,
// little-endian):
//   u32 magic 'CVG1' | u8 type | u8 operation | u16 part | u32 seq | u32 count | i32 root | u32 bytes
// Every collective frame carries the operation's sequence number and fingerprint (operation,
// element count, root); a frame that disagrees with what the receiver is doing is a mismatch
// error naming both ranks and both operations. A frame with a wrong magic, an unknown type or a
// length beyond the communicator's capacity is garbage: the connection is dropped with an error,
// never parsed further and never allocated for.

export const MAGIC = 0x31475643; // 'CVG1' little-endian
export const HEADER = 24;
export const SEGMENT = Number(process.env.CONVERGE_TCP_SEGMENT ?? 1 << 20);
export const enum Type {
  Data = 1,
  Abort = 2,
  Hello = 3, // rank → rank 0: [rank, size, port] + address
  Table = 4, // rank 0 → rank: every rank's address and port
  Challenge = 5,
  Auth = 6,
  AuthOk = 7,
  StatusRequest = 8,
  Status = 9, // [seq, operation, in an operation?]
  Bye = 10, // the sender finished its job and closes: not a failure, unless someone still waits for it
  Refused = 11, // acceptor → a peer that proved the secret: why it is turned away, with the acceptor's own proof
}
export const TYPES = 11;
/** A handshake frame (challenge, proof, address, the rank table) is at most this long. */
export const HANDSHAKE_BYTES = 65536;

export interface Frame {
  type: number;
  operation: number;
  part: number;
  seq: number;
  count: number;
  root: number;
  bytes: number;
}

/** The fields of the header at the start of `bytes` (the inverse of header()). */
export function readHeader(bytes: Buffer): Frame {
  return { type: bytes.readUInt8(4), operation: bytes.readUInt8(5), part: bytes.readUInt16LE(6), seq: bytes.readUInt32LE(8), count: bytes.readUInt32LE(12), root: bytes.readInt32LE(16), bytes: bytes.readUInt32LE(20) };
}

export function header(type: Type, operation: number, part: number, seq: number, count: number, root: number, bytes: number): Buffer {
  const h = Buffer.allocUnsafe(HEADER);
  h.writeUInt32LE(MAGIC, 0);
  h.writeUInt8(type, 4);
  h.writeUInt8(operation, 5);
  h.writeUInt16LE(part, 6);
  h.writeUInt32LE(seq >>> 0, 8);
  h.writeUInt32LE(count >>> 0, 12);
  h.writeInt32LE(root, 16);
  h.writeUInt32LE(bytes, 20);
  return h;
}
