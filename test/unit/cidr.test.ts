import { describe, expect, it } from 'vitest';
import { formatIpv4, parseCidr, parseIpv4 } from '../../src/ipam/cidr';

describe('cidr', () => {
  it('parses and formats', () => {
    expect(formatIpv4(parseIpv4('10.32.1.2'))).toBe('10.32.1.2');
    expect(parseCidr('10.32.0.0/12')).toMatchObject({ prefix: 12, base: parseIpv4('10.32.0.0') });
    expect(() => parseCidr('10.32.0.1/12')).toThrow(/did you mean 10.32.0.0\/12/);
    expect(() => parseIpv4('10.32.0.300')).toThrow(/invalid IPv4/);
    expect(() => parseCidr('10.32.0.0/33')).toThrow(/prefix/);
  });
});
