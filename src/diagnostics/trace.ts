/**
 * `weavets trace FROM TO`: why can (or can't) A reach B. Both ends are resolved from the
 * containers every host reports in its health row (ids, names, addresses) and from the
 * DNS table; the route is computed hop by hop exactly as each host on it computes its own
 * next hop (routePath); each hop is described from the health row of the host that sends
 * on it (data path, encryption, path MTU, heartbeat RTT, up or why not); then probe
 * frames of our own are sent along the real path to the far host and answered by it.
 */
import { randomInt } from 'node:crypto';
import type { Logger } from '../log';
import type { Datapath } from '../router/overlay';
import { WeavetsError } from '../errors';
import { formatPeerName, type PeerName } from '../net/peername';
import { routePath } from '../router/route-path';
import type { PeerEntry } from '../router/topology';
import type { HealthPeerView, HostReport } from '../router/health-codec';
import { decodeTraceProbe, encodeTraceProbe, TraceProbeKind } from './trace-probe-codec';
import { formatIpv4 } from '../net/ipv4';

export interface TraceHost {
  name: string;
  nickname: string;
}

export interface TraceEnd {
  /** What the user typed. */
  query: string;
  id: string;
  name: string;
  address: string;
  network: string;
  host: TraceHost;
}

export interface TraceHop {
  from: TraceHost;
  to: TraceHost;
  datapath: 'sleeve' | 'fastdp';
  encrypted: boolean;
  pmtu: number | null;
  rttMs: number | null;
  up: boolean;
  /** Why the hop is down ("" when up). */
  reason: string;
  /** The sending host's health row is stale: this hop is its last known state. */
  stale: boolean;
}

/** The policy seam: filled by the policy evaluator once policies exist (issue 14). */
export interface TraceVerdict {
  verdict: 'allow' | 'deny';
  /** The policy (and rule) that decided, or null when none applies. */
  policy: string | null;
  reason: string;
}

export interface TraceProbeResult {
  /** The host the probes left from (the host running the trace). */
  from: TraceHost | null;
  sent: number;
  answered: number;
  /** Median round trip of the answered probes. */
  rttMs: number | null;
}

/** POST /trace and `weavets trace --json`. */
export interface TraceResult {
  from: TraceEnd;
  to: TraceEnd;
  network: string;
  hops: TraceHop[];
  /** When the route is relayed: why the hosts of the two ends do not talk directly. */
  relayed: string | null;
  policy: TraceVerdict;
  probe: TraceProbeResult;
  reachable: boolean;
  /** Why not reachable ("" when reachable). */
  reason: string;
}

export interface TraceInputs {
  self: PeerName;
  entries: readonly PeerEntry[];
  reports: readonly { report: HostReport; stale: boolean }[];
  /** Addresses a DNS name resolves to (the DNS table), [] when none or DNS is off. */
  dnsAddresses(name: string): string[];
  nicknames: ReadonlyMap<PeerName, string>;
  /** The policy evaluator; without one, everything inside a network is allowed. */
  verdict?(from: TraceEnd, to: TraceEnd): TraceVerdict;
}

interface Candidate {
  end: Omit<TraceEnd, 'query'>;
  owner: PeerName;
}

function candidates(inputs: TraceInputs, query: string): Candidate[] {
  const q = query.trim();
  const byDns = new Set(inputs.dnsAddresses(q));
  const out: Candidate[] = [];
  for (const { report } of inputs.reports) {
    for (const e of report.endpoints) {
      const ip = formatIpv4(e.ip);
      if (e.id === q || e.name === q || ip === q || byDns.has(ip)) {
        out.push({
          owner: report.owner,
          end: {
            id: e.id,
            name: e.name,
            address: ip,
            network: e.network,
            host: { name: formatPeerName(report.owner), nickname: report.nickname },
          },
        });
      }
    }
  }
  return out;
}

function describe(c: Candidate): string {
  return `${c.end.name || c.end.id} (${c.end.address} on ${c.end.host.nickname || c.end.host.name}, network ${c.end.network})`;
}

/** Resolve both ends; the other end's network settles a name used on several networks. */
export function resolveEnds(inputs: TraceInputs, fromQuery: string, toQuery: string): [Candidate, Candidate] {
  const hosts = inputs.reports.length;
  const find = (query: string): Candidate[] => {
    const c = candidates(inputs, query);
    if (c.length === 0) {
      throw new WeavetsError(
        'EWEAVETS_NOT_FOUND',
        `no container matches '${query}' (ids, names, DNS names and addresses of the containers of ${hosts} host${hosts === 1 ? '' : 's'})`,
      );
    }
    return c;
  };
  const f = find(fromQuery);
  const t = find(toQuery);
  const pick = (mine: Candidate[], other: Candidate[], query: string): Candidate => {
    if (mine.length === 1) return mine[0]!;
    const nets = new Set(other.map((o) => o.end.network));
    const same = mine.filter((m) => nets.has(m.end.network));
    if (same.length === 1) return same[0]!;
    throw new WeavetsError(
      'EWEAVETS_BAD_REQUEST',
      `'${query}' is ambiguous: ${mine.map(describe).join(', ')}; give an id or an address`,
    );
  };
  return [pick(f, t, fromQuery), pick(t, f, toQuery)];
}

/** Everything but the probe: resolution, route, hops, policy. Pure. */
export function planTrace(
  inputs: TraceInputs,
  fromQuery: string,
  toQuery: string,
): { result: TraceResult; ends: { from: PeerName; to: PeerName } | undefined } {
  const [f, t] = resolveEnds(inputs, fromQuery, toQuery);
  const host = (p: PeerName): TraceHost => ({ name: formatPeerName(p), nickname: inputs.nicknames.get(p) ?? '' });
  const label = (p: PeerName): string => inputs.nicknames.get(p) || formatPeerName(p);
  const from: TraceEnd = { query: fromQuery, ...f.end };
  const to: TraceEnd = { query: toQuery, ...t.end };
  const probe: TraceProbeResult = { from: null, sent: 0, answered: 0, rttMs: null };
  const result: TraceResult = {
    from,
    to,
    network: from.network,
    hops: [],
    relayed: null,
    policy: { verdict: 'allow', policy: null, reason: 'no policies' },
    probe,
    reachable: false,
    reason: '',
  };
  if (from.network !== to.network) {
    result.network = '';
    result.policy = { verdict: 'deny', policy: null, reason: 'different networks' };
    result.reason = `${from.name || from.id} is on network ${from.network} and ${to.name || to.id} on network ${to.network}: networks are isolated, nothing crosses between them`;
    return { result, ends: undefined };
  }
  const rows = new Map(inputs.reports.map((r) => [r.report.owner, r] as const));
  const view = (a: PeerName, b: PeerName): { v: HealthPeerView | undefined; stale: boolean } => {
    const row = rows.get(a);
    return { v: row?.report.peers.find((p) => p.peer === b), stale: row?.stale ?? true };
  };
  const path = routePath(inputs.entries, f.owner, t.owner);
  if (path === undefined) {
    const { v } = view(f.owner, t.owner);
    result.reason = `no route from ${label(f.owner)} to ${label(t.owner)}${v?.reason ? `: ${label(f.owner)}-${label(t.owner)}: ${v.reason}` : ''}`;
    return { result, ends: undefined };
  }
  for (let i = 0; i + 1 < path.length; i++) {
    const a = path[i]!;
    const b = path[i + 1]!;
    const { v, stale } = view(a, b);
    result.hops.push({
      from: host(a),
      to: host(b),
      datapath: v?.datapath ?? 'sleeve',
      encrypted: v?.encrypted ?? false,
      pmtu: v === undefined || v.pmtu === 0 ? null : v.pmtu,
      rttMs: v?.rttUs === undefined ? null : v.rttUs / 1000,
      up: v?.up ?? false,
      reason: v === undefined ? `no health report from ${label(a)} about ${label(b)}` : v.reason,
      stale,
    });
  }
  if (path.length > 2) {
    const { v } = view(f.owner, t.owner);
    result.relayed = `${label(f.owner)}-${label(t.owner)} is down: ${v?.reason || (v === undefined ? 'never connected' : 'not an established route edge')}`;
  }
  if (inputs.verdict !== undefined) result.policy = inputs.verdict(from, to);
  const down = result.hops.find((h) => !h.up);
  if (down !== undefined)
    result.reason = `${down.from.nickname || down.from.name} -> ${down.to.nickname || down.to.name} is down: ${down.reason}`;
  else if (result.policy.verdict !== 'allow')
    result.reason = `denied by policy: ${result.policy.policy ?? result.policy.reason}`;
  return { result, ends: { from: f.owner, to: t.owner } };
}

const PROBE_COUNT = 3;
const PROBE_SPACING_MS = 100;
const PROBE_WAIT_MS = 2000;

interface Pending {
  sentAt: Map<number, number>;
  rtts: number[];
  target: PeerName;
}

/**
 * Sends trace probes and answers other hosts' probes. Every daemon has one: a host that
 * does not answer is a host the probe did not reach.
 */
export class TraceProber {
  private readonly pending = new Map<number, Pending>();
  private malformed = 0;

  constructor(
    private readonly self: PeerName,
    private readonly datapath: Datapath,
    private readonly log: Logger,
  ) {
    datapath.setProbeListener?.((from, frame) => this.onFrame(from, frame));
  }

  get malformedCount(): number {
    return this.malformed;
  }

  close(): void {
    this.datapath.setProbeListener?.(undefined);
    this.pending.clear();
  }

  /** Send PROBE_COUNT requests to `target` along the route; resolve with what came back. */
  async probe(target: PeerName): Promise<{ sent: number; answered: number; rttMs: number | null }> {
    if (target === this.self || this.datapath.sendProbe === undefined) return { sent: 0, answered: 0, rttMs: null };
    let id = randomInt(1, 0xffffffff);
    while (this.pending.has(id)) id = randomInt(1, 0xffffffff);
    const p: Pending = { sentAt: new Map(), rtts: [], target };
    this.pending.set(id, p);
    let sent = 0;
    try {
      for (let seq = 1; seq <= PROBE_COUNT; seq++) {
        if (seq > 1) await delay(PROBE_SPACING_MS);
        p.sentAt.set(seq, performance.now());
        if (
          this.datapath.sendProbe(
            target,
            encodeTraceProbe({ kind: TraceProbeKind.Request, id, seq, from: this.self, to: target }),
          )
        )
          sent++;
      }
      const deadline = Date.now() + PROBE_WAIT_MS;
      while (p.rtts.length < sent && Date.now() < deadline) await delay(20);
    } finally {
      this.pending.delete(id);
    }
    const sorted = [...p.rtts].sort((a, b) => a - b);
    const rttMs = sorted.length === 0 ? null : Math.round(sorted[Math.floor(sorted.length / 2)]! * 1000) / 1000;
    return { sent, answered: p.rtts.length, rttMs };
  }

  private onFrame(from: PeerName, frame: Buffer): void {
    const m = decodeTraceProbe(frame);
    if (typeof m === 'string' || m.to !== this.self || m.from !== from) {
      this.malformed++;
      return;
    }
    if (m.kind === TraceProbeKind.Request) {
      const ok = this.datapath.sendProbe?.(
        from,
        encodeTraceProbe({ kind: TraceProbeKind.Reply, id: m.id, seq: m.seq, from: this.self, to: from }),
      );
      if (!ok) this.log.debug('cannot answer trace probe: no route back', { to: formatPeerName(from) });
      return;
    }
    const p = this.pending.get(m.id);
    const sentAt = p?.sentAt.get(m.seq);
    if (p === undefined || sentAt === undefined || p.target !== from) return;
    p.sentAt.delete(m.seq);
    p.rtts.push(performance.now() - sentAt);
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Plan, then probe when the plan says the far end can be reached from here. */
export async function runTrace(
  inputs: TraceInputs,
  prober: TraceProber,
  fromQuery: string,
  toQuery: string,
): Promise<TraceResult> {
  const { result, ends } = planTrace(inputs, fromQuery, toQuery);
  if (ends === undefined) return result;
  const self = { name: formatPeerName(inputs.self), nickname: inputs.nicknames.get(inputs.self) ?? '' };
  if (ends.from === ends.to) {
    // Both ends on one host: its bridge joins them, there is no overlay hop to probe.
    result.reachable = result.reason === '';
    return result;
  }
  // From here to the far end of the route (or to its near end when we are the far end).
  const target = ends.to !== inputs.self ? ends.to : ends.from;
  const probe = await prober.probe(target);
  result.probe = { from: self, ...probe };
  if (result.reason === '' && probe.answered === 0) {
    result.reason =
      probe.sent === 0
        ? `no route from ${self.nickname || self.name} to send probes on`
        : `no probe answered by ${inputs.nicknames.get(target) || formatPeerName(target)}`;
  }
  result.reachable = result.reason === '';
  return result;
}
