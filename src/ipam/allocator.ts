/**
 * The cluster allocator: per-host address blocks leased from the store, per-interface
 * addresses inside them. One instance per daemon; it owns its view of the blocks it
 * holds and is the only thing that writes IPAM keys for this host.
 *
 * Never a duplicate: an address is taken by creating its key ipam/addrs/<net>/<ip> with
 * a compare-and-create transaction, together with the (id, ifname) handle. Blocks only
 * decide where a host looks for free addresses (so hosts rarely contend); correctness
 * does not depend on them, nor on this process's cache, which may be stale at any time.
 *
 * Liveness: a host is alive while its registration hosts/<name> exists; that key rides
 * on the host's lease (kept alive by the store client). Once it is gone (TTL passed,
 * or `weavets rmpeer`), any host may delete the dead host's allocations and then its
 * blocks, each deletion guarded by "the registration is still absent", so a host that
 * comes back in the middle keeps what it re-asserts.
 */
import type { Logger } from '../log';
import { WeavetsError } from '../errors';
import { contains, formatCidr, formatIpv4, parseIpv4, type Cidr } from './cidr';
import { createIfAbsent, type KvEntry, type Store, type TxnOp } from '../store/types';
import {
  ADDRS_PREFIX,
  BLOCKS_PREFIX,
  CONFIG_KEY,
  DEFAULT_BLOCK_PREFIX,
  HOSTS_PREFIX,
  addrKey,
  addrPrefixOfBlock,
  blockAt,
  blockIndexOf,
  blockKey,
  checkBlockPrefix,
  firstFreeInBlock,
  handleKey,
  hashedBlockIndex,
  hostKey,
  isReserved,
  lowestFreeBlock,
  parseAddrKey,
  usableCount,
  type AddrRecord,
  type BlockRecord,
  type ClusterConfig,
  type HandleRecord,
} from './blocks';
import type { AddressAllocator, Allocation, AllocationRequest } from './types';
import type { HeldAddress } from './reconcile';

export interface BlockAllocatorOptions {
  store: Store;
  /** This host's peer name. */
  self: string;
  nickname: string;
  range: Cidr;
  /** Block size wanted when this host creates the cluster config; undefined: default, and accept the cluster's. */
  blockPrefix?: number;
  /**
   * Where a new block is looked for: "lowest" free (a shared store arbitrates), or
   * "hashed" from the peer name (the embedded store: hosts cannot see each other's blocks).
   */
  blockSearch?: 'lowest' | 'hashed';
  log: Logger;
}

export type OperationObserver = (op: 'allocate' | 'release', outcome: string, seconds: number) => void;

interface OwnBlock {
  cidr: Cidr;
  /** Offset to start the next search from. */
  hint: number;
}

interface NetState {
  blocks: Map<number, OwnBlock>;
  /** Addresses known to be taken (ours and others'); may be stale, never relied on for safety. */
  busy: Set<number>;
  /** Candidates in flight in this process. */
  pending: Set<number>;
  acquiring: Promise<void> | undefined;
}

export interface BlockUsage {
  cidr: string;
  used: number;
  free: number;
}

export interface NetworkUsage {
  network: string;
  blocks: BlockUsage[];
  used: number;
  free: number;
}

export interface ReclaimResult {
  blocks: string[];
  addresses: number;
}

const MAX_ATTEMPTS = 64;

export class BlockAllocator implements AddressAllocator {
  private readonly nets = new Map<string, NetState>();
  /** handle key -> what it holds, for handles held by this host. */
  private readonly mine = new Map<string, Allocation>();
  private observer: OperationObserver | undefined;
  readonly blockPrefix: number;

  private constructor(
    private readonly opts: BlockAllocatorOptions,
    readonly config: ClusterConfig,
  ) {
    this.blockPrefix = config.blockPrefix;
  }

  /** Agree on the cluster config, then load this host's blocks and allocations. */
  static async open(opts: BlockAllocatorOptions): Promise<BlockAllocator> {
    const config = await ensureClusterConfig(opts.store, opts.range, opts.blockPrefix);
    const a = new BlockAllocator(opts, config);
    await a.resync();
    return a;
  }

  get self(): string {
    return this.opts.self;
  }

  private get store(): Store {
    return this.opts.store;
  }

  private net(network: string): NetState {
    let st = this.nets.get(network);
    if (!st) {
      st = { blocks: new Map(), busy: new Set(), pending: new Set(), acquiring: undefined };
      this.nets.set(network, st);
    }
    return st;
  }

  private result(id: string, ifname: string, network: string, ip: number): Allocation {
    return { id, ifname, network, ip, address: `${formatIpv4(ip)}/${this.opts.range.prefix}` };
  }

  /**
   * Reload from the store: the blocks this host owns and every allocation (a restart, or
   * the lease was lost and we registered again). Cheap enough: one listing each.
   */
  async resync(): Promise<void> {
    const [blocks, addrs] = await Promise.all([this.store.list(BLOCKS_PREFIX), this.store.list(ADDRS_PREFIX)]);
    for (const st of this.nets.values()) st.blocks.clear();
    for (const e of blocks.entries) {
      const k = parseAddrKey(e.key);
      const rec = parseJson<BlockRecord>(e.value);
      if (!k || !rec || rec.owner !== this.opts.self) continue;
      this.net(k.network).blocks.set(k.ip, { cidr: { base: k.ip, prefix: this.blockPrefix }, hint: 0 });
    }
    for (const st of this.nets.values()) st.busy.clear();
    for (const e of addrs.entries) {
      const k = parseAddrKey(e.key);
      const rec = parseJson<AddrRecord>(e.value);
      if (!k || !rec) continue;
      this.net(k.network).busy.add(k.ip);
      if (rec.host === this.opts.self) this.mine.set(handleKey(rec.id, rec.ifname), this.result(rec.id, rec.ifname, k.network, k.ip));
    }
  }

  /** Write every allocation we hold again (after our registration was lost); conflicts are logged. */
  async reassert(): Promise<void> {
    const held = [...this.mine.values()];
    this.mine.clear();
    await this.resync();
    for (const a of held) {
      try {
        await this.claim({ id: a.id, ifname: a.ifname, network: a.network, ip: a.ip });
      } catch (err) {
        this.opts.log.error('could not re-assert an address after losing our registration', {
          id: a.id,
          ifname: a.ifname,
          address: a.address,
          error: (err as Error).message,
        });
      }
    }
  }

  /** Be told the duration and outcome of every allocate and release (metrics). */
  observe(fn: OperationObserver): void {
    this.observer = fn;
  }

  async allocate(req: AllocationRequest): Promise<Allocation> {
    return this.timed('allocate', () => this.doAllocate(req));
  }

  claim(req: AllocationRequest & { ip: number }): Promise<Allocation> {
    return this.allocate(req);
  }

  async release(id: string, ifname: string): Promise<Allocation | undefined> {
    return this.timed('release', () => this.doRelease(id, ifname));
  }

  private async timed<T>(op: 'allocate' | 'release', fn: () => Promise<T>): Promise<T> {
    const t0 = process.hrtime.bigint();
    let outcome = 'ok';
    try {
      return await fn();
    } catch (err) {
      outcome = err instanceof WeavetsError ? err.code : 'EWEAVETS_INTERNAL';
      throw err;
    } finally {
      this.observer?.(op, outcome, Number(process.hrtime.bigint() - t0) / 1e9);
    }
  }

  private async doAllocate(req: AllocationRequest): Promise<Allocation> {
    const hk = handleKey(req.id, req.ifname);
    const have = this.mine.get(hk);
    if (have) return this.checkSame(req, have);
    if (req.ip !== undefined) {
      if (!contains(this.opts.range, req.ip)) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `${formatIpv4(req.ip)} is outside the range ${formatCidr(this.opts.range)}`);
      }
      if (isReserved(this.opts.range, req.ip)) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `${formatIpv4(req.ip)} is the range's network or broadcast address`);
      }
    }
    const st = this.net(req.network);
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const ip = req.ip ?? (await this.pickFree(req.network));
      try {
        let r;
        try {
          r = await this.store.txn(
            [
              { key: addrKey(req.network, ip), modRevision: 0 },
              { key: hk, modRevision: 0 },
            ],
            this.putOps(req, ip),
          );
        } catch (err) {
          // A call that failed (a timeout above all) may have committed all the same: look
          // rather than assume it did not. If the store cannot tell us now, the reconciler
          // (reconcile.ts) releases the address later unless something here claims it.
          const committed = await this.committedDespite(req, ip).catch(() => undefined);
          if (committed) return committed;
          throw err;
        }
        if (r.succeeded) {
          st.busy.add(ip);
          const a = this.result(req.id, req.ifname, req.network, ip);
          this.mine.set(hk, a);
          return a;
        }
      } finally {
        if (req.ip === undefined) st.pending.delete(ip);
      }
      // Why not: the handle exists (idempotent repeat, or the container moved here), or
      // someone else holds the address.
      const [handle, addr] = await Promise.all([this.store.get(hk), this.store.get(addrKey(req.network, ip))]);
      if (handle) {
        const moved = await this.adoptHandle(req, handle);
        if (moved) return moved;
        continue;
      }
      if (addr) {
        st.busy.add(ip);
        if (req.ip !== undefined) {
          const rec = parseJson<AddrRecord>(addr.value);
          throw new WeavetsError(
            'EWEAVETS_CONFLICT',
            `${formatIpv4(ip)} is already in use by ${rec ? `${rec.id} (${rec.ifname}) on host ${rec.host}` : 'another container'}`,
          );
        }
      }
    }
    throw new WeavetsError('EWEAVETS_INTERNAL', `could not allocate an address for ${req.id} after ${MAX_ATTEMPTS} attempts (heavy contention)`);
  }

  /** After a failed allocation call: did it commit? The allocation if so (and now ours). */
  private async committedDespite(req: AllocationRequest, ip: number): Promise<Allocation | undefined> {
    const hk = handleKey(req.id, req.ifname);
    const handle = await this.store.get(hk);
    const rec = handle ? parseJson<HandleRecord>(handle.value) : undefined;
    if (!rec || rec.host !== this.opts.self || rec.network !== req.network || rec.ip !== formatIpv4(ip)) return undefined;
    const a = this.result(req.id, req.ifname, req.network, ip);
    this.net(req.network).busy.add(ip);
    this.mine.set(hk, a);
    this.opts.log.info('a store call reported as failed had committed; keeping the allocation', { id: req.id, ifname: req.ifname, address: a.address });
    return a;
  }

  /**
   * Release an address the reconciler found unwanted, only if its record is still the one
   * it saw (same revision), with its handle when the handle points at it. false: it changed
   * (claimed again, released, moved) and is left alone.
   */
  async releaseIfUnchanged(held: HeldAddress): Promise<boolean> {
    const ak = addrKey(held.network, held.ip);
    const hk = handleKey(held.id, held.ifname);
    const handle = await this.store.get(hk);
    const h = handle ? parseJson<HandleRecord>(handle.value) : undefined;
    const ownsHandle = handle !== undefined && h?.network === held.network && h.ip === formatIpv4(held.ip);
    const r = await this.store.txn(
      [{ key: ak, modRevision: held.modRevision }, ...(ownsHandle ? [{ key: hk, modRevision: handle.modRevision }] : [])],
      [{ op: 'delete', key: ak }, ...(ownsHandle ? [{ op: 'delete' as const, key: hk }] : [])],
    );
    if (!r.succeeded) return false;
    const mine = this.mine.get(hk);
    if (mine && mine.network === held.network && mine.ip === held.ip) this.mine.delete(hk);
    this.nets.get(held.network)?.busy.delete(held.ip);
    return true;
  }

  private checkSame(req: AllocationRequest, have: Allocation): Allocation {
    if (have.network !== req.network) {
      throw new WeavetsError(
        'EWEAVETS_CONFLICT',
        `${req.id} (${req.ifname}) already holds ${have.address} on network ${have.network}; release it first`,
      );
    }
    if (req.ip !== undefined && req.ip !== have.ip) {
      throw new WeavetsError('EWEAVETS_CONFLICT', `${req.id} (${req.ifname}) already holds ${have.address}; release it first`);
    }
    return have;
  }

  private putOps(req: AllocationRequest, ip: number): TxnOp[] {
    const addr: AddrRecord = { id: req.id, ifname: req.ifname, host: this.opts.self, ...(req.unattached === true ? { unattached: true as const } : {}) };
    const handle: HandleRecord = { network: req.network, ip: formatIpv4(ip), host: this.opts.self };
    return [
      { op: 'put', key: addrKey(req.network, ip), value: JSON.stringify(addr) },
      { op: 'put', key: handleKey(req.id, req.ifname), value: JSON.stringify(handle) },
    ];
  }

  /**
   * The handle exists already: ours (a repeat) or another host's (the container moved
   * here): take it over in one transaction. undefined: it changed under us, try again.
   */
  private async adoptHandle(req: AllocationRequest, handle: KvEntry): Promise<Allocation | undefined> {
    const rec = parseJson<HandleRecord>(handle.value);
    if (!rec) throw new WeavetsError('EWEAVETS_INTERNAL', `unreadable IPAM record ${handle.key}`);
    const ip = parseIpv4(rec.ip);
    const have = this.result(req.id, req.ifname, rec.network, ip);
    this.checkSame(req, have);
    if (rec.host !== this.opts.self) {
      const ak = addrKey(rec.network, ip);
      const addr = await this.store.get(ak);
      const r = await this.store.txn(
        [
          { key: handle.key, modRevision: handle.modRevision },
          { key: ak, modRevision: addr?.modRevision ?? 0 },
        ],
        this.putOps(req, ip),
      );
      if (!r.succeeded) return undefined;
      this.opts.log.info('took over an address from another host', { id: req.id, ifname: req.ifname, address: have.address, from: rec.host });
    }
    this.net(rec.network).busy.add(ip);
    this.mine.set(handle.key, have);
    return have;
  }

  private async doRelease(id: string, ifname: string): Promise<Allocation | undefined> {
    const hk = handleKey(id, ifname);
    for (let attempt = 0; attempt < 8; attempt++) {
      // When we know what the handle holds, read both records in one round trip.
      const known = this.mine.get(hk);
      const guess = known ? addrKey(known.network, known.ip) : undefined;
      const [handle, guessed] = await Promise.all([this.store.get(hk), guess ? this.store.get(guess) : Promise.resolve(undefined)]);
      if (!handle) {
        this.mine.delete(hk);
        return undefined;
      }
      const rec = parseJson<HandleRecord>(handle.value);
      if (!rec) throw new WeavetsError('EWEAVETS_INTERNAL', `unreadable IPAM record ${hk}`);
      const ip = parseIpv4(rec.ip);
      const ak = addrKey(rec.network, ip);
      const addr = ak === guess ? guessed : await this.store.get(ak);
      const a = addr ? parseJson<AddrRecord>(addr.value) : undefined;
      const ownsAddr = addr !== undefined && a?.id === id && a.ifname === ifname;
      const r = await this.store.txn(
        ownsAddr
          ? [
              { key: hk, modRevision: handle.modRevision },
              { key: ak, modRevision: addr.modRevision },
            ]
          : [{ key: hk, modRevision: handle.modRevision }],
        ownsAddr
          ? [
              { op: 'delete', key: hk },
              { op: 'delete', key: ak },
            ]
          : [{ op: 'delete', key: hk }],
      );
      if (!r.succeeded) continue;
      this.mine.delete(hk);
      if (ownsAddr) this.nets.get(rec.network)?.busy.delete(ip);
      return this.result(id, ifname, rec.network, ip);
    }
    throw new WeavetsError('EWEAVETS_INTERNAL', `could not release ${id} (${ifname}): it kept changing`);
  }

  /** A free candidate from our blocks (reserved in `pending`), taking a new block if all are full. */
  private async pickFree(network: string): Promise<number> {
    const st = this.net(network);
    for (;;) {
      for (const b of st.blocks.values()) {
        const ip = firstFreeInBlock(this.opts.range, b.cidr, (x) => st.busy.has(x) || st.pending.has(x), b.hint);
        if (ip !== undefined) {
          st.pending.add(ip);
          b.hint = ip - b.cidr.base + 1;
          return ip;
        }
      }
      if (!st.acquiring) {
        st.acquiring = this.acquireBlock(network).finally(() => {
          st.acquiring = undefined;
        });
      }
      await st.acquiring;
    }
  }

  private async acquireBlock(network: string): Promise<void> {
    const st = this.net(network);
    const { range } = this.opts;
    for (let round = 0; round < 8; round++) {
      const listing = await this.store.list(`${BLOCKS_PREFIX}${network}/`);
      const taken = new Set<number>();
      let lost: Cidr | undefined;
      for (const e of listing.entries) {
        const k = parseAddrKey(e.key);
        if (!k) continue;
        taken.add(blockIndexOf(range, this.blockPrefix, k.ip));
        // Ours, yet not in our view: a block creation reported as failed (a timeout) that
        // committed all the same. Use it rather than leave it idle and take another.
        if (!lost && !st.blocks.has(k.ip) && parseJson<BlockRecord>(e.value)?.owner === this.opts.self) lost = { base: k.ip, prefix: this.blockPrefix };
      }
      if (lost) {
        await this.useBlock(network, lost);
        this.opts.log.info('found an address block of ours that a failed store call had created', { network, block: formatCidr(lost) });
        return;
      }
      const start = this.opts.blockSearch === 'hashed' ? hashedBlockIndex(range, this.blockPrefix, this.opts.self) : 0;
      for (;;) {
        const index = lowestFreeBlock(range, this.blockPrefix, taken, start);
        if (index === undefined) break;
        taken.add(index);
        const block = blockAt(range, this.blockPrefix, index);
        const rec: BlockRecord = { owner: this.opts.self, nickname: this.opts.nickname };
        if (!(await createIfAbsent(this.store, blockKey(network, block.base), JSON.stringify(rec)))) continue;
        await this.useBlock(network, block);
        this.opts.log.info('took a new address block', { network, block: formatCidr(block) });
        return;
      }
      // Every block is taken: blocks of dead hosts may come back.
      const freed = await this.reclaim();
      if (freed.blocks.length === 0) {
        throw new WeavetsError(
          'EWEAVETS_RANGE_EXHAUSTED',
          `no free address on network ${network}: this host's blocks are full and every /${this.blockPrefix} block of ${formatCidr(range)} is taken`,
        );
      }
    }
    throw new WeavetsError('EWEAVETS_INTERNAL', `could not take an address block on network ${network} (heavy contention)`);
  }

  /** Start allocating from a block we own: note what is taken in it already. */
  private async useBlock(network: string, block: Cidr): Promise<void> {
    const st = this.net(network);
    // A block may hold addresses already: a --ip, or live leftovers of a reclaimed block.
    const inside = await this.store.list(addrPrefixOfBlock(network, block));
    for (const e of inside.entries) {
      const k = parseAddrKey(e.key);
      if (k && contains(block, k.ip)) st.busy.add(k.ip);
    }
    st.blocks.set(block.base, { cidr: block, hint: 0 });
  }

  /**
   * Delete allocations held by hosts that are not registered (dead past their TTL, or
   * removed with rmpeer), then the blocks of such hosts that no live allocation remains
   * in. With `only`, consider just that host dead, whether registered or not.
   */
  async reclaim(only?: string): Promise<ReclaimResult> {
    const hosts = await this.store.list(HOSTS_PREFIX);
    const live = new Set(hosts.entries.map((e) => e.key.slice(HOSTS_PREFIX.length)));
    live.add(this.opts.self);
    if (only !== undefined) live.delete(only);
    const dead = (host: string): boolean => (only === undefined ? !live.has(host) : host === only);
    const [blocks, addrs] = await Promise.all([this.store.list(BLOCKS_PREFIX), this.store.list(ADDRS_PREFIX)]);
    const result: ReclaimResult = { blocks: [], addresses: 0 };
    const liveIn = new Set<string>(); // block keys with a live allocation inside
    for (const e of addrs.entries) {
      const k = parseAddrKey(e.key);
      const rec = parseJson<AddrRecord>(e.value);
      if (!k || !rec) continue;
      const bk = blockKey(k.network, blockAt(this.opts.range, this.blockPrefix, blockIndexOf(this.opts.range, this.blockPrefix, k.ip)).base);
      if (!dead(rec.host)) {
        liveIn.add(bk);
        continue;
      }
      const hk = handleKey(rec.id, rec.ifname);
      const handle = await this.store.get(hk);
      const h = handle ? parseJson<HandleRecord>(handle.value) : undefined;
      const ownsHandle = handle !== undefined && h?.network === k.network && h.ip === formatIpv4(k.ip);
      const r = await this.store.txn(
        [
          { key: e.key, modRevision: e.modRevision },
          { key: hostKey(rec.host), modRevision: 0 },
          ...(ownsHandle ? [{ key: hk, modRevision: handle.modRevision }] : []),
        ],
        [{ op: 'delete', key: e.key }, ...(ownsHandle ? [{ op: 'delete' as const, key: hk }] : [])],
      );
      if (r.succeeded) {
        result.addresses++;
        this.nets.get(k.network)?.busy.delete(k.ip);
      } else {
        liveIn.add(bk);
      }
    }
    for (const e of blocks.entries) {
      const rec = parseJson<BlockRecord>(e.value);
      if (!rec || !dead(rec.owner) || liveIn.has(e.key)) continue;
      const r = await this.store.txn(
        [
          { key: e.key, modRevision: e.modRevision },
          { key: hostKey(rec.owner), modRevision: 0 },
        ],
        [{ op: 'delete', key: e.key }],
      );
      if (!r.succeeded) continue;
      const k = parseAddrKey(e.key)!;
      const cidr = formatCidr({ base: k.ip, prefix: this.blockPrefix });
      result.blocks.push(`${k.network} ${cidr}`);
      this.opts.log.info('reclaimed the block of a dead host', { network: k.network, block: cidr, owner: rec.owner, nickname: rec.nickname });
    }
    if (result.addresses > 0) this.opts.log.info('released addresses of dead hosts', { count: result.addresses });
    return result;
  }

  /** Give up everything this host holds (weavets reset). */
  async leave(): Promise<void> {
    for (const a of [...this.mine.values()]) await this.release(a.id, a.ifname);
    const blocks = await this.store.list(BLOCKS_PREFIX);
    for (const e of blocks.entries) {
      if (parseJson<BlockRecord>(e.value)?.owner === this.opts.self) {
        await this.store.txn([{ key: e.key, modRevision: e.modRevision }], [{ op: 'delete', key: e.key }]);
      }
    }
    this.nets.clear();
  }

  /** This host's blocks and how full they are (from this process's view; no store call). */
  usage(): NetworkUsage[] {
    const out: NetworkUsage[] = [];
    for (const [network, st] of [...this.nets.entries()].sort(([a], [b]) => a.localeCompare(b))) {
      if (st.blocks.size === 0) continue;
      const blocks: BlockUsage[] = [];
      for (const b of [...st.blocks.values()].sort((x, y) => x.cidr.base - y.cidr.base)) {
        let used = 0;
        for (const ip of st.busy) if (contains(b.cidr, ip)) used++;
        blocks.push({ cidr: formatCidr(b.cidr), used, free: usableCount(this.opts.range, b.cidr) - used });
      }
      out.push({
        network,
        blocks,
        used: blocks.reduce((s, b) => s + b.used, 0),
        free: blocks.reduce((s, b) => s + b.free, 0),
      });
    }
    return out;
  }

  /** Allocations this host holds. */
  held(): Allocation[] {
    return [...this.mine.values()];
  }
}

/** Create the cluster config once; afterwards every host must agree with it. */
export async function ensureClusterConfig(store: Store, range: Cidr, blockPrefix?: number): Promise<ClusterConfig> {
  const want: ClusterConfig = { range: formatCidr(range), blockPrefix: blockPrefix ?? DEFAULT_BLOCK_PREFIX };
  const bad = checkBlockPrefix(range, want.blockPrefix);
  if (bad) throw new WeavetsError('EWEAVETS_BAD_REQUEST', bad);
  if (await createIfAbsent(store, CONFIG_KEY, JSON.stringify(want))) return want;
  const entry = await store.get(CONFIG_KEY);
  const have = entry ? parseJson<ClusterConfig>(entry.value) : undefined;
  if (!have || typeof have.range !== 'string' || typeof have.blockPrefix !== 'number') {
    throw new WeavetsError('EWEAVETS_INTERNAL', `the cluster IPAM config in ${store.location} (${CONFIG_KEY}) is unreadable`);
  }
  if (have.range !== want.range) {
    throw new WeavetsError(
      'EWEAVETS_RANGE_CONFLICT',
      `--ipalloc-range ${want.range} conflicts with the cluster's range ${have.range} (stored in ${store.location} at ${CONFIG_KEY}); launch with --ipalloc-range ${have.range}`,
    );
  }
  if (blockPrefix !== undefined && have.blockPrefix !== blockPrefix) {
    throw new WeavetsError(
      'EWEAVETS_RANGE_CONFLICT',
      `--ipalloc-block /${blockPrefix} conflicts with the cluster's block size /${have.blockPrefix} (stored in ${store.location}); leave the flag out or use /${have.blockPrefix}`,
    );
  }
  return have;
}

function parseJson<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}
