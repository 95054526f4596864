/**
 * What address management reports (`weavets status ipam --json`) and the requests and
 * answers of the allocate/release/rmpeer operations the IPAM plugins and the CLI use.
 * The IPAM cluster produces these shapes.
 */

/**
 * `weavets status ipam --json` (GET /ipam/status): this host's view of IPAM.
 * `networks` lists the blocks this host owns and how full they are (addresses held by
 * any host count as used); `hosts` every host registered in the store (this one too).
 */
export interface IpamStatus {
  store: { kind: 'etcd' | 'file' | 'mesh'; location: string };
  /** The cluster's range, "10.32.0.0/12". */
  range: string;
  /** Size of a block, e.g. 26 for /26 (64 addresses). */
  blockPrefix: number;
  /** TTL of this host's registration lease, seconds. */
  leaseTtlSeconds: number;
  /** This host's peer name. */
  name: string;
  networks: {
    network: string;
    blocks: { cidr: string; used: number; free: number }[];
    used: number;
    free: number;
  }[];
  hosts: { name: string; nickname: string; address: string }[];
  /** Every host's blocks (the same list on every host once the mesh converged). */
  blocks: IpamBlockOwner[];
  /** Keys several hosts hold with different values (mesh store after a partition healed). */
  conflicts: { key: string; holders: string[] }[];
}

export interface IpamBlockOwner {
  network: string;
  cidr: string;
  /** Peer name of the owner. */
  owner: string;
  nickname: string;
}

/** POST /ipam/allocate: an address without an interface (CNI and Docker IPAM plugins). */
export interface IpamAllocateRequest {
  id: string;
  /** Default "eth0". (id, ifname) is the idempotency key. */
  ifname?: string;
  /** Default: the default network. */
  network?: string;
  /** A specific address, "10.32.1.5" or "10.32.1.5/12". */
  ip?: string;
}

export interface IpamAllocation {
  id: string;
  ifname: string;
  network: string;
  /** CIDR, "10.32.1.5/12". */
  address: string;
}

/** POST /ipam/release; answers the released IpamAllocation, or null when none was held. */
export interface IpamReleaseRequest {
  id: string;
  ifname?: string;
}

/** POST /ipam/rmpeer {name}: what was reclaimed from a gone host. */
export interface RmpeerResult {
  /** Peer name of the removed host. */
  name: string;
  /** "network cidr" of each block returned to the pool. */
  blocks: string[];
  /** Addresses it held that were released. */
  addresses: number;
}

/** What the API server calls for `weavets ipam ...` and the IPAM plugins (ClusterIpam). */
export interface IpamControl {
  status(): IpamStatus;
  allocate(req: IpamAllocateRequest): Promise<IpamAllocation>;
  release(req: IpamReleaseRequest): Promise<IpamAllocation | null>;
  rmpeer(name: string): Promise<RmpeerResult>;
}
