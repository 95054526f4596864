/**
 * The DNS exposure policy: DNS listens on the host's address on each network bridge, so
 * with DNS on, the host is exposed (given an address) on every network it carries, and a
 * container sees the names of its own network only (docs/DNS.md).
 */
import type { Logger } from '../log';
import type { EndpointStatus } from '../endpoint/types';
import type { DnsService } from '../dns/service';
import type { EndpointRegistry } from '../endpoint/registry';
import type { NetworkSet } from '../endpoint/networks';
import type { NetworkCatalog } from '../endpoint/network-catalog';
import { contains, parseCidr, parseIpv4, type Cidr } from '../net/ipv4';

/** "10.40.0.1/24" -> "10.40.0.1" */
function hostOf(cidr: string): string {
  return cidr.split('/')[0] ?? cidr;
}

/** The host's address on `network`, if it has one. */
export function hostAddressOn(endpoints: EndpointRegistry, network: string): string | undefined {
  const ex = endpoints.exposures().find((e) => e.network === network);
  return ex === undefined ? undefined : hostOf(ex.address);
}

/**
 * Which answers a resolver on `listenAddr` may give: a container sees the names of its
 * own network only (and anything outside the range). Undefined: no limit.
 */
export function dnsVisibility(
  endpoints: EndpointRegistry,
  networks: NetworkSet,
  catalog: NetworkCatalog,
  range: Cidr,
): (listenAddr: string) => ((ip: string) => boolean) | undefined {
  return (listenAddr) => {
    const ex = endpoints.exposures().find((e) => hostOf(e.address) === listenAddr);
    const net = ex === undefined ? undefined : networks.get(ex.network);
    // A Docker segment's containers are addressed from the whole range (docs/DOCKER.md).
    if (net === undefined || net.sources !== undefined) return undefined;
    const holes = catalog
      .list()
      .filter((r) => r.name !== net.name)
      .map((r) => parseCidr(r.subnet))
      .filter((c) => c.prefix > net.subnet.prefix && contains(net.subnet, c.base));
    return (ip) => {
      const n = parseIpv4(ip);
      if (!contains(range, n)) return true;
      return contains(net.subnet, n) && !holes.some((h) => contains(h, n));
    };
  };
}

/** The running DNS service and the host addresses it listens on, kept in step with the endpoints. */
export class DnsExposure {
  constructor(
    readonly dns: DnsService,
    private readonly endpoints: EndpointRegistry,
    private readonly log: Logger,
  ) {}

  /** Give the host an address on `network` for DNS; a failure is logged (DNS there is lost, nothing else). */
  async expose(network: string): Promise<void> {
    try {
      await this.endpoints.expose(network, undefined);
    } catch (err) {
      this.log.warn('cannot give the host an address for DNS on a network', {
        network,
        error: (err as Error).message,
      });
    }
  }

  /** Listen on exactly the host's addresses on the bridges. */
  async relisten(): Promise<void> {
    await this.dns.listenOn(this.endpoints.exposures().map((e) => hostOf(e.address)));
  }

  /** Expose the host on every network it carries now, listen there, and load the endpoints' names. */
  async exposeAll(networks: string[]): Promise<void> {
    for (const n of networks) await this.expose(n);
    await this.relisten();
    this.dns.restore(this.endpoints.list());
  }

  /** A container attached: the host exposed on its network, its name published, its resolver told. */
  async attached(ep: EndpointStatus): Promise<EndpointStatus> {
    await this.expose(ep.network);
    await this.relisten();
    this.dns.endpointAttached(ep);
    const ip = hostAddressOn(this.endpoints, ep.network);
    const resolver = ip === undefined ? undefined : this.dns.resolverFor(ip);
    return resolver === undefined ? ep : { ...ep, dns: resolver };
  }

  /** A Docker segment got its bridge here. */
  async segmentAdded(segment: string): Promise<void> {
    await this.expose(segment);
    await this.relisten();
    this.dns.networksChanged();
  }

  /** The address DNS answers on in `network`, if it listens there. */
  resolverAddressOn(network: string): string | undefined {
    const ip = hostAddressOn(this.endpoints, network);
    return ip !== undefined && this.dns.listensOn(ip) ? ip : undefined;
  }
}
