/**
 * Networks as cluster objects: each network is defined once, in the store, with a name,
 * a unique id (the one every encapsulated frame carries, like a VXLAN VNI), a subnet of
 * the range and options. Every surface (the CLI's `network create|ls|rm`, `attach
 * --network`, CNI, Docker) goes through this catalog; a name used before it was created
 * is created on first use.
 *
 * Keys (under the store's prefix):
 *   networks/by-name/<name>   {name, id, subnet, options, created}
 *   networks/by-id/<id>       {name}
 *   networks/rev              a counter bumped by every create and remove
 * A create is one transaction: "networks/rev is as we read it, neither the name nor the
 * id exists, and no IPAM block or address key inside the subnet changed since we listed
 * them" -> create both and bump the counter. So two networks never share an id (the id
 * key is compare-and-created), two concurrent creates never pick overlapping subnets
 * (the second one's rev no longer matches: it reads again and picks again), and a
 * default-network host taking a block inside the subnet meanwhile makes the create read
 * again (and refuse, or pick another subnet). Claims compare networks/rev from the other
 * side (`subnetFromStore`), so the two never both commit on etcd.
 *
 * The catalog lives only in the store: whatever replicates the store (etcd, or mesh
 * gossip for a store-less cluster) replicates the networks. Without either, each host's
 * embedded store has its own catalog; ids and subnets are then searched from a start
 * derived from the name, so hosts creating the same networks usually agree, but only a
 * shared store makes it certain.
 */
import type { Logger } from '../log';
import { WeavetsError } from '../errors';
import { DEFAULT_NETWORK } from '../config';
import { cidrSize, contains, formatCidr, parseCidr, type Cidr } from '../net/ipv4';
import {
  ADDRS_PREFIX,
  BLOCKS_PREFIX,
  keyRangeOf,
  overlaps,
  parseAddrKey,
  type AddrRecord,
  type BlockRecord,
} from '../ipam/blocks';
import type { NetworkSubnet, NetworkSubnets } from '../ipam/types';
import type { Compare, KvEntry, Store, StoreWatch, TxnOp } from '../store/types';
import { compareText } from '../text-order';

/** Every catalog key: one listing of it is the whole catalog at one revision. */
export const NETWORKS_PREFIX = 'networks/';
export const NETWORKS_BY_NAME = 'networks/by-name/';
export const NETWORKS_BY_ID = 'networks/by-id/';
export const NETWORKS_REV_KEY = 'networks/rev';

/** Reserved ids: 0 (none) and 0xffffff (fastdp's probe VNI, trace probes). */
const MAX_ID = 0xfffffe;
/** Subnet size of a network created without --subnet (bounded by the block size). */
export const DEFAULT_NETWORK_PREFIX = 24;

export interface NetworkRecord {
  name: string;
  /** 24-bit id carried with every frame; unique in the cluster. */
  id: number;
  /** "10.40.7.0/24"; the default network's is the whole range. */
  subnet: string;
  options: Record<string, string>;
  /** ISO time of creation. */
  created: string;
}

export interface CreateNetworkRequest {
  name: string;
  subnet?: string;
  options?: Record<string, string>;
}

/** A network name is one DNS label: 1-63 letters, digits, '-' or '_', not starting or ending with '-'. */
const NETWORK_NAME_RE = /^[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?$/;

export function validateNetworkName(name: string): string | undefined {
  return NETWORK_NAME_RE.test(name)
    ? undefined
    : `invalid network name ${JSON.stringify(name)}: a network name is one DNS label: 1-63 letters, digits, '-' or '_', not starting or ending with '-' (no dots)`;
}

/**
 * The legacy id of a name: 24-bit FNV-1a (0 maps to 1, 0xffffff to 0xfffffe). Now only the first candidate an
 * id search tries, so clusters from before the catalog keep their ids; never trusted to
 * be unique (prod and xtonfi share it).
 */
export function legacyNetworkId(name: string): number {
  let h = 0x811c9dc5;
  for (const byte of Buffer.from(name, 'utf8')) {
    h ^= byte;
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  const id = (h ^ (h >>> 24)) & 0xffffff;
  return id === 0 ? 1 : id === 0xffffff ? 0xfffffe : id;
}

/** First id not in `taken`, from the name's legacy id upwards, wrapping within 1..0xfffffe. */
export function pickNetworkId(name: string, taken: ReadonlySet<number>): number {
  const start = Math.min(legacyNetworkId(name), MAX_ID);
  for (let k = 0; k < MAX_ID; k++) {
    const id = ((start - 1 + k) % MAX_ID) + 1;
    if (!taken.has(id)) return id;
  }
  throw new WeavetsError('EWEAVETS_RANGE_EXHAUSTED', 'every network id is taken');
}

/** What is in the way of a subnet: other networks' subnets and addresses in use. */
export interface SubnetOccupancy {
  /** Created networks (not the default one) and their subnets. */
  networks: { name: string; subnet: Cidr }[];
  /** Blocks and addresses of the default network (it may use any address outside those subnets). */
  defaultUse: { what: string; cidr: Cidr }[];
  /** Revisions of the block and address listings `defaultUse` was read from (absent: not read from a store). */
  blocksRevision?: number;
  addrsRevision?: number;
}

/** Why `subnet` cannot be a new network's, or undefined if it can. */
export function subnetProblem(
  range: Cidr,
  blockPrefix: number,
  subnet: Cidr,
  occ: SubnetOccupancy,
): string | undefined {
  const text = formatCidr(subnet);
  if (!contains(range, subnet.base) || !contains(range, subnet.base + cidrSize(subnet) - 1)) {
    return `subnet ${text} lies outside the range ${formatCidr(range)}`;
  }
  if (subnet.prefix > blockPrefix) {
    return `subnet ${text} is smaller than one address block (/${blockPrefix}); use /${blockPrefix} or larger`;
  }
  if (subnet.prefix <= range.prefix) {
    return `subnet ${text} overlaps network ${DEFAULT_NETWORK} (the whole range ${formatCidr(range)}); choose a smaller subnet inside it`;
  }
  const other = occ.networks.find((n) => overlaps(n.subnet, subnet));
  if (other) return `subnet ${text} overlaps network ${other.name} (${formatCidr(other.subnet)})`;
  const used = occ.defaultUse.find((u) => overlaps(u.cidr, subnet));
  if (used)
    return `subnet ${text} overlaps addresses of network ${DEFAULT_NETWORK} in use: ${used.what}; choose a subnet outside them, or leave the subnet out to have a free one picked`;
  return undefined;
}

/**
 * A free subnet of /`prefix` for `name`: the first aligned one that `subnetProblem`
 * accepts, searching from a start derived from the name (store-less hosts then agree).
 */
export function pickSubnet(
  range: Cidr,
  blockPrefix: number,
  name: string,
  occ: SubnetOccupancy,
  prefix?: number,
): Cidr {
  const want = prefix ?? Math.max(range.prefix + 1, Math.min(DEFAULT_NETWORK_PREFIX, blockPrefix));
  if (want > blockPrefix || want <= range.prefix) {
    throw new WeavetsError(
      'EWEAVETS_RANGE_EXHAUSTED',
      `the range ${formatCidr(range)} is too small to hold a network besides ${DEFAULT_NETWORK}`,
    );
  }
  const count = 2 ** (want - range.prefix);
  const start = legacyNetworkId(name) % count;
  for (let k = 0; k < count; k++) {
    const c: Cidr = { base: (range.base + ((start + k) % count) * 2 ** (32 - want)) >>> 0, prefix: want };
    if (subnetProblem(range, blockPrefix, c, occ) === undefined) return c;
  }
  throw new WeavetsError(
    'EWEAVETS_RANGE_EXHAUSTED',
    `no free /${want} subnet is left in the range ${formatCidr(range)}`,
  );
}

export type CatalogEvent = { type: 'added' | 'removed'; network: NetworkRecord };

export interface NetworkCatalogOptions {
  store: Store;
  range: Cidr;
  blockPrefix: number;
  log: Logger;
}

export class NetworkCatalog implements NetworkSubnets {
  private readonly byName = new Map<string, NetworkRecord>();
  private watch: StoreWatch | undefined;
  private readonly listeners: ((e: CatalogEvent) => void)[] = [];

  private constructor(private readonly opts: NetworkCatalogOptions) {}

  /** Make sure the default network exists (its legacy id, the whole range), then follow the catalog. */
  static async open(opts: NetworkCatalogOptions): Promise<NetworkCatalog> {
    const c = new NetworkCatalog(opts);
    await c.load();
    if (!c.byName.has(DEFAULT_NETWORK)) await c.createRecord({ name: DEFAULT_NETWORK }, formatCidr(opts.range));
    c.watch = opts.store.watch(NETWORKS_BY_NAME, {
      onReset: (entries) => c.reset(entries),
      onEvents: (events) => {
        for (const ev of events) {
          const name = ev.key.slice(NETWORKS_BY_NAME.length);
          if (ev.type === 'delete') c.forget(name);
          else c.learn(parseRecord(ev.value));
        }
      },
    });
    return c;
  }

  private async load(): Promise<void> {
    this.reset((await this.opts.store.list(NETWORKS_BY_NAME)).entries);
  }

  private reset(entries: KvEntry[]): void {
    const seen = new Set<string>();
    for (const e of entries) {
      const rec = parseRecord(e.value);
      if (!rec) continue;
      seen.add(rec.name);
      this.learn(rec);
    }
    for (const name of [...this.byName.keys()]) if (!seen.has(name)) this.forget(name);
  }

  private learn(rec: NetworkRecord | undefined): void {
    if (!rec) return;
    const had = this.byName.get(rec.name);
    this.byName.set(rec.name, rec);
    if (!had || had.id !== rec.id || had.subnet !== rec.subnet) this.emit({ type: 'added', network: rec });
  }

  private forget(name: string): void {
    const had = this.byName.get(name);
    if (!had) return;
    this.byName.delete(name);
    this.emit({ type: 'removed', network: had });
  }

  private emit(e: CatalogEvent): void {
    for (const fn of this.listeners) {
      try {
        fn(e);
      } catch (err) {
        this.opts.log.warn('network catalog listener failed', { error: (err as Error).message });
      }
    }
  }

  /** Be told when a network appears or disappears (from any host). */
  onChange(fn: (e: CatalogEvent) => void): void {
    this.listeners.push(fn);
  }

  /** From this host's view (kept current by a watch). */
  get(name: string): NetworkRecord | undefined {
    return this.byName.get(name);
  }

  list(): NetworkRecord[] {
    return [...this.byName.values()].sort((a, b) =>
      a.name === DEFAULT_NETWORK ? -1 : b.name === DEFAULT_NETWORK ? 1 : compareText(a.name, b.name),
    );
  }

  /** The network, read from the store when this host has not seen it yet. */
  async lookup(name: string): Promise<NetworkRecord | undefined> {
    const have = this.byName.get(name);
    if (have) return have;
    const e = await this.opts.store.get(NETWORKS_BY_NAME + name);
    const rec = e ? parseRecord(e.value) : undefined;
    if (rec) this.learn(rec);
    return rec;
  }

  /** `network create`: a new network; an existing name is a conflict. */
  async create(req: CreateNetworkRequest): Promise<NetworkRecord> {
    const bad = validateNetworkName(req.name);
    if (bad) throw new WeavetsError('EWEAVETS_BAD_REQUEST', bad);
    let subnet: string | undefined;
    if (req.subnet !== undefined) {
      let c: Cidr;
      try {
        c = parseCidr(req.subnet);
      } catch (err) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `--subnet ${req.subnet}: ${(err as Error).message}`, {
          cause: err,
        });
      }
      subnet = formatCidr(c);
    }
    const existing = await this.lookup(req.name);
    if (existing)
      throw new WeavetsError(
        'EWEAVETS_CONFLICT',
        `network ${req.name} already exists (id ${existing.id}, subnet ${existing.subnet})`,
      );
    return this.createRecord(req, subnet);
  }

  /**
   * First use (attach, CNI, Docker): the network, created if it does not exist yet with
   * `want.subnet` (checked like `create`'s) or a picked one, and `want.options`. An
   * existing network with another subnet than `want.subnet` is a conflict.
   */
  async ensure(name: string, want: { subnet?: string; options?: Record<string, string> } = {}): Promise<NetworkRecord> {
    const bad = validateNetworkName(name);
    let subnet: string | undefined;
    if (want.subnet !== undefined) {
      try {
        subnet = formatCidr(parseCidr(want.subnet));
      } catch (err) {
        throw new WeavetsError('EWEAVETS_BAD_REQUEST', `subnet ${want.subnet}: ${(err as Error).message}`, {
          cause: err,
        });
      }
    }
    const check = (rec: NetworkRecord): NetworkRecord => {
      if (subnet !== undefined && rec.subnet !== subnet)
        throw new WeavetsError('EWEAVETS_CONFLICT', `network ${name} exists with subnet ${rec.subnet}, not ${subnet}`);
      return rec;
    };
    const have = await this.lookup(name);
    if (have) return check(have);
    if (bad) throw new WeavetsError('EWEAVETS_BAD_REQUEST', bad);
    try {
      return await this.createRecord({ name, ...(want.options ? { options: want.options } : {}) }, subnet);
    } catch (err) {
      // Another host created it meanwhile: theirs is ours.
      const now = await this.lookup(name);
      if (now) return check(now);
      throw err;
    }
  }

  /** One create transaction, retried while other creates or removes race it. */
  private async createRecord(req: CreateNetworkRequest, subnet?: string): Promise<NetworkRecord> {
    const { store, range, blockPrefix } = this.opts;
    for (let attempt = 0; attempt < 16; attempt++) {
      const rev = await store.get(NETWORKS_REV_KEY);
      const [names, ids] = await Promise.all([store.list(NETWORKS_BY_NAME), store.list(NETWORKS_BY_ID)]);
      const current = recordsOf(names.entries);
      const clash = current.find((r) => r.name === req.name);
      if (clash) {
        this.learn(clash);
        if (req.name === DEFAULT_NETWORK) return clash;
        throw new WeavetsError(
          'EWEAVETS_CONFLICT',
          `network ${req.name} already exists (id ${clash.id}, subnet ${clash.subnet})`,
        );
      }
      const takenIds = new Set(
        ids.entries.map((e) => Number(e.key.slice(NETWORKS_BY_ID.length))).filter((n) => Number.isInteger(n)),
      );
      for (const r of current) takenIds.add(r.id);
      const id = pickNetworkId(req.name, takenIds);
      let chosen: string;
      let occ: SubnetOccupancy | undefined;
      if (req.name === DEFAULT_NETWORK) {
        chosen = formatCidr(range);
      } else {
        occ = await this.occupancy(current);
        if (subnet !== undefined) {
          const problem = subnetProblem(range, blockPrefix, parseCidr(subnet), occ);
          if (problem)
            throw new WeavetsError(
              problem.includes('overlaps') ? 'EWEAVETS_CONFLICT' : 'EWEAVETS_BAD_REQUEST',
              problem,
            );
          chosen = subnet;
        } else {
          chosen = formatCidr(pickSubnet(range, blockPrefix, req.name, occ));
        }
      }
      const rec: NetworkRecord = {
        name: req.name,
        id,
        subnet: chosen,
        options: req.options ?? {},
        created: new Date().toISOString(),
      };
      const ops: TxnOp[] = [
        { op: 'put', key: NETWORKS_REV_KEY, value: String(Number(rev?.value ?? '0') + 1) },
        { op: 'put', key: NETWORKS_BY_NAME + rec.name, value: JSON.stringify(rec) },
        { op: 'put', key: NETWORKS_BY_ID + String(id), value: JSON.stringify({ name: rec.name }) },
      ];
      const r = await store.txn(
        [
          { key: NETWORKS_REV_KEY, modRevision: rev?.modRevision ?? 0 },
          { key: NETWORKS_BY_NAME + rec.name, modRevision: 0 },
          { key: NETWORKS_BY_ID + String(id), modRevision: 0 },
          ...unusedSince(occ, rec),
        ],
        ops,
      );
      if (r.succeeded) {
        this.learn(rec);
        this.opts.log.info('network created', { name: rec.name, id: rec.id, subnet: rec.subnet });
        return rec;
      }
    }
    throw new WeavetsError('EWEAVETS_INTERNAL', `could not create network ${req.name}: the catalog kept changing`);
  }

  /**
   * What `create` would refuse `subnet` for now, read from the store (outside the range,
   * smaller than a block, overlapping a network, the default network's addresses in use
   * there), or undefined; undefined too when it is exactly an existing network's subnet
   * (a Docker network given that --subnet joins that network). For a check made before
   * the create (Docker's RequestPool); the create checks again, in its transaction.
   */
  async subnetRefusal(subnet: string): Promise<string | undefined> {
    const wanted = parseCidr(subnet);
    const text = formatCidr(wanted);
    const { entries } = await this.opts.store.list(NETWORKS_BY_NAME);
    const current = recordsOf(entries);
    if (current.some((r) => r.name !== DEFAULT_NETWORK && r.subnet === text)) return undefined;
    return subnetProblem(this.opts.range, this.opts.blockPrefix, wanted, await this.occupancy(current));
  }

  /** Other networks' subnets, and where the default network already uses addresses. */
  private async occupancy(current: NetworkRecord[]): Promise<SubnetOccupancy> {
    const { store, blockPrefix } = this.opts;
    const networks = current
      .filter((r) => r.name !== DEFAULT_NETWORK)
      .map((r) => ({ name: r.name, subnet: parseCidr(r.subnet) }));
    const [blocks, addrs] = await Promise.all([store.list(BLOCKS_PREFIX), store.list(ADDRS_PREFIX)]);
    const defaultUse: SubnetOccupancy['defaultUse'] = [];
    for (const e of blocks.entries) {
      const k = parseAddrKey(e.key);
      const rec = parseJsonSafe<BlockRecord>(e.value);
      if (!k || rec?.network !== DEFAULT_NETWORK) continue;
      const cidr = { base: k.ip, prefix: blockPrefix };
      defaultUse.push({ what: `block ${formatCidr(cidr)} of host ${rec.nickname || rec.owner}`, cidr });
    }
    for (const e of addrs.entries) {
      const k = parseAddrKey(e.key);
      const rec = parseJsonSafe<AddrRecord>(e.value);
      if (!k || rec?.network !== DEFAULT_NETWORK) continue;
      defaultUse.push({
        what: `${formatCidr({ base: k.ip, prefix: 32 })} of ${rec.id} on host ${rec.host}`,
        cidr: { base: k.ip, prefix: 32 },
      });
    }
    return { networks, defaultUse, blocksRevision: blocks.revision, addrsRevision: addrs.revision };
  }

  /**
   * NetworkSubnets.subnetFromStore: the network's subnet (and for the default network the
   * others') from one listing of the whole catalog, with the revision of `networks/rev` in
   * that listing as the guard. Every create and remove changes that key, so a claim that
   * compares it commits only if the catalog it decided on is still the catalog.
   */
  async subnetFromStore(network: string): Promise<NetworkSubnet> {
    const { entries } = await this.opts.store.list(NETWORKS_PREFIX);
    const records = recordsOf(entries.filter((e) => e.key.startsWith(NETWORKS_BY_NAME)));
    const rec = records.find((r) => r.name === network);
    if (!rec) throw new WeavetsError('EWEAVETS_NOT_FOUND', `no network named ${network}`);
    const rev = entries.find((e) => e.key === NETWORKS_REV_KEY);
    return {
      subnet: parseCidr(rec.subnet),
      exclude: network === DEFAULT_NETWORK ? otherSubnets(records) : [],
      guard: { key: NETWORKS_REV_KEY, modRevision: rev?.modRevision ?? 0 },
    };
  }

  /**
   * `network rm`: `inUse` throws when endpoints remain (naming them); the default network
   * stays. Resolves to the removed record.
   */
  async remove(name: string, inUse: (rec: NetworkRecord) => Promise<void>): Promise<NetworkRecord> {
    if (name === DEFAULT_NETWORK)
      throw new WeavetsError(
        'EWEAVETS_BAD_REQUEST',
        `network ${DEFAULT_NETWORK} is the default network and cannot be removed`,
      );
    const { store } = this.opts;
    for (let attempt = 0; attempt < 8; attempt++) {
      const e = await store.get(NETWORKS_BY_NAME + name);
      const rec = e ? parseRecord(e.value) : undefined;
      if (!e || !rec)
        throw new WeavetsError('EWEAVETS_NOT_FOUND', `no network named ${name}; see \`weavets network ls\``);
      await inUse(rec);
      const rev = await store.get(NETWORKS_REV_KEY);
      const r = await store.txn(
        [
          { key: e.key, modRevision: e.modRevision },
          { key: NETWORKS_REV_KEY, modRevision: rev?.modRevision ?? 0 },
        ],
        [
          { op: 'delete', key: e.key },
          { op: 'delete', key: NETWORKS_BY_ID + String(rec.id) },
          { op: 'put', key: NETWORKS_REV_KEY, value: String(Number(rev?.value ?? '0') + 1) },
        ],
      );
      if (r.succeeded) {
        this.forget(name);
        this.opts.log.info('network removed', { name, id: rec.id, subnet: rec.subnet });
        return rec;
      }
    }
    throw new WeavetsError('EWEAVETS_INTERNAL', `could not remove network ${name}: the catalog kept changing`);
  }

  /** NetworkSubnets for the allocator: the network's subnet, and for the default one the others'. */
  async subnetOf(network: string): Promise<NetworkSubnet> {
    const rec = await this.lookup(network);
    if (!rec) throw new WeavetsError('EWEAVETS_NOT_FOUND', `no network named ${network}`);
    const subnet = parseCidr(rec.subnet);
    const exclude = network === DEFAULT_NETWORK ? otherSubnets(this.list()) : [];
    return { subnet, exclude };
  }

  async close(): Promise<void> {
    const w = this.watch;
    this.watch = undefined;
    await w?.close().catch(() => undefined);
  }
}

function otherSubnets(records: NetworkRecord[]): NetworkSubnet['exclude'] {
  return records
    .filter((r) => r.name !== DEFAULT_NETWORK)
    .map((r) => ({ network: r.name, subnet: parseCidr(r.subnet) }));
}

/**
 * The create's half of the race with a default-network claim inside the new subnet: "no
 * block or address key inside the subnet was created or changed since the listings the
 * create checked". A host that took a block (or an address) there in between makes the
 * create fail; it reads again and refuses the subnet, naming that block (or picks
 * another subnet, when none was given). The claim's half is the catalog guard
 * (`subnetFromStore`).
 */
function unusedSince(occ: SubnetOccupancy | undefined, rec: NetworkRecord): Compare[] {
  if (occ?.blocksRevision === undefined || occ.addrsRevision === undefined) return [];
  const subnet = parseCidr(rec.subnet);
  return [
    { range: keyRangeOf(BLOCKS_PREFIX, subnet), unchangedSince: occ.blocksRevision },
    { range: keyRangeOf(ADDRS_PREFIX, subnet), unchangedSince: occ.addrsRevision },
  ];
}

/** The records of a listing of NETWORKS_BY_NAME; unreadable ones are left out. */
function recordsOf(entries: KvEntry[]): NetworkRecord[] {
  return entries.map((e) => parseRecord(e.value)).filter((r): r is NetworkRecord => r !== undefined);
}

function parseRecord(text: string): NetworkRecord | undefined {
  const r = parseJsonSafe<NetworkRecord>(text);
  if (!r || typeof r.name !== 'string' || typeof r.id !== 'number' || typeof r.subnet !== 'string') return undefined;
  return { name: r.name, id: r.id, subnet: r.subnet, options: r.options ?? {}, created: r.created ?? '' };
}

function parseJsonSafe<T>(text: string): T | undefined {
  try {
    return JSON.parse(text) as T;
  } catch {
    return undefined;
  }
}
