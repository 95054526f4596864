/**
 * Sleeve: the userspace data path. Frames read from a TAP port on each network's bridge
 * are packed, several per UDP datagram up to the path MTU, and sent to the next hop
 * towards the peer owning the destination MAC; unknown and broadcast destinations follow
 * the broadcast tree. Datagrams received are unpacked, delivered to the local bridge
 * and/or relayed onwards.
 *
 * This class is the coordinator: it owns the peers, the networks and the MAC table and
 * decides where each frame goes. Its parts: TransmitArena (transmit.ts: packing records
 * into datagrams, fragmenting, sealing, sending), Reassembler (reassembler.ts: one
 * fragment series per peer), PathLiveness (liveness.ts: heartbeats, who is reachable),
 * BridgePort (bridge.ts: one network's TAP). The TAP and UDP rings come through the
 * interfaces of ports.ts, so unit tests run sleeves over in-memory rings.
 *
 * The hot path is the two batch callbacks (onTapFrames, onDatagrams): they work on the
 * rings in place, queue into the fixed transmit arena, and end the batch with one
 * sendmmsg and one batched TAP write. No per-frame allocation, closure or promise: bytes
 * are copied with the addon's copyBytes (Node 20's Buffer.copy allocates a view), and
 * 48-bit MACs and peer names are read from frames as 24-bit halves and looked up in
 * tables keyed by them, which hand back names boxed once (a 48-bit number made per
 * frame would be a heap allocation every time it crossed a call or became a Map key).
 * test/unit/sleeve-allocation.test.ts counts the bytes allocated per frame.
 *
 * In production a batch first passes the express path (native/src/express.c, through
 * ExpressPort): C forwards the plain unicast frames between directly connected peers that
 * this class told it about, and the callbacks get (count, first) and handle [first, count).
 * The express path is a cache of decisions made here (expressPeer, learn), and its
 * counters are folded back into this class's own (drainExpress).
 */
import { constants as osConstants } from 'node:os';

import {
  EXPRESS_ENTRY_LENGTH,
  EXPRESS_RX_OPENED,
  ExpressTake,
  UdpBatchSocket,
  ipv4ToNumber,
  setSchedSlice,
} from '../../native';
import type { Netlink } from '../../netlink';
import type { Logger } from '../../log';
import { systemClock, type Clock } from '../../net/clock';
import { HalvesMap, fromHalves, highHalf, lowHalf, readHalf } from '../../net/halves';
import { tapLinkName } from '../../net/links';
import { MacTable } from '../../net/mactable';
import { NO_PEER, type PeerName } from '../../net/peername';
import type {
  Datapath,
  DatapathEvents,
  OverlayNetwork,
  PeerPathStatus,
  ProbeListener,
  RouteTable,
} from '../../router/overlay';
import { PROBE_NETWORK_ID, type FrameCounter } from '../../router/overlay';
import type { Sealer } from '../../crypto/seal';
import { PeerCrypto, SEAL_UNIT_OVERHEAD, type DataCrypto } from './peer-crypto';
import { NativePeerCrypto } from './native-peer-crypto';
import {
  DATAGRAM_HEADER_LENGTH,
  DatagramKind,
  FRAME_RECORD_HEADER_LENGTH,
  HEARTBEAT_BODY_LENGTH,
  MAX_HOPS,
  OFFLOAD_LENGTH,
  RECORD_OFFLOAD_OFFSET,
  SEALED_HEADER_LENGTH,
  SEALED_INNER_KIND_OFFSET,
  KERNEL_COPY_FLAG,
  checkHeader,
  checkRecords,
  readInnerKind,
  readDatagramSenderHigh,
  readDatagramSenderLow,
  readRecordDstHigh,
  readRecordDstLow,
  readRecordFrameLength,
  readRecordHops,
  readRecordKernelCopy,
  readRecordNetwork,
  readRecordSrcHigh,
  readRecordSrcLow,
} from './codec';
import { DropCounter, bridgeErrorReason, sendErrorReason, type DropReason } from './drops';
import { BridgePort } from './bridge';
import { HEARTBEAT_FAST_MS, PathLiveness, newPathState } from './liveness';
import type { SleevePeer } from './peer';
import { kernelExpress, kernelLinks, type ExpressPort, type SleeveLinks, type UdpRing } from './ports';
import { Reassembler } from './reassembler';
import { TransmitArena } from './transmit';

/** IPv4 + UDP headers: what the underlay adds around our datagram. */
export const UDP_IP_OVERHEAD = 28;
/**
 * Bytes the sleeve adds around one Ethernet frame's payload in the worst case: IP+UDP,
 * datagram header, record header (with its offload block), the inner Ethernet header,
 * and 40 bytes kept for the encryption envelope so turning encryption on never changes
 * container MTUs.
 */
export const SLEEVE_OVERHEAD = UDP_IP_OVERHEAD + DATAGRAM_HEADER_LENGTH + FRAME_RECORD_HEADER_LENGTH + 14 + 40;

/**
 * The EEVDF slice the daemon's event loop thread asks for (the kernel's minimum). Every
 * frame costs the sleeve a wake-up on each host; on a busy CPU a woken thread with the
 * default slice (0.7-3 ms) queues behind the running task, with a short one it preempts
 * it (bench/latency.ts measures the run-queue wait per wake-up).
 */
const SCHED_SLICE_NS = 100_000;
const MAC_MAX_AGE_MS = 5 * 60_000;
const MAC_EXPIRY_INTERVAL_MS = 30_000;
/** Smallest TAP read we act on: the offload block and an Ethernet header. */
const MIN_TAP_READ = OFFLOAD_LENGTH + 14;
/** The I/G (group) bit of a MAC's first byte, as seen in its high 24-bit half. */
const GROUP_BIT_HIGH = 0x01_0000;
/**
 * Peer names seen in records, boxed once each (nameOf). Records name peers beyond our
 * neighbours, and an authenticated peer could send made-up ones: past this many the
 * table starts over rather than grow.
 */
const MAX_INTERNED_NAMES = 4096;

/** Entries per ExpressPort.take call (its buffer holds this many of the longest kind). */
const EXPRESS_TAKE_ENTRIES = 256;
/** Errno number -> code ("EAGAIN"), for the express path's drop counts. */
const ERRNO_NAMES = new Map(Object.entries(osConstants.errno).map(([name, no]) => [no, name]));

/** Where frames for one destination peer go (cached per routes version). */
interface NextHop {
  /** Our peer entry for the next hop; undefined when there is none (no route, or not a sleeve peer). */
  readonly peer: SleevePeer | undefined;
  /**
   * The next hop is the destination and the kernel fast path carries it: the bridge
   * handed the frame to the VXLAN port as well, so the sleeve does not send it.
   */
  readonly kernel: boolean;
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
  /**
   * Forward the common unicast frame in C before a batch reaches JS (the express path,
   * native/src/express.c). Default true; false keeps every frame on the JS path.
   */
  express?: boolean;
  /**
   * Run the express path's batches on a native data path thread (native/src/iothread.c)
   * instead of the event loop thread. Default true; ignored without the express path.
   */
  expressThread?: boolean;
}

/** What a sleeve is built from: the options without the kernel specifics, and its ports and clock. */
export type SleeveParts = Omit<SleeveOptions, 'bindAddress' | 'port' | 'netlink' | 'express' | 'expressThread'> & {
  socket: UdpRing;
  links: SleeveLinks;
  clock: Clock;
  /** The express path hooked into `socket`; absent: every frame takes the JS path. */
  express?: ExpressPort;
};

export function tapNameFor(networkId: number): string {
  return tapLinkName(networkId);
}

export class SleeveDatapath implements Datapath {
  readonly kind = 'sleeve' as const;
  readonly macs = new MacTable({ maxAgeMs: MAC_MAX_AGE_MS });

  private readonly self: PeerName;
  private readonly routes: RouteTable;
  private readonly links: SleeveLinks;
  private readonly events: DatapathEvents;
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly defaultPmtu: number;
  private readonly sealer: Sealer;
  private readonly kernelPeers: ReadonlySet<PeerName>;
  private readonly flows: FrameCounter | undefined;
  private readonly socket: UdpRing;
  private readonly peers = new Map<PeerName, SleevePeer>();
  /** The same peers, keyed by name halves for the frame path. */
  private readonly peersByHalves = new HalvesMap<SleevePeer>();
  /** Peer names read from records, each boxed once (nameOf). */
  private readonly names = new HalvesMap<PeerName>();
  /** Next hop towards a destination peer, by its name halves, for routes of version routesSeen. */
  private readonly hops = new HalvesMap<NextHop>();
  private routesSeen = -1;
  private readonly selfHigh: number;
  private readonly selfLow: number;
  private readonly networks = new Map<number, BridgePort>();
  private readonly dropCounter = new DropCounter();
  private readonly tx: TransmitArena;
  private readonly liveness: PathLiveness;
  private readonly heartbeatTimer: NodeJS.Timeout;
  private readonly macTimer: NodeJS.Timeout;
  /** clock.now() at the start of the current batch. */
  private now: number;
  private closed = false;
  private probeListener: ProbeListener | undefined;
  private readonly express: ExpressPort | undefined;
  /** Routes version the express path's peers were last told about. */
  private expressRoutesSeen = -1;
  /** ExpressPort.take's output, allocated with the express path. */
  private readonly expressOut: Float64Array;

  constructor(parts: SleeveParts) {
    this.self = parts.self;
    this.selfHigh = highHalf(parts.self);
    this.selfLow = lowHalf(parts.self);
    this.routes = parts.routes;
    this.links = parts.links;
    this.events = parts.events;
    this.log = parts.log;
    this.clock = parts.clock;
    this.defaultPmtu = parts.defaultPmtu ?? 1500 - UDP_IP_OVERHEAD;
    this.sealer = parts.sealer;
    this.kernelPeers = parts.kernelPeers ?? new Set();
    this.flows = parts.flows;
    this.socket = parts.socket;
    this.now = parts.clock.now();
    const shared = {
      self: parts.self,
      socket: parts.socket,
      drops: this.dropCounter,
      clock: parts.clock,
      log: parts.log,
    };
    this.tx = new TransmitArena(shared);
    this.express = parts.express;
    this.express?.shareFragmentIds(this.tx.fragmentIds);
    this.expressOut = new Float64Array(
      this.express === undefined ? 0 : EXPRESS_TAKE_ENTRIES * Math.max(...Object.values(EXPRESS_ENTRY_LENGTH)),
    );
    // The express path must hear of every change of a peer's path at once: it sends
    // straight to peers it was told are up.
    const events: DatapathEvents = {
      pathChanged: (peer, up) => {
        this.expressPeer(this.peers.get(peer));
        parts.events.pathChanged(peer, up);
      },
    };
    this.liveness = new PathLiveness({ ...shared, events });
    this.socket.startReading((count, first) => this.onDatagrams(count, first));
    this.heartbeatTimer = setInterval(() => {
      this.liveness.tick(this.peers.values());
      this.drainExpress();
    }, HEARTBEAT_FAST_MS);
    this.macTimer = setInterval(() => this.macs.expire(this.clock.now()), MAC_EXPIRY_INTERVAL_MS);
    this.heartbeatTimer.unref();
    this.macTimer.unref();
  }

  /** The production sleeve: the native UDP socket and TAPs, netlink, the system clock. */
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
    const { bindAddress: _bindAddress, port: _port, netlink, express: useExpress, expressThread, ...rest } = opts;
    const self = { high: highHalf(opts.self), low: lowHalf(opts.self) };
    const expressOpts = { nowMs: systemClock.now(), macMaxAgeMs: MAC_MAX_AGE_MS, countFlows: opts.flows !== undefined };
    let express: ExpressPort | undefined;
    if (useExpress !== false && expressThread !== false) {
      try {
        // The thread asks for the loop thread's short slice too (setSchedSlice above).
        express = kernelExpress(socket, self, {
          ...expressOpts,
          thread: true,
          schedSliceNs: shortSlice ? SCHED_SLICE_NS : 0,
        });
      } catch (err) {
        opts.log.warn('cannot start the data path thread; the express path runs on the event loop', {
          error: (err as Error).message,
        });
      }
    }
    if (useExpress !== false && express === undefined) express = kernelExpress(socket, self, expressOpts);
    return new SleeveDatapath({ ...rest, socket, express, links: kernelLinks(netlink), clock: systemClock });
  }

  get port(): number {
    return this.socket.port;
  }

  async addNetwork(net: OverlayNetwork): Promise<void> {
    if (this.networks.has(net.id)) return;
    const tapName = tapNameFor(net.id);
    const tap = await this.links.openTap(tapName, net);
    const port = new BridgePort(net, tapName, tap, this.dropCounter);
    this.networks.set(net.id, port);
    this.express?.addNetwork(net.id, tap);
    tap.startReading((count, first) => this.onTapFrames(port, count, first));
    this.log.info('sleeve carrying network', { network: net.name, id: net.id, tap: tapName, mtu: net.mtu });
  }

  async removeNetwork(id: number): Promise<void> {
    const port = this.networks.get(id);
    if (!port) return;
    this.drainExpress();
    this.express?.removeNetwork(id);
    this.networks.delete(id);
    await this.links.closeTap(port.tapName, port.tap);
  }

  /**
   * A peer's sealing state: in C when there is an express path, which seals and opens
   * with the same state as this JS path (one nonce counter, one replay window).
   */
  private newCrypto(keys: { send: Buffer; recv: Buffer }): DataCrypto {
    const now = this.clock.now();
    return this.express === undefined ? new PeerCrypto(this.sealer, keys, now) : new NativePeerCrypto(keys, now);
  }

  async addPeer(peer: PeerName, ip: string, port: number, keys?: { send: Buffer; recv: Buffer }): Promise<void> {
    const addr = ipv4ToNumber(ip);
    let pmtu = this.defaultPmtu;
    try {
      pmtu = (await this.links.mtuTowards(ip)) - UDP_IP_OVERHEAD;
    } catch (err) {
      this.log.warn('cannot read route MTU towards peer; using default', { ip, pmtu, error: (err as Error).message });
    }
    const crypto = keys === undefined ? undefined : this.newCrypto(keys);
    const prefix = crypto === undefined ? DATAGRAM_HEADER_LENGTH : SEALED_HEADER_LENGTH;
    const existing = this.peers.get(peer);
    if (existing) {
      // A new connection to a known peer: new keys, nothing of the old session survives.
      this.tx.flush();
      existing.ip = addr;
      existing.port = port;
      existing.pmtu = pmtu;
      existing.crypto = crypto;
      existing.prefix = prefix;
      existing.reassembler.reset();
      this.expressPeer(existing);
      return;
    }
    const p: SleevePeer = {
      name: peer,
      crypto,
      prefix,
      ip: addr,
      port,
      pmtu,
      txSlot: -1,
      up: false,
      path: newPathState(),
      reassembler: new Reassembler(this.dropCounter),
      framesIn: 0,
      bytesIn: 0,
      framesOut: 0,
      bytesOut: 0,
    };
    this.peers.set(peer, p);
    this.peersByHalves.set(peer, p);
    this.hops.clear();
    this.expressPeer(p);
    this.liveness.send(p, DatagramKind.Heartbeat, 0);
  }

  removePeer(peer: PeerName): void {
    const p = this.peers.get(peer);
    if (!p) return;
    // Flush first: the arena may hold a slot for this peer.
    this.tx.flush();
    this.drainExpress();
    this.express?.removePeer(highHalf(peer), lowHalf(peer));
    this.peers.delete(peer);
    this.peersByHalves.delete(peer);
    this.hops.clear();
    if (p.up) this.events.pathChanged(peer, false);
  }

  /** The set of peers the kernel fast path carries (kernelPeers) changed: forget cached next hops. */
  kernelPeersChanged(): void {
    this.hops.clear();
    this.expressAllPeers();
  }

  peerGone(peer: PeerName): void {
    this.macs.forgetPeer(peer);
    this.express?.forgetPeer(highHalf(peer), lowHalf(peer));
  }

  peerDatapath(peer: PeerName): 'sleeve' | undefined {
    return this.peers.has(peer) ? 'sleeve' : undefined;
  }

  peerStatus(peer: PeerName): PeerPathStatus | undefined {
    const p = this.peers.get(peer);
    if (!p) return undefined;
    this.drainExpress();
    return {
      up: p.up,
      pmtu: p.pmtu,
      rttMs: p.path.rttMs,
      heartbeatsSent: p.path.heartbeatsSent,
      heartbeatsAnswered: p.path.heartbeatsAnswered,
      lastAnswerAt: p.path.lastAckWall,
      framesIn: p.framesIn,
      bytesIn: p.bytesIn,
      framesOut: p.framesOut,
      bytesOut: p.bytesOut,
    };
  }

  /** Drop counts by reason (every key a DropReason; typed as the Datapath interface wants). */
  drops(): ReadonlyMap<string, number> {
    this.drainExpress();
    return this.dropCounter.all();
  }

  /** How many were dropped for `reason` so far. */
  dropCount(reason: DropReason): number {
    this.drainExpress();
    return this.dropCounter.get(reason);
  }

  /** Frames the express path sent and delivered (zero without one). */
  expressFrames(): { sent: number; delivered: number; superframesSent: number; superframesDelivered: number } {
    return this.express?.counters() ?? { sent: 0, delivered: 0, superframesSent: 0, superframesDelivered: 0 };
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
    this.tx.append(
      p,
      this.selfHigh,
      this.selfLow,
      highHalf(dst),
      lowHalf(dst),
      PROBE_NETWORK_ID,
      0,
      rec,
      0,
      rec.length,
    );
    this.tx.flush();
    return true;
  }

  networkStats(): { network: number; framesFromBridge: number; framesToBridge: number }[] {
    this.drainExpress();
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
    this.drainExpress();
    this.express?.close();
    this.socket.stopReading();
    this.socket.close();
    for (const id of [...this.networks.keys()]) await this.removeNetwork(id);
  }

  // ---- hot path: frames from a bridge ----

  private onTapFrames(port: BridgePort, count: number, first: number): void {
    const tap = port.tap;
    const buf = tap.rxBuf;
    const lengths = tap.rxLengths;
    const slotSize = tap.slotSize;
    const netId = port.net.id;
    const self = this.self;
    const selfHigh = this.selfHigh;
    const selfLow = this.selfLow;
    const flows = this.flows;
    this.now = this.clock.now();
    this.expressRoutes();
    port.framesFromBridge += count - first;
    for (let i = first; i < count; i++) {
      // Each slot: offload block (virtio_net_hdr), then the Ethernet frame.
      const off = i * slotSize;
      const len = lengths[i]!;
      if (len < MIN_TAP_READ) {
        this.dropCounter.count('bad_length');
        continue;
      }
      const eth = off + OFFLOAD_LENGTH;
      const dstHigh = readHalf(buf, eth);
      const dstLow = readHalf(buf, eth + 3);
      if (flows !== undefined)
        flows.record(netId, readHalf(buf, eth + 6), readHalf(buf, eth + 9), dstHigh, dstLow, len - OFFLOAD_LENGTH);
      const owner = (dstHigh & GROUP_BIT_HIGH) !== 0 ? undefined : this.macs.entryOf(netId, dstHigh, dstLow, this.now);
      if (owner === undefined || (owner.peerHigh === selfHigh && owner.peerLow === selfLow)) {
        this.floodFrom(self, netId, 0, buf, off, len, NO_PEER);
        continue;
      }
      const hop = this.nextHopTo(owner.peerHigh, owner.peerLow);
      // The bridge handed the same frame to the VXLAN port, which carries it to this peer.
      if (hop.kernel) continue;
      const p = hop.peer;
      if (p === undefined || !p.up) {
        // The owner went away: flood so the frame still reaches it if it moved.
        this.floodFrom(self, netId, 0, buf, off, len, NO_PEER);
        continue;
      }
      this.tx.append(p, selfHigh, selfLow, owner.peerHigh, owner.peerLow, netId, 0, buf, off, len);
    }
    this.tx.flush();
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
      const p = this.peersByHalves.get(highHalf(name), lowHalf(name));
      if (p === undefined || !p.up) continue;
      // Our own broadcast to a fast-path peer also left through the VXLAN port: say so, so
      // the peer relays this copy without delivering it twice. Said per copy, because the
      // two ends may briefly disagree on which path carries them.
      const flag = ours && this.kernelPeers.has(name) ? KERNEL_COPY_FLAG : 0;
      this.tx.append(p, highHalf(src), lowHalf(src), 0, 0, netId, hops | flag, buf, off, len); // to NO_PEER
    }
  }

  // ---- hot path: datagrams from peers ----

  private onDatagrams(count: number, first: number): void {
    const sock = this.socket;
    const buf = sock.rxBuf;
    const slotSize = sock.slotSize;
    const segSizes = sock.rxSegSizes;
    this.now = this.clock.now();
    this.expressRoutes();
    for (let i = first; i < count; i++) {
      const off = i * slotSize;
      const len = sock.rxLengths[i]!;
      if (len === 0) {
        this.dropCounter.count('truncated');
        continue;
      }
      // With UDP GRO the kernel may hand us several same-sized datagrams back to back.
      const seg = segSizes[i]!;
      if (seg === 0 || seg >= len) {
        this.onDatagram(buf, off, len, i);
        continue;
      }
      for (let o = 0; o < len; o += seg) this.onDatagram(buf, off + o, Math.min(seg, len - o), i);
    }
    this.flushBridges();
    this.tx.flush();
  }

  /** The datagram at buf[off, off+len), from receive slot `slot` (its source address is read there, unboxed). */
  private onDatagram(buf: Buffer, off: number, len: number, slot: number): void {
    const kind = checkHeader(buf, off, len);
    if (typeof kind === 'string') {
      this.dropCounter.count(kind);
      return;
    }
    const p = this.peersByHalves.get(readDatagramSenderHigh(buf, off), readDatagramSenderLow(buf, off));
    if (p === undefined) {
      this.dropCounter.count('unknown_peer');
      return;
    }
    if (this.socket.rxAddrs[slot]! !== p.ip) {
      this.dropCounter.count('wrong_address');
      return;
    }
    if (kind === DatagramKind.Fragment) {
      this.onFragment(p, buf, off, len);
      return;
    }
    let inner: DatagramKind = kind;
    let body = off + DATAGRAM_HEADER_LENGTH;
    if (this.socket.rxFlags[slot] === EXPRESS_RX_OPENED) {
      // The express path opened it (one datagram per slot) and left the rest to us.
      inner = readInnerKind(buf, off + SEALED_INNER_KIND_OFFSET);
      body = off + SEALED_HEADER_LENGTH;
    } else if (kind === DatagramKind.Sealed) {
      if (p.crypto === undefined) {
        this.dropCounter.count('unexpected_sealed');
        return;
      }
      const r = p.crypto.openInPlace(buf, body, len - DATAGRAM_HEADER_LENGTH, this.now);
      if (r !== 'ok') {
        this.dropCounter.count(r);
        return;
      }
      inner = readInnerKind(buf, off + SEALED_INNER_KIND_OFFSET);
      body = off + SEALED_HEADER_LENGTH;
    } else if (p.crypto !== undefined) {
      // With keys agreed, anything in clear is an injection attempt.
      this.dropCounter.count('unsealed');
      return;
    }
    this.onPlainBody(p, inner, buf, body, off + len, false);
  }

  /** Act on an authenticated (or clear-by-agreement) body of kind `inner` at buf[body, end). */
  private onPlainBody(
    p: SleevePeer,
    inner: DatagramKind,
    buf: Buffer,
    body: number,
    end: number,
    direct: boolean,
  ): void {
    if (inner === DatagramKind.Frames) {
      const bad = checkRecords(buf, body, end);
      if (bad !== null) this.dropCounter.count(bad);
      else this.onRecords(p, buf, body, end, direct);
    } else if (
      (inner === DatagramKind.Heartbeat || inner === DatagramKind.HeartbeatAck) &&
      end - body === HEARTBEAT_BODY_LENGTH &&
      !direct
    ) {
      this.liveness.onHeartbeat(p, inner, buf, body);
    } else {
      this.dropCounter.count('bad_kind');
    }
  }

  private onFragment(p: SleevePeer, buf: Buffer, off: number, len: number): void {
    const total = p.reassembler.add(buf, off, len);
    if (total === 0) return;
    const r = p.reassembler.unit();
    if (p.crypto === undefined) {
      this.onPlainBody(p, DatagramKind.Frames, r, 0, total, true);
      return;
    }
    const result = p.crypto.openInPlace(r, 0, total, this.now);
    if (result !== 'ok') {
      this.dropCounter.count(result);
      return;
    }
    this.onPlainBody(p, readInnerKind(r, SEAL_UNIT_OVERHEAD), r, SEAL_UNIT_OVERHEAD + 1, total, true);
  }

  /**
   * Act on well-formed records in buf[start, end). `direct`: the buffer is reused as soon
   * as we return (a reassembly buffer), so deliveries are written at once instead of
   * being batched until the end of the receive batch.
   */
  private onRecords(from: SleevePeer, buf: Buffer, start: number, end: number, direct: boolean): void {
    const selfHigh = this.selfHigh;
    const selfLow = this.selfLow;
    let o = start;
    while (o < end) {
      const srcHigh = readRecordSrcHigh(buf, o);
      const srcLow = readRecordSrcLow(buf, o);
      const dstHigh = readRecordDstHigh(buf, o);
      const dstLow = readRecordDstLow(buf, o);
      const netId = readRecordNetwork(buf, o);
      const hops = readRecordHops(buf, o);
      const frameLen = readRecordFrameLength(buf, o);
      const payOff = o + RECORD_OFFLOAD_OFFSET; // offload block, then the frame
      const payLen = OFFLOAD_LENGTH + frameLen;
      from.framesIn++;
      from.bytesIn += frameLen;
      const toAll = dstHigh === 0 && dstLow === 0; // NO_PEER
      if (srcHigh === selfHigh && srcLow === selfLow) {
        this.dropCounter.count('looped');
      } else if (toAll || (dstHigh === selfHigh && dstLow === selfLow)) {
        const src = this.nameOf(srcHigh, srcLow);
        // A broadcast whose sender also sent it through the VXLAN port was delivered by
        // the kernel: only relay it (and learn where its sender lives).
        if (toAll && src === from.name && readRecordKernelCopy(buf, o)) this.learn(src, netId, buf, payOff);
        else this.deliver(src, netId, buf, payOff, payLen, direct);
        if (toAll) this.relayBroadcast(from, src, netId, hops, buf, payOff, payLen);
      } else {
        this.relayUnicast(from, srcHigh, srcLow, dstHigh, dstLow, netId, hops, buf, payOff, payLen);
      }
      o += FRAME_RECORD_HEADER_LENGTH + frameLen;
    }
  }

  private relayBroadcast(
    from: SleevePeer,
    src: PeerName,
    netId: number,
    hops: number,
    buf: Buffer,
    off: number,
    len: number,
  ): void {
    if (hops + 1 >= MAX_HOPS) this.dropCounter.count('hops_exceeded');
    else this.floodFrom(src, netId, hops + 1, buf, off, len, from.name);
  }

  private relayUnicast(
    from: SleevePeer,
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
    if (hops + 1 >= MAX_HOPS) {
      this.dropCounter.count('hops_exceeded');
      return;
    }
    const next = this.nextHopTo(dstHigh, dstLow).peer;
    if (next === undefined || !next.up || next === from) this.dropCounter.count('no_route');
    else this.tx.append(next, srcHigh, srcLow, dstHigh, dstLow, netId, hops + 1, buf, off, len);
  }

  private deliver(src: PeerName, netId: number, buf: Buffer, off: number, len: number, direct: boolean): void {
    const port = this.networks.get(netId);
    if (port === undefined) {
      // Trace probes ride a network id no bridge has: checked only here, off the frame path.
      if (netId === PROBE_NETWORK_ID && this.probeListener !== undefined) {
        this.probeListener(src, Buffer.from(buf.subarray(off + OFFLOAD_LENGTH, off + len)));
        return;
      }
      this.dropCounter.count('unknown_network');
      return;
    }
    this.learn(src, netId, buf, off);
    if (direct) {
      // Keep order with frames queued earlier in this batch.
      this.flushBridges();
      port.writeNow(buf, off, len);
      return;
    }
    if (!port.queue(off, len)) {
      this.flushBridges();
      port.queue(off, len);
    }
  }

  /** Learn where the source MAC of the frame at buf[off + OFFLOAD_LENGTH, ...) lives. */
  private learn(src: PeerName, netId: number, buf: Buffer, off: number): void {
    const at = off + OFFLOAD_LENGTH + 6;
    const high = readHalf(buf, at);
    if ((high & GROUP_BIT_HIGH) === 0) {
      const low = readHalf(buf, at + 3);
      this.macs.refresh(netId, high, low, src, this.now);
      this.express?.learn(netId, high, low, highHalf(src), lowHalf(src));
    }
  }

  // ---- the express path: what it may do, and what it did ----

  /** Tell the express path what it may do for `p` now (nothing for undefined). */
  private expressPeer(p: SleevePeer | undefined): void {
    if (this.express === undefined || p === undefined) return;
    const high = highHalf(p.name);
    const low = lowHalf(p.name);
    // Straight to the peer only where the JS path would send there too: up, the route's
    // next hop is the peer itself, and not a peer the kernel path carries.
    const hop = this.nextHopTo(high, low);
    this.express.setPeer(high, low, {
      ip: p.ip,
      port: p.port,
      maxDatagram: p.pmtu,
      direct: p.up && hop.peer === p && !hop.kernel,
      sealed: p.crypto !== undefined,
      crypto: p.crypto instanceof NativePeerCrypto ? p.crypto.handle : undefined,
    });
  }

  private expressAllPeers(): void {
    if (this.express === undefined) return;
    for (const p of this.peers.values()) this.expressPeer(p);
  }

  /** Re-tell the express path about every peer when the routes changed since it was last told. */
  private expressRoutes(): void {
    if (this.express === undefined || this.routes.routesVersion === this.expressRoutesSeen) return;
    this.expressRoutesSeen = this.routes.routesVersion;
    this.expressAllPeers();
  }

  /** Fold what the express path counted since the last call into the sleeve's own counters. */
  private drainExpress(): void {
    const x = this.express;
    if (x === undefined) return;
    this.expressRoutes();
    this.takeEach(x, ExpressTake.Peers, (out, e) => {
      const p = this.peersByHalves.get(out[e]!, out[e + 1]!);
      if (p === undefined) return;
      p.framesIn += out[e + 2]!;
      p.bytesIn += out[e + 3]!;
      p.framesOut += out[e + 4]!;
      p.bytesOut += out[e + 5]!;
    });
    this.takeEach(x, ExpressTake.Networks, (out, e) => {
      const port = this.networks.get(out[e]!);
      if (port === undefined) return;
      port.framesFromBridge += out[e + 1]!;
      port.framesToBridge += out[e + 2]!;
    });
    this.takeEach(x, ExpressTake.Flows, (out, e) =>
      this.flows?.record(out[e]!, out[e + 1]!, out[e + 2]!, out[e + 3]!, out[e + 4]!, out[e + 6]!, out[e + 5]),
    );
    // MACs the express path delivered from: refreshed here too, so they do not expire.
    this.takeEach(x, ExpressTake.Seen, (out, e) =>
      this.macs.refresh(out[e]!, out[e + 1]!, out[e + 2]!, this.nameOf(out[e + 3]!, out[e + 4]!), out[e + 5]!),
    );
    this.takeEach(x, ExpressTake.Drops, (out, e) => {
      const errno = out[e + 1]!;
      const code = ERRNO_NAMES.get(errno);
      const toBridge = out[e] === 1;
      const reason: DropReason =
        errno === 0
          ? toBridge
            ? 'bridge_queue_full'
            : 'send_queue_full'
          : toBridge
            ? bridgeErrorReason({ code })
            : sendErrorReason({ code });
      this.dropCounter.count(reason, out[e + 2]);
    });
  }

  /** fn(out, e) for every entry of this kind the express path holds, e the entry's first index in out. */
  private takeEach(x: ExpressPort, what: ExpressTake, fn: (out: Float64Array, e: number) => void): void {
    const size = EXPRESS_ENTRY_LENGTH[what];
    const out = this.expressOut.subarray(0, EXPRESS_TAKE_ENTRIES * size);
    for (let n = x.take(what, out); n > 0; n = x.take(what, out)) {
      for (let i = 0; i < n; i++) fn(out, i * size);
    }
  }

  /**
   * The next hop towards the peer with these name halves, cached until the routes, our
   * peers or the kernel's peers change: asking the route table per frame boxed the
   * 48-bit names it takes and answers.
   */
  private nextHopTo(high: number, low: number): NextHop {
    const version = this.routes.routesVersion;
    if (version !== this.routesSeen || this.hops.size >= MAX_INTERNED_NAMES) {
      this.hops.clear();
      this.routesSeen = version;
    }
    const known = this.hops.get(high, low);
    if (known !== undefined) return known;
    const dst = fromHalves(high, low);
    const hop = this.routes.unicastNextHop(dst);
    const fresh: NextHop = {
      peer: hop === undefined ? undefined : this.peers.get(hop),
      kernel: hop === dst && this.kernelPeers.has(dst),
    };
    this.hops.set(dst, fresh);
    return fresh;
  }

  /**
   * The peer name with these halves, boxed once and then handed back from the table, so
   * the frame path passes it on without allocating. The table starts over when full.
   */
  private nameOf(high: number, low: number): PeerName {
    const known = this.names.get(high, low);
    if (known !== undefined) return known;
    if (this.names.size >= MAX_INTERNED_NAMES) this.names.clear();
    const name = fromHalves(high, low);
    this.names.set(name, name);
    return name;
  }

  private flushBridges(): void {
    const ring = this.socket.rxBuf;
    for (const port of this.networks.values()) port.flush(ring);
  }
}
