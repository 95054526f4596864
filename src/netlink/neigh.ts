/**
 * Encoders for the rtnetlink messages the `netlink` package does not type for us: VXLAN
 * link data (IFLA_VXLAN_*), bridge port settings (IFLA_BRPORT_*), neighbour and FDB
 * entries (struct ndmsg + NDA_*), and addresses with flags (struct ifaddrmsg + IFA_*).
 * Pure functions over Buffer, vector-tested in test/unit/netlink-neigh.test.ts; the
 * Netlink class sends them.
 *
 * Kernel references: include/uapi/linux/if_link.h, neighbour.h, if_addr.h.
 */
import { attr, encode, ifinfomsg, IFLA, IFLA_INFO, type Attr } from './linkinfo';

export const AF_BRIDGE = 7;

/** IFLA_VXLAN_* (if_link.h). */
export const IFLA_VXLAN = { ID: 1, LOCAL: 4, TTL: 5, LEARNING: 7, AGEING: 8, PORT: 15, UDP_CSUM: 18 } as const;
/** IFLA_BR_* (if_link.h): the bridge options we set. */
export const IFLA_BR = { NF_CALL_IPTABLES: 36 } as const;
/** IFLA_BRPORT_* (if_link.h): the flags we set on bridge ports. */
export const IFLA_BRPORT = { LEARNING: 8, FLUSH: 24, ISOLATED: 33 } as const;
/** NDA_* (neighbour.h). */
export const NDA = { DST: 1, LLADDR: 2 } as const;
/** Neighbour states and flags (neighbour.h). */
export const NUD_NOARP = 0x40;
export const NUD_PERMANENT = 0x80;
export const NTF_SELF = 0x02;
export const NTF_MASTER = 0x04;
/** IFA_* and IFA_F_* (if_addr.h). */
export const IFA = { ADDRESS: 1, LOCAL: 2, FLAGS: 8 } as const;
export const IFA_F_NODAD = 0x02;
/** No prefix route for the address's subnet in the main table (IPv4 since Linux 4.4). */
export const IFA_F_NOPREFIXROUTE = 0x200;
export const RT_SCOPE_LINK = 253;
export const RT_SCOPE_UNIVERSE = 0;

export interface VxlanSpec {
  /** VNI, 24 bits. */
  vni: number;
  /** Destination UDP port (the kernel listens on it too). */
  port: number;
  /** Let the kernel learn MAC -> remote from received packets. */
  learning: boolean;
  /** Source address of outgoing packets (4 bytes); absent: routing decides. */
  local?: Buffer;
  /** Outer TTL; 0 or absent: inherit (the kernel default, 64 in practice). */
  ttl?: number;
}

/** IFLA_INFO_DATA attributes of a VXLAN link. */
export function vxlanData(spec: VxlanSpec): Attr[] {
  if (!Number.isInteger(spec.vni) || spec.vni < 0 || spec.vni > 0xffffff)
    throw new RangeError(`vxlan: VNI ${spec.vni} is not 24 bits`);
  if (!Number.isInteger(spec.port) || spec.port < 1 || spec.port > 0xffff)
    throw new RangeError(`vxlan: bad port ${spec.port}`);
  const out: Attr[] = [
    attr.u32(IFLA_VXLAN.ID, spec.vni),
    attr.be16(IFLA_VXLAN.PORT, spec.port),
    attr.u8(IFLA_VXLAN.LEARNING, spec.learning ? 1 : 0),
  ];
  if (spec.local !== undefined) {
    if (spec.local.length !== 4) throw new RangeError('vxlan: local must be an IPv4 address');
    out.push(attr.bytes(IFLA_VXLAN.LOCAL, spec.local));
  }
  if (spec.ttl !== undefined) out.push(attr.u8(IFLA_VXLAN.TTL, spec.ttl));
  return out;
}

export interface BridgePortSettings {
  /** Isolated ports never forward to each other, only to non-isolated ports. */
  isolated?: boolean;
  learning?: boolean;
  /** Flush the port's dynamically learned bridge FDB entries. */
  flush?: boolean;
}

/**
 * RTM_NEWLINK body changing an existing bridge port's settings (what `ip link set dev X
 * type bridge_slave ...` sends): ifinfomsg + IFLA_LINKINFO { SLAVE_KIND "bridge",
 * SLAVE_DATA { IFLA_BRPORT_* } }.
 */
export function bridgePortMessage(index: number, s: BridgePortSettings): Buffer {
  const data: Attr[] = [];
  if (s.isolated !== undefined) data.push(attr.u8(IFLA_BRPORT.ISOLATED, s.isolated ? 1 : 0));
  if (s.learning !== undefined) data.push(attr.u8(IFLA_BRPORT.LEARNING, s.learning ? 1 : 0));
  if (s.flush) data.push(attr.flag(IFLA_BRPORT.FLUSH));
  const attrs = [
    attr.nest(IFLA.LINKINFO, [attr.str(IFLA_INFO.SLAVE_KIND, 'bridge'), attr.nest(IFLA_INFO.SLAVE_DATA, data)]),
  ];
  return Buffer.concat([ifinfomsg({ index }), encode(attrs)]);
}

export interface BridgeSettings {
  /** Pass the bridge's IPv4 frames through the IP hooks (br_netfilter): `nf_call_iptables`. */
  nfCallIptables: boolean;
}

/**
 * RTM_NEWLINK body changing an existing bridge's options (what `ip link set dev X type
 * bridge nf_call_iptables 1` sends): ifinfomsg + IFLA_LINKINFO { KIND "bridge", DATA
 * { IFLA_BR_NF_CALL_IPTABLES u8 } }.
 */
export function bridgeMessage(index: number, s: BridgeSettings): Buffer {
  const data: Attr[] = [attr.u8(IFLA_BR.NF_CALL_IPTABLES, s.nfCallIptables ? 1 : 0)];
  const attrs = [attr.nest(IFLA.LINKINFO, [attr.str(IFLA_INFO.KIND, 'bridge'), attr.nest(IFLA_INFO.DATA, data)])];
  return Buffer.concat([ifinfomsg({ index }), encode(attrs)]);
}

/** struct ndmsg: family u8, pad u8, pad u16, ifindex s32, state u16, flags u8, type u8 (12 bytes, host order). */
export function ndmsg(m: { family: number; index: number; state: number; flags: number }): Buffer {
  const b = Buffer.alloc(12);
  b.writeUInt8(m.family, 0);
  // ifindex and state are host-order; every machine this runs on is little-endian, but
  // write through the same helpers as the attributes to stay honest.
  const v = encode([attr.s32(0, m.index), attr.u16(0, m.state)]);
  v.copy(b, 4, 4, 8);
  v.copy(b, 8, 12, 14);
  b.writeUInt8(m.flags, 10);
  b.writeUInt8(0, 11);
  return b;
}

export interface NeighbourEntry {
  /** ifindex of the device the entry belongs to. */
  index: number;
  /** Link-layer address, 6 bytes. */
  mac: Buffer;
  /** Network address (4 or 16 bytes): the VTEP for an FDB entry, the neighbour's IP otherwise. */
  dst: Buffer;
}

/**
 * RTM_NEWNEIGH/RTM_DELNEIGH body for a VXLAN FDB entry (`bridge fdb append MAC dev X dst
 * IP self permanent`): AF_BRIDGE, NTF_SELF (the device's own table, not the bridge's).
 */
export function fdbMessage(e: NeighbourEntry): Buffer {
  if (e.mac.length !== 6) throw new RangeError('fdb: MAC must be 6 bytes');
  return Buffer.concat([
    ndmsg({ family: AF_BRIDGE, index: e.index, state: NUD_PERMANENT | NUD_NOARP, flags: NTF_SELF }),
    encode([attr.bytes(NDA.LLADDR, e.mac), attr.bytes(NDA.DST, e.dst)]),
  ]);
}

/** RTM_NEWNEIGH/RTM_DELNEIGH body for a permanent neighbour (ARP/NDP) entry. */
export function neighbourMessage(e: NeighbourEntry): Buffer {
  if (e.mac.length !== 6) throw new RangeError('neighbour: MAC must be 6 bytes');
  const family = e.dst.length === 4 ? 2 : 10;
  return Buffer.concat([
    ndmsg({ family, index: e.index, state: NUD_PERMANENT, flags: 0 }),
    encode([attr.bytes(NDA.DST, e.dst), attr.bytes(NDA.LLADDR, e.mac)]),
  ]);
}

/**
 * struct ifaddrmsg + IFA_LOCAL/IFA_ADDRESS, with flags (e.g. IFA_F_NODAD). The header holds
 * only 8 bits of flags; wider ones (IFA_F_NOPREFIXROUTE) also go in an IFA_FLAGS u32.
 */
export function addressMessage(a: {
  index: number;
  ip: Buffer;
  prefixLen: number;
  flags: number;
  scope: number;
}): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt8(a.ip.length === 4 ? 2 : 10, 0);
  h.writeUInt8(a.prefixLen, 1);
  h.writeUInt8(a.flags & 0xff, 2);
  h.writeUInt8(a.scope, 3);
  encode([attr.u32(0, a.index)]).copy(h, 4, 4, 8);
  const attrs = [attr.bytes(IFA.LOCAL, a.ip), attr.bytes(IFA.ADDRESS, a.ip)];
  if (a.flags > 0xff) attrs.push(attr.u32(IFA.FLAGS, a.flags));
  return Buffer.concat([h, encode(attrs)]);
}
