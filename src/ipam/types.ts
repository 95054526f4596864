import type { Cidr } from '../net/ipv4';

/**
 * What the endpoint registry and the API need from address allocation: a small async
 * interface, so the allocator behind it (store-backed blocks today) can change freely.
 */
export interface AllocationRequest {
  /** Container (or other owner) id. */
  id: string;
  /** Interface within the container: (id, ifname) is the idempotency key. */
  ifname: string;
  network: string;
  /** A specific address wanted (host order number); anywhere in the network's subnet. */
  ip?: number;
  /**
   * For a caller that holds the address with no interface on this host (POST
   * /ipam/allocate): the reconciler (reconcile.ts) never releases it; the caller does.
   */
  unattached?: boolean;
}

/** A network's subnet as the allocator needs it; see src/endpoint/network-catalog.ts. */
export interface NetworkSubnet {
  /** Where the network's addresses come from (the default network: the whole range). */
  subnet: Cidr;
  /** Subnets inside `subnet` that belong to other networks (the default network's holes). */
  exclude: { network: string; subnet: Cidr }[];
  /**
   * Set when this was read from the store rather than a cached view: a condition that
   * holds only while the catalog is as read (the catalog's revision key). A claim that
   * relied on `subnet` and `exclude` puts it in its transaction, so a network created or
   * removed in between makes the claim fail instead of both committing.
   */
  guard?: { key: string; modRevision: number };
}

/** Where the allocator learns each network's subnet (the network catalog). */
export interface NetworkSubnets {
  /** The network's subnet (may be a cached view); throws (e.g. EWEAVETS_NOT_FOUND) for a network that does not exist. */
  subnetOf(network: string): Promise<NetworkSubnet>;
  /**
   * The same, read from the store now, with its `guard`: what a block claim, a borrowed
   * address or an address asked for by number is decided on. Absent: `subnetOf` is exact
   * (every network's subnet is the whole range).
   */
  subnetFromStore?(network: string): Promise<NetworkSubnet>;
}

export interface ReleaseOptions {
  /**
   * Keep the address reserved for (id, ifname) this long (ms) instead of freeing it: an
   * allocation of the same (id, ifname) on any host in that time gets it back.
   */
  retainMs?: number;
}

export interface Allocation {
  id: string;
  ifname: string;
  network: string;
  ip: number;
  /** "10.32.0.5/12": the address with the network's prefix length. */
  address: string;
}

export interface AddressAllocator {
  /** This host's identity in allocations (its peer name). */
  readonly self: string;
  /**
   * An address for (id, ifname) on `network`: the one it already holds if any (from
   * whichever host: a container that moved keeps its address), else `ip` if given and
   * free, else a free one from this host's blocks.
   */
  allocate(req: AllocationRequest): Promise<Allocation>;
  /** Make sure (id, ifname) holds exactly `ip` (after a restart); conflicts throw. */
  claim(req: AllocationRequest & { ip: number }): Promise<Allocation>;
  /** Release what (id, ifname) holds (or reserve it, with `retainMs`); undefined when it held nothing. */
  release(id: string, ifname: string, opts?: ReleaseOptions): Promise<Allocation | undefined>;
}
