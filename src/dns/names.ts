/**
 * DNS names as weavets uses them: lower-case, no trailing dot, labels checked. Record
 * names are stored relative to the domain ("web"), so hosts configured with another
 * --dns-domain still agree on the records; the domain is added when answering.
 */
import { isIpv4 } from '../net/ipv4';

const LABEL_RE = /^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$/;

/** Lower-case and drop one trailing dot: "Web.WeaveTS.local." -> "web.weavets.local". */
export function normalizeName(name: string): string {
  const lower = name.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}

/** Why `name` cannot be a record name (relative, e.g. "web" or "db.prod"); undefined if it can. */
export function recordNameProblem(name: string): string | undefined {
  const n = normalizeName(name);
  if (n === '') return 'a DNS name cannot be empty';
  if (n.length > 200) return `DNS name ${JSON.stringify(name)} is longer than 200 characters`;
  for (const label of n.split('.')) {
    if (!LABEL_RE.test(label)) {
      return `DNS name ${JSON.stringify(name)}: each dot-separated label must be 1-63 letters, digits, '-' or '_', not starting or ending with '-'`;
    }
  }
  return undefined;
}

/**
 * The record name for a full name given at attach or on the CLI: "web" stays "web", and
 * "web.weavets.local" (the domain spelled out) becomes "web".
 */
export function relativeName(name: string, domain: string): string {
  const n = normalizeName(name);
  const suffix = '.' + domain;
  return n.endsWith(suffix) ? n.slice(0, -suffix.length) : n;
}

/** "10.32.0.5" -> "5.0.32.10.in-addr.arpa" */
export function reverseName(ip: string): string {
  return ip.split('.').reverse().join('.') + '.in-addr.arpa';
}

/** "5.0.32.10.in-addr.arpa" (normalized) -> "10.32.0.5"; undefined when not a full IPv4 reverse name. */
export function addressOfReverseName(name: string): string | undefined {
  if (!name.endsWith('.in-addr.arpa')) return undefined;
  const ip = name.slice(0, -'.in-addr.arpa'.length).split('.').reverse().join('.');
  return isIpv4(ip) ? ip : undefined;
}

/** Is `name` (normalized) in the zone `zone` (normalized)? The apex counts. */
export function inZone(name: string, zone: string): boolean {
  return name === zone || name.endsWith('.' + zone);
}
