/**
 * Sleeve: the userspace data path. Frames read from a TAP port on each network's bridge
 * are packed, several per UDP datagram up to the path MTU, and sent to the next hop
 * towards the peer owning the destination MAC; unknown and broadcast destinations follow
 * the broadcast tree. Datagrams received are unpacked, delivered to the local bridge
 * and/or relayed onwards.
 *
 * The hot path is the two batch callbacks (onTapFrames, onDatagrams): they work on the
 * native rings in place, queue into a fixed transmit arena, and end the batch with one
 * sendmmsg and one batched TAP write. No per-frame allocation, closure or promise.
 */
import { TapDevice, UdpBatchSocket, ipv4ToNumber, numberToIpv4, setSchedSlice } from '../../native';
import type { Netlink } from '../../netlink';
import type { Logger } from '../../log';
import { isMulticastMac, readMac } from '../../net/mac';
import { MacTable } from '../../net/mactable';
import { readPeerName, writePeerName, NO_PEER, type PeerName } from '../../net/peername';
import type {
  Datapath,
  DatapathEvents,
  OverlayNetwork,
  PeerPathStatus,
  ProbeListener,
  RouteTable,
} from '../../router/overlay';
import { tapLinkName } from '../../net/links';
import { PROBE_NETWORK_ID, type FrameCounter } from '../../router/overlay';
import type { Sealer } from '../../crypto/seal';
import { PeerCrypto, SEAL_UNIT_OVERHEAD } from './peer-crypto';
import {
  DATAGRAM_HEADER_LENGTH,
  DatagramKind,
  FRAGMENT_HEADER_LENGTH,
  FRAME_RECORD_HEADER_LENGTH,
  HEARTBEAT_BODY_LENGTH,
  MAX_HOPS,
  MAX_REASSEMBLED,
  OFFLOAD_LENGTH,
  RECORD_OFFLOAD_OFFSET,
  SEALED_HEADER_LENGTH,
  HOPS_MASK,
  KERNEL_COPY_FLAG,
  checkHeader,
  checkRecords,
  writeDatagramHeader,
  writeFragmentHeader,
  writeFrameRecordHeader,
  type DropReason,
} from './codec';

/** IPv4 + UDP headers: what the underlay adds around our datagram. */
export const UDP_IP_OVERHEAD = 28;
/**
 * Bytes the sleeve adds around one Ethernet frame's payload in the worst case: IP+UDP,
 * datagram header, record header (with its offload block), the inner Ethernet header,
 * and 40 bytes kept for the encryption envelope so turning encryption on never changes
 * container MTUs.
 */
export const SLEEVE_OVERHEAD = UDP_IP_OVERHEAD + DATAGRAM_HEADER_LENGTH + FRAME_RECORD_HEADER_LENGTH + 14 + 40;
/** The kernel refuses a UDP GSO send of more segments or bytes than this. */
const GSO_MAX_SEGMENTS = 64;
const GSO_MAX_BYTES = 65507;

const TX_SLOTS = 128;
const TX_SLOT_SIZE = 65536;
const TAP_WRITE_CAPACITY = 1024;
const HEARTBEAT_INTERVAL_MS = 1000;
const HEARTBEAT_FAST_MS = 200;
/**
 * The EEVDF slice the daemon's event loop thread asks for (the kernel's minimum). Every
 * frame costs the sleeve a wake-up on each host; on a busy CPU a woken thread with the
 * default slice (0.7-3 ms) queues behind the running task, with a short one it preempts
 * it (bench/latency.ts measures the run-queue wait per wake-up).
 */
const SCHED_SLICE_NS = 100_000;
/** A path with no heartbeat answer for this long is down. */
const PATH_DEAD_MS = 4000;
const MAC_MAX_AGE_MS = 5 * 60_000;

interface SleevePeer {
  name: PeerName;
  /** Sealing state; undefined when this peer's datagrams go in clear. */
  crypto: PeerCrypto | undefined;
  /** Bytes in front of the first record of a FRAMES datagram: 12 clear, 38 sealed. */
  prefix: number;
  ip: number;
  port: number;
  /** Largest UDP payload towards this peer. */
  pmtu: number;
  /** Transmit slot being filled for this peer in the current batch, or -1. */
  txSlot: number;
  up: boolean;
  lastAckAt: number;
  heartbeatSeq: number;
  heartbeatSentAt: number;
  /** performance.now() of the last HEARTBEAT sent: RTTs below a millisecond matter here. */
  heartbeatSentHr: number;
  heartbeatsSent: number;
  heartbeatsAnswered: number;
  rttMs: number | undefined;
  /** Rebuilds one fragmented record at a time; allocated on the first fragment. */
  reasm: Buffer | undefined;
  reasmId: number;
  reasmGot: number;
  reasmTotal: number;
  framesIn: number;
  bytesIn: number;
  framesOut: number;
  bytesOut: number;
}

interface SleeveNetwork {
  net: OverlayNetwork;
  tapName: string;
  tap: TapDevice;
  framesFromBridge: number;
  framesToBridge: number;
  /** Frames to write to the TAP at the end of the current receive batch. */
  pendingCount: number;
  pendingOffsets: Uint32Array;
  pendingLengths: Uint32Array;
}

export interface SleeveOptions {
  self: PeerName;
  bindAddress: string;
  port: number;
  routes: RouteTable;
  netlink: Netlink;
  events: DatapathEvents;
  log: Logger;
  /** Payload cap when the route MTU towards a peer cannot be read. */
  defaultPmtu?: number;
  /** Seals datagrams of peers that have keys. */
  sealer: Sealer;
  /**
   * Peers the kernel fast path carries (owned by the composite datapath). The sleeve does
   * not send them unicast frames from the bridge and does not deliver broadcasts they
   * originate (the VXLAN port did both); it still relays for them. See docs/FASTDP.md.
   */
  kernelPeers?: ReadonlySet<PeerName>;
  /** Counts frames taken from bridges per (network, source MAC, destination MAC) for `weavets flows`. */
  flows?: FrameCounter;
}

export function tapNameFor(networkId: number): string {
  return tapLinkName(networkId);
}

export class SleeveDatapath implements Datapath {
  readonly kind = 'sleeve' as const;
  readonly macs = new MacTable({ maxAgeMs: MAC_MAX_AGE_MS });

  private readonly self: PeerName;
  private readonly routes: RouteTable;
  private readonly netlink: Netlink;
  private readonly events: DatapathEvents;
  private readonly log: Logger;
  private readonly defaultPmtu: number;
  private readonly sealer: Sealer;
  private readonly kernelPeers: ReadonlySet<PeerName>;
  private readonly socket: UdpBatchSocket;
  private readonly peers = new Map<PeerName, SleevePeer>();
  private readonly networks = new Map<number, SleeveNetwork>();
  private readonly dropCounts = new Map<string, number>();
  private readonly heartbeatTimer: NodeJS.Timeout;
  private readonly macTimer: NodeJS.Timeout;
  private now = Date.now();
  private closed = false;
  private probeListener: ProbeListener | undefined;
  private readonly flows: FrameCounter | undefined;

  // Transmit arena: slot i holds one datagram being built at txOffsets[i].
  private readonly txBuf = Buffer.allocUnsafe(TX_SLOTS * TX_SLOT_SIZE);
  private readonly txOffsets = new Uint32Array(TX_SLOTS);
  private readonly txLengths = new Uint32Array(TX_SLOTS);
  private readonly txAddrs = new Uint32Array(TX_SLOTS);
  private readonly txPorts = new Uint16Array(TX_SLOTS);
  private readonly txPeers: (SleevePeer | undefined)[] = new Array(TX_SLOTS);
  private txCount = 0;
  private readonly controlBuf = Buffer.alloc(SEALED_HEADER_LENGTH + HEARTBEAT_BODY_LENGTH);
  /** One record as a unit (sealed or not) before it is cut into fragments. */
  private readonly unitBuf = Buffer.allocUnsafe(MAX_REASSEMBLED);
  // Fragment arena: one record split into path-MTU datagrams, sent with UDP GSO.
  private readonly fragBuf = Buffer.allocUnsafe(2 * MAX_REASSEMBLED + 64 * 64);
  private readonly fragOffsets = new Uint32Array(128);
  private readonly fragLengths = new Uint32Array(128);
  private readonly fragAddrs = new Uint32Array(128);
  private readonly fragPorts = new Uint16Array(128);
  private nextFragId = 1;
  private gsoWorks = true;

  private constructor(opts: SleeveOptions, socket: UdpBatchSocket) {
    this.self = opts.self;
    this.routes = opts.routes;
    this.netlink = opts.netlink;
    this.events = opts.events;
    this.log = opts.log;
    this.defaultPmtu = opts.defaultPmtu ?? 1500 - UDP_IP_OVERHEAD;
    this.sealer = opts.sealer;
    this.kernelPeers = opts.kernelPeers ?? new Set();
    this.flows = opts.flows;
    this.socket = socket;
    for (let i = 0; i < TX_SLOTS; i++) this.txOffsets[i] = i * TX_SLOT_SIZE;
    socket.startReading((count) => this.onDatagrams(count));
    this.heartbeatTimer = setInterval(() => this.heartbeatTick(), HEARTBEAT_FAST_MS);
    this.macTimer = setInterval(() => this.macs.expire(Date.now()), 30_000);
    this.heartbeatTimer.unref();
    this.macTimer.unref();
  }

  static open(opts: SleeveOptions): SleeveDatapath {
    const socket = UdpBatchSocket.bind(opts.bindAddress, opts.port, { gro: true });
    // The event loop thread, which runs the whole hot path, is the calling thread.
    let shortSlice = false;
    try {
      shortSlice = setSchedSlice(SCHED_SLICE_NS);
    } catch (err) {
      opts.log.warn('cannot shorten the scheduler slice', { error: (err as Error).message });
    }
    if (!shortSlice) opts.log.info('kernel keeps the default scheduler slice (custom slices need Linux 6.12)');
    return new SleeveDatapath(opts, socket);
  }

  get port(): number {
    return this.socket.port;
  }

  async addNetwork(net: OverlayNetwork): Promise<void> {
    if (this.networks.has(net.id)) return;
    const tapName = tapNameFor(net.id);
    // With the virtio-net header and TSO offloads the kernel hands us TCP super-frames
    // of up to 64 KiB and takes them back the same way: one read, one record, one write
    // instead of dozens.
    const tap = TapDevice.open(tapName, { vnetHdr: true });
    try {
      await this.netlink.setMtu(tapName, net.mtu);
      await this.netlink.setMaster(tapName, net.bridge);
      await this.netlink.setUp(tapName);
    } catch (err) {
      tap.close();
      throw err;
    }
    const sn: SleeveNetwork = {
      net,
      tapName,
      tap,
      framesFromBridge: 0,
      framesToBridge: 0,
      pendingCount: 0,
      pendingOffsets: new Uint32Array(TAP_WRITE_CAPACITY),
      pendingLengths: new Uint32Array(TAP_WRITE_CAPACITY),
    };
    this.networks.set(net.id, sn);
    tap.startReading((count) => this.onTapFrames(sn, count));
    this.log.info('sleeve carrying network', { network: net.name, id: net.id, tap: tapName, mtu: net.mtu });
  }

  async removeNetwork(id: number): Promise<void> {
    const sn = this.networks.get(id);
    if (!sn) return;
    this.networks.delete(id);
    sn.tap.stopReading();
    sn.tap.close();
    // A non-persistent TAP disappears with its last fd; delete anyway in case it lingers.
    await this.netlink.deleteLink(sn.tapName, { ignoreMissing: true });
  }

  async addPeer(peer: PeerName, ip: string, port: number, keys?: { send: Buffer; recv: Buffer }): Promise<void> {
    const addr = ipv4ToNumber(ip);
    let pmtu = this.defaultPmtu;
    try {
      pmtu = (await this.netlink.mtuTowards(ip)) - UDP_IP_OVERHEAD;
    } catch (err) {
      this.log.warn('cannot read route MTU towards peer; using default', { ip, pmtu, error: (err as Error).message });
    }
    const crypto = keys === undefined ? undefined : new PeerCrypto(this.sealer, keys, Date.now());
    const prefix = crypto === undefined ? DATAGRAM_HEADER_LENGTH : SEALED_HEADER_LENGTH;
    const existing = this.peers.get(peer);
    if (existing) {
      // A new connection to a known peer: new keys, nothing of the old session survives.
      this.flushTx();
      existing.ip = addr;
      existing.port = port;
      existing.pmtu = pmtu;
      existing.crypto = crypto;
      existing.prefix = prefix;
      existing.reasmGot = 0;
      existing.reasmId = -1;
      return;
    }
    this.peers.set(peer, {
      name: peer,
      crypto,
      prefix,
      ip: addr,
      port,
      pmtu,
      txSlot: -1,
      up: false,
      lastAckAt: 0,
      heartbeatSeq: 0,
      heartbeatSentAt: 0,
      heartbeatSentHr: 0,
      heartbeatsSent: 0,
      heartbeatsAnswered: 0,
      rttMs: undefined,
      reasm: undefined,
      reasmId: -1,
      reasmGot: 0,
      reasmTotal: 0,
      framesIn: 0,
      bytesIn: 0,
      framesOut: 0,
      bytesOut: 0,
    });
    this.sendHeartbeat(this.peers.get(peer)!, DatagramKind.Heartbeat, 0);
  }

  removePeer(peer: PeerName): void {
    const p = this.peers.get(peer);
    if (!p) return;
    // Flush first: the arena may hold a slot for this peer.
    this.flushTx();
    this.peers.delete(peer);
    if (p.up) this.events.pathChanged(peer, false);
  }

  peerGone(peer: PeerName): void {
    this.macs.forgetPeer(peer);
  }

  peerDatapath(peer: PeerName): 'sleeve' | undefined {
    return this.peers.has(peer) ? 'sleeve' : undefined;
  }

  peerStatus(peer: PeerName): PeerPathStatus | undefined {
    const p = this.peers.get(peer);
    if (!p) return undefined;
    return {
      up: p.up,
      pmtu: p.pmtu,
      rttMs: p.rttMs,
      heartbeatsSent: p.heartbeatsSent,
      heartbeatsAnswered: p.heartbeatsAnswered,
      lastAnswerAt: p.lastAckAt,
      framesIn: p.framesIn,
      bytesIn: p.bytesIn,
      framesOut: p.framesOut,
      bytesOut: p.bytesOut,
    };
  }

  drops(): ReadonlyMap<string, number> {
    return this.dropCounts;
  }

  setProbeListener(listener: ProbeListener | undefined): void {
    this.probeListener = listener;
  }

  /**
   * A trace probe to `dst`: one record on the reserved probe network, queued and relayed
   * exactly like a container's unicast frame (same routes, sockets, sealing, MTU).
   */
  sendProbe(dst: PeerName, frame: Buffer): boolean {
    if (this.closed) return false;
    const hop = this.routes.unicastNextHop(dst);
    const p = hop === undefined ? undefined : this.peers.get(hop);
    if (p === undefined || !p.up) return false;
    const rec = Buffer.alloc(OFFLOAD_LENGTH + frame.length);
    frame.copy(rec, OFFLOAD_LENGTH);
    this.now = Date.now();
    this.appendFrame(p, this.self, dst, PROBE_NETWORK_ID, 0, rec, 0, rec.length);
    this.flushTx();
    return true;
  }

  networkStats(): { network: number; framesFromBridge: number; framesToBridge: number }[] {
    return [...this.networks.values()].map((n) => ({
      network: n.net.id,
      framesFromBridge: n.framesFromBridge,
      framesToBridge: n.framesToBridge,
    }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.heartbeatTimer);
    clearInterval(this.macTimer);
    this.socket.stopReading();
    this.socket.close();
    for (const id of [...this.networks.keys()]) await this.removeNetwork(id);
  }

  // ---- hot path: frames from a bridge ----

  private onTapFrames(sn: SleeveNetwork, count: number): void {
    const tap = sn.tap;
    const buf = tap.rxBuf;
    const lengths = tap.rxLengths;
    const slotSize = tap.slotSize;
    const netId = sn.net.id;
    const self = this.self;
    const flows = this.flows;
    this.now = Date.now();
    sn.framesFromBridge += count;
    for (let i = 0; i < count; i++) {
      // Each slot: offload block (virtio_net_hdr), then the Ethernet frame.
      const off = i * slotSize;
      const len = lengths[i]!;
      if (len < OFFLOAD_LENGTH + 14) {
        this.drop('bad_length');
        continue;
      }
      const dstMac = readMac(buf, off + OFFLOAD_LENGTH);
      if (flows !== undefined)
        flows.record(netId, readMac(buf, off + OFFLOAD_LENGTH + 6), dstMac, len - OFFLOAD_LENGTH);
      let owner: PeerName | undefined;
      if (!isMulticastMac(dstMac)) owner = this.macs.lookup(netId, dstMac, this.now);
      if (owner === undefined || owner === self) {
        this.floodFrom(self, netId, 0, buf, off, len, NO_PEER);
        continue;
      }
      const hop = this.routes.unicastNextHop(owner);
      // The bridge handed the same frame to the VXLAN port, which carries it to this peer.
      if (hop === owner && this.kernelPeers.has(owner)) continue;
      const p = hop === undefined ? undefined : this.peers.get(hop);
      if (p === undefined || !p.up) {
        // The owner went away: flood so the frame still reaches it if it moved.
        this.floodFrom(self, netId, 0, buf, off, len, NO_PEER);
        continue;
      }
      this.appendFrame(p, self, owner, netId, 0, buf, off, len);
    }
    this.flushTx();
  }

  /** Send a broadcast (dst 0) originated by `src` to our children in src's tree, except `except`. */
  private floodFrom(
    src: PeerName,
    netId: number,
    hops: number,
    buf: Buffer,
    off: number,
    len: number,
    except: PeerName,
  ): void {
    const hopsList = this.routes.broadcastNextHops(src);
    const ours = src === this.self;
    for (let h = 0; h < hopsList.length; h++) {
      const name = hopsList[h]!;
      if (name === except) continue;
      const p = this.peers.get(name);
      if (p === undefined || !p.up) continue;
      // Our own broadcast to a fast-path peer also left through the VXLAN port: say so, so
      // the peer relays this copy without delivering it twice. Said per copy, because the
      // two ends may briefly disagree on which path carries them.
      const flag = ours && this.kernelPeers.has(name) ? KERNEL_COPY_FLAG : 0;
      this.appendFrame(p, src, NO_PEER, netId, hops | flag, buf, off, len);
    }
  }

  /**
   * Queue one record for `p`. `buf[off, off+len)` is the offload block followed by the
   * frame. Records that fit the path MTU share datagrams; bigger ones are fragmented.
   */
  private appendFrame(
    p: SleevePeer,
    src: PeerName,
    dst: PeerName,
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
      this.sendFragmented(p, src, dst, netId, hops, buf, off, len);
      return;
    }
    let slot = p.txSlot;
    if (slot >= 0 && this.txLengths[slot]! + need > p.pmtu) slot = -1;
    if (slot < 0) {
      if (this.txCount === TX_SLOTS) this.flushTx();
      slot = this.txCount++;
      const base = this.txOffsets[slot]!;
      if (p.crypto === undefined) {
        writeDatagramHeader(this.txBuf, base, DatagramKind.Frames, this.self);
      } else {
        // Sealed at flush time, in place: header | prefix | tag | FRAMES | records...
        writeDatagramHeader(this.txBuf, base, DatagramKind.Sealed, this.self);
        this.txBuf[base + SEALED_HEADER_LENGTH - 1] = DatagramKind.Frames;
      }
      this.txLengths[slot] = p.prefix;
      this.txAddrs[slot] = p.ip;
      this.txPorts[slot] = p.port;
      this.txPeers[slot] = p;
      p.txSlot = slot;
    }
    const at = this.txOffsets[slot]! + this.txLengths[slot]!;
    const body = writeFrameRecordHeader(this.txBuf, at, src, dst, netId, hops, len - OFFLOAD_LENGTH);
    buf.copy(this.txBuf, body, off, off + len);
    this.txLengths[slot] = this.txLengths[slot]! + need;
  }

  /**
   * Split one record into FRAGMENT datagrams of exactly the path MTU (the last may be
   * shorter) laid out back to back, and hand them to the kernel as UDP GSO sends: one
   * syscall and one skb through the underlay per 64 KiB instead of ~45.
   */
  private sendFragmented(
    p: SleevePeer,
    src: PeerName,
    dst: PeerName,
    netId: number,
    hops: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void {
    // Earlier queued records to this peer must leave first: TCP hates reordering.
    this.flushTx();
    // The unit: the record, or for a sealed peer prefix | tag | FRAMES | record, sealed
    // once as a whole (one secretbox per 64 KiB, not per fragment).
    const u = this.unitBuf;
    const rec = p.crypto === undefined ? 0 : SEAL_UNIT_OVERHEAD + 1;
    const body = writeFrameRecordHeader(u, rec, src, dst, netId, hops, len - OFFLOAD_LENGTH);
    buf.copy(u, body, off, off + len);
    let total = body + len;
    if (p.crypto !== undefined) {
      u[SEAL_UNIT_OVERHEAD] = DatagramKind.Frames;
      p.crypto.sealInPlace(u, SEAL_UNIT_OVERHEAD, total - SEAL_UNIT_OVERHEAD, this.now);
    }
    const seg = p.pmtu;
    const chunkMax = seg - DATAGRAM_HEADER_LENGTH - FRAGMENT_HEADER_LENGTH;
    const id = this.nextFragId;
    this.nextFragId = (this.nextFragId + 1) >>> 0 || 1;
    const fb = this.fragBuf;
    let w = 0;
    let n = 0;
    for (let at = 0; at < total; at += chunkMax) {
      const chunk = Math.min(chunkMax, total - at);
      this.fragOffsets[n] = w;
      this.fragLengths[n] = DATAGRAM_HEADER_LENGTH + FRAGMENT_HEADER_LENGTH + chunk;
      n++;
      w = writeDatagramHeader(fb, w, DatagramKind.Fragment, this.self);
      w = writeFragmentHeader(fb, w, id, at, total);
      u.copy(fb, w, at, at + chunk);
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
          if (!this.socket.sendSegmented(this.fragBuf, start, end - start, seg, p.ip, p.port)) {
            this.drop('send_queue_full', n - i);
            return;
          }
        }
        return;
      } catch (err) {
        // No UDP GSO here (old kernel, odd device): fall back to sendmmsg for good.
        this.gsoWorks = false;
        this.log.warn('UDP GSO refused; sending fragments one by one', { error: (err as Error).message });
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
    let sent: number;
    try {
      sent = this.socket.sendBatch(buf, offsets, lengths, addrs, ports, n);
    } catch (err) {
      this.drop(`send_${(err as NodeJS.ErrnoException).code ?? 'error'}`, n);
      return;
    }
    if (sent === n) return;
    let more = 0;
    try {
      more = this.socket.sendBatch(
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
    if (sent + more < n) this.drop('send_queue_full', n - sent - more);
  }

  private flushTx(): void {
    const n = this.txCount;
    if (n === 0) return;
    for (let i = 0; i < n; i++) {
      const c = this.txPeers[i]!.crypto;
      if (c === undefined) continue;
      const msgOff = this.txOffsets[i]! + SEALED_HEADER_LENGTH - 1;
      c.sealInPlace(this.txBuf, msgOff, this.txOffsets[i]! + this.txLengths[i]! - msgOff, this.now);
    }
    this.sendDatagrams(this.txBuf, this.txOffsets, this.txLengths, this.txAddrs, this.txPorts, n);
    for (let i = 0; i < n; i++) {
      this.txPeers[i]!.txSlot = -1;
      this.txPeers[i] = undefined;
    }
    this.txCount = 0;
  }

  // ---- hot path: datagrams from peers ----

  private onDatagrams(count: number): void {
    const sock = this.socket;
    const buf = sock.rxBuf;
    const slotSize = sock.slotSize;
    const segSizes = sock.rxSegSizes;
    this.now = Date.now();
    for (let i = 0; i < count; i++) {
      const off = i * slotSize;
      const len = sock.rxLengths[i]!;
      if (len === 0) {
        this.drop('truncated');
        continue;
      }
      // With UDP GRO the kernel may hand us several same-sized datagrams back to back.
      const seg = segSizes[i]!;
      if (seg === 0 || seg >= len) {
        this.onDatagram(buf, off, len, sock.rxAddrs[i]!);
        continue;
      }
      for (let o = 0; o < len; o += seg) this.onDatagram(buf, off + o, Math.min(seg, len - o), sock.rxAddrs[i]!);
    }
    this.flushTapWrites();
    this.flushTx();
  }

  private onDatagram(buf: Buffer, off: number, len: number, fromIp: number): void {
    const kind = checkHeader(buf, off, len);
    if (typeof kind === 'string') {
      this.drop(kind);
      return;
    }
    const sender = readPeerName(buf, off + 4);
    const p = this.peers.get(sender);
    if (p === undefined) {
      this.drop('unknown_peer');
      return;
    }
    if (fromIp !== p.ip) {
      this.drop('wrong_address');
      return;
    }
    if (kind === DatagramKind.Fragment) {
      this.onFragment(p, buf, off, len);
      return;
    }
    let inner: number = kind;
    let body = off + DATAGRAM_HEADER_LENGTH;
    if (kind === DatagramKind.Sealed) {
      if (p.crypto === undefined) {
        this.drop('unexpected_sealed');
        return;
      }
      const r = p.crypto.openInPlace(buf, body, len - DATAGRAM_HEADER_LENGTH, this.now);
      if (r !== 'ok') {
        this.drop(r);
        return;
      }
      inner = buf[off + SEALED_HEADER_LENGTH - 1]!;
      body = off + SEALED_HEADER_LENGTH;
    } else if (p.crypto !== undefined) {
      // With keys agreed, anything in clear is an injection attempt.
      this.drop('unsealed');
      return;
    }
    this.onPlainBody(p, inner, buf, body, off + len, false);
  }

  /** Act on an authenticated (or clear-by-agreement) body of kind `inner` at buf[body, end). */
  private onPlainBody(p: SleevePeer, inner: number, buf: Buffer, body: number, end: number, direct: boolean): void {
    if (inner === DatagramKind.Frames) {
      const bad = checkRecords(buf, body, end);
      if (bad !== null) this.drop(bad);
      else this.onRecords(p, buf, body, end, direct);
    } else if (
      (inner === DatagramKind.Heartbeat || inner === DatagramKind.HeartbeatAck) &&
      end - body === HEARTBEAT_BODY_LENGTH &&
      !direct
    ) {
      this.onHeartbeat(p, inner, buf, body);
    } else {
      this.drop('bad_kind');
    }
  }

  private onFragment(p: SleevePeer, buf: Buffer, off: number, len: number): void {
    const h = off + DATAGRAM_HEADER_LENGTH;
    const id = buf.readUInt32BE(h);
    const at = buf.readUInt32BE(h + 4);
    const total = buf.readUInt32BE(h + 8);
    const chunkStart = h + FRAGMENT_HEADER_LENGTH;
    const chunk = off + len - chunkStart;
    if (at === 0) {
      if (p.reasmGot > 0) this.drop('reassembly_gap');
      p.reasmId = id;
      p.reasmGot = 0;
      p.reasmTotal = total;
    } else if (id !== p.reasmId || at !== p.reasmGot || total !== p.reasmTotal) {
      // Fragments of one record arrive in order in one GSO burst; anything else means
      // loss or reordering on the underlay, and the sender's TCP will retransmit.
      if (p.reasmGot > 0 || id !== p.reasmId) this.drop('reassembly_gap');
      p.reasmGot = 0;
      p.reasmId = -1;
      return;
    }
    const r = (p.reasm ??= Buffer.allocUnsafe(MAX_REASSEMBLED));
    buf.copy(r, at, chunkStart, chunkStart + chunk);
    p.reasmGot += chunk;
    if (p.reasmGot < total) return;
    p.reasmGot = 0;
    p.reasmId = -1;
    if (p.crypto === undefined) {
      this.onPlainBody(p, DatagramKind.Frames, r, 0, total, true);
      return;
    }
    const result = p.crypto.openInPlace(r, 0, total, this.now);
    if (result !== 'ok') {
      this.drop(result);
      return;
    }
    this.onPlainBody(p, r[SEAL_UNIT_OVERHEAD]!, r, SEAL_UNIT_OVERHEAD + 1, total, true);
  }

  /**
   * Act on well-formed records in buf[start, end). `direct`: the buffer is reused as soon
   * as we return (a reassembly buffer), so deliveries are written at once instead of
   * being batched until the end of the receive batch.
   */
  private onRecords(from: SleevePeer, buf: Buffer, start: number, end: number, direct: boolean): void {
    const self = this.self;
    let o = start;
    while (o < end) {
      const src = readPeerName(buf, o);
      const dst = readPeerName(buf, o + 6);
      const word = buf.readUInt32BE(o + 12);
      const frameLen = buf.readUInt32BE(o + 16);
      const payOff = o + RECORD_OFFLOAD_OFFSET; // offload block, then the frame
      const payLen = OFFLOAD_LENGTH + frameLen;
      o += FRAME_RECORD_HEADER_LENGTH + frameLen;
      const netId = word >>> 8;
      const hops = word & HOPS_MASK;
      const kernelCopy = (word & KERNEL_COPY_FLAG) !== 0;
      from.framesIn++;
      from.bytesIn += frameLen;
      if (src === self) {
        this.drop('looped');
        continue;
      }
      if (dst === self || dst === NO_PEER) {
        // A broadcast whose sender also sent it through the VXLAN port was delivered by
        // the kernel: only relay it (and learn where its sender lives).
        if (dst === NO_PEER && kernelCopy && src === from.name) this.learnOnly(src, netId, buf, payOff);
        else this.deliver(src, netId, buf, payOff, payLen, direct);
        if (dst === self) continue;
      }
      if (hops + 1 >= MAX_HOPS) {
        this.drop('hops_exceeded');
        continue;
      }
      if (dst === NO_PEER) {
        this.floodFrom(src, netId, hops + 1, buf, payOff, payLen, from.name);
        continue;
      }
      const hop = this.routes.unicastNextHop(dst);
      const next = hop === undefined ? undefined : this.peers.get(hop);
      if (next === undefined || !next.up || next === from) {
        this.drop('no_route');
        continue;
      }
      this.appendFrame(next, src, dst, netId, hops + 1, buf, payOff, payLen);
    }
  }

  private deliver(src: PeerName, netId: number, buf: Buffer, off: number, len: number, direct: boolean): void {
    const sn = this.networks.get(netId);
    if (sn === undefined) {
      // Trace probes ride a network id no bridge has: checked only here, off the frame path.
      if (netId === PROBE_NETWORK_ID && this.probeListener !== undefined) {
        this.probeListener(src, Buffer.from(buf.subarray(off + OFFLOAD_LENGTH, off + len)));
        return;
      }
      this.drop('unknown_network');
      return;
    }
    const srcMac = readMac(buf, off + OFFLOAD_LENGTH + 6);
    if (!isMulticastMac(srcMac)) this.macs.learn(netId, srcMac, src, this.now);
    if (direct) {
      // Keep order with frames queued earlier in this batch.
      this.flushTapWrites();
      try {
        if (sn.tap.write(buf, off, len)) sn.framesToBridge++;
        else this.drop('bridge_queue_full');
      } catch (err) {
        this.drop(`bridge_${(err as NodeJS.ErrnoException).code ?? 'error'}`);
      }
      return;
    }
    if (sn.pendingCount === TAP_WRITE_CAPACITY) this.flushTapWrites();
    sn.pendingOffsets[sn.pendingCount] = off;
    sn.pendingLengths[sn.pendingCount] = len;
    sn.pendingCount++;
  }

  private learnOnly(src: PeerName, netId: number, buf: Buffer, off: number): void {
    const srcMac = readMac(buf, off + OFFLOAD_LENGTH + 6);
    if (!isMulticastMac(srcMac)) this.macs.learn(netId, srcMac, src, this.now);
  }

  private flushTapWrites(): void {
    for (const sn of this.networks.values()) {
      const n = sn.pendingCount;
      if (n === 0) continue;
      sn.pendingCount = 0;
      let written = 0;
      try {
        written = sn.tap.writeBatch(this.socket.rxBuf, sn.pendingOffsets, sn.pendingLengths, n);
      } catch (err) {
        this.drop(`bridge_${(err as NodeJS.ErrnoException).code ?? 'error'}`, n);
        continue;
      }
      sn.framesToBridge += written;
      if (written < n) this.drop('bridge_queue_full', n - written);
    }
  }

  // ---- path liveness ----

  private onHeartbeat(p: SleevePeer, kind: number, buf: Buffer, body: number): void {
    if (readPeerName(buf, body) !== this.self) {
      this.drop('not_for_us');
      return;
    }
    const seq = buf.readUInt32BE(body + 6);
    if (kind === DatagramKind.Heartbeat) {
      this.sendHeartbeat(p, DatagramKind.HeartbeatAck, seq);
      return;
    }
    const echo = buf.readUInt32BE(body + 10);
    if (echo === p.heartbeatSeq) p.rttMs = performance.now() - p.heartbeatSentHr;
    p.heartbeatsAnswered++;
    p.crypto?.heartbeatAcked(echo);
    p.lastAckAt = this.now;
    if (!p.up) {
      p.up = true;
      this.log.info('sleeve path up', { peer: p.name.toString(16), addr: `${numberToIpv4(p.ip)}:${p.port}` });
      this.events.pathChanged(p.name, true);
    }
  }

  private sendHeartbeat(p: SleevePeer, kind: DatagramKind, echoSeq: number): void {
    const b = this.controlBuf;
    const body = p.prefix;
    if (p.crypto === undefined) writeDatagramHeader(b, 0, kind, this.self);
    else {
      writeDatagramHeader(b, 0, DatagramKind.Sealed, this.self);
      b[SEALED_HEADER_LENGTH - 1] = kind;
    }
    writePeerName(b, body, p.name);
    if (kind === DatagramKind.Heartbeat) {
      p.heartbeatSeq = (p.heartbeatSeq + 1) >>> 0;
      p.heartbeatSentAt = Date.now();
      p.heartbeatSentHr = performance.now();
      p.heartbeatsSent++;
      b.writeUInt32BE(p.heartbeatSeq, body + 6);
      b.writeUInt32BE(0, body + 10);
    } else {
      b.writeUInt32BE(0, body + 6);
      b.writeUInt32BE(echoSeq, body + 10);
    }
    if (p.crypto !== undefined) {
      p.crypto.sealInPlace(b, SEALED_HEADER_LENGTH - 1, 1 + HEARTBEAT_BODY_LENGTH, Date.now());
      if (kind === DatagramKind.Heartbeat) p.crypto.heartbeatSent(p.heartbeatSeq);
    }
    try {
      if (!this.socket.send(b, 0, body + HEARTBEAT_BODY_LENGTH, p.ip, p.port)) this.drop('send_queue_full');
    } catch (err) {
      this.drop(`send_${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }

  private heartbeatTick(): void {
    const now = Date.now();
    for (const p of this.peers.values()) {
      if (p.up && now - p.lastAckAt > PATH_DEAD_MS) {
        p.up = false;
        this.log.warn('sleeve path down: no heartbeat answer', {
          peer: p.name.toString(16),
          silentMs: now - p.lastAckAt,
        });
        this.events.pathChanged(p.name, false);
      }
      // Probe fast until the path is up, then once a second.
      if (!p.up || now - p.heartbeatSentAt >= HEARTBEAT_INTERVAL_MS) this.sendHeartbeat(p, DatagramKind.Heartbeat, 0);
    }
  }

  private drop(reason: DropReason | string, n = 1): void {
    this.dropCounts.set(reason, (this.dropCounts.get(reason) ?? 0) + n);
  }
}
