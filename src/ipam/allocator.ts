/**
 * The cluster allocator: per-host address blocks leased from the store, per-interface
 * addresses inside them. One instance per daemon; it owns its view of the blocks it
 * holds and is the only thing that writes IPAM keys for this host.
 *
 * Never a duplicate, across every network: an address is taken by creating its key
 * ipam/addrs/<ip> (one key per address, whatever the network) with a compare-and-create
 * transaction, together with the (id, ifname) handle. Blocks (ipam/blocks/<base>, one
 * network each) only decide where a host looks for free addresses (so hosts rarely
 * contend); correctness does not depend on them, nor on this process's cache, which may
 * be stale at any time. Each network's addresses come from its subnet (NetworkSubnets).
 *
 * Retention: a release with `retainMs` keeps the address record, marked retainedUntil, and
 * the handle: the same (id, ifname) allocating again on any host takes both over; nobody
 * else can take the address until the sweep deletes it after that time.
 *
 * Liveness: a host is alive while its registration hosts/<name> exists; that key rides
 * on the host's lease (kept alive by the store client). Once it is gone (TTL passed,
 * or `weavets rmpeer`), any host may delete the dead host's allocations and then its
 * blocks, each deletion guarded by "the registration is still absent", so a host that
 * comes back in the middle keeps what it re-asserts. Reservations are kept until they
 * expire, dead host or not: that is what lets a container move.
 */
import type { Logger } from '../log';
import { WeavetsError } from '../errors';
import { cidrSize, contains, formatCidr, formatIpv4, parseIpv4, type Cidr } from '../net/ipv4';
import { createIfAbsent, type Compare, type KvEntry, type Store, type TxnOp } from '../store/types';
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
  overlaps,
  parseAddrKey,
  parseLegacyKey,
  usableCount,
  type AddrRecord,
  type BlockRecord,
  type ClusterConfig,
  type HandleRecord,
} from './blocks';
import type {
  AddressAllocator,
  Allocation,
  AllocationRequest,
  NetworkSubnet,
  NetworkSubnets,
  ReleaseOptions,
} from './types';
import type { HeldAddress } from './reconcile';
import { compareText } from '../text-order';

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
  blockSearch?: 'lowest' | 'hashed' | 'share';
  /**
   * With "share" (the mesh store): this host's rank among the registered hosts and their
   * number. It tries the free blocks of its share (index mod `of` = `rank`) first, so hosts
   * rarely claim the same block, even on both sides of a partition.
   */
  share?: () => { rank: number; of: number };
  /** Wall clock in ms (tests move it); default Date.now. */
  now?: () => number;
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
  acquiring: Promise<boolean> | undefined;
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

/** An allocation as the store has it, with who holds it (for `network rm` and status). */
export interface StoredAllocation {
  id: string;
  ifname: string;
  host: string;
  network: string;
  address: string;
  retainedUntil?: number;
}

const MAX_ATTEMPTS = 64;

/** Every network's subnet is the whole range: what a bare allocator (unit tests) uses. */
export function wholeRangeSubnets(range: Cidr): NetworkSubnets {
  return { subnetOf: () => Promise.resolve({ subnet: range, exclude: [] }) };
}

export class BlockAllocator implements AddressAllocator {
  private readonly nets = new Map<string, NetState>();
  /** Addresses known to be taken (any network, ours and others'); may be stale, never relied on for safety. */
  private readonly busy = new Set<number>();
  /** Candidates in flight in this process. */
  private readonly pending = new Set<number>();
  /** handle key -> what it holds, for handles held (in use) by this host. */
  private readonly mine = new Map<string, Allocation>();
  private observer: OperationObserver | undefined;
  private subnets: NetworkSubnets;
  readonly blockPrefix: number;

  private constructor(
    private readonly opts: BlockAllocatorOptions,
    readonly config: ClusterConfig,
  ) {
    this.blockPrefix = config.blockPrefix;
    this.subnets = wholeRangeSubnets(opts.range);
  }

  /** Agree on the cluster config, move legacy keys, then load this host's blocks and allocations. */
  static async open(opts: BlockAllocatorOptions): Promise<BlockAllocator> {
    const config = await ensureClusterConfig(opts.store, opts.range, opts.blockPrefix);
    const a = new BlockAllocator(opts, config);
    await a.migrateLegacyKeys();
    await a.resync();
    return a;
  }

  get self(): string {
    return this.opts.self;
  }

  private get store(): Store {
    return this.opts.store;
  }

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** Where each network's subnet comes from (the network catalog); default: the whole range. Reloads. */
  async useSubnets(subnets: NetworkSubnets): Promise<void> {
    this.subnets = subnets;
    this.mine.clear();
    await this.resync();
  }

  private net(network: string): NetState {
    let st = this.nets.get(network);
    if (!st) {
      st = { blocks: new Map(), acquiring: undefined };
      this.nets.set(network, st);
    }
    return st;
  }

  private result(id: string, ifname: string, network: string, ip: number, subnet: Cidr): Allocation {
    return { id, ifname, network, ip, address: `${formatIpv4(ip)}/${subnet.prefix}` };
  }

  /**
   * Stores written before addresses were keyed by address alone: move every
   * ipam/{addrs,blocks}/<network>/<hex> to its new key, once, each move one transaction.
   */
  private async migrateLegacyKeys(): Promise<void> {
    for (const prefix of [ADDRS_PREFIX, BLOCKS_PREFIX]) {
      const { entries } = await this.store.list(prefix);
      for (const e of entries) {
        const k = parseLegacyKey(e.key);
        if (!k) continue;
        const rec = parseJson<Record<string, unknown>>(e.value);
        if (!rec) continue;
        const newKey = k.kind === 'addrs' ? addrKey(k.ip) : blockKey(k.ip);
        const r = await this.store.txn(
          [
            { key: e.key, modRevision: e.modRevision },
            { key: newKey, modRevision: 0 },
          ],
          [
            { op: 'put', key: newKey, value: JSON.stringify({ ...rec, network: k.network }) },
            { op: 'delete', key: e.key },
          ],
        );
        if (!r.succeeded && (await this.store.get(newKey)) !== undefined) {
          this.opts.log.error("a legacy IPAM key clashes with another network's; keeping the newer one", {
            key: e.key,
            clash: newKey,
          });
          await this.store.txn([{ key: e.key, modRevision: e.modRevision }], [{ op: 'delete', key: e.key }]);
        }
      }
    }
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
      if (!k || !rec || rec.owner !== this.opts.self || typeof rec.network !== 'string') continue;
      this.net(rec.network).blocks.set(k.ip, { cidr: { base: k.ip, prefix: this.blockPrefix }, hint: 0 });
    }
    this.busy.clear();
    for (const e of addrs.entries) {
      const k = parseAddrKey(e.key);
      const rec = parseJson<AddrRecord>(e.value);
      if (!k || !rec) continue;
      this.busy.add(k.ip);
      if (rec.host === this.opts.self && rec.retainedUntil === undefined) {
        const { subnet } = await this.subnetFor(rec.network);
        this.mine.set(handleKey(rec.id, rec.ifname), this.result(rec.id, rec.ifname, rec.network, k.ip, subnet));
      }
    }
  }

  /** A network's subnet; a network the catalog no longer has keeps the whole range (to release it). */
  private async subnetFor(network: string): Promise<NetworkSubnet> {
    try {
      return await this.subnets.subnetOf(network);
    } catch (err) {
      if (err instanceof WeavetsError && err.code === 'EWEAVETS_NOT_FOUND')
        return { subnet: this.opts.range, exclude: [] };
      throw err;
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

  async release(id: string, ifname: string, opts: ReleaseOptions = {}): Promise<Allocation | undefined> {
    return this.timed('release', () => this.doRelease(id, ifname, opts.retainMs ?? 0));
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

  /** Why `ip` cannot be asked for on a network with `sub`, or undefined when it can. */
  private requestProblem(network: string, sub: NetworkSubnet, ip: number): string | undefined {
    if (!contains(this.opts.range, ip)) return `${formatIpv4(ip)} is outside the range ${formatCidr(this.opts.range)}`;
    if (!contains(sub.subnet, ip))
      return `${formatIpv4(ip)} is not in network ${network}'s subnet ${formatCidr(sub.subnet)}`;
    if (isReserved(this.opts.range, ip)) return `${formatIpv4(ip)} is the range's network or broadcast address`;
    if (isReserved(sub.subnet, ip))
      return `${formatIpv4(ip)} is the network or broadcast address of ${network}'s subnet ${formatCidr(sub.subnet)}`;
    const other = sub.exclude.find((x) => contains(x.subnet, ip));
    if (other)
      return `${formatIpv4(ip)} is in network ${other.network}'s subnet ${formatCidr(other.subnet)}, not on ${network}`;
    return undefined;
  }

  private async doAllocate(req: AllocationRequest): Promise<Allocation> {
    const hk = handleKey(req.id, req.ifname);
    const have = this.mine.get(hk);
    if (have) return this.checkSame(req, have);
    const cached = await this.subnets.subnetOf(req.network);
    if (req.ip !== undefined) {
      const bad = this.requestProblem(req.network, cached, req.ip);
      if (bad) throw new WeavetsError('EWEAVETS_BAD_REQUEST', bad);
    }
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const { ip, sub } = await this.candidate(req, cached);
      try {
        let r;
        try {
          r = await this.store.txn(
            [{ key: addrKey(ip), modRevision: 0 }, { key: hk, modRevision: 0 }, ...guardOf(sub)],
            this.putOps(req, ip),
          );
        } catch (err) {
          // A call that failed (a timeout above all) may have committed all the same: look
          // rather than assume it did not. If the store cannot tell us now, the reconciler
          // (reconcile.ts) releases the address later unless something here claims it.
          const committed = await this.committedDespite(req, ip, sub.subnet).catch(() => undefined);
          if (committed) return committed;
          throw err;
        }
        if (r.succeeded) {
          this.busy.add(ip);
          const a = this.result(req.id, req.ifname, req.network, ip, sub.subnet);
          this.mine.set(hk, a);
          return a;
        }
      } finally {
        if (req.ip === undefined) this.pending.delete(ip);
      }
      // Why not: the handle exists (idempotent repeat, a reservation, or the container
      // moved here), or someone else holds the address.
      const [handle, addr] = await Promise.all([this.store.get(hk), this.store.get(addrKey(ip))]);
      if (handle) {
        const moved = await this.adoptHandle(req, handle);
        if (moved) return moved;
        continue;
      }
      if (addr) {
        this.busy.add(ip);
        if (req.ip !== undefined) {
          const rec = parseJson<AddrRecord>(addr.value);
          throw new WeavetsError('EWEAVETS_CONFLICT', `${formatIpv4(ip)} is ${describeHolder(rec)}`);
        }
      }
    }
    throw new WeavetsError(
      'EWEAVETS_INTERNAL',
      `could not allocate an address for ${req.id} after ${MAX_ATTEMPTS} attempts (heavy contention)`,
    );
  }

  /**
   * The address to try, and the subnet view it was decided on. From this host's blocks
   * the cached view does: a block was claimed under the catalog guard, so no network's
   * subnet covers it while it exists. An address asked for by number, or borrowed from a
   * full subnet, may lie anywhere: it is checked against the catalog as the store has it
   * now, and the transaction carries that read's guard.
   */
  private async candidate(req: AllocationRequest, cached: NetworkSubnet): Promise<{ ip: number; sub: NetworkSubnet }> {
    if (req.ip === undefined) return this.pickFree(req.network, cached);
    const sub = await this.subnetForClaim(req.network, cached);
    const bad = this.requestProblem(req.network, sub, req.ip);
    if (bad) throw new WeavetsError('EWEAVETS_BAD_REQUEST', bad);
    return { ip: req.ip, sub };
  }

  /** The network's subnet read from the store with its guard (NetworkSubnets.subnetFromStore), or `cached` when exact. */
  private async subnetForClaim(network: string, cached: NetworkSubnet): Promise<NetworkSubnet> {
    return this.subnets.subnetFromStore ? this.subnets.subnetFromStore(network) : cached;
  }

  /** Does a guard taken with a subnet read still hold (the catalog has not changed since)? */
  private async guardHolds(sub: NetworkSubnet): Promise<boolean> {
    if (!sub.guard) return true;
    const e = await this.store.get(sub.guard.key);
    return (e?.modRevision ?? 0) === sub.guard.modRevision;
  }

  /** After a failed allocation call: did it commit? The allocation if so (and now ours). */
  private async committedDespite(req: AllocationRequest, ip: number, subnet: Cidr): Promise<Allocation | undefined> {
    const hk = handleKey(req.id, req.ifname);
    const handle = await this.store.get(hk);
    const rec = handle ? parseJson<HandleRecord>(handle.value) : undefined;
    if (!rec || rec.host !== this.opts.self || rec.network !== req.network || rec.ip !== formatIpv4(ip))
      return undefined;
    const a = this.result(req.id, req.ifname, req.network, ip, subnet);
    this.busy.add(ip);
    this.mine.set(hk, a);
    this.opts.log.info('a store call reported as failed had committed; keeping the allocation', {
      id: req.id,
      ifname: req.ifname,
      address: a.address,
    });
    return a;
  }

  /**
   * Release an address the reconciler found unwanted, only if its record is still the one
   * it saw (same revision), with its handle when the handle points at it. false: it changed
   * (claimed again, released, moved) and is left alone.
   */
  async releaseIfUnchanged(held: HeldAddress): Promise<boolean> {
    const ak = addrKey(held.ip);
    const hk = handleKey(held.id, held.ifname);
    const handle = await this.store.get(hk);
    const h = handle ? parseJson<HandleRecord>(handle.value) : undefined;
    const ownsHandle = handle !== undefined && h?.network === held.network && h.ip === formatIpv4(held.ip);
    const r = await this.store.txn(
      [
        { key: ak, modRevision: held.modRevision },
        ...(ownsHandle ? [{ key: hk, modRevision: handle.modRevision }] : []),
      ],
      [{ op: 'delete', key: ak }, ...(ownsHandle ? [{ op: 'delete' as const, key: hk }] : [])],
    );
    if (!r.succeeded) return false;
    const mine = this.mine.get(hk);
    if (mine && mine.network === held.network && mine.ip === held.ip) this.mine.delete(hk);
    this.busy.delete(held.ip);
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
      throw new WeavetsError(
        'EWEAVETS_CONFLICT',
        `${req.id} (${req.ifname}) already holds ${have.address}; release it first`,
      );
    }
    return have;
  }

  private putOps(req: AllocationRequest, ip: number): TxnOp[] {
    const addr: AddrRecord = {
      id: req.id,
      ifname: req.ifname,
      host: this.opts.self,
      network: req.network,
      ...(req.unattached === true ? { unattached: true as const } : {}),
    };
    const handle: HandleRecord = { network: req.network, ip: formatIpv4(ip), host: this.opts.self };
    return [
      { op: 'put', key: addrKey(ip), value: JSON.stringify(addr) },
      { op: 'put', key: handleKey(req.id, req.ifname), value: JSON.stringify(handle) },
    ];
  }

  /**
   * The handle exists already: ours (a repeat), another host's (the container moved
   * here), or a reservation left by a detach: take it over in one transaction. A
   * reservation for another network or another address is dropped instead.
   * undefined: it changed under us (or was dropped), try again.
   */
  private async adoptHandle(req: AllocationRequest, handle: KvEntry): Promise<Allocation | undefined> {
    const rec = parseJson<HandleRecord>(handle.value);
    if (!rec) throw new WeavetsError('EWEAVETS_INTERNAL', `unreadable IPAM record ${handle.key}`);
    const ip = parseIpv4(rec.ip);
    const ak = addrKey(ip);
    const addr = await this.store.get(ak);
    const arec = addr ? parseJson<AddrRecord>(addr.value) : undefined;
    const reserved = arec?.retainedUntil !== undefined && arec.id === req.id && arec.ifname === req.ifname;
    if (reserved && (rec.network !== req.network || (req.ip !== undefined && req.ip !== ip))) {
      // The id comes back elsewhere: its old reservation goes.
      await this.store.txn(
        [
          { key: handle.key, modRevision: handle.modRevision },
          { key: ak, modRevision: addr!.modRevision },
        ],
        [
          { op: 'delete', key: handle.key },
          { op: 'delete', key: ak },
        ],
      );
      this.busy.delete(ip);
      return undefined;
    }
    const sub = await this.subnetFor(rec.network);
    const have = this.result(req.id, req.ifname, rec.network, ip, sub.subnet);
    this.checkSame(req, have);
    if (rec.host !== this.opts.self || arec?.host !== this.opts.self || arec.retainedUntil !== undefined) {
      const r = await this.store.txn(
        [
          { key: handle.key, modRevision: handle.modRevision },
          { key: ak, modRevision: addr?.modRevision ?? 0 },
        ],
        this.putOps(req, ip),
      );
      if (!r.succeeded) return undefined;
      if (reserved)
        this.opts.log.info('gave an id back its reserved address', {
          id: req.id,
          ifname: req.ifname,
          address: have.address,
          from: arec.host,
        });
      else if (rec.host !== this.opts.self)
        this.opts.log.info('took over an address from another host', {
          id: req.id,
          ifname: req.ifname,
          address: have.address,
          from: rec.host,
        });
    }
    this.busy.add(ip);
    this.mine.set(handle.key, have);
    return have;
  }

  private async doRelease(id: string, ifname: string, retainMs: number): Promise<Allocation | undefined> {
    const hk = handleKey(id, ifname);
    for (let attempt = 0; attempt < 8; attempt++) {
      // When we know what the handle holds, read both records in one round trip.
      const known = this.mine.get(hk);
      const guess = known ? addrKey(known.ip) : undefined;
      const [handle, guessed] = await Promise.all([
        this.store.get(hk),
        guess ? this.store.get(guess) : Promise.resolve(undefined),
      ]);
      if (!handle) {
        this.mine.delete(hk);
        return undefined;
      }
      const rec = parseJson<HandleRecord>(handle.value);
      if (!rec) throw new WeavetsError('EWEAVETS_INTERNAL', `unreadable IPAM record ${hk}`);
      const ip = parseIpv4(rec.ip);
      const ak = addrKey(ip);
      const addr = ak === guess ? guessed : await this.store.get(ak);
      const a = addr ? parseJson<AddrRecord>(addr.value) : undefined;
      const ownsAddr = addr !== undefined && a?.id === id && a.ifname === ifname;
      const compare = ownsAddr
        ? [
            { key: hk, modRevision: handle.modRevision },
            { key: ak, modRevision: addr.modRevision },
          ]
        : [{ key: hk, modRevision: handle.modRevision }];
      let ops: TxnOp[];
      if (ownsAddr && retainMs > 0) {
        const kept: AddrRecord = {
          id,
          ifname,
          host: a.host,
          network: rec.network,
          retainedUntil: this.now() + retainMs,
        };
        ops = [{ op: 'put', key: ak, value: JSON.stringify(kept) }];
      } else if (ownsAddr) {
        ops = [
          { op: 'delete', key: hk },
          { op: 'delete', key: ak },
        ];
      } else {
        ops = [{ op: 'delete', key: hk }];
      }
      const r = await this.store.txn(compare, ops);
      if (!r.succeeded) continue;
      this.mine.delete(hk);
      if (ownsAddr && retainMs <= 0) this.busy.delete(ip);
      return this.result(id, ifname, rec.network, ip, (await this.subnetFor(rec.network)).subnet);
    }
    throw new WeavetsError('EWEAVETS_INTERNAL', `could not release ${id} (${ifname}): it kept changing`);
  }

  /**
   * A free candidate (reserved in `pending`): from our blocks, a new block, or borrowed
   * from the subnet (then with the subnet read it was decided on, guard included).
   */
  private async pickFree(network: string, sub: NetworkSubnet): Promise<{ ip: number; sub: NetworkSubnet }> {
    const st = this.net(network);
    for (;;) {
      const contested = this.contested();
      for (const b of st.blocks.values()) {
        if (contested.size > 0 && contested.has(blockKey(b.cidr.base))) continue;
        // A block of ours inside another network's subnet can only come from a store that
        // cannot arbitrate the race between that network's create and our claim (the mesh
        // store): no new address comes from it.
        if (sub.exclude.some((x) => overlaps(x.subnet, b.cidr))) continue;
        const ip = firstFreeInBlock(
          this.opts.range,
          b.cidr,
          (x) => this.busy.has(x) || this.pending.has(x) || isReserved(sub.subnet, x),
          b.hint,
        );
        if (ip !== undefined) {
          this.pending.add(ip);
          b.hint = ip - b.cidr.base + 1;
          return { ip, sub };
        }
      }
      if (!st.acquiring) {
        st.acquiring = this.acquireBlock(network, sub).finally(() => {
          st.acquiring = undefined;
        });
      }
      if (!(await st.acquiring)) return this.borrow(network, sub);
    }
  }

  /** Blocks of the range inside the subnet and outside every excluded subnet, by range index. */
  private candidateBlocks(sub: NetworkSubnet): number[] {
    const { range } = this.opts;
    const first = blockIndexOf(range, this.blockPrefix, sub.subnet.base);
    const count = Math.max(1, cidrSize(sub.subnet) / 2 ** (32 - this.blockPrefix));
    const out: number[] = [];
    for (let i = first; i < first + count; i++) {
      const b = blockAt(range, this.blockPrefix, i);
      if (!sub.exclude.some((x) => overlaps(x.subnet, b))) out.push(i);
    }
    return out;
  }

  /**
   * Take a free block of the network's subnet; false when none is left (reclaim tried).
   * Decided on the catalog as the store has it (not this host's cached view), and the
   * claim compares the catalog's guard: a network created in between, whose subnet may
   * cover the block, makes the claim fail, and the next round reads the catalog again.
   * (The create compares that no block of its subnet appeared since it looked, so
   * whichever of the two commits second fails.)
   */
  private async acquireBlock(network: string, cached: NetworkSubnet): Promise<boolean> {
    const st = this.net(network);
    const { range } = this.opts;
    for (let round = 0; round < 8; round++) {
      const sub = await this.subnetForClaim(network, cached);
      const candidates = this.candidateBlocks(sub);
      if (candidates.length === 0) return false;
      const listing = await this.store.list(BLOCKS_PREFIX);
      const taken = new Set<number>();
      let lost: Cidr | undefined;
      for (const e of listing.entries) {
        const k = parseAddrKey(e.key);
        if (!k) continue;
        taken.add(blockIndexOf(range, this.blockPrefix, k.ip));
        // Ours for this network, yet not in our view: a block creation reported as failed
        // (a timeout) that committed all the same. Use it rather than leave it idle.
        const brec = lost ? undefined : parseJson<BlockRecord>(e.value);
        if (brec && !st.blocks.has(k.ip) && brec.owner === this.opts.self && brec.network === network)
          lost = { base: k.ip, prefix: this.blockPrefix };
      }
      if (lost) {
        await this.useBlock(network, lost);
        this.opts.log.info('found an address block of ours that a failed store call had created', {
          network,
          block: formatCidr(lost),
        });
        return true;
      }
      const claimed = await this.claimFreeBlock(network, sub, candidates, taken);
      if (claimed === 'claimed') return true;
      if (claimed === 'catalog changed') continue;
      // Every block is taken: blocks of dead hosts may come back (on the mesh store they
      // go with their host's entries, after the TTL or rmpeer).
      const freed = await this.reclaim();
      if (freed.blocks.length === 0) return false;
    }
    throw new WeavetsError(
      'EWEAVETS_INTERNAL',
      `could not take an address block on network ${network} (heavy contention)`,
    );
  }

  /** Claim the first free candidate block, in this host's order, under the subnet read's guard. */
  private async claimFreeBlock(
    network: string,
    sub: NetworkSubnet,
    candidates: number[],
    taken: Set<number>,
  ): Promise<'claimed' | 'catalog changed' | 'none free'> {
    for (const index of this.orderCandidates(candidates)) {
      if (taken.has(index)) continue;
      taken.add(index);
      const block = blockAt(this.opts.range, this.blockPrefix, index);
      const rec: BlockRecord = { owner: this.opts.self, nickname: this.opts.nickname, network };
      const r = await this.store.txn(
        [{ key: blockKey(block.base), modRevision: 0 }, ...guardOf(sub)],
        [{ op: 'put', key: blockKey(block.base), value: JSON.stringify(rec) }],
      );
      if (r.succeeded) {
        await this.useBlock(network, block);
        this.opts.log.info('took a new address block', { network, block: formatCidr(block) });
        return 'claimed';
      }
      if (!(await this.guardHolds(sub))) {
        this.opts.log.debug('the network catalog changed while taking a block; reading it again', {
          network,
          block: formatCidr(block),
        });
        return 'catalog changed';
      }
    }
    return 'none free';
  }

  /**
   * The subnet's block indexes in the order to try them: with "share", this host's share
   * first (index mod `of` = `rank`), then the rest; with "hashed", from a start derived
   * from the peer name; else lowest first.
   */
  private orderCandidates(candidates: number[]): number[] {
    if (candidates.length === 0) return candidates;
    if (this.opts.blockSearch === 'share' && this.opts.share) {
      const { rank, of } = this.opts.share();
      const mine = candidates.filter((i) => of > 0 && i % of === rank);
      return [...mine, ...candidates.filter((i) => !(of > 0 && i % of === rank))];
    }
    const start =
      this.opts.blockSearch === 'hashed'
        ? hashedBlockIndex(this.opts.range, this.blockPrefix, this.opts.self) % candidates.length
        : 0;
    return candidates.map((_, n) => candidates[(start + n) % candidates.length]!);
  }

  /** Block keys the store reports in conflict: no new address comes from them. */
  private contested(): Set<string> {
    return new Set((this.store.conflicts?.() ?? []).map((c) => c.key));
  }

  /**
   * Settle conflicts on our blocks (two hosts claimed one block while partitioned): the
   * lowest-named holder keeps it; any other holder gives it up as soon as it holds no
   * address in it (until then neither takes new addresses from it). Returns the blocks
   * given up.
   */
  async resolveConflicts(): Promise<string[]> {
    const given: string[] = [];
    for (const c of this.store.conflicts?.() ?? []) {
      const k = c.key.startsWith(BLOCKS_PREFIX) ? parseAddrKey(c.key) : undefined;
      if (!k || !c.holders.includes(this.opts.self) || c.holders[0] === this.opts.self) continue;
      const block: Cidr = { base: k.ip, prefix: this.blockPrefix };
      const inUse = [...this.mine.values()].some((a) => contains(block, a.ip));
      if (inUse) continue;
      await this.store.delete(c.key);
      let network = '';
      for (const [name, st] of this.nets) if (st.blocks.delete(k.ip)) network = name;
      given.push(`${network} ${formatCidr(block)}`.trim());
      this.opts.log.warn('gave up a contested block to a lower-named host', {
        network,
        block: formatCidr(block),
        keeper: c.holders[0],
      });
    }
    return given;
  }

  /** Start allocating from a block we own: note what is taken in it already. */
  private async useBlock(network: string, block: Cidr): Promise<void> {
    const st = this.net(network);
    // A block may hold addresses already: a --ip, a reservation, or live leftovers of a reclaimed block.
    const inside = await this.store.list(addrPrefixOfBlock(block));
    for (const e of inside.entries) {
      const k = parseAddrKey(e.key);
      if (k && contains(block, k.ip)) this.busy.add(k.ip);
    }
    st.blocks.set(block.base, { cidr: block, hint: 0 });
  }

  /**
   * Every block of the subnet is another host's: take any address of the subnet that no
   * one holds (its key arbitrates, as always). A small network shared by many hosts.
   */
  private async borrow(network: string, cached: NetworkSubnet): Promise<{ ip: number; sub: NetworkSubnet }> {
    const sub = await this.subnetForClaim(network, cached);
    const { entries } = await this.store.list(addrPrefixOfBlock(sub.subnet));
    const held = new Set<number>();
    for (const e of entries) {
      const k = parseAddrKey(e.key);
      if (k) held.add(k.ip);
    }
    const size = cidrSize(sub.subnet);
    for (let k = 0; k < size; k++) {
      const ip = (sub.subnet.base + k) >>> 0;
      if (isReserved(sub.subnet, ip) || isReserved(this.opts.range, ip) || held.has(ip) || this.pending.has(ip))
        continue;
      if (sub.exclude.some((x) => contains(x.subnet, ip))) continue;
      this.pending.add(ip);
      return { ip, sub };
    }
    throw new WeavetsError(
      'EWEAVETS_RANGE_EXHAUSTED',
      `no free address on network ${network}: every address of its subnet ${formatCidr(sub.subnet)} is taken`,
    );
  }

  /**
   * Delete reservations that expired, and allocations held by hosts that are not
   * registered (dead past their TTL, or removed with rmpeer), then the blocks of such
   * hosts that no live allocation remains in. With `only`, consider just that host
   * dead, whether registered or not.
   */
  async reclaim(only?: string): Promise<ReclaimResult> {
    const hosts = await this.store.list(HOSTS_PREFIX);
    const live = new Set(hosts.entries.map((e) => e.key.slice(HOSTS_PREFIX.length)));
    live.add(this.opts.self);
    if (only !== undefined) live.delete(only);
    // On the mesh store (share search) a gone host's entries are dropped by the store
    // itself; deleting them here could race a host that re-registers after its lease
    // expired while it was down. Only expired reservations are deleted there.
    const meshStore = this.opts.blockSearch === 'share';
    const dead = (host: string): boolean => (only === undefined ? !meshStore && !live.has(host) : host === only);
    const [blocks, addrs] = await Promise.all([this.store.list(BLOCKS_PREFIX), this.store.list(ADDRS_PREFIX)]);
    const result: ReclaimResult = { blocks: [], addresses: 0 };
    const liveIn = new Set<string>(); // block keys with a live allocation inside
    const now = this.now();
    for (const e of addrs.entries) {
      const k = parseAddrKey(e.key);
      const rec = parseJson<AddrRecord>(e.value);
      if (!k || !rec) continue;
      const bk = blockKey(
        blockAt(this.opts.range, this.blockPrefix, blockIndexOf(this.opts.range, this.blockPrefix, k.ip)).base,
      );
      const expired = rec.retainedUntil !== undefined && rec.retainedUntil <= now;
      if (rec.retainedUntil !== undefined ? !expired : !dead(rec.host)) {
        liveIn.add(bk);
        continue;
      }
      const hk = handleKey(rec.id, rec.ifname);
      const handle = await this.store.get(hk);
      const h = handle ? parseJson<HandleRecord>(handle.value) : undefined;
      const ownsHandle = handle !== undefined && h?.ip === formatIpv4(k.ip);
      const r = await this.store.txn(
        [
          { key: e.key, modRevision: e.modRevision },
          ...(expired ? [] : [{ key: hostKey(rec.host), modRevision: 0 }]),
          ...(ownsHandle ? [{ key: hk, modRevision: handle.modRevision }] : []),
        ],
        [{ op: 'delete', key: e.key }, ...(ownsHandle ? [{ op: 'delete' as const, key: hk }] : [])],
      );
      if (r.succeeded) {
        result.addresses++;
        this.busy.delete(k.ip);
        if (expired)
          this.opts.log.info('an address reservation expired', {
            id: rec.id,
            ifname: rec.ifname,
            address: formatIpv4(k.ip),
          });
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
      result.blocks.push(`${rec.network} ${cidr}`);
      this.opts.log.info('reclaimed the block of a dead host', {
        network: rec.network,
        block: cidr,
        owner: rec.owner,
        nickname: rec.nickname,
      });
    }
    if (result.addresses > 0)
      this.opts.log.info('released addresses of dead hosts and expired reservations', { count: result.addresses });
    return result;
  }

  /** Every allocation and reservation on `network`, from the store (who holds what, cluster-wide). */
  async allocationsOn(network: string): Promise<StoredAllocation[]> {
    const { entries } = await this.store.list(ADDRS_PREFIX);
    const out: StoredAllocation[] = [];
    for (const e of entries) {
      const k = parseAddrKey(e.key);
      const rec = parseJson<AddrRecord>(e.value);
      if (!k || !rec || rec.network !== network) continue;
      out.push({
        id: rec.id,
        ifname: rec.ifname,
        host: rec.host,
        network,
        address: formatIpv4(k.ip),
        ...(rec.retainedUntil !== undefined ? { retainedUntil: rec.retainedUntil } : {}),
      });
    }
    return out;
  }

  /**
   * A network was removed: delete its reservations and every host's blocks of it (none
   * may hold an address in use: `network rm` checked), and forget it here.
   */
  async purgeNetwork(network: string): Promise<void> {
    const [blocks, addrs] = await Promise.all([this.store.list(BLOCKS_PREFIX), this.store.list(ADDRS_PREFIX)]);
    for (const e of addrs.entries) {
      const rec = parseJson<AddrRecord>(e.value);
      if (rec?.network !== network || rec.retainedUntil === undefined) continue;
      const hk = handleKey(rec.id, rec.ifname);
      await this.store.txn(
        [{ key: e.key, modRevision: e.modRevision }],
        [
          { op: 'delete', key: e.key },
          { op: 'delete', key: hk },
        ],
      );
      const k = parseAddrKey(e.key);
      if (k) this.busy.delete(k.ip);
    }
    for (const e of blocks.entries) {
      if (parseJson<BlockRecord>(e.value)?.network !== network) continue;
      await this.store.txn([{ key: e.key, modRevision: e.modRevision }], [{ op: 'delete', key: e.key }]);
    }
    this.forgetNetwork(network);
  }

  /** Drop this process's view of a network's blocks (the network is gone). */
  forgetNetwork(network: string): void {
    this.nets.delete(network);
  }

  /** Give up everything this host holds, reservations included (weavets reset). */
  async leave(): Promise<void> {
    for (const a of [...this.mine.values()]) await this.release(a.id, a.ifname);
    const [blocks, addrs] = await Promise.all([this.store.list(BLOCKS_PREFIX), this.store.list(ADDRS_PREFIX)]);
    for (const e of addrs.entries) {
      const rec = parseJson<AddrRecord>(e.value);
      if (rec?.host !== this.opts.self || rec.retainedUntil === undefined) continue;
      await this.store.txn(
        [{ key: e.key, modRevision: e.modRevision }],
        [
          { op: 'delete', key: e.key },
          { op: 'delete', key: handleKey(rec.id, rec.ifname) },
        ],
      );
    }
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
    for (const [network, st] of [...this.nets.entries()].sort(([a], [b]) => compareText(a, b))) {
      if (st.blocks.size === 0) continue;
      const blocks: BlockUsage[] = [];
      for (const b of [...st.blocks.values()].sort((x, y) => x.cidr.base - y.cidr.base)) {
        let used = 0;
        for (const ip of this.busy) if (contains(b.cidr, ip)) used++;
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

  /** Allocations this host holds (in use; reservations are not held by anyone). */
  held(): Allocation[] {
    return [...this.mine.values()];
  }
}

/** "in use by c1 (eth0) on host X", or "reserved for c1 (eth0) until ..." after a detach. */
export function describeHolder(rec: AddrRecord | undefined): string {
  if (!rec) return 'already in use by another container';
  if (rec.retainedUntil !== undefined) {
    return `reserved for ${rec.id} (${rec.ifname}) until ${new Date(rec.retainedUntil).toISOString()} (detached from host ${rec.host}); \`weavets detach --release\` frees it at once`;
  }
  return `already in use by ${rec.id} (${rec.ifname}) on host ${rec.host}`;
}

/** Create the cluster config once; afterwards every host must agree with it. */
export async function ensureClusterConfig(store: Store, range: Cidr, blockPrefix?: number): Promise<ClusterConfig> {
  const want: ClusterConfig = { range: formatCidr(range), blockPrefix: blockPrefix ?? DEFAULT_BLOCK_PREFIX };
  const bad = checkBlockPrefix(range, want.blockPrefix);
  if (bad) throw new WeavetsError('EWEAVETS_BAD_REQUEST', bad);
  if (store.kind === 'mesh') {
    // Every host of a mesh store asserts the config it runs with (a claim would wait for
    // peers the router has not dialled yet); hosts with different ranges are reported as
    // a conflict on this key when they meet, and a restart refuses a range that differs.
    if (!(await store.get(CONFIG_KEY))) {
      await store.put(CONFIG_KEY, JSON.stringify(want));
      return want;
    }
  } else if (await createIfAbsent(store, CONFIG_KEY, JSON.stringify(want))) return want;
  const entry = await store.get(CONFIG_KEY);
  const have = entry ? parseJson<ClusterConfig>(entry.value) : undefined;
  if (!have || typeof have.range !== 'string' || typeof have.blockPrefix !== 'number') {
    throw new WeavetsError(
      'EWEAVETS_INTERNAL',
      `the cluster IPAM config in ${store.location} (${CONFIG_KEY}) is unreadable`,
    );
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

/** The catalog condition a claim decided on `sub` carries (none when `sub` is exact without it). */
function guardOf(sub: NetworkSubnet): Compare[] {
  return sub.guard ? [sub.guard] : [];
}

function parseJson<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}
