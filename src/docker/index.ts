/**
 * The Docker surface as the daemon starts it: plugin state, the plugin socket, the
 * Docker API client (names, default network, DNS names) and published ports.
 */
import type { Logger } from '../log';
import { formatCidr, type Cidr } from '../ipam/cidr';
import type { AddressAllocator } from '../ipam/types';
import { DEFAULT_NETWORK } from '../config';
import { DockerPlugin, type PluginBridges, type PluginEndpoints } from './plugin';
import { startPluginServer, driverNameOf } from './server';
import { DockerEngine, type NamePublisher } from './engine';
import { NftPortPublisher } from './ports';

export interface DockerSurfaceOptions {
  socketPath: string;
  dockerHost: string;
  stateDir: string;
  range: Cidr;
  allocator: AddressAllocator;
  endpoints: PluginEndpoints;
  bridges: PluginBridges;
  /** Container names for DNS; undefined without DNS. */
  names?: NamePublisher;
  log: Logger;
}

export interface DockerSurface {
  driver: string;
  plugin: DockerPlugin;
  /** Stop serving; with `removeState`, also remove the published-ports table. */
  close(removeState: boolean): Promise<void>;
}

export async function startDockerSurface(o: DockerSurfaceOptions): Promise<DockerSurface> {
  const driver = driverNameOf(o.socketPath);
  const engine = new DockerEngine({
    host: o.dockerHost,
    driver,
    defaultNetwork: DEFAULT_NETWORK,
    subnet: formatCidr(o.range),
    ...(o.names ? { names: o.names } : {}),
    log: o.log.child('docker-api'),
  });
  const ports = new NftPortPublisher();
  const plugin = new DockerPlugin({
    range: o.range,
    allocator: o.allocator,
    endpoints: o.endpoints,
    bridges: o.bridges,
    networkName: (id) => engine.networkName(id),
    ports,
    stateDir: o.stateDir,
    log: o.log,
    onActivate: () => engine.scheduleDefaultNetwork(),
  });
  await plugin.restore();
  let server: Awaited<ReturnType<typeof startPluginServer>>;
  try {
    server = await startPluginServer(o.socketPath, plugin, o.log);
  } catch (err) {
    // The rest of weavets works without Docker: say why Docker cannot use this daemon.
    o.log.warn('Docker plugin off', { socket: o.socketPath, error: (err as Error).message });
    engine.close();
    return { driver, plugin, close: async () => undefined };
  }
  // Docker may be up already (a weavets restart): make the default network and follow names.
  engine.scheduleDefaultNetwork(0);
  engine.watchNames();
  return {
    driver,
    plugin,
    close: async (removeState) => {
      engine.close();
      await server.close();
      if (removeState) await ports.clear();
    },
  };
}
