/**
 * The policy evaluator: given the policies of a network and two endpoints (labels and
 * address), is a new connection from one to the other on a protocol/port allowed, and
 * which rule decided? Kubernetes NetworkPolicy semantics:
 *  - an endpoint selected by any policy that isolates a direction is isolated in it;
 *  - an isolated direction allows exactly the union of the rules of the policies
 *    selecting the endpoint; a connection needs both the sender's egress and the
 *    receiver's ingress to allow it;
 *  - replies to an allowed connection always pass (not evaluated here: conntrack's job).
 * Pure. `policy test` and `weavets trace` use it; the nftables compiler implements the
 * same decisions and its tests check them against this.
 */
import { contains, parseCidr, parseIpv4 } from '../net/ipv4';
import { selectorMatches, type Labels } from './labels';
import type { Policy, PolicyDirection, PolicyPeer, PolicyPort, PolicyProtocol, PolicyRule } from './model';

export interface EvalEndpoint {
  labels: Labels;
  /** IPv4 address (no prefix), when known: CIDR peers match on it. */
  ip?: string;
  /** Not an endpoint of the network (an outside address): only CIDR peers match it. */
  external?: boolean;
}

export interface EvalTraffic {
  protocol: PolicyProtocol;
  /** Destination port; absent for icmp. */
  port?: number;
}

/** How one direction was decided. */
export interface DirectionVerdict {
  direction: PolicyDirection;
  allowed: boolean;
  /** Policies isolating this end in this direction (enforcing and audit), by name. */
  isolatedBy: string[];
  /** "db-ingress ingress[0]" for the first rule that allows; undefined when none. */
  rule?: string;
  /** Whether the verdict is only audited (every isolating policy is in audit mode). */
  auditOnly: boolean;
}

export interface Verdict {
  allowed: boolean;
  /** Why, in one line: "allowed by db-ingress ingress[0]", "denied: db-ingress isolates db (ingress) and no rule allows". */
  reason: string;
  egress: DirectionVerdict;
  ingress: DirectionVerdict;
}

/** "tcp/5432", "udp/53", "icmp"; throws Error with the reason. */
export function parseTraffic(text: string): EvalTraffic {
  const m = /^(tcp|udp|sctp|icmp)(?:\/(\d{1,5}))?$/i.exec(text.trim());
  if (!m) throw new Error(`${JSON.stringify(text)} is not PROTOCOL/PORT (tcp/5432, udp/53, icmp)`);
  const protocol = m[1]!.toLowerCase() as PolicyProtocol;
  if (protocol === 'icmp') {
    if (m[2] !== undefined) throw new Error(`${JSON.stringify(text)}: icmp has no port`);
    return { protocol };
  }
  if (m[2] === undefined) throw new Error(`${JSON.stringify(text)}: ${protocol} needs a port (${protocol}/PORT)`);
  const port = Number(m[2]);
  if (port < 1 || port > 65535) throw new Error(`${JSON.stringify(text)}: port ${port} is out of range (1-65535)`);
  return { protocol, port };
}

export function formatTraffic(t: EvalTraffic): string {
  return t.port === undefined ? t.protocol : `${t.protocol}/${t.port}`;
}

function cidrPeerMatches(peer: { cidr: string; except: string[] }, ip: string | undefined): boolean {
  if (ip === undefined) return false;
  const n = parseIpv4(ip);
  if (!contains(parseCidr(peer.cidr), n)) return false;
  return !peer.except.some((e) => contains(parseCidr(e), n));
}

export function peerMatches(peer: PolicyPeer, other: EvalEndpoint): boolean {
  if ('selector' in peer) return !other.external && selectorMatches(peer.selector, other.labels);
  return cidrPeerMatches(peer, other.ip);
}

export function portMatches(p: PolicyPort, t: EvalTraffic): boolean {
  if (p.protocol !== t.protocol) return false;
  if (p.port === undefined) return true;
  if (t.port === undefined) return false;
  return t.port >= p.port && t.port <= (p.endPort ?? p.port);
}

export function ruleMatches(rule: PolicyRule, other: EvalEndpoint, t: EvalTraffic): boolean {
  if (rule.peers !== undefined && !rule.peers.some((p) => peerMatches(p, other))) return false;
  if (rule.ports !== undefined && !rule.ports.some((p) => portMatches(p, t))) return false;
  return true;
}

/**
 * One direction at one end: `self` is the sender for egress, the receiver for ingress;
 * `other` the far end. With `dryRun`, every policy counts as audit.
 */
export function evaluateDirection(
  policies: readonly Policy[],
  direction: PolicyDirection,
  self: EvalEndpoint,
  other: EvalEndpoint,
  t: EvalTraffic,
  dryRun = false,
): DirectionVerdict {
  const isolating = self.external
    ? []
    : policies.filter((p) => p.types.includes(direction) && selectorMatches(p.selector, self.labels));
  if (isolating.length === 0) return { direction, allowed: true, isolatedBy: [], auditOnly: false };
  const auditOnly = dryRun || isolating.every((p) => p.mode === 'audit');
  for (const p of isolating) {
    const rules = direction === 'ingress' ? p.ingress : p.egress;
    const i = rules.findIndex((r) => ruleMatches(r, other, t));
    if (i >= 0)
      return {
        direction,
        allowed: true,
        isolatedBy: isolating.map((q) => q.name),
        rule: `${p.name} ${direction}[${i}]`,
        auditOnly,
      };
  }
  return { direction, allowed: false, isolatedBy: isolating.map((q) => q.name), auditOnly };
}

/**
 * A new connection from `from` to `to` within one network. `policies` are those of the
 * network. The verdict counts audit policies as if enforced (policy test asks "what do
 * these policies say"); `Verdict.*.auditOnly` tells whether a denial would really drop.
 */
export function evaluate(
  policies: readonly Policy[],
  from: EvalEndpoint,
  to: EvalEndpoint,
  t: EvalTraffic,
  dryRun = false,
): Verdict {
  const egress = evaluateDirection(policies, 'egress', from, to, t, dryRun);
  const ingress = evaluateDirection(policies, 'ingress', to, from, t, dryRun);
  const allowed = egress.allowed && ingress.allowed;
  let reason: string;
  if (allowed) {
    const rules = [egress.rule, ingress.rule].filter((r): r is string => r !== undefined);
    reason = rules.length === 0 ? 'allowed: no policy isolates either end' : `allowed by ${rules.join(' and ')}`;
  } else {
    const d = !egress.allowed ? egress : ingress;
    reason = `denied: ${d.isolatedBy.join(', ')} isolate${d.isolatedBy.length === 1 ? 's' : ''} the ${d.direction === 'egress' ? 'sender' : 'receiver'} (${d.direction}) and no rule allows ${formatTraffic(t)}`;
  }
  return { allowed, reason, egress, ingress };
}
