/**
 * The networks components: the catalog of cluster networks, this host's bridges and
 * routes, and the endpoints (containers) on them. Built on IPAM and the data path.
 */
import type { Logger } from '../log';
import type { Netlink } from '../netlink';
import { DEFAULT_NETWORK, type DaemonConfig } from '../config';
import type { Datapath } from '../router/overlay';
import type { ClusterIpam } from '../ipam/cluster';
import type { Cidr } from '../net/ipv4';
import { NetworkSet } from '../endpoint/networks';
import { NetworkCatalog } from '../endpoint/network-catalog';
import { NetworkIsolation, runNft } from '../endpoint/isolation';
import { EndpointRegistry } from '../endpoint/registry';
import { HostRoutes } from '../endpoint/host-routes';
import type { LinkLedger } from '../endpoint/ledger';
import { component, type Startable } from './component';
import { removeOverlayRule } from './host-teardown';

/** Networks are cluster objects in the store; the allocator takes each one's subnet from them. */
export function catalogComponent(ipam: ClusterIpam, range: Cidr, log: Logger) {
  return component(
    'network catalog',
    async () => {
      const catalog = await NetworkCatalog.open({
        store: ipam.store,
        range,
        blockPrefix: ipam.allocator.blockPrefix,
        log: log.child('networks'),
      });
      try {
        await ipam.allocator.useSubnets(catalog);
      } catch (err) {
        await catalog.close();
        throw err;
      }
      return catalog;
    },
    (catalog) => catalog.close(),
  );
}

export interface LocalNetworks {
  networks: NetworkSet;
  hostRoutes: HostRoutes;
  endpoints: EndpointRegistry;
  /** In start order: the overlay routing rule, the default network's bridge, the kept kernel path, the restored endpoints. */
  components: Startable[];
}

export interface LocalNetworkDeps {
  config: DaemonConfig;
  netlink: Netlink;
  datapath: Datapath;
  ledger: LinkLedger;
  catalog: NetworkCatalog;
  ipam: ClusterIpam;
  range: Cidr;
  mtu: number;
  log: Logger;
}

/** This host's side of the networks: bridges, the routes to them, the containers' endpoints. */
export function localNetworks(d: LocalNetworkDeps): LocalNetworks {
  const { log } = d;
  const isolation = new NetworkIsolation(runNft, '/proc/sys', (m, f) => log.warn(m, f));
  const networks = new NetworkSet(d.netlink, d.datapath, d.ledger, d.catalog, isolation, d.mtu);
  const hostRoutes = new HostRoutes(d.netlink, d.range, () => networks.refreshIsolation());
  const retentionMs = d.config.addressRetention * 1000;
  const endpoints = new EndpointRegistry(
    d.config.stateDir,
    d.netlink,
    networks,
    d.ipam.allocator,
    d.ledger,
    hostRoutes,
    log.child('endpoints'),
    retentionMs,
  );
  const components = [
    // A reset removes the rule; the table's routes go with the bridges.
    component(
      'overlay routing rule',
      () => hostRoutes.install(),
      async (_, mode) => {
        if (mode === 'reset') await removeOverlayRule(d.netlink);
      },
    ),
    component(
      'bridges',
      async () => {
        await networks.ensure(DEFAULT_NETWORK);
      },
      (_, mode) => networks.close(mode === 'reset'),
    ),
    // Started after the bridges so that it stops before them: a stop (not a reset) keeps
    // the kernel fast path, and must do so before the bridges take their networks off the
    // data path. The peering's stop asks again, which is then a no-op.
    component(
      'kept kernel path',
      () => undefined,
      async (_, mode) => {
        if (mode === 'stop') await d.datapath.retainKernelPath?.();
      },
    ),
    component(
      'endpoints',
      () => endpoints.restore(),
      async (_, mode) => {
        if (mode === 'reset') await endpoints.removeAll();
      },
    ),
  ];
  return { networks, hostRoutes, endpoints, components };
}
