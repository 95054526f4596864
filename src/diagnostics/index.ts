/**
 * Diagnostics: the health matrix, trace, and the mesh picture the status page draws, as
 * one component the daemon builds after the router and data path and stops before them.
 */
import type { Registry } from '../metrics/registry';
import { Gauge } from '../metrics/gauge';
import { counterFromTotals } from '../counter-from-totals';
import type { Logger } from '../log';
import type { Datapath } from '../router/overlay';
import type { EndpointStatus } from '../endpoint/types';
import type { Router } from '../router/router';
import { formatMac } from '../net/mac';
import { formatPeerName, type PeerName } from '../net/peername';
import { compareIpv4, formatIpv4 } from '../net/ipv4';
import { WeavetsError } from '../errors';
import { parseTraffic } from '../policy/evaluate';
import { HealthGossip, type HealthStatus } from './health';
import { FlowService, type FlowsStatus, type FlowEnd } from './flows';
import { TraceProber, runTrace, type TraceResult, type TraceVerdict, type TraceEnd } from './trace';
import { compareText } from '../text-order';

export type { HealthStatus, HealthRow, HealthCell } from './health';
export type { TraceResult, TraceHop, TraceEnd, TraceHost, TraceVerdict, TraceProbeResult } from './trace';

export interface MeshHost {
  name: string;
  nickname: string;
  self: boolean;
  /** "up": reachable over the overlay from this host; "down": not. */
  state: 'up' | 'down';
  /** Why it is down, from this host's view ("" when up). */
  reason: string;
  /** Its health row stopped arriving. */
  stale: boolean;
}

export interface MeshEdge {
  from: string;
  to: string;
  up: boolean;
  datapath: 'sleeve' | 'fastdp';
  encrypted: boolean;
  rttMs: number | null;
  reason: string;
}

/** No container id or namespace: this is served on the TCP status listener. */
export interface MeshContainer {
  name: string;
  address: string;
  host: string;
  hostNickname: string;
}

/** GET /status/mesh: what the status page draws. */
export interface MeshStatus {
  self: { name: string; nickname: string };
  time: string;
  hosts: MeshHost[];
  edges: MeshEdge[];
  networks: { name: string; containers: MeshContainer[] }[];
  health: HealthStatus;
  /** This host's counters towards each peer it has a data path to. */
  counters: {
    peer: string;
    nickname: string;
    framesIn: number;
    framesOut: number;
    bytesIn: number;
    bytesOut: number;
  }[];
  drops: Record<string, number>;
}

export interface DiagnosticsOptions {
  router: Router;
  datapath: Datapath;
  nickname: string;
  endpoints(): EndpointStatus[];
  networkIdOf(network: string): number | undefined;
  /** Name of a network this host carries, by id. */
  networkNameOf(id: number): string | undefined;
  /** DNS names to addresses (the DNS table); absent with DNS off. */
  dnsAddresses?(name: string): string[];
  /**
   * The policy evaluator (src/policy), for a new connection of `traffic` ("icmp",
   * "tcp/5432"); absent: every pair inside a network is allowed.
   */
  verdict?: (from: TraceEnd, to: TraceEnd, traffic: string) => TraceVerdict;
  /** Per-pair counters (built before the sleeve, which feeds them); undefined with --no-flows. */
  flows: FlowService | undefined;
  log: Logger;
}

export class Diagnostics {
  readonly health: HealthGossip;
  private readonly prober: TraceProber;

  constructor(private readonly opts: DiagnosticsOptions) {
    this.health = new HealthGossip({
      router: opts.router,
      datapath: opts.datapath,
      nickname: opts.nickname,
      endpoints: () =>
        opts.endpoints().flatMap((endpoint) => {
          const networkId = opts.networkIdOf(endpoint.network);
          return networkId === undefined ? [] : [{ endpoint, networkId }];
        }),
      log: opts.log,
    });
    this.prober = new TraceProber(opts.router.name, opts.datapath, opts.log);
  }

  async flows(): Promise<FlowsStatus> {
    const byMac = new Map<string, { end: FlowEnd; network: string }>();
    for (const { report } of this.health.reports()) {
      for (const e of report.endpoints) {
        byMac.set(`${e.networkId}/${e.mac}`, {
          network: e.network,
          end: {
            name: e.name,
            address: formatIpv4(e.ip),
            mac: formatMac(e.mac),
            host: report.nickname || formatPeerName(report.owner),
          },
        });
      }
    }
    const host = this.opts.nickname || formatPeerName(this.opts.router.name);
    if (this.opts.flows === undefined) return { enabled: false, windowSeconds: 60, host, flows: [] };
    return this.opts.flows.status(host, (net, mac) => {
      const known = byMac.get(`${net}/${mac}`);
      if (known !== undefined) return known;
      const network = this.opts.networkNameOf(net) ?? String(net);
      const group = Math.floor(mac / 0x10000000000) % 2 === 1;
      const name = mac === 0xffffffffffff ? '(broadcast)' : group ? '(multicast)' : '';
      return { network, end: { name, address: '', mac: formatMac(mac), host: '' } };
    });
  }

  healthStatus(): HealthStatus {
    return this.health.status();
  }

  trace(from: string, to: string, traffic = 'icmp'): Promise<TraceResult> {
    const { router, verdict } = this.opts;
    try {
      parseTraffic(traffic);
    } catch (err) {
      return Promise.reject(
        new WeavetsError('EWEAVETS_BAD_REQUEST', `port: ${(err as Error).message}`, { cause: err }),
      );
    }
    return runTrace(
      {
        self: router.name,
        entries: router.topology.entries(),
        reports: this.health.reports(),
        dnsAddresses: (name) => this.opts.dnsAddresses?.(name) ?? [],
        nicknames: this.health.nicknames(),
        ...(verdict ? { verdict: (f: TraceEnd, t: TraceEnd) => verdict(f, t, traffic) } : {}),
      },
      this.prober,
      from,
      to,
    );
  }

  mesh(): MeshStatus {
    const { router, datapath } = this.opts;
    const self = router.name;
    const nick = this.health.nicknames();
    const health = this.health.status();
    const reports = this.health.reports();
    const reachable = new Set(
      router
        .peerStatus()
        .filter((p) => p.reachable)
        .map((p) => p.name),
    );
    const own = this.health.ownReport();
    const ownView = new Map(own.peers.map((v) => [v.peer, v] as const));
    const names = new Set<PeerName>([self, ...nick.keys(), ...reports.map((r) => r.report.owner)]);
    const stale = new Map(reports.map((r) => [r.report.owner, r.stale] as const));
    const hosts: MeshHost[] = [...names]
      .sort((a, b) => a - b)
      .map((p) => {
        const name = formatPeerName(p);
        const up = p === self || reachable.has(name);
        const v = ownView.get(p);
        return {
          name,
          nickname: nick.get(p) ?? '',
          self: p === self,
          state: up ? 'up' : 'down',
          reason: up ? '' : (v?.reason ?? 'not reachable over the overlay'),
          stale: stale.get(p) ?? p !== self,
        };
      });
    const edges = meshEdges(reports, self, hosts);
    const networks = meshNetworks(reports);
    const counters: MeshStatus['counters'] = [];
    for (const v of own.peers) {
      const s = datapath.peerStatus(v.peer);
      if (s === undefined) continue;
      counters.push({
        peer: formatPeerName(v.peer),
        nickname: nick.get(v.peer) ?? '',
        framesIn: s.framesIn,
        framesOut: s.framesOut,
        bytesIn: s.bytesIn,
        bytesOut: s.bytesOut,
      });
    }
    return {
      self: { name: formatPeerName(self), nickname: this.opts.nickname },
      time: new Date().toISOString(),
      hosts,
      edges,
      networks,
      health,
      counters,
      drops: Object.fromEntries(datapath.drops()),
    };
  }

  /** weavets_peer_rtt_seconds and weavets_peer_up: this host's view of each peer. */
  registerMetrics(registry: Registry): void {
    const labelNames = ['peer', 'nickname'] as const;
    const health = this.health;
    new Gauge({
      name: 'weavets_peer_up',
      help: 'Whether the data path to a peer carries heartbeats both ways (1) or not (0), as this host sees it.',
      labelNames,
      registry,
      collect() {
        this.reset();
        const nick = health.nicknames();
        for (const v of health.ownReport().peers)
          this.set({ peer: formatPeerName(v.peer), nickname: nick.get(v.peer) ?? '' }, v.up ? 1 : 0);
      },
    });
    new Gauge({
      name: 'weavets_peer_rtt_seconds',
      help: 'Heartbeat round-trip time to a peer on its current data path, seconds (peers whose path is up).',
      labelNames,
      registry,
      collect() {
        this.reset();
        const nick = health.nicknames();
        for (const v of health.ownReport().peers) {
          if (v.rttUs !== undefined)
            this.set({ peer: formatPeerName(v.peer), nickname: nick.get(v.peer) ?? '' }, v.rttUs / 1e6);
        }
      },
    });
    const prober = this.prober;
    counterFromTotals({
      name: 'weavets_diagnostics_dropped_total',
      help: 'Malformed health reports and trace probe frames dropped, by kind.',
      labelNames: ['kind'],
      registry,
      read(emit) {
        emit({ kind: 'health_report' }, health.malformedCount);
        emit({ kind: 'trace_probe' }, prober.malformedCount);
      },
    });
  }

  async close(): Promise<void> {
    this.health.close();
    this.prober.close();
    await this.opts.flows?.close();
  }
}

type HealthReports = ReturnType<HealthGossip['reports']>;

/**
 * One edge per pair that either side reports connected or up: our own view first, then a
 * fresh row, then a stale one; a host that is down takes its edges down with it.
 */
function meshEdges(reports: HealthReports, self: PeerName, hosts: readonly MeshHost[]): MeshEdge[] {
  const edges = new Map<string, MeshEdge>();
  // Which view of a pair to show: ours first, then a fresh row, then a stale one.
  const rank = new Map<string, number>();
  for (const { report, stale: rowStale } of reports) {
    const score = report.owner === self ? 2 : rowStale ? 0 : 1;
    for (const v of report.peers) {
      if (!v.connected && !v.up) continue;
      const [a, b] = report.owner < v.peer ? [report.owner, v.peer] : [v.peer, report.owner];
      const key = `${a}-${b}`;
      if ((rank.get(key) ?? -1) >= score) continue;
      rank.set(key, score);
      edges.set(key, {
        from: formatPeerName(a),
        to: formatPeerName(b),
        up: v.up && !rowStale,
        datapath: v.datapath,
        encrypted: v.encrypted,
        rttMs: v.rttUs === undefined ? null : v.rttUs / 1000,
        reason: rowStale ? `report from ${report.nickname || formatPeerName(report.owner)} is stale` : v.reason,
      });
    }
  }
  // A host this host cannot reach takes its edges down with it, whatever older rows said.
  const downHosts = new Map(
    hosts.filter((h) => h.state === 'down').map((h) => [h.name, h.nickname || h.name] as const),
  );
  for (const e of edges.values()) {
    const gone = downHosts.get(e.from) ?? downHosts.get(e.to);
    if (gone !== undefined && e.up) {
      e.up = false;
      e.reason = `${gone} is down`;
    }
  }
  return [...edges.values()];
}

/** The containers every report names, by network, networks and addresses in order. */
function meshNetworks(reports: HealthReports): MeshStatus['networks'] {
  const networks = new Map<string, MeshContainer[]>();
  for (const { report } of reports) {
    for (const e of report.endpoints) {
      const list = networks.get(e.network) ?? [];
      list.push({
        name: e.name,
        address: formatIpv4(e.ip),
        host: formatPeerName(report.owner),
        hostNickname: report.nickname,
      });
      networks.set(e.network, list);
    }
  }
  return [...networks.entries()]
    .sort(([a], [b]) => compareText(a, b))
    .map(([name, containers]) => ({
      name,
      containers: containers.sort((a, b) => compareIpv4(a.address, b.address)),
    }));
}
