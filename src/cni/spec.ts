/**
 * The parts of the CNI specification the plugin speaks: versions, error codes, and the
 * result document in each version's shape. Pure; no I/O. See docs/CNI.md.
 */

/** Versions whose result shape we can produce, oldest first. 0.1.0/0.2.0 used another shape. */
export const SUPPORTED_VERSIONS = ['0.3.0', '0.3.1', '0.4.0', '1.0.0', '1.1.0'] as const;
export type CniVersion = (typeof SUPPORTED_VERSIONS)[number];
export const LATEST_VERSION: CniVersion = '1.1.0';

/** Well-known codes from the spec (1-99 are reserved for it), then ours from 100. */
export const CNI_ERR = {
  INCOMPATIBLE_VERSION: 1,
  UNSUPPORTED_FIELD: 2,
  CONTAINER_UNKNOWN: 3,
  INVALID_ENV: 4,
  IO_FAILURE: 5,
  DECODE: 6,
  INVALID_CONFIG: 7,
  TRY_AGAIN: 11,
  /** STATUS: cannot service ADD now. */
  NOT_AVAILABLE: 50,
  /** STATUS: cannot service ADD, and existing containers may have limited connectivity. */
  NOT_AVAILABLE_DEGRADED: 51,
  // ---- weavets-specific ----
  /** The daemon holds a conflicting endpoint (same id elsewhere, or the ifname is taken). */
  CONFLICT: 100,
  /** No free address in the network's range, or the requested one is taken. */
  RANGE_EXHAUSTED: 101,
  /** The daemon failed while doing the work. */
  DAEMON_FAILED: 102,
  /** CHECK found the container's networking not as ADD left it. */
  CHECK_FAILED: 103,
  /** The daemon rejected what we asked (a runtime-supplied ip or mac it cannot use). */
  REJECTED: 104,
} as const;

export class CniError extends Error {
  constructor(
    readonly code: number,
    message: string,
    readonly details?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CniError';
  }
}

export function isSupportedVersion(v: string): v is CniVersion {
  return (SUPPORTED_VERSIONS as readonly string[]).includes(v);
}

/** a >= b for dotted numeric versions. */
export function versionAtLeast(a: string, b: string): boolean {
  const pa = a.split('.').map(Number);
  const pb = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) {
    const d = (pa[i] ?? 0) - (pb[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

export interface DnsConfig {
  nameservers?: string[];
  domain?: string;
  search?: string[];
  options?: string[];
}

/** What ADD did, independent of the spec version it is reported in. */
export interface Attachment {
  hostIfname: string;
  hostMac: string;
  ifname: string;
  mac: string;
  sandbox: string;
  /** CIDR */
  address: string;
  gateway?: string;
  mtu?: number;
  dns: DnsConfig;
}

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
  mtu?: number;
}

export interface CniIp {
  version?: '4' | '6';
  address: string;
  gateway?: string;
  interface?: number;
}

export interface CniRoute {
  dst: string;
  gw?: string;
}

export interface CniResult {
  cniVersion: string;
  interfaces: CniInterface[];
  ips: CniIp[];
  routes: CniRoute[];
  dns: DnsConfig;
}

/** The ADD result in the shape of `version` (0.3.x/0.4.0 carry ips[].version; 1.1.0 adds mtu). */
export function formatResult(version: CniVersion, a: Attachment): CniResult {
  const withMtu = versionAtLeast(version, '1.1.0') && a.mtu !== undefined;
  const host: CniInterface = { name: a.hostIfname, mac: a.hostMac };
  const ctr: CniInterface = { name: a.ifname, mac: a.mac, sandbox: a.sandbox };
  if (withMtu) {
    host.mtu = a.mtu;
    ctr.mtu = a.mtu;
  }
  const ip: CniIp = { address: a.address, interface: 1 };
  if (!versionAtLeast(version, '1.0.0')) ip.version = '4';
  if (a.gateway !== undefined) ip.gateway = a.gateway;
  const routes: CniRoute[] = a.gateway !== undefined ? [{ dst: '0.0.0.0/0', gw: a.gateway }] : [];
  return { cniVersion: version, interfaces: [host, ctr], ips: [ip], routes, dns: a.dns };
}

export interface CniErrorDoc {
  cniVersion: string;
  code: number;
  msg: string;
  details?: string;
}

export function formatError(version: string, err: CniError): CniErrorDoc {
  const doc: CniErrorDoc = { cniVersion: version, code: err.code, msg: err.message };
  if (err.details !== undefined) doc.details = err.details;
  return doc;
}
