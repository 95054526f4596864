/**
 * Where a HEALTH report goes (src/diagnostics/health.ts builds them, one per host per
 * second). Flooding every report to every neighbour made each host send (N-1)^2 reports a
 * second in a full mesh of N, each listing N-1 peers: control traffic grew with N^3 per
 * host (348 KB/s at 25 hosts). A report now goes to the neighbours that may not have it
 * yet: not back where it came from, not to its origin, and not to a peer the origin has
 * a control connection to (both ends list it), because the origin sends its report to
 * those itself. A peer further away still gets it: the peer before it on a shortest path
 * from the origin is nearer the origin, so it has the report already, and relays it to
 * the peer further away, which is not the origin's neighbour.
 */
import type { PeerName } from '../net/peername';
import type { PeerEntry } from './topology';

/** Where the entries are read from: the Topology itself, or a Map in tests. */
export type EntryLookup = Pick<ReadonlyMap<PeerName, PeerEntry>, 'get'>;

/** Peers `a` lists as connected that list `a` back. */
function linkedBothWays(entries: EntryLookup, a: PeerName): Set<PeerName> {
  const out = new Set<PeerName>();
  for (const c of entries.get(a)?.connections ?? []) {
    if (entries.get(c.peer)?.connections.some((back) => back.peer === a) === true) out.add(c.peer);
  }
  return out;
}

/**
 * The neighbours (peers with a ready control connection to us) to send `origin`'s report
 * to, received from `from` (undefined: our own report, to every neighbour).
 */
export function healthRelayTargets(
  entries: EntryLookup,
  neighbours: Iterable<PeerName>,
  origin: PeerName,
  from: PeerName | undefined,
): PeerName[] {
  if (from === undefined) return [...neighbours];
  const originsOwn = linkedBothWays(entries, origin);
  return [...neighbours].filter((n) => n !== from && n !== origin && !originsOwn.has(n));
}
