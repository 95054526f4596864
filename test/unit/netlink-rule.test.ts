import { describe, expect, it } from 'vitest';
import { addressMessage, IFA_F_NOPREFIXROUTE } from '../../src/netlink/neigh';
import { ruleMessage } from '../../src/netlink/rule';

describe('policy routing rule message', () => {
  it('matches what `ip rule add to 10.32.0.0/12 lookup 6783 pref 6783` sends (strace)', () => {
    const m = ruleMessage({ dst: Buffer.from([10, 32, 0, 0]), dstLen: 12, table: 6783, priority: 6783 });
    expect(m.toString('hex')).toBe(
      // fib_rule_hdr: AF_INET, dst_len 12, src_len 0, tos 0, table UNSPEC (6783 > 255), res, res, FR_ACT_TO_TBL, flags 0
      '020c0000' +
        '00000001' +
        '00000000' +
        // FRA_DST 10.32.0.0, FRA_TABLE 6783, FRA_PRIORITY 6783
        '08000100' +
        '0a200000' +
        '08000f00' +
        '7f1a0000' +
        '08000600' +
        '7f1a0000',
    );
  });
  it('without a destination sends no FRA_DST, so a delete matches the rule whatever its range (ip rule del pref N lookup T)', () => {
    const m = ruleMessage({ dstLen: 0, table: 6783, priority: 6783 });
    expect(m.toString('hex')).toBe(
      '02000000' + '00000001' + '00000000' + '08000f00' + '7f1a0000' + '08000600' + '7f1a0000',
    );
    expect(() => ruleMessage({ dstLen: 8, table: 1, priority: 1 })).toThrow(RangeError);
  });
  it('puts a small table id in the header too, and refuses impossible prefixes', () => {
    const m = ruleMessage({ dst: Buffer.from([192, 168, 0, 0]), dstLen: 16, table: 200, priority: 100 });
    expect(m[4]).toBe(200);
    expect(() => ruleMessage({ dst: Buffer.from([10, 0, 0, 0]), dstLen: 33, table: 1, priority: 1 })).toThrow(
      RangeError,
    );
    expect(() => ruleMessage({ dst: Buffer.from([10, 0, 0]), dstLen: 8, table: 1, priority: 1 })).toThrow(RangeError);
  });
});

describe('address message flags', () => {
  it('carries IFA_F_NOPREFIXROUTE in an IFA_FLAGS attribute, since the header has only 8 bits', () => {
    const a = addressMessage({
      index: 3,
      ip: Buffer.from([10, 32, 0, 1]),
      prefixLen: 12,
      flags: IFA_F_NOPREFIXROUTE,
      scope: 0,
    });
    expect(a.toString('hex')).toBe(
      '020c' + '0000' + '03000000' + '08000200' + '0a200001' + '08000100' + '0a200001' + '08000800' + '00020000',
    );
  });
});
