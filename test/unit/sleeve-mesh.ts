/**
 * Sleeves in one process over in-memory rings (test/unit/sleeve-rings.ts): hosts joined
 * by the edges given, routes computed as the router would (shortest paths, lowest index
 * on ties), one overlay network on every host.
 */
import { randomBytes } from 'node:crypto';
import { loadSealer } from '../../src/crypto/seal';
import { silentLogger } from '../../src/log';
import { ManualClock } from '../../src/net/clock';
import type { PeerName } from '../../src/net/peername';
import { SleeveDatapath, tapNameFor } from '../../src/datapath/sleeve/sleeve';
import type { OverlayNetwork, RouteTable } from '../../src/router/overlay';
import { MemoryLinks, MemoryUdpRing, MemoryUnderlay, type MemoryTapRing } from './sleeve-rings';

export const NETWORK: OverlayNetwork = { id: 0x42, name: 'blue', bridge: 'br-blue', mtu: 1376 };
export const PORT = 6783;

export interface MemHost {
  index: number;
  name: PeerName;
  ip: string;
  /** A container MAC living behind this host. */
  mac: Buffer;
  sleeve: SleeveDatapath;
  socket: MemoryUdpRing;
  links: MemoryLinks;
  pathEvents: [PeerName, boolean][];
  /** The TAP on NETWORK's bridge. */
  tap(): MemoryTapRing;
}

export interface Mesh {
  hosts: MemHost[];
  underlay: MemoryUnderlay;
  clock: ManualClock;
  /** Let every queued datagram and frame be handed over, hop after hop. */
  settle(): Promise<void>;
  close(): Promise<void>;
}

export interface MeshOptions {
  hosts: number;
  edges: [number, number][];
  /** Seal every edge with fresh keys. */
  sealed?: boolean;
  /** Route MTU every host reads towards its peers. */
  routeMtu?: number;
  gro?: boolean;
  gso?: boolean;
  /** kernelPeers[i]: peers host i's fast path carries (host indexes). */
  kernelPeers?: number[][];
}

/** Peer name of host i: 02:00:00:00:00:0(i+1). */
export function peerName(i: number): PeerName {
  return 0x020000000001 + i;
}

/** Hop distances from `root` over the edges. */
function distances(n: number, adj: number[][], root: number): number[] {
  const dist = new Array<number>(n).fill(Infinity);
  dist[root] = 0;
  const queue = [root];
  while (queue.length > 0) {
    const v = queue.shift()!;
    for (const w of adj[v]!) {
      if (dist[w] === Infinity) {
        dist[w] = dist[v]! + 1;
        queue.push(w);
      }
    }
  }
  return dist;
}

/** The routes of host `self`: next hop = lowest neighbour closer to dst; tree children by the same rule. */
function routesOf(self: number, n: number, adj: number[][]): RouteTable {
  const distFrom = Array.from({ length: n }, (_, r) => distances(n, adj, r));
  const parentIn = (root: number, v: number): number | undefined =>
    v === root
      ? undefined
      : [...adj[v]!].sort((a, b) => a - b).find((w) => distFrom[root]![w] === distFrom[root]![v]! - 1);
  const indexOf = (p: PeerName): number => p - peerName(0);
  return {
    routesVersion: 0, // the edges never change
    unicastNextHop(dst) {
      const d = indexOf(dst);
      if (d === self || !(d >= 0 && d < n) || distFrom[d]![self] === Infinity) return undefined;
      // Our next hop is our parent in dst's tree.
      return peerName(parentIn(d, self)!);
    },
    broadcastNextHops(src) {
      const s = indexOf(src);
      return adj[self]!.filter((w) => parentIn(s, w) === self).map(peerName);
    },
  };
}

export async function buildMesh(opts: MeshOptions): Promise<Mesh> {
  const n = opts.hosts;
  const adj: number[][] = Array.from({ length: n }, () => []);
  for (const [a, b] of opts.edges) {
    adj[a]!.push(b);
    adj[b]!.push(a);
  }
  const underlay = new MemoryUnderlay();
  const clock = new ManualClock();
  const sealer = loadSealer();
  const hosts: MemHost[] = [];
  for (let i = 0; i < n; i++) {
    const ip = `192.0.2.${i + 1}`;
    const socket = new MemoryUdpRing(underlay, ip, PORT, {
      ...(opts.gro === undefined ? {} : { gro: opts.gro }),
      ...(opts.gso === undefined ? {} : { gso: opts.gso }),
    });
    const links = new MemoryLinks(opts.routeMtu ?? 1500);
    const pathEvents: [PeerName, boolean][] = [];
    const sleeve = new SleeveDatapath({
      self: peerName(i),
      routes: routesOf(i, n, adj),
      events: { pathChanged: (peer, up) => pathEvents.push([peer, up]) },
      log: silentLogger,
      sealer,
      kernelPeers: new Set((opts.kernelPeers?.[i] ?? []).map(peerName)),
      socket,
      links,
      clock,
    });
    await sleeve.addNetwork(NETWORK);
    const mac = Buffer.from([0x02, 0xaa, 0, 0, 0, i + 1]);
    hosts.push({
      index: i,
      name: peerName(i),
      ip,
      mac,
      sleeve,
      socket,
      links,
      pathEvents,
      tap: () => links.tap(tapNameFor(NETWORK.id)),
    });
  }
  const settle = async (): Promise<void> => {
    for (let i = 0; i < 10_000; i++) {
      await new Promise((r) => setImmediate(r));
      if (!underlay.busy() && !hosts.some((h) => h.links.pending())) return;
    }
    throw new Error('in-memory mesh never settled');
  };
  await Promise.all(
    opts.edges.flatMap(([a, b]) => {
      const ab = randomBytes(32);
      const ba = randomBytes(32);
      const ha = hosts[a]!;
      const hb = hosts[b]!;
      return [
        ha.sleeve.addPeer(hb.name, hb.ip, PORT, opts.sealed === true ? { send: ab, recv: ba } : undefined),
        hb.sleeve.addPeer(ha.name, ha.ip, PORT, opts.sealed === true ? { send: ba, recv: ab } : undefined),
      ];
    }),
  );
  // Paths come up once heartbeats are answered.
  for (let i = 0; i < 100; i++) {
    await settle();
    const allUp = opts.edges.every(
      ([a, b]) =>
        hosts[a]!.sleeve.peerStatus(hosts[b]!.name)?.up === true &&
        hosts[b]!.sleeve.peerStatus(hosts[a]!.name)?.up === true,
    );
    if (allUp) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    hosts,
    underlay,
    clock,
    settle,
    async close() {
      for (const h of hosts) await h.sleeve.close();
    },
  };
}

/** An Ethernet frame behind a 10-byte offload block (all zero unless given). */
export function tapFrame(dst: Buffer, src: Buffer, payload: Buffer, offload = Buffer.alloc(10)): Buffer {
  const eth = Buffer.alloc(14);
  dst.copy(eth, 0);
  src.copy(eth, 6);
  eth.writeUInt16BE(0x0800, 12);
  return Buffer.concat([offload, eth, payload]);
}

export const BROADCAST_MAC = Buffer.from('ffffffffffff', 'hex');

/** A payload whose bytes say where they are (so a misplaced chunk shows). */
export function pattern(length: number, seed = 1): Buffer {
  const b = Buffer.alloc(length);
  for (let i = 0; i < length; i++) b[i] = (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return b;
}
