/**
 * The Host-header check of the TCP status listener: a defence against DNS rebinding.
 * A web page on evil.example can make a browser on this host resolve evil.example to
 * 127.0.0.1 and read http://evil.example:6782/ as if it were its own origin; what gives
 * it away is the Host header, which still names evil.example. So the listener answers
 * only requests addressed to the address it listens on, or to "localhost", with or
 * without the listener's port. A separate module so every page the listener serves
 * (status pages, metrics) goes through the same check.
 */
import * as net from 'node:net';

export interface ListenAddress {
  host: string;
  port: number;
}

/** Split a Host header into name and port; undefined when it is not host[:port]. */
export function parseHostHeader(value: string): { name: string; port?: number } | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+))(?::(\d{1,5}))?$/.exec(value.trim());
  if (!m) return undefined;
  const name = (m[1] ?? m[2]!).toLowerCase().replace(/\.$/, '');
  if (m[3] === undefined) return { name };
  const port = Number(m[3]);
  return port > 65535 ? undefined : { name, port };
}

function unspecified(host: string): boolean {
  return host === '0.0.0.0' || host === '::' || host === '0:0:0:0:0:0:0:0';
}

/**
 * Is a request with this Host header meant for the listener at `listen`? Accepted: the
 * listen address itself, "localhost", and, when the listener is bound to every address
 * (0.0.0.0 or ::), any IP literal (rebinding needs a name, never an address). A port,
 * if given, must be the listener's. No Host header at all (HTTP/1.0) is refused too:
 * scrapers and probes all send one.
 */
export function isAllowedHost(header: string | undefined, listen: ListenAddress): boolean {
  if (header === undefined || header === '') return false;
  const h = parseHostHeader(header);
  if (!h) return false;
  if (h.port !== undefined && h.port !== listen.port) return false;
  if (h.name === 'localhost') return true;
  if (net.isIP(h.name) === 0) return false;
  if (unspecified(listen.host)) return true;
  return sameAddress(h.name, listen.host);
}

function sameAddress(a: string, b: string): boolean {
  if (a === b.toLowerCase()) return true;
  // "::ffff:127.0.0.1" and "127.0.0.1" are the same listener on a dual-stack socket.
  const strip = (x: string): string => x.toLowerCase().replace(/^::ffff:/, '');
  return strip(a) === strip(b);
}
