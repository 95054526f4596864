/**
 * IPAM as the daemon runs it: the store, this host's registration (also the peer
 * registry), the block allocator, and a periodic sweep that returns dead hosts' blocks
 * to the pool. The composition root starts it and wires peers to the router.
 */
import * as os from 'node:os';
import type { Logger } from '../log';
import { WeavetsError } from '../errors';
import { contains, formatCidr, parseIpv4, type Cidr } from '../net/ipv4';
import { openStore, type StoreConfig } from '../store';
import type { Store, StoreWatch } from '../store/types';
import { MeshStore } from '../store/mesh';
import { ADDRS_PREFIX, BLOCKS_PREFIX, parseAddrKey } from './blocks';
import { BlockAllocator } from './allocator';
import { HostRegistry, type HostRecord } from './host-registry';
import type {
  IpamAllocateRequest,
  IpamAllocation,
  IpamBlockOwner,
  IpamControl,
  IpamReleaseRequest,
  IpamStatus,
  RmpeerResult,
} from './status';
import { isPeerNameText } from '../net/peername';
import {
  AddressReconciler,
  DEFAULT_RECLAIM_GRACE_MS,
  DEFAULT_RECLAIM_INTERVAL_MS,
  type AddressClaim,
} from './reconcile';
import { compareText } from '../text-order';

export const DEFAULT_LEASE_TTL_SECONDS = 120;

/**
 * The cluster store for `config`: etcd when given, else the mesh store, whose entries of
 * a host unreachable for the lease TTL are dropped.
 */
export function openClusterStore(
  config: StoreConfig,
  self: string,
  leaseTtlSeconds: number,
  log: Logger,
): Promise<Store> {
  return openStore(config, log, { self, graceMs: leaseTtlSeconds * 1000 });
}

export interface ClusterIpamOptions extends StoreConfig {
  /**
   * The cluster store, opened by the daemon's root and shared with DNS and policy; the
   * root closes it. Without it (tests, benches) IPAM opens one from `stateDir`/`etcd`
   * and closes it itself.
   */
  store?: Store;
  /** This host's peer name, "7e:21:...". */
  name: string;
  nickname: string;
  range: Cidr;
  port: number;
  advertiseAddress?: string;
  leaseTtlSeconds?: number;
  blockPrefix?: number;
  /** Interfaces that are ours (bridges): never advertised. */
  ownLinks: string[];
  /** Reconciler timing (reconcile.ts); defaults 60 s grace, a pass every 30 s. */
  reclaimGraceMs?: number;
  reclaimIntervalMs?: number;
  log: Logger;
}

/** First non-loopback IPv4 address of this namespace that is not on one of our links nor in the overlay range. */
export function defaultAdvertiseAddress(range: Cidr, ownLinks: string[]): string | undefined {
  const own = new Set(ownLinks);
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    if (own.has(name)) continue;
    for (const a of addrs ?? []) {
      if (a.family !== 'IPv4' || a.internal) continue;
      if (contains(range, parseIpv4(a.address))) continue;
      return a.address;
    }
  }
  return undefined;
}

export class ClusterIpam implements IpamControl {
  private sweepTimer: NodeJS.Timeout | undefined;
  private peersHandler: ((addresses: string[]) => void) | undefined;
  private lastPeers: string[] = [];
  private blocksWatch: StoreWatch | undefined;
  private readonly blocks = new Map<string, IpamBlockOwner>();
  private reconciler: AddressReconciler | undefined;

  private constructor(
    readonly store: Store,
    readonly allocator: BlockAllocator,
    private registry: HostRegistry | undefined,
    private readonly opts: ClusterIpamOptions,
    readonly leaseTtlSeconds: number,
    /** Opened by start() (no `store` option), so closed by close(). */
    private readonly ownsStore: boolean,
  ) {}

  static async start(opts: ClusterIpamOptions): Promise<ClusterIpam> {
    const ttl = opts.leaseTtlSeconds ?? DEFAULT_LEASE_TTL_SECONDS;
    const address = opts.advertiseAddress ?? defaultAdvertiseAddress(opts.range, opts.ownLinks);
    if (address === undefined) {
      // A host with no underlay address still serves its own containers; it only cannot
      // be found through the store. It registers anyway: the lease protects its blocks.
      opts.log.warn(
        'no non-loopback IPv4 address to advertise: other hosts will not discover this one through the store; set --advertise-address',
      );
    }
    const ownsStore = opts.store === undefined;
    const store = opts.store ?? (await openClusterStore(opts, opts.name, ttl, opts.log));
    let allocator: BlockAllocator | undefined;
    let ipam: ClusterIpam | undefined;
    try {
      // Registration first: from then on nobody reclaims our blocks while we load them.
      const self: HostRecord = {
        name: opts.name,
        nickname: opts.nickname,
        address: address === undefined ? '' : `${address}:${opts.port}`,
      };
      const registry = await HostRegistry.start({
        store,
        self,
        ttlSeconds: ttl,
        log: opts.log.child('registry'),
        onPeers: (peers) => ipam?.peersChanged(peers),
        onReregistered: async () => {
          await allocator?.reassert();
        },
      });
      try {
        allocator = await BlockAllocator.open({
          store,
          self: opts.name,
          nickname: opts.nickname,
          range: opts.range,
          blockSearch: store.kind === 'file' ? 'hashed' : store.kind === 'mesh' ? 'share' : 'lowest',
          share: () => {
            const names = (ipam?.registry ?? registry).all().map((h) => h.name);
            if (!names.includes(opts.name)) names.push(opts.name);
            names.sort();
            return { rank: names.indexOf(opts.name), of: names.length };
          },
          log: opts.log,
          ...(opts.blockPrefix !== undefined ? { blockPrefix: opts.blockPrefix } : {}),
        });
      } catch (err) {
        await registry.close(false);
        throw err;
      }
      ipam = new ClusterIpam(store, allocator, registry, opts, ttl, ownsStore);
    } catch (err) {
      if (ownsStore) await store.close();
      throw err;
    }
    ipam.watchBlocks();
    if (store instanceof MeshStore) {
      const mesh = store;
      mesh.onConflicts((conflicts) => {
        for (const c of conflicts) {
          opts.log.error(
            'IPAM conflict: several hosts hold this key (claimed while they could not reach each other); no new address comes from a contested block until it is resolved',
            { key: c.key, holders: c.holders.join(' ') },
          );
        }
        ipam?.allocator
          .resolveConflicts()
          .catch((err: unknown) =>
            opts.log.warn('could not settle a contested block', { error: (err as Error).message }),
          );
      });
    }
    ipam.scheduleSweep();
    ipam.peersChanged(ipam.registry?.peers() ?? []);
    if (store.kind === 'file') {
      opts.log.info(
        'IPAM on the embedded store: this host allocates alone; use --etcd to share blocks with other hosts',
      );
    } else if (store.kind === 'mesh') {
      opts.log.info(
        'IPAM on the mesh store: blocks, addresses and names are shared with every connected host (no --etcd)',
      );
    }
    opts.log.info('IPAM ready', {
      store: `${store.kind} ${store.location}`,
      range: formatCidr(opts.range),
      block: `/${allocator.blockPrefix}`,
      ttl,
      advertise: address ?? 'none',
    });
    return ipam;
  }

  /** Hand registered peers' addresses to `fn` now and whenever they change. */
  onPeers(fn: (addresses: string[]) => void): void {
    this.peersHandler = fn;
    if (this.lastPeers.length > 0) fn(this.lastPeers);
  }

  private peersChanged(peers: HostRecord[]): void {
    this.lastPeers = peers.map((p) => p.address).filter((a) => a !== '');
    if (this.lastPeers.length > 0) this.peersHandler?.(this.lastPeers);
  }

  /** Every host's blocks, from a watch of the store: `status ipam` shows them all. */
  private watchBlocks(): void {
    this.blocksWatch = this.store.watch(BLOCKS_PREFIX, {
      onReset: (entries) => {
        this.blocks.clear();
        for (const e of entries) this.learnBlock(e.key, e.value);
      },
      onEvents: (events) => {
        for (const e of events) {
          if (e.type === 'put') this.learnBlock(e.key, e.value);
          else this.blocks.delete(e.key);
        }
      },
    });
  }

  private learnBlock(key: string, value: string): void {
    const k = parseAddrKey(key);
    if (!k) return;
    try {
      const rec = JSON.parse(value) as { owner?: unknown; nickname?: unknown; network?: unknown };
      if (typeof rec.owner !== 'string') return;
      this.blocks.set(key, {
        network: typeof rec.network === 'string' ? rec.network : '',
        cidr: formatCidr({ base: k.ip, prefix: this.allocator.blockPrefix }),
        owner: rec.owner,
        nickname: typeof rec.nickname === 'string' ? rec.nickname : '',
      });
    } catch {
      // unreadable: not shown
    }
  }

  /** The mesh store's counters, for metrics; undefined on etcd. */
  storeStats(): ReturnType<MeshStore['stats']> | undefined {
    return this.store instanceof MeshStore ? this.store.stats() : undefined;
  }

  /** Cluster-wide blocks in address order. */
  clusterBlocks(): IpamBlockOwner[] {
    return [...this.blocks.entries()].sort(([a], [b]) => compareText(a, b)).map(([, v]) => v);
  }

  private scheduleSweep(): void {
    // Often enough that a dead host's blocks come back soon after its TTL; jittered so
    // hosts do not all sweep at once.
    const every = Math.max(2000, (this.leaseTtlSeconds * 1000) / 2) * (0.75 + Math.random() * 0.5);
    this.sweepTimer = setTimeout(() => {
      this.allocator
        .resolveConflicts()
        // On the mesh store this only expires reservations: the store drops a gone host's
        // entries itself (after the TTL, or rmpeer).
        .then(() => this.allocator.reclaim())
        .catch((err: unknown) => this.opts.log.debug('sweep failed', { error: (err as Error).message }))
        .finally(() => {
          if (this.registry) this.scheduleSweep();
        });
    }, every);
    this.sweepTimer.unref();
  }

  /**
   * Start releasing addresses this host holds that nothing here uses (reconcile.ts).
   * `claims`: everything on this host that uses an address; called on every pass. Called
   * by the composition root once every claimant has restored its state.
   */
  startReconciler(claims: () => Iterable<AddressClaim>): void {
    this.reconciler?.stop();
    this.reconciler = new AddressReconciler({
      store: this.store,
      allocator: this.allocator,
      claims,
      graceMs: this.opts.reclaimGraceMs ?? DEFAULT_RECLAIM_GRACE_MS,
      intervalMs: this.opts.reclaimIntervalMs ?? DEFAULT_RECLAIM_INTERVAL_MS,
      log: this.opts.log.child('reconcile'),
    });
    this.reconciler.start();
  }

  /** Addresses the reconciler released since start (weavets_ipam_reclaimed_total). */
  reclaimedAddresses(): number {
    return this.reconciler?.reclaimed ?? 0;
  }

  status(): IpamStatus {
    return {
      store: { kind: this.store.kind, location: this.store.location },
      range: formatCidr(this.opts.range),
      blockPrefix: this.allocator.blockPrefix,
      leaseTtlSeconds: this.leaseTtlSeconds,
      name: this.opts.name,
      networks: this.allocator.usage(),
      hosts: this.registry?.all() ?? [],
      blocks: this.clusterBlocks(),
      conflicts: this.store.conflicts?.() ?? [],
    };
  }

  async allocate(req: IpamAllocateRequest): Promise<IpamAllocation> {
    let ip: number | undefined;
    if (req.ip !== undefined) {
      try {
        ip = parseIpv4(req.ip.split('/')[0]!);
      } catch (err) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `ip: ${(err as Error).message}`, { cause: err });
      }
    }
    // unattached: the API caller holds it with no interface here; the reconciler leaves it be.
    const a = await this.allocator.allocate({
      id: req.id,
      ifname: req.ifname ?? 'eth0',
      network: req.network ?? 'weavets',
      unattached: true,
      ...(ip !== undefined ? { ip } : {}),
    });
    return { id: a.id, ifname: a.ifname, network: a.network, address: a.address };
  }

  async release(req: IpamReleaseRequest): Promise<IpamAllocation | null> {
    const a = await this.allocator.release(req.id, req.ifname ?? 'eth0');
    return a ? { id: a.id, ifname: a.ifname, network: a.network, address: a.address } : null;
  }

  /** Peer name -> nickname (or the name) of every registered host, for messages. */
  hostNames(): Map<string, string> {
    return new Map((this.registry?.all() ?? []).map((h) => [h.name, h.nickname || h.name]));
  }

  /** Release a dead host's blocks and addresses now. NAME: its peer name or nickname. */
  async rmpeer(nameOrNickname: string): Promise<RmpeerResult> {
    let name = nameOrNickname;
    if (!isPeerNameText(name)) {
      const matches = (this.registry?.all() ?? []).filter((h) => h.nickname === name);
      const fromBlocks = await this.ownerByNickname(name);
      const names = new Set([...matches.map((m) => m.name), ...fromBlocks]);
      if (names.size === 0)
        throw new WeavetsError('EWEAVETS_NOT_FOUND', `no host named ${name} is registered or owns a block`);
      if (names.size > 1)
        throw new WeavetsError(
          'EWEAVETS_CONFLICT',
          `several hosts are nicknamed ${name} (${[...names].join(', ')}); give the peer name`,
        );
      name = [...names][0]!;
    }
    name = name.toLowerCase();
    if (name === this.opts.name)
      throw new WeavetsError('EWEAVETS_BAD_REQUEST', `${name} is this host; rmpeer is for hosts that are gone`);
    if (this.store instanceof MeshStore) {
      // Every host drops the peer's entries (blocks, addresses, names, registration) at once.
      const blocks = this.clusterBlocks()
        .filter((b) => b.owner === name)
        .map((b) => `${b.network} ${b.cidr}`);
      const addresses = (await this.store.list(ADDRS_PREFIX)).entries.filter((e) => {
        try {
          return (JSON.parse(e.value) as { host?: unknown }).host === name;
        } catch {
          return false;
        }
      }).length;
      const keys = await this.store.forgetOwner(name);
      this.opts.log.info('rmpeer', { peer: name, blocks: blocks.length, addresses, keys });
      return { name, blocks, addresses };
    }
    await this.store.delete(`hosts/${name}`);
    const r = await this.allocator.reclaim(name);
    this.opts.log.info('rmpeer', { peer: name, blocks: r.blocks.length, addresses: r.addresses });
    return { name, blocks: r.blocks, addresses: r.addresses };
  }

  private async ownerByNickname(nickname: string): Promise<string[]> {
    const { entries } = await this.store.list('ipam/blocks/');
    const out = new Set<string>();
    for (const e of entries) {
      try {
        const rec = JSON.parse(e.value) as { owner: string; nickname: string };
        if (rec.nickname === nickname) out.add(rec.owner);
      } catch {
        // skip unreadable
      }
    }
    return [...out];
  }

  /**
   * Stop. `leave` (reset): give back our addresses and blocks and deregister at once;
   * otherwise keep them for the next start (the registration lapses after the TTL).
   */
  async close(leave: boolean): Promise<void> {
    clearTimeout(this.sweepTimer);
    await this.blocksWatch?.close();
    this.reconciler?.stop();
    const registry = this.registry;
    this.registry = undefined;
    if (leave)
      await this.allocator
        .leave()
        .catch((err: unknown) =>
          this.opts.log.warn('could not release our addresses', { error: (err as Error).message }),
        );
    await registry?.close(leave);
    if (this.ownsStore) await this.store.close();
  }
}
