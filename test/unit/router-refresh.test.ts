/**
 * The router's periodic topology refresh: a repair for what a closing connection lost
 * (every change is flooded when it happens), sent to a few neighbours drawn at random
 * rather than to all, because at 25 hosts decoding every neighbour's whole topology was
 * most of what an idle daemon did. Five real routers on loopback TCP, full mesh, with a
 * short refresh interval.
 */
import { randomBytes } from 'node:crypto';
import { freePort } from '../free-port';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { Router } from '../../src/router/router';
import { PeerConnection } from '../../src/router/connection';
import { MessageType } from '../../src/router/control-codec';
import { Topology } from '../../src/router/topology';
import { randomPeerName, type PeerName } from '../../src/net/peername';
import { loadSealer } from '../../src/crypto/seal';
import { silentLogger } from '../../src/log';

const REFRESH_MS = 150;

interface Host {
  name: PeerName;
  port: number;
  topology: Topology;
  router: Router;
}

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function host(nickname: string): Promise<Host> {
  const name = randomPeerName(randomBytes);
  const port = await freePort();
  const topology = new Topology({ name, nickname });
  const router = new Router({
    bindAddress: '127.0.0.1',
    port,
    log: silentLogger,
    security: { password: undefined, sealer: loadSealer(), trusts: () => false },
    topology,
    gossipRefreshMs: REFRESH_MS,
  });
  await router.listen();
  cleanups.push(() => router.stop());
  return { name, port, topology, router };
}

/** Five routers, each connected to every other; resolves once every one has four connections. */
async function fullMesh(): Promise<Host[]> {
  const hosts: Host[] = [];
  for (const n of ['a', 'b', 'c', 'd', 'e']) hosts.push(await host(n));
  for (const [i, h] of hosts.entries()) h.router.connect(hosts.slice(i + 1).map((o) => `127.0.0.1:${o.port}`));
  await vi.waitFor(
    () => {
      for (const h of hosts) expect(h.router.storeNeighbours()).toHaveLength(4);
    },
    { timeout: 10_000, interval: 50 },
  );
  return hosts;
}

describe('periodic gossip refresh', () => {
  it('goes to three of four neighbours per period, not to all', async () => {
    const hosts = await fullMesh();
    // Let the floods of the mesh forming end, then count GOSSIP sends against the
    // refreshes that ran (counted, not timed: a loaded machine fires timers late).
    await new Promise((r) => setTimeout(r, 3 * REFRESH_MS));
    // Spies that call through: the connections keep working while they count.
    const refreshes = vi.spyOn(Router.prototype as unknown as { refreshGossip(): void }, 'refreshGossip');
    const spy = vi.spyOn(PeerConnection.prototype, 'send');
    const periods = 8;
    await vi.waitFor(() => expect(refreshes.mock.calls.length).toBeGreaterThanOrEqual(hosts.length * periods), {
      timeout: 30 * periods * REFRESH_MS,
      interval: 10,
    });
    // Both spies stop counting here, together.
    const ran = refreshes.mock.calls.length;
    const sent = spy.mock.calls.map(([msg], i) => ({ msg, conn: spy.mock.contexts[i] as PeerConnection }));
    vi.restoreAllMocks();
    const sends = new Map<PeerConnection, number>();
    for (const { msg, conn } of sent) {
      if (msg.type === MessageType.Gossip) sends.set(conn, (sends.get(conn) ?? 0) + 1);
    }
    const total = [...sends.values()].reduce((a, b) => a + b, 0);
    // Nothing changes in a settled mesh, so every GOSSIP was a refresh's: three each.
    expect(total).toBe(3 * ran);
    // Drawn at random: over eight periods every connection was picked at least once.
    expect(sends.size).toBe(hosts.length * 4);
  });

  it('repairs an entry one router holds and the others missed', async () => {
    const hosts = await fullMesh();
    // An entry that reaches a's topology without a flood (as if the connection that
    // carried it closed before a relayed it): only the refresh can spread it.
    const ghost = randomPeerName(randomBytes);
    expect(
      hosts[0]!.topology.merge([{ name: ghost, nickname: 'ghost', uid: 7n, version: 1, connections: [] }]),
    ).toHaveLength(1);
    expect(hosts[1]!.topology.get(ghost)).toBeUndefined();
    await vi.waitFor(
      () => {
        for (const h of hosts) expect(h.topology.get(ghost)?.nickname).toBe('ghost');
      },
      { timeout: 20 * REFRESH_MS, interval: 20 },
    );
  });
});
