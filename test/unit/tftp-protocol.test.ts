import t from 'tap';
import { ackedBlock, blockCount, oackPacket, parseReply, parseRequest, settle } from '../../src/boot/tftp/protocol.js';

const rrq = (s: string) => Buffer.from(`\0\x01${s}`, 'latin1');

t.test('requests: what is taken, and why the rest is refused', async (t) => {
  t.same(parseRequest(rrq('ipxe.efi\0octet\0BLKSIZE\x001468\0tsize\x000\0x-unknown\0y\0')), {
    file: 'ipxe.efi',
    options: new Map([
      ['blksize', '1468'],
      ['tsize', '0'],
      ['x-unknown', 'y'],
    ]),
  });
  t.same(parseRequest(rrq('f\0NetASCII\0')), { file: 'f', options: new Map() }, 'netascii is served as bytes');
  t.same(parseRequest(rrq('f\0mail\0')), { refused: 'request' });
  t.same(parseRequest(rrq('f\0octet\0blksize\0')), { refused: 'request' }, 'an option without its value');
  t.same(parseRequest(rrq('f\0octet\0blksize\x007\0')), { refused: 'option', option: 'blksize' });
  t.same(parseRequest(rrq('f\0octet\0windowsize\x000\0')), { refused: 'option', option: 'windowsize' });
  const ms = parseRequest(rrq('f\0octet\0timeout\x00500\0'));
  t.same(ms, { file: 'f', options: new Map([['timeout', '500']]) }, 'a timeout in ms is no reason to refuse');
  t.same(
    settle((ms as { options: Map<string, string> }).options, 1, { maxBlksize: 512, maxWindowsize: 1 }, 1000),
    {
      blksize: 512,
      windowsize: 1,
      timeoutMs: 1000,
    },
    '... it is left out of the OACK',
  );
  t.same(parseRequest(rrq('f\0octet')), { refused: 'request' }, 'no final NUL');
  t.same(parseRequest(Buffer.from('\0\x02f\0octet\0', 'latin1')), { refused: 'write' });
  t.same(parseRequest(Buffer.from('\0\x09f\0octet\0', 'latin1')), { refused: 'opcode' });
  t.same(parseRequest(rrq(`${'a'.repeat(600)}\0octet\0`)), { refused: 'length' });
});

t.test('options: clamped to the limits, echoed in the OACK; none means plain RFC 1350', async (t) => {
  const limits = { maxBlksize: 1468, maxWindowsize: 64 };
  const s = settle(
    new Map([
      ['blksize', '65464'],
      ['windowsize', '128'],
      ['timeout', '3'],
      ['tsize', '0'],
    ]),
    12345,
    limits,
    1000,
  );
  t.same(
    [s.blksize, s.windowsize, s.timeoutMs, [...(s.oack ?? [])]],
    [
      1468,
      64,
      3000,
      [
        ['blksize', '1468'],
        ['windowsize', '64'],
        ['timeout', '3'],
        ['tsize', '12345'],
      ],
    ],
  );
  t.same(settle(new Map([['x', '1']]), 1, limits, 1000), { blksize: 512, windowsize: 1, timeoutMs: 1000 });
  t.same(oackPacket(new Map([['tsize', '7']])), Buffer.from('\0\x06tsize\x007\0', 'latin1'));
});

t.test('blocks and ACKs: the empty last block, rollover, stale ACKs ignored', async (t) => {
  t.equal(blockCount(1024, 512), 3, 'a size that is a multiple ends with an empty block');
  t.equal(blockCount(1000, 512), 2);
  t.equal(blockCount(0, 512), 1);
  t.equal(ackedBlock(5, 0, 8), 5);
  t.equal(ackedBlock(9, 0, 8), undefined, 'not sent yet');
  t.equal(ackedBlock(3, 4, 8), undefined, 'an older ACK');
  t.equal(ackedBlock(4, 4, 8), undefined, 'a duplicate');
  t.equal(ackedBlock(2, 65530, 65540), 65538, 'after the wrap, 2 is block 65538');
  t.equal(ackedBlock(0, 65530, 65540), 65536, 'block 65536 goes out as 0');
  t.same(parseReply(Buffer.from([0, 4, 1, 2])), { kind: 'ack', block: 258 });
  t.same(parseReply(Buffer.from('\0\x05\0\x08abort\0', 'latin1')), { kind: 'error', message: 'abort' });
  t.same(parseReply(Buffer.from([0, 3, 0, 1, 9])), { kind: 'junk' });
});
