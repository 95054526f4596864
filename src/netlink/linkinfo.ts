/**
 * Netlink attribute (TLV) encoding for the parts of rtnetlink the `netlink` package
 * leaves as raw bytes: IFLA_LINKINFO (kind + per-kind data, e.g. the veth peer, later
 * IFLA_VXLAN_*). Pure functions over Buffer, vector-tested in test/unit/linkinfo.test.ts.
 *
 * Wire format: struct nlattr { u16 len; u16 type; } then payload, each attribute padded
 * to 4 bytes; len counts header + payload, not the padding. Integers are host order
 * (except where a kernel field says otherwise, e.g. IFLA_VXLAN_PORT is big-endian).
 */
import { endianness } from 'os';

const LE = endianness() === 'LE';
const HDRLEN = 4;
/** Upper two bits of nla_type are flags (NLA_F_NESTED, NLA_F_NET_BYTEORDER). */
const NLA_TYPE_MASK = 0x3fff;
export const NLA_F_NESTED = 0x8000;

/** An attribute to encode: raw payload, or nested attributes after an optional fixed header. */
export interface Attr {
  type: number;
  value: Buffer | Attr[];
  /** Fixed-size struct placed before the nested attributes (VETH_INFO_PEER carries an ifinfomsg). */
  header?: Buffer;
}

/** A decoded attribute: the payload is a view into the source buffer, not a copy. */
export interface RawAttr {
  type: number;
  nested: boolean;
  value: Buffer;
}

const align4 = (n: number): number => (n + 3) & ~3;

function payloadLength(a: Attr): number {
  if (Buffer.isBuffer(a.value)) return a.value.length;
  return align4(a.header ? a.header.length : 0) + encodingLength(a.value);
}

/** Bytes needed to encode `attrs` (every attribute padded to 4). */
export function encodingLength(attrs: readonly Attr[]): number {
  let n = 0;
  for (const a of attrs) n += align4(HDRLEN + payloadLength(a));
  return n;
}

/** Encode `attrs` into `buf` at `offset` (allocated when absent); returns the written slice. */
export function encode(attrs: readonly Attr[], buf?: Buffer, offset = 0): Buffer {
  const len = encodingLength(attrs);
  const out = buf ?? Buffer.alloc(offset + len);
  if (out.length < offset + len) throw new RangeError(`linkinfo encode: need ${len} bytes at offset ${offset}`);
  let o = offset;
  for (const a of attrs) {
    const plen = payloadLength(a);
    if (HDRLEN + plen > 0xffff) throw new RangeError(`attribute ${a.type} too long (${plen} bytes)`);
    writeU16(out, HDRLEN + plen, o);
    writeU16(out, a.type, o + 2);
    let p = o + HDRLEN;
    if (Buffer.isBuffer(a.value)) {
      a.value.copy(out, p);
      p += a.value.length;
    } else {
      if (a.header) {
        a.header.copy(out, p);
        const padded = align4(a.header.length);
        out.fill(0, p + a.header.length, p + padded);
        p += padded;
      }
      encode(a.value, out, p);
      p += encodingLength(a.value);
    }
    const end = o + align4(HDRLEN + plen);
    out.fill(0, p, end);
    o = end;
  }
  return out.subarray(offset, offset + len);
}

/** Decode a flat list of attributes from `buf[offset, end)`; throws on a malformed length. */
export function decode(buf: Buffer, offset = 0, end = buf.length): RawAttr[] {
  const out: RawAttr[] = [];
  let o = offset;
  while (o + HDRLEN <= end) {
    const len = readU16(buf, o);
    const rawType = readU16(buf, o + 2);
    if (len < HDRLEN || o + len > end) throw new RangeError(`malformed netlink attribute at ${o}: len ${len}`);
    out.push({
      type: rawType & NLA_TYPE_MASK,
      nested: (rawType & NLA_F_NESTED) !== 0,
      value: buf.subarray(o + HDRLEN, o + len),
    });
    o += align4(len);
  }
  return out;
}

/** First attribute of `type` in a decoded list. */
export function find(attrs: readonly RawAttr[], type: number): Buffer | undefined {
  for (const a of attrs) if (a.type === type) return a.value;
  return undefined;
}

// ---- payload builders (host order unless named "be") ----

export const attr = {
  bytes: (type: number, value: Buffer): Attr => ({ type, value }),
  flag: (type: number): Attr => ({ type, value: Buffer.alloc(0) }),
  u8: (type: number, v: number): Attr => ({ type, value: Buffer.from([v & 0xff]) }),
  u16: (type: number, v: number): Attr => {
    const b = Buffer.alloc(2);
    writeU16(b, v, 0);
    return { type, value: b };
  },
  be16: (type: number, v: number): Attr => {
    const b = Buffer.alloc(2);
    b.writeUInt16BE(v, 0);
    return { type, value: b };
  },
  u32: (type: number, v: number): Attr => {
    const b = Buffer.alloc(4);
    writeU32(b, v, 0);
    return { type, value: b };
  },
  s32: (type: number, v: number): Attr => {
    const b = Buffer.alloc(4);
    if (LE) b.writeInt32LE(v, 0);
    else b.writeInt32BE(v, 0);
    return { type, value: b };
  },
  /** NUL-terminated, as the kernel's nla_put_string writes it. */
  str: (type: number, s: string): Attr => ({ type, value: Buffer.from(`${s}\0`, 'utf8') }),
  nest: (type: number, value: Attr[], header?: Buffer): Attr => (header ? { type, value, header } : { type, value }),
};

export function readU16(b: Buffer, o: number): number {
  return LE ? b.readUInt16LE(o) : b.readUInt16BE(o);
}
export function readU32(b: Buffer, o: number): number {
  return LE ? b.readUInt32LE(o) : b.readUInt32BE(o);
}
function writeU16(b: Buffer, v: number, o: number): void {
  if (LE) b.writeUInt16LE(v, o);
  else b.writeUInt16BE(v, o);
}
function writeU32(b: Buffer, v: number, o: number): void {
  if (LE) b.writeUInt32LE(v >>> 0, o);
  else b.writeUInt32BE(v >>> 0, o);
}
/** String payload without its trailing NUL(s). */
export function str(b: Buffer): string {
  let e = b.length;
  while (e > 0 && b[e - 1] === 0) e--;
  return b.toString('utf8', 0, e);
}

// ---- rtnetlink link constants used here (linux/if_link.h, linux/veth.h) ----

export const IFLA = { ADDRESS: 1, IFNAME: 3, MTU: 4, LINK: 5, MASTER: 10, LINKINFO: 18, NET_NS_FD: 28 } as const;
export const IFLA_INFO = { KIND: 1, DATA: 2, XSTATS: 3, SLAVE_KIND: 4, SLAVE_DATA: 5 } as const;
export const VETH_INFO_PEER = 1;
export const IFINFOMSG_LEN = 16;

/** struct ifinfomsg { u8 family; u8 pad; u16 type; s32 index; u32 flags; u32 change; } */
export function ifinfomsg(
  m: { family?: number; type?: number; index?: number; flags?: number; change?: number } = {},
): Buffer {
  const b = Buffer.alloc(IFINFOMSG_LEN);
  b[0] = m.family ?? 0;
  writeU16(b, m.type ?? 0, 2);
  if (LE) b.writeInt32LE(m.index ?? 0, 4);
  else b.writeInt32BE(m.index ?? 0, 4);
  writeU32(b, m.flags ?? 0, 8);
  writeU32(b, m.change ?? 0, 12);
  return b;
}

/** What goes inside IFLA_LINKINFO. `data` is per kind (veth peer, IFLA_VXLAN_*, ...). */
export interface LinkKindSpec {
  kind: string;
  data?: Attr[];
  slaveKind?: string;
  slaveData?: Attr[];
}

/** The children of IFLA_LINKINFO, for {@link encode} or as one nested attribute. */
export function linkInfoAttrs(spec: LinkKindSpec): Attr[] {
  const out: Attr[] = [attr.str(IFLA_INFO.KIND, spec.kind)];
  if (spec.data) out.push(attr.nest(IFLA_INFO.DATA, spec.data));
  if (spec.slaveKind !== undefined) out.push(attr.str(IFLA_INFO.SLAVE_KIND, spec.slaveKind));
  if (spec.slaveData) out.push(attr.nest(IFLA_INFO.SLAVE_DATA, spec.slaveData));
  return out;
}

/** Payload of IFLA_LINKINFO (what the netlink package takes as `linkinfo: Buffer`). */
export function encodeLinkInfo(spec: LinkKindSpec): Buffer {
  return encode(linkInfoAttrs(spec));
}

export interface DecodedLinkInfo {
  kind?: string;
  /** Raw IFLA_INFO_DATA payload (nested attributes; decode with {@link decode}). */
  data?: Buffer;
  slaveKind?: string;
  slaveData?: Buffer;
}

export function decodeLinkInfo(buf: Buffer): DecodedLinkInfo {
  const attrs = decode(buf);
  const out: DecodedLinkInfo = {};
  const kind = find(attrs, IFLA_INFO.KIND);
  if (kind) out.kind = str(kind);
  const data = find(attrs, IFLA_INFO.DATA);
  if (data) out.data = data;
  const slaveKind = find(attrs, IFLA_INFO.SLAVE_KIND);
  if (slaveKind) out.slaveKind = str(slaveKind);
  const slaveData = find(attrs, IFLA_INFO.SLAVE_DATA);
  if (slaveData) out.slaveData = slaveData;
  return out;
}

export interface VethPeerSpec {
  name: string;
  mtu?: number;
  /** 6 bytes */
  mac?: Buffer;
  /** fd of the namespace to create the peer in (IFLA_NET_NS_FD) */
  netnsFd?: number;
}

/** IFLA_INFO_DATA children for kind "veth": VETH_INFO_PEER = ifinfomsg + peer link attributes. */
export function vethData(peer: VethPeerSpec): Attr[] {
  const attrs: Attr[] = [attr.str(IFLA.IFNAME, peer.name)];
  if (peer.mtu !== undefined) attrs.push(attr.u32(IFLA.MTU, peer.mtu));
  if (peer.mac) attrs.push(attr.bytes(IFLA.ADDRESS, peer.mac));
  if (peer.netnsFd !== undefined) attrs.push(attr.u32(IFLA.NET_NS_FD, peer.netnsFd));
  return [attr.nest(VETH_INFO_PEER, attrs, ifinfomsg())];
}

/** Decode the VETH_INFO_PEER payload (as found in IFLA_INFO_DATA of a veth). */
export function decodeVethPeer(data: Buffer): { ifinfo: Buffer; attrs: RawAttr[] } | undefined {
  const peer = find(decode(data), VETH_INFO_PEER);
  if (!peer || peer.length < IFINFOMSG_LEN) return undefined;
  return { ifinfo: peer.subarray(0, IFINFOMSG_LEN), attrs: decode(peer, IFINFOMSG_LEN) };
}
