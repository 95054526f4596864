/**
 * NFLOG over netfilter netlink, as pure encode/decode over Buffer: the configuration
 * messages that bind a log group, and the packet messages the kernel sends for every
 * `log group N` match (docs/POLICY.md, drops). Only what the drop log needs.
 *
 * Layout (include/uapi/linux/netfilter/nfnetlink_log.h): after the netlink header, a
 * nfgenmsg {u8 family, u8 version, be16 res_id (the group)}, then attributes
 * {u16 len, u16 type, value, padded to 4}. Numbers inside attributes are big-endian.
 */

export const NETLINK_NETFILTER = 12;
/** NFNL_SUBSYS_ULOG << 8 | NFULNL_MSG_PACKET / _CONFIG */
export const NFULNL_MSG_PACKET = (4 << 8) | 0;
export const NFULNL_MSG_CONFIG = (4 << 8) | 1;

const NFULA_CFG_CMD = 1;
const NFULA_CFG_MODE = 2;
const NFULNL_CFG_CMD_BIND = 1;
const NFULNL_CFG_CMD_UNBIND = 2;
const NFULNL_COPY_PACKET = 2;

const NFULA_PACKET_HDR = 1;
const NFULA_TIMESTAMP = 3;
const NFULA_IFINDEX_INDEV = 4;
const NFULA_IFINDEX_OUTDEV = 5;
const NFULA_IFINDEX_PHYSINDEV = 6;
const NFULA_IFINDEX_PHYSOUTDEV = 7;
const NFULA_PAYLOAD = 9;
const NFULA_PREFIX = 10;

function attr(type: number, value: Buffer): Buffer {
  const len = 4 + value.length;
  const out = Buffer.alloc((len + 3) & ~3);
  out.writeUInt16LE(len, 0);
  out.writeUInt16LE(type, 2);
  value.copy(out, 4);
  return out;
}

function nfgenmsg(family: number, group: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt8(family, 0);
  b.writeUInt8(0, 1);
  b.writeUInt16BE(group, 2);
  return b;
}

/** Body of a config message binding (or unbinding) `group`, copying `copyRange` bytes of each packet. */
export function encodeBindGroup(group: number, copyRange: number): Buffer {
  const mode = Buffer.alloc(6);
  mode.writeUInt32BE(copyRange, 0);
  mode.writeUInt8(NFULNL_COPY_PACKET, 4);
  return Buffer.concat([
    nfgenmsg(0, group),
    attr(NFULA_CFG_CMD, Buffer.from([NFULNL_CFG_CMD_BIND])),
    attr(NFULA_CFG_MODE, mode),
  ]);
}

export function encodeUnbindGroup(group: number): Buffer {
  return Buffer.concat([nfgenmsg(0, group), attr(NFULA_CFG_CMD, Buffer.from([NFULNL_CFG_CMD_UNBIND]))]);
}

/** One logged packet, as the kernel reported it. */
export interface NflogPacket {
  /** Protocol family of the hook: 2 (inet/ipv4), 7 (bridge). */
  family: number;
  group: number;
  /** Ethertype of the payload (0x0800 IPv4, 0x0806 ARP). */
  hwProtocol: number;
  hook: number;
  prefix: string;
  /** Milliseconds since the epoch, when the kernel stamped it. */
  timestampMs?: number;
  indev?: number;
  outdev?: number;
  physindev?: number;
  physoutdev?: number;
  /** The packet from its network header on (as much as the copy range). */
  payload: Buffer;
}

export class NflogDecodeError extends Error {
  constructor(reason: string) {
    super(`malformed NFLOG message: ${reason}`);
    this.name = 'NflogDecodeError';
  }
}

/** Decode the body (after the netlink header) of an NFULNL_MSG_PACKET message. */
export function decodePacketMessage(body: Buffer): NflogPacket {
  if (body.length < 4) throw new NflogDecodeError('shorter than nfgenmsg');
  const out: NflogPacket = {
    family: body.readUInt8(0),
    group: body.readUInt16BE(2),
    hwProtocol: 0,
    hook: 0,
    prefix: '',
    payload: Buffer.alloc(0),
  };
  let off = 4;
  while (off + 4 <= body.length) {
    const len = body.readUInt16LE(off);
    const type = body.readUInt16LE(off + 2) & 0x3fff;
    if (len < 4 || off + len > body.length)
      throw new NflogDecodeError(`attribute ${type} of length ${len} at ${off} overruns ${body.length}`);
    const v = body.subarray(off + 4, off + len);
    switch (type) {
      case NFULA_PACKET_HDR:
        if (v.length < 3) throw new NflogDecodeError('short packet header');
        out.hwProtocol = v.readUInt16BE(0);
        out.hook = v.readUInt8(2);
        break;
      case NFULA_TIMESTAMP:
        if (v.length < 16) throw new NflogDecodeError('short timestamp');
        out.timestampMs = Number(v.readBigUInt64BE(0)) * 1000 + Math.floor(Number(v.readBigUInt64BE(8)) / 1000);
        break;
      case NFULA_IFINDEX_INDEV:
      case NFULA_IFINDEX_OUTDEV:
      case NFULA_IFINDEX_PHYSINDEV:
      case NFULA_IFINDEX_PHYSOUTDEV: {
        if (v.length < 4) throw new NflogDecodeError('short interface index');
        const idx = v.readUInt32BE(0);
        if (type === NFULA_IFINDEX_INDEV) out.indev = idx;
        else if (type === NFULA_IFINDEX_OUTDEV) out.outdev = idx;
        else if (type === NFULA_IFINDEX_PHYSINDEV) out.physindev = idx;
        else out.physoutdev = idx;
        break;
      }
      case NFULA_PAYLOAD:
        out.payload = v;
        break;
      case NFULA_PREFIX: {
        const nul = v.indexOf(0);
        out.prefix = v.subarray(0, nul < 0 ? v.length : nul).toString('latin1');
        break;
      }
      default:
        break;
    }
    off += (len + 3) & ~3;
  }
  return out;
}

/** What a drop record needs of a packet's headers. */
export interface PacketSummary {
  /** 'tcp', 'udp', 'sctp', 'icmp', 'arp', or the IP protocol number for any other. */
  protocol: string;
  src: string;
  dst: string;
  /** Destination port (tcp/udp/sctp). */
  port?: number;
  /** ICMP type. */
  icmpType?: number;
}

function ip4(b: Buffer, off: number): string {
  return `${b[off]}.${b[off + 1]}.${b[off + 2]}.${b[off + 3]}`;
}

const PROTO_NAMES: Record<number, string> = { 1: 'icmp', 6: 'tcp', 17: 'udp', 132: 'sctp' };

/** Summarise an IPv4 or ARP payload; undefined for anything else or a truncated header. */
export function summarisePayload(hwProtocol: number, payload: Buffer): PacketSummary | undefined {
  if (hwProtocol === 0x0806) {
    // ARP for IPv4 over Ethernet: sender IP at 14, target IP at 24.
    if (payload.length < 28 || payload.readUInt16BE(0) !== 1 || payload.readUInt16BE(2) !== 0x0800) return undefined;
    return { protocol: 'arp', src: ip4(payload, 14), dst: ip4(payload, 24) };
  }
  if (hwProtocol !== 0x0800 && hwProtocol !== 0) return undefined;
  if (payload.length < 20 || payload[0]! >> 4 !== 4) return undefined;
  const ihl = (payload[0]! & 15) * 4;
  if (ihl < 20 || payload.length < ihl) return undefined;
  const proto = payload[9]!;
  const s: PacketSummary = {
    protocol: PROTO_NAMES[proto] ?? `ip/${proto}`,
    src: ip4(payload, 12),
    dst: ip4(payload, 16),
  };
  const fragmentOffset = payload.readUInt16BE(6) & 0x1fff;
  if (fragmentOffset !== 0) return s;
  if ((proto === 6 || proto === 17 || proto === 132) && payload.length >= ihl + 4)
    s.port = payload.readUInt16BE(ihl + 2);
  if (proto === 1 && payload.length >= ihl + 1) s.icmpType = payload[ihl]!;
  return s;
}
