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
  /** A specific address wanted (host order number); anywhere in the range. */
  ip?: number;
  /**
   * For a caller that holds the address with no interface on this host (POST
   * /ipam/allocate): the reconciler (reconcile.ts) never releases it; the caller does.
   */
  unattached?: boolean;
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
  /** Release what (id, ifname) holds; undefined when it held nothing. */
  release(id: string, ifname: string): Promise<Allocation | undefined>;
}
