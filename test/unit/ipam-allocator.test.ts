/**
 * The block allocator against the embedded store: several "hosts" are allocator
 * instances sharing one store (what etcd gives a cluster).
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileStore } from '../../src/store/file';
import { BlockAllocator, ensureClusterConfig } from '../../src/ipam/allocator';
import { contains, formatIpv4, parseCidr, parseIpv4 } from '../../src/net/ipv4';
import type { NetworkSubnets } from '../../src/ipam/types';
import { hostKey } from '../../src/ipam/blocks';
import { silentLogger } from '../../src/log';
import { WeavetsError } from '../../src/errors';

const range = parseCidr('10.40.0.0/24');

function code(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'ok',
    (e: unknown) => (e instanceof WeavetsError ? e.code : String(e)),
  );
}

describe('block allocator', () => {
  let dir: string;
  let store: FileStore;
  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-alloc-'));
    store = await FileStore.open({ file: path.join(dir, 'store.json'), log: silentLogger });
  });
  afterEach(async () => {
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const host = async (self: string, blockPrefix = 28): Promise<BlockAllocator> => {
    await store.put(hostKey(self), JSON.stringify({ name: self, nickname: self, address: '192.0.2.1:6783' }));
    return BlockAllocator.open({ store, self, nickname: self, range, blockPrefix, log: silentLogger });
  };

  it('allocates idempotently per (id, ifname), distinct otherwise', async () => {
    const a = await host('02:00:00:00:00:01');
    const x = await a.allocate({ id: 'c1', ifname: 'eth0', network: 'n' });
    const again = await a.allocate({ id: 'c1', ifname: 'eth0', network: 'n' });
    const y = await a.allocate({ id: 'c1', ifname: 'eth1', network: 'n' });
    expect(again.ip).toBe(x.ip);
    expect(y.ip).not.toBe(x.ip);
    expect(x.address).toBe('10.40.0.1/24'); // .0 is the range's network address
    expect(await code(a.allocate({ id: 'c1', ifname: 'eth0', network: 'other' }))).toBe('EWEAVETS_CONFLICT');
  });

  it('takes a new block when its blocks are full, and fails clearly when the range is', async () => {
    const a = await host('02:00:00:00:00:01');
    const got = new Set<number>();
    for (let i = 0; i < 254; i++) got.add((await a.allocate({ id: `c${i}`, ifname: 'eth0', network: 'n' })).ip);
    expect(got.size).toBe(254);
    expect(a.usage()[0]!.blocks).toHaveLength(16);
    expect(await code(a.allocate({ id: 'extra', ifname: 'eth0', network: 'n' }))).toBe('EWEAVETS_RANGE_EXHAUSTED');
    await a.release('c7', 'eth0');
    expect((await a.allocate({ id: 'extra', ifname: 'eth0', network: 'n' })).ip).toBe([...got][7]);
  });

  it('gives a specific address anywhere in the range, once', async () => {
    const a = await host('02:00:00:00:00:01');
    const b = await host('02:00:00:00:00:02');
    const ip = parseIpv4('10.40.0.200');
    expect((await a.allocate({ id: 'c1', ifname: 'eth0', network: 'n', ip })).ip).toBe(ip);
    expect(await code(b.allocate({ id: 'c2', ifname: 'eth0', network: 'n', ip }))).toBe('EWEAVETS_CONFLICT');
    expect(await code(b.allocate({ id: 'c2', ifname: 'eth0', network: 'n', ip: parseIpv4('10.41.0.1') }))).toBe(
      'EWEAVETS_BAD_REQUEST',
    );
    expect(await code(b.allocate({ id: 'c2', ifname: 'eth0', network: 'n', ip: parseIpv4('10.40.0.255') }))).toBe(
      'EWEAVETS_BAD_REQUEST',
    );
    // One address is one address, whatever the network.
    const other = await code(b.allocate({ id: 'c2', ifname: 'eth0', network: 'm', ip }));
    expect(other).toBe('EWEAVETS_CONFLICT');
    await expect(b.allocate({ id: 'c2', ifname: 'eth0', network: 'm', ip })).rejects.toThrow(
      /in use by c1 \(eth0\) on host 02:00:00:00:00:01/,
    );
  });

  it('hosts take different blocks and never hand out the same address', async () => {
    const hosts = await Promise.all([1, 2, 3, 4].map((i) => host(`02:00:00:00:00:0${i}`)));
    const all = await Promise.all(
      Array.from({ length: 200 }, (_, i) => hosts[i % 4]!.allocate({ id: `c${i}`, ifname: 'eth0', network: 'n' })),
    );
    expect(new Set(all.map((a) => a.ip)).size).toBe(200);
    const blocks = hosts.map((h) => h.usage()[0]!.blocks.map((b) => b.cidr));
    expect(new Set(blocks.flat()).size).toBe(blocks.flat().length);
  });

  it('a container that moved host gets its old address', async () => {
    const a = await host('02:00:00:00:00:01');
    const b = await host('02:00:00:00:00:02');
    const x = await a.allocate({ id: 'mover', ifname: 'eth0', network: 'n' });
    const moved = await b.allocate({ id: 'mover', ifname: 'eth0', network: 'n', ip: x.ip });
    expect(moved.ip).toBe(x.ip);
    expect(b.held().map((h) => h.id)).toContain('mover');
    expect((await b.release('mover', 'eth0'))?.ip).toBe(x.ip);
  });

  it('reclaims its own blocks and allocations on restart (same peer name)', async () => {
    const a = await host('02:00:00:00:00:01');
    const x = await a.allocate({ id: 'c1', ifname: 'eth0', network: 'n' });
    const before = a.usage();
    const restarted = await host('02:00:00:00:00:01');
    expect(restarted.usage()).toEqual(before);
    expect((await restarted.allocate({ id: 'c1', ifname: 'eth0', network: 'n' })).ip).toBe(x.ip);
    expect((await restarted.allocate({ id: 'c2', ifname: 'eth0', network: 'n' })).ip).not.toBe(x.ip);
  });

  it("returns a dead host's blocks to the pool only once no live allocation is in them", async () => {
    const a = await host('02:00:00:00:00:01');
    const b = await host('02:00:00:00:00:02');
    const dead = await a.allocate({ id: 'dead1', ifname: 'eth0', network: 'n' });
    // b holds an address inside a's first block.
    const inside = dead.ip + 5;
    await b.allocate({ id: 'live1', ifname: 'eth0', network: 'n', ip: inside });
    await a.allocate({ id: 'x', ifname: 'eth0', network: 'n', ip: parseIpv4('10.40.0.17') }); // outside a's block
    await store.delete(hostKey('02:00:00:00:00:01')); // a's lease ran out
    let r = await b.reclaim();
    expect(r.addresses).toBe(2);
    expect(r.blocks).toEqual([]); // live1 is still in it
    await b.release('live1', 'eth0');
    r = await b.reclaim();
    expect(r.blocks).toEqual(['n 10.40.0.0/28']);
    expect(formatIpv4(dead.ip)).toBe('10.40.0.1');
    // The address is free again.
    expect((await b.allocate({ id: 'new', ifname: 'eth0', network: 'n', ip: dead.ip })).ip).toBe(dead.ip);
  });

  it('allocates each network from its own subnet, the default one around the others, never the same address twice', async () => {
    const subnets: NetworkSubnets = {
      subnetOf: (n) => {
        if (n === 'weavets')
          return Promise.resolve({ subnet: range, exclude: [{ network: 'red', subnet: parseCidr('10.40.0.64/26') }] });
        if (n === 'red') return Promise.resolve({ subnet: parseCidr('10.40.0.64/26'), exclude: [] });
        return Promise.reject(new WeavetsError('EWEAVETS_NOT_FOUND', `no network ${n}`));
      },
    };
    const a = await host('02:00:00:00:00:01');
    const b = await host('02:00:00:00:00:02');
    await a.useSubnets(subnets);
    await b.useSubnets(subnets);
    const red = await Promise.all(
      Array.from({ length: 40 }, (_, i) => [a, b][i % 2]!.allocate({ id: `r${i}`, ifname: 'eth0', network: 'red' })),
    );
    const dflt = await Promise.all(
      Array.from({ length: 60 }, (_, i) =>
        [a, b][i % 2]!.allocate({ id: `d${i}`, ifname: 'eth0', network: 'weavets' }),
      ),
    );
    const redNet = parseCidr('10.40.0.64/26');
    for (const r of red) {
      expect(contains(redNet, r.ip)).toBe(true);
      expect(r.address).toMatch(/\/26$/);
      expect(r.ip).not.toBe(redNet.base); // the subnet's network address
      expect(r.ip).not.toBe(redNet.base + 63); // and broadcast
    }
    for (const d of dflt) {
      expect(contains(redNet, d.ip)).toBe(false);
      expect(d.address).toMatch(/\/24$/);
    }
    expect(new Set([...red, ...dflt].map((x) => x.ip)).size).toBe(100);
    // A /28 block each for a and b inside red, then borrowing when the subnet's blocks are all taken.
    expect(await code(a.allocate({ id: 'x', ifname: 'eth0', network: 'red', ip: parseIpv4('10.40.0.5') }))).toBe(
      'EWEAVETS_BAD_REQUEST',
    );
    await expect(
      a.allocate({ id: 'x', ifname: 'eth0', network: 'weavets', ip: parseIpv4('10.40.0.70') }),
    ).rejects.toThrow(/network red's subnet/);
    expect(await code(a.allocate({ id: 'x', ifname: 'eth0', network: 'nosuch' }))).toBe('EWEAVETS_NOT_FOUND');
  });

  it('a released address with retention stays reserved for its id: others are refused naming it; the id gets it back on any host; it expires', async () => {
    let now = 1_000_000;
    await store.put(hostKey('02:00:00:00:00:01'), '{}');
    const a = await BlockAllocator.open({
      store,
      self: '02:00:00:00:00:01',
      nickname: 'a',
      range,
      blockPrefix: 28,
      log: silentLogger,
      now: () => now,
    });
    await store.put(hostKey('02:00:00:00:00:02'), '{}');
    const b = await BlockAllocator.open({
      store,
      self: '02:00:00:00:00:02',
      nickname: 'b',
      range,
      blockPrefix: 28,
      log: silentLogger,
      now: () => now,
    });
    const x = await a.allocate({ id: 'mover', ifname: 'eth0', network: 'n' });
    await a.release('mover', 'eth0', { retainMs: 600_000 });
    expect(a.held()).toEqual([]);
    await expect(b.allocate({ id: 'thief', ifname: 'eth0', network: 'n', ip: x.ip })).rejects.toThrow(
      /reserved for mover \(eth0\)/,
    );
    // Nobody else is handed it either.
    const others = await Promise.all(
      Array.from({ length: 20 }, (_, i) => a.allocate({ id: `o${i}`, ifname: 'eth0', network: 'n' })),
    );
    expect(others.map((o) => o.ip)).not.toContain(x.ip);
    // The sweep keeps it while the retention lasts.
    expect((await b.reclaim()).addresses).toBe(0);
    const back = await b.allocate({ id: 'mover', ifname: 'eth0', network: 'n' });
    expect(back.ip).toBe(x.ip);
    expect(b.held().map((h) => h.id)).toEqual(['mover']);
    // Detached again, then the retention runs out: the sweep frees it.
    await b.release('mover', 'eth0', { retainMs: 1000 });
    now += 1001;
    expect((await a.reclaim()).addresses).toBe(1);
    expect((await a.allocate({ id: 'newcomer', ifname: 'eth0', network: 'n', ip: x.ip })).ip).toBe(x.ip);
  });

  it('release without retention frees a reservation at once; a reservation on another network is dropped when the id comes back there', async () => {
    const a = await host('02:00:00:00:00:01');
    const x = await a.allocate({ id: 'c1', ifname: 'eth0', network: 'n' });
    await a.release('c1', 'eth0', { retainMs: 600_000 });
    expect((await a.release('c1', 'eth0'))?.ip).toBe(x.ip);
    expect((await a.allocate({ id: 'c2', ifname: 'eth0', network: 'n', ip: x.ip })).ip).toBe(x.ip);
    const y = await a.allocate({ id: 'c3', ifname: 'eth0', network: 'n' });
    await a.release('c3', 'eth0', { retainMs: 600_000 });
    const z = await a.allocate({ id: 'c3', ifname: 'eth0', network: 'm' });
    expect(z.network).toBe('m');
    expect((await a.allocate({ id: 'c4', ifname: 'eth0', network: 'n', ip: y.ip })).ip).toBe(y.ip);
  });

  it('moves keys of the layout before subnets (ipam/addrs/<network>/<ip>) once, keeping who holds what', async () => {
    const self = '02:00:00:00:00:01';
    await store.put(hostKey(self), '{}');
    await ensureClusterConfig(store, range, 28);
    await store.put('ipam/blocks/weavets/0a280000', JSON.stringify({ owner: self, nickname: 'a' }));
    await store.put('ipam/addrs/weavets/0a280001', JSON.stringify({ id: 'old', ifname: 'eth0', host: self }));
    await store.put('ipam/handles/old/eth0', JSON.stringify({ network: 'weavets', ip: '10.40.0.1', host: self }));
    const a = await BlockAllocator.open({ store, self, nickname: 'a', range, blockPrefix: 28, log: silentLogger });
    expect((await store.list('ipam/addrs/')).entries.map((e) => e.key)).toEqual(['ipam/addrs/0a280001']);
    expect(JSON.parse((await store.get('ipam/addrs/0a280001'))!.value)).toMatchObject({
      id: 'old',
      network: 'weavets',
    });
    expect((await store.list('ipam/blocks/')).entries.map((e) => e.key)).toEqual(['ipam/blocks/0a280000']);
    expect(a.held().map((h) => h.id)).toEqual(['old']);
    expect((await a.allocate({ id: 'old', ifname: 'eth0', network: 'weavets' })).ip).toBe(parseIpv4('10.40.0.1'));
  });

  it('refuses a conflicting range, naming both', async () => {
    await ensureClusterConfig(store, range, 28);
    await expect(ensureClusterConfig(store, parseCidr('10.50.0.0/16'))).rejects.toThrow(
      /10\.50\.0\.0\/16.*10\.40\.0\.0\/24/,
    );
    await expect(ensureClusterConfig(store, range, 26)).rejects.toMatchObject({ code: 'EWEAVETS_RANGE_CONFLICT' });
    expect((await ensureClusterConfig(store, range)).blockPrefix).toBe(28);
  });
});
