/**
 * The Docker network driver and IPAM driver (libnetwork remote protocol), on top of the
 * daemon's endpoint registry and address allocator. See docs/DOCKER.md.
 *
 * - Segment: a Docker network is the weavets network (L2 segment) of the same name, so
 *   `appnet` created on several hosts is one segment; `-o weavets.segment=NAME` picks
 *   another. The remote protocol never carries the name: it is asked of Docker (by
 *   network id) the first time an endpoint is created, and kept.
 * - Subnets (docs/DOCKER.md, Subnets): a Docker network made by our IPAM driver is a
 *   network of the catalog and its containers are addressed from that network's subnet.
 *   The IPAM protocol never says which network a call is for, so each RequestPool gets
 *   its own pool id; CreateNetwork learns which pool is its network's from the gateway
 *   address Docker asked for under that pool, and once Docker has named the network (its
 *   API a moment after CreateNetwork: bindSoon; or the first container address asked for
 *   under the pool) it is bound to the catalog network of its segment, created there with
 *   a picked subnet (or the --subnet given) if missing.
 *   Docker records the pool it was answered (the whole range without --subnet) and the
 *   gateway it asked for before the network had a name; neither is used on the segment:
 *   each host's gateway there is its own address in the subnet, given at Join.
 * - Pools of the range (`--subnet <the range>`, and networks from before subnets) keep
 *   the old behaviour: addresses of the whole range, allocated under DOCKER_SPACE.
 * - Docker's default IPAM (`-d weavets` without --ipam-driver): Docker's own addresses,
 *   outside the range, on the segment; its bridge accepts sources from Docker's pool.
 * - Addresses: every address this IPAM driver hands out comes from the cluster
 *   allocator, so it is unique across all hosts and all networks. The IPAM protocol
 *   carries no endpoint, so each address gets its own handle, remembered by address in
 *   <stateDir>/docker.json (ReleaseAddress names only the address).
 * - Gateway: the network's gateway address goes on this host's bridge of the segment, so
 *   the host is on the network (routes, -p) and containers get a default route.
 * - Endpoints: CreateEndpoint plugs a veth (registry.plug); Join hands its free end to
 *   Docker, which moves it into the container and sets address, MAC and routes.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log';
import type { EndpointStatus } from '../endpoint/types';
import { DEFAULT_NETWORK } from '../config';
import { cidrSize, contains, formatCidr, formatIpv4, parseCidr, parseIpv4, type Cidr } from '../net/ipv4';
import { overlaps } from '../ipam/blocks';
import type { AddressAllocator } from '../ipam/types';
import { validateNetworkName } from '../endpoint/networks';
import type { FieldReader, JsonObject } from '../json-fields';
import { JsonStateFile, type StateFormat } from '../state/json-state-file';
import { StateDir } from '../state/state-dir';
import {
  ADDRESS_TYPE_GATEWAY,
  IPAM_DRIVER,
  NETWORK_DRIVER,
  OPT_ADDRESS_TYPE,
  OPT_GENERIC,
  OPT_SEGMENT,
  PluginError,
  errorAnswer,
  optArray,
  optObject,
  optString,
  parseBody,
  parsePortBindings,
  pluginErrorOf,
  reqString,
  type Body,
  type PluginAnswer,
  type PortBinding,
} from './protocol';
import type { PortPublisher } from './ports';
import { SerialQueue } from '../serial-queue';

/** Allocation space (the allocator's network label) of every Docker address. */
export const DOCKER_SPACE = DEFAULT_NETWORK;
export const ADDRESS_SPACE = 'weavets';
const KNOWN_OPTIONS = new Set([OPT_SEGMENT]);
/** Prefix of the pool id answered to each RequestPool that is not the whole range. */
const POOL_ID_PREFIX = 'weavets-pool-';
/** How an error names our IPAM driver (its real name is the driver's, which the plugin may not know). */
const IPAM_HINT = 'weavets (the same name as -d)';

export interface PluginEndpoints {
  plug(req: { id: string; network: string; address: string; mac?: string; gateway?: string }): Promise<EndpointStatus>;
  detach(id: string): Promise<void>;
  list(): EndpointStatus[];
}

/** What a Docker network wants of its segment's catalog network and bridge. */
export interface SegmentWants {
  /** The catalog network's subnet must be this (created with it when missing). */
  subnet?: string;
  /** Sources the bridge accepts besides the subnet's: the range, or Docker's own pool. */
  sources?: string;
}

export interface PluginBridges {
  /**
   * Make sure the segment's catalog network (created by this plugin when missing) and
   * bridge exist; answers the bridge's name and the network's subnet. Throws, naming the
   * conflict, when the catalog network exists with another subnet or the subnet is taken.
   */
  ensure(segment: string, wants?: SegmentWants): Promise<{ bridge: string; subnet: string }>;
  /**
   * The Docker network on the segment is gone from this host: remove the catalog network
   * if this plugin created it and nothing anywhere uses it. Never throws.
   */
  release(segment: string): Promise<void>;
  addAddress(bridge: string, cidr: string): Promise<void>;
  delAddress(bridge: string, cidr: string): Promise<void>;
  /**
   * A host route to one container through its segment's bridge. Every segment shares the
   * range's subnet, so with the host on several segments the /12 routes are ambiguous;
   * published ports (DNAT from the host) need the exact bridge.
   */
  routeTo(bridge: string, ip: string): Promise<void>;
  unroute(bridge: string, ip: string): Promise<void>;
}

export interface DockerPluginDeps {
  range: Cidr;
  allocator: AddressAllocator;
  endpoints: PluginEndpoints;
  bridges: PluginBridges;
  /** Docker network id -> name; undefined when Docker does not know it (or is unreachable). */
  networkName(id: string): Promise<string | undefined>;
  /** The catalog's networks as this host sees them (to check a --subnet against). */
  catalog(): { name: string; subnet: string }[];
  /**
   * Why the catalog would refuse a new network with this subnet now (smaller than a
   * block, the default network's addresses in use there, ...), read from the store;
   * undefined when it would not, or when it is an existing network's subnet.
   */
  subnetRefusal(subnet: string): Promise<string | undefined>;
  ports: PortPublisher;
  stateDir: string;
  log: Logger;
  /** Called after each Plugin.Activate (dockerd started, or restarted, and found us). */
  onActivate?: () => void;
  /**
   * When to try binding a new network to its catalog network after CreateNetwork (Docker
   * names it a moment later), in ms; default 300, 1500, 5000. Tests pass [].
   */
  bindDelaysMs?: readonly number[];
}

const BIND_DELAYS_MS: readonly number[] = [300, 1500, 5000];

/**
 * Where a Docker network's addresses come from: `range` (our IPAM, the whole range:
 * `--subnet <range>` and every network from before subnets), `subnet` (our IPAM, the
 * catalog network's subnet), `docker` (Docker's default IPAM, outside the range).
 */
type AddressKind = 'range' | 'subnet' | 'docker';

interface NetworkRecord {
  segment?: string;
  /** CIDR of the gateway on this host, "10.32.0.1/12". */
  gateway?: string;
  options: Record<string, string>;
  /** Absent in state from before subnets: `range`. */
  kind?: AddressKind;
  /** `subnet`: the pool id Docker has; `docker`: absent. */
  poolId?: string;
  /** `subnet`: the --subnet asked for, if any; `docker`: Docker's pool. */
  subnet?: string;
  /** `subnet`: the allocator handle of this host's gateway in the subnet. */
  gatewayHandle?: { id: string; ifname: string };
}

/** A pool answered to RequestPool (not the range's). */
interface PoolRecord {
  /** The pool Docker was answered: the range, or the --subnet asked for. */
  pool: string;
  /** The --subnet asked for. */
  subnet?: string;
  /** The Docker network it is, once CreateNetwork said so. */
  networkId?: string;
}

interface EndpointRecord {
  networkId: string;
  address: string;
  sandbox?: string;
  ports?: PortBinding[];
}

/**
 * Keyed by ids Docker (or a caller of the plugin socket) chooses: Maps, never plain
 * objects, so an id like "__proto__" or "constructor" is just a key. On disk each map is
 * a JSON object (Object.fromEntries / Object.entries keep such keys as own properties).
 */
interface State {
  networks: Map<string, NetworkRecord>;
  /** Allocated address (dotted) -> the allocator handle holding it (and the pool asked under). */
  addresses: Map<string, AddressHandle>;
  endpoints: Map<string, EndpointRecord>;
  /** Pool id -> pool, for every pool answered that is not the range's. */
  pools: Map<string, PoolRecord>;
}

interface AddressHandle {
  id: string;
  ifname: string;
  pool?: string;
}

const ADDRESS_KINDS: readonly string[] = ['range', 'subnet', 'docker'];

const PORT_PROTOS: readonly string[] = ['tcp', 'udp', 'sctp'];

/** A map kept on disk as a JSON object (own keys only, so "__proto__" is just a key). */
function mapIn<T>(
  doc: JsonObject,
  field: string,
  fields: FieldReader,
  each: (v: unknown, at: string) => T,
): Map<string, T> {
  const o = fields.optObject(doc, field) ?? {};
  return new Map(Object.entries(o).map(([k, v]) => [k, each(v, `${field}[${JSON.stringify(k)}]`)]));
}

function parsePortBinding(v: unknown, at: string, fields: FieldReader): PortBinding {
  const o = fields.asObject(v, at);
  const f = fields.within(`${at}.`);
  const proto = f.reqString(o, 'proto');
  if (!PORT_PROTOS.includes(proto)) throw f.fail('proto', 'must be tcp, udp or sctp');
  const num = (field: string): number => f.reqInteger(o, field, 0, 65535);
  return {
    proto: proto as PortBinding['proto'],
    port: num('port'),
    hostIp: f.optString(o, 'hostIp') ?? '',
    hostPort: num('hostPort'),
    hostPortEnd: num('hostPortEnd'),
  };
}

function parseStoredState(doc: JsonObject, fields: FieldReader): State {
  const networks = mapIn(doc, 'networks', fields, (v, at): NetworkRecord => {
    const o = fields.asObject(v, at);
    const f = fields.within(`${at}.`);
    const rec: NetworkRecord = { options: f.optStringRecord(o, 'options') ?? {} };
    const segment = f.optString(o, 'segment');
    const gateway = f.optString(o, 'gateway');
    const kind = f.optString(o, 'kind');
    const poolId = f.optString(o, 'poolId');
    const subnet = f.optString(o, 'subnet');
    const gw = f.optObject(o, 'gatewayHandle');
    if (segment !== undefined) rec.segment = segment;
    if (gateway !== undefined) rec.gateway = gateway;
    if (kind !== undefined) {
      if (!ADDRESS_KINDS.includes(kind)) throw f.fail('kind', `must be one of ${ADDRESS_KINDS.join(', ')}`);
      rec.kind = kind as AddressKind;
    }
    if (poolId !== undefined) rec.poolId = poolId;
    if (subnet !== undefined) rec.subnet = subnet;
    if (gw !== undefined) {
      const g = f.within('gatewayHandle.');
      rec.gatewayHandle = { id: g.reqString(gw, 'id'), ifname: g.reqString(gw, 'ifname') };
    }
    return rec;
  });
  const addresses = mapIn(doc, 'addresses', fields, (v, at): AddressHandle => {
    const o = fields.asObject(v, at);
    const f = fields.within(`${at}.`);
    const pool = f.optString(o, 'pool');
    return { id: f.reqString(o, 'id'), ifname: f.reqString(o, 'ifname'), ...(pool !== undefined ? { pool } : {}) };
  });
  const pools = mapIn(doc, 'pools', fields, (v, at): PoolRecord => {
    const o = fields.asObject(v, at);
    const f = fields.within(`${at}.`);
    const subnet = f.optString(o, 'subnet');
    const networkId = f.optString(o, 'networkId');
    return {
      pool: f.reqString(o, 'pool'),
      ...(subnet !== undefined ? { subnet } : {}),
      ...(networkId !== undefined ? { networkId } : {}),
    };
  });
  const endpoints = mapIn(doc, 'endpoints', fields, (v, at): EndpointRecord => {
    const o = fields.asObject(v, at);
    const f = fields.within(`${at}.`);
    const rec: EndpointRecord = { networkId: f.reqString(o, 'networkId'), address: f.reqString(o, 'address') };
    const sandbox = f.optString(o, 'sandbox');
    const ports = f.optArray(o, 'ports');
    if (sandbox !== undefined) rec.sandbox = sandbox;
    if (ports !== undefined) rec.ports = ports.map((p, i) => parsePortBinding(p, `${at}.ports[${i}]`, fields));
    return rec;
  });
  return { networks, addresses, endpoints, pools };
}

/**
 * docker.json: version 1 adds `version` to the unversioned {networks, addresses, endpoints};
 * `pools` and the networks' `kind`, `poolId`, `subnet`, `gatewayHandle` are optional (absent
 * in files from before subnets, read as networks of the range).
 */
export const DOCKER_STATE_FORMAT: StateFormat<State> = {
  version: 1,
  parse: parseStoredState,
  parseUnversioned: (doc, fields) => parseStoredState(fields.asObject(doc, 'the document'), fields),
  toJson: (state) => ({
    networks: Object.fromEntries(state.networks),
    addresses: Object.fromEntries(state.addresses),
    endpoints: Object.fromEntries(state.endpoints),
    pools: Object.fromEntries(state.pools),
  }),
};

function dockerStateFile(stateDir: string): JsonStateFile<State> {
  return new JsonStateFile(new StateDir(stateDir).docker, DOCKER_STATE_FORMAT);
}

type Handler = (body: Body) => Promise<unknown>;

/** Every allocator handle the state holds: addresses Docker asked for and this host's gateways in subnets. */
function handlesOf(state: State): { id: string; ifname: string }[] {
  return [
    ...[...state.addresses.values()].map((h) => ({ id: h.id, ifname: h.ifname })),
    ...[...state.networks.values()].flatMap((n) => (n.gatewayHandle ? [n.gatewayHandle] : [])),
  ];
}

/** Registry id of a Docker endpoint. */
export function endpointIdFor(dockerEndpointId: string): string {
  return `docker:${dockerEndpointId}`;
}

export class DockerPlugin {
  private state: State = { networks: new Map(), addresses: new Map(), endpoints: new Map(), pools: new Map() };
  private readonly file: JsonStateFile<State>;
  private readonly poolId: string;
  private readonly handlers: Record<string, Handler>;
  /** Serialises state changes (Docker calls concurrently for different containers). */
  private readonly queue = new SerialQueue();
  /** When a RequestPool without a pool was last answered, until an address is requested. */
  private unaskedPoolAt: number | undefined;
  /** Pending early binds (bindSoon); cleared by close. */
  private readonly bindTimers = new Set<NodeJS.Timeout>();
  private closed = false;

  constructor(private readonly deps: DockerPluginDeps) {
    this.file = dockerStateFile(deps.stateDir);
    this.poolId = `weavets-${formatCidr(deps.range)}`;
    const N = NETWORK_DRIVER;
    const I = IPAM_DRIVER;
    this.handlers = {
      '/Plugin.Activate': async () => {
        setImmediate(() => this.deps.onActivate?.());
        return { Implements: [N, I] };
      },
      [`/${N}.GetCapabilities`]: async () => ({ Scope: 'local', ConnectivityScope: 'global' }),
      [`/${N}.CreateNetwork`]: (b) => this.serial(() => this.createNetwork(b)),
      [`/${N}.DeleteNetwork`]: (b) => this.serial(() => this.deleteNetwork(b)),
      [`/${N}.AllocateNetwork`]: async (b) => {
        reqString(b, 'NetworkID');
        return { Options: {} };
      },
      [`/${N}.FreeNetwork`]: async (b) => {
        reqString(b, 'NetworkID');
        return {};
      },
      [`/${N}.CreateEndpoint`]: (b) => this.serial(() => this.createEndpoint(b)),
      [`/${N}.EndpointOperInfo`]: async (b) => this.operInfo(b),
      [`/${N}.DeleteEndpoint`]: (b) => this.serial(() => this.deleteEndpoint(b)),
      [`/${N}.Join`]: (b) => this.serial(() => this.join(b)),
      [`/${N}.Leave`]: (b) => this.serial(() => this.leave(b)),
      [`/${N}.DiscoverNew`]: async () => ({}),
      [`/${N}.DiscoverDelete`]: async () => ({}),
      [`/${N}.ProgramExternalConnectivity`]: (b) => this.serial(() => this.programExternal(b)),
      [`/${N}.RevokeExternalConnectivity`]: (b) => this.serial(() => this.revokeExternal(b)),
      [`/${I}.GetCapabilities`]: async () => ({ RequiresMACAddress: false, RequiresRequestReplay: false }),
      [`/${I}.GetDefaultAddressSpaces`]: async () => ({
        LocalDefaultAddressSpace: ADDRESS_SPACE,
        GlobalDefaultAddressSpace: ADDRESS_SPACE,
      }),
      [`/${I}.RequestPool`]: (b) => this.serial(() => this.requestPool(b)),
      [`/${I}.ReleasePool`]: (b) => this.serial(() => this.releasePool(b)),
      [`/${I}.RequestAddress`]: (b) => this.serial(() => this.requestAddress(b)),
      [`/${I}.ReleaseAddress`]: (b) => this.serial(() => this.releaseAddress(b)),
    };
  }

  /** Load what a previous run knew (networks, address handles, endpoints). */
  async restore(): Promise<void> {
    try {
      const stored = await this.file.read();
      if (stored !== undefined) this.state = stored;
    } catch (err) {
      this.deps.log.warn('ignoring unreadable Docker plugin state', {
        file: this.file.file,
        error: (err as Error).message,
      });
    }
  }

  /** Stop pending work (early binds); the state file is already saved. Never throws. */
  close(): void {
    this.closed = true;
    for (const t of this.bindTimers) clearTimeout(t);
    this.bindTimers.clear();
  }

  /**
   * Bind a network with a subnet of its own as soon as Docker has named it, so `weavets
   * network ls` shows it right after `docker network create`; the first container binds
   * it anyway if this does not (Docker unreachable, a refused subnet: logged).
   */
  private bindSoon(networkId: string, attempt = 0): void {
    const delays = this.deps.bindDelaysMs ?? BIND_DELAYS_MS;
    const delay = delays[attempt];
    if (delay === undefined || this.closed) return;
    const t = setTimeout(() => {
      this.bindTimers.delete(t);
      void this.serial(async () => {
        const net = this.state.networks.get(networkId);
        if (this.closed || net?.kind !== 'subnet' || net.gateway !== undefined) return;
        if (net.segment === undefined && (await this.deps.networkName(networkId)) === undefined) {
          this.bindSoon(networkId, attempt + 1);
          return;
        }
        await this.bind(networkId);
      }).catch((err: unknown) =>
        this.deps.log.warn('Docker network not bound to its subnet yet (its first container will try again)', {
          id: networkId.slice(0, 12),
          error: (err as Error).message,
        }),
      );
    }, delay);
    t.unref();
    this.bindTimers.add(t);
  }

  /** Answer one plugin request: `path` like "/NetworkDriver.Join", `text` the raw body. */
  async handle(urlPath: string, text: string): Promise<PluginAnswer> {
    this.deps.log.debug('plugin request', { method: urlPath, bytes: text.length });
    const handler = Object.prototype.hasOwnProperty.call(this.handlers, urlPath) ? this.handlers[urlPath] : undefined;
    if (!handler) return errorAnswer(new PluginError(404, `weavets: no such plugin method ${urlPath}`));
    try {
      const body = await handler(parseBody(text));
      return { status: 200, body };
    } catch (err) {
      const pe = pluginErrorOf(err);
      this.deps.log.warn('Docker plugin request failed', { method: urlPath, error: pe.message });
      return errorAnswer(pe);
    }
  }

  /** The allocator handles of every Docker address this host holds (claims for the IPAM reconciler). */
  addressHandles(): { id: string; ifname: string }[] {
    return handlesOf(this.state);
  }

  /**
   * The same from <stateDir>/docker.json, for a daemon running without the Docker surface:
   * the addresses of containers Docker started earlier stay theirs.
   */
  static storedAddressHandles(stateDir: string): { id: string; ifname: string }[] {
    try {
      const state = dockerStateFile(stateDir).readSync();
      return state === undefined ? [] : handlesOf(state);
    } catch {
      return [];
    }
  }

  /**
   * Networks as this host knows them, for status and for a restart: `sources` is what
   * the segment's bridge must accept besides its subnet (the range, or Docker's pool).
   */
  networks(): { id: string; segment?: string; gateway?: string; sources?: string }[] {
    return [...this.state.networks].map(([id, n]) => {
      const sources = this.sourcesOf(n);
      return {
        id,
        ...(n.segment ? { segment: n.segment } : {}),
        ...(n.gateway ? { gateway: n.gateway } : {}),
        ...(sources !== undefined ? { sources } : {}),
      };
    });
  }

  private sourcesOf(n: NetworkRecord): string | undefined {
    const kind = n.kind ?? 'range';
    return kind === 'range' ? formatCidr(this.deps.range) : kind === 'docker' ? n.subnet : undefined;
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.run(fn);
  }

  private async save(): Promise<void> {
    await this.file.write(this.state);
  }

  // ---- IPAM driver ----------------------------------------------------------------

  /** The pool of an id we answered: undefined for the range's, else its record. */
  private poolOf(poolId: string): PoolRecord | undefined {
    if (poolId === this.poolId) return undefined;
    const rec = poolId.startsWith(POOL_ID_PREFIX) ? this.state.pools.get(poolId) : undefined;
    if (!rec) throw new PluginError(400, `unknown pool ${JSON.stringify(poolId)}; it was not answered by weavets`);
    return rec;
  }

  private async requestPool(b: Body): Promise<unknown> {
    const range = formatCidr(this.deps.range);
    if (b['V6'] === true)
      throw new PluginError(400, 'weavets does not provide IPv6 addresses; create the network without --ipv6');
    const space = optString(b, 'AddressSpace');
    if (space !== undefined && space !== ADDRESS_SPACE) {
      throw new PluginError(400, `unknown address space ${JSON.stringify(space)}; weavets has one, ${ADDRESS_SPACE}`);
    }
    const pool = optString(b, 'Pool');
    const sub = optString(b, 'SubPool');
    if (pool === undefined && sub !== undefined) throw new PluginError(400, '--ip-range needs --subnet');
    const opts = optObject(b, 'Options');
    for (const k of Object.keys(opts))
      throw new PluginError(400, `unknown --ipam-opt ${k}; the weavets IPAM driver takes none`);
    let subnet: Cidr | undefined;
    if (pool !== undefined) {
      subnet = this.parseFlag('--subnet', pool);
      if (sub !== undefined && formatCidr(this.parseFlag('--ip-range', sub)) !== formatCidr(subnet)) {
        throw new PluginError(
          400,
          `--ip-range ${sub}: weavets allocates from the whole subnet of a network across hosts; omit --ip-range`,
        );
      }
      if (formatCidr(subnet) === range) {
        // The whole range: every address of the range, as before subnets (docs/DOCKER.md).
        this.unaskedPoolAt = undefined;
        return { PoolID: this.poolId, Pool: range, Data: {} };
      }
      const problem = this.subnetProblem(subnet) ?? (await this.deps.subnetRefusal(formatCidr(subnet)));
      if (problem) throw new PluginError(400, `--subnet ${pool}: ${problem}`);
    }
    if (pool === undefined) {
      // Docker checks a pool it did not ask for against the main table's routes and, when
      // they overlap, asks again at once, forever, since every pool we answer is in the
      // range. weavets keeps its own routes out of main (src/endpoint/host-routes.ts), so
      // an overlap is someone else's route. A second pool request with no address request
      // in between is that loop: stop it with an answer the user can act on.
      const now = Date.now();
      if (this.unaskedPoolAt !== undefined && now - this.unaskedPoolAt < 5000) {
        this.unaskedPoolAt = undefined;
        throw new PluginError(
          400,
          `a route in this host's main table overlaps the weavets range ${range} (see \`ip route\`), and Docker takes an ` +
            `overlapping pool only when it is asked for: add --subnet ${range}, or remove that route`,
        );
      }
      this.unaskedPoolAt = now;
    } else this.unaskedPoolAt = undefined;
    const poolId = `${POOL_ID_PREFIX}${randomBytes(8).toString('hex')}`;
    const answered = subnet !== undefined ? formatCidr(subnet) : range;
    this.state.pools.set(poolId, { pool: answered, ...(subnet !== undefined ? { subnet: answered } : {}) });
    await this.save();
    return { PoolID: poolId, Pool: answered, Data: {} };
  }

  private parseFlag(flag: string, v: string): Cidr {
    try {
      return parseCidr(v, false);
    } catch (err) {
      throw new PluginError(400, `${flag} ${v}: ${(err as Error).message}`, { cause: err });
    }
  }

  /**
   * Why `subnet` cannot be a weavets network's, as far as this host's catalog tells: not
   * inside the range, or overlapping a network without being its subnet. The rest (block
   * size, the default network's addresses in use) is the catalog's `subnetRefusal`, read
   * from the store; the catalog checks all of it again when the network is created at
   * the binding (a block taken in between still refuses it there).
   */
  private subnetProblem(subnet: Cidr): string | undefined {
    const { range } = this.deps;
    const text = formatCidr(subnet);
    const end = subnet.base + cidrSize(subnet) - 1;
    if (!contains(range, subnet.base) || !contains(range, end))
      return `${text} lies outside the weavets range ${formatCidr(range)} (weavets launch --ipalloc-range)`;
    if (subnet.prefix <= range.prefix) return `${text} is larger than the weavets range ${formatCidr(range)}`;
    for (const n of this.deps.catalog()) {
      if (n.name === DEFAULT_NETWORK || n.subnet === text) continue;
      if (overlaps(parseCidr(n.subnet), subnet)) return `${text} overlaps weavets network ${n.name} (${n.subnet})`;
    }
    return undefined;
  }

  private async releasePool(b: Body): Promise<unknown> {
    const poolId = reqString(b, 'PoolID');
    this.unaskedPoolAt = undefined;
    if (poolId === this.poolId) return {};
    if (!this.state.pools.has(poolId)) {
      this.deps.log.warn('Docker IPAM: release of a pool we do not hold', { pool: poolId });
      return {};
    }
    this.state.pools.delete(poolId);
    await this.save();
    return {};
  }

  private async requestAddress(b: Body): Promise<unknown> {
    const poolId = reqString(b, 'PoolID');
    const pool = this.poolOf(poolId);
    this.unaskedPoolAt = undefined;
    const wanted = optString(b, 'Address');
    const opts = optObject(b, 'Options');
    const isGateway = opts[OPT_ADDRESS_TYPE] === ADDRESS_TYPE_GATEWAY;
    let ip: number | undefined;
    if (wanted !== undefined) {
      try {
        ip = parseIpv4(wanted.includes('/') ? wanted.split('/')[0]! : wanted);
      } catch (err) {
        throw new PluginError(400, `Address: ${(err as Error).message}`, { cause: err });
      }
    }
    const handle = { id: `docker-ipam-${randomBytes(6).toString('hex')}`, ifname: 'eth0' };
    let network = DOCKER_SPACE;
    let prefix: number | undefined;
    if (pool !== undefined && isGateway) {
      // Asked while Docker creates the network, before it has a name (so before we know
      // its catalog network): a unique address Docker records as the gateway and that no
      // bridge carries; each host's gateway on the segment is given at Join.
      if (ip !== undefined)
        throw new PluginError(400, '--gateway is not used on a weavets subnet: each host has its own gateway there');
      prefix = parseCidr(pool.pool).prefix;
    } else if (pool !== undefined) {
      if (pool.networkId === undefined)
        throw new PluginError(
          500,
          `weavets: pool ${poolId} belongs to no Docker network (was it created while weavets was down?)`,
        );
      ({ segment: network } = await this.bind(pool.networkId));
    }
    const a = await this.deps.allocator.allocate({
      ...handle,
      network,
      ...(ip !== undefined ? { ip } : {}),
    });
    this.state.addresses.set(formatIpv4(a.ip), { ...handle, ...(pool !== undefined ? { pool: poolId } : {}) });
    await this.save();
    this.deps.log.info('Docker IPAM: allocated', { address: a.address, network, gateway: isGateway });
    return { Address: prefix !== undefined ? `${formatIpv4(a.ip)}/${prefix}` : a.address, Data: {} };
  }

  /**
   * The catalog network of a Docker network addressed from a subnet, bound on first use:
   * the segment's catalog network (with the --subnet asked for, if one was), its bridge,
   * and this host's gateway in the subnet on that bridge.
   */
  private async bind(networkId: string): Promise<{ net: NetworkRecord; segment: string; bridge: string }> {
    const { net, segment } = await this.segmentOf(networkId);
    const got = await this.deps.bridges.ensure(segment, this.wantsOf(net));
    if (net.gateway === undefined) {
      const handle = { id: `docker-gw-${networkId.slice(0, 12)}-${randomBytes(3).toString('hex')}`, ifname: 'gw' };
      const a = await this.deps.allocator.allocate({ ...handle, network: segment });
      net.gatewayHandle = handle;
      net.gateway = a.address;
      await this.save();
      this.deps.log.info('Docker network bound to its subnet', {
        id: networkId.slice(0, 12),
        segment,
        subnet: got.subnet,
        gateway: a.address,
      });
    }
    await this.deps.bridges.addAddress(got.bridge, net.gateway);
    return { net, segment, bridge: got.bridge };
  }

  private wantsOf(net: NetworkRecord): SegmentWants {
    const kind = net.kind ?? 'range';
    if (kind === 'subnet') return net.subnet !== undefined ? { subnet: net.subnet } : {};
    const sources = this.sourcesOf(net);
    return sources !== undefined ? { sources } : {};
  }

  private async releaseAddress(b: Body): Promise<unknown> {
    this.poolOf(reqString(b, 'PoolID'));
    const text = reqString(b, 'Address');
    let ip: string;
    try {
      ip = formatIpv4(parseIpv4(text.split('/')[0]!));
    } catch (err) {
      throw new PluginError(400, `Address: ${(err as Error).message}`, { cause: err });
    }
    const handle = this.state.addresses.get(ip);
    if (!handle) {
      // Already released (a repeated call), or allocated by a lost state file: nothing to do.
      this.deps.log.warn('Docker IPAM: release of an address we do not hold', { address: ip });
      return {};
    }
    await this.deps.allocator.release(handle.id, handle.ifname);
    this.state.addresses.delete(ip);
    await this.save();
    return {};
  }

  // ---- network driver ---------------------------------------------------------------

  private async createNetwork(b: Body): Promise<unknown> {
    const id = reqString(b, 'NetworkID');
    const options = optObject(b, 'Options');
    const generic = optObject(options, OPT_GENERIC);
    const opts: Record<string, string> = {};
    for (const [k, v] of Object.entries(generic)) {
      if (!KNOWN_OPTIONS.has(k))
        throw new PluginError(400, `unknown option -o ${k}; weavets networks take: ${[...KNOWN_OPTIONS].join(', ')}`);
      if (typeof v !== 'string') throw new PluginError(400, `option -o ${k} must be a string`);
      opts[k] = v;
    }
    const segment = opts[OPT_SEGMENT];
    if (segment !== undefined) {
      const bad = validateNetworkName(segment);
      if (bad) throw new PluginError(400, `-o ${OPT_SEGMENT}: ${bad}`);
    }
    if (optArray(b, 'IPv6Data').length > 0)
      throw new PluginError(400, 'weavets networks are IPv4 only; create the network without --ipv6');
    const v4 = optArray(b, 'IPv4Data');
    if (v4.length > 1) throw new PluginError(400, 'a weavets network has one IPv4 subnet');
    const d = (v4[0] ?? {}) as Body;
    const pool = optString(d, 'Pool');
    let gateway = optString(d, 'Gateway');
    const range = formatCidr(this.deps.range);
    const gatewayIp = gateway === undefined ? undefined : gateway.split('/')[0]!;
    const poolId = gatewayIp === undefined ? undefined : this.state.addresses.get(gatewayIp)?.pool;
    const rec: NetworkRecord = { ...(segment ? { segment } : {}), options: opts };
    const ours = poolId !== undefined && this.state.pools.has(poolId);
    if (ours) {
      // Our IPAM, a subnet's pool: the gateway Docker recorded stays off the segment (bind).
      const p = this.state.pools.get(poolId)!;
      if (p.networkId !== undefined && p.networkId !== id)
        throw new PluginError(400, `pool ${poolId} is already Docker network ${p.networkId.slice(0, 12)}'s`);
      rec.kind = 'subnet';
      rec.poolId = poolId;
      if (p.subnet !== undefined) {
        rec.subnet = p.subnet;
        // A --subnet that is a catalog network's subnet is that network, whatever its Docker name.
        const same = this.deps.catalog().find((n) => n.subnet === p.subnet && n.name !== DEFAULT_NETWORK);
        if (same !== undefined && segment !== undefined && segment !== same.name)
          throw new PluginError(
            400,
            `-o ${OPT_SEGMENT}=${segment}, but --subnet ${p.subnet} is weavets network ${same.name}'s`,
          );
        if (same !== undefined) rec.segment = same.name;
      }
      p.networkId = id;
    } else if (pool === undefined || pool === range) {
      // Our IPAM, the range's pool (or a network without IPAM data): the whole range.
      rec.kind = 'range';
      if (gateway !== undefined && !gateway.includes('/')) gateway = `${gateway}/${this.deps.range.prefix}`;
      if (gateway !== undefined) rec.gateway = gateway;
    } else {
      // Docker's default IPAM (or another driver): its addresses, which must stay out of the range.
      const c = this.parseFlag('the pool', pool);
      if (overlaps(c, this.deps.range)) {
        throw new PluginError(
          400,
          `the network's pool ${pool} overlaps the weavets range ${range}, and its addresses would not come from weavets: ` +
            `add --ipam-driver ${IPAM_HINT}, or give a --subnet outside ${range}`,
        );
      }
      rec.kind = 'docker';
      rec.subnet = formatCidr(c);
      if (gateway !== undefined && !gateway.includes('/')) gateway = `${gateway}/${c.prefix}`;
      if (gateway !== undefined) rec.gateway = gateway;
    }
    this.state.networks.set(id, rec);
    await this.save();
    if (rec.kind === 'subnet') this.bindSoon(id);
    this.deps.log.info('Docker network created', {
      id: id.slice(0, 12),
      segment: rec.segment ?? '(its name)',
      addresses:
        rec.kind === 'subnet'
          ? (rec.subnet ?? 'a subnet of the catalog')
          : rec.kind === 'docker'
            ? `${rec.subnet} (Docker's IPAM)`
            : range,
      gateway: rec.gateway,
    });
    return {};
  }

  private async deleteNetwork(b: Body): Promise<unknown> {
    const id = reqString(b, 'NetworkID');
    const net = this.state.networks.get(id);
    if (net?.segment !== undefined && net.gateway !== undefined) {
      const { bridge } = await this.deps.bridges.ensure(net.segment, this.wantsOf(net));
      await this.deps.bridges.delAddress(bridge, net.gateway);
    }
    if (net?.gatewayHandle !== undefined)
      await this.deps.allocator.release(net.gatewayHandle.id, net.gatewayHandle.ifname);
    this.state.networks.delete(id);
    await this.save();
    if (net?.kind === 'subnet' && net.segment !== undefined) await this.deps.bridges.release(net.segment);
    return {};
  }

  /** The segment of a Docker network: its -o weavets.segment, else its Docker name (asked once). */
  private async segmentOf(networkId: string): Promise<{ net: NetworkRecord; segment: string }> {
    let net = this.state.networks.get(networkId);
    if (!net) {
      // Created before this state file existed (or it was lost): learn what we can.
      net = { options: {} };
      this.state.networks.set(networkId, net);
    }
    if (net.segment === undefined) {
      const name = await this.deps.networkName(networkId);
      if (name === undefined) {
        throw new PluginError(
          500,
          `cannot learn the name of Docker network ${networkId.slice(0, 12)} (is the Docker API reachable? see weavets launch --docker-host); or create it with -o ${OPT_SEGMENT}=NAME`,
        );
      }
      const bad = validateNetworkName(name);
      if (bad) throw new PluginError(400, `Docker network ${name}: ${bad}; create it with -o ${OPT_SEGMENT}=NAME`);
      net.segment = name;
      await this.save();
    }
    return { net, segment: net.segment };
  }

  /** The segment's bridge, ready for the network's containers (bound to its subnet, or accepting its sources). */
  private async bridgeOf(networkId: string): Promise<{ net: NetworkRecord; segment: string; bridge: string }> {
    const { net, segment } = await this.segmentOf(networkId);
    if (net.kind === 'subnet') return this.bind(networkId);
    const { bridge } = await this.deps.bridges.ensure(segment, this.wantsOf(net));
    if (net.gateway !== undefined) await this.deps.bridges.addAddress(bridge, net.gateway);
    return { net, segment, bridge };
  }

  private async createEndpoint(b: Body): Promise<unknown> {
    const networkId = reqString(b, 'NetworkID');
    const endpointId = reqString(b, 'EndpointID');
    const iface = optObject(b, 'Interface');
    const address = optString(iface, 'Address');
    if (address === undefined)
      throw new PluginError(400, 'the endpoint has no IPv4 address; use --ipam-driver weavets');
    if (optString(iface, 'AddressIPv6') !== undefined) throw new PluginError(400, 'weavets networks are IPv4 only');
    const mac = optString(iface, 'MacAddress');
    const { net, segment, bridge } = await this.bridgeOf(networkId);
    const ep = await this.deps.endpoints.plug({
      id: endpointIdFor(endpointId),
      network: segment,
      address,
      ...(mac !== undefined ? { mac } : {}),
      ...(net.gateway !== undefined ? { gateway: net.gateway.split('/')[0]! } : {}),
    });
    await this.deps.bridges.routeTo(bridge, address.split('/')[0]!);
    this.state.endpoints.set(endpointId, { networkId, address });
    await this.save();
    // Docker gave an address; it wants a MAC back only when it gave none.
    return mac === undefined ? { Interface: { MacAddress: ep.mac } } : { Interface: {} };
  }

  private endpoint(b: Body): { endpointId: string; rec: EndpointRecord } {
    reqString(b, 'NetworkID');
    const endpointId = reqString(b, 'EndpointID');
    const rec = this.state.endpoints.get(endpointId);
    if (!rec) throw new PluginError(500, `weavets: no endpoint ${endpointId.slice(0, 12)} on this host`);
    return { endpointId, rec };
  }

  private async operInfo(b: Body): Promise<unknown> {
    const { endpointId, rec } = this.endpoint(b);
    const ep = this.deps.endpoints.list().find((e) => e.id === endpointIdFor(endpointId));
    const net = this.state.networks.get(rec.networkId);
    return {
      Value: {
        'weavets.segment': net?.segment ?? '',
        'weavets.host_veth': ep?.hostVeth ?? '',
        'weavets.address': rec.address,
        ...(rec.ports?.length
          ? { 'weavets.ports': rec.ports.map((p) => `${p.hostPort}->${p.port}/${p.proto}`).join(',') }
          : {}),
      },
    };
  }

  private async deleteEndpoint(b: Body): Promise<unknown> {
    reqString(b, 'NetworkID');
    const endpointId = reqString(b, 'EndpointID');
    const rec = this.state.endpoints.get(endpointId);
    if (rec?.ports?.length) await this.deps.ports.unpublish(rec.ports);
    const net = rec ? this.state.networks.get(rec.networkId) : undefined;
    if (rec && net?.segment !== undefined) {
      const { bridge } = await this.deps.bridges.ensure(net.segment, this.wantsOf(net));
      await this.deps.bridges.unroute(bridge, rec.address.split('/')[0]!).catch(() => undefined);
    }
    await this.deps.endpoints.detach(endpointIdFor(endpointId)).catch((err: unknown) => {
      // Already gone (a repeat, or lost while we were down): deleting is done.
      this.deps.log.debug('DeleteEndpoint: nothing to detach', {
        id: endpointId.slice(0, 12),
        error: (err as Error).message,
      });
    });
    this.state.endpoints.delete(endpointId);
    await this.save();
    return {};
  }

  private async join(b: Body): Promise<unknown> {
    const { endpointId, rec } = this.endpoint(b);
    const sandbox = optString(b, 'SandboxKey');
    const ep = this.deps.endpoints.list().find((e) => e.id === endpointIdFor(endpointId));
    if (!ep) throw new PluginError(500, `weavets: endpoint ${endpointId.slice(0, 12)} has no interface on this host`);
    if (sandbox !== undefined) rec.sandbox = sandbox;
    await this.save();
    const net = this.state.networks.get(rec.networkId);
    return {
      InterfaceName: { SrcName: ep.ifname, DstPrefix: 'eth' },
      ...(net?.gateway !== undefined ? { Gateway: net.gateway.split('/')[0] } : {}),
      StaticRoutes: [],
      DisableGatewayService: net?.gateway !== undefined,
    };
  }

  private async leave(b: Body): Promise<unknown> {
    reqString(b, 'NetworkID');
    const rec = this.state.endpoints.get(reqString(b, 'EndpointID'));
    if (!rec) return {};
    delete rec.sandbox;
    await this.save();
    return {};
  }

  private async programExternal(b: Body): Promise<unknown> {
    const { rec } = this.endpoint(b);
    const bindings = parsePortBindings(optObject(b, 'Options'));
    if (bindings.length === 0) return {};
    for (const p of bindings) {
      if (p.hostIp !== '' && p.hostIp !== '0.0.0.0') {
        this.deps.log.warn('published port bound to all host addresses, not only the one asked for', {
          hostIp: p.hostIp,
          port: p.hostPort,
        });
      }
    }
    if (rec.ports?.length) await this.deps.ports.unpublish(rec.ports);
    const taken = new Set<string>();
    for (const e of this.state.endpoints.values()) {
      if (e !== rec) for (const p of e.ports ?? []) taken.add(`${p.proto}/${p.hostPort}`);
    }
    rec.ports = await this.deps.ports.publish(rec.address.split('/')[0]!, bindings, taken);
    await this.save();
    return {};
  }

  private async revokeExternal(b: Body): Promise<unknown> {
    reqString(b, 'NetworkID');
    const rec = this.state.endpoints.get(reqString(b, 'EndpointID'));
    if (!rec) return {};
    if (rec.ports?.length) await this.deps.ports.unpublish(rec.ports);
    delete rec.ports;
    await this.save();
    return {};
  }
}
