/**
 * The composition root: the daemon as a list of components (component.ts), built in the
 * order below and stopped in reverse by the same runner, whether the daemon stops,
 * resets, or fails half-way through starting. Each component's code lives in the module
 * of its group; this file only says what is built on what.
 */
import * as fs from 'node:fs/promises';
import * as os from 'node:os';
import { apiSocketPath, type DaemonConfig } from '../config';
import type { Logger } from '../log';
import type { DaemonControl } from '../api/types';
import { startApiServer } from '../api/server';
import { createMetricsRegistry } from '../api/metrics';
import { registerDaemonMetrics } from '../api/daemon-metrics';
import { registerIpamMetrics } from '../api/ipam-metrics';
import { Netlink } from '../netlink';
import { formatPeerName } from '../net/peername';
import { LinkLedger } from '../endpoint/ledger';
import { parseCidr } from '../net/ipv4';
import { deferredSealer, type Sealer } from '../crypto/seal';
import { ClusterIpam, openClusterStore } from '../ipam/cluster';
import { DockerPlugin } from '../docker/plugin';
import { FlowService } from '../diagnostics/flows';
import type { Registry } from '../metrics/registry';
import type { PeerName } from '../net/peername';
import { ComponentRunner, component } from './component';
import { checkPeerAddresses, overlayMtu, resolvePeerName } from './host';
import { removeRecordedLinks, removeStateDir } from './host-teardown';
import { datapathComponent, peeringComponent, routerComponent } from './mesh';
import { Topology } from '../router/topology';
import { PathEventRelay } from '../router/path-events';
import { catalogComponent, localNetworks, type LocalNetworkDeps } from './networks';
import { dnsComponent, dockerComponent, policyComponent, type ServiceDeps } from './services';
import { diagnosticsComponent } from './diagnostics';
import { memoryTrimComponent } from './memory-trim';
import { createDaemonControl } from './control';
import type { DnsExposure } from './dns-exposure';

export interface RunningDaemon {
  control: DaemonControl;
  /** Resolves when the daemon has fully stopped. */
  stopped: Promise<void>;
}

/** The host's footing: the state dir, netlink, and the ledger of links we made. A reset removes all three's traces. */
async function startHostFooting(runner: ComponentRunner, config: DaemonConfig, log: Logger) {
  await runner.start(
    component(
      'state dir',
      async () => {
        await fs.mkdir(config.stateDir, { recursive: true, mode: 0o700 });
        await fs.chmod(config.stateDir, 0o700);
      },
      async (_, mode) => {
        if (mode === 'reset') await removeStateDir(config.stateDir);
      },
    ),
  );
  const netlink = await runner.open(
    component(
      'netlink',
      () => Netlink.open(),
      (n) => n.close(),
    ),
  );
  const ledger = await runner.open(
    component(
      'recorded links',
      () => LinkLedger.load(config.stateDir),
      async (l, mode) => {
        if (mode !== 'reset') return;
        const failures = await removeRecordedLinks(netlink, l);
        if (failures.length > 0) log.warn('could not delete every link', { failures: failures.join('; ') });
      },
    ),
  );
  return { netlink, ledger };
}

/** The store, opened once here and handed to IPAM (and its host registry), DNS, policy and the catalog. */
async function startIpam(runner: ComponentRunner, config: DaemonConfig, self: string, ownLinks: string[], log: Logger) {
  const ttl = config.ipamLeaseTtl;
  const store = await runner.open(
    component(
      'store',
      () => openClusterStore(config, self, ttl, log.child('ipam')),
      (s) => s.close(),
    ),
  );
  // A range conflict or an unreachable store stops the launch before the mesh is built.
  return runner.open(
    component(
      'ipam',
      () =>
        ClusterIpam.start({
          store,
          stateDir: config.stateDir,
          name: self,
          nickname: config.nickname,
          range: parseCidr(config.ipallocRange),
          port: config.port,
          ...(config.advertiseAddress !== undefined ? { advertiseAddress: config.advertiseAddress } : {}),
          leaseTtlSeconds: ttl,
          reclaimGraceMs: config.ipamReclaimGrace * 1000,
          reclaimIntervalMs: Math.min(30_000, Math.max(1000, config.ipamReclaimGrace * 500)),
          ...(config.ipallocBlock !== undefined ? { blockPrefix: config.ipallocBlock } : {}),
          ownLinks,
          log: log.child('ipam'),
        }),
      (ipam, mode) => ipam.close(mode === 'reset'),
    ),
  );
}

/** The routes, the data paths on them, the router over both, the peering, and the metrics they export. */
async function startMesh(
  runner: ComponentRunner,
  config: DaemonConfig,
  name: PeerName,
  base: { netlink: Netlink; ledger: LinkLedger; ipam: ClusterIpam },
  log: Logger,
) {
  // Loaded when something is first sealed (or its name logged): never without a password.
  const sealer = deferredSealer();
  // The routes first: the data paths forward by them, and the router keeps them current.
  const topology = new Topology({ name, nickname: config.nickname });
  const pathEvents = new PathEventRelay();
  // Per-pair counters: built before the sleeve, which feeds them; closed with diagnostics.
  const flows = !config.flows
    ? undefined
    : new FlowService((err) => log.warn('flow counters unreadable', { error: err.message }));
  const { netlink, ledger, ipam } = base;
  const datapath = await runner.open(
    datapathComponent({ config, name, routes: topology, pathEvents, netlink, ledger, sealer, flows, log }),
  );
  const router = await runner.open(
    routerComponent({ config, topology, datapath, pathEvents, store: ipam.store, sealer, log }),
  );
  await runner.start(peeringComponent(config, router, datapath, ipam));
  const metrics = createMetricsRegistry();
  registerDaemonMetrics(metrics, router, datapath);
  base.ipam.allocator.observe(registerIpamMetrics(metrics, base.ipam));
  return { sealer, router, flows, datapath, metrics };
}

/** The networks, then the services on them: DNS (unless off), policy, Docker (unless off). */
async function startServices(runner: ComponentRunner, d: LocalNetworkDeps & { self: string }, metrics: Registry) {
  const local = localNetworks(d);
  for (const c of local.components) await runner.start(c);
  const deps: ServiceDeps = { ...d, ...local };
  const dns = !d.config.dns.enabled ? undefined : dnsComponent(deps);
  const exposure = dns === undefined ? undefined : await runner.open(dns);
  await runner.start(followRemovedNetworks(deps, exposure));
  const policy = await runner.open(policyComponent(deps, exposure, metrics));
  const docker = dockerComponent(deps, exposure);
  const dockerSurface = docker === undefined ? undefined : await runner.open(docker);
  return { ...local, exposure, policy, dockerSurface };
}

/** A network removed anywhere goes from this host too: its host address, then its bridge. */
function followRemovedNetworks(d: ServiceDeps, exposure: DnsExposure | undefined) {
  const { catalog, networks, endpoints, ipam, log } = d;
  return component(
    'removed networks',
    () =>
      catalog.onChange((e) => {
        exposure?.dns.networksChanged();
        if (e.type !== 'removed' || networks.get(e.network.name) === undefined) return;
        void (async () => {
          await endpoints.hide(e.network.name);
          await networks.remove(e.network.name);
          ipam.allocator.forgetNetwork(e.network.name);
          await exposure?.relisten();
        })().catch((err: unknown) =>
          log.warn('could not remove a removed network here', {
            network: e.network.name,
            error: (err as Error).message,
          }),
        );
      }),
    // Nothing to undo: the catalog, started earlier, stops later and its events end with it.
    () => undefined,
  );
}

function logReady(config: DaemonConfig, self: string, store: string, mtu: number, sealer: Sealer, log: Logger): void {
  log.info('weavets ready', {
    name: self,
    nickname: config.nickname || os.hostname(),
    port: config.port,
    store,
    mtu,
    encryption:
      config.password !== undefined
        ? `on (${sealer.name})`
        : 'off: traffic between peers is NOT encrypted (no --password-file)',
  });
}

async function buildDaemon(runner: ComponentRunner, config: DaemonConfig, log: Logger): Promise<RunningDaemon> {
  const { netlink, ledger } = await startHostFooting(runner, config, log);
  const name = await resolvePeerName(config);
  const self = formatPeerName(name);
  const mtu = await overlayMtu(config, netlink, ledger.list());
  const range = parseCidr(config.ipallocRange);
  const ipam = await startIpam(runner, config, self, ledger.list(), log);
  const mesh = await startMesh(runner, config, name, { netlink, ledger, ipam }, log);
  const { router, datapath, metrics } = mesh;
  const catalog = await runner.open(catalogComponent(ipam, range, log));
  const services = await startServices(
    runner,
    { config, self, netlink, datapath, ledger, catalog, ipam, range, mtu, log },
    metrics,
  );
  const { networks, endpoints, exposure, policy, dockerSurface } = services;
  const diagnostics = await runner.open(
    diagnosticsComponent({ ...mesh, nickname: config.nickname, networks, endpoints, exposure, policy, log }),
  );

  let ready = false;
  let stopping: Promise<void> | undefined;
  let resolveStopped = (): void => undefined;
  const stopped = new Promise<void>((r) => (resolveStopped = r));
  const shutdown = (removeState: boolean): Promise<void> => {
    stopping ??= (async () => {
      log.info(removeState ? 'resetting: stopping and removing links and state' : 'stopping');
      await runner.stopAll(removeState ? 'reset' : 'stop');
      log.info('stopped');
      resolveStopped();
    })();
    return stopping;
  };
  const control = createDaemonControl({
    config,
    self,
    range,
    router,
    ipam,
    catalog,
    networks,
    endpoints,
    exposure,
    policy,
    diagnostics,
    metrics,
    ready: () => ready,
    shutdown,
  });
  const api = component(
    'api',
    () =>
      startApiServer({
        socketPath: apiSocketPath(config.stateDir),
        httpAddr: config.httpAddr,
        control,
        log: log.child('api'),
      }),
    (server) => server.close(),
  );
  await runner.start(api);
  await runner.start(
    component(
      'ready',
      () => {
        // Hosts registered in the store are dialled like neighbours' peers.
        ipam.onPeers((addresses) => router.connect(addresses, 'discovered'));
        // Addresses this host holds that nothing here uses are released after a grace period
        // (src/ipam/reconcile.ts). Every claimant has restored its state by now; without the
        // Docker surface, the handles a previous run recorded in docker.json still count.
        const storedDockerHandles = dockerSurface ? [] : DockerPlugin.storedAddressHandles(config.stateDir);
        ipam.startReconciler(() => [
          ...endpoints.addressClaims(),
          ...(dockerSurface ? dockerSurface.plugin.addressHandles() : storedDockerHandles),
        ]);
        ready = true;
        logReady(config, self, ipam.store.kind, mtu, mesh.sealer, log);
      },
      () => {
        ready = false;
      },
    ),
  );
  // Last, so the garbage of starting is the first it gives back.
  await runner.start(memoryTrimComponent({ log, metrics }));
  return { control, stopped };
}

export async function startDaemon(config: DaemonConfig, log: Logger): Promise<RunningDaemon> {
  checkPeerAddresses(config);
  const runner = new ComponentRunner(log);
  try {
    return await buildDaemon(runner, config, log);
  } catch (err) {
    // Whatever started is stopped, last first, by the same code a stop runs.
    await runner.stopAll('stop');
    throw err;
  }
}
