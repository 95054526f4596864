/**
 * The services on top of the networks: embedded DNS, network policy, and the Docker
 * surface. Each is a component; DNS is absent when turned off, Docker when its socket is "".
 */
import * as os from 'node:os';
import type { Logger } from '../log';
import type { DaemonConfig } from '../config';
import type { ClusterIpam } from '../ipam/cluster';
import { formatCidr, parseCidr, type Cidr } from '../net/ipv4';
import { WeavetsError } from '../errors';
import type { NetworkSet } from '../endpoint/networks';
import type { NetworkCatalog } from '../endpoint/network-catalog';
import type { EndpointRegistry } from '../endpoint/registry';
import type { HostRoutes } from '../endpoint/host-routes';
import type { Netlink } from '../netlink';
import { DnsService } from '../dns/service';
import { PolicyService } from '../policy/service';
import { PolicyEnforcer } from '../policy/enforcer';
import type { CompileBridge } from '../policy/nft';
import { FASTDP_PORT } from '../datapath/fastdp/fastdp';
import { startDockerSurface, type DockerSurface, type DockerSurfaceOptions } from '../docker';
import type { Registry } from '../metrics/registry';
import { component } from './component';
import { DnsExposure, dnsVisibility } from './dns-exposure';

export interface ServiceDeps {
  config: DaemonConfig;
  /** This host's peer name, formatted. */
  self: string;
  range: Cidr;
  ipam: ClusterIpam;
  catalog: NetworkCatalog;
  networks: NetworkSet;
  endpoints: EndpointRegistry;
  hostRoutes: HostRoutes;
  netlink: Netlink;
  log: Logger;
}

/** DNS listens on the host's address on every network bridge (docs/DNS.md); started once the endpoints are restored. */
export function dnsComponent(d: ServiceDeps) {
  const dnsConfig = d.config.dns;
  return component(
    'dns',
    async () => {
      const dns = await DnsService.start({
        store: d.ipam.store,
        self: d.self,
        leaseTtlSeconds: d.ipam.leaseTtlSeconds,
        stateDir: d.config.stateDir,
        range: d.range,
        settings: {
          port: dnsConfig.port,
          extraListen: dnsConfig.extraListen.map((a) => ({
            addr: a.slice(0, a.lastIndexOf(':')),
            port: Number(a.slice(a.lastIndexOf(':') + 1)),
          })),
          domain: dnsConfig.domain.toLowerCase().replace(/\.$/, ''),
          ttl: dnsConfig.ttl,
          resolvConf: dnsConfig.resolvConf,
        },
        visibility: dnsVisibility(d.endpoints, d.networks, d.catalog, d.range),
        log: d.log.child('dns'),
      });
      const exposure = new DnsExposure(dns, d.endpoints, d.log);
      try {
        await exposure.exposeAll(d.networks.list().map((n) => n.name));
      } catch (err) {
        await dns.close();
        throw err;
      }
      return exposure;
    },
    (exposure, mode) => exposure.dns.close(mode === 'reset'),
  );
}

/**
 * Network policy. The nftables tables stay in force on a stop (nothing fails open); a
 * reset removes them.
 */
export function policyComponent(d: ServiceDeps, exposure: DnsExposure | undefined, metrics: Registry) {
  const dnsPort = d.config.dns.port;
  const enforcer = new PolicyEnforcer(d.log.child('policy'), (bridge, on) =>
    d.netlink.setBridge(bridge, { nfCallIptables: on }),
  );
  const bridges = (): CompileBridge[] =>
    d.networks.list().map((n) => {
      const ip = exposure?.resolverAddressOn(n.name);
      const b: CompileBridge = {
        network: n.name,
        id: n.id,
        bridge: n.bridge,
        addresses: formatCidr(n.sources ?? n.subnet),
      };
      if (ip !== undefined) b.resolver = { ip, port: dnsPort };
      return b;
    });
  return component(
    'policy',
    async () => {
      enforcer.adopt(d.networks.list().map((n) => n.bridge));
      const policy = await PolicyService.start({
        store: d.ipam.store,
        self: d.self,
        nickname: d.config.nickname || os.hostname(),
        leaseTtlSeconds: d.ipam.leaseTtlSeconds,
        dryRun: d.config.policyDryRun,
        enforcer,
        localEndpoints: () => d.endpoints.list(),
        bridges,
        tunnelPort: d.config.datapath === 'sleeve' ? undefined : FASTDP_PORT,
        metrics,
        log: d.log.child('policy'),
      });
      // Policy follows every change of the endpoint set: attach, detach, Docker's plug, CNI.
      d.endpoints.onChange(() => policy.endpointsChanged());
      return policy;
    },
    async (policy, mode) => {
      await policy.close();
      if (mode === 'reset') await enforcer.remove(d.networks.list().map((n) => n.bridge));
    },
  );
}

/** The Docker network and IPAM plugin (docs/DOCKER.md); undefined when its socket is "". */
export function dockerComponent(d: ServiceDeps, exposure: DnsExposure | undefined) {
  const socketPath = d.config.dockerPluginSocket;
  if (socketPath === '') return undefined;
  return component(
    'docker',
    async () => {
      const docker = await startDockerSurface(dockerOptions(d, socketPath, exposure));
      // Docker asks for a segment's bridge (and so its sources) only when it creates a
      // network or an endpoint. After a restart the segments its running containers use
      // must accept their sources (the range, or Docker's pool) again, or the isolation
      // table drops them as spoofed.
      for (const n of docker.plugin.networks()) {
        if (n.segment !== undefined && n.sources !== undefined && d.networks.get(n.segment) !== undefined)
          await d.networks.acceptSources(n.segment, parseCidr(n.sources));
      }
      return docker;
    },
    (docker: DockerSurface, mode) => docker.close(mode === 'reset'),
  );
}

/** Catalog option naming what created a network on first use; "docker": the Docker plugin. */
export const CREATED_BY_OPTION = 'weavets.created-by';
const CREATED_BY_DOCKER = 'docker';

/**
 * A Docker network on `segment` was deleted here: remove the catalog network when the
 * Docker plugin created it and nothing anywhere holds an address on it (another host's
 * Docker network on the segment holds its gateway there). Never throws.
 */
async function releaseDockerNetwork(d: ServiceDeps, segment: string): Promise<void> {
  const { catalog, ipam, log } = d;
  try {
    const rec = await catalog.lookup(segment);
    if (rec?.options[CREATED_BY_OPTION] !== CREATED_BY_DOCKER) return;
    const removed = await catalog.remove(segment, async (r) => {
      const inUse = (await ipam.allocator.allocationsOn(r.name)).filter(
        (a) => !a.id.startsWith('host@') && a.retainedUntil === undefined,
      );
      if (inUse.length > 0)
        throw new WeavetsError(
          'EWEAVETS_CONFLICT',
          `in use by ${inUse.map((a) => `${a.id} (${a.address})`).join(', ')}`,
        );
    });
    await ipam.allocator.purgeNetwork(removed.name);
  } catch (err) {
    log.info('Docker network deleted; its weavets network stays', { network: segment, why: (err as Error).message });
  }
}

function dockerOptions(d: ServiceDeps, socketPath: string, exposure: DnsExposure | undefined): DockerSurfaceOptions {
  const { config, networks, endpoints, hostRoutes, log } = d;
  return {
    socketPath,
    ...(config.dockerDriverName !== undefined ? { driverName: config.dockerDriverName } : {}),
    dockerHost: config.dockerHost,
    stateDir: config.stateDir,
    range: d.range,
    allocator: d.ipam.allocator,
    catalog: () => d.catalog.list(),
    subnetRefusal: (subnet) => d.catalog.subnetRefusal(subnet),
    endpoints,
    bridges: {
      ensure: async (segment, wants) => {
        // Created here, the catalog network is marked as the Docker plugin's (released with its last Docker network).
        const rec = await d.catalog.ensure(segment, {
          ...(wants?.subnet !== undefined ? { subnet: wants.subnet } : {}),
          options: { [CREATED_BY_OPTION]: CREATED_BY_DOCKER },
        });
        const net = await networks.ensure(segment);
        if (wants?.sources !== undefined) await networks.acceptSources(segment, parseCidr(wants.sources));
        await exposure?.segmentAdded(segment);
        return { bridge: net.bridge, subnet: rec.subnet };
      },
      release: (segment) => releaseDockerNetwork(d, segment),
      addAddress: (bridge, cidr) => hostRoutes.addAddress(bridge, cidr),
      delAddress: (bridge, cidr) => hostRoutes.delAddress(bridge, cidr),
      routeTo: (bridge, ip) => hostRoutes.routeHost(bridge, ip),
      unroute: (bridge, ip) => hostRoutes.unrouteHost(bridge, ip),
    },
    ...(exposure ? { names: (owner, records) => exposure.dns.setOwned(owner, records) } : {}),
    // Container labels for policy: known a moment after the container started (docs/POLICY.md).
    labels: (endpointId, labels, containerName) => {
      const have = endpoints.list().find((e) => e.id === endpointId);
      if (
        !have ||
        (JSON.stringify(have.labels ?? {}) === JSON.stringify(labels) &&
          (containerName === undefined || have.name === containerName))
      )
        return;
      endpoints
        .relabel(endpointId, labels, containerName)
        .catch((err: unknown) =>
          log.warn('cannot label a Docker endpoint', { id: endpointId, error: (err as Error).message }),
        );
    },
    // Containers' external DNS to weavets DNS on the segment's bridge (docs/DOCKER.md, DNS).
    ...(exposure && config.dockerDnsRedirect
      ? {
          dnsRedirect: {
            port: config.dns.port,
            bridgeOf: (segment: string) => networks.get(segment)?.bridge,
            addressOn: (segment: string) => exposure.resolverAddressOn(segment),
          },
        }
      : {}),
    log: log.child('docker'),
  };
}
