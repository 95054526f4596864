/**
 * The daemon's configuration: built once from flags and environment by the CLI (from the
 * option table, src/cli/launch-options.ts), every default resolved there, then passed
 * down. Nothing below the composition root reads process.env.
 */
import { StateDir } from './state/state-dir';

export interface DaemonConfig {
  /** Directory holding the peer name, the API socket, the pid file and state. */
  stateDir: string;
  /** Peer name text; undefined: use the persisted one, or make one. */
  name?: string;
  /** Human-friendly name; defaults to the hostname. */
  nickname: string;
  /** TCP control and UDP sleeve port. */
  port: number;
  /** Address to bind control and data sockets to; "0.0.0.0" for all. */
  bindAddress: string;
  /** Range every network's subnets are carved from, CIDR. */
  ipallocRange: string;
  datapath: 'auto' | 'sleeve' | 'fastdp';
  /** Initial connection targets ("host" or "host:port"). */
  peers: string[];
  /** Status/metrics HTTP listener, "127.0.0.1:6782"; "" disables it. */
  httpAddr: string;
  /** Overlay MTU for containers; 0: derive from the underlay. */
  mtu: number;
  logLevel: 'debug' | 'info' | 'warn' | 'error';
  /** Cap on the log file when stdout is a regular file (src/log.ts CappedFileSink); 0 = none. */
  logMaxSize: number;
  /** File the network password was read from (a path, never the secret), if any. */
  passwordFile?: string;
  /** The network password; undefined: no encryption. Never logged, never in argv. */
  password?: Buffer;
  /** Peers in these CIDRs may exchange data unencrypted (control stays sealed). */
  trustedSubnets: string[];
  /** The cluster store: etcd; undefined: the embedded file store in the state dir. */
  etcd?: EtcdConfig;
  /** Underlay address registered for peers to dial; undefined: first non-loopback IPv4. */
  advertiseAddress?: string;
  /** TTL of this host's registration lease in the store, seconds. */
  ipamLeaseTtl: number;
  /** Seconds an address may go unused on this host before the reconciler releases it. */
  ipamReclaimGrace: number;
  /** Block size (prefix length) for a new cluster; undefined: /26, or the cluster's. */
  ipallocBlock?: number;
  /** How long a detached container's address stays reserved for its id, seconds. */
  addressRetention: number;
  /** Embedded DNS (docs/DNS.md). */
  dns: DnsConfig;
  /** Docker plugin socket (docs/DOCKER.md); "": off. */
  dockerPluginSocket: string;
  /** The driver name Docker knows us by (a managed plugin's name); undefined: the socket's base name. */
  dockerDriverName?: string;
  /** Docker API for network names, the default network and DNS names. */
  dockerHost: string;
  /**
   * Send Docker containers' external DNS queries (on Docker networks' bridges) to weavets
   * DNS, so names of containers on other hosts resolve (docs/DOCKER.md, DNS).
   */
  dockerDnsRedirect: boolean;
  /** --policy-dry-run: every policy logs what it would drop and drops nothing (docs/POLICY.md). */
  policyDryRun: boolean;
  /** Count frames per container pair for `weavets flows` (docs/DIAGNOSTICS.md). */
  flows: boolean;
  /** The sleeve forwards the common unicast frame in C, the express path (docs/ARCHITECTURE.md). */
  sleeveExpress: boolean;
  /** The express path runs on a data path thread of its own, off the event loop (docs/ARCHITECTURE.md). */
  sleeveThread: boolean;
}

export const DEFAULT_DOCKER_PLUGIN_SOCKET = '/run/docker/plugins/weavets.sock';
export const DEFAULT_DOCKER_HOST = 'unix:///var/run/docker.sock';

export interface DnsConfig {
  enabled: boolean;
  /** Port on the host's bridge addresses (53). */
  port: number;
  /** Extra loopback listeners, "127.0.0.1:5353". */
  extraListen: string[];
  /** "weavets.local." */
  domain: string;
  ttl: number;
  /** Where the upstream nameservers come from. */
  resolvConf: string;
}

export const DEFAULT_DNS: DnsConfig = {
  enabled: true,
  port: 53,
  extraListen: [],
  domain: 'weavets.local.',
  ttl: 30,
  resolvConf: '/etc/resolv.conf',
};

export interface EtcdConfig {
  /** "http://10.0.0.5:2379", "https://..."; several for a cluster. */
  endpoints: string[];
  caFile?: string;
  certFile?: string;
  keyFile?: string;
  username?: string;
  /** File holding the etcd password (a path, never the secret). */
  passwordFile?: string;
  /** From WEAVETS_ETCD_PASSWORD; never logged, never in argv. */
  password?: string;
}

export const DEFAULT_STATE_DIR = '/var/lib/weavets';
export const DEFAULT_PORT = 6783;
export const DEFAULT_HTTP_ADDR = '127.0.0.1:6782';
export const DEFAULT_IPALLOC_RANGE = '10.32.0.0/12';
export const DEFAULT_NETWORK = 'weavets';
/** Seconds a detached container's address stays reserved for its id (`--address-retention`). */
export const DEFAULT_ADDRESS_RETENTION_SECONDS = 600;
/** Seconds after which a dead host's blocks return to the pool (`--ipam-lease-ttl`). */
export const DEFAULT_IPAM_LEASE_TTL_SECONDS = 120;
/** Seconds an address may go unused here before it is released (`--ipam-reclaim-grace`). */
export const DEFAULT_IPAM_RECLAIM_GRACE_SECONDS = 60;

export function apiSocketPath(stateDir: string): string {
  return new StateDir(stateDir).socket;
}

export function pidFilePath(stateDir: string): string {
  return new StateDir(stateDir).pid;
}

export function logFilePath(stateDir: string): string {
  return new StateDir(stateDir).log;
}

export function peerNameFilePath(stateDir: string): string {
  return new StateDir(stateDir).peerName;
}
