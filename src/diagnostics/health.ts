/**
 * The health matrix: every host's data-path view of every other host. Each host builds
 * its own row (a HostReport) once a second from its router and data path, keeps the
 * newest row of every other host, and passes rows on over the control connections (HEALTH
 * messages, src/router/health-codec.ts; to whom: src/router/health-relay.ts), so every
 * host holds the whole matrix. A row
 * not refreshed for STALE_AFTER_MS is shown as stale: its owner is silent or cut off.
 *
 * A row goes out at the first tick after any cell's state or the container list changed,
 * and otherwise every REFRESH_INTERVAL_MS: RTT and loss figures move every second, and
 * sending every row to every host each second made HEALTH grow with the square of the
 * mesh (docs/ARCHITECTURE.md, "Memory").
 *
 * Rows also carry the owner's containers (id, name, network, address, MAC), which is
 * how trace, flows and the status page name containers on other hosts without a store.
 */
import type { Logger } from '../log';
import type { Datapath } from '../router/overlay';
import type { EndpointStatus } from '../endpoint/types';
import type { Router } from '../router/router';
import { formatPeerName, type PeerName } from '../net/peername';
import {
  HealthDecodeError,
  MAX_HEALTH_ENDPOINTS,
  decodeHealthReport,
  encodeHealthReport,
  type HealthEndpoint,
  type HealthPeerView,
  type HostReport,
} from '../router/health-codec';
import { formatIpv4, parseIpv4 } from '../net/ipv4';
import { compareText } from '../text-order';

export const REPORT_INTERVAL_MS = 1000;
/** An unchanged row is sent again after this long: well inside STALE_AFTER_MS. */
export const REFRESH_INTERVAL_MS = 2000;
/** A row older than this is stale: five reports missed. */
export const STALE_AFTER_MS = 5000;
/** Rows of hosts silent this long are forgotten. */
const FORGET_AFTER_MS = 10 * 60_000;
/** Heartbeat loss is measured over this many report intervals. */
const LOSS_WINDOW = 10;

/** One peer as seen by one host (`status health --json`). */
export interface HealthCell {
  name: string;
  nickname: string;
  up: boolean;
  connected: boolean;
  datapath: 'sleeve' | 'fastdp';
  encrypted: boolean;
  pmtu: number | null;
  rttMs: number | null;
  /** Unanswered heartbeats over the last 10 s, 0..1; null without heartbeats. */
  loss: number | null;
  /** Why the path is not up; "" when up. */
  reason: string;
}

/** One host's row. */
export interface HealthRow {
  name: string;
  nickname: string;
  /** Milliseconds since this host received the row (0 for our own). */
  ageMs: number;
  stale: boolean;
  peers: HealthCell[];
}

/** GET /status/health: the matrix as this host holds it. */
export interface HealthStatus {
  self: string;
  staleAfterMs: number;
  rows: HealthRow[];
}

export interface HealthDeps {
  router: Pick<Router, 'name' | 'uid' | 'topology' | 'connectionStatus' | 'sendHealth' | 'setHealthSink'>;
  datapath: Datapath;
  nickname: string;
  /** This host's containers, with their network ids. */
  endpoints(): { endpoint: EndpointStatus; networkId: number }[];
  log: Logger;
}

interface StoredRow {
  report: HostReport;
  receivedAt: number;
}

/**
 * A row's state without the figures that move every second while paths work (RTT, time
 * since the last answer): two rows with the same state say the same thing about which
 * path works and why. A down peer's reason counts the seconds of silence, so a row with
 * a down peer goes out every tick, as every row did before.
 */
export function rowState(report: HostReport): string {
  const cells = report.peers.map(
    (v) =>
      `${v.peer}:${v.up ? 1 : 0}${v.connected ? 1 : 0}${v.encrypted ? 1 : 0}:${v.datapath}:${v.pmtu}:${v.lossPermille ?? '-'}:${v.up ? '' : v.reason}`,
  );
  const endpoints = report.endpoints.map((e) => `${e.id}/${e.name}/${e.networkId}/${e.ip}/${e.mac}`);
  return `${cells.join('|')}#${endpoints.join('|')}`;
}

export class HealthGossip {
  private readonly rows = new Map<PeerName, StoredRow>();
  private readonly lastUpAt = new Map<PeerName, number>();
  /** Per peer, cumulative (sent, answered) heartbeat counts at each of the last ticks. */
  private readonly lossSamples = new Map<PeerName, { sent: number; answered: number }[]>();
  private readonly timer: NodeJS.Timeout;
  private seq = 0;
  private malformed = 0;
  private own: HostReport;
  private ownBuiltAt = 0;
  private lastLossSampleAt = 0;
  /** What the last row sent said, less its RTT figures (rowState), and when it went. */
  private sentState: string | undefined;
  private sentAt = 0;

  constructor(private readonly deps: HealthDeps) {
    this.own = this.buildOwn(Date.now());
    deps.router.setHealthSink((from, payload) => this.receive(from, payload));
    this.timer = setInterval(() => this.tick(), REPORT_INTERVAL_MS);
    this.timer.unref();
  }

  /** Malformed HEALTH messages dropped (metrics). */
  get malformedCount(): number {
    return this.malformed;
  }

  close(): void {
    clearInterval(this.timer);
    this.deps.router.setHealthSink(undefined);
  }

  /** Build, keep and flood our own row. */
  tick(now = Date.now()): void {
    this.own = this.buildOwn(now);
    for (const [owner, row] of this.rows) if (now - row.receivedAt > FORGET_AFTER_MS) this.rows.delete(owner);
    const state = rowState(this.own);
    // Half an interval of slack: a tick that fires a little early still refreshes.
    if (state === this.sentState && now - this.sentAt < REFRESH_INTERVAL_MS - REPORT_INTERVAL_MS / 2) return;
    let payload: Buffer;
    try {
      payload = encodeHealthReport(this.own);
    } catch (err) {
      this.deps.log.warn('health report not sent', { error: (err as Error).message });
      return;
    }
    this.deps.router.sendHealth(payload, this.deps.router.name);
    this.sentState = state;
    this.sentAt = now;
  }

  /** A HEALTH body from a neighbour: keep it if newer, and pass it on to the others. */
  receive(from: PeerName, payload: Buffer, now = Date.now()): void {
    let report: HostReport;
    try {
      report = decodeHealthReport(payload);
    } catch (err) {
      if (!(err instanceof HealthDecodeError)) throw err;
      this.malformed++;
      this.deps.log.debug('dropping malformed health report', { from: formatPeerName(from), reason: err.reason });
      return;
    }
    if (report.owner === this.deps.router.name) return;
    const have = this.rows.get(report.owner);
    // A new incarnation (uid) starts its seq again; otherwise only a higher seq is news.
    if (have !== undefined && have.report.uid === report.uid && report.seq <= have.report.seq) return;
    this.rows.set(report.owner, { report, receivedAt: now });
    this.deps.router.sendHealth(payload, report.owner, from);
  }

  /** Our own row, rebuilt when older than 200 ms (the page and trace want now, not the last tick). */
  ownReport(now = Date.now()): HostReport {
    if (now - this.ownBuiltAt > 200) this.own = this.buildOwn(now);
    return this.own;
  }

  /** Every row held (ours first), with when it arrived. */
  reports(now = Date.now()): { report: HostReport; ageMs: number; stale: boolean }[] {
    const out = [{ report: this.ownReport(now), ageMs: 0, stale: false }];
    for (const row of this.rows.values()) {
      const ageMs = Math.max(0, now - row.receivedAt);
      out.push({ report: row.report, ageMs, stale: ageMs > STALE_AFTER_MS });
    }
    return out;
  }

  status(now = Date.now()): HealthStatus {
    const nick = this.nicknames();
    const rows = this.reports(now).map(({ report, ageMs, stale }) => ({
      name: formatPeerName(report.owner),
      nickname: report.nickname,
      ageMs,
      stale,
      peers: report.peers.map((v) => cellOf(v, nick.get(v.peer) ?? '')),
    }));
    rows.sort((a, b) =>
      a.name === formatPeerName(this.deps.router.name)
        ? -1
        : b.name === formatPeerName(this.deps.router.name)
          ? 1
          : compareText(a.name, b.name),
    );
    return { self: formatPeerName(this.deps.router.name), staleAfterMs: STALE_AFTER_MS, rows };
  }

  /** Nicknames of every peer we know of: topology, then rows. */
  nicknames(): Map<PeerName, string> {
    const m = new Map<PeerName, string>();
    for (const row of this.rows.values()) m.set(row.report.owner, row.report.nickname);
    for (const e of this.deps.router.topology.entries()) m.set(e.name, e.nickname);
    m.set(this.deps.router.name, this.deps.nickname);
    return m;
  }

  private buildOwn(now: number): HostReport {
    const { router, datapath } = this.deps;
    this.ownBuiltAt = now;
    // Loss is sampled once per report interval, however often the row is rebuilt.
    const sampleLoss = now - this.lastLossSampleAt >= REPORT_INTERVAL_MS * 0.9;
    if (sampleLoss) this.lastLossSampleAt = now;
    const self = router.name;
    const conns = router.connectionStatus();
    // Every peer we know of: topology, connections, and hosts whose rows we hold (a host
    // cut off drops out of the topology, but its row, and our view of it, stay).
    const peers = new Set<PeerName>();
    for (const e of router.topology.entries()) peers.add(e.name);
    for (const owner of this.rows.keys()) peers.add(owner);
    for (const p of this.lastUpAt.keys()) peers.add(p);
    const byName = new Map<string, (typeof conns)[number]>();
    for (const c of conns) if (c.peer !== '' && c.state !== 'failed') byName.set(c.peer, c);
    // Failed dials carry no peer name until a handshake succeeded: match them by the
    // addresses other hosts report for the peer.
    const failedByAddress = new Map<string, string>();
    for (const c of conns) if (c.state === 'failed' && c.info !== undefined) failedByAddress.set(c.address, c.info);
    const failedByPeer = new Map<PeerName, string>();
    for (const c of conns)
      if (c.state === 'failed' && c.peer !== '' && c.info !== undefined) failedByPeer.set(parsePeer(c.peer), c.info);
    for (const e of router.topology.entries()) {
      for (const edge of e.connections) {
        const info = failedByAddress.get(edge.address);
        if (info !== undefined && !failedByPeer.has(edge.peer)) failedByPeer.set(edge.peer, info);
      }
    }
    peers.delete(self);
    const views: HealthPeerView[] = [];
    for (const peer of [...peers].sort((a, b) => a - b)) {
      const name = formatPeerName(peer);
      const ps = datapath.peerStatus(peer);
      const conn = byName.get(name);
      const up = ps?.up ?? false;
      if (up) this.lastUpAt.set(peer, now);
      const lastAnswer =
        ps?.lastAnswerAt !== undefined && ps.lastAnswerAt > 0 ? ps.lastAnswerAt : this.lastUpAt.get(peer);
      const silentMs = lastAnswer === undefined ? undefined : Math.max(0, now - lastAnswer);
      const connected = ps !== undefined;
      let reason = '';
      if (!up) {
        reason =
          silentMs === undefined
            ? 'no heartbeat answer yet'
            : `no heartbeat answer for ${Math.round(silentMs / 1000)} s`;
        if (!connected) {
          const info = failedByPeer.get(peer);
          reason += info === undefined ? '; no control connection' : `; no control connection: ${info}`;
        }
      }
      views.push({
        peer,
        up,
        connected,
        datapath: ps === undefined ? 'sleeve' : (datapath.peerDatapath(peer) ?? 'sleeve'),
        encrypted: conn?.encrypted ?? false,
        pmtu: ps?.pmtu ?? 0,
        rttUs: up && ps?.rttMs !== undefined ? Math.min(0xfffffffe, Math.round(ps.rttMs * 1000)) : undefined,
        lossPermille: this.loss(peer, ps?.heartbeatsSent, ps?.heartbeatsAnswered, sampleLoss),
        silentMs: silentMs === undefined ? undefined : Math.min(0xfffffffe, silentMs),
        reason: truncateUtf8(reason, 255),
      });
    }
    for (const p of [...this.lossSamples.keys()]) if (!peers.has(p)) this.lossSamples.delete(p);
    const endpoints: HealthEndpoint[] = [];
    // The report carries at most MAX_HEALTH_ENDPOINTS containers; beyond that, names of
    // the rest are simply not known to other hosts.
    for (const { endpoint, networkId } of this.deps.endpoints().slice(0, MAX_HEALTH_ENDPOINTS)) {
      const ip = endpoint.address.split('/')[0]!;
      try {
        endpoints.push({
          id: truncateUtf8(endpoint.id, 255),
          name: truncateUtf8(endpoint.name ?? '', 255),
          network: endpoint.network,
          networkId,
          ip: parseIpv4(ip),
          mac: parseInt(endpoint.mac.replace(/:/g, ''), 16),
        });
      } catch {
        // An endpoint without a valid address or MAC has nothing to show.
      }
    }
    this.seq = (this.seq + 1) >>> 0;
    return {
      owner: self,
      nickname: truncateUtf8(this.deps.nickname, 255),
      uid: router.uid,
      seq: this.seq,
      peers: views,
      endpoints,
    };
  }

  /** Per mille of heartbeats unanswered over the window; undefined without any sent. */
  private loss(
    peer: PeerName,
    sent: number | undefined,
    answered: number | undefined,
    sample: boolean,
  ): number | undefined {
    if (sent === undefined || answered === undefined) {
      this.lossSamples.delete(peer);
      return undefined;
    }
    let samples = this.lossSamples.get(peer);
    if (samples === undefined || (samples.length > 0 && samples[samples.length - 1]!.sent > sent)) {
      samples = [];
      this.lossSamples.set(peer, samples);
      sample = true;
    }
    if (sample) samples.push({ sent, answered });
    if (samples.length > LOSS_WINDOW + 1) samples.shift();
    const first = samples[0]!;
    const dSent = sent - first.sent;
    if (dSent <= 0) return undefined;
    const dAnswered = Math.min(dSent, Math.max(0, answered - first.answered));
    return Math.round((1000 * (dSent - dAnswered)) / dSent);
  }
}

function parsePeer(text: string): PeerName {
  return parseInt(text.replace(/:/g, ''), 16);
}

export function cellOf(v: HealthPeerView, nickname: string): HealthCell {
  return {
    name: formatPeerName(v.peer),
    nickname,
    up: v.up,
    connected: v.connected,
    datapath: v.datapath,
    encrypted: v.encrypted,
    pmtu: v.pmtu === 0 ? null : v.pmtu,
    rttMs: v.rttUs === undefined ? null : v.rttUs / 1000,
    loss: v.lossPermille === undefined ? null : v.lossPermille / 1000,
    reason: v.reason,
  };
}

export function formatEndpointIp(e: HealthEndpoint): string {
  return formatIpv4(e.ip);
}

function truncateUtf8(s: string, max: number): string {
  if (Buffer.byteLength(s, 'utf8') <= max) return s;
  let out = s;
  while (Buffer.byteLength(out, 'utf8') > max) out = out.slice(0, -1);
  return out;
}
