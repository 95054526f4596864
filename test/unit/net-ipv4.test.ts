import { describe, expect, it } from 'vitest';
import {
  canonicalIpv4,
  compareIpv4,
  formatIpv4,
  isIpv4,
  isIpv4Cidr,
  parseCidr,
  parseIpv4,
  tryParseCidr,
} from '../../src/net/ipv4';
import {
  parseAddressCidr,
  parseBindAddress,
  parseHttpAddr,
  parsePeerAddress,
  parseRangeCidr,
} from '../../src/cli/validate';
import { CniError } from '../../src/cni/spec';
import { parseNetConf } from '../../src/cni/invocation';
import { addressOfReverseName } from '../../src/dns/names';
import { PolicyError, validatePolicy } from '../../src/policy/model';

/** Text a user might type that is not an IPv4 address. */
const JUNK = [
  '999.1.1.1',
  '256.0.0.1',
  '1.2.3',
  '1.2.3.4.5',
  '',
  'a.b.c.d',
  '1.2.3.-4',
  '01.2.3.4',
  ' 1.2.3.4',
  '1.2.3.4 ',
  '0x1.2.3.4',
  '1..2.3',
  '1.2.3.04',
  '00.1.2.3',
  '+1.2.3.4',
  '1.2.3.4\n',
  '\uff11.2.3.4',
  '1.2.3.4%eth0',
  '1.2.3.4/24',
  '1.2.3.256',
  '1.2.3.1000',
];

describe('IPv4 addresses (src/net/ipv4.ts)', () => {
  it('parses and formats', () => {
    expect(formatIpv4(parseIpv4('10.32.1.2'))).toBe('10.32.1.2');
    expect(parseIpv4('192.0.2.1')).toBe(0xc0000201);
    expect(parseIpv4('255.255.255.255')).toBe(0xffffffff);
    expect(parseIpv4('0.0.0.0')).toBe(0);
    expect(formatIpv4(-1)).toBe('255.255.255.255');
    expect(parseCidr('10.32.0.0/12')).toMatchObject({ prefix: 12, base: parseIpv4('10.32.0.0') });
    expect(parseCidr(' 10.32.0.0/12 ')).toMatchObject({ prefix: 12 });
    expect(parseCidr('10.32.0.7/12', false)).toMatchObject({
      prefix: 12,
      base: parseIpv4('10.32.0.0'),
      address: parseIpv4('10.32.0.7'),
    });
    expect(() => parseCidr('10.32.0.1/12')).toThrow(/did you mean 10.32.0.0\/12/);
    expect(() => parseIpv4('10.32.0.300')).toThrow(/invalid IPv4/);
    expect(() => parseCidr('10.32.0.0/33')).toThrow(/prefix/);
    expect(canonicalIpv4('10.0.0.1')).toBe('10.0.0.1');
    expect(['10.0.0.10', '10.0.0.9', '9.0.0.0'].sort(compareIpv4)).toEqual(['9.0.0.0', '10.0.0.9', '10.0.0.10']);
  });

  it('takes every octet value in every position and nothing with a leading zero', () => {
    for (let v = 0; v < 256; v++) {
      for (let pos = 0; pos < 4; pos++) {
        const octets = [192, 0, 2, 1];
        octets[pos] = v;
        expect(parseIpv4(octets.join('.'))).toBe(
          ((octets[0]! << 24) | (octets[1]! << 16) | (octets[2]! << 8) | octets[3]!) >>> 0,
        );
        if (v < 100) expect(isIpv4(octets.map((o, i) => (i === pos ? `0${v}` : String(o))).join('.'))).toBe(false);
      }
    }
  });

  it('refuses 999.1.1.1 and other junk in every parser', () => {
    for (const bad of JUNK) {
      expect(isIpv4(bad), bad).toBe(false);
      expect(() => parseIpv4(bad), bad).toThrow(/invalid IPv4/);
      expect(canonicalIpv4(bad), bad).toBeUndefined();
      // parseCidr ignores blanks around the whole text (" 1.2.3.4/24" is a CIDR), not inside it.
      if (bad.trimStart() === bad) {
        expect(() => parseCidr(`${bad}/24`, false), bad).toThrow();
        expect(tryParseCidr(`${bad}/24`, false), bad).toBeUndefined();
      }
      expect(isIpv4Cidr(`${bad}/24`), bad).toBe(false);
    }
    for (const bad of ['1.2.3.4/33', '1.2.3.4/', '1.2.3.4/024', '1.2.3.4/+1', '1.2.3.4', '1.2.3.4/24 ']) {
      expect(isIpv4Cidr(bad), bad).toBe(false);
    }
  });
});

describe('every place a user types an address refuses 999.1.1.1 and junk', () => {
  it('CLI flags: --ipalloc-range, --ip, --bind-address, peers, --http-addr', () => {
    for (const bad of JUNK) {
      expect(() => parseRangeCidr(`${bad}/12`), bad).toThrow(/not an IPv4 CIDR/);
      expect(() => parseAddressCidr(`${bad}/12`, '--ip'), bad).toThrow(/not an IPv4 address with a prefix/);
      expect(() => parseBindAddress(bad), bad).toThrow(/not an IP address/);
      expect(() => parseHttpAddr(`${bad}:6782`), bad).toThrow();
    }
    for (const bad of ['999.1.1.1', '999.1.1.1:6783', '256.0.0.1', '1.2.3', '1.2.3.4.5']) {
      expect(() => parsePeerAddress(bad), bad).toThrow(/not a host or host:port/);
    }
    expect(parsePeerAddress('192.0.2.2:6783')).toBe('192.0.2.2:6783');
    expect(parsePeerAddress('host2')).toBe('host2');
    expect(parseRangeCidr('10.32.0.0/12')).toBe('10.32.0.0/12');
    expect(parseAddressCidr('10.32.1.5/12', '--ip')).toBe('10.32.1.5/12');
  });

  it('CNI runtimeConfig ips', () => {
    const conf = (ip: string): Record<string, unknown> => ({
      cniVersion: '1.0.0',
      name: 'weavets',
      type: 'weavets',
      runtimeConfig: { ips: [ip] },
    });
    expect(parseNetConf(conf('10.32.7.7/12'), 'ADD').ip).toBe('10.32.7.7/12');
    for (const bad of JUNK) {
      expect(() => parseNetConf(conf(`${bad}/12`), 'ADD'), bad).toThrow(CniError);
    }
  });

  it('policy CIDRs', () => {
    const policy = (cidr: string): unknown => ({
      name: 'p',
      network: 'weavets',
      selector: { app: 'db' },
      ingress: [{ from: [{ cidr }] }],
    });
    const opts = { networks: ['weavets'], defaultNetwork: 'weavets' };
    expect(() => validatePolicy(policy('10.0.0.0/8'), opts)).not.toThrow();
    for (const bad of JUNK) expect(() => validatePolicy(policy(`${bad}/8`), opts), bad).toThrow(PolicyError);
  });

  it('DNS reverse names', () => {
    expect(addressOfReverseName('5.0.32.10.in-addr.arpa')).toBe('10.32.0.5');
    expect(addressOfReverseName('1.1.1.999.in-addr.arpa')).toBeUndefined();
    expect(addressOfReverseName('4.3.2.01.in-addr.arpa')).toBeUndefined();
    expect(addressOfReverseName('3.2.1.in-addr.arpa')).toBeUndefined();
  });
});
