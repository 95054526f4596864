/**
 * Fast-path probes: the heartbeats that prove a peer's kernel VXLAN path works both ways.
 * They travel as UDP inside VXLAN (the probe device, see fastdp.ts), so they cross the
 * underlay exactly like container frames do: same UDP port, same addresses, same
 * encapsulation. Specified in docs/PROTOCOL.md ("Fast path probes"). Pure functions.
 *
 * probe := magic u8 (0x57) | version u8 (1) | kind u8 | flags u8
 *          | sender u48 | receiver u48 | seq u32 | echo u32                  (24 bytes)
 *
 * flags bit 0 (PROBE only), HEAR_YOU: the sender's own probes to the receiver are being
 * answered. A path is used only when both ends hear each other, so the two ends always
 * agree (within a probe interval) on whether the kernel carries their traffic.
 */
import { readPeerName, writePeerName, type PeerName } from '../../net/peername';

export const PROBE_MAGIC = 0x57;
export const PROBE_VERSION = 1;
export const PROBE_LENGTH = 24;
export const PROBE_FLAG_HEAR_YOU = 0x01;

export const enum ProbeKind {
  Probe = 1,
  Ack = 2,
}

export interface Probe {
  kind: ProbeKind;
  sender: PeerName;
  receiver: PeerName;
  /** PROBE: the sender's sequence number; ACK: 0. */
  seq: number;
  /** ACK: the seq of the PROBE answered; PROBE: 0. */
  echo: number;
  /** PROBE: the sender's probes to the receiver are answered (it hears the receiver). */
  hearYou?: boolean;
}

export function encodingLength(): number {
  return PROBE_LENGTH;
}

export function encode(p: Probe, buf?: Buffer, offset = 0): Buffer {
  const out = buf ?? Buffer.alloc(offset + PROBE_LENGTH);
  if (out.length - offset < PROBE_LENGTH) throw new RangeError('probe encode: buffer too small');
  out[offset] = PROBE_MAGIC;
  out[offset + 1] = PROBE_VERSION;
  out[offset + 2] = p.kind;
  out[offset + 3] = p.kind === ProbeKind.Probe && p.hearYou ? PROBE_FLAG_HEAR_YOU : 0;
  writePeerName(out, offset + 4, p.sender);
  writePeerName(out, offset + 10, p.receiver);
  out.writeUInt32BE(p.seq >>> 0, offset + 16);
  out.writeUInt32BE(p.echo >>> 0, offset + 20);
  return out;
}

/** The probe in buf[offset, offset+length), or a drop reason. */
export function decode(buf: Buffer, offset = 0, length = buf.length - offset): Probe | string {
  if (length !== PROBE_LENGTH) return 'bad_length';
  if (buf[offset] !== PROBE_MAGIC) return 'bad_magic';
  if (buf[offset + 1] !== PROBE_VERSION) return 'bad_version';
  const kind = buf[offset + 2]!;
  if (kind !== ProbeKind.Probe && kind !== ProbeKind.Ack) return 'bad_kind';
  const flags = buf[offset + 3]!;
  if ((flags & ~PROBE_FLAG_HEAR_YOU) !== 0 || (kind === ProbeKind.Ack && flags !== 0)) return 'bad_flags';
  const sender = readPeerName(buf, offset + 4);
  const receiver = readPeerName(buf, offset + 10);
  if (sender === 0 || receiver === 0) return 'bad_peer';
  const probe: Probe = {
    kind,
    sender,
    receiver,
    seq: buf.readUInt32BE(offset + 16),
    echo: buf.readUInt32BE(offset + 20),
  };
  if ((flags & PROBE_FLAG_HEAR_YOU) !== 0) probe.hearYou = true;
  return probe;
}

/**
 * Every host's probe device gets a MAC and an IPv6 link-local address derived from its
 * peer name, so peers need not exchange them: MAC = name with the locally-administered
 * bit set and the multicast bit clear; address = fe80::/64 with the name as the low 48
 * bits of the interface id.
 */
export function probeMacFor(peer: PeerName): string {
  const b = Buffer.alloc(6);
  writePeerName(b, 0, peer);
  b[0] = (b[0]! | 0x02) & 0xfe;
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':');
}

export function probeAddressFor(peer: PeerName): string {
  const b = Buffer.alloc(6);
  writePeerName(b, 0, peer);
  const g = (i: number): string => ((b[i]! << 8) | b[i + 1]!).toString(16);
  return `fe80::${g(0)}:${g(2)}:${g(4)}`;
}
