/**
 * The daemon's API as data: the JSON shapes served over the unix socket and printed by
 * `weavets status ... --json`, and the interface the HTTP server calls into. The server
 * and the CLI depend on this file only, never on router internals.
 */

import type { HealthStatus, MeshStatus, TraceResult } from '../diagnostics';
import type { FlowsStatus } from '../diagnostics/flows';

export type { HealthStatus, HealthRow, HealthCell, MeshStatus, TraceResult, TraceHop, TraceEnd } from '../diagnostics';
export type { FlowsStatus, FlowRow } from '../diagnostics/flows';

export type DatapathKind = 'sleeve' | 'fastdp';

/** One entry of `status connections --json`. */
export interface ConnectionStatus {
  /** Remote peer name, "7e:21:0a:b4:19:c2"; "" until the handshake has told us. */
  peer: string;
  nickname: string;
  /** Remote control address, "192.0.2.2:6783". */
  address: string;
  /** "connecting" | "handshaking" | "established" | "failed". "established": traffic flows. */
  state: 'connecting' | 'handshaking' | 'established' | 'failed';
  datapath: DatapathKind;
  encrypted: boolean;
  /** true when we dialled, false when the peer dialled us. */
  outbound: boolean;
  /** Why the connection is not established (last error), if any. */
  info?: string;
  /** Path MTU used towards this peer on the data path, bytes of UDP payload. */
  pmtu?: number;
  /** Round-trip time of the last heartbeat, milliseconds. */
  rttMs?: number;
}

/** One entry of `status peers --json`: every peer known through gossip. */
export interface PeerStatus {
  name: string;
  nickname: string;
  /** Gossip version of this peer's connection list. */
  version: number;
  /** Peers this one reports an established connection to. */
  connections: { name: string; nickname: string; address: string }[];
  /** Next hop from us to this peer; "" when unreachable, own name for ourselves. */
  via: string;
  reachable: boolean;
}

/** One entry of `status targets --json`: addresses we keep trying to connect to. */
export interface TargetStatus {
  address: string;
  /** "connected" | "connecting" | "waiting" (backing off) */
  state: 'connected' | 'connecting' | 'waiting';
  attempts: number;
  lastError?: string;
  /** Where the target came from: "launch", "connect", "discovered". */
  source: 'launch' | 'connect' | 'discovered';
  /** Milliseconds until the next attempt, when waiting. */
  retryInMs?: number;
}

/** `status --json` without a subcommand. */
export interface RouterStatus {
  version: string;
  name: string;
  nickname: string;
  port: number;
  encryption: boolean;
  datapath: 'auto' | DatapathKind;
  ipallocRange: string;
  peers: number;
  connections: { established: number; total: number };
  targets: number;
  networks: NetworkStatus[];
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

export interface NetworkControl {
  list(): NetworkInfo[];
  create(req: NetworkCreateRequest): Promise<NetworkInfo>;
  /** Refused (EWEAVETS_CONFLICT) while endpoints exist, naming hosts and ids. */
  remove(name: string): Promise<NetworkInfo>;
}

export interface NetworkStatus {
  name: string;
  /** Network id carried in every encapsulated frame (like a VXLAN VNI). */
  id: number;
  subnet: string;
  bridge: string;
  mtu: number;
}

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

/** What the API server needs from the daemon. Every method may throw a WeavetsError. */
export interface DaemonControl {
  status(): RouterStatus;
  connections(): ConnectionStatus[];
  peers(): PeerStatus[];
  targets(): TargetStatus[];
  connect(addresses: string[]): void;
  forget(addresses: string[]): void;
  attach(req: AttachRequest): Promise<EndpointStatus>;
  /**
   * `release`: free the address at once instead of reserving it for the id. `ifname`:
   * release what (id, ifname) holds even when no endpoint is recorded (CNI DEL).
   */
  detach(id: string, opts?: { release?: boolean; ifname?: string }): Promise<void>;
  endpoints(): EndpointStatus[];
  /** Inspect an endpoint's links, addresses and routes (CNI CHECK); NOT_FOUND if unknown. */
  checkEndpoint?(id: string): Promise<EndpointCheck>;
  /**
   * Run one CNI plugin invocation inside the daemon (the C fast-path shim forwards here):
   * the CNI_* environment and the configuration; answers the plugin's exit status and stdout.
   */
  cniExec?(env: Record<string, string>, stdin: string): Promise<{ status: number; stdout: string }>;
  expose(network: string | undefined, ip: string | undefined): Promise<ExposeResult>;
  hide(network: string | undefined): Promise<ExposeResult | undefined>;
  /** Prometheus text exposition. */
  metrics(): Promise<string>;
  ready(): boolean;
  /** Stop the daemon; `removeState` also removes bridges, links and the state dir. */
  shutdown(removeState: boolean): Promise<void>;
  /** Address management (absent in test doubles: the routes answer 404). */
  ipam?: IpamControl;
  /** The cluster's networks (absent in test doubles: the routes answer 404). */
  networks?: NetworkControl;
  /** Embedded DNS (absent with --no-dns: the routes answer 404). */
  dns?: DnsControl;
  /** Policy between workloads (absent in test doubles: the routes answer 404). */
  policy?: PolicyControl;
  /** Health matrix, trace, flows and the status page's data (absent in test doubles: 404). */
  diagnostics?: DiagnosticsControl;
}

export interface DiagnosticsControl {
  health(): HealthStatus;
  /** `traffic`: what the policy verdict is asked about, "icmp" (the default) or "tcp/5432". */
  trace(from: string, to: string, traffic?: string): Promise<TraceResult>;
  mesh(): MeshStatus;
  flows(): Promise<FlowsStatus>;
}

export type { PolicyDrop } from '../policy/drops';
export type { PolicyStatus } from '../policy/service';
export type { StoredPolicy } from '../policy/model';
export type { PolicyEndpoint } from '../policy/nft';
export type { ApplyResult as PolicyApplyResult } from '../policy/book';

/** `weavets policy ...` (docs/POLICY.md). */
export interface PolicyControl {
  /** Validate and store policy documents, all or none; refused with the field's path. */
  apply(documents: unknown[]): Promise<import('../policy/book').ApplyResult>;
  list(): import('../policy/model').StoredPolicy[];
  show(name: string): import('../policy/model').StoredPolicy;
  /** Remove policies in one transaction, all or none. */
  remove(names: string[]): Promise<{ generation: number; removed: import('../policy/model').StoredPolicy[] }>;
  drops(): import('../policy/drops').PolicyDrop[];
  status(): import('../policy/service').PolicyStatus;
  /** Every endpoint of the cluster with its labels (policy test resolves names with it). */
  endpoints(): import('../policy/nft').PolicyEndpoint[];
}

/** `weavets status dns --json` (GET /dns/status). */
export interface DnsStatus {
  enabled: boolean;
  /** "weavets.local." */
  domain: string;
  ttl: number;
  /** "addr:port" the server listens on (UDP and TCP). */
  listen: string[];
  /** Records of every host (one per host, name and address). */
  records: number;
  /** Distinct names. */
  names: number;
  /** Records this host publishes. */
  local: number;
  /** Every record this host serves, with the peer name of the host that publishes it. */
  entries: { name: string; ip: string; host: string }[];
  /** Nameservers queries outside the domain go to. */
  upstream: string[];
  resolvConf: string;
  queries: {
    answered: number;
    nxdomain: number;
    forwarded: number;
    servfail: number;
    formerr: number;
    dropped: number;
  };
}

export interface DnsRecordView {
  name: string;
  ip: string;
}

/** POST /dns/lookup {name}: a name's addresses, or an address's names. */
export type DnsLookupResult = { name: string; addresses: string[] } | { address: string; names: string[] };

export interface DnsControl {
  status(): DnsStatus;
  add(name: string, ips: string[]): Promise<DnsRecordView[]>;
  remove(name: string, ips: string[]): Promise<DnsRecordView[]>;
  lookup(name: string): DnsLookupResult;
}

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

export interface IpamControl {
  status(): IpamStatus;
  allocate(req: IpamAllocateRequest): Promise<IpamAllocation>;
  release(req: IpamReleaseRequest): Promise<IpamAllocation | null>;
  rmpeer(name: string): Promise<RmpeerResult>;
}
