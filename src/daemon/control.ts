/**
 * The control facade: the DaemonControl the API server calls, over the running
 * components. It holds no state of its own beyond what it is handed.
 */
import { apiSocketPath, DEFAULT_NETWORK, type DaemonConfig } from '../config';
import { ApiClient } from '../api/client';
import type { DaemonControl, PolicyControl } from '../api/types';
import type { NetworkInfo } from '../endpoint/types';
import type { RouterStatus } from '../router/status';
import type { Router } from '../router/router';
import type { ClusterIpam } from '../ipam/cluster';
import { formatCidr, type Cidr } from '../net/ipv4';
import type { NetworkSet } from '../endpoint/networks';
import type { NetworkCatalog, NetworkRecord } from '../endpoint/network-catalog';
import type { EndpointRegistry } from '../endpoint/registry';
import type { PolicyService } from '../policy/service';
import type { Diagnostics } from '../diagnostics';
import type { Registry } from '../metrics/registry';
import { WeavetsError } from '../errors';
import type { DnsExposure } from './dns-exposure';

// eslint-disable-next-line @typescript-eslint/no-require-imports -- package.json lies outside rootDir, so it is read at run time, not imported
const VERSION: string = (require('../../package.json') as { version: string }).version;

export interface ControlDeps {
  config: DaemonConfig;
  /** This host's peer name, formatted. */
  self: string;
  range: Cidr;
  router: Router;
  ipam: ClusterIpam;
  catalog: NetworkCatalog;
  networks: NetworkSet;
  endpoints: EndpointRegistry;
  exposure: DnsExposure | undefined;
  policy: PolicyService;
  diagnostics: Diagnostics;
  metrics: Registry;
  ready: () => boolean;
  shutdown: (removeState: boolean) => Promise<void>;
}

/** `weavets status`: what the router, the config and the networks say about this host. */
export function routerStatus(d: ControlDeps): RouterStatus {
  const { config, router } = d;
  const conns = router.connectionStatus();
  return {
    version: VERSION,
    name: d.self,
    nickname: config.nickname,
    port: config.port,
    encryption: config.password !== undefined,
    datapath: config.datapath,
    ipallocRange: formatCidr(d.range),
    peers: router.topology.entries().length,
    connections: { established: conns.filter((c) => c.state === 'established').length, total: conns.length },
    targets: router.targetStatus().length,
    networks: d.networks
      .list()
      .map((n) => ({ name: n.name, id: n.id, subnet: formatCidr(n.subnet), bridge: n.bridge, mtu: n.mtu })),
  };
}

/** The router's peer-facing API; a bad address is the caller's mistake. */
function peerControl(router: Router): Pick<DaemonControl, 'connections' | 'peers' | 'targets' | 'connect' | 'forget'> {
  const badRequest = (fn: () => void): void => {
    try {
      fn();
    } catch (err) {
      throw new WeavetsError('EWEAVETS_BAD_REQUEST', (err as Error).message, { cause: err });
    }
  };
  return {
    connections: () => router.connectionStatus(),
    peers: () => router.peerStatus(),
    targets: () => router.targetStatus(),
    connect: (addresses) => badRequest(() => router.connect(addresses, 'connect')),
    forget: (addresses) => badRequest(() => router.forget(addresses)),
  };
}

/** Cluster networks: a network in use by an endpoint anywhere is not removed. */
function networkControl(d: ControlDeps): DaemonControl['networks'] {
  const { catalog, ipam, networks } = d;
  const info = (r: NetworkRecord): NetworkInfo => ({ ...r, local: networks.get(r.name) !== undefined });
  return {
    list: () => catalog.list().map(info),
    create: async (req) => info(await catalog.create(req)),
    remove: async (name) => {
      const rec = await catalog.remove(name, async (r) => {
        const inUse = (await ipam.allocator.allocationsOn(r.name)).filter(
          (a) => !a.id.startsWith('host@') && a.retainedUntil === undefined,
        );
        if (inUse.length > 0) {
          const hosts = ipam.hostNames();
          const where = inUse.map((a) => `${a.id} (${a.address}) on host ${hosts.get(a.host) ?? a.host}`).join(', ');
          throw new WeavetsError(
            'EWEAVETS_CONFLICT',
            `network ${r.name} is in use by ${inUse.length} endpoint(s): ${where}; detach them first`,
          );
        }
      });
      await ipam.allocator.purgeNetwork(rec.name);
      return info(rec);
    },
  };
}

function policyControl(policy: PolicyService, catalog: NetworkCatalog): PolicyControl {
  return {
    // A policy may name any network of the cluster's catalog (issue 12), not only those with a bridge here.
    apply: (documents) =>
      policy.apply(documents, [...new Set([DEFAULT_NETWORK, ...catalog.list().map((n) => n.name)])], DEFAULT_NETWORK),
    list: () => policy.list(),
    show: (n) => policy.show(n),
    remove: (names) => policy.remove(names),
    drops: () => policy.drops(),
    status: () => policy.status(),
    endpoints: () => policy.endpoints(),
  };
}

export function createDaemonControl(d: ControlDeps): DaemonControl {
  const { config, endpoints, exposure, policy, diagnostics } = d;
  const relisten = async (): Promise<void> => {
    await exposure?.relisten();
  };
  return {
    status: () => routerStatus(d),
    ...peerControl(d.router),
    attach: async (req) => {
      const attached = await endpoints.attach(req);
      const ep = exposure ? await exposure.attached(attached) : attached;
      // Answer once the new port is guarded and counted in every selector here.
      await policy.settled();
      return ep;
    },
    detach: async (id, opts) => {
      await endpoints.detach(id, opts);
      exposure?.dns.endpointDetached(id);
      await policy.settled();
    },
    networks: networkControl(d),
    endpoints: () => endpoints.list(),
    checkEndpoint: (id) => endpoints.check(id),
    async cniExec(env, stdin) {
      // Loaded on first use: most daemons never see a CNI invocation.
      const { runPlugin } = await import('../cni/main');
      return runPlugin(env, stdin, () => new ApiClient(apiSocketPath(config.stateDir), { timeoutMs: 30_000 }));
    },
    expose: async (network, ip) => {
      const r = await endpoints.expose(network, ip);
      await relisten();
      return r;
    },
    hide: async (network) => {
      const r = await endpoints.hide(network);
      await relisten();
      return r;
    },
    metrics: () => d.metrics.metrics(),
    ready: d.ready,
    shutdown: d.shutdown,
    ipam: d.ipam,
    ...(exposure ? { dns: exposure.dns } : {}),
    policy: policyControl(policy, d.catalog),
    diagnostics: {
      health: () => diagnostics.healthStatus(),
      trace: (from, to, traffic) => diagnostics.trace(from, to, traffic),
      mesh: () => diagnostics.mesh(),
      flows: () => diagnostics.flows(),
    },
  };
}
