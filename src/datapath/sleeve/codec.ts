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
 * One parser: every field is read and written through the named accessors below
 * (readRecordDst, readFragmentTotal, ...), by the hot path in place on the native rings and
 * by the object-level encode/decode that tests, tools and the fuzz corpus use. The
 * accessors are small functions over fixed offsets that V8 inlines; they allocate nothing.
 */
import { highHalf, lowHalf, readHalf, writeHalf } from '../../net/halves';
import { readPeerName, writePeerName, type PeerName } from '../../net/peername';
import type { MalformedReason } from './drops';

export type { DropReason } from './drops';

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
  /** Relays so far (the low 7 bits of the hops byte). */
  hops: number;
  /** Bit 7 of the hops byte (KERNEL_COPY_FLAG); absent means false. */
  kernelCopy?: boolean;
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

// ---- named fields: offsets and accessors shared by the hot path and decode ----

// Datagram header, from the datagram's first byte.
const HEADER_MAGIC = 0;
const HEADER_VERSION = 1;
const HEADER_KIND = 2;
const HEADER_FLAGS = 3;
const HEADER_SENDER = 4;
const HEADER_RESERVED = 10;

/**
 * The header's kind byte. Typed as a kind for comparison only: it may be none of them
 * until checkHeader has said so.
 */
export function readDatagramKind(buf: Buffer, datagram: number): DatagramKind {
  return buf[datagram + HEADER_KIND]!;
}

/** Overwrite the header's kind byte (the transmit arena stamps a prebuilt header, then sets the kind). */
export function writeDatagramKind(buf: Buffer, datagram: number, kind: DatagramKind): void {
  buf[datagram + HEADER_KIND] = kind;
}

/** The inner kind byte of an opened SEALED datagram or fragment series; unchecked as readDatagramKind. */
export function readInnerKind(buf: Buffer, at: number): DatagramKind {
  return buf[at]!;
}

export function readDatagramSender(buf: Buffer, datagram: number): PeerName {
  return readPeerName(buf, datagram + HEADER_SENDER);
}

/**
 * The sender's name as 24-bit halves (src/net/halves.ts): what the hot path reads, since
 * a 48-bit number read from a datagram is a heap allocation once it leaves the function.
 */
export function readDatagramSenderHigh(buf: Buffer, datagram: number): number {
  return readHalf(buf, datagram + HEADER_SENDER);
}

export function readDatagramSenderLow(buf: Buffer, datagram: number): number {
  return readHalf(buf, datagram + HEADER_SENDER + 3);
}

/** Where a SEALED datagram's inner kind byte sits once opened (just before its inner body). */
export const SEALED_INNER_KIND_OFFSET = SEALED_HEADER_LENGTH - 1;

// Frame record, from the record's first byte.
const RECORD_SRC = 0;
const RECORD_DST = 6;
const RECORD_NETWORK = 12;
const RECORD_HOPS = 15;
const RECORD_LENGTH = 16;

export function readRecordSrc(buf: Buffer, record: number): PeerName {
  return readPeerName(buf, record + RECORD_SRC);
}

/** The destination peer; NO_PEER (0) for broadcast, multicast and unknown unicast. */
export function readRecordDst(buf: Buffer, record: number): PeerName {
  return readPeerName(buf, record + RECORD_DST);
}

/** The source and destination as 24-bit halves (see readDatagramSenderHigh). */
export function readRecordSrcHigh(buf: Buffer, record: number): number {
  return readHalf(buf, record + RECORD_SRC);
}

export function readRecordSrcLow(buf: Buffer, record: number): number {
  return readHalf(buf, record + RECORD_SRC + 3);
}

export function readRecordDstHigh(buf: Buffer, record: number): number {
  return readHalf(buf, record + RECORD_DST);
}

export function readRecordDstLow(buf: Buffer, record: number): number {
  return readHalf(buf, record + RECORD_DST + 3);
}

/** The 24-bit network id. */
export function readRecordNetwork(buf: Buffer, record: number): number {
  const o = record + RECORD_NETWORK;
  return (buf[o]! << 16) | (buf[o + 1]! << 8) | buf[o + 2]!;
}

/** Relays so far: the low 7 bits of the hops byte. */
export function readRecordHops(buf: Buffer, record: number): number {
  return buf[record + RECORD_HOPS]! & HOPS_MASK;
}

/** The kernel-copy bit of the hops byte (KERNEL_COPY_FLAG). */
export function readRecordKernelCopy(buf: Buffer, record: number): boolean {
  return (buf[record + RECORD_HOPS]! & KERNEL_COPY_FLAG) !== 0;
}

/** Bytes of the Ethernet frame after the offload block. */
export function readRecordFrameLength(buf: Buffer, record: number): number {
  return buf.readUInt32BE(record + RECORD_LENGTH);
}

// FRAGMENT body, from the byte after the datagram header.
const FRAGMENT_ID = 0;
const FRAGMENT_OFFSET = 4;
const FRAGMENT_TOTAL = 8;

export function readFragmentId(buf: Buffer, body: number): number {
  return buf.readUInt32BE(body + FRAGMENT_ID);
}

/** Where this chunk starts within the rebuilt unit. */
export function readFragmentOffset(buf: Buffer, body: number): number {
  return buf.readUInt32BE(body + FRAGMENT_OFFSET);
}

/** Length of the whole rebuilt unit. */
export function readFragmentTotal(buf: Buffer, body: number): number {
  return buf.readUInt32BE(body + FRAGMENT_TOTAL);
}

// HEARTBEAT / HEARTBEAT_ACK body, from the byte after the header (or the inner kind).
const HEARTBEAT_RECEIVER = 0;
const HEARTBEAT_SEQ = 6;
const HEARTBEAT_ECHO = 10;

export function readHeartbeatReceiver(buf: Buffer, body: number): PeerName {
  return readPeerName(buf, body + HEARTBEAT_RECEIVER);
}

export function readHeartbeatSeq(buf: Buffer, body: number): number {
  return buf.readUInt32BE(body + HEARTBEAT_SEQ);
}

export function readHeartbeatEcho(buf: Buffer, body: number): number {
  return buf.readUInt32BE(body + HEARTBEAT_ECHO);
}

/** Write a heartbeat body; returns the offset after it. */
export function writeHeartbeatBody(buf: Buffer, body: number, receiver: PeerName, seq: number, echo: number): number {
  writePeerName(buf, body + HEARTBEAT_RECEIVER, receiver);
  buf.writeUInt32BE(seq >>> 0, body + HEARTBEAT_SEQ);
  buf.writeUInt32BE(echo >>> 0, body + HEARTBEAT_ECHO);
  return body + HEARTBEAT_BODY_LENGTH;
}

// Seal prefix, from the epoch byte.
const SEAL_EPOCH = 0;
const SEAL_COUNTER = 1;

export function readSealEpoch(buf: Buffer, prefix: number): number {
  return buf[prefix + SEAL_EPOCH]!;
}

/** The counter of a seal prefix at `prefix` (the epoch byte's position). */
export function readSealCounter(buf: Buffer, prefix: number): number {
  const o = prefix + SEAL_COUNTER;
  return buf.readUInt32BE(o) * 0x100000000 + buf.readUInt32BE(o + 4);
}

/** Write epoch u8 + counter u64 (counter < 2^53); returns where the box goes. */
export function writeSealPrefix(buf: Buffer, prefix: number, epoch: number, counter: number): number {
  buf[prefix + SEAL_EPOCH] = epoch & 0xff;
  const o = prefix + SEAL_COUNTER;
  buf.writeUInt32BE(Math.floor(counter / 0x100000000), o);
  buf.writeUInt32BE(counter >>> 0, o + 4);
  return prefix + SEAL_PREFIX_LENGTH;
}

// ---- writers ----

export function writeDatagramHeader(buf: Buffer, offset: number, kind: DatagramKind, sender: PeerName): number {
  buf[offset + HEADER_MAGIC] = SLEEVE_MAGIC;
  buf[offset + HEADER_VERSION] = SLEEVE_VERSION;
  buf[offset + HEADER_KIND] = kind;
  buf[offset + HEADER_FLAGS] = 0;
  writePeerName(buf, offset + HEADER_SENDER, sender);
  buf[offset + HEADER_RESERVED] = 0;
  buf[offset + HEADER_RESERVED + 1] = 0;
  return offset + DATAGRAM_HEADER_LENGTH;
}

/**
 * writeFrameRecordHeader with the two names as 24-bit halves: what the hot path writes,
 * so that no 48-bit number is made per frame (src/net/halves.ts).
 */
export function writeFrameRecordHeaderHalves(
  buf: Buffer,
  offset: number,
  srcHigh: number,
  srcLow: number,
  dstHigh: number,
  dstLow: number,
  network: number,
  hops: number,
  length: number,
): number {
  writeHalf(buf, offset + RECORD_SRC, srcHigh);
  writeHalf(buf, offset + RECORD_SRC + 3, srcLow);
  writeHalf(buf, offset + RECORD_DST, dstHigh);
  writeHalf(buf, offset + RECORD_DST + 3, dstLow);
  buf.writeUInt32BE((((network & 0xffffff) << 8) | (hops & 0xff)) >>> 0, offset + RECORD_NETWORK);
  buf.writeUInt32BE(length, offset + RECORD_LENGTH);
  return offset + RECORD_OFFLOAD_OFFSET;
}

/**
 * Write a record's fixed fields; returns where its offload block (then the frame) goes.
 * `hops` is the whole hops byte: the relay count, with KERNEL_COPY_FLAG or'ed in.
 */
export function writeFrameRecordHeader(
  buf: Buffer,
  offset: number,
  src: PeerName,
  dst: PeerName,
  network: number,
  hops: number,
  length: number,
): number {
  return writeFrameRecordHeaderHalves(
    buf,
    offset,
    highHalf(src),
    lowHalf(src),
    highHalf(dst),
    lowHalf(dst),
    network,
    hops,
    length,
  );
}

export function writeFragmentHeader(
  buf: Buffer,
  offset: number,
  frameId: number,
  chunkOffset: number,
  total: number,
): number {
  buf.writeUInt32BE(frameId >>> 0, offset + FRAGMENT_ID);
  buf.writeUInt32BE(chunkOffset, offset + FRAGMENT_OFFSET);
  buf.writeUInt32BE(total, offset + FRAGMENT_TOTAL);
  return offset + FRAGMENT_HEADER_LENGTH;
}

// ---- checks (no allocation) ----

/** Largest record a fragment series may rebuild: a 64 KiB GSO frame and its headers. */
export const MAX_REASSEMBLED = MAX_FRAME + FRAME_RECORD_HEADER_LENGTH + 26;

/**
 * Check a FRAGMENT datagram's header fields; returns null when plausible. The chunk must
 * be non-empty and end within `total`, and `total` must be a possible record size.
 */
export function checkFragment(buf: Buffer, offset: number, length: number): MalformedReason | null {
  if (length <= DATAGRAM_HEADER_LENGTH + FRAGMENT_HEADER_LENGTH) return 'bad_length';
  const body = offset + DATAGRAM_HEADER_LENGTH;
  const at = readFragmentOffset(buf, body);
  const total = readFragmentTotal(buf, body);
  const chunk = length - DATAGRAM_HEADER_LENGTH - FRAGMENT_HEADER_LENGTH;
  if (total < FRAME_RECORD_HEADER_LENGTH + MIN_FRAME || total > MAX_REASSEMBLED) return 'bad_length';
  if (at + chunk > total) return 'bad_length';
  return null;
}

/**
 * Check a datagram's header; returns its kind, or a drop reason. Does not allocate.
 */
export function checkHeader(buf: Buffer, offset: number, length: number): DatagramKind | MalformedReason {
  if (length < DATAGRAM_HEADER_LENGTH) return 'short';
  if (buf[offset + HEADER_MAGIC] !== SLEEVE_MAGIC) return 'bad_magic';
  if (buf[offset + HEADER_VERSION] !== SLEEVE_VERSION) return 'bad_version';
  // Flags and reserved bytes are zero in this version: anything else is not ours.
  if (
    buf[offset + HEADER_FLAGS] !== 0 ||
    buf[offset + HEADER_RESERVED] !== 0 ||
    buf[offset + HEADER_RESERVED + 1] !== 0
  )
    return 'bad_flags';
  const kind = readDatagramKind(buf, offset);
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
export function checkFrameRecords(buf: Buffer, offset: number, length: number): MalformedReason | null {
  return checkRecords(buf, offset + DATAGRAM_HEADER_LENGTH, offset + length);
}

/** Check that records exactly tile buf[start, end). Returns null when well-formed. */
export function checkRecords(buf: Buffer, start: number, end: number): MalformedReason | null {
  let o = start;
  while (o < end) {
    if (end - o < FRAME_RECORD_HEADER_LENGTH) return 'truncated';
    const frameLen = readRecordFrameLength(buf, o);
    if (frameLen < MIN_FRAME || frameLen > MAX_FRAME) return 'bad_length';
    o += FRAME_RECORD_HEADER_LENGTH + frameLen;
  }
  return o === end ? null : 'truncated';
}

// ---- object-level encode / decode (tests, tools, fuzz corpus) ----

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

function encodeRecord(out: Buffer, o: number, f: FrameRecord): number {
  if (f.frame.length > MAX_FRAME) throw new RangeError(`frame longer than ${MAX_FRAME} bytes`);
  if (f.offload.length !== OFFLOAD_LENGTH) throw new RangeError('offload block must be 10 bytes');
  const hops = (f.hops & HOPS_MASK) | (f.kernelCopy === true ? KERNEL_COPY_FLAG : 0);
  o = writeFrameRecordHeader(out, o, f.src, f.dst, f.network, hops, f.frame.length);
  f.offload.copy(out, o);
  o += OFFLOAD_LENGTH;
  f.frame.copy(out, o);
  return o + f.frame.length;
}

export function encode(d: Datagram, buf?: Buffer, offset = 0): Buffer {
  const len = encodingLength(d);
  const out = buf ?? Buffer.allocUnsafe(offset + len);
  let o = writeDatagramHeader(out, offset, d.kind, d.sender);
  if (d.kind === DatagramKind.Frames) {
    for (const f of d.frames) o = encodeRecord(out, o, f);
  } else if (d.kind === DatagramKind.Fragment) {
    o = writeFragmentHeader(out, o, d.frameId, d.offset, d.total);
    d.chunk.copy(out, o);
  } else if (d.kind === DatagramKind.Sealed) {
    o = writeSealPrefix(out, o, d.epoch, d.counter);
    d.box.copy(out, o);
  } else {
    writeHeartbeatBody(out, o, d.receiver, d.seq, d.echo);
  }
  return out;
}

export class SleeveDecodeError extends Error {
  constructor(readonly reason: MalformedReason) {
    super(`malformed sleeve datagram: ${reason}`);
    this.name = 'SleeveDecodeError';
  }
}

/** The record at buf[o, ...) (already checked to fit), copied out. */
function decodeRecord(buf: Buffer, o: number): FrameRecord {
  const frameStart = o + FRAME_RECORD_HEADER_LENGTH;
  const record: FrameRecord = {
    src: readRecordSrc(buf, o),
    dst: readRecordDst(buf, o),
    network: readRecordNetwork(buf, o),
    hops: readRecordHops(buf, o),
    offload: Buffer.from(buf.subarray(o + RECORD_OFFLOAD_OFFSET, frameStart)),
    frame: Buffer.from(buf.subarray(frameStart, frameStart + readRecordFrameLength(buf, o))),
  };
  if (readRecordKernelCopy(buf, o)) record.kernelCopy = true;
  return record;
}

export function decode(buf: Buffer, offset = 0, length = buf.length - offset): Datagram {
  const kind = checkHeader(buf, offset, length);
  if (typeof kind === 'string') throw new SleeveDecodeError(kind);
  const sender = readDatagramSender(buf, offset);
  const body = offset + DATAGRAM_HEADER_LENGTH;
  const end = offset + length;
  if (kind === DatagramKind.Frames) {
    const bad = checkRecords(buf, body, end);
    if (bad) throw new SleeveDecodeError(bad);
    const frames: FrameRecord[] = [];
    for (let o = body; o < end; o += FRAME_RECORD_HEADER_LENGTH + readRecordFrameLength(buf, o)) {
      frames.push(decodeRecord(buf, o));
    }
    return { kind, sender, frames };
  }
  if (kind === DatagramKind.Sealed) {
    return {
      kind,
      sender,
      epoch: readSealEpoch(buf, body),
      counter: readSealCounter(buf, body),
      box: Buffer.from(buf.subarray(body + SEAL_PREFIX_LENGTH, end)),
    };
  }
  if (kind === DatagramKind.Fragment) {
    return {
      kind,
      sender,
      frameId: readFragmentId(buf, body),
      offset: readFragmentOffset(buf, body),
      total: readFragmentTotal(buf, body),
      chunk: Buffer.from(buf.subarray(body + FRAGMENT_HEADER_LENGTH, end)),
    };
  }
  return {
    kind,
    sender,
    receiver: readHeartbeatReceiver(buf, body),
    seq: readHeartbeatSeq(buf, body),
    echo: readHeartbeatEcho(buf, body),
  };
}
