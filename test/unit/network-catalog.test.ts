/**
 * The network catalog on the embedded store: ids never shared (prod and xtonfi hash
 * alike), subnets never overlapping, even for creates racing each other; bad input
 * refused with nothing half-made; and the isolation ruleset it leads to.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileStore } from '../../src/store/file';
import {
  NetworkCatalog,
  legacyNetworkId,
  pickNetworkId,
  pickSubnet,
  subnetProblem,
  validateNetworkName,
} from '../../src/endpoint/network-catalog';
import { isolationRuleset } from '../../src/endpoint/isolation';
import { overlaps } from '../../src/ipam/blocks';
import { parseCidr } from '../../src/net/ipv4';
import { silentLogger } from '../../src/log';
import { WeavetsError } from '../../src/errors';

const range = parseCidr('10.32.0.0/12');

describe('network catalog', () => {
  let dir: string;
  let store: FileStore;
  let catalog: NetworkCatalog;
  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-cat-'));
    store = await FileStore.open({ file: path.join(dir, 'store.json'), log: silentLogger });
    catalog = await NetworkCatalog.open({ store, range, blockPrefix: 26, log: silentLogger });
  });
  afterEach(async () => {
    await catalog.close();
    await store.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('has the default network with its legacy id and the whole range', () => {
    expect(catalog.list()).toEqual([
      expect.objectContaining({ name: 'weavets', id: legacyNetworkId('weavets'), subnet: '10.32.0.0/12' }),
    ]);
  });

  it('gives prod and xtonfi different ids, though their legacy hashes collide', async () => {
    expect(legacyNetworkId('prod')).toBe(legacyNetworkId('xtonfi'));
    const prod = await catalog.create({ name: 'prod' });
    const xtonfi = await catalog.create({ name: 'xtonfi' });
    expect(prod.id).toBe(legacyNetworkId('prod'));
    expect(xtonfi.id).not.toBe(prod.id);
    expect(pickNetworkId('x', new Set([legacyNetworkId('x')]))).toBe(legacyNetworkId('x') + 1);
    expect(pickNetworkId('x', new Set())).toBeGreaterThan(0);
  });

  it('racing creates get unique ids and disjoint subnets', async () => {
    const other = await NetworkCatalog.open({ store, range, blockPrefix: 26, log: silentLogger });
    try {
      const names = Array.from({ length: 12 }, (_, i) => `net${i}`);
      const made = await Promise.all(names.map((n, i) => (i % 2 ? catalog : other).create({ name: n })));
      expect(new Set(made.map((m) => m.id)).size).toBe(12);
      for (const a of made)
        for (const b of made) if (a !== b) expect(overlaps(parseCidr(a.subnet), parseCidr(b.subnet))).toBe(false);
      // The same name racing: one wins, the other is told it exists.
      const both = await Promise.allSettled([catalog.create({ name: 'same' }), other.create({ name: 'same' })]);
      expect(both.filter((r) => r.status === 'fulfilled')).toHaveLength(1);
      // ensure() on first use agrees with whoever created it.
      expect((await other.ensure('same')).id).toBe((await catalog.lookup('same'))!.id);
    } finally {
      await other.close();
    }
  });

  it('refuses bad input naming the conflict, with nothing half-made', async () => {
    await catalog.create({ name: 'blue', subnet: '10.40.7.0/24' });
    const bad: [Parameters<NetworkCatalog['create']>[0], RegExp][] = [
      [{ name: 'green', subnet: '10.40.7.0/25' }, /overlaps network blue \(10\.40\.7\.0\/24\)/],
      [{ name: 'green', subnet: '10.40.0.0/16' }, /overlaps network blue/],
      [{ name: 'green', subnet: '192.168.0.0/24' }, /outside the range 10\.32\.0\.0\/12/],
      [{ name: 'green', subnet: '10.41.0.0/27' }, /smaller than one address block \(\/26\)/],
      [{ name: 'green', subnet: '10.32.0.0/12' }, /overlaps network weavets/],
      [{ name: 'green', subnet: '10.41.0.1/24' }, /host bits/],
      [{ name: 'has.dot' }, /DNS label/],
      [{ name: '-dash' }, /DNS label/],
      [{ name: 'blue' }, /already exists/],
    ];
    for (const [req, msg] of bad) await expect(catalog.create(req), JSON.stringify(req)).rejects.toThrow(msg);
    expect(catalog.list().map((n) => n.name)).toEqual(['weavets', 'blue']);
    expect(validateNetworkName('a'.repeat(64))).toMatch(/DNS label/);
    expect(validateNetworkName('my_net-2')).toBeUndefined();
  });

  it('refuses a subnet where the default network already has addresses, naming them', async () => {
    await store.put('ipam/blocks/0a284000', JSON.stringify({ owner: 'aa:bb', nickname: 'host1', network: 'weavets' }));
    await expect(catalog.create({ name: 'green', subnet: '10.40.64.0/24' })).rejects.toThrow(
      /block 10\.40\.64\.0\/26 of host host1/,
    );
    // Picking a subnet steers clear of it.
    const occ = { networks: [], defaultUse: [{ what: 'x', cidr: parseCidr('10.40.64.0/26') }] };
    for (let i = 0; i < 50; i++)
      expect(overlaps(pickSubnet(range, 26, `n${i}`, occ), parseCidr('10.40.64.0/26'))).toBe(false);
    expect(subnetProblem(range, 26, parseCidr('10.40.65.0/24'), occ)).toBeUndefined();
  });

  it('removes a network unless it is in use, and never the default one', async () => {
    await catalog.create({ name: 'red' });
    await expect(
      catalog.remove('red', () => Promise.reject(new WeavetsError('EWEAVETS_CONFLICT', 'in use by c1 on host h1'))),
    ).rejects.toThrow(/c1 on host h1/);
    expect(catalog.get('red')).toBeDefined();
    await catalog.remove('red', () => Promise.resolve());
    expect(catalog.get('red')).toBeUndefined();
    expect((await store.list('networks/by-id/')).entries).toHaveLength(1);
    await expect(catalog.remove('weavets', () => Promise.resolve())).rejects.toThrow(/default network/);
    await expect(catalog.remove('nosuch', () => Promise.resolve())).rejects.toMatchObject({
      code: 'EWEAVETS_NOT_FOUND',
    });
  });

  it('tells the allocator the default network has holes where the others are', async () => {
    const red = await catalog.create({ name: 'red' });
    const d = await catalog.subnetOf('weavets');
    expect(d.exclude).toEqual([{ network: 'red', subnet: parseCidr(red.subnet) }]);
    expect((await catalog.subnetOf('red')).exclude).toEqual([]);
    await expect(catalog.subnetOf('nosuch')).rejects.toMatchObject({ code: 'EWEAVETS_NOT_FOUND' });
  });
});

describe('isolation ruleset', () => {
  it("drops between bridges, spoofed sources and other networks' host addresses, with filter hooks only", () => {
    const script = isolationRuleset([
      { bridge: 'weavets', subnet: parseCidr('10.32.0.0/12'), hostAddresses: ['10.32.0.1'] },
      { bridge: 'wtb000001', subnet: parseCidr('10.40.7.0/24'), hostAddresses: ['10.40.7.1'] },
    ]);
    expect(script).toContain('table inet weavets_isolation {}\ndelete table inet weavets_isolation\n');
    expect(script).toContain('iifname "weavets" ip saddr != 10.32.0.0/12 drop');
    expect(script).toContain('iifname "weavets" ip saddr 10.40.7.0/24 drop');
    expect(script).toContain('iifname "wtb000001" ip saddr != 10.40.7.0/24 drop');
    expect(script).toContain('iifname "weavets" ip daddr 10.40.7.1 drop');
    expect(script).toContain('iifname "wtb000001" ip daddr 10.32.0.1 drop');
    expect(script).toContain('iifname "weavets" oifname "wtb000001" drop');
    expect(script).toContain('iifname "wtb000001" oifname "weavets" drop');
    expect(script).not.toMatch(/\bnat\b|\bct\b/);
  });
});
