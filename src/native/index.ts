/**
 * Typed face of the N-API addon (native/src/tap.c, native/src/udp.c): a TAP device and
 * an IPv4 UDP socket, both read in batches driven by a libuv poll, written with one
 * syscall per batch where the kernel allows it. Framing, routing and crypto stay in
 * TypeScript; this module only moves bytes.
 *
 * Receive model (both classes): the addon owns a ring of `slots` slots of `slotSize`
 * bytes, allocated once. When the fd becomes readable it reads until EAGAIN or until
 * every slot is full, then calls the callback once with the count. Entry i of a batch
 * is `rxBuf[i * slotSize, i * slotSize + rxLengths[i])`; the ring is reused by the next
 * batch, so copy out anything kept beyond the callback. A length of 0 marks an entry
 * that did not fit its slot (truncated): drop it.
 */
import * as path from 'path';

/** The JS object the addon hands back; opaque apart from these fields. */
interface NativeTapHandle {
  readonly name: string;
  readonly fd: number;
  readonly rxBuf: Buffer;
  readonly rxLengths: Uint32Array;
}

interface NativeUdpHandle {
  readonly fd: number;
  readonly port: number;
  readonly rxBuf: Buffer;
  readonly rxLengths: Uint32Array;
  readonly rxAddrs: Uint32Array;
  readonly rxPorts: Uint16Array;
}

type ErrorCallback = ((err: NodeJS.ErrnoException) => void) | undefined;

interface NativeBinding {
  tapOpen(name: string, slotSize: number, slots: number): NativeTapHandle;
  tapStartReading(h: NativeTapHandle, onFrames: (count: number) => void, onError: ErrorCallback): void;
  tapStopReading(h: NativeTapHandle): void;
  tapWrite(h: NativeTapHandle, buf: Buffer, offset: number, length: number): boolean;
  tapWriteBatch(h: NativeTapHandle, buf: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number;
  tapClose(h: NativeTapHandle): void;
  udpBind(addr: number, port: number, rcvbuf: number, sndbuf: number, slots: number, slotSize: number): NativeUdpHandle;
  udpStartReading(h: NativeUdpHandle, onDatagrams: (count: number) => void, onError: ErrorCallback): void;
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
}

// Same relative path from src/native (tsx, vitest) and dist/native (compiled).
const ADDON_PATH = path.join(__dirname, '../../native/build/Release/weavets_native.node');

let binding: NativeBinding | undefined;

/** Loaded on first use, so importing this module never fails on a machine without the build. */
function native(): NativeBinding {
  binding ??= require(ADDON_PATH) as NativeBinding;
  return binding;
}

/**
 * Default TAP slot: the largest frame a TAP without IFF_VNET_HDR can hand us is
 * MTU (max 65535) + 14 (Ethernet) + 4 (a VLAN tag re-inserted from hardware
 * acceleration), so 65664 (64 KiB + 128, cache-line aligned) never truncates.
 * 64 slots of that is 4.2 MB per device. A daemon that pins the MTU may pass a
 * smaller slotSize (e.g. MTU + 18 rounded up); longer frames then come back with
 * length 0.
 */
export const TAP_DEFAULT_SLOT_SIZE = 65664;
export const TAP_DEFAULT_SLOTS = 64;
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

/** A TAP device (IFF_TAP | IFF_NO_PI), non-blocking, read in batches driven by a libuv poll. */
export class TapDevice {
  readonly name: string;
  readonly fd: number;
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
    this.rxBuf = handle.rxBuf;
    this.rxLengths = handle.rxLengths;
    this.slotSize = slotSize;
    this.slots = slots;
  }

  /**
   * Creates TAP `name`, or attaches to an existing one of that name (TUNSETIFF).
   * A device created here is not persistent: it disappears on close(). The device
   * lives in this process's network namespace. Defaults: slotSize 65664, slots 64.
   */
  static open(name: string, opts: { slotSize?: number; slots?: number } = {}): TapDevice {
    const slotSize = opts.slotSize ?? TAP_DEFAULT_SLOT_SIZE;
    const slots = opts.slots ?? TAP_DEFAULT_SLOTS;
    checkRing(slotSize, slots);
    if (Buffer.byteLength(name) < 1 || Buffer.byteLength(name) > 15) {
      throw new RangeError(`interface name must be 1..15 bytes, got ${JSON.stringify(name)}`);
    }
    return new TapDevice(native().tapOpen(name, slotSize, slots), slotSize, slots);
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
  startReading(onFrames: (count: number) => void, onError?: (err: NodeJS.ErrnoException) => void): void {
    native().tapStartReading(this.handle, onFrames, onError);
  }

  stopReading(): void {
    native().tapStopReading(this.handle);
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

/** An IPv4 UDP socket with recvmmsg/sendmmsg batching, polled by libuv. Addresses are IPv4 as unsigned 32-bit numbers in host order (192.0.2.1 -> 0xc0000201). */
export class UdpBatchSocket {
  /** The bound port (useful when binding port 0). */
  readonly port: number;
  readonly fd: number;
  readonly rxBuf: Buffer;
  readonly rxLengths: Uint32Array;
  readonly rxAddrs: Uint32Array;
  readonly rxPorts: Uint16Array;
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
    this.slotSize = slotSize;
    this.slots = slots;
  }

  /**
   * Bind an IPv4 UDP socket. No SO_REUSEADDR. Buffers default to 8 MiB each (0 keeps
   * the kernel default); slotSize 65536, slots 64. IP_MTU_DISCOVER stays at the kernel
   * default (IP_PMTUDISC_WANT): oversize datagrams are fragmented locally.
   */
  static bind(
    address: string,
    port: number,
    opts: { rcvbuf?: number; sndbuf?: number; slots?: number; slotSize?: number } = {},
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
    );
    return new UdpBatchSocket(h, slotSize, slots);
  }

  /**
   * recvmmsg batches until EAGAIN or slots full; truncated datagrams (MSG_TRUNC) are
   * reported with length 0 so JS drops them. ICMP-induced errors (ECONNREFUSED and
   * the like) are swallowed; other errors stop reading and go to onError, or are
   * raised as an uncaught exception without one.
   */
  startReading(onDatagrams: (count: number) => void, onError?: (err: NodeJS.ErrnoException) => void): void {
    native().udpStartReading(this.handle, onDatagrams, onError);
  }

  stopReading(): void {
    native().udpStopReading(this.handle);
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

const IPV4_PART = /^(0|[1-9][0-9]{0,2})$/;

/** Dotted quad to a host-order unsigned 32-bit number ("192.0.2.1" -> 0xc0000201). Throws on bad input. */
export function ipv4ToNumber(text: string): number {
  const parts = text.split('.');
  if (parts.length !== 4) throw new TypeError(`not an IPv4 address: ${JSON.stringify(text)}`);
  let n = 0;
  for (const part of parts) {
    const v = IPV4_PART.test(part) ? Number(part) : NaN;
    if (!(v <= 255)) throw new TypeError(`not an IPv4 address: ${JSON.stringify(text)}`);
    n = n * 256 + v;
  }
  return n;
}

/** Host-order unsigned 32-bit number to a dotted quad. Throws if n is not a uint32. */
export function numberToIpv4(n: number): string {
  if (!Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new RangeError(`not a uint32: ${n}`);
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}
