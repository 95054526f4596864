/**
 * HEALTH reports in an N-peer mesh, simulated: every host sends its report (the real
 * encoding, one view per other host) and every host relays what it receives by
 * healthRelayTargets, the rule the router applies. Counted: who ends up with every
 * report, and the bytes each host sends per round (one report from every host: what the
 * mesh sends each second). The old rule (relay to every neighbour but the sender) is
 * counted the same way, as the reference.
 */
import { describe, expect, it } from 'vitest';
import { healthRelayTargets } from '../../src/router/health-relay';
import { encodeHealthReport, type HostReport } from '../../src/router/health-codec';
import type { PeerEntry } from '../../src/router/topology';
import type { PeerName } from '../../src/net/peername';

const peer = (i: number): PeerName => 0x020000000001 + i;

type Rule = (
  entries: ReadonlyMap<PeerName, PeerEntry>,
  neighbours: PeerName[],
  origin: PeerName,
  from: PeerName | undefined,
) => PeerName[];

const floodAll: Rule = (_, neighbours, __, from) => neighbours.filter((n) => n !== from);
const relayRule: Rule = (entries, neighbours, origin, from) => healthRelayTargets(entries, neighbours, origin, from);

/** Topology entries of a graph given as adjacency lists (every connection listed by both ends). */
function entriesOf(adj: number[][]): Map<PeerName, PeerEntry> {
  return new Map(
    adj.map((ns, i) => [
      peer(i),
      {
        name: peer(i),
        nickname: `h${String(i).padStart(2, '0')}`,
        uid: BigInt(i + 1),
        version: 1,
        connections: ns.map((n) => ({
          peer: peer(n),
          address: `192.0.2.${n + 1}:6783`,
          outbound: n > i,
          established: true,
        })),
      },
    ]),
  );
}

/** Bytes of host i's report in an n-host mesh: one view per other host. */
function reportBytes(i: number, n: number): number {
  const r: HostReport = {
    owner: peer(i),
    nickname: `h${String(i).padStart(2, '0')}`,
    uid: 1n,
    seq: 1,
    peers: Array.from({ length: n - 1 }, (_, k) => ({
      peer: peer(k >= i ? k + 1 : k),
      up: true,
      connected: true,
      datapath: 'sleeve' as const,
      encrypted: false,
      pmtu: 1400,
      rttUs: 300,
      lossPermille: 0,
      silentMs: 100,
      reason: '',
    })),
    endpoints: [],
  };
  return encodeHealthReport(r).length;
}

/** One round: every host's report relayed to quiescence. Returns bytes sent per host and who got what. */
function round(adj: number[][], rule: Rule, entries = entriesOf(adj)) {
  const n = adj.length;
  const sent = new Array<number>(n).fill(0);
  const missing: string[] = [];
  for (let o = 0; o < n; o++) {
    const size = reportBytes(o, n);
    const has = new Set<number>([o]);
    const queue: { to: number; from: number }[] = [];
    const send = (at: number, from: number | undefined): void => {
      for (const t of rule(entries, adj[at]!.map(peer), peer(o), from === undefined ? undefined : peer(from))) {
        sent[at]! += size;
        queue.push({ to: t - peer(0), from: at });
      }
    };
    send(o, undefined);
    while (queue.length > 0) {
      const { to, from } = queue.shift()!;
      if (has.has(to)) continue; // not news (an older or equal seq): dropped, not relayed
      has.add(to);
      send(to, from);
    }
    for (let h = 0; h < n; h++) if (!has.has(h)) missing.push(`h${h} lacks h${o}'s report`);
  }
  return { sent, missing };
}

const fullMesh = (n: number): number[][] =>
  Array.from({ length: n }, (_, i) => Array.from({ length: n }, (__, j) => j).filter((j) => j !== i));
const ring = (n: number): number[][] => Array.from({ length: n }, (_, i) => [(i + n - 1) % n, (i + 1) % n]);
const line = (n: number): number[][] =>
  Array.from({ length: n }, (_, i) => [i - 1, i + 1].filter((j) => j >= 0 && j < n));

/** A connected random graph: a random tree plus extra edges (deterministic seed). */
function randomGraph(n: number, extra: number, seed: number): number[][] {
  let s = seed;
  const rnd = (k: number): number => {
    s = (s * 1103515245 + 12345) & 0x7fffffff;
    return s % k;
  };
  const adj: Set<number>[] = Array.from({ length: n }, () => new Set());
  const link = (a: number, b: number): void => {
    if (a === b) return;
    adj[a]!.add(b);
    adj[b]!.add(a);
  };
  for (let i = 1; i < n; i++) link(i, rnd(i));
  for (let k = 0; k < extra; k++) link(rnd(n), rnd(n));
  return adj.map((x) => [...x].sort((a, b) => a - b));
}

const median = (v: number[]): number => [...v].sort((a, b) => a - b)[Math.floor((v.length - 1) / 2)]!;

describe('HEALTH reports relayed by healthRelayTargets', () => {
  it('reach every host in every mesh shape, whatever the distance', () => {
    for (const adj of [fullMesh(5), fullMesh(25), ring(12), line(7), randomGraph(40, 30, 7), randomGraph(30, 5, 11)]) {
      expect(round(adj, relayRule).missing).toEqual([]);
    }
  });

  it('in a full mesh, each host sends its own report once per peer and relays none', () => {
    for (const n of [5, 15, 25]) {
      const { sent } = round(fullMesh(n), relayRule);
      sent.forEach((bytes, i) => expect(bytes, `h${i}`).toBe((n - 1) * reportBytes(i, n)));
    }
  });

  it('cost per host grows with the report, not with the square of the mesh (flooding did)', () => {
    const perHost = (n: number, rule: Rule): number => median(round(fullMesh(n), rule).sent);
    const [new5, new15, new25] = [5, 15, 25].map((n) => perHost(n, relayRule));
    const [old5, old15, old25] = [5, 15, 25].map((n) => perHost(n, floodAll));
    // Flooding: (N-1)^2 reports of N-1 views each; relaying: N-1 reports.
    expect(old25! / new25!).toBe(24);
    expect(old15! / new15!).toBe(14);
    expect(old5! / new5!).toBe(4);
    // Bytes per host per round at 25 hosts: 24 reports of 24 views.
    expect(new25).toBe(24 * reportBytes(0, 25));
  });

  it("after a connection drops, both its ends still get each other's report, relayed", () => {
    const adj = fullMesh(10);
    adj[0] = adj[0]!.filter((j) => j !== 1);
    adj[1] = adj[1]!.filter((j) => j !== 0);
    const { sent, missing } = round(adj, relayRule);
    expect(missing).toEqual([]);
    // Some host relays h0's report to h1 and h1's to h0; nobody else relays anything.
    const base = (i: number): number => adj[i]!.length * reportBytes(i, 10);
    const relays = sent.map((b, i) => b - base(i));
    expect(relays.filter((b) => b > 0).length).toBeGreaterThan(0);
    expect(relays.reduce((a, b) => a + b, 0)).toBeLessThanOrEqual(2 * 8 * reportBytes(0, 10));
  });

  it('falls back to relaying to every other neighbour when the origin is not in the topology yet', () => {
    const entries = new Map<PeerName, PeerEntry>();
    expect(healthRelayTargets(entries, [peer(1), peer(2), peer(3)], peer(9), peer(1))).toEqual([peer(2), peer(3)]);
    expect(healthRelayTargets(entries, [peer(1), peer(2)], peer(0), undefined)).toEqual([peer(1), peer(2)]);
  });
});
