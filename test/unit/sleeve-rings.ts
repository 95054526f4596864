/**
 * In-memory TAP and UDP rings for the sleeve (the interfaces of
 * src/datapath/sleeve/ports.ts), in the manner of wireguard-go's tun/tuntest and
 * conn/bindtest: several sleeves run in one process, without root, and every byte that
 * crosses the "underlay" or reaches a "bridge" is there to assert on.
 *
 * Delivery is asynchronous like the kernel's: a send copies the datagram into the
 * receiver's queue, and the receiver's ring hands the queue over in batches from a
 * setImmediate, never inside the send. UDP GSO sends arrive coalesced (GRO) or split, as
 * the receiving ring is configured.
 */
import { ipv4ToNumber, numberToIpv4 } from '../../src/native';
import type { OverlayNetwork } from '../../src/router/overlay';
import type { SleeveLinks, TapRing, UdpRing } from '../../src/datapath/sleeve/ports';

interface Inbound {
  data: Buffer;
  fromIp: number;
  fromPort: number;
  /** Segment size of a coalesced train, else 0. */
  seg: number;
}

/** One datagram on the wire, as the underlay's filter sees it. */
export interface WireDatagram {
  from: string;
  to: string;
  data: Buffer;
}

/** The wire between MemoryUdpRings: address:port -> ring, with a filter to drop or alter datagrams. */
export class MemoryUnderlay {
  private readonly rings = new Map<string, MemoryUdpRing>();
  /** Every datagram handed to the wire (copies), in order. */
  readonly log: WireDatagram[] = [];
  /** Return null to lose the datagram, or the bytes to deliver instead. */
  filter: ((d: WireDatagram) => Buffer | null) | undefined;

  attach(ring: MemoryUdpRing): void {
    this.rings.set(`${ring.ip}:${ring.port}`, ring);
  }

  detach(ring: MemoryUdpRing): void {
    this.rings.delete(`${ring.ip}:${ring.port}`);
  }

  /** Carry one datagram (or a GSO train with segment size `seg`). */
  carry(from: MemoryUdpRing, data: Buffer, addr: number, port: number, seg: number): void {
    const to = `${numberToIpv4(addr)}:${port}`;
    const segments = seg === 0 ? [data] : splitBy(data, seg);
    const passed: Buffer[] = [];
    for (const s of segments) {
      const d: WireDatagram = { from: `${from.ip}:${from.port}`, to, data: Buffer.from(s) };
      this.log.push(d);
      const out = this.filter === undefined ? d.data : this.filter(d);
      if (out !== null) passed.push(out);
    }
    const ring = this.rings.get(to);
    if (ring === undefined || passed.length === 0) return;
    const fromIp = ipv4ToNumber(from.ip);
    if (seg !== 0 && ring.gro && passed.length === segments.length) {
      ring.enqueue({ data: Buffer.concat(passed), fromIp, fromPort: from.port, seg });
    } else {
      for (const p of passed) ring.enqueue({ data: p, fromIp, fromPort: from.port, seg: 0 });
    }
  }

  /** True while any ring holds datagrams not yet handed to its reader. */
  busy(): boolean {
    for (const r of this.rings.values()) if (r.pending()) return true;
    return false;
  }
}

function splitBy(data: Buffer, seg: number): Buffer[] {
  const out: Buffer[] = [];
  for (let o = 0; o < data.length; o += seg) out.push(data.subarray(o, Math.min(o + seg, data.length)));
  return out;
}

export class MemoryUdpRing implements UdpRing {
  readonly rxBuf: Buffer;
  readonly rxLengths: Uint32Array;
  readonly rxAddrs: Uint32Array;
  readonly rxPorts: Uint16Array;
  readonly rxSegSizes: Uint16Array;
  /** No express path in memory: always 0. */
  readonly rxFlags: Uint8Array;
  readonly slots: number;
  readonly slotSize = 65536;
  /** Coalesce GSO trains into one entry (UDP GRO). */
  readonly gro: boolean;
  /** sendSegmented works (UDP GSO); without it, it throws EIO as an old kernel does. */
  readonly gso: boolean;
  gsoSends = 0;
  private queue: Inbound[] = [];
  private onDatagrams: ((count: number, first: number) => void) | undefined;
  private scheduled = false;
  private closed = false;

  constructor(
    private readonly underlay: MemoryUnderlay,
    readonly ip: string,
    readonly port: number,
    opts: { gro?: boolean; gso?: boolean; slots?: number } = {},
  ) {
    this.gro = opts.gro ?? true;
    this.gso = opts.gso ?? true;
    this.slots = opts.slots ?? 64;
    this.rxBuf = Buffer.alloc(this.slots * this.slotSize);
    this.rxLengths = new Uint32Array(this.slots);
    this.rxAddrs = new Uint32Array(this.slots);
    this.rxPorts = new Uint16Array(this.slots);
    this.rxSegSizes = new Uint16Array(this.slots);
    this.rxFlags = new Uint8Array(this.slots);
    underlay.attach(this);
  }

  startReading(onDatagrams: (count: number, first: number) => void): void {
    this.onDatagrams = onDatagrams;
    this.schedule();
  }

  stopReading(): void {
    this.onDatagrams = undefined;
  }

  sendBatch(
    buf: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    addrs: Uint32Array,
    ports: Uint16Array,
    count: number,
  ): number {
    this.checkOpen();
    for (let i = 0; i < count; i++) {
      const off = offsets[i]!;
      this.underlay.carry(this, buf.subarray(off, off + lengths[i]!), addrs[i]!, ports[i]!, 0);
    }
    return count;
  }

  send(buf: Buffer, offset: number, length: number, addr: number, port: number): boolean {
    this.checkOpen();
    this.underlay.carry(this, buf.subarray(offset, offset + length), addr >>> 0, port, 0);
    return true;
  }

  sendSegmented(buf: Buffer, offset: number, length: number, segmentSize: number, addr: number, port: number): boolean {
    this.checkOpen();
    if (!this.gso) throw Object.assign(new Error('sendmsg: UDP_SEGMENT refused'), { code: 'EIO' });
    this.gsoSends++;
    this.underlay.carry(this, buf.subarray(offset, offset + length), addr >>> 0, port, segmentSize);
    return true;
  }

  close(): void {
    this.closed = true;
    this.onDatagrams = undefined;
    this.underlay.detach(this);
  }

  enqueue(d: Inbound): void {
    if (this.closed) return;
    this.queue.push(d);
    this.schedule();
  }

  pending(): boolean {
    return this.queue.length > 0 && this.onDatagrams !== undefined;
  }

  private checkOpen(): void {
    if (this.closed) throw Object.assign(new Error('socket closed'), { code: 'EBADF' });
  }

  private schedule(): void {
    if (this.scheduled || this.queue.length === 0 || this.onDatagrams === undefined) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.drain();
    });
  }

  /** One batch, as recvmmsg would hand it over: up to `slots` entries. */
  private drain(): void {
    const cb = this.onDatagrams;
    if (cb === undefined) return;
    const batch = this.queue.splice(0, this.slots);
    batch.forEach((d, i) => {
      const fits = d.data.length <= this.slotSize;
      if (fits) d.data.copy(this.rxBuf, i * this.slotSize);
      this.rxLengths[i] = fits ? d.data.length : 0;
      this.rxAddrs[i] = d.fromIp;
      this.rxPorts[i] = d.fromPort;
      this.rxSegSizes[i] = d.seg;
    });
    if (batch.length > 0) cb(batch.length, 0);
    this.schedule();
  }
}

/** A TAP: frames injected as if the bridge handed them over; frames written are kept. */
export class MemoryTapRing implements TapRing {
  readonly slots = 64;
  readonly slotSize = 65664;
  readonly rxBuf = Buffer.alloc(this.slots * this.slotSize);
  readonly rxLengths = new Uint32Array(this.slots);
  /** Every frame the sleeve wrote to this TAP (offload block + frame), copied. */
  readonly written: Buffer[] = [];
  closed = false;
  private queue: Buffer[] = [];
  private onFrames: ((count: number, first: number) => void) | undefined;
  private scheduled = false;

  constructor(readonly name: string) {}

  /** A frame from the bridge: the 10-byte offload block, then the Ethernet frame. */
  inject(offloadAndFrame: Buffer): void {
    this.queue.push(Buffer.from(offloadAndFrame));
    this.schedule();
  }

  startReading(onFrames: (count: number, first: number) => void): void {
    this.onFrames = onFrames;
    this.schedule();
  }

  stopReading(): void {
    this.onFrames = undefined;
  }

  write(buf: Buffer, offset: number, length: number): boolean {
    if (this.closed) throw Object.assign(new Error('tap closed'), { code: 'EBADF' });
    this.written.push(Buffer.from(buf.subarray(offset, offset + length)));
    return true;
  }

  writeBatch(buf: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number {
    for (let i = 0; i < count; i++) this.write(buf, offsets[i]!, lengths[i]!);
    return count;
  }

  close(): void {
    this.closed = true;
    this.onFrames = undefined;
  }

  pending(): boolean {
    return this.queue.length > 0 && this.onFrames !== undefined;
  }

  private schedule(): void {
    if (this.scheduled || this.queue.length === 0 || this.onFrames === undefined) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      const cb = this.onFrames;
      if (cb === undefined) return;
      const batch = this.queue.splice(0, this.slots);
      batch.forEach((f, i) => {
        f.copy(this.rxBuf, i * this.slotSize);
        this.rxLengths[i] = f.length;
      });
      if (batch.length > 0) cb(batch.length, 0);
      this.schedule();
    });
  }
}

/** Links of one in-memory host: TAPs by name, a fixed route MTU. */
export class MemoryLinks implements SleeveLinks {
  readonly taps = new Map<string, MemoryTapRing>();
  readonly networks = new Map<string, OverlayNetwork>();

  constructor(private readonly routeMtu = 1500) {}

  openTap(name: string, net: OverlayNetwork): Promise<TapRing> {
    const tap = new MemoryTapRing(name);
    this.taps.set(name, tap);
    this.networks.set(name, net);
    return Promise.resolve(tap);
  }

  closeTap(name: string, tap: TapRing): Promise<void> {
    tap.stopReading();
    tap.close();
    this.taps.delete(name);
    return Promise.resolve();
  }

  mtuTowards(): Promise<number> {
    return Promise.resolve(this.routeMtu);
  }

  /** The TAP of network `id` (tapNameFor naming). */
  tap(name: string): MemoryTapRing {
    const t = this.taps.get(name);
    if (t === undefined) throw new Error(`no TAP ${name}`);
    return t;
  }

  pending(): boolean {
    for (const t of this.taps.values()) if (t.pending()) return true;
    return false;
  }
}
