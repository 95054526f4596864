/**
 * Addresses that leak, and the reconciler that returns them (src/ipam/reconcile.ts):
 * a store call that reports failure yet commits, an allocation with no endpoint (a daemon
 * killed mid-attach, an ADD cut short), a DEL for an id with no endpoint. Against the
 * embedded store, with a wrapper that makes a transaction commit and then fail, as an
 * etcd call past its deadline does.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Registry } from '../../src/metrics/registry';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { FileStore } from '../../src/store/file';
import { StoreUnavailableError, type Store } from '../../src/store/types';
import { BlockAllocator } from '../../src/ipam/allocator';
import { ADDRS_PREFIX, HANDLES_PREFIX, hostKey } from '../../src/ipam/blocks';
import { parseCidr } from '../../src/net/ipv4';
import { AddressReconciler, type AddressClaim } from '../../src/ipam/reconcile';
import { EndpointRegistry } from '../../src/endpoint/registry';
import { registerIpamMetrics } from '../../src/api/ipam-metrics';
import { silentLogger } from '../../src/log';
import { WeavetsError } from '../../src/errors';
import { compareText } from '../../src/text-order';

const range = parseCidr('10.40.0.0/24');
const SELF = '02:00:00:00:00:01';
const OTHER = '02:00:00:00:00:02';
const GRACE = 60_000;

/** The store, except that the next transaction (or read) can be made to fail after committing. */
function flaky(inner: Store): { store: Store; failNextTxnAfterCommit(): void; failReads(on: boolean): void } {
  let txnFails = 0;
  let readsFail = false;
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      const fn = v as (...a: unknown[]) => Promise<unknown>;
      if (prop === 'txn') {
        return async (...a: unknown[]) => {
          const r = await fn.apply(target, a);
          if (txnFails > 0) {
            txnFails--;
            throw new StoreUnavailableError('txn', 'etcd test', 'deadline exceeded');
          }
          return r;
        };
      }
      if (prop === 'get') {
        return async (...a: unknown[]) => {
          if (readsFail) throw new StoreUnavailableError('get', 'etcd test', 'deadline exceeded');
          return fn.apply(target, a);
        };
      }
      return fn.bind(target);
    },
  });
  return { store, failNextTxnAfterCommit: () => txnFails++, failReads: (on) => (readsFail = on) };
}

describe('address leaks and the reconciler', () => {
  let dir: string;
  let file: FileStore;
  let f: ReturnType<typeof flaky>;
  let alloc: BlockAllocator;

  beforeEach(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-reconcile-'));
    file = await FileStore.open({ file: path.join(dir, 'store.json'), log: silentLogger });
    for (const h of [SELF, OTHER])
      await file.put(hostKey(h), JSON.stringify({ name: h, nickname: h, address: '192.0.2.1:6783' }));
    f = flaky(file);
    alloc = await BlockAllocator.open({
      store: f.store,
      self: SELF,
      nickname: 'a',
      range,
      blockPrefix: 28,
      log: silentLogger,
    });
    // Take a block first, so the transaction made to fail below is the address's own.
    await alloc.allocate({ id: 'warm', ifname: 'eth0', network: 'n' });
    await alloc.release('warm', 'eth0');
  });
  afterEach(async () => {
    await file.close();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  const addrs = async (): Promise<{ id: string; host: string }[]> =>
    (await file.list(ADDRS_PREFIX)).entries
      .map((e) => JSON.parse(e.value) as { id: string; host: string })
      .sort((a, b) => compareText(a.id, b.id));
  const handles = async (): Promise<string[]> => (await file.list(HANDLES_PREFIX)).entries.map((e) => e.key).sort();

  function reconciler(claims: AddressClaim[] = []): AddressReconciler {
    return new AddressReconciler({
      store: f.store,
      allocator: alloc,
      claims: () => claims,
      graceMs: GRACE,
      intervalMs: 30_000,
      log: silentLogger,
    });
  }

  it('an allocation whose store call failed after committing is found and kept, not leaked', async () => {
    f.failNextTxnAfterCommit();
    const a = await alloc.allocate({ id: 'c1', ifname: 'eth0', network: 'n' });
    expect(a.address).toMatch(/^10\.40\.0\.\d+\/24$/);
    // The same id again gets the same address; nobody else gets it; one record in the store.
    expect((await alloc.allocate({ id: 'c1', ifname: 'eth0', network: 'n' })).ip).toBe(a.ip);
    expect((await alloc.allocate({ id: 'c2', ifname: 'eth0', network: 'n' })).ip).not.toBe(a.ip);
    expect((await addrs()).map((r) => r.id)).toEqual(['c1', 'c2']);
  });

  it('a block whose creation failed after committing is used, not left idle', async () => {
    f.failNextTxnAfterCommit(); // the block's compare-and-create, on a network with no block yet
    const err = await alloc.allocate({ id: 'm1', ifname: 'eth0', network: 'm' }).catch((e: unknown) => e);
    expect((err as WeavetsError).code).toBe('EWEAVETS_STORE_UNAVAILABLE');
    const a = await alloc.allocate({ id: 'm1', ifname: 'eth0', network: 'm' });
    expect(a.address).toMatch(/^10\.40\.0\./);
    expect(
      (await file.list('ipam/blocks/')).entries.filter(
        (e) => (JSON.parse(e.value) as { network: string }).network === 'm',
      ),
    ).toHaveLength(1);
    expect(alloc.usage().find((u) => u.network === 'm')?.blocks).toHaveLength(1);
  });

  it('when the store cannot tell whether it committed, the reconciler releases it after the grace period', async () => {
    f.failNextTxnAfterCommit();
    f.failReads(true);
    const err = await alloc.allocate({ id: 'lost', ifname: 'eth0', network: 'n' }).catch((e: unknown) => e);
    f.failReads(false);
    expect(err).toBeInstanceOf(WeavetsError);
    expect((err as WeavetsError).code).toBe('EWEAVETS_STORE_UNAVAILABLE');
    // The caller was told it failed, yet the address is taken: the leak.
    expect((await addrs()).map((r) => r.id)).toEqual(['lost']);
    const r = reconciler();
    const t0 = 1_000_000;
    expect(await r.pass(t0)).toBe(0); // seen, not yet released
    expect(await r.pass(t0 + GRACE - 1)).toBe(0);
    expect((await addrs()).map((x) => x.id)).toEqual(['lost']);
    expect(await r.pass(t0 + GRACE)).toBe(1);
    expect(await addrs()).toEqual([]);
    expect(await handles()).toEqual([]);
    expect(r.reclaimed).toBe(1);
    // And the address is free for the next container.
    expect((await alloc.allocate({ id: 'next', ifname: 'eth0', network: 'n' })).address).toMatch(/^10\.40\.0\./);
  });

  it("keeps claimed addresses, API allocations and other hosts' addresses; an address used again in the grace period is not released", async () => {
    await alloc.allocate({ id: 'claimed', ifname: 'eth0', network: 'n' });
    await alloc.allocate({ id: 'api', ifname: 'eth0', network: 'n', unattached: true });
    await alloc.allocate({ id: 'orphan', ifname: 'eth0', network: 'n' });
    const other = await BlockAllocator.open({
      store: file,
      self: OTHER,
      nickname: 'b',
      range,
      blockPrefix: 28,
      log: silentLogger,
    });
    await other.allocate({ id: 'theirs', ifname: 'eth0', network: 'n' });
    const r = reconciler([{ id: 'claimed', ifname: 'eth0' }]);
    const t0 = 5_000_000;
    await r.pass(t0);
    // The orphan is released and allocated again (a new revision) within the grace period:
    // that is a new allocation, and it gets a grace period of its own.
    await alloc.release('orphan', 'eth0');
    await alloc.allocate({ id: 'orphan', ifname: 'eth0', network: 'n' });
    expect(await r.pass(t0 + GRACE)).toBe(0);
    expect((await addrs()).map((x) => x.id)).toEqual(['api', 'claimed', 'orphan', 'theirs']);
    expect(await r.pass(t0 + 2 * GRACE)).toBe(1);
    expect((await addrs()).map((x) => x.id)).toEqual(['api', 'claimed', 'theirs']);
    expect(r.reclaimed).toBe(1);
  });

  it('a detach naming the interface releases the address of an id with no endpoint (CNI DEL)', async () => {
    // An ADD cut short (kill -9 between allocating and recording the endpoint).
    await alloc.allocate({ id: 'cni:wtnet:ctr9:eth0', ifname: 'eth0', network: 'weavets' });
    const reg = new EndpointRegistry(
      dir,
      undefined as never,
      undefined as never,
      alloc,
      undefined as never,
      undefined as never,
      silentLogger,
    );
    const err = await reg.detach('cni:wtnet:ctr9:eth0', { ifname: 'eth0' }).catch((e: unknown) => e);
    expect((err as WeavetsError).code).toBe('EWEAVETS_NOT_FOUND');
    expect(await addrs()).toEqual([]);
    expect(await handles()).toEqual([]);
    // Without the interface (weavets detach ID), an unknown id releases nothing.
    await alloc.allocate({ id: 'c5', ifname: 'eth0', network: 'weavets' });
    await reg.detach('c5').catch(() => undefined);
    expect((await addrs()).map((x) => x.id)).toEqual(['c5']);
  });

  it('never releases a reservation kept for a detached id (--address-retention); the sweep frees it when it expires', async () => {
    await alloc.allocate({ id: 'mover', ifname: 'eth0', network: 'n' });
    await alloc.release('mover', 'eth0', { retainMs: 10 * GRACE });
    const r = reconciler([]);
    const t0 = 7_000_000;
    await r.pass(t0);
    expect(await r.pass(t0 + 2 * GRACE)).toBe(0);
    expect((await addrs()).map((x) => x.id)).toEqual(['mover']);
    expect(r.reclaimed).toBe(0);
  });

  it('counts released addresses in weavets_ipam_reclaimed_total', async () => {
    const registry = new Registry();
    let n = 0;
    registerIpamMetrics(registry, {
      status: () => ({
        store: { kind: 'file', location: '' },
        range: '',
        blockPrefix: 26,
        leaseTtlSeconds: 120,
        name: SELF,
        networks: [],
        hosts: [],
        blocks: [],
        conflicts: [],
      }),
      reclaimedAddresses: () => n,
    });
    n = 3;
    expect(await registry.metrics()).toMatch(/^weavets_ipam_reclaimed_total 3$/m);
  });
});
