/**
 * The data path the router sees when the kernel fast path is possible: the sleeve and
 * fastdp behind one Datapath. Every peer gets the sleeve (heartbeats, relaying,
 * encryption, fallback); a peer whose data goes in clear also gets fastdp probes, and
 * while its VXLAN path is proven the kernel carries its frames and the sleeve steps
 * aside for it (kernelPeers). A peer is "up" for routing when either path is up.
 * The sleeve's MAC table feeds fastdp's per-MAC FDB entries (who owns which MAC).
 */
import type { Logger } from '../log';
import { formatPeerName, type PeerName } from '../net/peername';
import type { SleeveDatapath } from './sleeve/sleeve';
import type { FastDatapath, FastdpEvents } from './fastdp/fastdp';
import type { Datapath, DatapathEvents, OverlayNetwork, PeerPathStatus, ProbeListener } from '../router/overlay';

export class CompositeDatapath implements Datapath, DatapathEvents, FastdpEvents {
  readonly kind = 'fastdp' as const;
  /** Peers the kernel carries now; the sleeve reads it on its hot path. */
  readonly kernelPeers = new Set<PeerName>();
  private sleeve!: SleeveDatapath;
  private fast: FastDatapath | undefined;
  /** Last "up" reported to the router per peer (sleeve up || fast up). */
  private readonly reported = new Map<PeerName, boolean>();

  constructor(
    private readonly events: DatapathEvents,
    private readonly log: Logger,
  ) {}

  /** Both paths are built with this object as their event sink, then attached here. */
  attach(sleeve: SleeveDatapath, fast: FastDatapath | undefined): void {
    this.sleeve = sleeve;
    this.fast = fast;
    if (fast !== undefined) sleeve.macs.setListener(fast);
  }

  get fastPath(): FastDatapath | undefined {
    return this.fast;
  }

  async addNetwork(net: OverlayNetwork): Promise<void> {
    await this.sleeve.addNetwork(net);
    await this.fast?.addNetwork(net);
  }

  async removeNetwork(id: number): Promise<void> {
    await this.fast?.removeNetwork(id);
    await this.sleeve.removeNetwork(id);
  }

  async addPeer(peer: PeerName, ip: string, port: number, keys?: { send: Buffer; recv: Buffer }): Promise<void> {
    await this.sleeve.addPeer(peer, ip, port, keys);
    // Sealed data cannot go through plain VXLAN: such a peer stays on the sleeve.
    if (keys === undefined) this.fast?.addPeer(peer, ip);
    else this.fast?.removePeer(peer);
  }

  removePeer(peer: PeerName, opts: { hold?: boolean } = {}): void {
    this.fast?.removePeer(peer, opts);
    this.sleeve.removePeer(peer);
    this.kernelPeers.delete(peer);
    this.sleeve.kernelPeersChanged();
    this.reported.delete(peer);
  }

  peerGone(peer: PeerName): void {
    this.sleeve.peerGone(peer);
  }

  peerDatapath(peer: PeerName): 'sleeve' | 'fastdp' | undefined {
    if (this.kernelPeers.has(peer)) return 'fastdp';
    return this.sleeve.peerDatapath(peer);
  }

  peerStatus(peer: PeerName): PeerPathStatus | undefined {
    const s = this.sleeve.peerStatus(peer);
    const f = this.fast?.peerStatus(peer);
    if (s === undefined) return undefined;
    const kernel = this.kernelPeers.has(peer);
    return { ...s, up: s.up || (f?.up ?? false), rttMs: kernel && f?.rttMs !== undefined ? f.rttMs : s.rttMs };
  }

  drops(): ReadonlyMap<string, number> {
    const f = this.fast?.drops();
    if (f === undefined || f.size === 0) return this.sleeve.drops();
    const all = new Map(this.sleeve.drops());
    for (const [k, v] of f) all.set(`probe_${k}`, (all.get(`probe_${k}`) ?? 0) + v);
    return all;
  }

  networkStats(): { network: number; framesFromBridge: number; framesToBridge: number }[] {
    return this.sleeve.networkStats();
  }

  expressFrames(): { sent: number; delivered: number; superframesSent: number; superframesDelivered: number } {
    return this.sleeve.expressFrames();
  }

  sendProbe(dst: PeerName, frame: Buffer): boolean {
    return this.sleeve.sendProbe(dst, frame);
  }

  setProbeListener(listener: ProbeListener | undefined): void {
    this.sleeve.setProbeListener(listener);
  }

  /** Per-MAC FDB entries fastdp has programmed (0 without fastdp). */
  kernelMacEntries(): number {
    return this.fast?.macEntries().programmed ?? 0;
  }

  async retainKernelPath(): Promise<void> {
    await this.fast?.retain();
  }

  async close(): Promise<void> {
    this.sleeve.macs.setListener(undefined);
    await this.fast?.close();
    this.kernelPeers.clear();
    await this.sleeve.close();
  }

  // ---- events from the two paths ----

  /** From the sleeve: its heartbeats to `peer` started or stopped being answered. */
  pathChanged(peer: PeerName): void {
    this.report(peer);
  }

  /** From fastdp: the kernel path to `peer` is programmed (true) or was taken down. */
  fastPathChanged(peer: PeerName, up: boolean): void {
    if (up) this.kernelPeers.add(peer);
    else this.kernelPeers.delete(peer);
    this.sleeve.kernelPeersChanged();
    this.log.info(up ? 'peer on fastdp' : 'peer on sleeve', { peer: formatPeerName(peer) });
    this.report(peer);
  }

  private report(peer: PeerName): void {
    const up = this.peerStatus(peer)?.up ?? false;
    if (this.reported.get(peer) === up) return;
    this.reported.set(peer, up);
    this.events.pathChanged(peer, up);
  }
}
