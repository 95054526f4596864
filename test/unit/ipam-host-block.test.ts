import { describe, expect, it } from 'vitest';
import { formatIpv4, parseCidr, parseIpv4 } from '../../src/ipam/cidr';
import { HostBlockAllocator, hostBlockFor } from '../../src/ipam/host-block';
import { WeavetsError } from '../../src/errors';

describe('cidr', () => {
  it('parses and formats', () => {
    expect(formatIpv4(parseIpv4('10.32.1.2'))).toBe('10.32.1.2');
    expect(parseCidr('10.32.0.0/12')).toMatchObject({ prefix: 12, base: parseIpv4('10.32.0.0') });
    expect(() => parseCidr('10.32.0.1/12')).toThrow(/did you mean 10.32.0.0\/12/);
    expect(() => parseIpv4('10.32.0.300')).toThrow(/invalid IPv4/);
    expect(() => parseCidr('10.32.0.0/33')).toThrow(/prefix/);
  });
});

describe('per-host block allocator', () => {
  const range = parseCidr('10.32.0.0/12');

  it('picks a stable /24 inside the range from the peer name', () => {
    const b = hostBlockFor(range, 0x021122334455);
    expect(b.prefix).toBe(24);
    expect(hostBlockFor(range, 0x021122334455)).toEqual(b);
    expect(b.base >= range.base && b.base < range.base + 2 ** 20).toBe(true);
  });

  it('hands out unique addresses, idempotent per owner, and reuses released ones', () => {
    const block = parseCidr('10.32.7.0/24');
    const a = new HostBlockAllocator(range, block);
    const seen = new Set<number>();
    for (let i = 0; i < 254; i++) {
      const ip = a.allocate(`c${i}`);
      expect(seen.has(ip)).toBe(false);
      seen.add(ip);
      expect(a.allocate(`c${i}`)).toBe(ip);
    }
    expect(seen.has(block.base)).toBe(false);
    expect(seen.has(block.base + 255)).toBe(false);
    expect(() => a.allocate('one-too-many')).toThrow(WeavetsError);
    const freed = a.release('c10')!;
    expect(a.allocate('again')).toBe(freed);
  });

  it('gives a requested address once and refuses a second holder', () => {
    const a = new HostBlockAllocator(range, parseCidr('10.32.7.0/24'));
    const want = parseIpv4('10.33.0.5');
    expect(a.allocate('x', want)).toBe(want);
    expect(() => a.allocate('y', want)).toThrow(/already in use by x/);
    expect(() => a.allocate('z', parseIpv4('10.48.0.1'))).toThrow(/outside the range/);
    expect(() => a.allocate('z', parseIpv4('10.32.0.0'))).toThrow(/network or broadcast/);
  });
});
