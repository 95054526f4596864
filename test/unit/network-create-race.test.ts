/**
 * `network create NAME --subnet S` against a default-network host taking a block (or an
 * address) inside S at the same moment, on a real etcd (issue #12's last race). Two
 * hosts, each with its own etcd client: one creates the network, the other allocates on
 * the default network. A gate holds one side's transaction after the reads that decided
 * it, the other side runs to completion, then the gate opens: both orders, for a block
 * claim, an address asked for by number, and a create that picked its subnet itself.
 *
 * What must hold: never both commit; the loser is refused with a message naming the
 * conflict and what to do, or retries into a block (subnet) outside the other's; and no
 * default-network block or address lies inside a created network's subnet.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { FileStore } from '../../src/store/file';
import { EtcdStore } from '../../src/store/etcd';
import type { Store, TxnOp } from '../../src/store/types';
import { BlockAllocator } from '../../src/ipam/allocator';
import { ADDRS_PREFIX, BLOCKS_PREFIX, parseAddrKey, type AddrRecord, type BlockRecord } from '../../src/ipam/blocks';
import { NetworkCatalog, NETWORKS_BY_NAME } from '../../src/endpoint/network-catalog';
import { contains, formatIpv4, parseCidr, parseIpv4, type Cidr } from '../../src/net/ipv4';
import { silentLogger } from '../../src/log';
import { ETCD_TOOLS, startEtcd, type EtcdServer } from '../e2e/etcd';
import { describeWithTools } from '../require-tools';

const RANGE = parseCidr('10.32.0.0/12');
const S = '10.32.0.0/24';
const DEFAULT = 'weavets';

/** Holds the first transaction whose puts match, until released; the store otherwise as is. */
interface Gate {
  store: Store;
  /** Resolves with that transaction's puts once it is being held. */
  reached: Promise<TxnOp[]>;
  release(): void;
}

function gate(inner: Store, holds: (ops: TxnOp[]) => boolean): Gate {
  let armed = true;
  let reached!: (ops: TxnOp[]) => void;
  let release!: () => void;
  const reachedP = new Promise<TxnOp[]>((r) => (reached = r));
  const released = new Promise<void>((r) => (release = r));
  const store = new Proxy(inner, {
    get(target, prop, receiver) {
      const v = Reflect.get(target, prop, receiver) as unknown;
      if (typeof v !== 'function') return v;
      const fn = v as (...a: unknown[]) => Promise<unknown>;
      if (prop !== 'txn') return fn.bind(target);
      return async (...a: unknown[]) => {
        const ops = a[1] as TxnOp[];
        if (armed && holds(ops)) {
          armed = false;
          reached(ops);
          await released;
        }
        return fn.apply(target, a);
      };
    },
  });
  return { store, reached: reachedP, release };
}

const putsUnder = (prefix: string) => (ops: TxnOp[]) => ops.some((op) => op.op === 'put' && op.key.startsWith(prefix));

const describeEtcd = describeWithTools(ETCD_TOOLS);

/**
 * What a range compare means, the same on every store: no key in [from, to) created or
 * changed after R; an empty range holds; a key deleted since is not seen; `to` is excluded.
 */
async function rangeCompareSemantics(store: Store): Promise<void> {
  const put = (key: string) => store.put(key, 'x');
  const holds = async (from: string, to: string, since: number) =>
    (await store.txn([{ range: { from, to }, unchangedSince: since }], [{ op: 'put', key: 'probe', value: '1' }]))
      .succeeded;
  await put('r/a');
  await put('r/c');
  const r = (await store.list('r/')).revision;
  expect(await holds('r/a', 'r/d', r)).toBe(true);
  expect(await holds('r/x', 'r/z', r)).toBe(true);
  await put('r/b');
  expect(await holds('r/a', 'r/d', r)).toBe(false);
  expect(await holds('r/a', 'r/b', r)).toBe(true);
  expect(await holds('r/c', 'r/d', r)).toBe(true);
  await store.put('r/c', 'y');
  expect(await holds('r/c', 'r/d', r)).toBe(false);
  const r2 = (await store.list('r/')).revision;
  await store.delete('r/b');
  expect(await holds('r/a', 'r/d', r2)).toBe(true);
  expect(await holds('r/', 'r0', r)).toBe(false);
  expect((await store.get('probe'))?.value).toBe('1');
}

describe('range compares on the file store', () => {
  it('hold exactly when no key of the range changed after the revision', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wt-range-'));
    const store = await FileStore.open({ file: path.join(dir, 'store.json'), log: silentLogger });
    try {
      await rangeCompareSemantics(store);
    } finally {
      await store.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describeEtcd('network create --subnet against a default-network claim inside it (real etcd)', () => {
  let etcd: EtcdServer;
  let run = 0;
  let stores: EtcdStore[] = [];
  let closers: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    etcd = await startEtcd();
  });
  afterAll(async () => {
    await etcd?.destroy();
  });
  beforeEach(() => {
    run++;
  });
  afterEach(async () => {
    for (const c of closers.reverse()) await c();
    for (const s of stores) await s.close();
    closers = [];
    stores = [];
  });

  /** One host's etcd client, under this test's own key prefix. */
  function client(): EtcdStore {
    const s = new EtcdStore({ endpoints: [etcd.url], prefix: `/race-${run}/`, log: silentLogger });
    stores.push(s);
    return s;
  }

  async function catalogOn(store: Store): Promise<NetworkCatalog> {
    const c = await NetworkCatalog.open({ store, range: RANGE, blockPrefix: 26, log: silentLogger });
    closers.push(() => c.close());
    return c;
  }

  /** A default-network host: its allocator follows its own catalog, as the daemon wires it. */
  async function defaultHost(store: Store): Promise<BlockAllocator> {
    const a = await BlockAllocator.open({
      store,
      self: '02:00:00:00:00:02',
      nickname: 'host2',
      range: RANGE,
      blockSearch: 'lowest',
      log: silentLogger,
    });
    await a.useSubnets(await catalogOn(store));
    return a;
  }

  /** Every default-network block and address inside a created network's subnet, as "what cidr". */
  async function defaultUseInsideNetworks(store: Store): Promise<string[]> {
    const nets = (await store.list(NETWORKS_BY_NAME)).entries
      .map((e) => JSON.parse(e.value) as { name: string; subnet: string })
      .filter((n) => n.name !== DEFAULT)
      .map((n) => ({ name: n.name, subnet: parseCidr(n.subnet) }));
    const inside = (ip: number): { name: string; subnet: Cidr } | undefined => nets.find((n) => contains(n.subnet, ip));
    const out: string[] = [];
    for (const e of (await store.list(BLOCKS_PREFIX)).entries) {
      const k = parseAddrKey(e.key);
      const n = k ? inside(k.ip) : undefined;
      if (k && n && (JSON.parse(e.value) as BlockRecord).network === DEFAULT)
        out.push(`block ${formatIpv4(k.ip)} in ${n.name}`);
    }
    for (const e of (await store.list(ADDRS_PREFIX)).entries) {
      const k = parseAddrKey(e.key);
      const n = k ? inside(k.ip) : undefined;
      if (k && n && (JSON.parse(e.value) as AddrRecord).network === DEFAULT)
        out.push(`address ${formatIpv4(k.ip)} in ${n.name}`);
    }
    return out;
  }

  it('range compares hold exactly when no key of the range changed after the revision', async () => {
    await rangeCompareSemantics(client());
  });

  it('a block claimed while the create is between its check and its commit: the create is refused, naming the block', async () => {
    const creator = gate(client(), putsUnder(NETWORKS_BY_NAME + 'red'));
    const catalog = await catalogOn(creator.store);
    const host2 = client();
    const alloc = await defaultHost(host2);

    const create = catalog.create({ name: 'red', subnet: S });
    create.catch(() => undefined);
    await creator.reached;
    // The create has checked S (no default block there) and holds its commit. Host 2 takes
    // the lowest free block of the default network, which is inside S.
    const a = await alloc.allocate({ id: 'c1', ifname: 'eth0', network: DEFAULT });
    expect(contains(parseCidr(S), a.ip)).toBe(true);
    creator.release();

    await expect(create).rejects.toThrow(
      `subnet ${S} overlaps addresses of network ${DEFAULT} in use: block 10.32.0.0/26 of host host2; choose a subnet outside them, or leave the subnet out to have a free one picked`,
    );
    expect(await host2.get(NETWORKS_BY_NAME + 'red')).toBeUndefined();
  });

  it('a network created while a block claim is between its check and its commit: the claim takes a block outside the subnet', async () => {
    const host2 = gate(client(), putsUnder(BLOCKS_PREFIX));
    const alloc = await defaultHost(host2.store);
    const creatorStore = client();
    const catalog = await catalogOn(creatorStore);

    const allocation = alloc.allocate({ id: 'c1', ifname: 'eth0', network: DEFAULT });
    allocation.catch(() => undefined);
    const held = await host2.reached;
    // Host 2 decided on the lowest free block, inside S, and holds its claim.
    expect(held).toEqual([expect.objectContaining({ key: `${BLOCKS_PREFIX}0a200000` })]);
    const red = await catalog.create({ name: 'red', subnet: S });
    expect(red.subnet).toBe(S);
    host2.release();

    const a = await allocation;
    expect(contains(parseCidr(S), a.ip)).toBe(false);
    expect(await defaultUseInsideNetworks(creatorStore)).toEqual([]);
    // And it keeps allocating outside S.
    const b = await alloc.allocate({ id: 'c2', ifname: 'eth0', network: DEFAULT });
    expect(contains(parseCidr(S), b.ip)).toBe(false);
  });

  it('an address asked for inside S while the create is between its check and its commit: the create is refused, naming it', async () => {
    const creator = gate(client(), putsUnder(NETWORKS_BY_NAME + 'red'));
    const catalog = await catalogOn(creator.store);
    const host2 = client();
    const alloc = await defaultHost(host2);

    const create = catalog.create({ name: 'red', subnet: S });
    create.catch(() => undefined);
    await creator.reached;
    await alloc.allocate({ id: 'c1', ifname: 'eth0', network: DEFAULT, ip: parseIpv4('10.32.0.200') });
    creator.release();

    await expect(create).rejects.toThrow(
      `subnet ${S} overlaps addresses of network ${DEFAULT} in use: 10.32.0.200/32 of c1 on host 02:00:00:00:00:02`,
    );
    expect(await host2.get(NETWORKS_BY_NAME + 'red')).toBeUndefined();
  });

  it('a network created while an address asked for inside it is between its check and its commit: the address is refused', async () => {
    const host2 = gate(client(), putsUnder(ADDRS_PREFIX));
    const alloc = await defaultHost(host2.store);
    const creatorStore = client();
    const catalog = await catalogOn(creatorStore);

    const allocation = alloc.allocate({ id: 'c1', ifname: 'eth0', network: DEFAULT, ip: parseIpv4('10.32.0.200') });
    allocation.catch(() => undefined);
    await host2.reached;
    await catalog.create({ name: 'red', subnet: S });
    host2.release();

    await expect(allocation).rejects.toThrow(`10.32.0.200 is in network red's subnet ${S}, not on ${DEFAULT}`);
    expect(await defaultUseInsideNetworks(creatorStore)).toEqual([]);
  });

  it('a create without --subnet whose picked subnet was taken meanwhile picks another one', async () => {
    const creator = gate(client(), putsUnder(NETWORKS_BY_NAME + 'blue'));
    const catalog = await catalogOn(creator.store);
    const host2 = client();
    const alloc = await defaultHost(host2);

    const create = catalog.create({ name: 'blue' });
    const held = await creator.reached;
    const picked = parseCidr(
      (
        JSON.parse(
          held.find((op): op is Extract<TxnOp, { op: 'put' }> => op.op === 'put' && op.key.endsWith('/blue'))!.value,
        ) as { subnet: string }
      ).subnet,
    );
    const taken = (picked.base + 7) >>> 0;
    await alloc.allocate({ id: 'c1', ifname: 'eth0', network: DEFAULT, ip: taken });
    creator.release();

    const blue = await create;
    expect(blue.subnet).not.toBe(`${formatIpv4(picked.base)}/${picked.prefix}`);
    expect(contains(parseCidr(blue.subnet), taken)).toBe(false);
    expect(await defaultUseInsideNetworks(host2)).toEqual([]);
  });
});
