/**
 * The daemon's API as data: the JSON shapes served over the unix socket and printed by
 * `weavets status ... --json`, and the interface the HTTP server calls into. The server
 * and the CLI depend on this file only, never on router internals.
 */

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
}

export interface AttachRequest {
  id: string;
  netns: string;
  ifname?: string;
  /** CIDR the caller wants; without it the daemon allocates one. */
  ip?: string;
  network?: string;
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
  detach(id: string): Promise<void>;
  endpoints(): EndpointStatus[];
  expose(network: string | undefined, ip: string | undefined): Promise<ExposeResult>;
  hide(network: string | undefined): Promise<ExposeResult | undefined>;
  /** Prometheus text exposition. */
  metrics(): Promise<string>;
  ready(): boolean;
  /** Stop the daemon; `removeState` also removes bridges, links and the state dir. */
  shutdown(removeState: boolean): Promise<void>;
}
