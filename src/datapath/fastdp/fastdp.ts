/**
 * fastdp: the kernel carries the frames. Per network a VXLAN device (VNI = network id,
 * UDP 6784, learning off) is a port of the network's bridge; per peer whose VXLAN path is
 * proven, an all-zeros FDB entry makes the device replicate broadcast and unknown
 * destinations to that peer's underlay address (and known destinations without a per-MAC
 * entry, below, go there too). The daemon never touches a frame on this path; it only
 * programs the kernel and proves the path with probes.
 *
 * Probes: a separate VXLAN device (reserved VNI 0xffffff, same UDP port) with an IPv6
 * link-local address and MAC derived from the peer name, a permanent neighbour entry and
 * an FDB entry per peer. A probe is a UDP datagram to the peer's derived address: it
 * leaves through the kernel's VXLAN encapsulation to the peer's underlay IP on UDP 6784,
 * exactly like container traffic, so an answered probe proves the path both ways and a
 * blocked port is noticed within PATH_DEAD_MS. See docs/FASTDP.md.
 *
 * Per-MAC entries: the sleeve's MAC table reports (batched, off the frame path) which peer
 * owns which MAC; for a MAC whose owner is on the fast path now, `MAC dst <owner IP>` on
 * the network's device sends its known unicast to the owner alone instead of to every
 * all-zeros VTEP. These are level-triggered: each sync compares what the kernel should
 * have (from the mirrored owners and the peers' current state) with what we programmed.
 *
 * All netlink changes run one at a time on a queue, so a peer flapping up and down never
 * has its FDB entries added and removed out of order.
 *
 * Restarts keep traffic (docs/FASTDP.md, "Restarts"): a daemon that stops without reset
 * calls retain(), which leaves the network devices and their FDB entries in the kernel
 * and records them in the state dir (fastdp-kept.json); the next start adopts those
 * devices instead of rebuilding them. Entries nobody owns any more (the peers of a
 * restarting daemon, or a peer that said it restarts) are *held*: kept for HOLD_MS,
 * adopted when that peer's path is proven again, deleted if it is not.
 */
import * as dgram from 'node:dgram';
import * as fs from 'node:fs';
import type { Logger } from '../../log';
import type { Netlink } from '../../netlink';
import { isIpv4 } from '../../net/ipv4';
import { PROBE_LINK_NAME, tapLinkName, vxlanLinkName } from '../../net/links';
import { formatPeerName, type PeerName } from '../../net/peername';
import { formatMac } from '../../net/mac';
import type { MacTableListener } from '../../net/mactable';
import type { OverlayNetwork } from '../../router/overlay';
import { decode, encode, ProbeKind, PROBE_LENGTH, probeAddressFor, probeMacFor } from './probe-codec';
import { SerialQueue } from '../../serial-queue';
import type { FieldReader, JsonObject } from '../../json-fields';
import { JsonStateFile, type StateFormat } from '../../state/json-state-file';

export const FASTDP_PORT = 6784;
/** VXLAN header (8) + UDP (8) + IPv4 (20) + inner Ethernet (14). */
export const VXLAN_OVERHEAD = 50;
/** VNI of the probe device; a network hashing to it is carried by the sleeve only. */
export const PROBE_VNI = 0xffffff;
export const PROBE_DEVICE = PROBE_LINK_NAME;
const ZERO_MAC = '00:00:00:00:00:00';
/** At most this many per-MAC FDB entries over all networks (the sleeve MAC table's capacity). */
export const MAX_MAC_FDB_ENTRIES = 65536;

/** How long an all-zeros entry nobody owns is kept for its peer to come back. */
export const HOLD_MS = 30_000;

const PROBE_INTERVAL_MS = 500;
const TICK_MS = 250;
/** A fast path with no probe answered for this long is down. */
export const PATH_DEAD_MS = 2000;
/**
 * The two ends of a path switch within about a probe interval of each other. Frames the
 * peer sent by the old path meanwhile taught our bridge its MACs behind the old port
 * again, after our flush; so the old port is flushed once more when both have switched.
 */
const SWITCH_SETTLE_MS = 3 * PROBE_INTERVAL_MS;

export function vxlanNameFor(networkId: number): string {
  return vxlanLinkName(networkId);
}

export interface FastdpEvents {
  /** The kernel path to `peer` was proven (FDB programmed) or lost (FDB removed). */
  fastPathChanged(peer: PeerName, up: boolean): void;
}

export interface FastdpOptions {
  self: PeerName;
  netlink: Netlink;
  log: Logger;
  events: FastdpEvents;
  /** UDP port of the VXLAN devices (and of the probes inside them). */
  port?: number;
  /** Called with every link name before it is created (the link ledger). */
  recordLink: (name: string) => Promise<void>;
  /** Where retain() records the kernel state it leaves, and open() finds it; none: always rebuild. */
  keptStatePath?: string;
}

/** What retain() left in the kernel, per network id: all-zeros VTEPs and per-MAC entries. */
interface KeptState {
  networks: Map<number, { vteps: string[]; macs: [number, string][] }>;
}

const isIp = (v: unknown): v is string => typeof v === 'string' && isIpv4(v);

/** The state file's networks, parsed strictly: anything unexpected is a StateFileError (the caller rebuilds). */
function parseKeptState(doc: JsonObject, fields: FieldReader): KeptState {
  const networks = new Map<number, { vteps: string[]; macs: [number, string][] }>();
  fields.reqArray(doc, 'networks').forEach((n, i) => {
    const at = `networks[${i}]`;
    const o = fields.asObject(n, at);
    const f = fields.within(`${at}.`);
    const id = f.reqInteger(o, 'id', 0, PROBE_VNI - 1);
    const vteps = f.reqStringArray(o, 'vteps');
    if (!vteps.every(isIp)) throw f.fail('vteps', 'must hold IPv4 addresses');
    const macs = f.reqArray(o, 'macs').map((m, j): [number, string] => {
      if (!Array.isArray(m) || m.length !== 2 || typeof m[0] !== 'number' || !Number.isSafeInteger(m[0]) || !isIp(m[1]))
        throw f.fail(`macs[${j}]`, 'must be [MAC as an integer, VTEP IPv4 address]');
      return [m[0], m[1]];
    });
    networks.set(id, { vteps, macs });
  });
  return { networks };
}

/** fastdp-kept.json: version 1 adds `version` to the unversioned {networks: [{id, vteps, macs}]}. */
export const KEPT_STATE_FORMAT: StateFormat<KeptState> = {
  version: 1,
  parse: parseKeptState,
  parseUnversioned: (doc, fields) => parseKeptState(fields.asObject(doc, 'the document'), fields),
  toJson: (kept) => ({ networks: [...kept.networks].map(([id, n]) => ({ id, vteps: n.vteps, macs: n.macs })) }),
};

interface FastPeer {
  name: PeerName;
  ip: string;
  address: string;
  up: boolean;
  /** FDB entries for this peer are on the network devices. */
  programmed: boolean;
  lastAckAt: number;
  /** When the peer's last PROBE arrived, and whether it said it hears us. */
  lastPeerProbeAt: number;
  peerHearsUs: boolean;
  seq: number;
  sentAt: number;
  /** performance.now() of the last PROBE: sub-millisecond RTTs for health and trace. */
  sentHr: number;
  rttMs: number | undefined;
  framesOut: number;
}

interface FastNetwork {
  net: OverlayNetwork;
  dev: string;
}

function normalizeV6(addr: string): string {
  const bare = addr.replace(/%.*$/, '');
  try {
    return new URL(`http://[${bare}]/`).hostname;
  } catch {
    return bare;
  }
}

export class FastDatapath implements MacTableListener {
  private readonly self: PeerName;
  private readonly netlink: Netlink;
  private readonly log: Logger;
  private readonly events: FastdpEvents;
  private readonly port: number;
  private readonly recordLink: (name: string) => Promise<void>;
  private readonly peers = new Map<PeerName, FastPeer>();
  private readonly networks = new Map<number, FastNetwork>();
  private readonly dropCounts = new Map<string, number>();
  /** MAC owners as the sleeve's MAC table reported them: network id -> MAC -> peer. */
  private readonly macOwners = new Map<number, Map<number, PeerName>>();
  /** Per-MAC FDB entries we programmed: network id -> MAC -> VTEP IP. */
  private readonly macVteps = new Map<number, Map<number, string>>();
  /** MACs changed since the last sync: network id -> MACs. */
  private dirtyMacs = new Map<number, Set<number>>();
  private macSyncQueued = false;
  /** Per-MAC entries not programmed because MAX_MAC_FDB_ENTRIES was reached. */
  private macEntriesOverCap = 0;
  /** Per-MAC entry changes the kernel refused. */
  private macErrors = 0;
  private socket: dgram.Socket | undefined;
  private timer: NodeJS.Timeout | undefined;
  private readonly queue = new SerialQueue();
  private lastTickAt = Date.now();
  private closed = false;
  /** retain() ran: the kernel state stays as it is, whatever is closed or removed now. */
  private retained = false;
  /** What the previous run retained, adopted network by network in addNetwork. */
  private kept: KeptState | undefined;
  private readonly keptFile: JsonStateFile<KeptState> | undefined;
  /** All-zeros VTEP entries nobody owns now: VTEP IP -> the networks carrying it, and its release timer. */
  private readonly held = new Map<string, { networks: Set<number>; timer: NodeJS.Timeout }>();

  private constructor(opts: FastdpOptions) {
    this.self = opts.self;
    this.netlink = opts.netlink;
    this.log = opts.log;
    this.events = opts.events;
    this.port = opts.port ?? FASTDP_PORT;
    this.recordLink = opts.recordLink;
    this.keptFile =
      opts.keptStatePath === undefined ? undefined : new JsonStateFile(opts.keptStatePath, KEPT_STATE_FORMAT);
  }

  /** Read (and remove: it describes the kernel only until we change it) what the last run retained. */
  private loadKept(): void {
    if (this.keptFile === undefined) return;
    try {
      // None: first start, or the last run crashed or was reset: rebuild.
      this.kept = this.keptFile.readSync();
    } catch (err) {
      this.log.warn('ignoring an unreadable fast path state file; rebuilding', {
        file: this.keptFile.file,
        error: (err as Error).message,
      });
    }
    fs.rmSync(this.keptFile.file, { force: true });
  }

  /** Create the probe device and socket; throws when this kernel cannot do VXLAN. */
  static async open(opts: FastdpOptions): Promise<FastDatapath> {
    const fd = new FastDatapath(opts);
    try {
      fd.loadKept();
      await fd.openProbe();
    } catch (err) {
      await fd.close();
      throw err;
    }
    return fd;
  }

  private async openProbe(): Promise<void> {
    await this.recordLink(PROBE_DEVICE);
    // Whatever a previous run left (a crash) goes: its neighbours and FDB entries with it.
    await this.netlink.deleteLink(PROBE_DEVICE, { ignoreMissing: true });
    await this.netlink.createVxlan(PROBE_DEVICE, {
      vni: PROBE_VNI,
      port: this.port,
      learning: false,
      mac: probeMacFor(this.self),
    });
    await this.netlink.setUp(PROBE_DEVICE);
    const local = probeAddressFor(this.self);
    await this.netlink.addAddressNoDad(PROBE_DEVICE, `${local}/64`);
    const sock = dgram.createSocket({ type: 'udp6', ipv6Only: true });
    await new Promise<void>((resolve, reject) => {
      sock.once('error', reject);
      sock.bind({ address: `${local}%${PROBE_DEVICE}`, port: this.port, exclusive: true }, () => {
        sock.off('error', reject);
        resolve();
      });
    });
    sock.on('error', (err) => this.log.warn('probe socket error', { error: err.message }));
    sock.on('message', (msg, rinfo) => this.onProbe(msg, rinfo.address));
    sock.unref();
    this.socket = sock;
    this.timer = setInterval(() => this.tick(), TICK_MS);
    this.timer.unref();
    this.log.info('fast path ready', { probe: `${local}%${PROBE_DEVICE}`, port: this.port });
  }

  /**
   * Run netlink work strictly in order; errors are logged, never break the queue. After
   * retain() nothing queued runs: the kernel state is the next run's to adopt.
   */
  private enqueue(what: string, fn: () => Promise<void>): Promise<void> {
    return this.queue
      .run(() => (this.retained ? undefined : fn()))
      .catch((err: Error) => {
        this.log.warn(`fast path: ${what} failed`, { error: err.message });
      });
  }

  // ---- networks ----

  /** Add the network's VXLAN port to its bridge (after the sleeve added its TAP). */
  async addNetwork(net: OverlayNetwork): Promise<void> {
    if (this.networks.has(net.id) || this.closed) return;
    if (net.id === PROBE_VNI) {
      this.log.warn('network id collides with the probe VNI: the sleeve carries it alone', { network: net.name });
      return;
    }
    const dev = vxlanNameFor(net.id);
    const kept = this.kept?.networks.get(net.id);
    this.kept?.networks.delete(net.id);
    let failure: Error | undefined;
    await this.enqueue(`add network ${net.name}`, async () => {
      try {
        await this.recordLink(dev);
        const existing = kept === undefined ? undefined : await this.netlink.getLink(dev);
        if (kept !== undefined && existing?.kind === 'vxlan') {
          // Left by our last run (retain): adopted with its FDB, so traffic never stopped.
          // Its entries are held until their peers prove their paths again.
          for (const ip of kept.vteps) this.hold(ip, net.id);
          this.macVteps.set(net.id, new Map(kept.macs));
          await this.netlink.setMtu(dev, net.mtu);
          this.log.info('fast path: adopted the network device the last run left', {
            network: net.name,
            dev,
            vteps: kept.vteps.length,
            macs: kept.macs.length,
          });
        } else {
          // Whatever a crashed run left goes, with its FDB entries.
          await this.netlink.deleteLink(dev, { ignoreMissing: true });
        }
        await this.netlink.createVxlan(dev, { vni: net.id, port: this.port, learning: false, mtu: net.mtu });
        await this.netlink.setMaster(dev, net.bridge);
        // The TAP and the VXLAN port must never forward to each other: a frame that came
        // from one path is delivered to local ports only, so nothing loops or doubles.
        await this.netlink.setBridgePort(dev, { isolated: true });
        await this.netlink.setBridgePort(tapLinkName(net.id), { isolated: true });
        await this.netlink.setUp(dev);
        this.networks.set(net.id, { net, dev });
        for (const p of this.peers.values()) if (p.programmed) await this.netlink.addFdb(dev, ZERO_MAC, p.ip);
        await this.syncAllMacs();
        this.log.info('fast path carrying network', { network: net.name, vni: net.id, dev, mtu: net.mtu });
      } catch (err) {
        failure = err as Error;
        await this.netlink.deleteLink(dev, { ignoreMissing: true }).catch(() => undefined);
        throw err;
      }
    });
    if (failure) throw failure;
  }

  async removeNetwork(id: number): Promise<void> {
    await this.enqueue(`remove network ${id}`, async () => {
      const n = this.networks.get(id);
      if (!n || this.retained) return;
      this.networks.delete(id);
      // The device's FDB entries go with it.
      this.macVteps.delete(id);
      await this.netlink.deleteLink(n.dev, { ignoreMissing: true });
    });
  }

  // ---- peers ----

  /** Start probing a directly connected peer whose data goes in clear. */
  addPeer(peer: PeerName, ip: string): void {
    if (this.closed) return;
    const existing = this.peers.get(peer);
    if (existing && existing.ip === ip) return;
    if (existing) this.removePeer(peer);
    const p: FastPeer = {
      name: peer,
      ip,
      address: probeAddressFor(peer),
      up: false,
      programmed: false,
      lastAckAt: 0,
      lastPeerProbeAt: 0,
      peerHearsUs: false,
      seq: 0,
      sentAt: 0,
      sentHr: 0,
      rttMs: undefined,
      framesOut: 0,
    };
    this.peers.set(peer, p);
    void this.enqueue(`probe entries for ${formatPeerName(peer)}`, async () => {
      if (this.peers.get(peer) !== p) return;
      await this.netlink.setNeighbour(PROBE_DEVICE, p.address, probeMacFor(peer));
      await this.netlink.addFdb(PROBE_DEVICE, probeMacFor(peer), ip);
      this.sendProbe(p, ProbeKind.Probe, 0);
    });
  }

  /**
   * Stop probing a peer. Its kernel entries go, unless `hold`: the peer said it restarts
   * with its kernel path in place, so its entries stay (held) and traffic keeps flowing.
   */
  removePeer(peer: PeerName, opts: { hold?: boolean } = {}): void {
    const p = this.peers.get(peer);
    if (!p) return;
    this.peers.delete(peer);
    if (this.retained) return;
    if (opts.hold === true && p.programmed) {
      p.up = false;
      p.programmed = false;
      this.log.info('fast path held: the peer restarts with its kernel path in place', {
        peer: formatPeerName(peer),
        vtep: p.ip,
        holdMs: HOLD_MS,
      });
      for (const n of this.networks.values()) this.hold(p.ip, n.net.id);
    } else if (p.up) this.setDown(p, 'peer removed');
    void this.enqueue(`remove probe entries for ${formatPeerName(peer)}`, async () => {
      await this.netlink.delFdb(PROBE_DEVICE, probeMacFor(peer), p.ip);
      await this.netlink.delNeighbour(PROBE_DEVICE, p.address);
    });
  }

  isUp(peer: PeerName): boolean {
    return this.peers.get(peer)?.up === true;
  }

  peerStatus(peer: PeerName): { up: boolean; rttMs: number | undefined } | undefined {
    const p = this.peers.get(peer);
    return p === undefined ? undefined : { up: p.up, rttMs: p.rttMs };
  }

  drops(): ReadonlyMap<string, number> {
    return this.dropCounts;
  }

  /** Per-MAC FDB entries programmed now, and those left out by the cap. */
  macEntries(): { programmed: number; overCap: number; errors: number } {
    return { programmed: this.programmedMacCount(), overCap: this.macEntriesOverCap, errors: this.macErrors };
  }

  // ---- per-MAC entries (MacTableListener: batched, never on the frame path) ----

  macChanged(networkId: number, mac: number, peer: PeerName | undefined): void {
    if (this.closed) return;
    let owners = this.macOwners.get(networkId);
    if (peer === undefined) {
      owners?.delete(mac);
      if (owners?.size === 0) this.macOwners.delete(networkId);
    } else {
      if (owners === undefined) {
        owners = new Map();
        this.macOwners.set(networkId, owners);
      }
      owners.set(mac, peer);
    }
    let dirty = this.dirtyMacs.get(networkId);
    if (dirty === undefined) {
      dirty = new Set();
      this.dirtyMacs.set(networkId, dirty);
    }
    dirty.add(mac);
  }

  macBatchEnd(): void {
    if (this.closed || this.macSyncQueued || this.dirtyMacs.size === 0) return;
    this.macSyncQueued = true;
    void this.enqueue('per-MAC FDB entries', async () => {
      this.macSyncQueued = false;
      const dirty = this.dirtyMacs;
      this.dirtyMacs = new Map();
      for (const [id, macs] of dirty) {
        const n = this.networks.get(id);
        if (n === undefined) continue;
        for (const mac of macs) await this.syncMac(n, mac);
      }
    });
  }

  /** Where `mac` should go on network `id`: its owner's IP while the owner is programmed on the fast path. */
  private wantedVtep(id: number, mac: number): string | undefined {
    const owner = this.macOwners.get(id)?.get(mac);
    if (owner === undefined || owner === this.self) return undefined;
    const p = this.peers.get(owner);
    return p !== undefined && p.up && p.programmed ? p.ip : undefined;
  }

  /** Make the kernel's entry for one MAC what wantedVtep says. Runs on the queue. */
  private async syncMac(n: FastNetwork, mac: number): Promise<void> {
    if (this.networks.get(n.net.id) !== n) return;
    const want = this.wantedVtep(n.net.id, mac);
    let vteps = this.macVteps.get(n.net.id);
    const have = vteps?.get(mac);
    if (want === have) return;
    try {
      if (want === undefined) {
        await this.netlink.delFdb(n.dev, formatMac(mac), have!);
        vteps!.delete(mac);
        return;
      }
      if (have === undefined && this.programmedMacCount() >= MAX_MAC_FDB_ENTRIES) {
        this.macEntriesOverCap++;
        return;
      }
      // REPLACE: creates the entry, or moves it to the new owner in place (a unicast MAC
      // has one VTEP; APPEND would add a second and send its frames to both).
      await this.netlink.replaceFdb(n.dev, formatMac(mac), want);
      if (vteps === undefined) {
        vteps = new Map();
        this.macVteps.set(n.net.id, vteps);
      }
      vteps.set(mac, want);
    } catch (err) {
      // Whatever the kernel holds now, the all-zeros entries keep the MAC reachable.
      this.macErrors++;
      this.log.debug('per-MAC FDB entry failed', {
        dev: n.dev,
        mac: formatMac(mac),
        vtep: want ?? have,
        error: (err as Error).message,
      });
    }
  }

  /** Sync every MAC we know or programmed (a peer changed path, a network was added). Runs on the queue. */
  private async syncAllMacs(): Promise<void> {
    for (const n of this.networks.values()) {
      const id = n.net.id;
      const macs = new Set([...(this.macVteps.get(id)?.keys() ?? []), ...(this.macOwners.get(id)?.keys() ?? [])]);
      for (const mac of macs) await this.syncMac(n, mac);
    }
  }

  /** Per-MAC entries programmed, over all networks (a handful of maps: counted, not kept). */
  private programmedMacCount(): number {
    let count = 0;
    for (const vteps of this.macVteps.values()) count += vteps.size;
    return count;
  }

  /** Wait for queued netlink work (tests, shutdown). */
  settled(): Promise<void> {
    return this.queue.idle();
  }

  /** Keep the all-zeros entry for `ip` on network `id` for HOLD_MS, unless a peer there adopts it. */
  private hold(ip: string, id: number): void {
    const h = this.held.get(ip);
    if (h !== undefined) {
      h.networks.add(id);
      return;
    }
    const timer = setTimeout(() => this.releaseHeld(ip), HOLD_MS);
    timer.unref();
    this.held.set(ip, { networks: new Set([id]), timer });
  }

  /** A programmed peer owns the entries for its IP now. */
  private adoptHeld(ip: string): void {
    const h = this.held.get(ip);
    if (h === undefined) return;
    clearTimeout(h.timer);
    this.held.delete(ip);
  }

  /** Nobody came back for `ip` in time: its entries go (unless a programmed peer has that IP). */
  private releaseHeld(ip: string): void {
    const h = this.held.get(ip);
    if (h === undefined || this.closed) return;
    this.held.delete(ip);
    if ([...this.peers.values()].some((p) => p.ip === ip && p.programmed)) return;
    this.log.info('fast path: releasing entries no peer came back for', { vtep: ip, heldMs: HOLD_MS });
    void this.enqueue(`release held ${ip}`, async () => {
      for (const id of h.networks) {
        const n = this.networks.get(id);
        if (n !== undefined) await this.netlink.delFdb(n.dev, ZERO_MAC, ip);
      }
    });
  }

  /**
   * Stopping without reset: leave the network devices and every FDB entry in the kernel
   * (containers keep talking over them while no daemon runs) and record them for the
   * next start. After this, nothing this object is asked to close or remove touches the
   * kernel, except the probe device, which carries no container traffic.
   */
  async retain(): Promise<void> {
    if (this.closed || this.retained) return;
    await this.queue.idle();
    this.retained = true;
    const networks = [...this.networks.values()].map((n) => {
      const vteps = new Set<string>();
      for (const p of this.peers.values()) if (p.programmed) vteps.add(p.ip);
      for (const [ip, h] of this.held) if (h.networks.has(n.net.id)) vteps.add(ip);
      return { id: n.net.id, vteps: [...vteps], macs: [...(this.macVteps.get(n.net.id) ?? new Map<number, string>())] };
    });
    if (this.keptFile !== undefined) {
      try {
        await this.keptFile.write({ networks: new Map(networks.map((n) => [n.id, { vteps: n.vteps, macs: n.macs }])) });
      } catch (err) {
        // The devices stay either way; the next start rebuilds them instead of adopting.
        this.log.warn('cannot record the fast path state for the next start', { error: (err as Error).message });
      }
    }
    this.log.info('fast path left in place for the next start', { networks: networks.length });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    try {
      this.socket?.close();
    } catch {
      // already closed
    }
    for (const h of this.held.values()) clearTimeout(h.timer);
    this.held.clear();
    for (const p of this.peers.values()) p.up = false;
    this.peers.clear();
    this.macOwners.clear();
    this.dirtyMacs.clear();
    for (const id of [...this.networks.keys()]) await this.removeNetwork(id);
    await this.queue.idle();
    await this.netlink.deleteLink(PROBE_DEVICE, { ignoreMissing: true }).catch((err: Error) => {
      this.log.warn('cannot delete the probe device', { error: err.message });
    });
  }

  // ---- probes ----

  private sendProbe(p: FastPeer, kind: ProbeKind, echo: number): void {
    const sock = this.socket;
    if (!sock || this.closed) return;
    if (kind === ProbeKind.Probe) {
      p.seq = (p.seq + 1) >>> 0;
      p.sentAt = Date.now();
      p.sentHr = performance.now();
    }
    const hearYou = kind === ProbeKind.Probe && Date.now() - p.lastAckAt <= PATH_DEAD_MS;
    // A buffer per probe: dgram resolves the (scoped) address first and reads the bytes
    // only then, a tick later; a shared buffer was overwritten by the probe to the next
    // peer of the same tick, so a peer got another's probe ("not_for_us") and, with two
    // peers' probes in phase, never again an answer: its fast path stayed down.
    const buf = Buffer.alloc(PROBE_LENGTH);
    encode(
      { kind, sender: this.self, receiver: p.name, seq: kind === ProbeKind.Probe ? p.seq : 0, echo, hearYou },
      buf,
    );
    sock.send(buf, 0, PROBE_LENGTH, this.port, `${p.address}%${PROBE_DEVICE}`, (err) => {
      if (err) this.drop(`send_${(err as NodeJS.ErrnoException).code ?? 'error'}`);
    });
  }

  private onProbe(msg: Buffer, from: string): void {
    const probe = decode(msg);
    if (typeof probe === 'string') {
      this.drop(probe);
      return;
    }
    if (probe.receiver !== this.self) {
      this.drop('not_for_us');
      return;
    }
    const p = this.peers.get(probe.sender);
    if (p === undefined) {
      this.drop('unknown_peer');
      return;
    }
    if (normalizeV6(from) !== normalizeV6(p.address)) {
      this.drop('wrong_address');
      return;
    }
    const now = Date.now();
    if (probe.kind === ProbeKind.Probe) {
      this.sendProbe(p, ProbeKind.Ack, probe.seq);
      p.lastPeerProbeAt = now;
      p.peerHearsUs = probe.hearYou === true;
    } else {
      if (probe.echo === p.seq) p.rttMs = performance.now() - p.sentHr;
      p.lastAckAt = now;
    }
    this.judge(p, now, true);
  }

  /**
   * Up only while both ends hear each other: our probes are answered AND the peer's
   * latest probe (recent) says its probes are answered. One end losing its answers makes
   * both fall back together: the other hears it in the next probe.
   */
  private judge(p: FastPeer, now: number, punctual: boolean): void {
    const ok = now - p.lastAckAt <= PATH_DEAD_MS && p.peerHearsUs && now - p.lastPeerProbeAt <= PATH_DEAD_MS;
    if (ok && !p.up) this.setUp(p);
    else if (!ok && p.up && punctual) {
      const why =
        now - p.lastAckAt > PATH_DEAD_MS
          ? `no probe answered for ${now - p.lastAckAt} ms`
          : now - p.lastPeerProbeAt > PATH_DEAD_MS
            ? `no probe from the peer for ${now - p.lastPeerProbeAt} ms`
            : 'the peer no longer hears our probes';
      this.setDown(p, why);
    }
  }

  private tick(): void {
    const now = Date.now();
    // A late tick means the event loop stalled (a busy host): answers may be waiting in
    // the socket, read only after timers run. Judge liveness on the next, punctual tick.
    const punctual = now - this.lastTickAt < 3 * TICK_MS;
    this.lastTickAt = now;
    for (const p of this.peers.values()) {
      this.judge(p, now, punctual);
      if (now - p.sentAt >= PROBE_INTERVAL_MS) this.sendProbe(p, ProbeKind.Probe, 0);
    }
  }

  /** Path proven: program the FDB, then tell the composite (which stops the sleeve carrying it). */
  private setUp(p: FastPeer): void {
    p.up = true;
    this.log.info('fast path up', { peer: formatPeerName(p.name), vtep: p.ip });
    void this.enqueue(`program ${formatPeerName(p.name)}`, async () => {
      if (this.peers.get(p.name) !== p || !p.up || p.programmed) return;
      for (const n of this.networks.values()) await this.netlink.addFdb(n.dev, ZERO_MAC, p.ip);
      p.programmed = true;
      this.adoptHeld(p.ip);
      // The peer's MACs we know go straight to it (before the sleeve steps aside).
      await this.syncAllMacs();
      this.events.fastPathChanged(p.name, true);
      // Forget what the bridge learned behind the TAP: the next frames flood once and
      // the bridge learns the peer's MACs behind the VXLAN port. Left there, a peer's MAC
      // behind the TAP gets its unicast to the sleeve, which drops it (the peer is on
      // fastdp) until that MAC is heard through VXLAN.
      await this.flushPorts((n) => tapLinkName(n.net.id));
      this.flushAgainLater(p, true, (n) => tapLinkName(n.net.id));
    });
  }

  private async flushPorts(port: (n: FastNetwork) => string): Promise<void> {
    for (const n of this.networks.values())
      await this.netlink.setBridgePort(port(n), { flush: true }).catch(() => undefined);
  }

  /** The second flush of the port `p` left (SWITCH_SETTLE_MS), if `p` is still on the path it took. */
  private flushAgainLater(p: FastPeer, up: boolean, port: (n: FastNetwork) => string): void {
    const timer = setTimeout(() => {
      if (this.closed || this.peers.get(p.name) !== p || p.up !== up) return;
      void this.enqueue(`settle ${formatPeerName(p.name)}`, () => this.flushPorts(port));
    }, SWITCH_SETTLE_MS);
    timer.unref();
  }

  /** Path lost: tell the composite first (the sleeve takes over at once), then unprogram. */
  private setDown(p: FastPeer, why: string): void {
    p.up = false;
    this.log.warn('fast path down; the sleeve carries this peer', { peer: formatPeerName(p.name), reason: why });
    if (!p.programmed) return; // a pending setUp sees p.up false and does nothing
    p.programmed = false;
    this.events.fastPathChanged(p.name, false);
    void this.enqueue(`unprogram ${formatPeerName(p.name)}`, async () => {
      // p.programmed is false: its per-MAC entries go (and any MAC it owned falls back
      // to the all-zeros entries of the peers still on the fast path).
      await this.syncAllMacs();
      for (const n of this.networks.values()) {
        await this.netlink.delFdb(n.dev, ZERO_MAC, p.ip);
        await this.netlink.setBridgePort(n.dev, { flush: true }).catch(() => undefined);
      }
      this.flushAgainLater(p, false, (n) => n.dev);
    });
  }

  private drop(reason: string): void {
    this.dropCounts.set(reason, (this.dropCounts.get(reason) ?? 0) + 1);
  }
}
