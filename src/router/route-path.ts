/**
 * The whole unicast route from one peer to another, as each peer on it computes its own
 * next hop (Topology.unicastNextHop): over symmetric established edges only, every peer
 * forwards to its parent in the destination's BFS tree, the lowest-named neighbour one
 * hop closer. Because that tree is the same on every peer holding the same entries, one
 * host can compute every hop of the route. Pure; tested against Topology on random graphs.
 */
import type { PeerName } from '../net/peername';
import type { PeerEntry } from './topology';

/** The peers from src to dst inclusive, or undefined when dst is unreachable from src. */
export function routePath(entries: readonly PeerEntry[], src: PeerName, dst: PeerName): PeerName[] | undefined {
  const established = new Map<PeerName, Set<PeerName>>();
  for (const e of entries) {
    const s = new Set<PeerName>();
    for (const c of e.connections) if (c.established && c.peer !== e.name) s.add(c.peer);
    established.set(e.name, s);
  }
  if (!established.has(src) || !established.has(dst)) return undefined;
  if (src === dst) return [src];
  const neighbours = (n: PeerName): PeerName[] => {
    const out: PeerName[] = [];
    for (const p of established.get(n) ?? []) if (established.get(p)?.has(n)) out.push(p);
    return out.sort((a, b) => a - b);
  };
  const dist = new Map<PeerName, number>([[dst, 0]]);
  const queue: PeerName[] = [dst];
  for (let head = 0; head < queue.length; head++) {
    const u = queue[head]!;
    for (const v of neighbours(u)) {
      if (!dist.has(v)) {
        dist.set(v, dist.get(u)! + 1);
        queue.push(v);
      }
    }
  }
  if (!dist.has(src)) return undefined;
  const path: PeerName[] = [src];
  let at = src;
  while (at !== dst) {
    const want = dist.get(at)! - 1;
    const next = neighbours(at).find((n) => dist.get(n) === want);
    if (next === undefined) return undefined;
    path.push(next);
    at = next;
  }
  return path;
}
