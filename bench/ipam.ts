/**
 * IPAM against a real etcd (started here on 127.0.0.1, removed at exit): allocations per
 * second and p50/p99 latency, single host and 4 hosts at once, beside references
 * measured in the same run on the same etcd: a raw put and a raw compare-and-create
 * transaction (the one round trip an allocation needs at best). Prints a markdown table.
 *
 *   npx tsx bench/ipam.ts [--n 2000]
 */
import { ClusterIpam } from '../src/ipam/cluster';
import { EtcdStore } from '../src/store/etcd';
import { createIfAbsent } from '../src/store/types';
import { parseCidr } from '../src/net/ipv4';
import { silentLogger } from '../src/log';
import { startEtcd, type EtcdServer } from '../test/e2e/etcd';

interface Row {
  name: string;
  ops: number;
  seconds: number;
  lat: number[];
  /** Index of the reference row it is compared with. */
  ref?: number;
}

const argN = process.argv.indexOf('--n');
const N = argN > 0 ? Number(process.argv[argN + 1]) : 2000;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** Run `total` operations with `concurrency` workers; latencies in ms. */
async function measure(
  total: number,
  concurrency: number,
  op: (i: number, worker: number) => Promise<unknown>,
): Promise<{ seconds: number; lat: number[] }> {
  const lat: number[] = [];
  let next = 0;
  const t0 = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      for (;;) {
        const i = next++;
        if (i >= total) return;
        const s = process.hrtime.bigint();
        await op(i, w);
        lat.push(Number(process.hrtime.bigint() - s) / 1e6);
      }
    }),
  );
  return { seconds: Number(process.hrtime.bigint() - t0) / 1e9, lat: lat.sort((a, b) => a - b) };
}

async function host(url: string, i: number): Promise<ClusterIpam> {
  return ClusterIpam.start({
    stateDir: '/nonexistent',
    etcd: { endpoints: [url] },
    name: `02:00:00:00:01:${i.toString(16).padStart(2, '0')}`,
    nickname: `bench${i}`,
    range: parseCidr('10.32.0.0/12'),
    port: 6783,
    advertiseAddress: `127.0.0.${i}`,
    ownLinks: [],
    log: silentLogger,
  });
}

async function main(): Promise<void> {
  let etcd: EtcdServer | undefined;
  const rows: Row[] = [];
  try {
    etcd = await startEtcd();
    const raw = new EtcdStore({ endpoints: [etcd.url], log: silentLogger });
    await measure(200, 1, (i) => raw.put(`bench/warm/${i}`, 'x')); // warm up connections and etcd

    // References.
    let m = await measure(N, 1, (i) => raw.put(`bench/put1/${i}`, 'x'));
    rows.push({ name: 'reference: etcd put, 1 at a time', ops: N, ...m });
    m = await measure(N, 1, (i) => createIfAbsent(raw, `bench/cac1/${i}`, 'x'));
    rows.push({ name: 'reference: etcd compare-and-create txn, 1 at a time', ops: N, ...m });
    const refTxn1 = rows.length - 1;
    m = await measure(N, 16, (i) => createIfAbsent(raw, `bench/cac16/${i}`, 'x'));
    rows.push({ name: 'reference: etcd compare-and-create txn, 16 at a time', ops: N, ...m });
    const refTxn16 = rows.length - 1;

    // One host.
    const h1 = await host(etcd.url, 1);
    m = await measure(N, 1, (i) => h1.allocator.allocate({ id: `s1-${i}`, ifname: 'eth0', network: 'weavets' }));
    rows.push({ name: 'allocate, 1 host, 1 at a time', ops: N, ...m, ref: refTxn1 });
    m = await measure(N, 1, (i) => h1.allocator.release(`s1-${i}`, 'eth0'));
    rows.push({ name: 'release, 1 host, 1 at a time', ops: N, ...m, ref: refTxn1 });
    m = await measure(N, 16, (i) => h1.allocator.allocate({ id: `s16-${i}`, ifname: 'eth0', network: 'weavets' }));
    rows.push({ name: 'allocate, 1 host, 16 at a time', ops: N, ...m, ref: refTxn16 });
    await h1.close(false);

    // Four hosts at once, 4 concurrent allocations each (16 in flight in total).
    const hosts = await Promise.all([2, 3, 4, 5].map((i) => host(etcd!.url, i)));
    m = await measure(N, 16, (i, w) =>
      hosts[w % 4]!.allocator.allocate({ id: `m-${i}`, ifname: 'eth0', network: 'weavets' }),
    );
    rows.push({ name: 'allocate, 4 hosts at once, 4 at a time each', ops: N, ...m, ref: refTxn16 });
    await Promise.all(hosts.map((h) => h.close(false)));
    await raw.close();
  } finally {
    await etcd?.destroy();
  }

  const fmt = (x: number, d = 2): string => x.toFixed(d);
  console.log(`\nIPAM on etcd 3.4 (127.0.0.1, one member), ${N} operations per row\n`);
  console.log('| scenario | ops/s | p50 ms | p99 ms | ops/s vs ref | p50 vs ref |');
  console.log('|---|---:|---:|---:|---:|---:|');
  for (const r of rows) {
    const rate = r.ops / r.seconds;
    const ref = r.ref === undefined ? undefined : rows[r.ref]!;
    const refRate = ref ? ref.ops / ref.seconds : undefined;
    console.log(
      `| ${r.name} | ${fmt(rate, 0)} | ${fmt(pct(r.lat, 50))} | ${fmt(pct(r.lat, 99))} | ${ref ? fmt(rate / refRate!) + 'x' : '-'} | ${ref ? fmt(pct(r.lat, 50) / pct(ref.lat, 50)) + 'x' : '-'} |`,
    );
  }
  console.log('\nratios compare each IPAM row with the compare-and-create reference at the same concurrency.');
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
