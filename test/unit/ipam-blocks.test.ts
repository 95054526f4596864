import { describe, expect, it } from 'vitest';
import { parseCidr, parseIpv4 } from '../../src/net/ipv4';
import {
  addrKey,
  addrPrefixOfBlock,
  blockAt,
  blockCount,
  blockIndexOf,
  checkBlockPrefix,
  firstFreeInBlock,
  isReserved,
  hashedBlockIndex,
  keyRangeOf,
  lowestFreeBlock,
  overlaps,
  parseAddrKey,
  parseLegacyKey,
  usableCount,
  BLOCKS_PREFIX,
} from '../../src/ipam/blocks';

const range = parseCidr('10.32.0.0/12');

describe('IPAM block arithmetic', () => {
  it('cuts the range into blocks', () => {
    expect(blockCount(range, 26)).toBe(16384);
    expect(blockCount(range, 24)).toBe(4096);
    expect(blockAt(range, 26, 0)).toEqual({ base: parseIpv4('10.32.0.0'), prefix: 26 });
    expect(blockAt(range, 26, 5)).toEqual({ base: parseIpv4('10.32.1.64'), prefix: 26 });
    expect(blockIndexOf(range, 26, parseIpv4('10.32.1.100'))).toBe(5);
    expect(blockIndexOf(range, 26, parseIpv4('10.47.255.255'))).toBe(16383);
  });

  it('reserves only the range network and broadcast addresses', () => {
    expect(isReserved(range, parseIpv4('10.32.0.0'))).toBe(true);
    expect(isReserved(range, parseIpv4('10.47.255.255'))).toBe(true);
    expect(isReserved(range, parseIpv4('10.32.0.64'))).toBe(false);
    expect(usableCount(range, blockAt(range, 26, 0))).toBe(63);
    expect(usableCount(range, blockAt(range, 26, 1))).toBe(64);
    expect(usableCount(range, blockAt(range, 26, 16383))).toBe(63);
  });

  it('finds the lowest free block and the first free address from a hint', () => {
    expect(lowestFreeBlock(range, 26, new Set([0, 1, 3]))).toBe(2);
    const small = parseCidr('10.0.0.0/30');
    expect(lowestFreeBlock(small, 30, new Set([0]))).toBeUndefined();
    const b = blockAt(range, 26, 1);
    const busy = new Set([b.base, b.base + 1]);
    expect(firstFreeInBlock(range, b, (ip) => busy.has(ip))).toBe(b.base + 2);
    expect(firstFreeInBlock(range, b, (ip) => busy.has(ip), 63)).toBe(b.base + 63);
    expect(firstFreeInBlock(range, b, () => true)).toBeUndefined();
    // Block 0: the range's network address is skipped.
    expect(firstFreeInBlock(range, blockAt(range, 26, 0), () => false)).toBe(range.base + 1);
  });

  it('spreads hosts on separate embedded stores by a hash of the peer name', () => {
    const a = hashedBlockIndex(range, 26, '02:00:00:00:00:01');
    expect(hashedBlockIndex(range, 26, '02:00:00:00:00:01')).toBe(a);
    expect(hashedBlockIndex(range, 26, '02:00:00:00:00:02')).not.toBe(a);
    expect(a).toBeLessThan(16384);
    expect(lowestFreeBlock(range, 26, new Set([a]), a)).toBe(a + 1 === 16384 ? 0 : a + 1);
    expect(lowestFreeBlock(range, 26, new Set(), 16383)).toBe(16383);
  });

  it('validates the block size against the range', () => {
    expect(checkBlockPrefix(range, 26)).toBeUndefined();
    expect(checkBlockPrefix(range, 8)).toMatch(/does not fit/);
    expect(checkBlockPrefix(range, 31)).toMatch(/does not fit/);
  });

  it('lays keys out in address order with block prefixes, one key per address whatever the network', () => {
    expect(addrKey(parseIpv4('10.32.1.65'))).toBe('ipam/addrs/0a200141');
    expect(parseAddrKey('ipam/addrs/0a200141')).toEqual({ ip: parseIpv4('10.32.1.65') });
    expect(parseAddrKey('ipam/addrs/zz')).toBeUndefined();
    expect(parseAddrKey('ipam/addrs/weavets/0a200141')).toBeUndefined(); // the legacy layout
    expect(parseLegacyKey('ipam/addrs/weavets/0a200141')).toEqual({
      kind: 'addrs',
      network: 'weavets',
      ip: parseIpv4('10.32.1.65'),
    });
    expect(parseLegacyKey('ipam/blocks/red/0a200140')).toEqual({
      kind: 'blocks',
      network: 'red',
      ip: parseIpv4('10.32.1.64'),
    });
    expect(parseLegacyKey('ipam/addrs/0a200141')).toBeUndefined();
    expect(addrPrefixOfBlock(blockAt(range, 26, 5))).toBe('ipam/addrs/0a2001');
    expect(addrKey(parseIpv4('10.32.1.100')).startsWith(addrPrefixOfBlock(blockAt(range, 26, 5)))).toBe(true);
  });

  it('tells overlapping CIDRs apart', () => {
    expect(overlaps(parseCidr('10.40.7.0/24'), parseCidr('10.40.7.128/25'))).toBe(true);
    expect(overlaps(parseCidr('10.32.0.0/12'), parseCidr('10.40.7.0/24'))).toBe(true);
    expect(overlaps(parseCidr('10.40.7.0/24'), parseCidr('10.40.8.0/24'))).toBe(false);
    expect(overlaps(parseCidr('10.40.7.0/25'), parseCidr('10.40.7.128/25'))).toBe(false);
  });

  it('keyRangeOf: one key range holding exactly the keys of a subnet', () => {
    const r = keyRangeOf(BLOCKS_PREFIX, parseCidr('10.32.2.0/23'));
    expect(r).toEqual({ from: 'ipam/blocks/0a200200', to: 'ipam/blocks/0a200400' });
    const inside = (ip: string): boolean => {
      const k = addrKey(parseIpv4(ip)).replace('ipam/addrs/', BLOCKS_PREFIX);
      return k >= r.from && k < r.to;
    };
    expect(['10.32.2.0', '10.32.2.255', '10.32.3.192'].map(inside)).toEqual([true, true, true]);
    expect(['10.32.1.255', '10.32.4.0', '10.33.2.0'].map(inside)).toEqual([false, false, false]);
    // The last subnet of the address space ends past every key of the prefix.
    expect(keyRangeOf(BLOCKS_PREFIX, parseCidr('255.255.255.0/24'))).toEqual({
      from: 'ipam/blocks/ffffff00',
      to: 'ipam/blocks0',
    });
  });
});
