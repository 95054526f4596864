/**
 * The mesh pieces built in the daemon's order (src/daemon/index.ts): the routes first,
 * the data path on them reporting to a relay, then the router handed that data path and
 * the store gossip when it is constructed. Two such hosts: real routers on loopback TCP,
 * real sleeves on an in-memory underlay (test/unit/sleeve-rings.ts). What must hold is
 * what a user sees: the peers connect, the data path comes up and the routes use it, and
 * store messages reach the store.
 */
import { randomBytes } from 'node:crypto';
import { freePort } from '../free-port';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Router, type StoreGossipSink } from '../../src/router/router';
import { Topology } from '../../src/router/topology';
import { PathEventRelay } from '../../src/router/path-events';
import { SleeveDatapath } from '../../src/datapath/sleeve/sleeve';
import { formatPeerName, randomPeerName, type PeerName } from '../../src/net/peername';
import { loadSealer } from '../../src/crypto/seal';
import { silentLogger } from '../../src/log';
import { ManualClock } from '../../src/net/clock';
import { MemoryLinks, MemoryUdpRing, MemoryUnderlay } from './sleeve-rings';

/** What the store side of the control connections heard. */
class StoreEvents implements StoreGossipSink {
  readonly connected: string[] = [];
  readonly disconnected: string[] = [];
  readonly received: { from: string; payload: string }[] = [];
  topologyChanges = 0;
  peerConnected(peer: string): void {
    this.connected.push(peer);
  }
  peerDisconnected(peer: string): void {
    this.disconnected.push(peer);
  }
  receive(from: string, payload: Buffer): void {
    this.received.push({ from, payload: payload.toString('hex') });
  }
  topologyChanged(): void {
    this.topologyChanges++;
  }
}

interface Host {
  name: PeerName;
  port: number;
  topology: Topology;
  sleeve: SleeveDatapath;
  router: Router;
  store: StoreEvents;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** One host, in the daemon's order: routes, relay, data path, router. */
async function host(underlay: MemoryUnderlay, clock: ManualClock, nickname: string): Promise<Host> {
  const name = randomPeerName(randomBytes);
  const port = await freePort();
  const topology = new Topology({ name, nickname });
  const pathEvents = new PathEventRelay();
  const sealer = loadSealer();
  const sleeve = new SleeveDatapath({
    self: name,
    routes: topology,
    events: pathEvents,
    log: silentLogger,
    sealer,
    socket: new MemoryUdpRing(underlay, '127.0.0.1', port),
    links: new MemoryLinks(),
    clock,
  });
  cleanups.push(() => sleeve.close());
  const store = new StoreEvents();
  const router = new Router({
    bindAddress: '127.0.0.1',
    port,
    log: silentLogger,
    security: { password: undefined, sealer, trusts: () => false },
    topology,
    datapath: { path: sleeve, events: pathEvents },
    storeGossip: store,
  });
  await router.listen();
  cleanups.push(() => router.stop());
  return { name, port, topology, sleeve, router, store };
}

describe('routes, data path and router built in that order', () => {
  it('connect, bring the data path up, route over it, and carry store messages', async () => {
    const underlay = new MemoryUnderlay();
    const clock = new ManualClock();
    const a = await host(underlay, clock, 'a');
    const b = await host(underlay, clock, 'b');
    expect(a.router.name).toBe(a.name);
    expect(a.router.uid).toBe(a.topology.selfEntry.uid);

    a.router.connect([`127.0.0.1:${b.port}`]);

    // The router handed the peer to the data path, the sleeve's heartbeats were answered,
    // its "up" came back through the relay, and both ends now gossip an established edge:
    // only then does the topology route to the peer.
    await vi.waitFor(
      () => {
        expect(a.sleeve.peerStatus(b.name)?.up).toBe(true);
        expect(a.topology.unicastNextHop(b.name)).toBe(b.name);
        expect(b.topology.unicastNextHop(a.name)).toBe(a.name);
      },
      { timeout: 10_000, interval: 50 },
    );
    const seenFromA = a.router.peerStatus().find((p) => p.name === formatPeerName(b.name));
    expect(seenFromA).toMatchObject({ reachable: true, via: formatPeerName(b.name), nickname: 'b' });
    expect(seenFromA!.connections.map((c) => c.name)).toEqual([formatPeerName(a.name)]);

    // The store gossip given at construction hears the connection and the peer's messages.
    expect(a.store.connected).toEqual([formatPeerName(b.name)]);
    expect(b.store.connected).toEqual([formatPeerName(a.name)]);
    expect(a.store.topologyChanges).toBeGreaterThan(0);
    expect(b.router.sendStore(formatPeerName(a.name), Buffer.from('0102', 'hex'))).toBe(true);
    await vi.waitFor(() => expect(a.store.received).toEqual([{ from: formatPeerName(b.name), payload: '0102' }]), {
      timeout: 5_000,
      interval: 20,
    });

    // A peer that leaves is taken off the data path and told to the store.
    await b.router.stop();
    await vi.waitFor(() => expect(a.store.disconnected).toEqual([formatPeerName(b.name)]), {
      timeout: 5_000,
      interval: 20,
    });
    expect(a.sleeve.peerStatus(b.name)).toBeUndefined();
    expect(a.topology.unicastNextHop(b.name)).toBeUndefined();
  });

  it('refuses nothing when the relay has no router yet, and stops telling a stopped router', async () => {
    const relay = new PathEventRelay();
    const name = randomPeerName(randomBytes);
    expect(() => relay.pathChanged(name, true)).not.toThrow();
    const heard: boolean[] = [];
    const stop = relay.subscribe({ pathChanged: (_, up) => heard.push(up) });
    relay.pathChanged(name, true);
    stop();
    relay.pathChanged(name, false);
    expect(heard).toEqual([true]);
  });
});
