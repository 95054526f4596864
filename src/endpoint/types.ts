/**
 * The endpoint registry's shapes: what `attach` asks for, what an endpoint is (also the
 * record the registry keeps on disk and `weavets ps --json` prints), what a check finds,
 * and the cluster's networks as the catalog lists them.
 */

/** One entry of `weavets ps --json`. */
export interface EndpointStatus {
  id: string;
  network: string;
  ifname: string;
  /** CIDR, e.g. "10.32.1.2/12". */
  address: string;
  mac: string;
  netns: string;
  hostVeth: string;
  /** MAC of the host end of the veth (CNI results list both ends). */
  hostMac?: string;
  /** Container name given at attach (CNI: K8S_POD_NAME or the runtime's name), for DNS. */
  name?: string;
  /** Default gateway set in the container at attach, if any. */
  gateway?: string;
  /** Labels policies select it by (attach --label, Docker container labels, CNI). */
  labels?: Record<string, string>;
  /** Resolver for the container (weavets DNS), in attach answers only; absent with --no-dns. */
  dns?: { nameservers: string[]; search: string[] };
  /**
   * The address was allocated by another surface (the Docker IPAM driver), which also
   * releases it: the registry never claims or releases it (endpoints made by `plug`).
   */
  externalAddress?: boolean;
}

/** Answer of POST /endpoints/check: what is wrong with an endpoint; [] when it is sound. */
export interface EndpointCheck {
  endpoint: EndpointStatus;
  problems: string[];
}

export interface AttachRequest {
  id: string;
  netns: string;
  ifname?: string;
  /** CIDR the caller wants; without it the daemon allocates one. */
  ip?: string;
  network?: string;
  /** MAC for the container interface, "aa:bb:cc:dd:ee:ff"; default: random. */
  mac?: string;
  /** Container name, stored on the endpoint (DNS registration). */
  name?: string;
  /** Give the container a default route via this address (e.g. the host's exposed one). */
  gateway?: string;
  /** Labels for policies: {"app": "web"}. */
  labels?: Record<string, string>;
}

export interface ExposeResult {
  network: string;
  address: string;
}

/** One network of the cluster (`weavets network ls --json`: an array of these). */
export interface NetworkInfo {
  name: string;
  /** Unique in the cluster; carried in every encapsulated frame (like a VXLAN VNI). */
  id: number;
  subnet: string;
  options: Record<string, string>;
  created: string;
  /** Is this host carrying it now (a bridge here)? */
  local: boolean;
}

/** POST /networks/create */
export interface NetworkCreateRequest {
  name: string;
  subnet?: string;
  options?: Record<string, string>;
}
