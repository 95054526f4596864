/**
 * An etcd call past its deadline that commits all the same (issue 11, item 5): the
 * allocation reaches etcd and is applied, but its answer is held back by a proxy, so the
 * caller is told it failed. The address is then held with nothing using it, and the
 * reconciler (src/ipam/reconcile.ts) must release it after its grace.
 */
import { afterAll, beforeAll, expect, it } from 'vitest';
import { ClusterIpam } from '../../src/ipam/cluster';
import { EtcdStore } from '../../src/store/etcd';
import { ADDRS_PREFIX } from '../../src/ipam/blocks';
import { parseCidr } from '../../src/net/ipv4';
import { silentLogger } from '../../src/log';
import { WeavetsError } from '../../src/errors';
import { ETCD_TOOLS, startEtcd, type EtcdServer } from './etcd';
import { startAnswerHoldProxy, type AnswerHoldProxy } from './answer-hold-proxy';
import { describeWithTools } from '../require-tools';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
// Under CI a missing etcd fails the suite rather than skipping it.
const describeEtcd = describeWithTools(ETCD_TOOLS);

describeEtcd('an etcd call that times out and still commits', () => {
  let etcd: EtcdServer;
  let proxy: AnswerHoldProxy;
  let ipam: ClusterIpam | undefined;
  let observer: EtcdStore | undefined;
  beforeAll(async () => {
    etcd = await startEtcd();
    const u = new URL(etcd.url);
    proxy = await startAnswerHoldProxy({ host: u.hostname, port: Number(u.port) });
  });
  afterAll(async () => {
    await ipam?.close(false);
    await observer?.close();
    await proxy?.close();
    await etcd?.destroy();
  });

  it('is released by the reconciler after the grace period', async () => {
    ipam = await ClusterIpam.start({
      stateDir: '/nonexistent',
      etcd: { endpoints: [proxy.url] },
      name: '02:00:00:00:01:01',
      nickname: 'h1',
      range: parseCidr('10.32.0.0/12'),
      port: 6783,
      advertiseAddress: '127.0.9.1',
      leaseTtlSeconds: 60,
      ownLinks: [],
      reclaimGraceMs: 1000,
      reclaimIntervalMs: 500,
      log: silentLogger,
    });
    observer = new EtcdStore({ endpoints: [etcd.url], log: silentLogger });
    const held = async (id: string): Promise<boolean> =>
      (await observer!.list(ADDRS_PREFIX)).entries.some((e) => (JSON.parse(e.value) as { id: string }).id === id);
    // A block first, so the stalled call is the address's own transaction.
    await ipam.allocator.allocate({ id: 'warm', ifname: 'eth0', network: 'weavets' });
    await ipam.allocator.release('warm', 'eth0');
    // Nothing on this host uses any address.
    ipam.startReconciler(() => []);

    proxy.hold();
    const t0 = Date.now();
    const err = await ipam.allocator.allocate({ id: 'stalled', ifname: 'eth0', network: 'weavets' }).then(
      () => undefined,
      (e: unknown) => e,
    );
    const failedAfterMs = Date.now() - t0;
    expect(err).toBeInstanceOf(WeavetsError);
    expect((err as WeavetsError).code).toBe('EWEAVETS_STORE_UNAVAILABLE');
    expect(failedAfterMs).toBeLessThan(10_000);

    // etcd applied it all the same. The observer talks to etcd directly; the reconciler
    // cannot act on it until the answers flow again.
    expect(await held('stalled'), 'the allocation the caller was told had failed is held in etcd').toBe(true);
    proxy.release();

    // The reconciler returns it: grace 1 s, passes every 0.5 s, etcd3's breaker reopening first.
    const until = Date.now() + 30_000;
    while ((await held('stalled')) && Date.now() < until) await sleep(250);
    expect(await held('stalled')).toBe(false);
    expect(ipam.reclaimedAddresses()).toBeGreaterThanOrEqual(1);
  }, 60_000);
});
