/**
 * The transmit arena: records queued during one batch are packed into datagrams, one open
 * datagram per next hop, in a fixed set of slots, and the batch ends with one sendmmsg
 * (flush). Sealed peers' datagrams are sealed in place at flush. A record too big for
 * one datagram towards its hop is cut into FRAGMENT datagrams of exactly the path MTU
 * and handed to the kernel as UDP GSO sends. Nothing here allocates per record.
 */
import type { Logger } from '../../log';
import type { PeerName } from '../../net/peername';
import { copyBytes } from '../../native';
import type { Clock } from '../../net/clock';
import {
  DATAGRAM_HEADER_LENGTH,
  DatagramKind,
  FRAGMENT_HEADER_LENGTH,
  MAX_REASSEMBLED,
  OFFLOAD_LENGTH,
  RECORD_OFFLOAD_OFFSET,
  SEALED_HEADER_LENGTH,
  SEALED_INNER_KIND_OFFSET,
  writeDatagramHeader,
  writeDatagramKind,
  writeFragmentHeader,
  writeFrameRecordHeaderHalves,
} from './codec';
import { sendErrorReason, type DropCounter } from './drops';
import { SEAL_UNIT_OVERHEAD } from './peer-crypto';
import type { SleevePeer } from './peer';
import type { UdpRing } from './ports';

const TX_SLOTS = 128;
const TX_SLOT_SIZE = 65536;
/** The kernel refuses a UDP GSO send of more segments or bytes than this. */
const GSO_MAX_SEGMENTS = 64;
const GSO_MAX_BYTES = 65507;
const MAX_FRAGMENTS = 128;

export interface TransmitDeps {
  self: PeerName;
  socket: UdpRing;
  drops: DropCounter;
  clock: Clock;
  log: Logger;
}

export class TransmitArena {
  // Slot i holds one datagram being built at offsets[i].
  private readonly buf = Buffer.allocUnsafe(TX_SLOTS * TX_SLOT_SIZE);
  private readonly offsets = new Uint32Array(TX_SLOTS);
  private readonly lengths = new Uint32Array(TX_SLOTS);
  private readonly addrs = new Uint32Array(TX_SLOTS);
  private readonly ports = new Uint16Array(TX_SLOTS);
  private readonly peers: (SleevePeer | undefined)[] = new Array<SleevePeer | undefined>(TX_SLOTS);
  private count = 0;
  /** One record as a unit (sealed or not) before it is cut into fragments. */
  private readonly unitBuf = Buffer.allocUnsafe(MAX_REASSEMBLED);
  // Fragment arena: one record split into path-MTU datagrams, sent with UDP GSO.
  private readonly fragBuf = Buffer.allocUnsafe(2 * MAX_REASSEMBLED + 64 * 64);
  private readonly fragOffsets = new Uint32Array(MAX_FRAGMENTS);
  private readonly fragLengths = new Uint32Array(MAX_FRAGMENTS);
  private readonly fragAddrs = new Uint32Array(MAX_FRAGMENTS);
  private readonly fragPorts = new Uint16Array(MAX_FRAGMENTS);
  /**
   * The next fragment series id, one sequence per sender: a cell of its own ArrayBuffer
   * (never moved by V8), which the express path also numbers its series from, on the data
   * path thread when it has one: so both take ids with an atomic add.
   */
  readonly fragmentIds = new Uint32Array(new ArrayBuffer(4)).fill(1);
  private gsoWorks = true;
  /**
   * Our datagram header, written once: stamped on every datagram (stampHeader), because
   * writing our 48-bit name there each time boxed it.
   */
  private readonly header = Buffer.alloc(DATAGRAM_HEADER_LENGTH);

  constructor(private readonly deps: TransmitDeps) {
    for (let i = 0; i < TX_SLOTS; i++) this.offsets[i] = i * TX_SLOT_SIZE;
    writeDatagramHeader(this.header, 0, DatagramKind.Frames, deps.self);
  }

  /** Our header of kind `kind` at buf[at, at+12); returns the offset after it. */
  private stampHeader(buf: Buffer, at: number, kind: DatagramKind): number {
    const h = this.header;
    for (let i = 0; i < DATAGRAM_HEADER_LENGTH; i++) buf[at + i] = h[i]!;
    writeDatagramKind(buf, at, kind);
    return at + DATAGRAM_HEADER_LENGTH;
  }

  /**
   * Queue one record for `p`. `buf[off, off+len)` is the offload block followed by the
   * frame; `hops` the whole hops byte; the source and destination peers come as 24-bit
   * halves (src/net/halves.ts). Records that fit the path MTU share datagrams; bigger
   * ones are fragmented and leave at once.
   */
  append(
    p: SleevePeer,
    srcHigh: number,
    srcLow: number,
    dstHigh: number,
    dstLow: number,
    netId: number,
    hops: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void {
    const need = RECORD_OFFLOAD_OFFSET + len;
    p.framesOut++;
    p.bytesOut += len - OFFLOAD_LENGTH;
    if (p.prefix + need > p.pmtu) {
      this.sendFragmented(p, srcHigh, srcLow, dstHigh, dstLow, netId, hops, buf, off, len);
      return;
    }
    let slot = p.txSlot;
    if (slot >= 0 && this.lengths[slot]! + need > p.pmtu) slot = -1;
    if (slot < 0) slot = this.openSlot(p);
    const at = this.offsets[slot]! + this.lengths[slot]!;
    const body = writeFrameRecordHeaderHalves(
      this.buf,
      at,
      srcHigh,
      srcLow,
      dstHigh,
      dstLow,
      netId,
      hops,
      len - OFFLOAD_LENGTH,
    );
    copyBytes(this.buf, body, buf, off, off + len);
    this.lengths[slot] = this.lengths[slot]! + need;
  }

  /** Seal and send every datagram queued; the arena is empty afterwards. */
  flush(): void {
    const n = this.count;
    if (n === 0) return;
    const now = this.deps.clock.now();
    for (let i = 0; i < n; i++) {
      const c = this.peers[i]!.crypto;
      if (c === undefined) continue;
      const msgOff = this.offsets[i]! + SEALED_INNER_KIND_OFFSET;
      c.sealInPlace(this.buf, msgOff, this.offsets[i]! + this.lengths[i]! - msgOff, now);
    }
    this.sendDatagrams(this.buf, this.offsets, this.lengths, this.addrs, this.ports, n);
    for (let i = 0; i < n; i++) {
      this.peers[i]!.txSlot = -1;
      this.peers[i] = undefined;
    }
    this.count = 0;
  }

  /** Start a datagram for `p` in a free slot (flushing when none is left); returns the slot. */
  private openSlot(p: SleevePeer): number {
    if (this.count === TX_SLOTS) this.flush();
    const slot = this.count++;
    const base = this.offsets[slot]!;
    if (p.crypto === undefined) {
      this.stampHeader(this.buf, base, DatagramKind.Frames);
    } else {
      // Sealed at flush time, in place: header | prefix | tag | FRAMES | records...
      this.stampHeader(this.buf, base, DatagramKind.Sealed);
      this.buf[base + SEALED_HEADER_LENGTH - 1] = DatagramKind.Frames;
    }
    this.lengths[slot] = p.prefix;
    this.addrs[slot] = p.ip;
    this.ports[slot] = p.port;
    this.peers[slot] = p;
    p.txSlot = slot;
    return slot;
  }

  /**
   * Split one record into FRAGMENT datagrams of exactly the path MTU (the last may be
   * shorter) laid out back to back, and hand them to the kernel as UDP GSO sends: one
   * syscall and one skb through the underlay per 64 KiB instead of ~45.
   */
  private sendFragmented(
    p: SleevePeer,
    srcHigh: number,
    srcLow: number,
    dstHigh: number,
    dstLow: number,
    netId: number,
    hops: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void {
    // Earlier queued records to this peer must leave first: TCP hates reordering.
    this.flush();
    // The unit: the record, or for a sealed peer prefix | tag | FRAMES | record, sealed
    // once as a whole (one secretbox per 64 KiB, not per fragment).
    const u = this.unitBuf;
    const rec = p.crypto === undefined ? 0 : SEAL_UNIT_OVERHEAD + 1;
    const body = writeFrameRecordHeaderHalves(
      u,
      rec,
      srcHigh,
      srcLow,
      dstHigh,
      dstLow,
      netId,
      hops,
      len - OFFLOAD_LENGTH,
    );
    copyBytes(u, body, buf, off, off + len);
    const total = body + len;
    if (p.crypto !== undefined) {
      u[SEAL_UNIT_OVERHEAD] = DatagramKind.Frames;
      p.crypto.sealInPlace(u, SEAL_UNIT_OVERHEAD, total - SEAL_UNIT_OVERHEAD, this.deps.clock.now());
    }
    const seg = p.pmtu;
    const chunkMax = seg - DATAGRAM_HEADER_LENGTH - FRAGMENT_HEADER_LENGTH;
    // 0 is never an id: after 2^32 series the cell wraps through it.
    let id = Atomics.add(this.fragmentIds, 0, 1);
    if (id === 0) id = Atomics.add(this.fragmentIds, 0, 1);
    const fb = this.fragBuf;
    let w = 0;
    let n = 0;
    for (let at = 0; at < total; at += chunkMax) {
      const chunk = Math.min(chunkMax, total - at);
      this.fragOffsets[n] = w;
      this.fragLengths[n] = DATAGRAM_HEADER_LENGTH + FRAGMENT_HEADER_LENGTH + chunk;
      n++;
      w = this.stampHeader(fb, w, DatagramKind.Fragment);
      w = writeFragmentHeader(fb, w, id, at, total);
      copyBytes(fb, w, u, at, at + chunk);
      w += chunk;
    }
    this.sendSegments(p, seg, n);
  }

  private sendSegments(p: SleevePeer, seg: number, n: number): void {
    const perSend = Math.min(GSO_MAX_SEGMENTS, Math.floor(GSO_MAX_BYTES / seg));
    if (this.gsoWorks) {
      try {
        for (let i = 0; i < n; i += perSend) {
          const k = Math.min(perSend, n - i);
          const start = this.fragOffsets[i]!;
          const end = this.fragOffsets[i + k - 1]! + this.fragLengths[i + k - 1]!;
          // p.ip | 0: the address as a small integer, not a heap number per send (ports.ts).
          if (!this.deps.socket.sendSegmented(this.fragBuf, start, end - start, seg, p.ip | 0, p.port)) {
            this.deps.drops.count('send_queue_full', n - i);
            return;
          }
        }
        return;
      } catch (err) {
        // No UDP GSO here (old kernel, odd device): fall back to sendmmsg for good.
        this.gsoWorks = false;
        this.deps.log.warn('UDP GSO refused; sending fragments one by one', { error: (err as Error).message });
      }
    }
    for (let i = 0; i < n; i++) {
      this.fragAddrs[i] = p.ip;
      this.fragPorts[i] = p.port;
    }
    this.sendDatagrams(this.fragBuf, this.fragOffsets, this.fragLengths, this.fragAddrs, this.fragPorts, n);
  }

  /**
   * sendmmsg the n datagrams the arrays describe. What a full socket buffer refused is
   * retried once from views of the arrays; anything still unsent is dropped and counted.
   */
  private sendDatagrams(
    buf: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    addrs: Uint32Array,
    ports: Uint16Array,
    n: number,
  ): void {
    const socket = this.deps.socket;
    let sent: number;
    try {
      sent = socket.sendBatch(buf, offsets, lengths, addrs, ports, n);
    } catch (err) {
      this.deps.drops.count(sendErrorReason(err), n);
      return;
    }
    if (sent === n) return;
    let more: number;
    try {
      more = socket.sendBatch(
        buf,
        offsets.subarray(sent),
        lengths.subarray(sent),
        addrs.subarray(sent),
        ports.subarray(sent),
        n - sent,
      );
    } catch {
      more = 0;
    }
    if (sent + more < n) this.deps.drops.count('send_queue_full', n - sent - more);
  }
}
