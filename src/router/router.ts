/**
 * The router: owns the control connections, the connection targets, and our view of the
 * topology. It turns connection and data-path events into our own gossip entry, merges
 * what peers gossip, and hands the data path the peers it should carry traffic for.
 */
import * as net from 'node:net';
import type { Logger } from '../log';
import type { ConnectionStatus, PeerStatus, TargetStatus } from './status';
import type { Datapath } from './overlay';
import { ConnectionShared, PeerConnection, type ConnectionHandlers, type ConnectionSecurity } from './connection';
import {
  CLOSE_REASON_KERNEL_PATH_KEPT,
  MessageType,
  PROTOCOL_MAX_VERSION,
  PROTOCOL_MIN_VERSION,
  type Hello,
} from './control-codec';
import { decodeGossip, encodeGossip, formatEdgeAddress, GossipDecodeError, parseEdgeAddress } from './gossip-codec';
import { formatPeerName, parsePeerName, type PeerName } from '../net/peername';
import type { Topology, PeerConnectionEdge, PeerEntry } from './topology';
import { Admission } from './admission';
import { healthRelayTargets } from './health-relay';
import type { PathEventRelay } from './path-events';
import { compareText } from '../text-order';

export interface RouterOptions {
  bindAddress: string;
  port: number;
  log: Logger;
  security: ConnectionSecurity;
  /** Our view of the mesh, built before the router (the data paths route by it); its own entry names us. */
  topology: Topology;
  /**
   * The data path the router hands peers to, and the relay its events come through
   * (src/router/path-events.ts). Absent: a router of control connections only (tests).
   */
  datapath?: { path: Datapath; events: PathEventRelay };
  /** The mesh store riding the control connections (no etcd); absent with etcd. */
  storeGossip?: StoreGossipSink;
  /** The periodic topology refresh's interval, ms; 30 s unless a test shortens it. */
  gossipRefreshMs?: number;
}

type TargetSource = TargetStatus['source'];

/**
 * The mesh store's side of the control connections (src/store/mesh.ts): the router hands
 * it STORE messages and connection/topology events; it sends through sendStore.
 */
export interface StoreGossipSink {
  peerConnected(peer: string): void;
  peerDisconnected(peer: string): void;
  receive(from: string, payload: Buffer): void;
  topologyChanged(): void;
}

interface Target {
  address: string;
  source: TargetSource;
  attempts: number;
  lastError: string | undefined;
  connection: PeerConnection | undefined;
  timer: NodeJS.Timeout | undefined;
  nextAttemptAt: number;
  /** Peer this target turned out to be, once a handshake succeeded. */
  peer: PeerName | undefined;
}

const BACKOFF_BASE_MS = 1000;
const BACKOFF_MAX_MS = 30_000;
const GOSSIP_REFRESH_MS = 30_000;
/**
 * Neighbours each periodic refresh goes to, drawn at random. Every change is flooded to
 * every neighbour when it happens and a new connection starts with the whole topology,
 * so the refresh only repairs what a connection lost as it closed. Sent to every
 * neighbour, it made each host decode N-1 whole topologies per period: at 25 hosts
 * the largest control message (14 KB) and the most garbage an idle daemon made.
 */
const GOSSIP_REFRESH_FANOUT = 3;
const DIAL_TIMEOUT_MS = 5000;
const GC_INTERVAL_MS = 5000;
/** How long a peer may stay unreachable before we forget its entry. */
const GC_GRACE_MS = 15_000;
/**
 * With every handshake place taken, a new connection evicts the oldest handshake if it
 * has had this long: a real handshake takes a few round trips and milliseconds of CPU,
 * so only stalled ones (or a flood's) get that old, and a flood cannot hold every place.
 */
const EVICT_HANDSHAKE_AFTER_MS = 1000;
/**
 * Kernel queue of connections not yet accepted. Node's default (511) overflows under a
 * connection flood while the daemon is short of CPU, and the kernel then drops peers'
 * SYNs and ACKs with the attacker's; admission turns the queued strangers away at once.
 */
const LISTEN_BACKLOG = 4096;
/** How often the set of addresses we know (targets, peers) is rebuilt for admission. */
const KNOWN_ADDRESSES_TTL_MS = 1000;
/** Retry delay for a target that led back to ourselves (our own address, or a relay). */
const SELF_TARGET_RETRY_MS = BACKOFF_MAX_MS;

/** "host" -> "host:6783"; validates the port. */
export function normalizeTarget(text: string, defaultPort: number): string {
  const t = text.trim();
  if (t === '') throw new Error('empty peer address');
  const m = /^\[?([^\]]+?)\]?(?::(\d+))?$/.exec(t);
  if (!m || m[1] === undefined || /[\s/]/.test(m[1]))
    throw new Error(`invalid peer address ${JSON.stringify(text)}: use HOST or HOST:PORT`);
  const port = m[2] === undefined ? defaultPort : Number(m[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new Error(`invalid port in peer address ${JSON.stringify(text)}`);
  return formatEdgeAddress(m[1], port);
}

/** Inverse of normalizeTarget: "[v6]:port" or "host:port". */
function splitHostPort(address: string): { host: string; port: number } {
  const i = address.lastIndexOf(':');
  return { host: address.slice(0, i).replace(/^\[(.*)\]$/, '$1'), port: Number(address.slice(i + 1)) };
}

export class Router {
  readonly topology: Topology;
  /** Our incarnation id as the handshake sends it: the topology's own uid at construction. */
  readonly uid: bigint;
  private readonly self: PeerName;
  private readonly datapath: Datapath | undefined;
  private readonly unsubscribePath: () => void;
  private readonly server: net.Server;
  private readonly targets = new Map<string, Target>();
  /** Ready connections by peer name: at most one per peer. */
  private readonly byPeer = new Map<PeerName, PeerConnection>();
  /** Bumped on every change of byPeer (controlReachable's cache key, with the topology's). */
  private byPeerVersion = 0;
  /** controlReachable's last answer: the store asks four times a second. */
  private reachableMemo: { routesVersion: number; byPeerVersion: number; peers: ReadonlySet<string> } | undefined;
  /** Every live connection, including those still handshaking. */
  private readonly connectionsAll = new Set<PeerConnection>();
  /** Inbound connections admitted and still handshaking, with the address they count against. */
  private readonly admitted = new Map<PeerConnection, string>();
  private readonly admission = new Admission();
  private readonly shared = new ConnectionShared();
  /** When each inbound handshake was admitted (insertion order = age). */
  private readonly admittedAt = new Map<PeerConnection, number>();
  private knownAddresses: { set: Set<string>; atMs: number } | undefined;
  private readonly rejected = new Map<string, number>();
  private readonly log: Logger;
  private readonly gossipTimer: NodeJS.Timeout;
  private readonly gcTimer: NodeJS.Timeout;
  private readonly handlers: ConnectionHandlers;
  /** Receives HEALTH reports (src/router/health.ts decodes, stores and floods them). */
  private healthSink: ((from: PeerName, payload: Buffer) => void) | undefined;
  private stopped = false;
  private readonly storeSink: StoreGossipSink | undefined;

  constructor(private readonly opts: RouterOptions) {
    this.log = opts.log;
    this.self = opts.topology.selfEntry.name;
    this.topology = opts.topology;
    this.uid = opts.topology.selfEntry.uid;
    this.datapath = opts.datapath?.path;
    this.unsubscribePath =
      opts.datapath?.events.subscribe({ pathChanged: (p, up) => this.pathChanged(p, up) }) ?? (() => undefined);
    this.storeSink = opts.storeGossip;
    this.server = net.createServer((socket) => this.accept(socket));
    this.gossipTimer = setInterval(
      () => this.guarded('gossip refresh', () => this.refreshGossip()),
      opts.gossipRefreshMs ?? GOSSIP_REFRESH_MS,
    );
    this.gossipTimer.unref();
    this.gcTimer = setInterval(() => this.guarded('topology gc', () => this.collectGarbage()), GC_INTERVAL_MS);
    this.gcTimer.unref();
    this.handlers = {
      onHello: (c, h) => this.onHello(c, h),
      onReady: (c) => this.onReady(c),
      onGossip: (c, p) => this.onGossip(c, p),
      onHealth: (c, p) => {
        if (c.remote !== undefined) this.healthSink?.(c.remote.name, p);
      },
      onStore: (c, p) => {
        if (!c.remote || this.byPeer.get(c.remote.name) !== c) return;
        try {
          this.storeSink?.receive(formatPeerName(c.remote.name), p);
        } catch (err) {
          // The store validates what it decodes; whatever else goes wrong stays out of the connection.
          this.countRejected('bad_store');
          this.log.error('store message failed', {
            peer: formatPeerName(c.remote.name),
            error: (err as Error).message,
          });
        }
      },
      onClosed: (c, r) => this.onClosed(c, r),
      onRejected: (r) => this.countRejected(r),
    };
  }

  get name(): PeerName {
    return this.self;
  }

  setHealthSink(sink: ((from: PeerName, payload: Buffer) => void) | undefined): void {
    this.healthSink = sink;
  }

  /**
   * Send a HEALTH body written by `origin`: ours to every ready connection; one relayed
   * from `from` only to the neighbours that do not get it otherwise (health-relay.ts).
   */
  sendHealth(payload: Buffer, origin: PeerName, from?: PeerName): void {
    for (const name of healthRelayTargets(this.topology, this.byPeer.keys(), origin, from)) {
      this.byPeer.get(name)?.send({ type: MessageType.Health, payload });
    }
  }

  // ---- mesh store hooks ----

  /** Send a STORE message to a directly connected peer; false if there is no ready connection. */
  sendStore(peer: string, payload: Buffer): boolean {
    const conn = this.byPeer.get(parsePeerName(peer));
    if (!conn) return false;
    conn.send({ type: MessageType.Store, payload });
    return true;
  }

  /** Peers with a ready control connection. */
  storeNeighbours(): string[] {
    return [...this.byPeer.keys()].map(formatPeerName);
  }

  /**
   * Peers reachable over control connections: BFS over edges both ends list (established
   * on the data path or not: store gossip rides the control connections).
   */
  controlReachable(): ReadonlySet<string> {
    const routesVersion = this.topology.routesVersion;
    const memo = this.reachableMemo;
    if (memo !== undefined && memo.routesVersion === routesVersion && memo.byPeerVersion === this.byPeerVersion) {
      return memo.peers;
    }
    const entries = new Map(this.topology.entries().map((e) => [e.name, e] as const));
    const lists = (a: PeerName, b: PeerName): boolean => entries.get(a)?.connections.some((c) => c.peer === b) ?? false;
    const seen = new Set<PeerName>([this.self]);
    const queue: PeerName[] = [this.self];
    for (const direct of this.byPeer.keys()) {
      if (!seen.has(direct)) {
        seen.add(direct);
        queue.push(direct);
      }
    }
    while (queue.length > 0) {
      const at = queue.shift()!;
      for (const c of entries.get(at)?.connections ?? []) {
        if (seen.has(c.peer) || !lists(c.peer, at)) continue;
        seen.add(c.peer);
        queue.push(c.peer);
      }
    }
    seen.delete(this.self);
    const peers: ReadonlySet<string> = new Set([...seen].map(formatPeerName));
    this.reachableMemo = { routesVersion, byPeerVersion: this.byPeerVersion, peers };
    return peers;
  }

  /**
   * Has every one of `addresses` (the launch peers) reached a peer at least once? A target
   * dropped as a connection to ourselves counts as reached.
   */
  targetsReached(addresses: readonly string[]): boolean {
    for (const a of addresses) {
      const t = this.targets.get(normalizeTarget(a, this.opts.port));
      if (t !== undefined && t.peer === undefined) return false;
    }
    return true;
  }

  listen(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error): void => reject(err);
      this.server.once('error', onError);
      this.server.listen({ host: this.opts.bindAddress, port: this.opts.port, backlog: LISTEN_BACKLOG }, () => {
        this.server.off('error', onError);
        this.server.on('error', (err) => this.log.error('control listener error', { error: err.message }));
        resolve();
      });
    });
  }

  // ---- targets ----

  connect(addresses: string[], source: TargetSource = 'connect'): void {
    for (const a of addresses) {
      const address = normalizeTarget(a, this.opts.port);
      // A host learnt from the store (or gossip) that we are already connected to needs no
      // second connection: dialling it anyway only ends in a refused duplicate.
      if (
        source === 'discovered' &&
        !this.targets.has(address) &&
        [...this.byPeer.values()].some((c) => c.remoteListenAddress === address)
      )
        continue;
      if (this.targets.has(address)) {
        const t = this.targets.get(address)!;
        // An operator asking again means "try now".
        if (source !== 'discovered' && t.connection === undefined) this.dialSoon(t, 0);
        continue;
      }
      const t: Target = {
        address,
        source,
        attempts: 0,
        lastError: undefined,
        connection: undefined,
        timer: undefined,
        nextAttemptAt: 0,
        peer: undefined,
      };
      this.targets.set(address, t);
      this.dialSoon(t, 0);
    }
  }

  forget(addresses: string[]): void {
    for (const a of addresses) {
      const address = normalizeTarget(a, this.opts.port);
      const t = this.targets.get(address);
      if (t === undefined) continue;
      this.targets.delete(address);
      if (t.timer) clearTimeout(t.timer);
      t.connection?.close('forgotten by operator');
    }
  }

  private dialSoon(t: Target, delayMs: number): void {
    if (t.timer) clearTimeout(t.timer);
    t.nextAttemptAt = Date.now() + delayMs;
    t.timer = setTimeout(() => {
      t.timer = undefined;
      this.dial(t);
    }, delayMs);
    t.timer.unref();
  }

  private dial(t: Target): void {
    if (this.stopped || this.targets.get(t.address) !== t || t.connection) return;
    if (t.peer !== undefined && this.byPeer.has(t.peer)) return; // reached another way
    t.attempts++;
    const { host, port } = splitHostPort(t.address);
    const socket = net.connect({ host, port, timeout: DIAL_TIMEOUT_MS });
    const onFail = (err: Error): void => {
      socket.destroy();
      if (t.connection !== undefined) return;
      t.lastError = err.message;
      this.scheduleRetry(t);
    };
    socket.once('timeout', () => onFail(new Error('connect timed out')));
    socket.once('error', onFail);
    socket.once('connect', () => {
      socket.setTimeout(0);
      socket.removeListener('error', onFail);
      const conn = new PeerConnection(
        socket,
        true,
        t.address,
        this.localHello(),
        this.handlers,
        this.log,
        this.opts.security,
        this.shared,
      );
      t.connection = conn;
      this.connectionsAll.add(conn);
    });
  }

  private scheduleRetry(t: Target): void {
    if (this.stopped || this.targets.get(t.address) !== t) return;
    const exp = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** Math.min(t.attempts - 1, 10));
    const delay = Math.round(exp * (0.75 + Math.random() * 0.5));
    this.dialSoon(t, delay);
  }

  /** A timer callback must never throw: that would end the daemon. Log and carry on. */
  private guarded(what: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.countRejected('internal_error');
      this.log.error(`internal error in ${what} (ignored)`, { error: (err as Error).stack ?? String(err) });
    }
  }

  private accept(socket: net.Socket): void {
    if (this.stopped || socket.remoteAddress === undefined) {
      socket.destroy();
      return;
    }
    const address = socket.remoteAddress;
    const now = Date.now();
    const known = this.isKnownAddress(address.replace(/^::ffff:/, ''), now);
    let refusal = this.admission.admit(address, now, known);
    if (refusal === 'too_many_handshakes') {
      const [oldest, since] = this.admittedAt.entries().next().value ?? [undefined, now];
      if (oldest !== undefined && now - since >= EVICT_HANDSHAKE_AFTER_MS) {
        this.countRejected('handshake_evicted');
        oldest.close('evicted: too many handshakes in progress');
        refusal = this.admission.admit(address, now, known);
      }
    }
    if (refusal !== undefined) {
      // Counted, not logged: a flood would otherwise flood the log too.
      this.countRejected(refusal);
      socket.destroy();
      return;
    }
    const conn = new PeerConnection(
      socket,
      false,
      undefined,
      this.localHello(),
      this.handlers,
      this.log,
      this.opts.security,
      this.shared,
    );
    this.admitted.set(conn, address);
    this.admittedAt.set(conn, now);
    this.connectionsAll.add(conn);
  }

  /** An inbound connection left the handshake (established or closed): free its admission. */
  private settleAdmission(conn: PeerConnection): void {
    const address = this.admitted.get(conn);
    if (address === undefined) return;
    this.admitted.delete(conn);
    this.admittedAt.delete(conn);
    this.admission.done(address);
  }

  /**
   * Whether ip belongs to a target or a peer we know of (the hosts of our targets, the
   * addresses in the topology's edges, our connections). Such an address skips the global
   * admission bucket, so strangers flooding it cannot lock the mesh out. Rebuilt at most
   * once a second.
   */
  private isKnownAddress(ip: string, now: number): boolean {
    if (this.knownAddresses === undefined || now - this.knownAddresses.atMs >= KNOWN_ADDRESSES_TTL_MS) {
      const set = new Set<string>();
      for (const t of this.targets.values()) set.add(splitHostPort(t.address).host);
      for (const e of this.topology.entries()) {
        for (const c of e.connections) {
          const a = parseEdgeAddress(c.address);
          if (a !== undefined) set.add(a.host);
        }
      }
      for (const c of this.byPeer.values()) set.add(c.remoteIp);
      this.knownAddresses = { set, atMs: now };
    }
    return this.knownAddresses.set.has(ip);
  }

  private localHello(): Hello {
    return {
      minVersion: PROTOCOL_MIN_VERSION,
      maxVersion: PROTOCOL_MAX_VERSION,
      flags: 0,
      name: this.self,
      uid: this.uid,
      controlPort: this.opts.port,
      dataPort: this.opts.port,
      publicKey: Buffer.alloc(32), // the connection puts its own ephemeral key here
      nickname: this.topology.selfEntry.nickname,
    };
  }

  // ---- connection events ----

  private onHello(conn: PeerConnection, hello: Hello): string | undefined {
    if (hello.name === this.self) {
      if (hello.uid === this.uid) {
        // Ourselves, authenticated: a relay fed this connection back into us, or the target
        // is our own address. Either way one connection proves nothing about the target
        // (a relay can come and go), so it stays, retried at the slowest pace.
        this.countRejected('connection_to_self');
        this.log.warn(
          'connection to self: the target leads back to this daemon (our own address, or a relay); retrying it slowly',
          {
            target: conn.target,
            remote: conn.remoteAddress,
          },
        );
        return 'connection to self';
      }
      this.countRejected('name_collision');
      this.log.error('peer name collision: another peer uses our name', {
        name: formatPeerName(hello.name),
        remote: conn.remoteAddress,
      });
      return `peer name collision: ${formatPeerName(hello.name)} is also our name; give one of the hosts another --name`;
    }
    const existing = this.byPeer.get(hello.name);
    if (existing !== undefined) {
      // Both ends dialled each other: keep the connection dialled by the lower name, so
      // both sides make the same choice without talking about it.
      const initiator = (c: PeerConnection): PeerName => (c.outbound ? this.self : hello.name);
      const keepNew = initiator(conn) < initiator(existing) || initiator(conn) === initiator(existing);
      if (!keepNew) {
        this.countRejected('duplicate_connection');
        return 'duplicate connection';
      }
      existing.close('superseded by a newer connection');
    }
    return undefined;
  }

  private onReady(conn: PeerConnection): void {
    this.settleAdmission(conn);
    const hello = conn.remote!;
    this.byPeer.set(hello.name, conn);
    this.byPeerVersion++;
    if (conn.target !== undefined) {
      const t = this.targets.get(conn.target);
      if (t) {
        t.attempts = 0;
        t.lastError = undefined;
        t.peer = hello.name;
      }
    }
    this.log.info('connected to peer', {
      peer: formatPeerName(hello.name),
      nickname: hello.nickname,
      remote: conn.remoteAddress,
      outbound: conn.outbound,
      control: conn.encrypted ? 'sealed' : 'clear',
      data: conn.dataKeys ? 'sealed' : conn.encrypted ? 'clear (trusted subnet)' : 'clear',
    });
    void this.datapath?.addPeer(hello.name, conn.remoteIp, hello.dataPort, conn.dataKeys).catch((err: Error) => {
      this.log.error('data path refused peer', { peer: formatPeerName(hello.name), error: err.message });
    });
    this.publishLocal();
    conn.send({ type: MessageType.Gossip, payload: encodeGossip(this.topology.entries()) });
    this.storeSink?.peerConnected(formatPeerName(hello.name));
  }

  private onGossip(from: PeerConnection, payload: Buffer): void {
    let entries: PeerEntry[];
    try {
      entries = decodeGossip(payload);
    } catch (err) {
      if (!(err instanceof GossipDecodeError)) throw err;
      this.countRejected('bad_gossip');
      from.close(`bad gossip: ${err.message}`);
      return;
    }
    const incarnations = this.topology.incarnations;
    const changed = this.topology.merge(entries);
    if (this.topology.incarnations !== incarnations) {
      this.countRejected('self_version_ceiling');
      this.log.error('gossip claims our entry at the version ceiling (forged?): started a new incarnation', {
        from: from.remote === undefined ? from.remoteAddress : formatPeerName(from.remote.name),
      });
    }
    if (changed.length === 0) return;
    this.gossipAll(changed, from);
    this.afterTopologyChange();
  }

  private onClosed(conn: PeerConnection, reason: string): void {
    this.settleAdmission(conn);
    this.connectionsAll.delete(conn);
    const name = conn.remote?.name;
    if (name !== undefined && this.byPeer.get(name) === conn) {
      this.byPeer.delete(name);
      this.byPeerVersion++;
      this.datapath?.removePeer(name, { hold: reason === `closed by peer: ${CLOSE_REASON_KERNEL_PATH_KEPT}` });
      this.log.info('disconnected from peer', { peer: formatPeerName(name), reason });
      this.storeSink?.peerDisconnected(formatPeerName(name));
      this.publishLocal();
    } else if (conn.phase !== 'ready') {
      this.log.debug('connection attempt ended', { remote: conn.remoteAddress, reason });
    }
    if (conn.target !== undefined) {
      const t = this.targets.get(conn.target);
      if (t && t.connection === conn) {
        t.connection = undefined;
        t.lastError = reason;
        if (reason.includes('connection to self') || reason.includes('reflected handshake'))
          this.dialSoon(t, SELF_TARGET_RETRY_MS);
        else this.scheduleRetry(t);
      }
    }
  }

  /** The data path towards a peer went up or down (through the relay). */
  private pathChanged(peer: PeerName, up: boolean): void {
    this.log.info(up ? 'data path established' : 'data path lost', { peer: formatPeerName(peer) });
    this.publishLocal();
  }

  private dropTarget(address: string): void {
    const t = this.targets.get(address);
    if (!t) return;
    if (t.timer) clearTimeout(t.timer);
    this.targets.delete(address);
  }

  private countRejected(reason: string): void {
    this.rejected.set(reason, (this.rejected.get(reason) ?? 0) + 1);
  }

  // ---- topology ----

  private localEdges(): PeerConnectionEdge[] {
    const edges: PeerConnectionEdge[] = [];
    for (const [name, conn] of this.byPeer) {
      edges.push({
        peer: name,
        address: conn.remoteListenAddress,
        outbound: conn.outbound,
        established: this.datapath?.peerStatus(name)?.up ?? false,
      });
    }
    edges.sort((a, b) => a.peer - b.peer);
    return edges;
  }

  /** Our connections changed: new own entry, gossip it, recompute what depends on routes. */
  private publishLocal(): void {
    const entry = this.topology.setLocalConnections(this.localEdges());
    this.gossipAll([entry]);
    this.afterTopologyChange();
  }

  private afterTopologyChange(): void {
    this.discover();
    this.storeSink?.topologyChanged();
  }

  /** Forget peers that stayed unreachable through the grace period. */
  private collectGarbage(): void {
    for (const gone of this.topology.gc(Date.now(), GC_GRACE_MS)) {
      this.datapath?.peerGone(gone);
      this.log.info('peer unreachable, forgotten', { peer: formatPeerName(gone) });
    }
    this.storeSink?.topologyChanged();
  }

  /** Connect to peers our neighbours know and we do not. */
  private discover(): void {
    const known = new Set(this.topology.entries().map((e) => e.name));
    const wanted = new Set<string>();
    for (const e of this.topology.entries()) {
      for (const edge of e.connections) {
        if (edge.peer === this.self || this.byPeer.has(edge.peer) || !edge.established) continue;
        // Edge addresses are listening addresses (remote IP + the control port its HELLO
        // announced), whichever side dialled.
        wanted.add(edge.address);
      }
    }
    for (const address of wanted) {
      if (this.targets.has(address)) continue;
      try {
        this.connect([address], 'discovered');
      } catch (err) {
        // The gossip decoder only lets dialable addresses in; if one still is not, skip it.
        this.log.warn('not dialling a discovered address', { address, error: (err as Error).message });
      }
    }
    // Discovered targets whose peer vanished from the topology are no longer worth dialling.
    for (const t of [...this.targets.values()]) {
      if (t.source === 'discovered' && t.connection === undefined && !wanted.has(t.address)) {
        if (t.peer === undefined || !known.has(t.peer)) this.dropTarget(t.address);
      }
    }
  }

  /** The periodic repair: the whole topology to a few neighbours drawn at random. */
  private refreshGossip(): void {
    const neighbours = [...this.byPeer.values()];
    // A partial Fisher-Yates shuffle: the first GOSSIP_REFRESH_FANOUT places.
    const n = Math.min(GOSSIP_REFRESH_FANOUT, neighbours.length);
    for (let i = 0; i < n; i++) {
      const j = i + Math.floor(Math.random() * (neighbours.length - i));
      [neighbours[i], neighbours[j]] = [neighbours[j]!, neighbours[i]!];
    }
    this.gossipTo(this.topology.entries(), neighbours.slice(0, n));
  }

  private gossipAll(entries: readonly PeerEntry[], except?: PeerConnection): void {
    this.gossipTo(
      entries,
      [...this.byPeer.values()].filter((c) => c !== except),
    );
  }

  private gossipTo(entries: readonly PeerEntry[], to: readonly PeerConnection[]): void {
    if (entries.length === 0 || to.length === 0) return;
    let payload: Buffer;
    try {
      payload = encodeGossip(entries);
    } catch (err) {
      // Cannot happen for entries that came through decodeGossip or from our own state;
      // if it does, sending nothing beats ending the daemon.
      this.countRejected('internal_error');
      this.log.error('cannot encode gossip (not sent)', { error: (err as Error).message });
      return;
    }
    for (const conn of to) conn.send({ type: MessageType.Gossip, payload });
  }

  // ---- status ----

  connectionStatus(): ConnectionStatus[] {
    const out: ConnectionStatus[] = [];
    for (const conn of this.connectionsAll) {
      const name = conn.remote?.name;
      const path = name === undefined ? undefined : this.datapath?.peerStatus(name);
      const ready = conn.phase === 'ready';
      const status: ConnectionStatus = {
        peer: name === undefined ? '' : formatPeerName(name),
        nickname: conn.remote?.nickname ?? '',
        address:
          conn.outbound && conn.target ? conn.target : conn.remote ? conn.remoteListenAddress : conn.remoteAddress,
        state: ready && path?.up ? 'established' : 'handshaking',
        // Per connection: the composite data path says which path carries this peer now.
        datapath: (name === undefined ? undefined : this.datapath?.peerDatapath(name)) ?? 'sleeve',
        encrypted: conn.encrypted && conn.dataKeys !== undefined,
        outbound: conn.outbound,
      };
      if (ready && !path?.up) status.info = 'waiting for the data path heartbeat';
      else if (ready && conn.encrypted && conn.dataKeys === undefined)
        status.info = 'trusted subnet: data not encrypted, control sealed';
      if (path) status.pmtu = path.pmtu;
      const rtt = path?.rttMs ?? conn.rttMs;
      if (rtt !== undefined) status.rttMs = rtt;
      out.push(status);
    }
    for (const t of this.targets.values()) {
      if (
        t.connection === undefined &&
        t.lastError !== undefined &&
        !(t.peer !== undefined && this.byPeer.has(t.peer))
      ) {
        out.push({
          peer: t.peer === undefined ? '' : formatPeerName(t.peer),
          nickname: '',
          address: t.address,
          state: 'failed',
          datapath: 'sleeve',
          encrypted: this.opts.security.password !== undefined,
          outbound: true,
          info: t.lastError,
        });
      }
    }
    return out.sort((a, b) => compareText(a.address, b.address));
  }

  peerStatus(): PeerStatus[] {
    const nick = new Map(this.topology.entries().map((e) => [e.name, e.nickname] as const));
    return this.topology
      .entries()
      .map((e) => {
        const via = e.name === this.self ? e.name : this.topology.unicastNextHop(e.name);
        return {
          name: formatPeerName(e.name),
          nickname: e.nickname,
          version: e.version,
          connections: e.connections
            .filter((c) => c.established)
            .map((c) => ({ name: formatPeerName(c.peer), nickname: nick.get(c.peer) ?? '', address: c.address })),
          via: via === undefined ? '' : formatPeerName(via),
          reachable: via !== undefined,
        };
      })
      .sort((a, b) => compareText(a.name, b.name));
  }

  targetStatus(): TargetStatus[] {
    const now = Date.now();
    return [...this.targets.values()]
      .map((t) => {
        const connected = t.connection?.phase === 'ready' || (t.peer !== undefined && this.byPeer.has(t.peer));
        const s: TargetStatus = {
          address: t.address,
          state: connected ? 'connected' : t.connection ? 'connecting' : 'waiting',
          attempts: t.attempts,
          source: t.source,
        };
        if (t.lastError !== undefined && !connected) s.lastError = t.lastError;
        if (s.state === 'waiting') s.retryInMs = Math.max(0, t.nextAttemptAt - now);
        return s;
      })
      .sort((a, b) => compareText(a.address, b.address));
  }

  rejectedCounts(): ReadonlyMap<string, number> {
    return this.rejected;
  }

  connectionCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const s of this.connectionStatus()) counts.set(s.state, (counts.get(s.state) ?? 0) + 1);
    return counts;
  }

  /** Close every connection with `reason` (CLOSE_REASON_KERNEL_PATH_KEPT: a stop that keeps the kernel path). */
  async stop(reason = 'peer shutting down'): Promise<void> {
    this.stopped = true;
    this.unsubscribePath();
    clearInterval(this.gossipTimer);
    clearInterval(this.gcTimer);
    for (const t of this.targets.values()) if (t.timer) clearTimeout(t.timer);
    for (const conn of [...this.connectionsAll]) conn.close(reason);
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
