/**
 * Sleeve datagram format (UDP, port 6783). Specified in docs/PROTOCOL.md.
 *
 *   datagram := header(12) body
 *   header   := magic u8 (0x57) | version u8 (1) | kind u8 | flags u8 | sender u48 | reserved u16
 *   FRAMES body := record*
 *   record   := src u48 | dst u48 (0 = broadcast) | network u24 | hops u8 (bit 7: kernel copy) | length u32
 *               | offload (10 bytes, a virtio_net_hdr, little-endian) | frame
 *   FRAGMENT body := frame-id u32 | offset u32 | total u32 | chunk
 *               (the chunks of one frame id, in order, rebuild exactly one record)
 *   HEARTBEAT / HEARTBEAT_ACK body := receiver u48 | seq u32 | echo u32
 *   SEALED body := epoch u8 | counter u64 | secretbox(inner kind u8 | inner body)
 *               (with a network password every datagram but FRAGMENT is SEALED; a
 *               fragment series then rebuilds epoch | counter | secretbox(FRAMES | record))
 *
 * The hot path writes and reads these fields in place using the offsets below; the
 * object-level encode/decode functions exist for tests, tools and the fuzz corpus.
 */
import { readPeerName, writePeerName, type PeerName } from '../../net/peername';

export const SLEEVE_MAGIC = 0x57;
export const SLEEVE_VERSION = 1;
export const DATAGRAM_HEADER_LENGTH = 12;
/** Record header including the 10-byte offload (virtio_net_hdr) block. */
export const FRAME_RECORD_HEADER_LENGTH = 30;
/** Where the offload block starts within a record: after src, dst, network+hops, length. */
export const RECORD_OFFLOAD_OFFSET = 20;
export const OFFLOAD_LENGTH = 10;
export const FRAGMENT_HEADER_LENGTH = 12;
export const HEARTBEAT_BODY_LENGTH = 14;
/** Hops a relayed frame may take before it is dropped (guards against routing loops). */
export const MAX_HOPS = 16;
/** The hop count is the low 7 bits of the hops byte. */
export const HOPS_MASK = 0x7f;
/**
 * Bit 7 of the hops byte: the sender also sent this broadcast to the receiver through the
 * kernel fast path (VXLAN), so the receiver relays this copy but does not deliver it.
 */
export const KERNEL_COPY_FLAG = 0x80;
/** Smallest Ethernet frame we accept: destination, source, ethertype. */
export const MIN_FRAME = 14;
/** Largest frame: a 64 KiB IP packet (GSO) with Ethernet and VLAN headers. */
export const MAX_FRAME = 65535 + 18;

export const enum DatagramKind {
  Frames = 1,
  Heartbeat = 2,
  HeartbeatAck = 3,
  Fragment = 4,
  Sealed = 5,
}

/** epoch u8 + counter u64 in front of a sealed box. */
export const SEAL_PREFIX_LENGTH = 9;
/** Poly1305 tag at the front of a secretbox. */
export const SEAL_TAG_LENGTH = 16;
/** A sealed datagram: header, prefix, tag, inner kind; the inner body follows. */
export const SEALED_HEADER_LENGTH = DATAGRAM_HEADER_LENGTH + SEAL_PREFIX_LENGTH + SEAL_TAG_LENGTH + 1;

export interface FrameRecord {
  src: PeerName;
  dst: PeerName;
  network: number;
  hops: number;
  /**
   * virtio_net_hdr as the TAP gave it (little-endian): checksum-offload and GSO facts
   * about the frame (a TCP super-frame of up to 64 KiB travels as one record). All
   * zero for a plain frame.
   */
  offload: Buffer;
  frame: Buffer;
}

export type Datagram =
  | { kind: DatagramKind.Frames; sender: PeerName; frames: FrameRecord[] }
  | { kind: DatagramKind.Fragment; sender: PeerName; frameId: number; offset: number; total: number; chunk: Buffer }
  | { kind: DatagramKind.Sealed; sender: PeerName; epoch: number; counter: number; box: Buffer }
  | {
      kind: DatagramKind.Heartbeat | DatagramKind.HeartbeatAck;
      sender: PeerName;
      receiver: PeerName;
      seq: number;
      echo: number;
    };

/** Why a datagram was dropped; these are the `reason` labels of the drop counter. */
export type DropReason =
  | 'short'
  | 'bad_magic'
  | 'bad_version'
  | 'bad_kind'
  | 'bad_flags'
  | 'bad_length'
  | 'unknown_peer'
  | 'wrong_address'
  | 'hops_exceeded'
  | 'no_route'
  | 'unknown_network'
  | 'truncated'
  | 'not_for_us'
  | 'looped'
  | 'reassembly_gap'
  | 'forged'
  | 'replayed'
  | 'unsealed'
  | 'unexpected_sealed'
  | 'bad_epoch';

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

/** Write a record's fixed fields; returns where its offload block (then the frame) goes. */
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
  buf.writeUInt32BE((((network & 0xffffff) << 8) | (hops & 0xff)) >>> 0, offset + 12);
  buf.writeUInt32BE(length, offset + 16);
  return offset + RECORD_OFFLOAD_OFFSET;
}

export function writeFragmentHeader(
  buf: Buffer,
  offset: number,
  frameId: number,
  chunkOffset: number,
  total: number,
): number {
  buf.writeUInt32BE(frameId >>> 0, offset);
  buf.writeUInt32BE(chunkOffset, offset + 4);
  buf.writeUInt32BE(total, offset + 8);
  return offset + FRAGMENT_HEADER_LENGTH;
}

/** Write epoch u8 + counter u64 (counter < 2^53); returns where the box goes. */
export function writeSealPrefix(buf: Buffer, offset: number, epoch: number, counter: number): number {
  buf[offset] = epoch & 0xff;
  buf.writeUInt32BE(Math.floor(counter / 0x100000000), offset + 1);
  buf.writeUInt32BE(counter >>> 0, offset + 5);
  return offset + SEAL_PREFIX_LENGTH;
}

/** The counter of a seal prefix at `offset` (the epoch byte's position). */
export function readSealCounter(buf: Buffer, offset: number): number {
  return buf.readUInt32BE(offset + 1) * 0x100000000 + buf.readUInt32BE(offset + 5);
}

/** Largest record a fragment series may rebuild: a 64 KiB GSO frame and its headers. */
export const MAX_REASSEMBLED = MAX_FRAME + FRAME_RECORD_HEADER_LENGTH + 26;

/**
 * Check a FRAGMENT datagram's header fields; returns null when plausible. The chunk must
 * be non-empty and end within `total`, and `total` must be a possible record size.
 */
export function checkFragment(buf: Buffer, offset: number, length: number): DropReason | null {
  if (length <= DATAGRAM_HEADER_LENGTH + FRAGMENT_HEADER_LENGTH) return 'bad_length';
  const o = offset + DATAGRAM_HEADER_LENGTH;
  const at = buf.readUInt32BE(o + 4);
  const total = buf.readUInt32BE(o + 8);
  const chunk = length - DATAGRAM_HEADER_LENGTH - FRAGMENT_HEADER_LENGTH;
  if (total < FRAME_RECORD_HEADER_LENGTH + MIN_FRAME || total > MAX_REASSEMBLED) return 'bad_length';
  if (at + chunk > total) return 'bad_length';
  return null;
}

/**
 * Check a datagram's header; returns its kind, or a drop reason. Does not allocate.
 */
export function checkHeader(buf: Buffer, offset: number, length: number): DatagramKind | DropReason {
  if (length < DATAGRAM_HEADER_LENGTH) return 'short';
  if (buf[offset] !== SLEEVE_MAGIC) return 'bad_magic';
  if (buf[offset + 1] !== SLEEVE_VERSION) return 'bad_version';
  // Flags and reserved bytes are zero in this version: anything else is not ours.
  if (buf[offset + 3] !== 0 || buf[offset + 10] !== 0 || buf[offset + 11] !== 0) return 'bad_flags';
  const kind = buf[offset + 2]!;
  if (kind === DatagramKind.Frames) return length > DATAGRAM_HEADER_LENGTH ? kind : 'bad_length';
  if (kind === DatagramKind.Fragment) return checkFragment(buf, offset, length) ?? kind;
  if (kind === DatagramKind.Sealed) return length >= SEALED_HEADER_LENGTH ? kind : 'bad_length';
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
  return checkRecords(buf, offset + DATAGRAM_HEADER_LENGTH, offset + length);
}

/** Check that records exactly tile buf[start, end). Returns null when well-formed. */
export function checkRecords(buf: Buffer, start: number, end: number): DropReason | null {
  let o = start;
  while (o < end) {
    if (end - o < FRAME_RECORD_HEADER_LENGTH) return 'truncated';
    const frameLen = buf.readUInt32BE(o + 16);
    if (frameLen < MIN_FRAME || frameLen > MAX_FRAME) return 'bad_length';
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
  if (d.kind === DatagramKind.Fragment) return DATAGRAM_HEADER_LENGTH + FRAGMENT_HEADER_LENGTH + d.chunk.length;
  if (d.kind === DatagramKind.Sealed) return DATAGRAM_HEADER_LENGTH + SEAL_PREFIX_LENGTH + d.box.length;
  return DATAGRAM_HEADER_LENGTH + HEARTBEAT_BODY_LENGTH;
}

export function encode(d: Datagram, buf?: Buffer, offset = 0): Buffer {
  const len = encodingLength(d);
  const out = buf ?? Buffer.allocUnsafe(offset + len);
  let o = writeDatagramHeader(out, offset, d.kind, d.sender);
  if (d.kind === DatagramKind.Frames) {
    for (const f of d.frames) {
      if (f.frame.length > MAX_FRAME) throw new RangeError(`frame longer than ${MAX_FRAME} bytes`);
      if (f.offload.length !== OFFLOAD_LENGTH) throw new RangeError('offload block must be 10 bytes');
      o = writeFrameRecordHeader(out, o, f.src, f.dst, f.network, f.hops, f.frame.length);
      f.offload.copy(out, o);
      o += OFFLOAD_LENGTH;
      f.frame.copy(out, o);
      o += f.frame.length;
    }
  } else if (d.kind === DatagramKind.Fragment) {
    o = writeFragmentHeader(out, o, d.frameId, d.offset, d.total);
    d.chunk.copy(out, o);
  } else if (d.kind === DatagramKind.Sealed) {
    o = writeSealPrefix(out, o, d.epoch, d.counter);
    d.box.copy(out, o);
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
      const frameLen = buf.readUInt32BE(o + 16);
      frames.push({
        src: readPeerName(buf, o),
        dst: readPeerName(buf, o + 6),
        network: word >>> 8,
        hops: word & 0xff,
        offload: Buffer.from(buf.subarray(o + 20, o + FRAME_RECORD_HEADER_LENGTH)),
        frame: Buffer.from(buf.subarray(o + FRAME_RECORD_HEADER_LENGTH, o + FRAME_RECORD_HEADER_LENGTH + frameLen)),
      });
      o += FRAME_RECORD_HEADER_LENGTH + frameLen;
    }
    return { kind, sender, frames };
  }
  const o = offset + DATAGRAM_HEADER_LENGTH;
  if (kind === DatagramKind.Sealed) {
    return {
      kind,
      sender,
      epoch: buf[o]!,
      counter: readSealCounter(buf, o),
      box: Buffer.from(buf.subarray(o + SEAL_PREFIX_LENGTH, offset + length)),
    };
  }
  if (kind === DatagramKind.Fragment) {
    return {
      kind,
      sender,
      frameId: buf.readUInt32BE(o),
      offset: buf.readUInt32BE(o + 4),
      total: buf.readUInt32BE(o + 8),
      chunk: Buffer.from(buf.subarray(o + FRAGMENT_HEADER_LENGTH, offset + length)),
    };
  }
  return {
    kind,
    sender,
    receiver: readPeerName(buf, o),
    seq: buf.readUInt32BE(o + 6),
    echo: buf.readUInt32BE(o + 10),
  };
}
