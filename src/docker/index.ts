/**
 * The Docker surface as the daemon starts it: plugin state, the plugin socket, the
 * Docker API client (names, default network, DNS names), published ports and the
 * redirect of containers' external DNS to weavets DNS (./dns-redirect.ts).
 */
import type { Logger } from '../log';
import { formatCidr, type Cidr } from '../net/ipv4';
import type { AddressAllocator } from '../ipam/types';
import { DEFAULT_NETWORK } from '../config';
import { DockerPlugin, endpointIdFor, type PluginBridges, type PluginEndpoints, type SegmentWants } from './plugin';
import { startPluginServer, driverNameOf } from './server';
// ./engine loads dockerode (~20 MB resident with its dependencies): only when the Docker surface starts.
import type { NamePublisher } from './engine';
import { NftPortPublisher } from './ports';
import { DNS_REDIRECT_TABLE, DnsRedirect, type Resolver } from './dns-redirect';

export interface DockerSurfaceOptions {
  socketPath: string;
  /** The driver name Docker knows us by; default: the socket's base name (a managed plugin's is its name). */
  driverName?: string;
  dockerHost: string;
  stateDir: string;
  range: Cidr;
  allocator: AddressAllocator;
  /** The catalog's networks as this host sees them. */
  catalog: () => { name: string; subnet: string }[];
  endpoints: PluginEndpoints;
  bridges: PluginBridges;
  /** Container names for DNS; undefined without DNS. */
  names?: NamePublisher;
  /** Container labels for policy, by weavets endpoint id ("docker:<endpoint id>"). */
  labels?: (endpointId: string, labels: Record<string, string>, containerName: string | undefined) => void;
  /**
   * Send containers' external DNS queries on Docker networks' bridges to weavets DNS
   * (docs/DOCKER.md, DNS); undefined: off (a table left by an earlier run is removed).
   */
  dnsRedirect?: {
    /** The port weavets DNS listens on at the bridge addresses. */
    port: number;
    /** Where weavets DNS listens on a segment's bridge (the host's address there), if it does. */
    addressOn(segment: string): string | undefined;
    /** The bridge of a segment this host carries (its name follows the catalog's id). */
    bridgeOf(segment: string): string | undefined;
  };
  log: Logger;
}

export interface DockerSurface {
  driver: string;
  plugin: DockerPlugin;
  /** Stop serving and remove the DNS redirect; with `removeState`, also the published-ports table. */
  close(removeState: boolean): Promise<void>;
}

export async function startDockerSurface(o: DockerSurfaceOptions): Promise<DockerSurface> {
  const driver = o.driverName ?? driverNameOf(o.socketPath);
  const { DockerEngine } = await import('./engine');
  const engine = new DockerEngine({
    host: o.dockerHost,
    driver,
    defaultNetwork: DEFAULT_NETWORK,
    subnet: formatCidr(o.range),
    ...(o.names ? { names: o.names } : {}),
    ...(o.labels
      ? {
          labels: (dockerEndpointId: string, labels: Record<string, string>, name: string | undefined) =>
            o.labels?.(endpointIdFor(dockerEndpointId), labels, name),
        }
      : {}),
    log: o.log.child('docker-api'),
  });
  const ports = new NftPortPublisher();
  const redirect = new DnsRedirect();
  const redirectLog = o.log.child('dns-redirect');
  let refreshTimer: NodeJS.Timeout | undefined;
  // Every segment of a Docker network this host serves, with weavets DNS on its bridge.
  const refresh = async (): Promise<void> => {
    if (!o.dnsRedirect) return;
    const want: Resolver[] = [];
    const segments = new Set(plugin.networks().flatMap((n) => (n.segment !== undefined ? [n.segment] : [])));
    for (const segment of segments) {
      const address = o.dnsRedirect.addressOn(segment);
      const bridge = o.dnsRedirect.bridgeOf(segment);
      if (address !== undefined && bridge !== undefined) want.push({ bridge, address, port: o.dnsRedirect.port });
    }
    await redirect
      .set(want)
      .catch((err: unknown) => redirectLog.warn('cannot update the DNS redirect', { error: (err as Error).message }));
  };
  const bridges = o.dnsRedirect
    ? {
        ...o.bridges,
        // The plugin ensures a segment's bridge before each endpoint (and on network
        // delete): the bridge is redirected before the container's first query, and a
        // moment later (the call done, a deleted network gone) the map is checked again.
        ensure: async (segment: string, wants?: SegmentWants): Promise<{ bridge: string; subnet: string }> => {
          const bridge = await o.bridges.ensure(segment, wants);
          await refresh();
          clearTimeout(refreshTimer);
          refreshTimer = setTimeout(() => void refresh(), 1000);
          refreshTimer.unref();
          return bridge;
        },
      }
    : o.bridges;
  const plugin: DockerPlugin = new DockerPlugin({
    range: o.range,
    allocator: o.allocator,
    endpoints: o.endpoints,
    bridges,
    networkName: (id) => engine.networkName(id),
    catalog: o.catalog,
    ports,
    stateDir: o.stateDir,
    log: o.log,
    onActivate: () => engine.scheduleDefaultNetwork(),
  });
  await plugin.restore();
  // Before the socket: the table is there when Docker's first call comes.
  if (o.dnsRedirect) {
    try {
      await redirect.start(formatCidr(o.range));
      await refresh();
      redirectLog.info("Docker containers' external DNS goes to weavets DNS", { table: `ip ${DNS_REDIRECT_TABLE}` });
    } catch (err) {
      redirectLog.warn("cannot redirect Docker containers' DNS; names of other hosts need docker run --dns", {
        error: (err as Error).message,
      });
    }
  } else await redirect.clear();
  let server: Awaited<ReturnType<typeof startPluginServer>>;
  try {
    server = await startPluginServer(o.socketPath, plugin, o.log);
  } catch (err) {
    // The rest of weavets works without Docker: say why Docker cannot use this daemon.
    o.log.warn('Docker plugin off', { socket: o.socketPath, error: (err as Error).message });
    engine.close();
    await redirect.clear();
    return { driver, plugin, close: async () => undefined };
  }
  // Docker may be up already (a weavets restart): make the default network and follow names.
  engine.scheduleDefaultNetwork(0);
  engine.watchNames();
  return {
    driver,
    plugin,
    close: async (removeState) => {
      plugin.close();
      engine.close();
      clearTimeout(refreshTimer);
      await server.close();
      // Without our listener redirected queries would fail; untouched they reach the
      // containers' own servers. So the redirect goes on stop as well as on reset.
      await redirect.clear();
      if (removeState) await ports.clear();
    },
  };
}
