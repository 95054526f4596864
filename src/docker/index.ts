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
  /** NetworkCatalog.subnetRefusal: what the catalog would refuse a new subnet for now. */
  subnetRefusal: (subnet: string) => Promise<string | undefined>;
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

/** The Docker API client: names, default network, labels for policy (loaded only now: dockerode is large). */
async function openEngine(o: DockerSurfaceOptions, driver: string) {
  const { DockerEngine } = await import('./engine');
  return new DockerEngine({
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
}

/**
 * The DNS redirect kept to every segment of a Docker network this host serves, with
 * weavets DNS on its bridge; `segments` reads the plugin's networks (made after this).
 */
class RedirectFollower {
  readonly redirect = new DnsRedirect();
  readonly log: Logger;
  /** The plugin's bridges; with the redirect on, each ensure also refreshes the redirect. */
  readonly bridges: PluginBridges;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly o: DockerSurfaceOptions,
    private readonly segments: () => Iterable<string>,
  ) {
    this.log = o.log.child('dns-redirect');
    this.bridges = o.dnsRedirect
      ? {
          ...o.bridges,
          // The plugin ensures a segment's bridge before each endpoint (and on network
          // delete): the bridge is redirected before the container's first query, and a
          // moment later (the call done, a deleted network gone) the map is checked again.
          ensure: async (segment: string, wants?: SegmentWants): Promise<{ bridge: string; subnet: string }> => {
            const bridge = await o.bridges.ensure(segment, wants);
            await this.refresh();
            clearTimeout(this.timer);
            this.timer = setTimeout(() => void this.refresh(), 1000);
            this.timer.unref();
            return bridge;
          },
        }
      : o.bridges;
  }

  async refresh(): Promise<void> {
    const r = this.o.dnsRedirect;
    if (!r) return;
    const want: Resolver[] = [];
    for (const segment of new Set(this.segments())) {
      const address = r.addressOn(segment);
      const bridge = r.bridgeOf(segment);
      if (address !== undefined && bridge !== undefined) want.push({ bridge, address, port: r.port });
    }
    await this.redirect
      .set(want)
      .catch((err: unknown) => this.log.warn('cannot update the DNS redirect', { error: (err as Error).message }));
  }

  /** Before the socket: the table is there when Docker's first call comes. Off: a table left by an earlier run goes. */
  async start(): Promise<void> {
    if (!this.o.dnsRedirect) return this.redirect.clear();
    try {
      await this.redirect.start(formatCidr(this.o.range));
      await this.refresh();
      this.log.info("Docker containers' external DNS goes to weavets DNS", { table: `ip ${DNS_REDIRECT_TABLE}` });
    } catch (err) {
      this.log.warn("cannot redirect Docker containers' DNS; names of other hosts need docker run --dns", {
        error: (err as Error).message,
      });
    }
  }

  stopRefreshing(): void {
    clearTimeout(this.timer);
  }

  /** Without our listener redirected queries would fail; untouched they reach the containers' own servers. */
  async stop(): Promise<void> {
    this.stopRefreshing();
    await this.redirect.clear();
  }
}

export async function startDockerSurface(o: DockerSurfaceOptions): Promise<DockerSurface> {
  const driver = o.driverName ?? driverNameOf(o.socketPath);
  const engine = await openEngine(o, driver);
  const ports = new NftPortPublisher();
  const follower = new RedirectFollower(o, () =>
    plugin.networks().flatMap((n) => (n.segment !== undefined ? [n.segment] : [])),
  );
  const plugin: DockerPlugin = new DockerPlugin({
    range: o.range,
    allocator: o.allocator,
    endpoints: o.endpoints,
    bridges: follower.bridges,
    networkName: (id) => engine.networkName(id),
    catalog: o.catalog,
    subnetRefusal: o.subnetRefusal,
    ports,
    stateDir: o.stateDir,
    log: o.log,
    onActivate: () => engine.scheduleDefaultNetwork(),
  });
  await plugin.restore();
  await follower.start();
  let server: Awaited<ReturnType<typeof startPluginServer>>;
  try {
    server = await startPluginServer(o.socketPath, plugin, o.log);
  } catch (err) {
    // The rest of weavets works without Docker: say why Docker cannot use this daemon.
    o.log.warn('Docker plugin off', { socket: o.socketPath, error: (err as Error).message });
    engine.close();
    await follower.stop();
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
      follower.stopRefreshing();
      await server.close();
      // The redirect goes on stop as well as on reset (RedirectFollower.stop says why).
      await follower.stop();
      if (removeState) await ports.clear();
    },
  };
}
