/**
 * What the sleeve needs from the outside world, as small interfaces: a TAP ring per
 * network, one UDP ring, and the few link operations around them. In production the
 * native addon (src/native) and netlink implement them (`kernelLinks`); unit tests
 * implement them with in-memory rings (test/unit/sleeve-rings.ts), so several sleeves run
 * in one process without root, as wireguard-go's tun/tuntest and conn/bindtest do.
 *
 * Receive model, both rings: entry i of a batch is rxBuf[i * slotSize, i * slotSize +
 * rxLengths[i]), valid only during the callback; a length of 0 is an entry that did not
 * fit its slot (dropped as truncated). src/native/index.ts documents the details.
 */
import {
  ExpressPath,
  TapDevice,
  UdpBatchSocket,
  type ExpressOptions,
  type ExpressPeer,
  type ExpressTake,
} from '../../native';
import type { Netlink } from '../../netlink';
import type { OverlayNetwork } from '../../router/overlay';

/** A TAP with the 10-byte virtio-net header in front of every frame read or written. */
export interface TapRing {
  readonly rxBuf: Buffer;
  readonly rxLengths: Uint32Array;
  readonly slotSize: number;
  /**
   * onFrames(count, first) is called with 1..slots frames read in one go; entries before
   * `first` were forwarded by the express path and are not for JS.
   */
  startReading(onFrames: (count: number, first: number) => void): void;
  stopReading(): void;
  /** One frame; false when the kernel queue is full (the frame is dropped). Throws on other errors. */
  write(buf: Buffer, offset: number, length: number): boolean;
  /** count frames at buf[offsets[i], offsets[i] + lengths[i]); returns how many were taken. */
  writeBatch(buf: Buffer, offsets: Uint32Array, lengths: Uint32Array, count: number): number;
  close(): void;
}

/**
 * A UDP socket read and written in batches. Addresses are IPv4 as host-order uint32;
 * send and sendSegmented also take them as the signed int32 of the same bits (`addr | 0`:
 * no heap number per send for addresses of 128.0.0.0 and above).
 */
export interface UdpRing {
  /** The bound port. */
  readonly port: number;
  readonly rxBuf: Buffer;
  readonly rxLengths: Uint32Array;
  readonly rxAddrs: Uint32Array;
  /** Per entry: the segment size when several datagrams arrived coalesced (UDP GRO), else 0. */
  readonly rxSegSizes: Uint16Array;
  /** Per entry: EXPRESS_RX_OPENED when the express path opened this SEALED datagram in place, else 0. */
  readonly rxFlags: Uint8Array;
  readonly slotSize: number;
  /** As TapRing.startReading: entries [first, count) are for JS. */
  startReading(onDatagrams: (count: number, first: number) => void): void;
  stopReading(): void;
  /** sendmmsg: returns how many were sent; throws only if the first fails with other than a full queue. */
  sendBatch(
    buf: Buffer,
    offsets: Uint32Array,
    lengths: Uint32Array,
    addrs: Uint32Array,
    ports: Uint16Array,
    count: number,
  ): number;
  /** One datagram; false when the queue is full. */
  send(buf: Buffer, offset: number, length: number, addr: number, port: number): boolean;
  /** UDP GSO: buf[offset, offset+length) as datagrams of segmentSize bytes; throws if unsupported. */
  sendSegmented(buf: Buffer, offset: number, length: number, segmentSize: number, addr: number, port: number): boolean;
  close(): void;
}

/**
 * The express path (native/src/express.c) as the sleeve drives it: the cache of its
 * forwarding decisions that the addon applies in C before a batch reaches JS. Production
 * only; unit tests' in-memory rings run without one.
 */
export interface ExpressPort {
  /** Take the TAP's frames too; false when it cannot (the network stays on JS). */
  addNetwork(networkId: number, tap: TapRing): boolean;
  removeNetwork(networkId: number): void;
  setPeer(high: number, low: number, peer: ExpressPeer): boolean;
  removePeer(high: number, low: number): void;
  learn(networkId: number, macHigh: number, macLow: number, peerHigh: number, peerLow: number): void;
  forgetPeer(high: number, low: number): void;
  take(what: ExpressTake, out: Float64Array): number;
  counters(): { sent: number; delivered: number; superframesSent: number; superframesDelivered: number };
  /** Number fragment series from cell[0], the counter the JS path uses (one sequence per sender). */
  shareFragmentIds(cell: Uint32Array): void;
  close(): void;
}

/** The production express path, hooked into the native socket (and the native TAPs added). */
export function kernelExpress(
  socket: UdpBatchSocket,
  self: { high: number; low: number },
  opts: ExpressOptions,
): ExpressPort {
  const path = ExpressPath.create(socket, self, opts);
  return {
    addNetwork: (networkId, tap) => tap instanceof TapDevice && path.addNetwork(networkId, tap),
    removeNetwork: (networkId) => path.removeNetwork(networkId),
    setPeer: (high, low, peer) => path.setPeer(high, low, peer),
    removePeer: (high, low) => path.removePeer(high, low),
    learn: (networkId, macHigh, macLow, peerHigh, peerLow) => path.learn(networkId, macHigh, macLow, peerHigh, peerLow),
    forgetPeer: (high, low) => path.forgetPeer(high, low),
    take: (what, out) => path.take(what, out),
    counters: () => path.counters(),
    shareFragmentIds: (cell) => path.shareFragmentIds(cell),
    close: () => path.close(),
  };
}

/** Link operations around the rings. */
export interface SleeveLinks {
  /** Open (creating) TAP `name` with the virtio-net header, at the network's MTU, on its bridge, up. */
  openTap(name: string, net: OverlayNetwork): Promise<TapRing>;
  /** Close the TAP and make sure its link is gone. */
  closeTap(name: string, tap: TapRing): Promise<void>;
  /** The route MTU towards an underlay address. */
  mtuTowards(ip: string): Promise<number>;
}

/** The production links: the native addon's TAP, configured through netlink. */
export function kernelLinks(netlink: Netlink): SleeveLinks {
  return {
    async openTap(name, net) {
      // With the virtio-net header and TSO offloads the kernel hands us TCP super-frames
      // of up to 64 KiB and takes them back the same way: one read, one record, one write
      // instead of dozens.
      const tap = TapDevice.open(name, { vnetHdr: true });
      try {
        await netlink.setMtu(name, net.mtu);
        await netlink.setMaster(name, net.bridge);
        await netlink.setUp(name);
      } catch (err) {
        tap.close();
        throw err;
      }
      return tap;
    },
    async closeTap(name, tap) {
      tap.stopReading();
      tap.close();
      // A non-persistent TAP disappears with its last fd; delete anyway in case it lingers.
      await netlink.deleteLink(name, { ignoreMissing: true });
    },
    mtuTowards: (ip) => netlink.mtuTowards(ip),
  };
}
