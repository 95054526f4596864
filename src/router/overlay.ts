/**
 * The port the router owns and the data paths implement (sleeve, and the composite of
 * sleeve + fastdp in src/datapath/composite.ts): the router tells a data path which peers
 * exist and where; the data path tells the router when its path to a peer comes up or
 * goes down. The data paths import this file; the router never imports a data path.
 * Nothing here knows about TCP or gossip.
 */
import type { PeerName } from '../net/peername';

/**
 * Network id of trace probe records (src/diagnostics/trace-probe-codec.ts): 24 bits all
 * set; network ids of real networks are hashes below it. A data path hands records of
 * this network to the probe listener instead of a bridge.
 */
export const PROBE_NETWORK_ID = 0xffffff;

/**
 * Counts frames a data path takes from a bridge, per (network, source MAC, destination
 * MAC), for `weavets flows` (implemented by FlowCounter in src/diagnostics/flows.ts).
 * MACs come as 24-bit halves (src/net/halves.ts), so counting a frame allocates nothing.
 */
export interface FrameCounter {
  /** `packets` frames of `bytes` bytes in all (one frame when absent). */
  record(
    net: number,
    srcHigh: number,
    srcLow: number,
    dstHigh: number,
    dstLow: number,
    bytes: number,
    packets?: number,
  ): void;
}

/** Read-only view of the routes the router computes from the topology. */
export interface RouteTable {
  /** Changes whenever any route may have changed (the sleeve caches next hops by it). */
  readonly routesVersion: number;
  unicastNextHop(dst: PeerName): PeerName | undefined;
  broadcastNextHops(src: PeerName): readonly PeerName[];
}

export interface OverlayNetwork {
  /** Network id carried with every frame (24 bits). */
  id: number;
  name: string;
  /** The Linux bridge containers of this network plug into. */
  bridge: string;
  /** MTU of the bridge and every container interface on it. */
  mtu: number;
}

export interface PeerPathStats {
  framesIn: number;
  bytesIn: number;
  framesOut: number;
  bytesOut: number;
}

export interface PeerPathStatus extends PeerPathStats {
  up: boolean;
  /** Largest UDP payload we send to this peer. */
  pmtu: number;
  rttMs: number | undefined;
  /** Heartbeats sent to and answered by this peer since it was added (health loss). */
  heartbeatsSent?: number;
  heartbeatsAnswered?: number;
  /** Date.now() of the last heartbeat answer; 0 when none came yet. */
  lastAnswerAt?: number;
}

/** A trace probe frame arrived for us from `from` (src/diagnostics/trace-probe-codec.ts). */
export type ProbeListener = (from: PeerName, frame: Buffer) => void;

export interface DatapathEvents {
  /** The data path to `peer` started or stopped carrying traffic both ways. */
  pathChanged(peer: PeerName, up: boolean): void;
}

export interface Datapath {
  readonly kind: 'sleeve' | 'fastdp';
  /** Start carrying the frames of a network's bridge. Idempotent. */
  addNetwork(net: OverlayNetwork): Promise<void>;
  removeNetwork(id: number): Promise<void>;
  /**
   * A peer we have a control connection to: its underlay address and data port, and the
   * keys sealing its datagrams (undefined: clear, no password or a trusted subnet).
   */
  addPeer(peer: PeerName, ip: string, port: number, keys?: { send: Buffer; recv: Buffer }): Promise<void>;
  /** `hold`: the peer restarts with its kernel path in place; keep carrying it there a while (fastdp). */
  removePeer(peer: PeerName, opts?: { hold?: boolean }): void;
  /** Stopping without reset: leave the kernel fast path in place for the next start (fastdp). */
  retainKernelPath?(): Promise<void>;
  /** Called by the router when routes change (peer reachable/unreachable). */
  peerGone(peer: PeerName): void;
  peerStatus(peer: PeerName): PeerPathStatus | undefined;
  /** Which path carries this peer's traffic now (per connection); undefined: unknown peer. */
  peerDatapath(peer: PeerName): 'sleeve' | 'fastdp' | undefined;
  /** Drop counters by reason, for /metrics. */
  drops(): ReadonlyMap<string, number>;
  /** Frames a network delivered to or received from its bridge. */
  networkStats(): { network: number; framesFromBridge: number; framesToBridge: number }[];
  /**
   * Send a trace probe frame to `dst` along the unicast route, as a record on the
   * reserved probe network; false when there is no usable next hop.
   */
  sendProbe?(dst: PeerName, frame: Buffer): boolean;
  setProbeListener?(listener: ProbeListener | undefined): void;
  /** Per-MAC kernel FDB entries programmed (fastdp only). */
  kernelMacEntries?(): number;
  /**
   * Frames the sleeve's express path (native/src/express.c) sent and delivered without JS;
   * of those, the super-frames it sent as fragment series and rebuilt from them.
   */
  expressFrames?(): { sent: number; delivered: number; superframesSent: number; superframesDelivered: number };
  close(): Promise<void>;
}
