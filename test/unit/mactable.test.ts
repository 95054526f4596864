import { describe, expect, it } from 'vitest';
import { formatMac, isMulticastMac, readMac, writeMac } from '../../src/net/mac';
import { MacTable } from '../../src/net/mactable';

const M1 = 0x02_42_ac_11_00_02;
const M2 = 0x02_42_ac_11_00_03;
const NET = 7;
const P1 = 0x7e210ab419c2;
const P2 = 0x7e210ab419c3;

describe('MAC helpers', () => {
  it('reads and writes six bytes big-endian', () => {
    const buf = Buffer.from('00ffffffffffff02', 'hex');
    expect(readMac(buf, 1)).toBe(0xffff_ffff_ffff);
    expect(readMac(Buffer.from('0242ac110002', 'hex'), 0)).toBe(M1);
    expect(readMac(Buffer.from('80000000ff01', 'hex'), 0)).toBe(0x80_00_00_00_ff_01);
    expect(() => readMac(buf, 3)).toThrow(RangeError);
    const out = Buffer.alloc(8);
    writeMac(out, 1, 0xfe_dc_ba_98_76_54);
    expect(out.toString('hex')).toBe('00fedcba98765400');
    for (const m of [0, 1, M1, 0xffff_ffff_ffff, 0x01_00_5e_00_00_fb]) {
      writeMac(out, 0, m);
      expect(readMac(out, 0)).toBe(m);
    }
  });

  it('formats and classifies', () => {
    expect(formatMac(M1)).toBe('02:42:ac:11:00:02');
    expect(formatMac(1)).toBe('00:00:00:00:00:01');
    expect(isMulticastMac(0xffff_ffff_ffff)).toBe(true); // broadcast
    expect(isMulticastMac(0x01_00_5e_00_00_fb)).toBe(true); // IPv4 multicast
    expect(isMulticastMac(0x33_33_00_00_00_01)).toBe(true); // IPv6 multicast
    expect(isMulticastMac(M1)).toBe(false);
    expect(isMulticastMac(0xfe_ff_ff_ff_ff_ff)).toBe(false);
  });
});

describe('MacTable', () => {
  it('learns, looks up, refreshes and moves', () => {
    const t = new MacTable({ maxAgeMs: 1000 });
    expect(t.lookup(NET, M1, 0)).toBeUndefined();
    expect(t.learn(NET, M1, P1, 0)).toBe(true);
    expect(t.learn(NET, M1, P1, 10)).toBe(false); // refresh
    expect(t.lookup(NET, M1, 20)).toBe(P1);
    expect(t.lookup(NET + 1, M1, 20)).toBeUndefined(); // networks are separate
    expect(t.learn(NET, M1, P2, 30)).toBe(true); // moved
    expect(t.lookup(NET, M1, 30)).toBe(P2);
    expect(t.size()).toBe(1);
    expect(t.stats).toMatchObject({ learned: 1, moved: 1 });
  });

  it('keeps the same MAC apart in different networks', () => {
    const t = new MacTable({ maxAgeMs: 1000 });
    t.learn(1, M1, P1, 0);
    t.learn(2, M1, P2, 0);
    expect(t.lookup(1, M1, 0)).toBe(P1);
    expect(t.lookup(2, M1, 0)).toBe(P2);
    expect(t.size()).toBe(2);
  });

  it('ignores multicast sources', () => {
    const t = new MacTable({ maxAgeMs: 1000 });
    expect(t.learn(NET, 0xffff_ffff_ffff, P1, 0)).toBe(false);
    expect(t.size()).toBe(0);
  });

  it('ages entries out, and a refresh keeps them', () => {
    const t = new MacTable({ maxAgeMs: 100 });
    t.learn(NET, M1, P1, 0);
    t.learn(NET, M2, P1, 50);
    expect(t.lookup(NET, M1, 100)).toBe(P1);
    expect(t.lookup(NET, M1, 101)).toBeUndefined(); // expired even before expire() runs
    expect(t.expire(101)).toBe(1);
    expect(t.size()).toBe(1);
    t.learn(NET, M2, P1, 140); // refresh
    expect(t.expire(200)).toBe(0);
    expect(t.lookup(NET, M2, 200)).toBe(P1);
    expect(t.expire(241)).toBe(1);
    expect(t.size()).toBe(0);
    expect(t.entries()).toEqual([]);
    expect(t.stats.expired).toBe(2);
  });

  it('forgets a peer', () => {
    const t = new MacTable({ maxAgeMs: 1000 });
    t.learn(NET, M1, P1, 0);
    t.learn(NET, M2, P2, 1);
    t.learn(NET + 1, M2, P1, 2);
    expect(t.forgetPeer(P1)).toBe(2);
    expect(t.lookup(NET, M1, 3)).toBeUndefined();
    expect(t.lookup(NET, M2, 3)).toBe(P2);
    expect(t.entries(5)).toEqual([{ networkId: NET, mac: M2, peer: P2, ageMs: 4 }]);
    expect(t.forgetPeer(P1)).toBe(0);
  });

  it('lists entries oldest first with their age', () => {
    const t = new MacTable({ maxAgeMs: 1000 });
    t.learn(NET, M1, P1, 10);
    t.learn(NET, M2, P2, 20);
    t.learn(NET, M1, P1, 30); // M1 is now the newest
    expect(t.entries()).toEqual([
      { networkId: NET, mac: M2, peer: P2, ageMs: 10 },
      { networkId: NET, mac: M1, peer: P1, ageMs: 0 },
    ]);
  });

  it('evicts the oldest entry when full, and counts it', () => {
    const t = new MacTable({ maxAgeMs: 10_000, maxEntries: 3 });
    for (let i = 0; i < 3; i++) t.learn(NET, M1 + i * 2, P1, i);
    t.learn(NET, M1, P1, 5); // refresh: M1 is no longer the oldest
    expect(t.learn(9, M2, P2, 6)).toBe(true);
    expect(t.size()).toBe(3);
    expect(t.stats.evicted).toBe(1);
    expect(t.lookup(NET, M1 + 2, 6)).toBeUndefined(); // the oldest went
    expect(t.lookup(NET, M1, 6)).toBe(P1);
    expect(t.lookup(9, M2, 6)).toBe(P2);
  });

  it('evicting the last MAC of a network does not lose the new one', () => {
    const t = new MacTable({ maxAgeMs: 10_000, maxEntries: 1 });
    t.learn(NET, M1, P1, 0);
    t.learn(NET, M2, P2, 1);
    expect(t.lookup(NET, M2, 1)).toBe(P2);
    expect(t.size()).toBe(1);
    t.learn(NET + 1, M1, P1, 2);
    expect(t.entries().map((e) => e.networkId)).toEqual([NET + 1]);
  });

  it('stays consistent under random use', () => {
    let seed = 12345;
    const rnd = (): number => {
      seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
      return seed / 4294967296;
    };
    const t = new MacTable({ maxAgeMs: 50, maxEntries: 40 });
    let now = 0;
    for (let i = 0; i < 20_000; i++) {
      now += Math.floor(rnd() * 3);
      const net = Math.floor(rnd() * 3);
      const mac = 2 * (1 + Math.floor(rnd() * 30)); // unicast
      const peer = 1 + Math.floor(rnd() * 4);
      const op = rnd();
      if (op < 0.6) {
        t.learn(net, mac, peer, now);
      } else if (op < 0.9) {
        t.lookup(net, mac, now);
      } else if (op < 0.98) {
        t.expire(now);
      } else {
        t.forgetPeer(peer);
      }
      // Invariants: bounded, size matches the listing, listing ordered by age.
      expect(t.size()).toBeLessThanOrEqual(40);
      if (i % 97 === 0) {
        const list = t.entries(now);
        expect(list).toHaveLength(t.size());
        for (let k = 1; k < list.length; k++) expect(list[k - 1]!.ageMs).toBeGreaterThanOrEqual(list[k]!.ageMs);
        for (const e of list) expect(t.lookup(e.networkId, e.mac, now - e.ageMs)).toBe(e.peer);
      }
    }
  });

  it('validates options', () => {
    expect(() => new MacTable({ maxAgeMs: 0 })).toThrow(RangeError);
    expect(() => new MacTable({ maxAgeMs: 1, maxEntries: 0 })).toThrow(RangeError);
  });
});
