/**
 * The cluster's endpoints of one network, indexed by label, so that resolving a selector
 * looks at the endpoints carrying one of its matchLabels pairs instead of all of them
 * (1,000 rules over 2,000 endpoints in 50 apps: 40 candidates a selector, not 2,000).
 * And the compile cache: per network, the index and the address ranges each distinct
 * list of peers resolved to, kept while the endpoints stay the same. The compiler is
 * pure over its input; the cache only saves it the repeated work, keyed by a stamp the
 * caller changes whenever any endpoint (address or labels) changes.
 */
import { selectorMatches, type Selector } from './labels';
import type { PolicyEndpoint } from './nft';

type Range = [number, number];

const MAX_PEER_LISTS = 10_000;

export class EndpointIndex {
  private readonly byLabel = new Map<string, PolicyEndpoint[]>();

  constructor(readonly endpoints: readonly PolicyEndpoint[]) {
    for (const ep of endpoints)
      for (const [k, v] of Object.entries(ep.labels)) {
        const key = `${k}=${v}`;
        const list = this.byLabel.get(key);
        if (list) list.push(ep);
        else this.byLabel.set(key, [ep]);
      }
  }

  /** The endpoints the selector selects, in the order given. */
  matching(selector: Selector): PolicyEndpoint[] {
    let candidates: readonly PolicyEndpoint[] = this.endpoints;
    for (const [k, v] of Object.entries(selector.matchLabels)) {
      const list = this.byLabel.get(`${k}=${v}`) ?? [];
      if (list.length < candidates.length) candidates = list;
    }
    return candidates.filter((ep) => selectorMatches(selector, ep.labels));
  }
}

/** What one network's compile can reuse from the last one while its endpoints are unchanged. */
interface NetworkCache {
  stamp: string;
  index: EndpointIndex;
  peers: Map<string, Range[]>;
}

export class CompileCache {
  private readonly networks = new Map<string, NetworkCache>();

  /**
   * The network's cache for endpoints stamped `stamp` (same stamp, same endpoints);
   * `endpoints()` is asked only when the stamp changed.
   */
  network(network: string, stamp: string, endpoints: () => readonly PolicyEndpoint[]): NetworkCache {
    const have = this.networks.get(network);
    // Bounded: lists of peers no policy names any more go when the endpoints change, or here.
    if (have && have.stamp === stamp && have.peers.size <= MAX_PEER_LISTS) return have;
    const fresh: NetworkCache = { stamp, index: new EndpointIndex(endpoints()), peers: new Map() };
    this.networks.set(network, fresh);
    return fresh;
  }

  /** Forget networks not in `keep` (removed from this host). */
  retain(keep: ReadonlySet<string>): void {
    for (const n of this.networks.keys()) if (!keep.has(n)) this.networks.delete(n);
  }
}
