/**
 * The peer graph every peer agrees on, and the routes derived from it.
 *
 * Each peer owns exactly one entry (about itself) and is the only one that changes it;
 * everyone else only relays it. Entries are ordered by (version, uid): merging keeps the
 * greater one, which makes merge commutative, associative and idempotent, so all peers
 * that have seen the same set of entries hold the same graph whatever the gossip order.
 *
 * Routes are a pure function of that graph: only symmetric established edges count,
 * shortest paths are found by BFS, and ties are broken by the lowest PeerName. Every peer
 * with the same entries computes the same trees, which is what makes hop-by-hop unicast
 * loop-free and lets a broadcast reach each peer exactly once.
 *
 * No I/O here: the router feeds gossip in and asks for routes. See docs/protocol-gossip.md.
 */
import { randomBytes } from 'node:crypto';
import type { PeerName } from '../net/peername';
import { MAX_GOSSIP_VERSION, nicknameProblem } from './gossip-codec';

export interface PeerConnectionEdge {
  readonly peer: PeerName;
  /** Remote address as the owner of the entry saw it, e.g. "192.0.2.2:6783". */
  readonly address: string;
  /** True when the owner of the entry dialled this connection. */
  readonly outbound: boolean;
  /** True once the handshake completed and heartbeats flow. */
  readonly established: boolean;
}

export interface PeerEntry {
  readonly name: PeerName;
  readonly nickname: string;
  /** Random 64-bit incarnation id, new at every daemon start. */
  readonly uid: bigint;
  /** Bumped by the owner on every change; orders entries about the same peer. */
  readonly version: number;
  readonly connections: readonly PeerConnectionEdge[];
}

const EMPTY: readonly PeerName[] = Object.freeze([]);
const NO_ROUTES: RootRoutes = Object.freeze({ nextHop: undefined, children: EMPTY });
const UID_MASK = (1n << 64n) - 1n;

/** Per-root routing facts for us: our parent and our children in the root's BFS tree. */
interface RootRoutes {
  /** Our parent in the tree rooted at the root = our next hop towards the root. */
  readonly nextHop: PeerName | undefined;
  /** Our children in the tree rooted at the root = where we forward its broadcasts. */
  readonly children: readonly PeerName[];
}

/** The symmetric established graph, indexed for BFS. Rebuilt once per routesVersion. */
interface Graph {
  readonly names: PeerName[]; // ascending
  readonly index: Map<PeerName, number>;
  /** Neighbour indices, ascending (so ascending by name too). */
  readonly adj: Int32Array[];
  /**
   * Hop distances from a node to every node, by node index, computed on demand. The graph
   * is undirected, so distFrom(x)[r] is also x's distance from root r: the routes of
   * every root need BFS only from us, our neighbours and theirs (7 + 36 for a degree-6
   * mesh, not one per root: bench/scale.ts).
   */
  readonly distFrom: Map<number, Int32Array>;
}

/** Total order on entries about one peer: higher version wins, then higher uid (unsigned). */
export function compareEntries(a: PeerEntry, b: PeerEntry): number {
  if (a.version !== b.version) return a.version < b.version ? -1 : 1;
  const ua = a.uid & UID_MASK;
  const ub = b.uid & UID_MASK;
  return ua === ub ? 0 : ua < ub ? -1 : 1;
}

function freezeEntry(e: PeerEntry): PeerEntry {
  const connections = Object.freeze(
    e.connections.map((c) =>
      Object.freeze({ peer: c.peer, address: c.address, outbound: c.outbound, established: c.established }),
    ),
  );
  return Object.freeze({ name: e.name, nickname: e.nickname, uid: e.uid & UID_MASK, version: e.version, connections });
}

export class Topology {
  readonly selfName: PeerName;
  private readonly peers = new Map<PeerName, PeerEntry>();
  private self: PeerEntry;
  private version = 0;
  private graph: Graph | undefined;
  private readonly routes = new Map<PeerName, RootRoutes>();
  /** When gc() first saw a peer unreachable. */
  private readonly unreachableSince = new Map<PeerName, number>();

  /** Times a claim about us reached the version ceiling and we started a new incarnation. */
  private incarnationsValue = 0;

  constructor(
    /** Who we are; `uid` (our incarnation id) is drawn from `freshUid` when not given. */
    self: { name: PeerName; nickname: string; uid?: bigint },
    /** Source of a fresh incarnation id; the system CSPRNG unless a test fixes it. */
    private readonly freshUid: () => bigint = () => randomBytes(8).readBigUInt64BE(0),
  ) {
    // The gossip format carries a one-byte nickname length; fail at start, not mid-gossip.
    if (Buffer.byteLength(self.nickname, 'utf8') > 255) {
      throw new RangeError(`nickname ${JSON.stringify(self.nickname)} is over 255 bytes`);
    }
    const problem = nicknameProblem(self.nickname);
    if (problem !== undefined) throw new RangeError(`nickname ${JSON.stringify(self.nickname)}: ${problem}`);
    this.selfName = self.name;
    this.self = freezeEntry({
      name: self.name,
      nickname: self.nickname,
      uid: self.uid ?? freshUid(),
      version: 1,
      connections: [],
    });
    this.peers.set(self.name, this.self);
  }

  /** Monotonic; bumped whenever the graph may have changed (never misses a route change). */
  get routesVersion(): number {
    return this.version;
  }

  /** Our own current entry. */
  get selfEntry(): PeerEntry {
    return this.self;
  }

  /** New incarnations started because gossip pushed our version to the ceiling. */
  get incarnations(): number {
    return this.incarnationsValue;
  }

  /** Replace our own connection list; bumps our version; returns our updated entry. */
  setLocalConnections(edges: readonly PeerConnectionEdge[]): PeerEntry {
    // An edge to ourselves means nothing for routing; keep it off the wire.
    const own = edges.filter((e) => e.peer !== this.selfName);
    this.bumpSelf(this.self.version + 1, own);
    return this.self;
  }

  /**
   * Our next version is `version`, unless that passes the ceiling every receiver enforces:
   * then a new incarnation (fresh uid, version 1). Only a forged claim gets us there
   * (honest peers bump a few times per connection change); whatever copy of the old
   * incarnation others hold shows us with edges nobody confirms, so they find us
   * unreachable, forget it after the GC grace period, and take the new one.
   */
  private bumpSelf(version: number, connections: readonly PeerConnectionEdge[]): void {
    if (version <= MAX_GOSSIP_VERSION) {
      this.replaceSelf(version, connections);
      return;
    }
    this.incarnationsValue++;
    this.self = freezeEntry({ ...this.self, uid: this.freshUid(), version: 1, connections });
    this.peers.set(this.selfName, this.self);
    this.invalidate();
  }

  /**
   * Merge entries received by gossip. Returns the entries (as now stored) that changed,
   * each name at most once: the caller re-gossips them. Empty when nothing was new.
   *
   * Rule: an entry about another peer replaces ours iff it is greater in the
   * (version, uid) order. An entry about OURSELVES never replaces our entry; if it is not
   * strictly older than ours (a previous incarnation that got further, or an equal version
   * with another uid) we jump our version above it so our entry wins everywhere, and
   * return our entry for re-gossip. A claim at the version ceiling cannot be outranked:
   * we start a new incarnation instead (see bumpSelf), so a forged claim can never push
   * our version out of what the wire format carries.
   */
  merge(entries: readonly PeerEntry[]): PeerEntry[] {
    const changed = new Map<PeerName, PeerEntry>();
    for (const e of entries) {
      if (e.name === this.selfName) {
        if (compareEntries(e, this.self) >= 0 && !(e.uid === this.self.uid && e.version === this.self.version)) {
          this.bumpSelf(e.version + 1, this.self.connections);
          changed.set(this.selfName, this.self);
        }
        continue;
      }
      const have = this.peers.get(e.name);
      if (have !== undefined && compareEntries(e, have) <= 0) continue;
      const stored = freezeEntry(e);
      this.peers.set(e.name, stored);
      changed.set(e.name, stored);
    }
    if (changed.size > 0) this.invalidate();
    return [...changed.values()];
  }

  /**
   * Drop peers no longer reachable from us over symmetric established edges. Returns the
   * removed names. A stale copy may come back by gossip later; it is then dropped again.
   */
  gc(nowMs = 0, graceMs = 0): PeerName[] {
    const g = this.currentGraph();
    const reach = this.distFrom(g, g.index.get(this.selfName)!);
    const removed: PeerName[] = [];
    for (const name of [...this.peers.keys()]) {
      const i = g.index.get(name);
      if (name === this.selfName || (i !== undefined && reach[i]! >= 0)) {
        this.unreachableSince.delete(name);
        continue;
      }
      // Edges become established one end at a time, so a peer can look unreachable for
      // a moment while connecting; with a grace period it is only dropped if it stays so.
      const since = this.unreachableSince.get(name);
      if (since === undefined) this.unreachableSince.set(name, nowMs);
      if (nowMs - (since ?? nowMs) >= graceMs) {
        this.peers.delete(name);
        this.unreachableSince.delete(name);
        removed.push(name);
      }
    }
    if (removed.length > 0) this.invalidate();
    return removed;
  }

  entries(): PeerEntry[] {
    return [...this.peers.values()];
  }

  get(name: PeerName): PeerEntry | undefined {
    return this.peers.get(name);
  }

  /**
   * Next hop towards dst: our parent in dst's shortest-path tree (lowest-named neighbour
   * one hop closer to dst). dst itself when directly connected; undefined when dst is
   * unreachable or is ourselves.
   */
  unicastNextHop(dst: PeerName): PeerName | undefined {
    return this.routesFor(dst).nextHop;
  }

  /**
   * Peers we forward a broadcast from src to: our children in src's shortest-path tree
   * (src may be us). The returned array is cached and frozen: do not mutate it.
   */
  broadcastNextHops(src: PeerName): readonly PeerName[] {
    return this.routesFor(src).children;
  }

  private replaceSelf(version: number, connections: readonly PeerConnectionEdge[]): void {
    this.self = freezeEntry({ ...this.self, version, connections });
    this.peers.set(this.selfName, this.self);
    this.invalidate();
  }

  private invalidate(): void {
    this.version++;
    this.graph = undefined;
    this.routes.clear();
  }

  private routesFor(root: PeerName): RootRoutes {
    const hit = this.routes.get(root);
    if (hit !== undefined) return hit;
    // Names we hold no entry for (e.g. from a bogus frame header) are not cached, so they
    // cannot grow the cache.
    if (!this.peers.has(root)) return NO_ROUTES;
    const r = this.computeRoutes(root);
    this.routes.set(root, r);
    return r;
  }

  private computeRoutes(root: PeerName): RootRoutes {
    const g = this.currentGraph();
    const r = g.index.get(root);
    const me = g.index.get(this.selfName)!;
    if (r === undefined) return NO_ROUTES;
    const dMe = this.distFrom(g, me)[r]!;
    if (dMe < 0) return NO_ROUTES;
    const nextHop = me === r ? undefined : g.names[this.parentOf(g, r, me, dMe)]!;
    const children: PeerName[] = [];
    const mine = g.adj[me]!;
    for (let i = 0; i < mine.length; i++) {
      const v = mine[i]!;
      if (this.distFrom(g, v)[r] === dMe + 1 && this.parentOf(g, r, v, dMe + 1) === me) children.push(g.names[v]!);
    }
    return { nextHop, children: children.length === 0 ? EMPTY : Object.freeze(children) };
  }

  /** Parent of v (at distance dV from root r) in r's tree: its lowest-named neighbour one step closer. */
  private parentOf(g: Graph, r: number, v: number, dV: number): number {
    const want = dV - 1;
    const around = g.adj[v]!;
    for (let i = 0; i < around.length; i++) {
      const u = around[i]!;
      if (this.distFrom(g, u)[r] === want) return u;
    }
    throw new Error('topology: BFS invariant broken');
  }

  private distFrom(g: Graph, x: number): Int32Array {
    let d = g.distFrom.get(x);
    if (d === undefined) {
      d = this.bfs(g, x);
      g.distFrom.set(x, d);
    }
    return d;
  }

  /** Hop distances from root (-1 = unreachable). */
  private bfs(g: Graph, root: number): Int32Array {
    const dist = new Int32Array(g.names.length).fill(-1);
    const queue = new Int32Array(g.names.length);
    let head = 0;
    let tail = 0;
    dist[root] = 0;
    queue[tail++] = root;
    while (head < tail) {
      const u = queue[head++]!;
      const next = dist[u]! + 1;
      const around = g.adj[u]!;
      for (let i = 0; i < around.length; i++) {
        const v = around[i]!;
        if (dist[v]! < 0) {
          dist[v] = next;
          queue[tail++] = v;
        }
      }
    }
    return dist;
  }

  private currentGraph(): Graph {
    if (this.graph !== undefined) return this.graph;
    const names = [...this.peers.keys()].sort((a, b) => a - b);
    const n = names.length;
    const index = new Map<PeerName, number>();
    for (let i = 0; i < n; i++) index.set(names[i]!, i);
    // Directed "i reports j established" as i * n + j (exact below 2^53 for any mesh).
    const reported = new Set<number>();
    const out: number[][] = [];
    for (let i = 0; i < n; i++) {
      const mine: number[] = [];
      for (const c of this.peers.get(names[i]!)!.connections) {
        if (!c.established) continue;
        const j = index.get(c.peer);
        if (j === undefined || j === i || reported.has(i * n + j)) continue;
        reported.add(i * n + j);
        mine.push(j);
      }
      out.push(mine);
    }
    // Symmetric: both ends must report the connection established.
    const adj = out.map((mine, i) => {
      const both = mine.filter((j) => reported.has(j * n + i));
      return Int32Array.from(both).sort();
    });
    this.graph = { names, index, adj, distFrom: new Map() };
    return this.graph;
  }
}
