/**
 * The Docker network driver and IPAM driver (libnetwork remote protocol), on top of the
 * daemon's endpoint registry and address allocator. See docs/DOCKER.md.
 *
 * - Segment: a Docker network is the weavets network (L2 segment) of the same name, so
 *   `appnet` created on several hosts is one segment; `-o weavets.segment=NAME` picks
 *   another. The remote protocol never carries the name: it is asked of Docker (by
 *   network id) the first time an endpoint is created, and kept.
 * - Addresses: the IPAM driver allocates every Docker address (gateways and containers)
 *   from the cluster allocator under one allocation space, DOCKER_SPACE, so they are
 *   unique across all hosts and all Docker networks. The IPAM protocol carries neither the
 *   network nor the endpoint, so each address gets its own handle, remembered by address
 *   in <stateDir>/docker.json (ReleaseAddress names only the address).
 * - Gateway: the network's gateway address goes on this host's bridge of the segment, so
 *   the host is on the network (routes, -p) and containers get a default route.
 * - Endpoints: CreateEndpoint plugs a veth (registry.plug); Join hands its free end to
 *   Docker, which moves it into the container and sets address, MAC and routes.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../log';
import type { EndpointStatus } from '../endpoint/types';
import { DEFAULT_NETWORK } from '../config';
import { formatCidr, formatIpv4, parseCidr, parseIpv4, type Cidr } from '../net/ipv4';
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

export interface PluginEndpoints {
  plug(req: { id: string; network: string; address: string; mac?: string; gateway?: string }): Promise<EndpointStatus>;
  detach(id: string): Promise<void>;
  list(): EndpointStatus[];
}

export interface PluginBridges {
  /** Make sure the segment's bridge exists; answers its name. */
  ensure(segment: string): Promise<string>;
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
  ports: PortPublisher;
  stateDir: string;
  log: Logger;
  /** Called after each Plugin.Activate (dockerd started, or restarted, and found us). */
  onActivate?: () => void;
}

interface NetworkRecord {
  segment?: string;
  /** CIDR of the gateway on this host, "10.32.0.1/12". */
  gateway?: string;
  options: Record<string, string>;
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
  /** Allocated address (dotted) -> the allocator handle holding it. */
  addresses: Map<string, { id: string; ifname: string }>;
  endpoints: Map<string, EndpointRecord>;
}

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
    if (segment !== undefined) rec.segment = segment;
    if (gateway !== undefined) rec.gateway = gateway;
    return rec;
  });
  const addresses = mapIn(doc, 'addresses', fields, (v, at) => {
    const o = fields.asObject(v, at);
    const f = fields.within(`${at}.`);
    return { id: f.reqString(o, 'id'), ifname: f.reqString(o, 'ifname') };
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
  return { networks, addresses, endpoints };
}

/** docker.json: version 1 adds `version` to the unversioned {networks, addresses, endpoints}. */
export const DOCKER_STATE_FORMAT: StateFormat<State> = {
  version: 1,
  parse: parseStoredState,
  parseUnversioned: (doc, fields) => parseStoredState(fields.asObject(doc, 'the document'), fields),
  toJson: (state) => ({
    networks: Object.fromEntries(state.networks),
    addresses: Object.fromEntries(state.addresses),
    endpoints: Object.fromEntries(state.endpoints),
  }),
};

function dockerStateFile(stateDir: string): JsonStateFile<State> {
  return new JsonStateFile(new StateDir(stateDir).docker, DOCKER_STATE_FORMAT);
}

type Handler = (body: Body) => Promise<unknown>;

/** Registry id of a Docker endpoint. */
export function endpointIdFor(dockerEndpointId: string): string {
  return `docker:${dockerEndpointId}`;
}

export class DockerPlugin {
  private state: State = { networks: new Map(), addresses: new Map(), endpoints: new Map() };
  private readonly file: JsonStateFile<State>;
  private readonly poolId: string;
  private readonly handlers: Record<string, Handler>;
  /** Serialises state changes (Docker calls concurrently for different containers). */
  private readonly queue = new SerialQueue();
  /** When a RequestPool without a pool was last answered, until an address is requested. */
  private unaskedPoolAt: number | undefined;

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
      [`/${I}.RequestPool`]: async (b) => this.requestPool(b),
      [`/${I}.ReleasePool`]: async (b) => {
        this.checkPool(reqString(b, 'PoolID'));
        this.unaskedPoolAt = undefined;
        return {};
      },
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
    return [...this.state.addresses.values()];
  }

  /**
   * The same from <stateDir>/docker.json, for a daemon running without the Docker surface:
   * the addresses of containers Docker started earlier stay theirs.
   */
  static storedAddressHandles(stateDir: string): { id: string; ifname: string }[] {
    try {
      return [...(dockerStateFile(stateDir).readSync()?.addresses.values() ?? [])];
    } catch {
      return [];
    }
  }

  /** Networks as this host knows them, for status. */
  networks(): { id: string; segment?: string; gateway?: string }[] {
    return [...this.state.networks].map(([id, n]) => ({
      id,
      ...(n.segment ? { segment: n.segment } : {}),
      ...(n.gateway ? { gateway: n.gateway } : {}),
    }));
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    return this.queue.run(fn);
  }

  private async save(): Promise<void> {
    await this.file.write(this.state);
  }

  // ---- IPAM driver ----------------------------------------------------------------

  private checkPool(poolId: string): void {
    if (poolId !== this.poolId)
      throw new PluginError(400, `unknown pool ${JSON.stringify(poolId)}; weavets has one pool, ${this.poolId}`);
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
    for (const [flag, v] of [
      ['--subnet', pool],
      ['--ip-range', sub],
    ] as const) {
      if (v === undefined) continue;
      let c: Cidr;
      try {
        c = parseCidr(v, false);
      } catch (err) {
        throw new PluginError(400, `${flag} ${v}: ${(err as Error).message}`, { cause: err });
      }
      if (formatCidr(c) !== range) {
        throw new PluginError(
          400,
          `${flag} ${v} conflicts with the weavets range ${range}: every weavets network shares the cluster's range ` +
            `(set with weavets launch --ipalloc-range); omit ${flag} or pass ${range}`,
        );
      }
    }
    const opts = optObject(b, 'Options');
    for (const k of Object.keys(opts))
      throw new PluginError(400, `unknown --ipam-opt ${k}; the weavets IPAM driver takes none`);
    if (pool === undefined) {
      // Docker checks a pool it did not ask for against the main table's routes and, when
      // they overlap, asks again at once, forever, since we have one pool. weavets keeps its
      // own routes out of main (src/endpoint/host-routes.ts), so an overlap is someone
      // else's route. A second pool request with no address request in between is that
      // loop: stop it with an answer the user can act on.
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
    return { PoolID: this.poolId, Pool: range, Data: {} };
  }

  private async requestAddress(b: Body): Promise<unknown> {
    this.checkPool(reqString(b, 'PoolID'));
    this.unaskedPoolAt = undefined;
    const wanted = optString(b, 'Address');
    const opts = optObject(b, 'Options');
    let ip: number | undefined;
    if (wanted !== undefined) {
      try {
        ip = parseIpv4(wanted.includes('/') ? wanted.split('/')[0]! : wanted);
      } catch (err) {
        throw new PluginError(400, `Address: ${(err as Error).message}`, { cause: err });
      }
    }
    const handle = { id: `docker-ipam-${randomBytes(6).toString('hex')}`, ifname: 'eth0' };
    const a = await this.deps.allocator.allocate({
      ...handle,
      network: DOCKER_SPACE,
      ...(ip !== undefined ? { ip } : {}),
    });
    this.state.addresses.set(formatIpv4(a.ip), handle);
    await this.save();
    this.deps.log.info('Docker IPAM: allocated', {
      address: a.address,
      gateway: opts[OPT_ADDRESS_TYPE] === ADDRESS_TYPE_GATEWAY,
    });
    return { Address: a.address, Data: {} };
  }

  private async releaseAddress(b: Body): Promise<unknown> {
    this.checkPool(reqString(b, 'PoolID'));
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
    if (v4.length > 1) throw new PluginError(400, 'a weavets network has one IPv4 subnet (the cluster range)');
    let gateway: string | undefined;
    if (v4.length === 1) {
      const d = v4[0] as Body;
      const pool = optString(d, 'Pool');
      if (pool !== undefined && pool !== formatCidr(this.deps.range)) {
        throw new PluginError(
          400,
          `the network's pool ${pool} is not the weavets range ${formatCidr(this.deps.range)}; use --ipam-driver weavets`,
        );
      }
      gateway = optString(d, 'Gateway');
      if (gateway !== undefined && !gateway.includes('/')) gateway = `${gateway}/${this.deps.range.prefix}`;
    }
    this.state.networks.set(id, { ...(segment ? { segment } : {}), ...(gateway ? { gateway } : {}), options: opts });
    await this.save();
    this.deps.log.info('Docker network created', { id: id.slice(0, 12), segment: segment ?? '(its name)', gateway });
    return {};
  }

  private async deleteNetwork(b: Body): Promise<unknown> {
    const id = reqString(b, 'NetworkID');
    const net = this.state.networks.get(id);
    if (net?.segment !== undefined && net.gateway !== undefined) {
      const bridge = await this.deps.bridges.ensure(net.segment);
      await this.deps.bridges.delAddress(bridge, net.gateway);
    }
    this.state.networks.delete(id);
    await this.save();
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

  private async createEndpoint(b: Body): Promise<unknown> {
    const networkId = reqString(b, 'NetworkID');
    const endpointId = reqString(b, 'EndpointID');
    const iface = optObject(b, 'Interface');
    const address = optString(iface, 'Address');
    if (address === undefined)
      throw new PluginError(400, 'the endpoint has no IPv4 address; use --ipam-driver weavets');
    if (optString(iface, 'AddressIPv6') !== undefined) throw new PluginError(400, 'weavets networks are IPv4 only');
    const mac = optString(iface, 'MacAddress');
    const { net, segment } = await this.segmentOf(networkId);
    const bridge = await this.deps.bridges.ensure(segment);
    if (net.gateway !== undefined) await this.deps.bridges.addAddress(bridge, net.gateway);
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
    const segment = rec ? this.state.networks.get(rec.networkId)?.segment : undefined;
    if (rec && segment !== undefined) {
      const bridge = await this.deps.bridges.ensure(segment);
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
