/**
 * Host header check for the read-only TCP listener (the status page, /metrics, status
 * JSON). A web page elsewhere can point a DNS name it controls at 127.0.0.1 (DNS
 * rebinding) and have the browser read our answers as same-origin; the browser then
 * sends that name as Host. We answer only Hosts that name the listener itself: its
 * listen address, localhost, or (on a wildcard bind) any IP literal, which no
 * rebinding attacker's name can be.
 */
import * as net from 'node:net';

const LOCAL_NAMES = new Set(['localhost', '127.0.0.1', '::1']);

/** The host part of a Host header ("[::1]:6782" -> "::1"), lower-cased; undefined if malformed. */
export function hostOfHeader(header: string): string | undefined {
  const h = header.trim().toLowerCase();
  if (h === '') return undefined;
  const v6 = /^\[([0-9a-f:.]+)\](?::\d{1,5})?$/.exec(h);
  if (v6) return v6[1];
  const m = /^([^:[\]\s]+)(?::\d{1,5})?$/.exec(h);
  return m ? m[1] : undefined;
}

/** May a request with this Host header be answered by a listener bound to `listenHost`? */
export function hostAllowed(header: string | undefined, listenHost: string): boolean {
  if (header === undefined) return false;
  const host = hostOfHeader(header);
  if (host === undefined) return false;
  if (LOCAL_NAMES.has(host) || host === listenHost.toLowerCase()) return true;
  const wildcard = listenHost === '0.0.0.0' || listenHost === '::' || listenHost === '';
  return wildcard && net.isIP(host) !== 0;
}
