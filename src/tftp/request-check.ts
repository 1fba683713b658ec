import { createRequire } from 'node:module';

// the `tftp` package's own RRQ parser: what it refuses here, it answers with an ERROR packet and never
// hands to us, so this is how those refusals get counted
const readRequest = createRequire(import.meta.url)('tftp/lib/protocol/packets/read-request.js') as (
  b: Buffer,
  rrq: boolean,
) => unknown;

const RRQ = 1;
const WRQ = 2;

/** Why the server refuses a datagram on port 69 before any transfer starts; undefined: a read request it takes. */
export function refusal(msg: Buffer): 'length' | 'opcode' | 'write' | 'request' | undefined {
  // the same bounds as the package: 2 opcode bytes, a 1-byte name, "mail", 2 NULs; at most 512 bytes
  if (msg.length < 9 || msg.length > 512) return 'length';
  const op = msg.readUInt16BE(0);
  if (op === WRQ) return 'write';
  if (op !== RRQ) return 'opcode';
  try {
    readRequest(msg, true);
  } catch {
    return 'request';
  }
  return undefined;
}
