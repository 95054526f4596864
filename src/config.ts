/**
 * The daemon's configuration: built once from flags and environment by the CLI, then
 * passed down. Nothing below the composition root reads process.env.
 */
import * as path from 'node:path';

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
}

export const DEFAULT_STATE_DIR = '/var/lib/weavets';
export const DEFAULT_PORT = 6783;
export const DEFAULT_HTTP_ADDR = '127.0.0.1:6782';
export const DEFAULT_IPALLOC_RANGE = '10.32.0.0/12';
export const DEFAULT_NETWORK = 'weavets';

export function apiSocketPath(stateDir: string): string {
  return path.join(stateDir, 'weavets.sock');
}

export function pidFilePath(stateDir: string): string {
  return path.join(stateDir, 'weavets.pid');
}

export function logFilePath(stateDir: string): string {
  return path.join(stateDir, 'weavets.log');
}

export function peerNameFilePath(stateDir: string): string {
  return path.join(stateDir, 'peer-name');
}
