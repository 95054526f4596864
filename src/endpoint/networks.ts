/**
 * Overlay networks on this host: one Linux bridge per network, carried by the data path.
 * What a network is (its id, the one that travels with each frame like a VNI, and its
 * subnet) comes from the cluster's network catalog (network-catalog.ts); this set only
 * makes the local bridges, keeps them isolated from each other (isolation.ts), and tears
 * them down when a network is removed.
 */
import type { Netlink } from '../netlink';
import type { Datapath, OverlayNetwork } from '../router/overlay';
import type { LinkLedger } from './ledger';
import { DEFAULT_NETWORK } from '../config';
import { WeavetsError } from '../errors';
import { formatCidr, parseCidr, type Cidr } from '../net/ipv4';
import { bridgeLinkName, DEFAULT_BRIDGE_NAME, tapLinkName } from '../net/links';
import type { NetworkCatalog, NetworkRecord } from './network-catalog';
import { validateNetworkName } from './network-catalog';
import type { NetworkIsolation } from './isolation';

export { validateNetworkName, legacyNetworkId as networkIdFor } from './network-catalog';

export function bridgeNameFor(name: string, id: number): string {
  return name === DEFAULT_NETWORK ? DEFAULT_BRIDGE_NAME : bridgeLinkName(id);
}

/** A network carried on this host. */
export interface LocalNetwork extends OverlayNetwork {
  subnet: Cidr;
  /** Set when Docker endpoints on it are addressed from the whole range (docs/DOCKER.md). */
  sources?: Cidr;
}

export class NetworkSet {
  private readonly networks = new Map<string, LocalNetwork>();
  private readonly creating = new Map<string, Promise<LocalNetwork>>();
  private isolating: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly netlink: Netlink,
    private readonly datapath: Datapath,
    private readonly ledger: LinkLedger,
    private readonly catalog: NetworkCatalog,
    private readonly isolation: NetworkIsolation,
    /** MTU of bridges and container interfaces. */
    readonly mtu: number,
  ) {}

  get(name: string): LocalNetwork | undefined {
    return this.networks.get(name);
  }

  list(): LocalNetwork[] {
    return [...this.networks.values()];
  }

  /** The catalog's network (created there on first use), its bridge made here and carried. */
  ensure(name: string): Promise<LocalNetwork> {
    const have = this.networks.get(name);
    if (have) return Promise.resolve(have);
    let p = this.creating.get(name);
    if (!p) {
      p = this.make(name).finally(() => this.creating.delete(name));
      this.creating.set(name, p);
    }
    return p;
  }

  private async make(name: string): Promise<LocalNetwork> {
    const bad = validateNetworkName(name);
    if (bad) throw new WeavetsError('EWEAVETS_BAD_REQUEST', bad);
    const rec: NetworkRecord = await this.catalog.ensure(name);
    for (const n of this.networks.values()) {
      // Cannot happen with a shared store (ids are compare-and-created); with two
      // store-less hosts' catalogs it can, and the bridge name would collide.
      if (n.id === rec.id)
        throw new WeavetsError(
          'EWEAVETS_CONFLICT',
          `network ${name} has the same id (${rec.id}) as ${n.name} on this host`,
        );
    }
    const net: LocalNetwork = {
      id: rec.id,
      name,
      bridge: bridgeNameFor(name, rec.id),
      mtu: this.mtu,
      subnet: parseCidr(rec.subnet),
    };
    await this.ledger.record(net.bridge);
    await this.netlink.createBridge(net.bridge, { mtu: net.mtu });
    await this.netlink.setMtu(net.bridge, net.mtu);
    await this.netlink.setUp(net.bridge);
    await this.ledger.record(tapLinkName(net.id));
    this.networks.set(name, net);
    // Isolated before anything can use it: the bridge has no port yet.
    await this.refreshIsolation();
    await this.datapath.addNetwork(net);
    return net;
  }

  /** The network was removed from the catalog: stop carrying it and delete its bridge. */
  async remove(name: string): Promise<void> {
    const net = this.networks.get(name);
    if (!net) return;
    this.networks.delete(name);
    await this.datapath.removeNetwork(net.id);
    await this.netlink.deleteLink(net.bridge, { ignoreMissing: true });
    await this.ledger.forget(net.bridge);
    await this.refreshIsolation();
  }

  /**
   * Accept `sources` on the network's bridge instead of its subnet alone: a Docker network
   * addressed from the whole range, or by Docker's own IPAM (docs/DOCKER.md, Subnets).
   */
  async acceptSources(name: string, sources: Cidr): Promise<void> {
    const net = this.networks.get(name);
    if (!net || (net.sources !== undefined && formatCidr(net.sources) === formatCidr(sources))) return;
    net.sources = sources;
    await this.refreshIsolation();
  }

  /**
   * Make the isolation rules match the bridges and the host's addresses on them now.
   * Serialised: two refreshes never dump links and addresses at once on the one netlink
   * socket (concurrent dumps there came back as "Multipart message not terminated"), and
   * a dump that fails is tried again.
   */
  refreshIsolation(): Promise<void> {
    const run = (): Promise<void> => this.refreshIsolationNow();
    const p = this.isolating.then(run, run);
    this.isolating = p.catch(() => undefined);
    return p;
  }

  private async refreshIsolationNow(): Promise<void> {
    let links: Awaited<ReturnType<Netlink['listLinks']>> = [];
    let addrs: Awaited<ReturnType<Netlink['listAddresses']>> = [];
    for (let attempt = 1; ; attempt++) {
      try {
        links = await this.netlink.listLinks();
        addrs = await this.netlink.listAddresses();
        break;
      } catch (err) {
        if (attempt >= 3) throw err;
      }
    }
    const bridges = this.list().map((n) => {
      const index = links.find((l) => l.name === n.bridge)?.index;
      const hostAddresses = addrs
        .filter((a) => a.index === index && !a.cidr.includes(':'))
        .map((a) => a.cidr.split('/')[0]!);
      return {
        bridge: n.bridge,
        subnet: n.subnet,
        hostAddresses,
        ...(n.sources !== undefined ? { sources: n.sources } : {}),
      };
    });
    await this.isolation.apply(bridges);
  }

  /** Stop carrying every network; with `removeBridges`, delete the bridges (and the isolation table) too. */
  async close(removeBridges: boolean): Promise<void> {
    for (const net of this.networks.values()) {
      await this.datapath.removeNetwork(net.id);
      if (removeBridges) await this.netlink.deleteLink(net.bridge, { ignoreMissing: true });
    }
    if (removeBridges) await this.isolation.remove();
    this.networks.clear();
  }
}
