import { describe, expect, it } from 'vitest';
import { ByteReader } from '../../src/net/reader';

class TestDecodeError extends Error {
  readonly code = 'TEST_DECODE';
}
const reader = (hex: string, offset = 0): ByteReader =>
  new ByteReader(Buffer.from(hex, 'hex'), offset, (reason) => new TestDecodeError(reason));

describe('ByteReader (src/net/reader.ts)', () => {
  it('reads big-endian fields in order', () => {
    const r = reader(
      'ff' + '01' + '0203' + '04050607' + '08090a0b0c0d' + '0000000000000010' + '7e210ab419c2' + '026869' + 'aabb',
      1,
    );
    expect(r.u8('a')).toBe(1);
    expect(r.u16('b')).toBe(0x0203);
    expect(r.u32('c')).toBe(0x04050607);
    expect(r.u48('d')).toBe(0x08090a0b0c0d);
    expect(r.u64('e')).toBe(16n);
    expect(r.peerName('f')).toBe(0x7e210ab419c2);
    expect(r.str8('g', true)).toBe('hi');
    expect(r.offset).toBe(31);
    expect(r.bytes(2, 'h').toString('hex')).toBe('aabb');
    expect(r.remaining()).toBe(0);
  });

  it("fails every overrun with the codec's own error, never a RangeError", () => {
    const reads: [string, (r: ByteReader) => unknown][] = [
      ['u8', (r) => r.u8('x')],
      ['u16', (r) => r.u16('x')],
      ['u32', (r) => r.u32('x')],
      ['u48', (r) => r.u48('x')],
      ['u64', (r) => r.u64('x')],
      ['peerName', (r) => r.peerName('x')],
      ['bytes', (r) => r.bytes(9, 'x')],
      ['utf8', (r) => r.utf8(9, 'x', false)],
      ['str8', (r) => r.str8('x', false)],
    ];
    for (const [name, read] of reads) {
      // str8's length byte says 0x07 but no bytes follow it.
      const r = reader('07');
      if (name !== 'str8') r.u8('skip');
      expect(() => read(r), name).toThrow(TestDecodeError);
      expect(() => read(r), name).toThrow(/x( length)? truncated at byte/);
    }
    expect(() => reader('00', 2)).toThrow(TestDecodeError);
    expect(() => reader('00', -1)).toThrow(/outside buffer/);
  });

  it('refuses invalid UTF-8 only when asked for exact text', () => {
    expect(() => reader('01ff').str8('nickname', true)).toThrow(/nickname is not valid UTF-8/);
    expect(reader('01ff').str8('nickname', false)).toBe('\ufffd');
  });
});
