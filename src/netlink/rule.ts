/**
 * Encoder for policy routing rules (RTM_NEWRULE / RTM_DELRULE): struct fib_rule_hdr plus
 * FRA_* attributes, the message `ip rule add to CIDR lookup TABLE pref N` sends. Pure,
 * vector-tested in test/unit/netlink-rule.test.ts; Netlink.addRule/delRule send it.
 *
 * Kernel reference: include/uapi/linux/fib_rules.h.
 */
import { attr, encode, type Attr } from './linkinfo';

export const RTM_NEWRULE = 32;
export const RTM_DELRULE = 33;
/** FRA_* (fib_rules.h). */
export const FRA = { DST: 1, PRIORITY: 6, TABLE: 15 } as const;
/** FR_ACT_TO_TBL: look the destination up in the rule's table. */
export const FR_ACT_TO_TBL = 1;

export interface RuleSpec {
  /**
   * The destination the rule matches, as bytes (4 for IPv4) and a prefix length. Absent
   * (with dstLen 0): an IPv4 rule with no FRA_DST, which a delete matches whatever its
   * destination, as `ip rule del pref N lookup T` does.
   */
  dst?: Buffer;
  dstLen: number;
  /** Routing table id; above 255 it only fits the FRA_TABLE attribute. */
  table: number;
  /** Rule priority (`pref`): lower is consulted first; local is 0, main 32766. */
  priority: number;
}

/** struct fib_rule_hdr { u8 family, dst_len, src_len, tos, table, res1, res2, action; u32 flags } + FRA_DST, FRA_PRIORITY, FRA_TABLE. */
export function ruleMessage(r: RuleSpec): Buffer {
  const dstBytes = r.dst?.length ?? 4;
  if (dstBytes !== 4 && dstBytes !== 16) throw new RangeError(`rule dst must be 4 or 16 bytes, got ${dstBytes}`);
  if (r.dstLen < 0 || r.dstLen > (r.dst === undefined ? 0 : dstBytes * 8))
    throw new RangeError(`rule dst prefix /${r.dstLen} out of range`);
  const h = Buffer.alloc(12);
  h.writeUInt8(dstBytes === 4 ? 2 : 10, 0);
  h.writeUInt8(r.dstLen, 1);
  // The header's table byte is 0 ("see FRA_TABLE") when the id does not fit, as iproute2 does.
  h.writeUInt8(r.table < 256 ? r.table : 0, 4);
  h.writeUInt8(FR_ACT_TO_TBL, 7);
  const attrs: Attr[] = [
    ...(r.dst === undefined ? [] : [attr.bytes(FRA.DST, r.dst)]),
    attr.u32(FRA.TABLE, r.table),
    attr.u32(FRA.PRIORITY, r.priority),
  ];
  return Buffer.concat([h, encode(attrs)]);
}
