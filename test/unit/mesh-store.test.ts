/**
 * The mesh store between several instances in one process: a small in-memory network
 * carries their STORE messages (FIFO per link, random delays across links, links that can
 * be cut), standing in for the router's control connections only. Everything else is the
 * real store and, for allocation, the real BlockAllocator.
 */
import { afterEach, describe, expect, it } from 'vitest';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { MeshStore, type MeshTransport } from '../../src/store/mesh';
import { createIfAbsent, type WatchEvent } from '../../src/store/types';
import { BlockAllocator } from '../../src/ipam/allocator';
import { contains, parseCidr, formatIpv4 } from '../../src/net/ipv4';
import { NetworkCatalog } from '../../src/endpoint/network-catalog';
import { silentLogger } from '../../src/log';

const NAMES = ['02:00:00:00:00:01', '02:00:00:00:00:02', '02:00:00:00:00:03', '02:00:00:00:00:04'];

class Net {
  readonly stores = new Map<string, MeshStore>();
  private readonly up = new Set<string>();
  private readonly queues = new Map<string, Buffer[]>();
  private readonly pumping = new Set<string>();
  readonly launchPeer = new Map<string, string>();

  constructor(readonly dir: string) {}

  private static link(a: string, b: string): string {
    return a < b ? `${a}|${b}` : `${b}|${a}`;
  }

  transport(self: string): MeshTransport {
    return {
      neighbours: () => [...this.stores.keys()].filter((p) => p !== self && this.up.has(Net.link(self, p))),
      send: (peer, payload) => {
        if (!this.up.has(Net.link(self, peer))) return false;
        const q = `${self}>${peer}`;
        if (!this.queues.has(q)) this.queues.set(q, []);
        this.queues.get(q)!.push(payload);
        this.pump(self, peer);
        return true;
      },
      reachable: () => this.reachable(self),
      // A store given a launch peer waits for a link to it, as the daemon does.
      targetsConnected: () => {
        const peer = this.launchPeer.get(self);
        return peer === undefined || this.up.has(Net.link(self, peer));
      },
    };
  }

  private pump(from: string, to: string): void {
    const q = `${from}>${to}`;
    if (this.pumping.has(q)) return;
    this.pumping.add(q);
    setTimeout(() => {
      this.pumping.delete(q);
      const payload = this.queues.get(q)?.shift();
      if (payload === undefined) return;
      if (this.up.has(Net.link(from, to))) this.stores.get(to)?.receive(from, payload);
      if ((this.queues.get(q)?.length ?? 0) > 0) this.pump(from, to);
    }, Math.random() * 3);
  }

  reachable(self: string): Set<string> {
    const seen = new Set([self]);
    const queue = [self];
    while (queue.length > 0) {
      const at = queue.shift()!;
      for (const p of this.stores.keys()) {
        if (!seen.has(p) && this.up.has(Net.link(at, p))) {
          seen.add(p);
          queue.push(p);
        }
      }
    }
    seen.delete(self);
    return seen;
  }

  async open(name: string, graceMs = 60_000): Promise<MeshStore> {
    const s = await MeshStore.open({
      file: path.join(this.dir, `${name.replace(/:/g, '')}.json`),
      self: name,
      graceMs,
      log: silentLogger,
      claimTimeoutMs: 5000,
    });
    this.stores.set(name, s);
    s.attach(this.transport(name));
    return s;
  }

  connect(a: string, b: string): void {
    const l = Net.link(a, b);
    if (this.up.has(l)) return;
    this.up.add(l);
    this.queues.delete(`${a}>${b}`);
    this.queues.delete(`${b}>${a}`);
    // The router publishes the new edge (topology) before it hands the connection over.
    for (const s of this.stores.values()) s.topologyChanged();
    this.stores.get(a)?.peerConnected(b);
    this.stores.get(b)?.peerConnected(a);
  }

  cut(a: string, b: string): void {
    if (!this.up.delete(Net.link(a, b))) return;
    this.stores.get(a)?.peerDisconnected(b);
    this.stores.get(b)?.peerDisconnected(a);
    for (const s of this.stores.values()) s.topologyChanged();
  }

  fullMesh(names: string[]): void {
    for (const a of names) for (const b of names) if (a < b) this.connect(a, b);
  }

  async close(): Promise<void> {
    for (const s of this.stores.values()) await s.close();
    this.stores.clear();
  }
}

async function until(cond: () => boolean | Promise<boolean>, what: string, timeoutMs = 5000): Promise<number> {
  const t0 = Date.now();
  for (;;) {
    if (await cond()) return Date.now() - t0;
    if (Date.now() - t0 > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

let net: Net | undefined;
afterEach(async () => {
  await net?.close();
  if (net) fs.rmSync(net.dir, { recursive: true, force: true });
  net = undefined;
});

async function cluster(n: number, graceMs?: number): Promise<{ net: Net; stores: MeshStore[] }> {
  net = new Net(fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-store-')));
  const stores: MeshStore[] = [];
  for (const name of NAMES.slice(0, n)) stores.push(await net.open(name, graceMs));
  net.fullMesh(NAMES.slice(0, n));
  return { net, stores };
}

const value = async (s: MeshStore, key: string): Promise<string | undefined> => (await s.get(key))?.value;

describe('mesh store', () => {
  it("a host launched towards a peer claims nothing before it reached it: the peer's holder wins", async () => {
    const { net: n, stores } = await cluster(1);
    await createIfAbsent(stores[0]!, 'ipam/blocks/weavets/0', '{"owner":"a"}');
    n.launchPeer.set(NAMES[1]!, NAMES[0]!);
    const late = await n.open(NAMES[1]!);
    const claim = createIfAbsent(late, 'ipam/blocks/weavets/0', '{"owner":"b"}');
    await new Promise((r) => setTimeout(r, 300));
    n.connect(NAMES[0]!, NAMES[1]!);
    expect(await claim).toBe(false);
    expect(await value(late, 'ipam/blocks/weavets/0')).toBe('{"owner":"a"}');
    expect(late.conflicts()).toEqual([]);
    expect(stores[0]!.conflicts()).toEqual([]);
  });

  it('replicates puts and deletes to every store, and their watches see them', async () => {
    const { stores } = await cluster(3);
    const seen: WatchEvent[] = [];
    let reset = -1;
    stores[2]!.watch('dns/', { onReset: (e) => (reset = e.length), onEvents: (ev) => seen.push(...ev) });
    await stores[0]!.put('dns/a/web/0a000001', '{"name":"web","ip":"10.0.0.1"}');
    await until(async () => (await value(stores[2]!, 'dns/a/web/0a000001')) !== undefined, 'the record on store 3');
    expect(reset).toBe(0);
    expect(seen).toEqual([expect.objectContaining({ type: 'put', key: 'dns/a/web/0a000001' })]);
    await stores[0]!.delete('dns/a/web/0a000001');
    await until(async () => (await value(stores[1]!, 'dns/a/web/0a000001')) === undefined, 'the delete on store 2');
    await until(() => seen.some((e) => e.type === 'delete'), 'the delete event on store 3');
  });

  it('compare-and-create of one key from four stores at once: exactly one wins, every time', async () => {
    const { stores } = await cluster(4);
    for (let round = 0; round < 40; round++) {
      const key = `ipam/blocks/weavets/${round}`;
      const results = await Promise.all(
        stores.map(async (s, i) => {
          await new Promise((r) => setTimeout(r, Math.random() * 4));
          return createIfAbsent(s, key, `{"owner":"${NAMES[i]}"}`);
        }),
      );
      expect(results.filter(Boolean)).toHaveLength(1);
      const winner = NAMES[results.indexOf(true)]!;
      await until(async () => {
        for (const s of stores) if ((await value(s, key)) !== `{"owner":"${winner}"}`) return false;
        return true;
      }, 'every store showing the winner');
      for (const s of stores) expect(s.conflicts()).toEqual([]);
    }
  });

  it('four allocators, a /23 of /26 blocks, 60 concurrent allocations: no duplicate, no failure (10 repetitions)', async () => {
    for (let rep = 0; rep < 10; rep++) {
      const { net: n, stores } = await cluster(4);
      const range = parseCidr('10.40.0.0/23');
      const allocators = await Promise.all(
        stores.map((store, i) =>
          BlockAllocator.open({
            store,
            self: NAMES[i]!,
            nickname: `h${i}`,
            range,
            blockPrefix: 26,
            blockSearch: 'share',
            share: () => ({ rank: i, of: 4 }),
            log: silentLogger,
          }),
        ),
      );
      const got = await Promise.all(
        Array.from({ length: 60 }, (_, k) =>
          allocators[k % 4]!.allocate({ id: `c${rep}-${k}`, ifname: 'eth0', network: 'weavets' }),
        ),
      );
      const ips = got.map((a) => formatIpv4(a.ip));
      expect(new Set(ips).size).toBe(60);
      // Every store ends with the same 60 addresses and blocks, each block with one owner.
      await until(async () => {
        for (const s of stores) if ((await s.list('ipam/addrs/')).entries.length !== 60) return false;
        return true;
      }, 'every store listing 60 addresses');
      const blocks = await Promise.all(
        stores.map(async (s) => (await s.list('ipam/blocks/')).entries.map((e) => `${e.key}=${e.value}`)),
      );
      for (const b of blocks) expect(b).toEqual(blocks[0]);
      for (const s of stores) expect(s.conflicts()).toEqual([]);
      await n.close();
      fs.rmSync(n.dir, { recursive: true, force: true });
      net = undefined;
    }
  }, 60_000);

  it('partition: both sides claim a key, the heal reports the conflict on every store; giving one up resolves it', async () => {
    const { net: n, stores } = await cluster(4);
    for (const a of NAMES.slice(0, 2)) for (const b of NAMES.slice(2)) n.cut(a, b);
    const left = await createIfAbsent(stores[0]!, 'ipam/blocks/weavets/x', '{"owner":"left"}');
    const right = await createIfAbsent(stores[3]!, 'ipam/blocks/weavets/x', '{"owner":"right"}');
    expect([left, right]).toEqual([true, true]); // each side alone: the claim is confirmed there
    for (const a of NAMES.slice(0, 2)) for (const b of NAMES.slice(2)) n.connect(a, b);
    const ms = await until(() => stores.every((s) => s.conflicts().length === 1), 'the conflict on every store');
    for (const s of stores)
      expect(s.conflicts()).toEqual([{ key: 'ipam/blocks/weavets/x', holders: [NAMES[0], NAMES[3]] }]);
    // Every store shows the same holder meanwhile (the lowest name).
    for (const s of stores) expect(await value(s, 'ipam/blocks/weavets/x')).toBe('{"owner":"left"}');
    expect(ms).toBeLessThan(5000);
    await stores[3]!.delete('ipam/blocks/weavets/x');
    await until(() => stores.every((s) => s.conflicts().length === 0), 'the conflict resolved everywhere');
    for (const s of stores) expect(await value(s, 'ipam/blocks/weavets/x')).toBe('{"owner":"left"}');
  });

  it('network create and a default-network block claim inside its subnet on two sides of a partition: both commit; after the heal no new address comes from that block', async () => {
    // What the mesh store cannot arbitrate (docs/ARCHITECTURE.md, "Networks and addresses"):
    // conditions other than compare-and-create are checked on each host's own view.
    const { net: n, stores } = await cluster(2);
    const [a, b] = stores as [MeshStore, MeshStore];
    const range = parseCidr('10.32.0.0/12');
    const catalogA = await NetworkCatalog.open({ store: a, range, blockPrefix: 26, log: silentLogger });
    await until(async () => (await b.get('networks/by-name/weavets')) !== undefined, 'the default network on b');
    const catalogB = await NetworkCatalog.open({ store: b, range, blockPrefix: 26, log: silentLogger });
    try {
      const allocB = await BlockAllocator.open({
        store: b,
        self: NAMES[1]!,
        nickname: 'b',
        range,
        blockSearch: 'lowest',
        log: silentLogger,
      });
      await allocB.useSubnets(catalogB);
      n.cut(NAMES[0]!, NAMES[1]!);
      const red = await catalogA.create({ name: 'red', subnet: '10.32.0.0/24' });
      const first = await allocB.allocate({ id: 'c1', ifname: 'eth0', network: 'weavets' });
      expect(formatIpv4(first.ip)).toBe('10.32.0.1');
      n.connect(NAMES[0]!, NAMES[1]!);
      await until(() => catalogB.get('red') !== undefined, 'red on b');
      expect(catalogB.get('red')!.subnet).toBe(red.subnet);
      // The block and c1's address stay (until released); new addresses come from elsewhere.
      expect(await a.get('ipam/blocks/0a200000')).toBeDefined();
      const next = await allocB.allocate({ id: 'c2', ifname: 'eth0', network: 'weavets' });
      expect(contains(parseCidr(red.subnet), next.ip)).toBe(false);
    } finally {
      await catalogB.close();
      await catalogA.close();
    }
  });

  it("an unreachable store's entries go after the grace period and come back with it", async () => {
    const { net: n, stores } = await cluster(3, 400);
    await stores[2]!.put('dns/c/db/0a000003', '{"name":"db","ip":"10.0.0.3"}');
    await until(async () => (await value(stores[0]!, 'dns/c/db/0a000003')) !== undefined, 'the record replicated');
    n.cut(NAMES[0]!, NAMES[2]!);
    n.cut(NAMES[1]!, NAMES[2]!);
    await new Promise((r) => setTimeout(r, 200));
    expect(await value(stores[0]!, 'dns/c/db/0a000003')).toBeDefined(); // within the grace period: kept
    await until(
      async () => (await value(stores[0]!, 'dns/c/db/0a000003')) === undefined,
      'the record dropped after the grace period',
      3000,
    );
    await until(
      async () => (await value(stores[1]!, 'dns/c/db/0a000003')) === undefined,
      'the record dropped on store 2',
      3000,
    );
    await new Promise((r) => setTimeout(r, 300));
    // Neither takes it back from the other while the owner stays unreachable.
    expect(await value(stores[0]!, 'dns/c/db/0a000003')).toBeUndefined();
    n.connect(NAMES[1]!, NAMES[2]!);
    await until(async () => (await value(stores[1]!, 'dns/c/db/0a000003')) !== undefined, 'the record back on store 2');
    n.connect(NAMES[0]!, NAMES[2]!);
    await until(async () => (await value(stores[0]!, 'dns/c/db/0a000003')) !== undefined, 'the record back on store 1');
  });

  it('forgetOwner (rmpeer) drops a host everywhere at once; a host that is alive publishes again', async () => {
    const { net: n, stores } = await cluster(3);
    await stores[2]!.put('hosts/c', '{}');
    // Both others must hold it before the cut: forgetOwner counts what store 0 drops.
    await until(async () => (await value(stores[0]!, 'hosts/c')) !== undefined, 'replicated to store 0');
    await until(async () => (await value(stores[1]!, 'hosts/c')) !== undefined, 'replicated to store 1');
    n.cut(NAMES[0]!, NAMES[2]!);
    n.cut(NAMES[1]!, NAMES[2]!);
    expect(await stores[0]!.forgetOwner(NAMES[2]!)).toBe(1);
    expect(await value(stores[0]!, 'hosts/c')).toBeUndefined();
    await until(async () => (await value(stores[1]!, 'hosts/c')) === undefined, 'dropped on store 2 too');
    // The "dead" host comes back: it learns it was removed and publishes its entries again.
    n.connect(NAMES[1]!, NAMES[2]!);
    n.connect(NAMES[0]!, NAMES[2]!);
    await until(async () => (await value(stores[0]!, 'hosts/c')) !== undefined, 'published again');
  });

  it("reopening keeps its own and others' entries", async () => {
    const { net: n, stores } = await cluster(2);
    await stores[0]!.put('a', '1');
    await stores[1]!.put('b', '2');
    await until(async () => (await value(stores[0]!, 'b')) === '2', 'replicated');
    await stores[0]!.close();
    n.stores.delete(NAMES[0]!);
    n.cut(NAMES[0]!, NAMES[1]!);
    const again = await n.open(NAMES[0]!);
    expect(await value(again, 'a')).toBe('1');
    expect(await value(again, 'b')).toBe('2');
  });

  it('revoking a lease deletes its keys on every store', async () => {
    const { stores } = await cluster(2);
    const lease = await stores[0]!.grantLease(30);
    await stores[0]!.put('dns/a/x/1', 'v', lease.id);
    expect((await stores[0]!.get('dns/a/x/1'))?.lease).toBe(lease.id);
    await until(async () => (await value(stores[1]!, 'dns/a/x/1')) === 'v', 'replicated');
    await lease.revoke();
    expect(await value(stores[0]!, 'dns/a/x/1')).toBeUndefined();
    await until(async () => (await value(stores[1]!, 'dns/a/x/1')) === undefined, 'deleted on the other store');
  });

  it('compacts deleted entries once they are older than twice the grace period', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-compact-'));
    let clock = Date.now();
    const s = await MeshStore.open({
      file: path.join(dir, 's.json'),
      self: NAMES[0]!,
      graceMs: 1000,
      log: silentLogger,
      now: () => clock,
    });
    try {
      await s.put('a', '1');
      await s.put('b', '2');
      await s.delete('a');
      expect(s.stats().entries).toBe(2); // b, and a's tombstone
      await new Promise((r) => setTimeout(r, 600));
      expect(s.stats().entries).toBe(2); // young: kept
      clock += 2 * 1000 + 60_000 + 1000;
      await until(() => s.stats().entries === 1, 'the tombstone compacted');
      expect((await s.get('b'))?.value).toBe('2');
    } finally {
      await s.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('drops malformed messages and counts them', async () => {
    const { stores } = await cluster(2);
    stores[0]!.receive(NAMES[1]!, Buffer.from('09', 'hex'));
    stores[0]!.receive(NAMES[1]!, Buffer.from('0100', 'hex'));
    expect(stores[0]!.stats().malformed).toBe(2);
    await stores[1]!.put('k', 'v');
    await until(async () => (await value(stores[0]!, 'k')) === 'v', 'later messages still taken');
  });
});
