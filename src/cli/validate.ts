/**
 * Argument checks for the CLI. Each returns the parsed value or throws a UsageError whose
 * message names the flag, the bad value and what to type instead. Pure: no I/O, so unit
 * tests call them directly.
 */
import { validateNetworkName } from '../endpoint/network-catalog';
import * as net from 'node:net';
import { formatIpv4, maskOf, tryParseCidr } from '../net/ipv4';
import { isPeerNameText, parsePeerName, peerNameProblem } from '../net/peername';
import { UsageError } from './output';

export function parsePort(text: string, flag: string): number {
  if (!/^\d{1,5}$/.test(text) || Number(text) < 1 || Number(text) > 65535) {
    throw new UsageError(`${flag}: '${text}' is not a port number; use 1-65535`);
  }
  return Number(text);
}

export function parseMtu(text: string): number {
  const n = /^\d{1,5}$/.test(text) ? Number(text) : NaN;
  if (!(n === 0 || (n >= 576 && n <= 65535))) {
    throw new UsageError(`--mtu: '${text}' is not a usable MTU; use 0 (derive from the underlay) or 576-65535`);
  }
  return n;
}

/** Split "a.b.c.d/p"; undefined when it is not an IPv4 CIDR at all. */
function splitCidr(text: string): { addr: number; prefix: number } | undefined {
  const c = text.trim() === text ? tryParseCidr(text, false) : undefined;
  return c === undefined ? undefined : { addr: c.address, prefix: c.prefix };
}

/** The allocation range: a network CIDR (host bits zero) with a prefix from /8 to /30. */
export function parseRangeCidr(text: string, flag = '--ipalloc-range'): string {
  const c = splitCidr(text);
  if (!c) {
    throw new UsageError(`${flag}: '${text}' is not an IPv4 CIDR; write it like 10.32.0.0/12`);
  }
  if (c.prefix < 8 || c.prefix > 30) {
    throw new UsageError(
      `${flag}: prefix /${c.prefix} is out of range; use a prefix from /8 to /30 (e.g. 10.32.0.0/12)`,
    );
  }
  const network = (c.addr & maskOf(c.prefix)) >>> 0;
  if (network !== c.addr) {
    const suggestion = `${formatIpv4(network)}/${c.prefix}`;
    throw new UsageError(`${flag}: ${text} has host bits set; did you mean ${suggestion}?`);
  }
  return text;
}

/** An interface address: an IPv4 address with its prefix, e.g. 10.32.1.5/12. */
export function parseAddressCidr(text: string, flag: string): string {
  const c = splitCidr(text);
  if (!c || c.prefix < 1) {
    throw new UsageError(`${flag}: '${text}' is not an IPv4 address with a prefix; write it like 10.32.1.5/12`);
  }
  return text;
}

export function parsePeerNameFlag(text: string): string {
  if (!isPeerNameText(text)) {
    throw new UsageError(
      `--name: '${text}' is not a peer name; use six hex bytes like 7e:21:0a:b4:19:c2, or leave --name out to keep the persisted one`,
    );
  }
  const problem = peerNameProblem(parsePeerName(text));
  if (problem !== undefined) {
    throw new UsageError(
      `--name: ${text.toLowerCase()} cannot be a peer name: ${problem}; use a unicast name like 7e:21:0a:b4:19:c2, or leave --name out`,
    );
  }
  return text.toLowerCase();
}

export function parseNickname(text: string): string {
  if (text.length < 1 || text.length > 64 || !/^[\x21-\x7e]+$/.test(text)) {
    throw new UsageError(`--nickname: '${text}' must be 1-64 printable characters without spaces`);
  }
  return text;
}

export function parseBindAddress(text: string): string {
  if (!net.isIP(text)) {
    throw new UsageError(`--bind-address: '${text}' is not an IP address; use e.g. 0.0.0.0 (all) or 192.0.2.1`);
  }
  return text;
}

const LABEL_RE = /^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/;

function isHostName(text: string): boolean {
  // All digits and dots is an IPv4 address or nothing: "999.1.1.1" is not a host name.
  return text.length <= 253 && !/^[\d.]+$/.test(text) && text.split('.').every((l) => LABEL_RE.test(l));
}

/** Split "host", "host:port", "[v6]:port" or a bare IPv6 address. */
function splitHostPort(text: string): { host: string; port?: string } | undefined {
  if (text.startsWith('[')) {
    const m = /^\[([^\]]+)\](?::(.*))?$/.exec(text);
    if (!m || !net.isIPv6(m[1]!)) return undefined;
    return m[2] === undefined ? { host: m[1]! } : { host: m[1]!, port: m[2] };
  }
  if (net.isIPv6(text)) return { host: text };
  const i = text.lastIndexOf(':');
  if (i < 0) return { host: text };
  return { host: text.slice(0, i), port: text.slice(i + 1) };
}

/** A connection target: host or host:port (IPv4, DNS name, or [IPv6]:port). */
export function parsePeerAddress(text: string): string {
  const hp = splitHostPort(text);
  const hostOk = hp !== undefined && (net.isIP(hp.host) !== 0 || isHostName(hp.host));
  if (!hp || !hostOk) {
    throw new UsageError(`peer '${text}' is not a host or host:port; use e.g. 192.0.2.2, host2 or host2:6783`);
  }
  if (hp.port !== undefined) parsePort(hp.port, `peer '${text}'`);
  return text;
}

/** The status/metrics listener: "" (off) or HOST:PORT with HOST an IP address or localhost. */
export function parseHttpAddr(text: string): string {
  if (text === '') return text;
  const hp = splitHostPort(text);
  if (!hp || hp.port === undefined || !(net.isIP(hp.host) !== 0 || hp.host === 'localhost')) {
    throw new UsageError(
      `--http-addr: '${text}' is not HOST:PORT; use e.g. 127.0.0.1:6782, or "" to turn the listener off`,
    );
  }
  parsePort(hp.port, '--http-addr');
  return text;
}

/** Container/endpoint id: what Docker, CNI and scripts use; no whitespace or slashes. */
export function parseEndpointId(text: string): string {
  if (text.length < 1 || text.length > 256 || !/^[A-Za-z0-9][A-Za-z0-9_.:@-]*$/.test(text)) {
    throw new UsageError(`ID '${text}' is not a valid id; use letters, digits and _ . : @ - (like a container id)`);
  }
  return text;
}

export function parseNetworkName(text: string, flag = '--network'): string {
  const bad = validateNetworkName(text);
  if (bad) throw new UsageError(`${flag}: ${bad}`);
  return text;
}

export function parseIfname(text: string): string {
  // Linux IFNAMSIZ is 16 including the terminating NUL.
  if (text.length < 1 || text.length > 15 || text === '.' || text === '..' || !/^[A-Za-z0-9_.-]+$/.test(text)) {
    throw new UsageError(`--ifname: '${text}' is not an interface name; use 1-15 letters, digits, _ . - (e.g. eth0)`);
  }
  return text;
}
