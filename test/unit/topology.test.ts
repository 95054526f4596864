import { describe, expect, it } from 'vitest';
import { Topology, type PeerConnectionEdge, type PeerEntry } from '../../src/router/topology';
import type { PeerName } from '../../src/net/peername';
import { MAX_GOSSIP_VERSION, encodeGossip } from '../../src/router/gossip-codec';

function edge(peer: PeerName, established = true): PeerConnectionEdge {
  return { peer, address: `192.0.2.${peer % 250}:6783`, outbound: false, established };
}

/** A topology per peer of an undirected graph, all having exchanged all entries. */
function mesh(names: PeerName[], links: [PeerName, PeerName][], uidBase = 1000n): Map<PeerName, Topology> {
  const tops = new Map<PeerName, Topology>();
  for (const n of names) tops.set(n, new Topology({ name: n, nickname: `host${n}`, uid: uidBase + BigInt(n) }));
  const own: PeerEntry[] = [];
  for (const n of names) {
    const neigh = links.flatMap(([a, b]) => (a === n ? [b] : b === n ? [a] : []));
    own.push(tops.get(n)!.setLocalConnections(neigh.map((p) => edge(p))));
  }
  for (const t of tops.values()) t.merge(own);
  return tops;
}

/** Deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const A = 1;
const B = 2;
const C = 3;
const D = 4;
const E = 5;

describe('Topology routes', () => {
  it('routes along a line A-B-C', () => {
    const t = mesh(
      [A, B, C],
      [
        [A, B],
        [B, C],
      ],
    );
    expect(t.get(A)!.unicastNextHop(C)).toBe(B);
    expect(t.get(A)!.unicastNextHop(B)).toBe(B);
    expect(t.get(B)!.unicastNextHop(C)).toBe(C);
    expect(t.get(C)!.unicastNextHop(A)).toBe(B);
    expect(t.get(A)!.unicastNextHop(A)).toBeUndefined();
    expect(t.get(A)!.unicastNextHop(99)).toBeUndefined();
    // Broadcast from A: A sends to B, B sends to C, C sends to nobody.
    expect(t.get(A)!.broadcastNextHops(A)).toEqual([B]);
    expect(t.get(B)!.broadcastNextHops(A)).toEqual([C]);
    expect(t.get(C)!.broadcastNextHops(A)).toEqual([]);
    // Broadcast from B: B sends to both ends.
    expect(t.get(B)!.broadcastNextHops(B)).toEqual([A, C]);
    expect(t.get(A)!.broadcastNextHops(B)).toEqual([]);
  });

  it('routes around a ring the short way', () => {
    // A-B-C-D-E-A
    const t = mesh(
      [A, B, C, D, E],
      [
        [A, B],
        [B, C],
        [C, D],
        [D, E],
        [E, A],
      ],
    );
    expect(t.get(A)!.unicastNextHop(C)).toBe(B);
    expect(t.get(A)!.unicastNextHop(D)).toBe(E);
    expect(t.get(C)!.unicastNextHop(E)).toBe(D);
    expect(t.get(B)!.unicastNextHop(E)).toBe(A);
  });

  it('breaks ties by lowest peer name in a diamond', () => {
    // A connects to B and C; both connect to D. Two equal paths A->D.
    const t = mesh(
      [A, B, C, D],
      [
        [A, B],
        [A, C],
        [B, D],
        [C, D],
      ],
    );
    expect(t.get(A)!.unicastNextHop(D)).toBe(B);
    expect(t.get(D)!.unicastNextHop(A)).toBe(B);
    // Same graph, names swapped: the lower name still wins.
    const t2 = mesh(
      [10, 30, 20, 40],
      [
        [10, 30],
        [10, 20],
        [30, 40],
        [20, 40],
      ],
    );
    expect(t2.get(10)!.unicastNextHop(40)).toBe(20);
    // Broadcast from A: D is B's child only (lowest-named parent), so D receives it once.
    expect(t.get(B)!.broadcastNextHops(A)).toEqual([D]);
    expect(t.get(C)!.broadcastNextHops(A)).toEqual([]);
  });

  it('ignores an edge only one end reports established', () => {
    const t = mesh(
      [A, B, C],
      [
        [A, B],
        [B, C],
      ],
    );
    // A claims a direct connection to C; C does not (or not yet).
    const a = t.get(A)!;
    const aEntry = a.setLocalConnections([edge(B), edge(C)]);
    for (const x of t.values()) x.merge([aEntry]);
    expect(a.unicastNextHop(C)).toBe(B);
    expect(t.get(C)!.unicastNextHop(A)).toBe(B);
    // C reports it, but not established yet: still ignored.
    const c = t.get(C)!;
    let cEntry = c.setLocalConnections([edge(B), edge(A, false)]);
    for (const x of t.values()) x.merge([cEntry]);
    expect(a.unicastNextHop(C)).toBe(B);
    // Established on both ends: direct.
    cEntry = c.setLocalConnections([edge(B), edge(A)]);
    for (const x of t.values()) x.merge([cEntry]);
    expect(a.unicastNextHop(C)).toBe(C);
    expect(c.unicastNextHop(A)).toBe(A);
  });

  it('caches routes per routesVersion and returns the same arrays', () => {
    const t = mesh(
      [A, B, C],
      [
        [A, B],
        [B, C],
      ],
    );
    const b = t.get(B)!;
    const v = b.routesVersion;
    const first = b.broadcastNextHops(B);
    expect(b.broadcastNextHops(B)).toBe(first);
    expect(b.broadcastNextHops(99)).toBe(b.broadcastNextHops(98)); // shared empty array
    expect(b.routesVersion).toBe(v);
    expect(Object.isFrozen(first)).toBe(true);
    b.setLocalConnections([edge(A)]);
    expect(b.routesVersion).toBeGreaterThan(v);
    expect(b.broadcastNextHops(B)).toEqual([A]);
  });

  it('delivers every broadcast exactly once in random connected graphs', () => {
    const rnd = prng(0x5eed);
    for (let round = 0; round < 200; round++) {
      const n = 2 + Math.floor(rnd() * 11); // 2..12
      // Random distinct names, so tie-breaks are not just index order.
      const names = new Set<PeerName>();
      while (names.size < n) names.add(1 + Math.floor(rnd() * 0xffff_ffff_ffff));
      const list = [...names];
      const links: [PeerName, PeerName][] = [];
      const key = (a: PeerName, b: PeerName): string => (a < b ? `${a}-${b}` : `${b}-${a}`);
      const have = new Set<string>();
      // Spanning tree first (connected), then random extra edges.
      for (let i = 1; i < n; i++) {
        const j = Math.floor(rnd() * i);
        links.push([list[i]!, list[j]!]);
        have.add(key(list[i]!, list[j]!));
      }
      const extra = Math.floor(rnd() * n * 2);
      for (let k = 0; k < extra; k++) {
        const a = list[Math.floor(rnd() * n)]!;
        const b = list[Math.floor(rnd() * n)]!;
        if (a !== b && !have.has(key(a, b))) {
          have.add(key(a, b));
          links.push([a, b]);
        }
      }
      const tops = mesh(list, links);
      for (const src of list) {
        const received = new Map<PeerName, number>([[src, 1]]);
        const queue: PeerName[] = [src];
        while (queue.length > 0) {
          const at = queue.shift()!;
          for (const next of tops.get(at)!.broadcastNextHops(src)) {
            expect(have.has(key(at, next))).toBe(true); // only over real links
            received.set(next, (received.get(next) ?? 0) + 1);
            queue.push(next);
          }
        }
        expect(received.size).toBe(n);
        for (const c of received.values()) expect(c).toBe(1);
        // Unicast: following next hops from every peer reaches src in shortest-path hops.
        for (const from of list) {
          let at = from;
          let hops = 0;
          while (at !== src) {
            const nh = tops.get(at)!.unicastNextHop(src);
            expect(nh).toBeDefined();
            at = nh!;
            if (++hops > n) throw new Error('routing loop');
          }
        }
      }
    }
  });

  it('matches a per-root BFS reference (lowest-named parent) in random graphs with one-sided and missing links', () => {
    const rnd = prng(0xb0b);
    for (let round = 0; round < 150; round++) {
      const n = 2 + Math.floor(rnd() * 14);
      const names = new Set<PeerName>();
      while (names.size < n) names.add(1 + Math.floor(rnd() * 0xffff_ffff_ffff));
      const list = [...names].sort((a, b) => a - b);
      // Random reports, some one-sided (ignored), graph possibly disconnected.
      const reports = new Map<PeerName, Set<PeerName>>(list.map((x) => [x, new Set<PeerName>()]));
      for (let k = 0; k < n * 2; k++) {
        const a = list[Math.floor(rnd() * n)]!;
        const b = list[Math.floor(rnd() * n)]!;
        if (a === b) continue;
        reports.get(a)!.add(b);
        if (rnd() < 0.8) reports.get(b)!.add(a);
      }
      const me = list[Math.floor(rnd() * n)]!;
      const t = new Topology({ name: me, nickname: 'me', uid: 1n });
      t.setLocalConnections([...reports.get(me)!].map((p) => edge(p)));
      t.merge(
        list
          .filter((x) => x !== me)
          .map((x, i) => ({
            name: x,
            nickname: `n${x}`,
            uid: BigInt(i + 2),
            version: 1,
            connections: [...reports.get(x)!].map((p) => edge(p)),
          })),
      );
      const neighbours = (x: PeerName): PeerName[] =>
        list.filter((y) => reports.get(x)!.has(y) && reports.get(y)!.has(x));
      for (const root of list) {
        const dist = new Map<PeerName, number>([[root, 0]]);
        const queue = [root];
        while (queue.length > 0) {
          const u = queue.shift()!;
          for (const v of neighbours(u)) {
            if (dist.has(v)) continue;
            dist.set(v, dist.get(u)! + 1);
            queue.push(v);
          }
        }
        const parent = (v: PeerName): PeerName | undefined =>
          neighbours(v).find((u) => dist.get(u) === dist.get(v)! - 1);
        const wantNext = !dist.has(me) || me === root ? undefined : parent(me);
        const wantChildren = dist.has(me)
          ? neighbours(me).filter((v) => dist.get(v) === dist.get(me)! + 1 && parent(v) === me)
          : [];
        expect(t.unicastNextHop(root)).toBe(wantNext);
        expect([...t.broadcastNextHops(root)]).toEqual(wantChildren);
      }
    }
  });
});

describe('Topology merge', () => {
  function entry(name: PeerName, uid: bigint, version: number, conns: PeerName[] = []): PeerEntry {
    return { name, nickname: `n${name}`, uid, version, connections: conns.map((p) => edge(p)) };
  }

  it('applies new and newer entries, ignores older and equal ones', () => {
    const t = new Topology({ name: A, nickname: 'a', uid: 1n });
    const v0 = t.routesVersion;
    expect(t.merge([entry(B, 7n, 3)])).toHaveLength(1);
    expect(t.get(B)!.version).toBe(3);
    expect(t.routesVersion).toBeGreaterThan(v0);

    const v1 = t.routesVersion;
    expect(t.merge([entry(B, 7n, 2, [C])])).toEqual([]);
    expect(t.merge([entry(B, 7n, 3, [C])])).toEqual([]);
    expect(t.get(B)!.connections).toEqual([]);
    expect(t.routesVersion).toBe(v1); // nothing changed, caches stay

    const changed = t.merge([entry(B, 7n, 4, [C]), entry(C, 9n, 1), entry(D, 1n, 1)]);
    expect(changed.map((e) => e.name).sort()).toEqual([B, C, D]);
    expect(t.get(B)!.connections.map((c) => c.peer)).toEqual([C]);
  });

  it('returns each changed name once, with the final entry', () => {
    const t = new Topology({ name: A, nickname: 'a', uid: 1n });
    const changed = t.merge([entry(B, 7n, 1), entry(B, 7n, 5), entry(B, 7n, 2)]);
    expect(changed).toHaveLength(1);
    expect(changed[0]!.version).toBe(5);
  });

  it('orders incarnations by version, then uid, so merge order does not matter', () => {
    const x = entry(B, 5n, 4, [C]);
    const y = entry(B, 9n, 4, [D]); // same version, other incarnation
    const z = entry(B, 2n, 6); // newer incarnation with a higher version
    const orders = [
      [x, y, z],
      [z, y, x],
      [y, x, z],
    ];
    for (const o of orders) {
      const t = new Topology({ name: A, nickname: 'a', uid: 1n });
      for (const e of o) t.merge([e]);
      expect(t.get(B)!.uid).toBe(2n);
      expect(t.get(B)!.version).toBe(6);
    }
    const t = new Topology({ name: A, nickname: 'a', uid: 1n });
    t.merge([x]);
    t.merge([y]);
    expect(t.get(B)!.uid).toBe(9n);
  });

  it('never lets gossip about us override our own entry', () => {
    const t = new Topology({ name: A, nickname: 'a', uid: 42n });
    const mine = t.setLocalConnections([edge(B)]);
    expect(mine.version).toBe(2);

    // Older copy of ourselves: ignored, nothing to re-gossip.
    expect(t.merge([entry(A, 42n, 1)])).toEqual([]);
    expect(t.merge([mine])).toEqual([]);

    // A previous incarnation that got to version 50: we jump above it and keep our truth.
    const changed = t.merge([entry(A, 7n, 50, [C, D])]);
    expect(changed).toHaveLength(1);
    const now = t.get(A)!;
    expect(now.uid).toBe(42n);
    expect(now.version).toBe(51);
    expect(now.connections.map((c) => c.peer)).toEqual([B]);
    expect(changed[0]).toBe(now);

    // Same version, another uid ordering below ours: ours already wins everywhere.
    expect(t.merge([entry(A, 1n, 51)])).toEqual([]);
    // Same version, another uid ordering above ours: jump.
    const again = t.merge([entry(A, 100n, 51)]);
    expect(again).toHaveLength(1);
    expect(t.get(A)!.version).toBe(52);
  });

  it('a claim about us at the version ceiling starts a new incarnation instead of an unencodable version', () => {
    let uids = 500n;
    const t = new Topology({ name: A, nickname: 'a', uid: 42n }, () => ++uids);
    t.setLocalConnections([edge(B)]);
    // Just below the ceiling: an ordinary jump, still within what the wire carries.
    t.merge([entry(A, 7n, MAX_GOSSIP_VERSION - 1)]);
    expect(t.get(A)!.version).toBe(MAX_GOSSIP_VERSION);
    expect(t.incarnations).toBe(0);
    // At the ceiling (or a higher uid at it): nothing above is encodable, so a new incarnation.
    const changed = t.merge([entry(A, 99n, MAX_GOSSIP_VERSION)]);
    expect(changed).toHaveLength(1);
    const now = t.get(A)!;
    expect(now.version).toBe(1);
    expect(now.uid).toBe(501n);
    expect(now.connections.map((c) => c.peer)).toEqual([B]);
    expect(t.incarnations).toBe(1);
    // Whatever happens next, our entry stays encodable.
    t.setLocalConnections([edge(B), edge(C)]);
    expect(() => encodeGossip([t.get(A)!])).not.toThrow();
    expect(t.get(A)!.version).toBe(2);
  });

  it('converges: a restarted peer wins over its old incarnation everywhere', () => {
    const t = mesh(
      [A, B, C],
      [
        [A, B],
        [B, C],
      ],
    );
    // C's old incarnation got far.
    for (let i = 0; i < 20; i++) t.get(C)!.setLocalConnections([edge(B)]);
    const old = t.get(C)!.get(C)!;
    for (const x of t.values()) x.merge([old]);
    // C restarts: new uid, version 1.
    const c2 = new Topology({ name: C, nickname: 'c', uid: 777n });
    const fresh = c2.setLocalConnections([edge(B)]);
    expect(t.get(B)!.merge([fresh])).toEqual([]); // older version: not taken yet
    // On connect, B sends C its whole topology; C jumps and re-gossips.
    const regossip = c2.merge(t.get(B)!.entries());
    expect(regossip.map((e) => e.name)).toContain(C);
    const mineNow = c2.get(C)!;
    for (const x of [t.get(A)!, t.get(B)!]) {
      x.merge(regossip);
      expect(x.get(C)!.uid).toBe(777n);
      expect(x.get(C)!.version).toBe(mineNow.version);
    }
    expect(c2.unicastNextHop(A)).toBe(B);
  });

  it('stores copies, unaffected by later changes to the input', () => {
    const t = new Topology({ name: A, nickname: 'a', uid: 1n });
    const conns = [edge(C)];
    t.merge([{ name: B, nickname: 'b', uid: 1n, version: 1, connections: conns }]);
    conns.push(edge(D));
    expect(t.get(B)!.connections).toHaveLength(1);
    expect(Object.isFrozen(t.get(B))).toBe(true);
  });
});

describe('Topology gc', () => {
  it('drops peers unreachable over symmetric established edges', () => {
    const t = mesh(
      [A, B, C, D],
      [
        [A, B],
        [B, C],
        [C, D],
      ],
    );
    const a = t.get(A)!;
    expect(a.gc()).toEqual([]);
    expect(a.entries()).toHaveLength(4);
    // B drops C: C and D are now cut off from A.
    const b = t.get(B)!.setLocalConnections([edge(A)]);
    a.merge([b]);
    expect(a.unicastNextHop(C)).toBeUndefined();
    expect(a.gc().sort()).toEqual([C, D]);
    expect(a.get(C)).toBeUndefined();
    expect(a.get(A)).toBeDefined();
    expect(
      a
        .entries()
        .map((e) => e.name)
        .sort(),
    ).toEqual([A, B]);
  });

  it('drops peers only known second-hand with no symmetric link', () => {
    const a = new Topology({ name: A, nickname: 'a', uid: 1n });
    a.merge([entry2(B, [A])]); // B says it is connected to A; A does not agree
    expect(a.gc()).toEqual([B]);
    expect(a.gc()).toEqual([]);
  });

  function entry2(name: PeerName, conns: PeerName[]): PeerEntry {
    return { name, nickname: '', uid: 3n, version: 1, connections: conns.map((p) => edge(p)) };
  }
});

describe('Topology gc grace period', () => {
  it('keeps a peer that is unreachable only briefly, drops one that stays so', () => {
    const A = 0x020000000001;
    const B = 0x020000000002;
    const a = new Topology({ name: A, nickname: 'a', uid: 1n });
    // B's entry arrives before our own edge to B is established: unreachable for now.
    a.merge([
      {
        name: B,
        nickname: 'b',
        uid: 2n,
        version: 2,
        connections: [{ peer: A, address: 'x:1', outbound: true, established: true }],
      },
    ]);
    expect(a.gc(1000, 15_000)).toEqual([]);
    expect(a.gc(5000, 15_000)).toEqual([]);
    a.setLocalConnections([{ peer: B, address: 'y:1', outbound: false, established: true }]);
    expect(a.gc(20_000, 15_000)).toEqual([]);
    expect(a.get(B)).toBeDefined();
    // The link goes away and stays away.
    a.setLocalConnections([]);
    expect(a.gc(30_000, 15_000)).toEqual([]);
    expect(a.gc(44_999, 15_000)).toEqual([]);
    expect(a.gc(45_000, 15_000)).toEqual([B]);
  });
});
