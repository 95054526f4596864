/**
 * What the router reports about itself (`weavets status ... --json`): its connections,
 * the peers it knows through gossip, the addresses it keeps dialling, and the summary
 * `status` prints. The router produces these shapes; the API serves them as they are.
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
