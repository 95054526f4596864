/**
 * The nftables compiler: policies, the cluster's endpoints and this host's container
 * ports in, one `nft -f` script out that replaces weavets' policy tables in one
 * transaction. Pure; the enforcer runs it. docs/POLICY.md explains the layout.
 *
 * Two tables of the same name, replaced together (one transaction):
 *  - `bridge weavets_policy`: anti-spoofing on every container port (stateless; bridge
 *    family, where the input port is known): a frame whose source MAC, IPv4 source or
 *    ARP sender is not the endpoint's is dropped, and so is anything but IPv4 and ARP.
 *  - `inet weavets_policy`: the policies (stateful: "replies pass" needs conntrack,
 *    which this kernel has only in the IP hooks, reached by bridged frames through
 *    br_netfilter, per bridge with nf_call_iptables). Present only when a network with
 *    local endpoints has a policy, so hosts without policy pay nothing for conntrack.
 */
import { formatIpv4, maskOf, parseCidr, parseIpv4 } from '../net/ipv4';
import { selectorMatches, type Labels } from './labels';
import type { Policy, PolicyDirection, PolicyPeer, PolicyPort, PolicyRule } from './model';
import { fullScript } from './nft-script';
import { EndpointIndex, type CompileCache } from './endpoint-index';
import { compareText } from '../text-order';

export const POLICY_TABLE = 'weavets_policy';

/** An endpoint anywhere in the cluster, as published in the store. */
export interface PolicyEndpoint {
  id: string;
  network: string;
  /** IPv4 address, no prefix. */
  ip: string;
  labels: Labels;
  /** Peer name of the host its interface is on. */
  host: string;
  /** Nickname of that host, for drops. */
  hostNickname?: string;
  name?: string;
}

/** A container port on this host: the host end of its veth. */
export interface LocalPort {
  network: string;
  hostVeth: string;
  mac: string;
  ip: string;
}

export interface CompileBridge {
  network: string;
  /** Network id (24 bits), in log prefixes. */
  id: number;
  bridge: string;
  /** The host's address on the bridge, where containers' DNS goes: never blocked. */
  resolver?: { ip: string; port: number };
  /**
   * CIDR of the network's container addresses (its subnet, or the whole range for a
   * Docker network addressed from it). Frames between two of these of which neither is
   * isolated here are not tracked; unset, every frame on the bridge is tracked.
   */
  addresses?: string;
}

export interface CompileInput {
  policies: readonly Policy[];
  endpoints: readonly PolicyEndpoint[];
  localPorts: readonly LocalPort[];
  bridges: readonly CompileBridge[];
  /** --policy-dry-run: every policy is in audit mode. */
  dryRun: boolean;
  logGroup: number;
  /** Log records per second per rule (the kernel's limit), burst twice that. */
  logRate: number;
  /**
   * UDP port of the kernel VXLAN data path (fastdp), when it may be used. Its datagrams
   * (this host's own, in and out) are not tracked: they carry the frames policy decides
   * on, and conntrack would otherwise look each one up beside the frame inside it.
   */
  tunnelPort?: number;
  /**
   * Work to reuse from the previous compile: `stamp` must change whenever any endpoint
   * (address or labels) does. Absent: everything is resolved afresh. Same output either way.
   */
  cache?: { store: CompileCache; stamp: string };
}

/** A named set of IPv4 addresses (`interval`: elements may be ranges). */
export interface NftSet {
  name: string;
  interval: boolean;
  elements: string[];
}

/** A chain: rules in order; `hook` is the base chain's declaration, absent for a regular chain. */
export interface NftChain {
  name: string;
  hook?: string;
  rules: string[];
}

/** One of weavets' tables, as compiled: what {@link fullScript} and nft-script.ts write. */
export interface NftTable {
  family: 'bridge' | 'inet';
  sets: NftSet[];
  chains: NftChain[];
}

export interface CompiledRuleset {
  /** Replaces both tables in one transaction (start, recovery). */
  script: string;
  /** Bridges whose frames must pass through the IP hooks (nf_call_iptables on). */
  statefulBridges: string[];
  /** The tables it defines (the inet one only when a policy applies here). */
  tables: NftTable[];
}

type Range = [number, number];

/** Union of ranges, merged and sorted. */
export function mergeRanges(ranges: readonly Range[]): Range[] {
  const sorted = [...ranges].sort((a, b) => a[0] - b[0]);
  const out: Range[] = [];
  for (const [s, e] of sorted) {
    const last = out[out.length - 1];
    if (last && s <= last[1] + 1) last[1] = Math.max(last[1], e);
    else out.push([s, e]);
  }
  return out;
}

function cidrRange(text: string): Range {
  const c = parseCidr(text);
  return [c.base, (c.base | ~maskOf(c.prefix)) >>> 0];
}

/** A CIDR less its exceptions, as ranges. */
export function cidrMinus(cidr: string, except: readonly string[]): Range[] {
  let parts: Range[] = [cidrRange(cidr)];
  for (const e of except) {
    const [xs, xe] = cidrRange(e);
    const next: Range[] = [];
    for (const [s, t] of parts) {
      if (xe < s || xs > t) {
        next.push([s, t]);
        continue;
      }
      if (xs > s) next.push([s, xs - 1]);
      if (xe < t) next.push([xe + 1, t]);
    }
    parts = next;
  }
  return parts;
}

function formatRange([s, e]: Range): string {
  return s === e ? formatIpv4(s) : `${formatIpv4(s)}-${formatIpv4(e)}`;
}

/** Addresses a rule's peers match among the network's endpoints (and CIDRs). */
export function peerRanges(
  peers: readonly PolicyPeer[],
  endpoints: readonly PolicyEndpoint[] | EndpointIndex,
): Range[] {
  const index = endpoints instanceof EndpointIndex ? endpoints : new EndpointIndex(endpoints);
  const ranges: Range[] = [];
  for (const p of peers) {
    if ('selector' in p) {
      for (const ep of index.matching(p.selector)) ranges.push([parseIpv4(ep.ip), parseIpv4(ep.ip)]);
    } else ranges.push(...cidrMinus(p.cidr, p.except));
  }
  return mergeRanges(ranges);
}

function portMatch(p: PolicyPort): string {
  if (p.port === undefined) return `meta l4proto ${p.protocol}`;
  const ports = p.endPort === undefined ? String(p.port) : `${p.port}-${p.endPort}`;
  return `meta l4proto ${p.protocol} th dport ${ports}`;
}

function quote(text: string): string {
  // Names are validated (policy names, link names, labels never reach the script), so
  // this only guards the grammar.
  return `"${text.replace(/["\\]/g, '')}"`;
}

function hex6(id: number): string {
  return id.toString(16).padStart(6, '0');
}

const established = 'ct state established,related,untracked accept';

export function compileRuleset(input: CompileInput): CompiledRuleset {
  const ports = [...input.localPorts].sort((a, b) => compareText(a.hostVeth, b.hostVeth));
  const tables: NftTable[] = [antiSpoofingTable(input, ports)];

  // Policies, per network that has both a policy and an endpoint here.
  const policies = [...input.policies].sort((a, b) => compareText(a.name, b.name));
  const out: StatefulParts = { sets: [], chains: [], dispatch: [], bridges: [], tunnelPort: input.tunnelPort };
  for (const bridge of [...input.bridges].sort((a, b) => a.id - b.id)) {
    compileNetwork(input, bridge, ports, policies, out);
  }
  if (out.bridges.length > 0) tables.push(statefulTable(out));
  // Otherwise no policy applies here: no stateful table, so no conntrack for bridged frames.
  return { script: fullScript(tables), statefulBridges: out.bridges, tables };
}

function logLimit(input: CompileInput): string {
  return `limit rate ${input.logRate}/second burst ${input.logRate * 2} packets`;
}

/**
 * A port's chain is named after its veth when the name is a plain identifier, so adding
 * or removing one container changes no other container's chain (the incremental apply
 * then touches only that port's chain and the dispatch map).
 */
function portChainName(p: LocalPort, i: number): string {
  return /^[A-Za-z0-9_]+$/.test(p.hostVeth) ? `port_${p.hostVeth}` : `port${i}`;
}

/** Anti-spoofing: one chain per container port, dispatched by input port. */
function antiSpoofingTable(input: CompileInput, ports: readonly LocalPort[]): NftTable {
  const limit = logLimit(input);
  const bridgeOf = new Map(input.bridges.map((b) => [b.network, b]));
  const chains: NftChain[] = [];
  const names = ports.map(portChainName);
  ports.forEach((p, i) => {
    const id = hex6(bridgeOf.get(p.network)?.id ?? 0);
    const log = `${limit} log group ${input.logGroup} prefix ${quote(`wts ${id} ${p.hostVeth}`)} drop`;
    chains.push({
      name: names[i]!,
      rules: [
        `ether saddr != ${p.mac} ${log}`,
        `ether saddr != ${p.mac} drop`,
        `arp saddr ether != ${p.mac} drop`,
        `arp saddr ip != ${p.ip} ${log}`,
        `arp saddr ip != ${p.ip} drop`,
        `ether type ip ip saddr != ${p.ip} ${log}`,
        `ether type ip ip saddr != ${p.ip} drop`,
        `ether type != { ip, arp } drop`,
      ],
    });
  });
  const dispatch =
    ports.length === 0
      ? []
      : [`iifname vmap { ${ports.map((p, i) => `${quote(p.hostVeth)} : jump ${names[i]!}`).join(', ')} }`];
  chains.push({
    name: 'prerouting',
    hook: 'type filter hook prerouting priority -300; policy accept;',
    rules: dispatch,
  });
  return { family: 'bridge', sets: [], chains };
}

/** What the networks with a policy here add to the stateful `inet` table. */
interface StatefulParts {
  sets: NftSet[];
  chains: NftChain[];
  /** Per network: its bridge and the prefix of its chains. */
  dispatch: { bridge: string; n: string }[];
  /** Bridges whose traffic the table sees (br_netfilter on). */
  bridges: string[];
  tunnelPort: number | undefined;
}

/**
 * The stateful table's hooks. Per packet, cheapest first:
 *  - raw (before conntrack): a VXLAN datagram of this host's data path is not tracked.
 *    This table is what turns conntrack on in the host's namespace; without the rule,
 *    every datagram would cost a lookup (and an entry per flow) beside the frame it
 *    carries, which is tracked and checked on the bridge after decapsulation (the
 *    tunnel resets the packet's conntrack state on both ends, so nothing is inherited);
 *  - raw: a frame on a policy bridge with neither end an isolated
 *    endpoint of this host is not tracked (`notrack`): no policy can decide it, so it
 *    pays no conntrack;
 *  - filter: an established, related or untracked packet is accepted by the first rule;
 *    only the first packet of a connection to or from an isolated endpoint is dispatched
 *    by bridge (one map lookup) to its network's chains.
 */
function statefulTable(out: StatefulParts): NftTable {
  const byBridge = (dir: 'iifname' | 'oifname', suffix: string, verdict = 'jump'): string =>
    `${dir} vmap { ${out.dispatch.map((d) => `${quote(d.bridge)} : ${verdict} ${d.n}_${suffix}`).join(', ')} }`;
  // The tunnel rule comes after the policy bridges' dispatch, which ends their frames'
  // raw processing (goto): a container's datagram to port 6784 of a host address, or
  // the host's to a container, stays tracked and checked like any other. Inbound, only
  // datagrams to this host (not VXLAN it routes for others); outbound, only what this
  // host sends (the output hook sees nothing else).
  const tunnel = (match: string): string[] =>
    out.tunnelPort === undefined ? [] : [`udp dport ${out.tunnelPort}${match} notrack`];
  const chains: NftChain[] = [
    ...out.chains,
    {
      name: 'raw_prerouting',
      hook: 'type filter hook prerouting priority raw; policy accept;',
      rules: [byBridge('iifname', 'raw', 'goto'), ...tunnel(' fib daddr type local')],
    },
    {
      name: 'raw_output',
      hook: 'type filter hook output priority raw; policy accept;',
      rules: [byBridge('oifname', 'raw', 'goto'), ...tunnel('')],
    },
    {
      name: 'forward',
      hook: 'type filter hook forward priority filter; policy accept;',
      rules: [established, byBridge('iifname', 'fwd')],
    },
    {
      name: 'input',
      hook: 'type filter hook input priority filter; policy accept;',
      rules: [established, byBridge('iifname', 'in')],
    },
    {
      name: 'output',
      hook: 'type filter hook output priority filter; policy accept;',
      rules: [established, byBridge('oifname', 'out')],
    },
  ];
  return { family: 'inet', sets: out.sets, chains };
}

/** One network's sets, chains and hook jumps, when a policy selects an endpoint here. */
function compileNetwork(
  input: CompileInput,
  bridge: CompileInput['bridges'][number],
  ports: readonly LocalPort[],
  policies: readonly Policy[],
  out: StatefulParts,
): void {
  const local = [...new Set(ports.filter((p) => p.network === bridge.network).map((p) => p.ip))];
  const ofNetwork = (): PolicyEndpoint[] => input.endpoints.filter((e) => e.network === bridge.network);
  const cached = input.cache?.store.network(bridge.network, input.cache.stamp, ofNetwork);
  const index = cached?.index ?? new EndpointIndex(ofNetwork());
  const localIps = new Set(local);
  const localEndpoints = index.endpoints.filter((e) => localIps.has(e.ip));
  // Only policies selecting an endpoint here can isolate anything here: the others'
  // rules could never match (enforcement is on the host of the isolated endpoint).
  const netPolicies = policies.filter(
    (p) => p.network === bridge.network && localEndpoints.some((e) => selectorMatches(p.selector, e.labels)),
  );
  if (netPolicies.length === 0) return;
  out.bridges.push(bridge.bridge);
  const n = `n${hex6(bridge.id)}`;
  out.dispatch.push({ bridge: bridge.bridge, n });
  out.sets.push({ name: `${n}_local`, interval: false, elements: local });
  const isolated = new Set<string>();
  const selSet = new Map<Policy, string>();
  const selSets: NftSet[] = [];
  netPolicies.forEach((p, k) => {
    const name = `${n}_p${k}_sel`;
    selSet.set(p, name);
    const elements = localEndpoints.filter((e) => selectorMatches(p.selector, e.labels)).map((e) => e.ip);
    for (const ip of elements) isolated.add(ip);
    selSets.push({ name, interval: false, elements });
  });
  // Isolated here in either direction (selected by any policy, audit ones included).
  out.sets.push({ name: `${n}_isolated`, interval: false, elements: local.filter((ip) => isolated.has(ip)) });
  out.sets.push(...selSets);
  const peerSet = peerSetNamer(n, index, cached?.peers ?? new Map<string, Range[]>(), out.sets);
  const ctx: DirectionContext = { input, bridge, n, netPolicies, peerSet, selSet };
  for (const direction of ['egress', 'ingress'] as PolicyDirection[])
    out.chains.push(...directionChains(ctx, direction));
  // Only between the network's own addresses: a frame to or from elsewhere may need
  // conntrack for NAT (published ports, masquerading, the Docker DNS redirect). A frame
  // with an isolated end leaves first, after one or two set lookups: that is every
  // packet of the flows policy decides, so they pay the least here.
  const a = bridge.addresses;
  const notrack =
    a === undefined
      ? []
      : [`ip daddr @${n}_isolated return`, `ip saddr @${n}_isolated return`, `ip saddr ${a} ip daddr ${a} notrack`];
  out.chains.push(
    { name: `${n}_raw`, rules: notrack },
    { name: `${n}_fwd`, rules: [`ip saddr @${n}_local jump ${n}_egress`, `ip daddr @${n}_local jump ${n}_ingress`] },
  );
  const toHost: string[] = [];
  if (bridge.resolver)
    toHost.push(`ip daddr ${bridge.resolver.ip} meta l4proto { udp, tcp } th dport ${bridge.resolver.port} accept`);
  toHost.push(`ip saddr @${n}_local jump ${n}_egress`);
  out.chains.push(
    { name: `${n}_in`, rules: toHost },
    { name: `${n}_out`, rules: [`ip daddr @${n}_local jump ${n}_ingress`] },
  );
}

/**
 * Peer sets by content: rules naming the same peers share one set (1,000 rules over
 * 50 apps make 50 sets, not 1,000), which keeps the script and the kernel's work small.
 * `resolved` keeps each list of peers' ranges (across compiles, while the endpoints stay
 * the same). The namer adds each new set to `sets`; undefined: the peers match nobody.
 */
function peerSetNamer(
  n: string,
  index: EndpointIndex,
  resolved: Map<string, Range[]>,
  sets: NftSet[],
): (peers: readonly PolicyPeer[]) => string | undefined {
  const peerSets = new Map<string, string | undefined>();
  const setsByElements = new Map<string, string>();
  return (peers) => {
    const key = JSON.stringify(peers);
    if (peerSets.has(key)) return peerSets.get(key);
    let ranges = resolved.get(key);
    if (ranges === undefined) {
      ranges = peerRanges(peers, index);
      resolved.set(key, ranges);
    }
    let name: string | undefined;
    if (ranges.length > 0) {
      const elements = ranges.map(formatRange);
      const byContent = elements.join(',');
      name = setsByElements.get(byContent);
      if (name === undefined) {
        name = `${n}_peers${setsByElements.size}`;
        setsByElements.set(byContent, name);
        sets.push({ name, interval: true, elements });
      }
    }
    peerSets.set(key, name);
    return name;
  };
}

interface DirectionContext {
  input: CompileInput;
  bridge: CompileInput['bridges'][number];
  n: string;
  netPolicies: readonly Policy[];
  peerSet: (peers: readonly PolicyPeer[]) => string | undefined;
  selSet: ReadonlyMap<Policy, string>;
}

/** The chain (and its audit chain) for one direction of one network. */
function directionChains(ctx: DirectionContext, direction: PolicyDirection): NftChain[] {
  const { input, bridge, n, peerSet, selSet } = ctx;
  const limit = logLimit(input);
  const self = direction === 'egress' ? 'saddr' : 'daddr';
  const other = direction === 'egress' ? 'daddr' : 'saddr';
  const d = direction === 'egress' ? 'e' : 'i';
  const isolating = ctx.netPolicies.filter((p) => p.types.includes(direction));
  const audit = (p: Policy): boolean => input.dryRun || p.mode === 'audit';
  const enforcing = isolating.filter((p) => !audit(p));
  const auditing = isolating.filter(audit);
  const chain = `${n}_${direction}`;
  const auditChain = `${n}_${direction}_audit`;
  const allowRules = (ps: Policy[], verdict: string): string[] => {
    const out: string[] = [];
    for (const p of ps) {
      const rules: PolicyRule[] = direction === 'egress' ? p.egress : p.ingress;
      rules.forEach((r) => {
        let peerMatch = '';
        if (r.peers !== undefined) {
          const setName = peerSet(r.peers);
          if (setName === undefined) return; // matches nobody
          peerMatch = ` ip ${other} @${setName}`;
        }
        const portMatches = r.ports === undefined ? [''] : r.ports.map((pp) => ' ' + portMatch(pp));
        for (const pm of portMatches) out.push(`ip ${self} @${selSet.get(p)}${peerMatch}${pm} ${verdict}`);
      });
    }
    return out;
  };
  const after = auditing.length > 0 ? `goto ${auditChain}` : 'return';
  const body: string[] = [...allowRules(enforcing, after)];
  for (const p of enforcing) {
    const prefix = quote(`wtp E ${d} ${hex6(bridge.id)} ${p.name}`);
    body.push(
      `ip ${self} @${selSet.get(p)} ${limit} log group ${input.logGroup} prefix ${prefix} drop`,
      `ip ${self} @${selSet.get(p)} drop`,
    );
  }
  if (auditing.length > 0) body.push(`goto ${auditChain}`);
  const chains: NftChain[] = [{ name: chain, rules: body }];
  if (auditing.length > 0) {
    const auditBody = allowRules(isolating, 'return');
    for (const p of auditing) {
      const prefix = quote(`wtp A ${d} ${hex6(bridge.id)} ${p.name}`);
      auditBody.push(`ip ${self} @${selSet.get(p)} ${limit} log group ${input.logGroup} prefix ${prefix} return`);
    }
    chains.push({ name: auditChain, rules: auditBody });
  }
  return chains;
}
