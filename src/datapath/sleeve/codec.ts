/**
 * Sleeve datagram format (UDP, port 6783). Specified in docs/PROTOCOL.md.
 *
 *   datagram := header(12) body
 *   header   := magic u8 (0x57) | version u8 (1) | kind u8 | flags u8 | sender u48 | reserved u16
 *   FRAMES body := record*
 *   record   := src u48 | dst u48 (0 = broadcast) | network u24 | hops u8 | length u16 | frame
 *   HEARTBEAT / HEARTBEAT_ACK body := receiver u48 | seq u32 | echo u32
 *
 * The hot path writes and reads these fields in place using the offsets below; the
 * object-level encode/decode functions exist for tests, tools and the fuzz corpus.
 */
import { readPeerName, writePeerName, type PeerName } from '../../router/peername';

export const SLEEVE_MAGIC = 0x57;
export const SLEEVE_VERSION = 1;
export const DATAGRAM_HEADER_LENGTH = 12;
export const FRAME_RECORD_HEADER_LENGTH = 18;
export const HEARTBEAT_BODY_LENGTH = 14;
/** Hops a relayed frame may take before it is dropped (guards against routing loops). */
export const MAX_HOPS = 16;
/** Smallest Ethernet frame we accept: destination, source, ethertype. */
export const MIN_FRAME = 14;

export const enum DatagramKind {
  Frames = 1,
  Heartbeat = 2,
  HeartbeatAck = 3,
}

export interface FrameRecord {
  src: PeerName;
  dst: PeerName;
  network: number;
  hops: number;
  frame: Buffer;
}

export type Datagram =
  | { kind: DatagramKind.Frames; sender: PeerName; frames: FrameRecord[] }
  | { kind: DatagramKind.Heartbeat | DatagramKind.HeartbeatAck; sender: PeerName; receiver: PeerName; seq: number; echo: number };

/** Why a datagram was dropped; these are the `reason` labels of the drop counter. */
export type DropReason =
  | 'short'
  | 'bad_magic'
  | 'bad_version'
  | 'bad_kind'
  | 'bad_length'
  | 'unknown_peer'
  | 'wrong_address'
  | 'hops_exceeded'
  | 'no_route'
  | 'unknown_network'
  | 'truncated'
  | 'not_for_us';

export function writeDatagramHeader(buf: Buffer, offset: number, kind: DatagramKind, sender: PeerName): number {
  buf[offset] = SLEEVE_MAGIC;
  buf[offset + 1] = SLEEVE_VERSION;
  buf[offset + 2] = kind;
  buf[offset + 3] = 0;
  writePeerName(buf, offset + 4, sender);
  buf[offset + 10] = 0;
  buf[offset + 11] = 0;
  return offset + DATAGRAM_HEADER_LENGTH;
}

export function writeFrameRecordHeader(
  buf: Buffer,
  offset: number,
  src: PeerName,
  dst: PeerName,
  network: number,
  hops: number,
  length: number,
): number {
  writePeerName(buf, offset, src);
  writePeerName(buf, offset + 6, dst);
  buf.writeUInt32BE(((network & 0xffffff) << 8 | (hops & 0xff)) >>> 0, offset + 12);
  buf.writeUInt16BE(length, offset + 16);
  return offset + FRAME_RECORD_HEADER_LENGTH;
}

/**
 * Check a datagram's header; returns its kind, or a drop reason. Does not allocate.
 */
export function checkHeader(buf: Buffer, offset: number, length: number): DatagramKind | DropReason {
  if (length < DATAGRAM_HEADER_LENGTH) return 'short';
  if (buf[offset] !== SLEEVE_MAGIC) return 'bad_magic';
  if (buf[offset + 1] !== SLEEVE_VERSION) return 'bad_version';
  const kind = buf[offset + 2]!;
  if (kind === DatagramKind.Frames) return length > DATAGRAM_HEADER_LENGTH ? kind : 'bad_length';
  if (kind === DatagramKind.Heartbeat || kind === DatagramKind.HeartbeatAck) {
    return length === DATAGRAM_HEADER_LENGTH + HEARTBEAT_BODY_LENGTH ? kind : 'bad_length';
  }
  return 'bad_kind';
}

/**
 * Check that the frame records of a FRAMES datagram tile its body exactly. Returns null
 * when well-formed. The receive loop calls this before acting on any record, so a
 * truncated datagram delivers nothing rather than a prefix.
 */
export function checkFrameRecords(buf: Buffer, offset: number, length: number): DropReason | null {
  let o = offset + DATAGRAM_HEADER_LENGTH;
  const end = offset + length;
  while (o < end) {
    if (end - o < FRAME_RECORD_HEADER_LENGTH) return 'truncated';
    const frameLen = buf.readUInt16BE(o + 16);
    if (frameLen < MIN_FRAME) return 'bad_length';
    o += FRAME_RECORD_HEADER_LENGTH + frameLen;
  }
  return o === end ? null : 'truncated';
}

export function encodingLength(d: Datagram): number {
  if (d.kind === DatagramKind.Frames) {
    let n = DATAGRAM_HEADER_LENGTH;
    for (const f of d.frames) n += FRAME_RECORD_HEADER_LENGTH + f.frame.length;
    return n;
  }
  return DATAGRAM_HEADER_LENGTH + HEARTBEAT_BODY_LENGTH;
}

export function encode(d: Datagram, buf?: Buffer, offset = 0): Buffer {
  const len = encodingLength(d);
  const out = buf ?? Buffer.allocUnsafe(offset + len);
  let o = writeDatagramHeader(out, offset, d.kind, d.sender);
  if (d.kind === DatagramKind.Frames) {
    for (const f of d.frames) {
      if (f.frame.length > 0xffff) throw new RangeError('frame longer than 65535 bytes');
      o = writeFrameRecordHeader(out, o, f.src, f.dst, f.network, f.hops, f.frame.length);
      f.frame.copy(out, o);
      o += f.frame.length;
    }
  } else {
    writePeerName(out, o, d.receiver);
    out.writeUInt32BE(d.seq >>> 0, o + 6);
    out.writeUInt32BE(d.echo >>> 0, o + 10);
  }
  return out;
}

export class SleeveDecodeError extends Error {
  constructor(readonly reason: DropReason) {
    super(`malformed sleeve datagram: ${reason}`);
    this.name = 'SleeveDecodeError';
  }
}

export function decode(buf: Buffer, offset = 0, length = buf.length - offset): Datagram {
  const kind = checkHeader(buf, offset, length);
  if (typeof kind === 'string') throw new SleeveDecodeError(kind);
  const sender = readPeerName(buf, offset + 4);
  if (kind === DatagramKind.Frames) {
    const bad = checkFrameRecords(buf, offset, length);
    if (bad) throw new SleeveDecodeError(bad);
    const frames: FrameRecord[] = [];
    let o = offset + DATAGRAM_HEADER_LENGTH;
    const end = offset + length;
    while (o < end) {
      const word = buf.readUInt32BE(o + 12);
      const frameLen = buf.readUInt16BE(o + 16);
      frames.push({
        src: readPeerName(buf, o),
        dst: readPeerName(buf, o + 6),
        network: word >>> 8,
        hops: word & 0xff,
        frame: Buffer.from(buf.subarray(o + 18, o + 18 + frameLen)),
      });
      o += FRAME_RECORD_HEADER_LENGTH + frameLen;
    }
    return { kind, sender, frames };
  }
  const o = offset + DATAGRAM_HEADER_LENGTH;
  return {
    kind,
    sender,
    receiver: readPeerName(buf, o),
    seq: buf.readUInt32BE(o + 6),
    echo: buf.readUInt32BE(o + 10),
  };
}
