/**
 * Typed face of the N-API addon (native/src/tap.c, native/src/udp.c, native/src/express.c):
 * a TAP device and an IPv4 UDP socket, both read in batches driven by a libuv poll,
 * written with one syscall per batch where the kernel allows it, and the sleeve's express
 * path, a cache of the sleeve's forwarding decisions applied in C to each batch before JS
 * sees it. The decisions themselves (routing, learning, what is dropped) are TypeScript's.
 *
 * Receive model (both classes): the addon owns a ring of `slots` slots of `slotSize`
 * bytes, allocated once. When the fd becomes readable it reads until EAGAIN or until
 * every slot is full, then calls the callback once with the count (on a UDP socket the
 * express path may first read more into the free slots, for the rest of a fragment
 * series; the count includes it). Entry i of a batch
 * is `rxBuf[i * slotSize, i * slotSize + rxLengths[i])`; the ring is reused by the next
 * batch, so copy out anything kept beyond the callback. A length of 0 marks an entry
 * that did not fit its slot (truncated): drop it.
 */
import * as path from 'path';
import { formatIpv4, parseIpv4 } from '../net/ipv4';
import type { NativePeerCryptoHandle } from './peer-crypto';

/** The JS object the addon hands back; opaque apart from these fields. */
interface NativeTapHandle {
  readonly name: string;
  readonly fd: number;
  readonly rxBuf: Buffer;
  readonly rxLengths: Uint32Array;
  readonly vnetHdr: boolean;
  readonly offloads: number;
}

interface NativeUdpHandle {
  readonly fd: number;
  readonly port: number;
  readonly rxBuf: Buffer;
  readonly rxLengths: Uint32Array;
  readonly rxAddrs: Uint32Array;
  readonly rxPorts: Uint16Array;
  readonly rxSegSizes: Uint16Array;
  readonly rxFlags: Uint8Array;
  readonly gro: boolean;
}

/** The express path's handle (native/src/express.c); opaque. */
type NativeExpressHandle = object;

type ErrorCallback = ((err: NodeJS.ErrnoException) => void) | undefined;

/**
 * A receive batch: entries [first, count) of the ring are for JS. `first` is 0 unless an
 * express path (ExpressPath) forwarded the entries before it in C.
 */
export type BatchCallback = (count: number, first: number) => void;

interface NativeBinding {
  tapOpen(name: string, slotSize: number, slots: number, flags: number): NativeTapHandle;
  tapStartReading(h: NativeTapHandle, onFrames: BatchCallback, onError: ErrorCallback): void;
  tapStopReading(h: NativeTapHandle): void;
  tapWrite(h: NativeTapHandle, buf: Buffer, offset: number, length: number): boolean;
  tapWriteBatch(h: NativeTapHandle, buf: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number;
  tapClose(h: NativeTapHandle): void;
  udpBind(
    addr: number,
    port: number,
    rcvbuf: number,
    sndbuf: number,
    slots: number,
    slotSize: number,
    flags: number,
  ): NativeUdpHandle;
  udpStartReading(h: NativeUdpHandle, onDatagrams: BatchCallback, onError: ErrorCallback): void;
  udpStopReading(h: NativeUdpHandle): void;
  udpSendBatch(
    h: NativeUdpHandle,
    buf: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    addrs: Uint32Array,
    ports: Uint16Array,
    count: number,
  ): number;
  udpSend(h: NativeUdpHandle, buf: Buffer, offset: number, length: number, addr: number, port: number): boolean;
  udpSendSegmented(
    h: NativeUdpHandle,
    buf: Buffer,
    offset: number,
    length: number,
    segmentSize: number,
    addr: number,
    port: number,
  ): boolean;
  udpClose(h: NativeUdpHandle): void;
  setSchedSlice(ns: number): boolean;
  copyBytes(target: Buffer, targetStart: number, source: Buffer, sourceStart: number, sourceEnd: number): number;
  expressCreate(
    udp: NativeUdpHandle,
    selfHigh: number,
    selfLow: number,
    nowMs: number,
    macMaxAgeMs: number,
    countFlows: boolean,
    thread?: boolean,
    schedSliceNs?: number,
  ): NativeExpressHandle;
  expressAddNetwork(h: NativeExpressHandle, networkId: number, tap: NativeTapHandle): boolean;
  expressRemoveNetwork(h: NativeExpressHandle, networkId: number): void;
  expressSetPeer(
    h: NativeExpressHandle,
    high: number,
    low: number,
    ip: number,
    port: number,
    maxDatagram: number,
    direct: boolean,
    sealed: boolean,
    crypto: NativePeerCryptoHandle | undefined,
  ): boolean;
  expressRemovePeer(h: NativeExpressHandle, high: number, low: number): void;
  expressLearn(
    h: NativeExpressHandle,
    networkId: number,
    macHigh: number,
    macLow: number,
    peerHigh: number,
    peerLow: number,
  ): void;
  expressForgetPeer(h: NativeExpressHandle, high: number, low: number): void;
  expressTake(h: NativeExpressHandle, what: number, out: Float64Array): number;
  expressCounters(h: NativeExpressHandle): [number, number, number, number];
  expressShareFragmentIds(h: NativeExpressHandle, cell: Uint32Array): void;
  expressClose(h: NativeExpressHandle): void;
  trimMemory(): void;
}

// Same relative path from src/native (tsx, vitest) and dist/native (compiled).
const ADDON_PATH = path.join(__dirname, '../../native/build/Release/weavets_native.node');

let binding: NativeBinding | undefined;

/** Loaded on first use, so importing this module never fails on a machine without the build. */
function native(): NativeBinding {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- a native addon loads by path, only through require()
  binding ??= require(ADDON_PATH) as NativeBinding;
  return binding;
}

/**
 * Default TAP slot: the largest frame a TAP without IFF_VNET_HDR can hand us is
 * MTU (max 65535) + 14 (Ethernet) + 4 (a VLAN tag re-inserted from hardware
 * acceleration); with vnetHdr it is a GSO super-frame, whose IPv4/IPv6 packet is
 * still at most 65535 bytes (no BIG TCP: gso_max_size is left at its 64 KiB default),
 * plus the 10-byte virtio_net_hdr: 65535 + 14 + 4 + 10 = 65563. So 65664 (64 KiB +
 * 128, cache-line aligned) never truncates either way. 64 slots of that is 4.2 MB per
 * device. A daemon that pins the MTU and does not use vnetHdr may pass a smaller
 * slotSize (e.g. MTU + 18 rounded up); longer frames then come back with length 0.
 */
export const TAP_DEFAULT_SLOT_SIZE = 65664;
export const TAP_DEFAULT_SLOTS = 64;

/** Bytes of struct virtio_net_hdr (without num_buffers) in front of every frame of a vnetHdr TAP. */
export const VNET_HDR_LEN = 10;
/** TUNSETOFFLOAD bits (linux/if_tun.h), as reported in TapDevice.offloads. */
export const TUN_F_CSUM = 0x01;
export const TUN_F_TSO4 = 0x02;
export const TUN_F_TSO6 = 0x04;
export const TUN_F_TSO_ECN = 0x08;
export const TUN_F_USO4 = 0x20;
export const TUN_F_USO6 = 0x40;
/** virtio_net_hdr.flags bits. */
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
/** virtio_net_hdr.gso_type values (low 7 bits; 0x80 = ECN). */
export const VIRTIO_NET_HDR_GSO_NONE = 0;
export const VIRTIO_NET_HDR_GSO_TCPV4 = 1;
export const VIRTIO_NET_HDR_GSO_TCPV6 = 4;
export const VIRTIO_NET_HDR_GSO_UDP_L4 = 5;
export const VIRTIO_NET_HDR_GSO_ECN = 0x80;
/** The largest IPv4 UDP payload is 65507, so 64 KiB slots never truncate. */
export const UDP_DEFAULT_SLOT_SIZE = 65536;
export const UDP_DEFAULT_SLOTS = 64;
/** Socket buffer default; set with SO_RCVBUFFORCE/SO_SNDBUFFORCE (root), else capped by net.core.*mem_max. */
export const UDP_DEFAULT_BUFFER = 8 * 1024 * 1024;

function checkRing(slotSize: number, slots: number): void {
  if (!Number.isInteger(slotSize) || slotSize < 64 || slotSize > 1 << 20) {
    throw new RangeError(`slotSize must be an integer in 64..1048576, got ${slotSize}`);
  }
  if (!Number.isInteger(slots) || slots < 1 || slots > 1024) {
    throw new RangeError(`slots must be an integer in 1..1024, got ${slots}`);
  }
}

/**
 * A TAP device (IFF_TAP | IFF_NO_PI), non-blocking, read in batches driven by a libuv poll.
 *
 * With `vnetHdr` (IFF_VNET_HDR) every frame read and every frame written starts with a
 * 10-byte struct virtio_net_hdr, little-endian on every host (TUNSETVNETLE):
 *
 *   off 0 u8 flags        VIRTIO_NET_HDR_F_NEEDS_CSUM: the L4 checksum is partial; it
 *                         must be completed at csum_start + csum_offset (a vnetHdr
 *                         TAP on the other side does that if the header travels along)
 *   off 1 u8 gso_type     VIRTIO_NET_HDR_GSO_* (TCPV4 1, TCPV6 4, UDP_L4 5, | 0x80 ECN)
 *   off 2 u16 hdr_len     Ethernet + IP + L4 header bytes (a hint)
 *   off 4 u16 gso_size    payload bytes per segment (the MSS) when gso_type != 0
 *   off 6 u16 csum_start  offset of the L4 header from the Ethernet header
 *   off 8 u16 csum_offset offset of the checksum field from csum_start
 *
 * The frame proper follows at offset 10. A zeroed header writes a plain, fully
 * checksummed frame. A GSO super-frame (up to 10 + 14 + 4 + 65535 bytes) may be written
 * back as read: the kernel segments (or passes it on unsegmented where it can).
 */
export class TapDevice {
  readonly name: string;
  readonly fd: number;
  /** True if frames carry the 10-byte virtio_net_hdr (opened with vnetHdr). */
  readonly vnetHdr: boolean;
  /** TUN_F_* bits the kernel accepted with TUNSETOFFLOAD (0 without vnetHdr). */
  readonly offloads: number;
  /** Receive ring: frame i of a batch is at rxBuf[i*slotSize, i*slotSize+rxLengths[i]). Valid only during the callback. */
  readonly rxBuf: Buffer;
  readonly rxLengths: Uint32Array;
  readonly slotSize: number;
  readonly slots: number;

  private constructor(
    private readonly handle: NativeTapHandle,
    slotSize: number,
    slots: number,
  ) {
    this.name = handle.name;
    this.fd = handle.fd;
    this.vnetHdr = handle.vnetHdr;
    this.offloads = handle.offloads;
    this.rxBuf = handle.rxBuf;
    this.rxLengths = handle.rxLengths;
    this.slotSize = slotSize;
    this.slots = slots;
  }

  /**
   * Creates TAP `name`, or attaches to an existing one of that name (TUNSETIFF).
   * A device created here is not persistent: it disappears on close(). The device
   * lives in this process's network namespace. Defaults: slotSize 65664, slots 64.
   *
   * vnetHdr: IFF_VNET_HDR framing (see the class comment), header size 10,
   * little-endian, and TUNSETOFFLOAD with CSUM|TSO4|TSO6, plus TSO_ECN and USO4|USO6
   * where the kernel accepts them (see `offloads`). Throws if the kernel refuses the
   * base set. Attaching to an existing device with vnetHdr reconfigures it.
   */
  static open(name: string, opts: { slotSize?: number; slots?: number; vnetHdr?: boolean } = {}): TapDevice {
    const slotSize = opts.slotSize ?? TAP_DEFAULT_SLOT_SIZE;
    const slots = opts.slots ?? TAP_DEFAULT_SLOTS;
    checkRing(slotSize, slots);
    if (Buffer.byteLength(name) < 1 || Buffer.byteLength(name) > 15) {
      throw new RangeError(`interface name must be 1..15 bytes, got ${JSON.stringify(name)}`);
    }
    return new TapDevice(native().tapOpen(name, slotSize, slots, opts.vnetHdr === true ? 1 : 0), slotSize, slots);
  }

  /**
   * Start polling; onFrames(count) is called on the JS thread with 1..slots frames
   * read in one go (read() until EAGAIN or slots full). Calling it again replaces
   * the callbacks. While reading, the device keeps the event loop alive.
   *
   * A read error other than EAGAIN (e.g. EBADFD once the device is deleted) stops
   * reading and is passed to onError, or raised as an uncaught exception without one.
   * An exception thrown by onFrames surfaces as an uncaught exception; reading goes on.
   */
  startReading(onFrames: BatchCallback, onError?: (err: NodeJS.ErrnoException) => void): void {
    native().tapStartReading(this.handle, onFrames, onError);
  }

  stopReading(): void {
    native().tapStopReading(this.handle);
  }

  /** The addon's handle, for ExpressPath. */
  static handleOf(tap: TapDevice): NativeTapHandle {
    return tap.handle;
  }

  /** Write one frame; returns false if the kernel queue is full (EAGAIN) – frame dropped. Throws on other errors. */
  write(buf: Buffer, offset: number, length: number): boolean {
    return native().tapWrite(this.handle, buf, offset, length);
  }

  /**
   * Write count frames (one write() each, all in C); returns how many were written.
   * Stops at the first frame that fails: EAGAIN, or any error after the first frame,
   * returns the count so far; any other error on the first frame throws.
   */
  writeBatch(buf: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number {
    return native().tapWriteBatch(this.handle, buf, offsets, lengths, count);
  }

  /** Stops reading and closes the fd. Idempotent. Other methods then throw (code EBADF). */
  close(): void {
    native().tapClose(this.handle);
  }
}

/**
 * An IPv4 UDP socket with recvmmsg/sendmmsg batching, polled by libuv. Addresses are IPv4
 * as unsigned 32-bit numbers in host order (192.0.2.1 -> 0xc0000201); send and
 * sendSegmented also take the same 32 bits as a signed integer (`addr | 0`), which V8
 * passes without allocating where an address of 128.0.0.0 or above would be boxed.
 */
export class UdpBatchSocket {
  /** The bound port (useful when binding port 0). */
  readonly port: number;
  readonly fd: number;
  readonly rxBuf: Buffer;
  readonly rxLengths: Uint32Array;
  readonly rxAddrs: Uint32Array;
  readonly rxPorts: Uint16Array;
  /**
   * Per received datagram: the segment size when the kernel handed over several
   * same-flow segments coalesced into one entry (UDP GRO; the entry is then
   * rxLengths[i] bytes = full segments of this size, the last maybe shorter), else 0.
   * Always 0 without gro.
   */
  readonly rxSegSizes: Uint16Array;
  /** Per received datagram: EXPRESS_RX_OPENED when the express path opened it in place, else 0. */
  readonly rxFlags: Uint8Array;
  /** True if UDP_GRO was requested and the kernel accepted it. */
  readonly gro: boolean;
  readonly slotSize: number;
  readonly slots: number;

  private constructor(
    private readonly handle: NativeUdpHandle,
    slotSize: number,
    slots: number,
  ) {
    this.port = handle.port;
    this.fd = handle.fd;
    this.rxBuf = handle.rxBuf;
    this.rxLengths = handle.rxLengths;
    this.rxAddrs = handle.rxAddrs;
    this.rxPorts = handle.rxPorts;
    this.rxSegSizes = handle.rxSegSizes;
    this.rxFlags = handle.rxFlags;
    this.gro = handle.gro;
    this.slotSize = slotSize;
    this.slots = slots;
  }

  /**
   * Bind an IPv4 UDP socket. No SO_REUSEADDR. Buffers default to 8 MiB each (0 keeps
   * the kernel default); slotSize 65536, slots 64. IP_MTU_DISCOVER stays at the kernel
   * default (IP_PMTUDISC_WANT): oversize datagrams are fragmented locally.
   *
   * gro: setsockopt(UDP_GRO) so the kernel may deliver a train of same-flow segments
   * (a peer's sendSegmented, or GRO on the receiving NIC/veth) as one entry of up to
   * 65535 bytes, with rxSegSizes[i] the segment size; keep slotSize >= 65536 then or
   * coalesced entries come back truncated (length 0). `gro` says if it took.
   */
  static bind(
    address: string,
    port: number,
    opts: { rcvbuf?: number; sndbuf?: number; slots?: number; slotSize?: number; gro?: boolean } = {},
  ): UdpBatchSocket {
    const slotSize = opts.slotSize ?? UDP_DEFAULT_SLOT_SIZE;
    const slots = opts.slots ?? UDP_DEFAULT_SLOTS;
    checkRing(slotSize, slots);
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`bad port ${port}`);
    const h = native().udpBind(
      ipv4ToNumber(address),
      port,
      opts.rcvbuf ?? UDP_DEFAULT_BUFFER,
      opts.sndbuf ?? UDP_DEFAULT_BUFFER,
      slots,
      slotSize,
      opts.gro === true ? 1 : 0,
    );
    return new UdpBatchSocket(h, slotSize, slots);
  }

  /**
   * recvmmsg batches until EAGAIN or slots full; truncated datagrams (MSG_TRUNC) are
   * reported with length 0 so JS drops them. ICMP-induced errors (ECONNREFUSED and
   * the like) are swallowed; other errors stop reading and go to onError, or are
   * raised as an uncaught exception without one.
   */
  startReading(onDatagrams: BatchCallback, onError?: (err: NodeJS.ErrnoException) => void): void {
    native().udpStartReading(this.handle, onDatagrams, onError);
  }

  stopReading(): void {
    native().udpStopReading(this.handle);
  }

  /** The addon's handle, for ExpressPath. */
  static handleOf(socket: UdpBatchSocket): NativeUdpHandle {
    return socket.handle;
  }

  /**
   * sendmmsg; returns how many were sent (stops early on EAGAIN/ENOBUFS). Throws
   * (Error.code e.g. "EMSGSIZE", "ENETUNREACH") only if the first message fails with
   * another error; for a later failure returns the count sent so far. To retry the
   * rest, pass subarrays starting at the returned index.
   */
  sendBatch(
    buf: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    addrs: Uint32Array,
    ports: Uint16Array,
    count: number,
  ): number {
    return native().udpSendBatch(this.handle, buf, offsets, lengths, addrs, ports, count);
  }

  /** One datagram; returns false on EAGAIN (or ENOBUFS). */
  send(buf: Buffer, offset: number, length: number, addr: number, port: number): boolean {
    return native().udpSend(this.handle, buf, offset, length, addr, port);
  }

  /**
   * UDP GSO (UDP_SEGMENT cmsg): send buf[offset..offset+length) as datagrams of
   * segmentSize bytes (last may be shorter) to one destination in one syscall.
   * Returns false on EAGAIN (or ENOBUFS). Throws EIO/EINVAL etc. if the kernel refuses
   * (more than 64 segments, segment larger than the route MTU, xfrm route); the caller
   * then falls back to sendBatch.
   */
  sendSegmented(buf: Buffer, offset: number, length: number, segmentSize: number, addr: number, port: number): boolean {
    return native().udpSendSegmented(this.handle, buf, offset, length, segmentSize, addr, port);
  }

  /** Stops reading and closes the socket. Idempotent. Other methods then throw (code EBADF). */
  close(): void {
    native().udpClose(this.handle);
  }
}

/**
 * Ask for a short EEVDF slice (sched_setattr SCHED_OTHER with sched_runtime = `ns`) for
 * the calling thread, keeping its nice value. A thread woken by a packet on a busy CPU
 * then gets an early virtual deadline and preempts the running task instead of waiting
 * behind it; its CPU share is unchanged. Returns false where the kernel has no custom
 * slices (before Linux 6.12) or refuses; the kernel clamps ns to 0.1..100 ms (0 resets
 * the default). Throws on other errors.
 */
export function setSchedSlice(ns: number): boolean {
  return native().setSchedSlice(ns);
}

/**
 * Give spare memory back to the kernel: V8 starts an incremental, memory-reducing
 * collection (moderate memory pressure), which releases the pages it empties when it
 * finishes on later turns of the event loop, and glibc returns the free pages of its
 * arenas now (malloc_trim). The call itself took 1.4 ms in a test process; the collection
 * ends in one pause, under 10 ms measured on a 25-host daemon (src/daemon/memory-trim.ts).
 */
export function trimMemory(): void {
  native().trimMemory();
}

/**
 * Copy source[sourceStart, sourceEnd) to target at targetStart (memmove; the two may
 * overlap) and return the count. Unlike Buffer.prototype.copy on Node 20, which makes a
 * new Uint8Array view of the source whenever the copy does not start at its first byte,
 * this allocates nothing on the JS heap: the sleeve copies every frame with it. Throws a
 * RangeError when either range reaches past its buffer (nothing is clipped).
 */
export function copyBytes(
  target: Buffer,
  targetStart: number,
  source: Buffer,
  sourceStart: number,
  sourceEnd: number,
): number {
  return (binding ?? native()).copyBytes(target, targetStart, source, sourceStart, sourceEnd);
}

/** rxFlags value: the express path opened this SEALED datagram in place (native/src/express.h). */
export const EXPRESS_RX_OPENED = 1;

/** What ExpressPath.take drains, and the doubles per entry (native/src/express.h). */
export const enum ExpressTake {
  /** peerHigh, peerLow, framesIn, bytesIn, framesOut, bytesOut */
  Peers = 0,
  /** networkId, framesFromBridge, framesToBridge */
  Networks = 1,
  /** networkId, srcHigh, srcLow, dstHigh, dstLow, frames, bytes */
  Flows = 2,
  /** networkId, macHigh, macLow, peerHigh, peerLow, seenMs */
  Seen = 3,
  /** where (0 UDP send, 1 TAP write), errno (0: queue full), count */
  Drops = 4,
}

export const EXPRESS_ENTRY_LENGTH: Readonly<Record<ExpressTake, number>> = [6, 3, 7, 6, 3];

/** How ExpressPath.create sets a path up. */
export interface ExpressOptions {
  nowMs: number;
  macMaxAgeMs: number;
  countFlows: boolean;
  /** Batches on a native thread of the path's own, not the event loop. */
  thread?: boolean;
  /** That thread's scheduler slice in ns (setSchedSlice); 0 or absent: the default. */
  schedSliceNs?: number;
}

/** What the express path may do for one peer (ExpressPath.setPeer). */
export interface ExpressPeer {
  /** Underlay IPv4 address, host order, and UDP port. */
  ip: number;
  port: number;
  /** Largest datagram towards the peer (its path MTU minus IP and UDP). */
  maxDatagram: number;
  /** Frames for this peer may go straight to it. */
  direct: boolean;
  sealed: boolean;
  /** The peer's sealing state (NativePeerCrypto's handle) when sealed. */
  crypto?: NativePeerCryptoHandle | undefined;
}

/**
 * The sleeve's express path (native/src/express.c): a cache of the sleeve's forwarding
 * decisions that the addon applies to each receive batch in C before JS sees it, so the
 * common unicast frame between two directly connected peers never enters JS. It hooks
 * into the UDP socket and each TAP added; the callbacks of those then get `first` > 0
 * when entries were taken. Names and MACs cross as 24-bit halves (src/net/halves.ts).
 */
export class ExpressPath {
  private constructor(private readonly handle: NativeExpressHandle) {}

  /**
   * nowMs: the caller's clock now (the path reads the monotonic clock with this offset).
   * thread: run the batches on a native data path thread of the path's own
   * (native/src/iothread.c) instead of the event loop, asking for a schedSliceNs scheduler
   * slice for it (0: the kernel's default); throws when the thread cannot start.
   */
  static create(socket: UdpBatchSocket, self: { high: number; low: number }, opts: ExpressOptions): ExpressPath {
    return new ExpressPath(
      native().expressCreate(
        UdpBatchSocket.handleOf(socket),
        self.high,
        self.low,
        opts.nowMs,
        opts.macMaxAgeMs,
        opts.countFlows,
        opts.thread ?? false,
        opts.schedSliceNs ?? 0,
      ),
    );
  }

  /** Carry a network's TAP (opened with vnetHdr); false when the path is full (the network stays on JS). */
  addNetwork(networkId: number, tap: TapDevice): boolean {
    if (!tap.vnetHdr) throw new RangeError('the express path needs a TAP opened with vnetHdr');
    return native().expressAddNetwork(this.handle, networkId, TapDevice.handleOf(tap));
  }

  /** Before the TAP closes. */
  removeNetwork(networkId: number): void {
    native().expressRemoveNetwork(this.handle, networkId);
  }

  /**
   * What the path may do with a peer: `direct` lets it send frames for the peer straight
   * to ip:port in datagrams of at most maxDatagram bytes. A sealed peer's datagrams are
   * sealed and opened with `crypto`, the peer's one sealing state (NativePeerCrypto's
   * handle); a sealed peer without it is left to JS. False when the table is full (the
   * peer stays on JS).
   */
  setPeer(high: number, low: number, peer: ExpressPeer): boolean {
    return native().expressSetPeer(
      this.handle,
      high,
      low,
      peer.ip,
      peer.port,
      peer.maxDatagram,
      peer.direct,
      peer.sealed,
      peer.crypto,
    );
  }

  removePeer(high: number, low: number): void {
    native().expressRemovePeer(this.handle, high, low);
  }

  /** The MAC with these halves lives behind this peer on the network (seen now). */
  learn(networkId: number, macHigh: number, macLow: number, peerHigh: number, peerLow: number): void {
    native().expressLearn(this.handle, networkId, macHigh, macLow, peerHigh, peerLow);
  }

  /** Forget every MAC cached behind this peer. */
  forgetPeer(high: number, low: number): void {
    native().expressForgetPeer(this.handle, high, low);
  }

  /** Drain up to out.length / EXPRESS_ENTRY_LENGTH[what] entries into out; returns how many. */
  take(what: ExpressTake, out: Float64Array): number {
    return native().expressTake(this.handle, what, out);
  }

  /**
   * Frames sent and delivered by the path since it was created; of those, the
   * super-frames it sent as fragment series and rebuilt from them.
   */
  counters(): { sent: number; delivered: number; superframesSent: number; superframesDelivered: number } {
    const [sent, delivered, superframesSent, superframesDelivered] = native().expressCounters(this.handle);
    return { sent, delivered, superframesSent, superframesDelivered };
  }

  /**
   * Take fragment ids from cell[0], the counter the JS path's fragment series use too, so
   * that one sender numbers its series from one sequence. The cell must be backed by an
   * ArrayBuffer of its own (off the V8 heap, so it never moves); the path keeps it alive.
   */
  shareFragmentIds(cell: Uint32Array): void {
    native().expressShareFragmentIds(this.handle, cell);
  }

  /** Unhook from the socket and TAPs. Idempotent. */
  close(): void {
    native().expressClose(this.handle);
  }
}

/** Dotted quad to a host-order unsigned 32-bit number ("192.0.2.1" -> 0xc0000201). Throws on bad input (src/net/ipv4.ts). */
export function ipv4ToNumber(text: string): number {
  return parseIpv4(text);
}

/** Host-order unsigned 32-bit number to a dotted quad. Throws if n is not a uint32. */
export function numberToIpv4(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`not a uint32: ${n}`);
  return formatIpv4(n);
}
